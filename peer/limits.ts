/**
 * A peer's resource limits: what a stage graph received from the network may
 * be, and the memory budget (`lumiere peer --memory`) its jobs share.
 */
import { freemem, totalmem } from 'node:os'
import { LumiereError } from '../src/errors.ts'
import { decodeModel, forEachTensor } from '../src/onnx/model-io.ts'
import { isExternal, tensorByteSize } from '../src/onnx/tensor-proto.ts'

/**
 * Checks stage graph bytes received over the wire and counts their
 * parameters (initializers and constant tensors), bytes. BAD_ONNX when the
 * bytes are not an ONNX model, or when a tensor points at external data: a
 * stage must carry its weights inline, and a graph naming files would have
 * onnxruntime read this machine's files.
 */
export function inspectStage (bytes: Uint8Array, what: string): { paramBytes: number } {
  const model = decodeModel(bytes, what)
  let paramBytes = 0
  forEachTensor(model, (t) => {
    if (isExternal(t)) throw new LumiereError('BAD_ONNX', `${what}: tensor '${String(t.name).slice(0, 200)}' refers to external data; stages must carry their weights inline`)
    const size = tensorByteSize(t)
    paramBytes += Number.isFinite(size) ? size : Number.MAX_SAFE_INTEGER
  })
  return { paramBytes }
}

/** Parses a byte size: a whole number of bytes, or a number with K, M, G or T (powers of 1024, like `docker --memory`; `Ki`/`KiB`/`KB` and so on read the same). */
export function parseByteSize (text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?[bB])?\s*$/.exec(text)
  const bytes = m == null ? NaN : Math.floor(Number(m[1]) * 1024 ** ' KMGT'.indexOf((m[2] || ' ').toUpperCase()))
  if (!Number.isSafeInteger(bytes) || bytes < 1) throw new LumiereError('BAD_ARGUMENT', `'${text}' is not a byte size: write e.g. 4G, 512M or 1073741824`)
  return bytes
}

/** One stage as a job.setup asks for it, with what it will cost here. */
export interface StageCost {
  index: number
  /** Executor session key: stages sharing a key share one session (and its memory). */
  key: string
  /** Parameters counted from the graph itself. */
  paramBytes: number
  /** The coordinator's estimate, parameters + activations (job.setup estimatedBytes). */
  estimatedBytes?: number
}

function fmt (bytes: number): string {
  if (bytes >= 2 ** 30) return `${(bytes / 2 ** 30).toFixed(2)} GiB`
  if (bytes >= 2 ** 20) return `${(bytes / 2 ** 20).toFixed(1)} MiB`
  if (bytes >= 2 ** 10) return `${(bytes / 2 ** 10).toFixed(1)} KiB`
  return `${bytes} B`
}

/**
 * The memory budget a peer offers: reported in capabilities (the planner
 * plans around it) and enforced on job.setup. A session costs the larger of
 * its parameter bytes and the coordinator's estimate; the sessions of open
 * jobs and of setups under way count against the budget (a session shared by
 * several stages or jobs counts once). Decisions are synchronous, so two
 * concurrent setups cannot both take the last bytes.
 */
export class MemoryBudget {
  readonly budget: number
  /** Cost of each session key, the largest asked for so far. */
  private readonly costs = new Map<string, number>()
  /** Keys held by setups under way, with how many hold each. */
  private readonly reserved = new Map<string, number>()

  constructor (budget: number) {
    this.budget = budget
  }

  /** Bytes taken by `inUse` (open jobs' keys) and by setups under way. */
  committed (inUse: ReadonlySet<string>): number {
    let sum = 0
    for (const key of new Set([...inUse, ...this.reserved.keys()])) sum += this.costs.get(key) ?? 0
    return sum
  }

  /** The cost recorded for a session key (0 when never reserved). */
  cost (key: string): number {
    return this.costs.get(key) ?? 0
  }

  /** What capabilities report: the budget not committed, and never more than the host has free. */
  free (inUse: ReadonlySet<string>): number {
    return Math.max(0, Math.min(this.budget - this.committed(inUse), freemem()))
  }

  total (): number {
    return Math.min(this.budget, totalmem())
  }

  /**
   * Reserves the stages' sessions, or throws OUT_OF_MEMORY naming the stage
   * that does not fit. Returns the release function (call it once the setup
   * is over: by then an accepted job holds its keys through `inUse`).
   */
  reserve (stages: StageCost[], inUse: ReadonlySet<string>): () => void {
    const held = new Set([...inUse, ...this.reserved.keys()])
    let used = this.committed(inUse)
    const adding = new Map<string, number>()
    for (const s of stages) {
      const cost = Math.max(s.paramBytes, s.estimatedBytes ?? 0)
      const before = held.has(s.key) || adding.has(s.key) ? Math.max(this.costs.get(s.key) ?? 0, adding.get(s.key) ?? 0) : 0
      const grow = Math.max(0, cost - before)
      if (used + grow > this.budget) {
        const what = s.estimatedBytes != null && s.estimatedBytes > s.paramBytes
          ? `${fmt(cost)} (coordinator's estimate of parameters + activations; parameters alone ${fmt(s.paramBytes)})`
          : `${fmt(cost)} of parameters`
        throw new LumiereError('OUT_OF_MEMORY', `stage ${s.index + 1} needs ${what}, but this peer's memory budget (--memory) is ${fmt(this.budget)} with ${fmt(used)} already taken; plan with this peer's reported free memory, or give it a larger --memory`)
      }
      used += grow
      adding.set(s.key, Math.max(adding.get(s.key) ?? 0, cost, before))
    }
    for (const [key, cost] of adding) {
      this.costs.set(key, Math.max(this.costs.get(key) ?? 0, cost))
      this.reserved.set(key, (this.reserved.get(key) ?? 0) + 1)
    }
    let released = false
    return () => {
      if (released) return
      released = true
      for (const key of adding.keys()) {
        const n = (this.reserved.get(key) ?? 1) - 1
        if (n <= 0) this.reserved.delete(key)
        else this.reserved.set(key, n)
      }
    }
  }
}
