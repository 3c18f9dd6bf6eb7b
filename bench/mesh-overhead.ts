/**
 * Mesh overhead and pipeline efficiency of base-model generation, measured in
 * one run on this machine.
 *
 * mesh_overhead = wall time of generate({ model, local: 2, samples: 1,
 * ssr: false }) — what `lumiere generate --model small --local 2 --samples 1
 * --no-ssr` runs, minus argument parsing and writing the video — divided by
 * the wall time of the same generation in this process with ONE persistent
 * ORT session on the whole base graph. Both time everything from the model
 * name to the sampled clip: resolving the package, encoding the prompts,
 * loading the graph; then the mesh run starts two peer processes, plans,
 * deploys the stages and samples through the pipeline, and the one-process
 * run creates its session and samples. The one-process run uses the same
 * building blocks (resolveModel, TextEncoder, sample() with the DDIM
 * sampler, guidance()) and the project's session options (sessionOptions(),
 * 'basic' optimisation) with intra-op threads = the machine's cores, the same
 * thread budget the K local peers share (cores / K each). Its clip is
 * compared with the mesh's (max |Δ|) as a check that both did the same work.
 * The mesh run plans as the CLI does: with one guided sample (M = 2 passes
 * per step) on two equal peers the planner copies the model onto both
 * (coordinator/replication.ts), and `placement` says what it chose.
 *
 * pipeline_efficiency = the stages' mean busy fraction (peer-reported
 * compute time / wall time of the base phase, coordinator/pipeline.ts
 * stats(), as bench/generate.ts) of a pipeline of K = 2 stages (--stages 2)
 * and M = 8 micro-batches per step (4 samples × 2 guidance branches),
 * divided by the ideal M/(M+K−1).
 *
 * Runs alternate (one-process then mesh, mesh then one-process, …) so that
 * load from other work on the machine hits both alike; figures are medians,
 * over an even number of rounds by default, because which runs second
 * matters here (the second of a pair measured up to ~10 % slower).
 *
 *   node bench/mesh-overhead.ts [--model small] [--steps 6] [--reps 4] [--pipeline-steps 2] [--json]
 */
import { availableParallelism } from 'node:os'
import * as ort from 'onnxruntime-node'
import { generate } from '../coordinator/generate.ts'
import { guidance } from '../src/diffusion/prediction.ts'
import { sample } from '../src/diffusion/sampler.ts'
import { resolveModel } from '../src/model/builtin.ts'
import { encodeModel, loadModel } from '../src/onnx/model-io.ts'
import { fromOrt, toOrt } from '../src/onnx/ort-tensor.ts'
import { sessionOptions } from '../src/onnx/session-options.ts'
import { TextEncoder } from '../src/text/encode.ts'
import type { Tensor } from '../src/tensor/tensor.ts'
import { benchArgs, numberFlag } from './args.ts'

export const PROMPT = 'a lighthouse in a storm'
const GUIDANCE = 3
const SEED = 1

export interface OneProcessResult {
  seconds: number
  clip: Float32Array
}

function f32 (a: Float32Array, shape: number[]): Tensor {
  return { dtype: 'F32', shape, data: new Uint8Array(a.buffer, a.byteOffset, a.byteLength) }
}

/**
 * The one-process baseline: generate()'s base phase with the pipeline
 * replaced by one ORT session in this process (text-to-video, DDIM, guidance
 * w = 3, no SSR). Returns wall seconds and the clip clamped to [−1, 1] as
 * generate() returns it.
 */
