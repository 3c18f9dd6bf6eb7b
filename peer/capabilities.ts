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

/** Capabilities with a speed figure measured by timing a MatMul in the executor. */
export async function measureCapabilities (executor: Executor, providers: string[], peerId: string): Promise<Capabilities> {
  const key = 'capabilities-speed'
  await executor.load(key, matmulModel(BENCH_N))
  const a = { dtype: 'F32' as const, shape: [BENCH_N, BENCH_N], data: new Uint8Array(BENCH_N * BENCH_N * 4) }
  let best = Infinity
  const started = performance.now()
  for (let i = 0; i < MAX_BENCH_RUNS && (i < MIN_BENCH_RUNS || performance.now() - started < BENCH_WINDOW_MS); i++) {
    best = Math.min(best, (await executor.run(key, { a }, ['y'], { paced: false })).ms)
  }
  await executor.release(key)
  return {
    peerId,
    version: PROTOCOL_VERSION,
    executionProviders: providers,
    memoryBytes: totalmem(),
    freeMemoryBytes: freemem(),
    cpus: cpus().length,
    speed: (2 * BENCH_N ** 3) / (Math.max(best, 1e-3) * 1e6),
    cachedStages: 0
  }
}
