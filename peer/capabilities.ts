import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { cpus, freemem, totalmem } from 'node:os'
import { dirname, join } from 'node:path'
import * as ort from 'onnxruntime-node'
import { LumiereError } from '../src/errors.ts'
import { GraphBuilder } from '../src/onnx/builder.ts'
import { encodeModel } from '../src/onnx/model-io.ts'
import { PROTOCOL_VERSION } from '../protocol/ids.ts'
import type { Executor } from './executor.ts'
import type { ResponseBody } from '../protocol/messages.ts'

export type Capabilities = ResponseBody<'capabilities'>

/** Side of the square MatMul timed for the speed figure: ~34 MFLOP, a few ms on one core. */
const BENCH_N = 256
/**
 * The figure is the best run of those in a 50 ms window (at least 3). Three
 * back-to-back runs of a few ms each could all fall in one time slice of
 * another process. In one CI run, two identical local peers started together
 * were planned as if one were over twice as fast as the other, and a job ran
 * on it alone.
 */
const BENCH_WINDOW_MS = 50
const MIN_BENCH_RUNS = 3
const MAX_BENCH_RUNS = 100

function matmulModel (n: number): Uint8Array {
  const g = new GraphBuilder('speed')
  const a = g.input('a', 'F32', [n, n])
  g.output(g.op('MatMul', [a, g.init('b', new Float32Array(n * n).fill(0.5), [n, n])], {}, 'y'))
  return encodeModel(g.model())
}

/**
 * False when onnxruntime-node's native folder is there but holds no shared
 * provider library: an install without GPU providers (npm's default here,
 * see .npmrc), where trying CUDA can only fail, and ORT prints that failure
 * as an error line on every peer start. True when the folder is not where
 * this expects it, so that CUDA is still tried.
 */
function gpuProvidersMayLoad (): boolean {
  const dir = join(dirname(createRequire(import.meta.url).resolve('onnxruntime-node')), '..', 'bin', 'napi-v6', process.platform, process.arch)
  if (!existsSync(join(dir, 'onnxruntime_binding.node'))) return true
  return ['libonnxruntime_providers_shared.so', 'onnxruntime_providers_shared.dll'].some((name) => existsSync(join(dir, name)))
}

/**
 * The execution providers that really load here, in preference order. An
 * explicit request that loads nothing is an error; by default CUDA is tried
 * where its libraries are installed, and CPU is always there.
 */
export async function detectProviders (requested?: string[]): Promise<string[]> {
  const model = matmulModel(2)
  const working: string[] = []
  for (const ep of requested ?? (gpuProvidersMayLoad() ? ['cuda', 'cpu'] : ['cpu'])) {
    if (ep === 'cpu') { working.push(ep); continue }
    try {
      const s = await ort.InferenceSession.create(model, { executionProviders: [ep] })
      await s.release()
      working.push(ep)
    } catch {}
  }
  if (working.length === 0) throw new LumiereError('BAD_ARGUMENT', `none of the execution providers ${requested?.join(', ')} loads here; try --ep cpu`)
  return working
}

const SPEED_KEY = 'capabilities-speed'
/** At most one re-measure in this long: capabilities is open to any node that connects, and must not keep the peer busy. */
const REMEASURE_MS = 2_000
let speedModel: Uint8Array | undefined

/** The speed figure, GFLOP/s, timed in the executor. The MatMul stays loaded for the next measure. */
export async function measureSpeed (executor: Executor): Promise<number> {
  speedModel ??= matmulModel(BENCH_N)
  await executor.load(SPEED_KEY, speedModel)
  const a = { dtype: 'F32' as const, shape: [BENCH_N, BENCH_N], data: new Uint8Array(BENCH_N * BENCH_N * 4) }
  let best = Infinity
  const started = performance.now()
  for (let i = 0; i < MAX_BENCH_RUNS && (i < MIN_BENCH_RUNS || performance.now() - started < BENCH_WINDOW_MS); i++) {
    best = Math.min(best, (await executor.run(SPEED_KEY, { a }, ['y'], { paced: false })).ms)
  }
  return (2 * BENCH_N ** 3) / (Math.max(best, 1e-3) * 1e6)
}

/**
 * A peer's speed figure, re-measured when asked while the executor is idle
 * (the first ask, then at most every intervalMs), keeping the best. A figure
 * taken at a busy moment (at start, beside other peers starting) would
 * otherwise rank the peer low for good; noise only ever slows a run, so the
 * best is the truest.
 */
export class SpeedFigure {
  private readonly measure: () => Promise<number>
  private readonly idle: () => boolean
  private readonly intervalMs: number
  private best: number
  private at = -Infinity
  private measuring: Promise<number> | undefined

  constructor (measure: () => Promise<number>, idle: () => boolean, first: number, intervalMs = REMEASURE_MS) {
    this.measure = measure
    this.idle = idle
    this.best = first
    this.intervalMs = intervalMs
  }

  /** Measures once in the executor; a failure here (no provider runs the MatMul) is the peer's start failing. */
  static async start (executor: Executor): Promise<SpeedFigure> {
    const measure = async (): Promise<number> => await measureSpeed(executor)
    return new SpeedFigure(measure, () => executor.idle, await measure())
  }

  /** The best figure so far, measuring nothing. */
  get value (): number {
    return this.best
  }

  /** The best figure, measured again first when due (see the class). */
  async get (): Promise<number> {
    if (this.measuring == null && this.idle() && performance.now() - this.at >= this.intervalMs) {
      // A failed re-measure (the executor closing) leaves the figure as it was.
      this.measuring = this.measure()
        .then((s) => { this.best = Math.max(this.best, s) }, () => {})
        .then(() => { this.at = performance.now(); this.measuring = undefined; return this.best })
    }
    return await (this.measuring ?? this.best)
  }
}

/** What a capabilities request answers, with memory as free now. */
export function describePeer (peerId: string, providers: string[], speed: number, cachedStages: number): Capabilities {
  return {
    peerId,
    version: PROTOCOL_VERSION,
    executionProviders: providers,
    memoryBytes: totalmem(),
    freeMemoryBytes: freemem(),
    cpus: cpus().length,
    speed,
    cachedStages
  }
}
