/**
 * Verification of untrusted peers' outputs (volunteer-grade meshes, where a
 * peer may lie). A sampled fraction of tasks — (forward pass, stage) in the
 * base pipeline (resilient-pipeline.ts), windows in the SSR scatter
 * (scatter.ts) — is computed again on a different peer and the two answers
 * compared. When they differ, the coordinator computes the task itself
 * in-process (the referee: trusted, always available, the same ORT build and
 * session options as the peers), convicts whoever disagrees with it, and the
 * caller drops the liar and redoes its work elsewhere.
 *
 * What a caught liar may already have spoiled: with rate 1 nothing (every
 * task is checked before its result is used). Below 1, a lie in an unchecked
 * task may be in the sampler's state by the time the liar is caught. The
 * Ledger remembers, per peer, the first sampler step at which an unchecked
 * result of it was used; `withRollback` keeps the sampler state of every step
 * from the oldest such step on, and when a convicted peer has unchecked work
 * in the state it rolls the sampler back to that step and resamples from
 * there (sampler.ts `resume`: bit-exact). The final output then equals an
 * honest run's, at the cost of redoing every step since the liar's first
 * unchecked contribution — with rate r and a liar holding a stage, almost
 * always since its first step, i.e. about as much as restarting the phase.
 */
import { randomInt } from 'node:crypto'
import { availableParallelism } from 'node:os'
import * as ort from 'onnxruntime-node'
import { LumiereError } from '../src/errors.ts'
import { blendInitializers } from '../src/model/style.ts'
import { decodeModel, encodeModel } from '../src/onnx/model-io.ts'
import { fromOrt, toOrt } from '../src/onnx/ort-tensor.ts'
import { sessionOptions } from '../src/onnx/session-options.ts'
import { decodeSafetensors } from '../src/tensor/safetensors.ts'
import { view } from '../src/tensor/tensor.ts'
import { narrowForWire, widenFromWire } from '../src/tensor/wire.ts'
import { mulberry32 } from '../src/util/prng.ts'
import type { SamplerState } from '../src/diffusion/sampler.ts'
import type { Tensor } from '../src/tensor/tensor.ts'
import type { WireFormat } from '../src/tensor/wire.ts'

/**
 * How far two honest answers to the same task may be apart: max |a − b| over
 * an output, relative to max |reference| of that output.
 *
 * float32: peers with the same ORT build and session options (session-options.ts:
 * 'basic', sequential) on the same CPU type compute bit-identical outputs —
 * measured for every cut and thread count — so honest answers normally differ
 * by exactly 0 (and do, in the tests). Different CPUs or execution providers
 * (AVX2 vs AVX-512 vs NEON kernels, CUDA) sum in a different order: an output
 * element then differs by accumulated rounding, a few ulps (2^-24 ≈ 6e-8
 * relative each) times √n to n for a reduction of length n — n ≤ a few
 * thousand here, and GroupNorm/softmax keep values O(max|x|) — i.e. about
 * 1e-6 … 1e-5 of the tensor's max |x|. 1e-4 is ≥ 10× above that, and 100×
 * below the lie we test with (`lumiere peer --faulty` adds 1e-2 · max|x|).
 * A lie under the tolerance goes unnoticed, but changes the result by less
 * than honest hardware differences could.
 *
 * float16 wire: each answer is rounded to float16 (relative ≤ 2^-11 ≈ 4.9e-4
 * per element) after it is computed, so tiny float32 differences can round to
 * neighbouring float16 values: two honest answers may be up to one float16
 * ulp, 2^-10 ≈ 9.8e-4 of the range, apart. 2e-3 allows that, still 5× below a
 * 1e-2 lie.
 *
 * bfloat16 wire: the same at 8 significant bits: one ulp is up to 2^-7 ≈
 * 7.8e-3 of the range. 8e-3 allows that and is still below a 1e-2 lie, but
 * only just: on a bfloat16 wire verification catches coarse lies only.
 */