export async function oneProcessGenerate (o: { model: string, steps: number, samples?: number, threads?: number }): Promise<OneProcessResult> {
  const started = performance.now()
  const pkg = await resolveModel(o.model, {})
  const { base, text, prediction } = pkg.manifest
  const encoder = await TextEncoder.load({ tokenizerJson: pkg.path(text.tokenizer), encoderOnnx: pkg.path(text.encoder) })
  let embeddings: Tensor
  try {
    embeddings = (await encoder.encode([PROMPT, ''], { length: text.length })).embeddings
  } finally {
    await encoder.close()
  }
  const row = embeddings.data.byteLength / 2
  const prompt = (i: number): ort.Tensor => toOrt({ dtype: embeddings.dtype, shape: [1, ...embeddings.shape.slice(1)], data: embeddings.data.subarray(i * row, (i + 1) * row) })
  const cond = prompt(0)
  const uncond = prompt(1)
  const session = await ort.InferenceSession.create(encodeModel(loadModel(pkg.path(base.graph))), sessionOptions(o.threads ?? availableParallelism()))
  try {
    const shape = [3, base.frames, base.height, base.width]
    const forward = async (x: Float32Array, logsnr: number, t: ort.Tensor): Promise<Float32Array> => {
      const out = await session.run({ x: toOrt(f32(x, [1, ...shape])), logsnr: toOrt(f32(Float32Array.of(logsnr), [1])), text: t })
      const v = fromOrt(out.v)
      return new Float32Array(v.data.buffer, v.data.byteOffset, v.data.byteLength / 4)
    }
    const clips = await sample({
      shape,
      samples: o.samples ?? 1,
      steps: o.steps,
      seed: SEED,
      sampler: 'ddim',
      prediction,
      predict: async (xs, logsnr) => {
        const outs: Float32Array[] = []
        for (const x of xs) {
          const vc = await forward(x, logsnr, cond)
          const vu = await forward(x, logsnr, uncond)
          outs.push(guidance(vu, vc, GUIDANCE))
        }
        return outs
      }
    })
    const clip = clips[0].map((v) => Math.max(-1, Math.min(1, v)))
    return { seconds: (performance.now() - started) / 1000, clip }
  } finally {
    await session.release()
  }
}

/** generate() over K local peer processes, timed from the call (as the CLI's run minus parsing and output). */
export async function meshGenerate (o: { model: string, steps: number, samples: number, local: number, stages?: number }): Promise<{ seconds: number, clip: Float32Array, utilisation: number[], secondsPerStep: number, placement: string }> {
  const started = performance.now()
  const r = await generate({ prompt: PROMPT, model: o.model, steps: o.steps, guidance: GUIDANCE, seed: SEED, samples: o.samples, local: o.local, stages: o.stages, ssr: false })
  const seconds = (performance.now() - started) / 1000
  const all = new Float32Array(r.base.data.buffer, r.base.data.byteOffset, r.base.data.byteLength / 4)
  return { seconds, clip: all.subarray(0, all.length / o.samples), utilisation: r.utilisation, secondsPerStep: r.secondsPerStep, placement: r.plan.placement ?? 'contiguous' }
}

export function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

export interface MeshOverhead {
  mesh_overhead: number
  model: string
  steps: number
  reps: number
  threads_one_process: number
  ratios: number[]
  mesh_s: number[]
  one_process_s: number[]
  /** Largest |mesh clip − one-process clip| (same seed): ~0 when both computed the same thing. */
  max_abs_diff: number
  /** The plan generate() chose for the mesh runs: 'replicated' (copies of the model) or a pipeline placement. */
  placement: string
}

export async function measureMeshOverhead (o: { model?: string, steps?: number, reps?: number, log?: (line: string) => void } = {}): Promise<MeshOverhead> {
  const model = o.model ?? 'small'
  const steps = o.steps ?? 6
  const reps = o.reps ?? 4
  const log = o.log ?? (() => {})
  const meshS: number[] = []
  const oneS: number[] = []
  const ratios: number[] = []
  let maxDiff = 0
  let placement = ''
  for (let i = 0; i < reps; i++) {
    // The order alternates, so that a drift in the machine's load favours neither.
    const runOne = async (): Promise<OneProcessResult> => {
      const one = await oneProcessGenerate({ model, steps })
      log(`  one process (1 session, ${availableParallelism()} threads): ${one.seconds.toFixed(1)} s`)
      return one
    }
    const runMesh = async (): ReturnType<typeof meshGenerate> => {
      const mesh = await meshGenerate({ model, steps, samples: 1, local: 2 })
      log(`  mesh (--local 2, ${mesh.placement}): ${mesh.seconds.toFixed(1)} s  (${mesh.secondsPerStep.toFixed(2)} s/step in the base phase)`)
      return mesh
    }
    let one: OneProcessResult
    let mesh: Awaited<ReturnType<typeof meshGenerate>>
    if (i % 2 === 0) { one = await runOne(); mesh = await runMesh() } else { mesh = await runMesh(); one = await runOne() }
    placement = mesh.placement
    oneS.push(one.seconds)
    meshS.push(mesh.seconds)
    ratios.push(mesh.seconds / one.seconds)
    log(`  ratio ${(mesh.seconds / one.seconds).toFixed(3)}`)
    for (let j = 0; j < one.clip.length; j++) maxDiff = Math.max(maxDiff, Math.abs(one.clip[j] - mesh.clip[j]))
  }
  return {
    mesh_overhead: Number(median(ratios).toFixed(3)),
    model,
    steps,
    reps,
    threads_one_process: availableParallelism(),
    ratios: ratios.map((r) => Number(r.toFixed(3))),
    mesh_s: meshS.map((s) => Number(s.toFixed(2))),
    one_process_s: oneS.map((s) => Number(s.toFixed(2))),
    max_abs_diff: maxDiff,
    placement
  }
}