export const VERIFY_TOLERANCE: Record<WireFormat, number> = { f32: 1e-4, f16: 2e-3, bf16: 8e-3 }

export function verifyTolerance (wire: WireFormat = 'f32'): number {
  return VERIFY_TOLERANCE[wire]
}

/** The worst disagreement between two answers (the output with the largest relative difference). */
export interface Comparison {
  match: boolean
  /** The output compared worst. */
  output: string
  maxDiff: number
  /** max |reference| of that output. */
  maxRef: number
  /** maxDiff / maxRef (Infinity for a missing or malformed output, or NaN where the reference has none). */
  relative: number
}

/** Compares `got` with `ref`, output by output: float32 within `tolerance` of max|ref|, other dtypes byte for byte. */
export function compareOutputs (ref: Record<string, Tensor>, got: Record<string, Tensor>, tolerance: number): Comparison {
  let worst: Comparison = { match: true, output: '', maxDiff: 0, maxRef: 0, relative: 0 }
  for (const [name, r] of Object.entries(ref)) {
    const g = got[name]
    let c: Comparison
    if (g == null || g.dtype !== r.dtype || g.shape.join() !== r.shape.join() || g.data.byteLength !== r.data.byteLength) {
      c = { match: false, output: name, maxDiff: Infinity, maxRef: 0, relative: Infinity }
    } else if (r.dtype !== 'F32') {
      const same = Buffer.from(r.data.buffer, r.data.byteOffset, r.data.byteLength).equals(Buffer.from(g.data.buffer, g.data.byteOffset, g.data.byteLength))
      c = { match: same, output: name, maxDiff: same ? 0 : Infinity, maxRef: 0, relative: same ? 0 : Infinity }
    } else {
      const a = view(r) as Float32Array
      const b = view(g) as Float32Array
      let maxDiff = 0
      let maxRef = 0
      for (let i = 0; i < a.length; i++) {
        const d = Math.abs(a[i] - b[i])
        // NaN against a number (or the reverse) is a full mismatch; NaN against NaN agrees.
        if (Number.isNaN(d)) { if (!(Number.isNaN(a[i]) && Number.isNaN(b[i]))) maxDiff = Infinity } else if (d > maxDiff) maxDiff = d
        const m = Math.abs(a[i])
        if (m > maxRef) maxRef = m
      }
      const relative = maxDiff === 0 ? 0 : maxRef > 0 ? maxDiff / maxRef : Infinity
      c = { match: relative <= tolerance, output: name, maxDiff, maxRef, relative }
    }
    if (c.relative > worst.relative || (worst.output === '' && c.output !== '')) worst = c
  }
  return worst
}

/** What convicted a peer: which task, how far its answer was from the referee's. */
export interface LiarEvidence {
  peer: string
  /** Sampler step the task belonged to (0-based). */
  step: number
  /** Base pipeline: the stage index. */
  stage?: number
  /** SSR scatter: the window task's index in its step. */
  task?: number
  /** Whose answer disagreed with it first: another peer's id, or 'coordinator' when the referee checked directly. */
  checkedBy: string
  /** The answer it was judged against: always the coordinator's in-process run. */
  judge: 'coordinator'
  output: string
  maxDiff: number
  relative: number
  tolerance: number
}

export function describeEvidence (e: LiarEvidence, phase: string): string {
  const where = e.stage != null ? `stage ${e.stage}` : `window task ${e.task ?? '?'}`
  return `peer ${e.peer} returned a wrong result (${phase} step ${e.step + 1}, ${where}, output '${e.output}': max |diff| ${e.maxDiff.toExponential(2)}, ${e.relative.toExponential(2)} of max |x| > tolerance ${e.tolerance.toExponential(0)}; checked by ${e.checkedBy}, judged by the coordinator's own run); dropped it from the job and redoing its work elsewhere`
}

export interface VerifyReport {
  /** Tasks whose answer was checked (by a second peer or the referee). */
  checks: number
  /** Checks where two answers disagreed (then judged by the referee). */
  mismatches: number
  /** Peers convicted, with the evidence. */
  liars: LiarEvidence[]
  /** Times the sampler was rolled back, and the finished steps those rollbacks discarded (recomputed). */
  rollbacks: number
  stepsRedone: number
}

/**
 * Chooses the tasks to check: each with probability `rate`. Unseeded, the
 * choice is unpredictable (a liar cannot know which answers get checked);
 * seeded for reproducible tests.
 */
export function verifyChooser (rate: number, seed?: number): (() => boolean) | undefined {
  if (!(rate >= 0 && rate <= 1)) throw new LumiereError('BAD_ARGUMENT', `--verify must be a fraction in [0, 1], got ${rate}`)
  if (rate === 0) return undefined
  const random = mulberry32(seed ?? randomInt(2 ** 32))
  return () => random() < rate
}

/** Thrown into the sampler when a convicted peer's unchecked work is in its state: `withRollback` resamples from before it. */
export class RollbackError extends Error {
  constructor () {
    super('a convicted peer\'s unchecked work is in the sampler state; rolling back')
    this.name = 'RollbackError'
  }
}

/**
 * Per job phase: the sampler step under way, every peer's first step with an
 * unchecked result used, the convicted peers not yet rolled back for, and the
 * report.
 */
export class Ledger {
  readonly report: VerifyReport = { checks: 0, mismatches: 0, liars: [], rollbacks: 0, stepsRedone: 0 }
  private current = 0
  private readonly firstUnchecked = new Map<string, number>()
  private readonly convicted = new Set<string>()
  private readonly pending = new Set<string>()

  /** The sampler step whose forward passes are under way (0-based). */
  get step (): number {
    return this.current
  }

  setStep (step: number): void {
    this.current = step
  }

  /** A result of `peer` that nobody checked was used at `step`. */
  unchecked (peer: string, step: number): void {
    const first = this.firstUnchecked.get(peer)
    if (first == null || step < first) this.firstUnchecked.set(peer, step)
  }

  /** Records a liar (once per peer). True the first time. */
  convict (evidence: LiarEvidence): boolean {
    if (this.convicted.has(evidence.peer)) return false
    this.convicted.add(evidence.peer)
    this.pending.add(evidence.peer)
    this.report.liars.push(evidence)
    return true
  }

  isConvicted (peer: string): boolean {
    return this.convicted.has(peer)
  }

  /** True when a convicted peer has unchecked work in the sampler state. */
  rollbackPending (): boolean {
    for (const p of this.pending) if (this.firstUnchecked.has(p)) return true
    return false
  }

  /**
   * The step to resample from (undefined: none needed), forgetting the
   * convicted peers' and every peer's unchecked work from that step on
   * (the resampling discards it).
   */
  takeRollback (): number | undefined {
    let to: number | undefined
    for (const p of this.pending) {
      const first = this.firstUnchecked.get(p)
      if (first != null && (to == null || first < to)) to = first
      this.firstUnchecked.delete(p)
    }
    this.pending.clear()
    if (to == null) return undefined
    for (const [p, first] of this.firstUnchecked) if (first >= to) this.firstUnchecked.delete(p)
    this.report.rollbacks++
    this.report.stepsRedone += Math.max(0, this.current - to)
    return to
  }

  /** The oldest step a rollback could go back to (Infinity: none). */
  oldest (): number {
    let oldest = Infinity
    for (const first of this.firstUnchecked.values()) oldest = Math.min(oldest, first)
    return oldest
  }
}

/** A verified work source: its ledger, and a way to wait until none of its work is in flight. */
export interface Rollbackable {
  readonly ledger: Ledger
  settle: () => Promise<void>
}

/**
 * Runs a sampler (`run(resume, record)`: call `record(state)` from its
 * onStep) so that a caught liar's unchecked work never stays in the result:
 * on a RollbackError — or a conviction that needs one after it finished — it
 * waits for the work in flight, then resamples from the step the ledger
 * names, from the state it recorded there. Without a source, just runs.
 */