export interface PipelineEfficiency {
  pipeline_efficiency: number
  k: number
  micro_batches: number
  busy: number[]
  efficiency: number
  ideal: number
  seconds_per_step: number
}

/** Stage busy fraction at K peers and M = 2·samples micro-batches, relative to M/(M+K−1). */
export async function measurePipelineEfficiency (o: { model?: string, steps?: number, samples?: number, k?: number, log?: (line: string) => void } = {}): Promise<PipelineEfficiency> {
  const k = o.k ?? 2
  const samples = o.samples ?? 4
  const m = 2 * samples
  // --stages K: the pipeline itself (left free, the planner would copy the model instead; replication.ts).
  const r = await meshGenerate({ model: o.model ?? 'small', steps: o.steps ?? 2, samples, local: k, stages: k })
  const efficiency = r.utilisation.reduce((a, b) => a + b, 0) / Math.max(1, r.utilisation.length)
  const ideal = m / (m + k - 1)
  o.log?.(`  K=${k} M=${m}: stage busy ${r.utilisation.map((u) => (u * 100).toFixed(0) + '%').join('/')}, efficiency ${efficiency.toFixed(3)} vs ideal ${ideal.toFixed(3)} (${r.secondsPerStep.toFixed(2)} s/step)`)
  return {
    pipeline_efficiency: Number((efficiency / ideal).toFixed(3)),
    k,
    micro_batches: m,
    busy: r.utilisation.map((u) => Number(u.toFixed(3))),
    efficiency: Number(efficiency.toFixed(3)),
    ideal: Number(ideal.toFixed(3)),
    seconds_per_step: Number(r.secondsPerStep.toFixed(3))
  }
}

if (import.meta.main) {
  const usage = 'node bench/mesh-overhead.ts [--model small] [--steps 6] [--reps 4] [--pipeline-steps 2] [--json]'
  const values = benchArgs({
    model: { type: 'string', default: 'small' },
    steps: { type: 'string', default: '6' },
    reps: { type: 'string', default: '4' },
    'pipeline-steps': { type: 'string', default: '2' },
    json: { type: 'boolean', default: false }
  }, usage)
  const steps = numberFlag(values, 'steps', usage)
  const reps = numberFlag(values, 'reps', usage)
  const pipelineSteps = numberFlag(values, 'pipeline-steps', usage)
  const log = (line: string): void => { if (values.json !== true) console.log(line) }
  log(`mesh overhead: generate --model ${values.model} --local 2 --samples 1 --no-ssr, ${values.steps} steps, vs one process`)
  const overhead = await measureMeshOverhead({ model: values.model, steps, reps, log })
  log(`mesh_overhead ${overhead.mesh_overhead} (median of ${overhead.reps}); clips differ by at most ${overhead.max_abs_diff.toExponential(2)}`)
  log('pipeline efficiency:')
  const pipeline = await measurePipelineEfficiency({ model: values.model, steps: pipelineSteps, log })
  log(`pipeline_efficiency ${pipeline.pipeline_efficiency}`)
  if (values.json === true) console.log(JSON.stringify({ ...overhead, pipeline }))
}