export async function withRollback<T> (
  source: Rollbackable | undefined,
  start: SamplerState | undefined,
  run: (resume: SamplerState | undefined, record: (state: SamplerState) => void) => Promise<T>,
  onRollback?: (from: number, to: number) => void
): Promise<T> {
  if (source == null) return run(start, () => {})
  const { ledger } = source
  const first = start?.step ?? 0
  const snapshots = new Map<number, Float32Array[]>()
  const record = (state: SamplerState): void => {
    ledger.setStep(state.step)
    snapshots.set(state.step, state.xs.map((x) => x.slice()))
    const keep = Math.min(ledger.oldest(), state.step)
    for (const k of snapshots.keys()) if (k < keep) snapshots.delete(k)
  }
  let resume = start
  for (;;) {
    ledger.setStep(resume?.step ?? first)
    let out: T | undefined
    let rolled = false
    try {
      out = await run(resume, record)
    } catch (err) {
      if (!(err instanceof RollbackError)) throw err
      rolled = true
    }
    await source.settle()
    const from = ledger.step
    const to = ledger.takeRollback() ?? (rolled ? from : undefined)
    if (to == null) return out as T
    if (to === first) {
      resume = start
    } else {
      const xs = snapshots.get(to)
      if (xs == null) throw new LumiereError('INTERNAL', `no sampler state kept for step ${to} to roll back to`)
      resume = { step: to, xs }
    }
    onRollback?.(from, to)
  }
}

/** A graph the referee can run: its bytes, key, and the style blended into it (stylized stages). */
export interface RefereeGraph {
  hash: string
  bytes: Uint8Array
  outputs?: string[]
  style?: { hash: string, alpha: number, bytes: Uint8Array }
}

/**
 * The coordinator's own, trusted, answer: the graph run in-process with the
 * peers' session options on inputs rounded as the wire rounded the peers'.
 * Sessions are kept per graph until close(); runs go one at a time.
 */
export class Referee {
  private readonly wire: WireFormat
  private readonly sessions = new Map<string, Promise<ort.InferenceSession>>()
  private queue: Promise<unknown> = Promise.resolve()
  runs = 0

  constructor (wire: WireFormat = 'f32') {
    this.wire = wire
  }

  async run (graph: RefereeGraph, feeds: Record<string, Tensor>): Promise<Record<string, Tensor>> {
    const result = this.queue.then(async () => {
      const session = await this.session(graph)
      const rounded = widenFromWire(Object.fromEntries(Object.entries(feeds).map(([n, t]) => [n, narrowForWire(t, this.wire)])), this.wire)
      const ortFeeds: Record<string, ort.Tensor> = {}
      for (const [name, t] of Object.entries(rounded)) ortFeeds[name] = toOrt(t)
      const out = await session.run(ortFeeds, graph.outputs ?? session.outputNames)
      this.runs++
      // Copied: ORT's output buffers are its own.
      return Object.fromEntries(Object.entries(out).map(([n, t]) => {
        const x = fromOrt(t)
        return [n, { ...x, data: x.data.slice() }]
      })) as Record<string, Tensor>
    })
    this.queue = result.catch(() => {})
    return result
  }

  async close (): Promise<void> {
    const sessions = [...this.sessions.values()]
    this.sessions.clear()
    await Promise.allSettled(sessions.map(async (s) => (await s).release()))
  }

  private async session (graph: RefereeGraph): Promise<ort.InferenceSession> {
    const key = graph.style == null ? graph.hash : `${graph.hash}/${graph.style.hash}/${graph.style.alpha}`
    let s = this.sessions.get(key)
    if (s == null) {
      const { style } = graph
      const bytes = style == null ? graph.bytes : encodeModel(blendInitializers(decodeModel(graph.bytes, 'stage'), decodeSafetensors(style.bytes).tensors, style.alpha, 'this stage'))
      s = ort.InferenceSession.create(bytes, sessionOptions(availableParallelism()))
      s.catch(() => { this.sessions.delete(key) })
      this.sessions.set(key, s)
    }
    return s
  }
}
