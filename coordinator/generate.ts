import { LumiereError } from '../src/errors.ts'
import { replaceKnown } from '../src/diffusion/known-region.ts'
import { guidance } from '../src/diffusion/prediction.ts'
import { modelInput } from '../src/media/conditions.ts'
import { checkAlpha, loadStyle } from '../src/model/style.ts'
import { chooseApplication, isConditional, knownRegion, loadConditioning, loadInitVideo } from './applications.ts'
import { sample } from '../src/diffusion/sampler.ts'
import { resolveModel } from '../src/model/builtin.ts'
import { buildDagProbed } from '../src/onnx/graph.ts'
import { loadModel } from '../src/onnx/model-io.ts'
import { TextEncoder } from '../src/text/encode.ts'
import { view } from '../src/tensor/tensor.ts'
import { CheckpointWriter, resumeState } from './checkpoint.ts'
import { ResilientPipeline } from './resilient-pipeline.ts'
import { openMesh, withMesh } from './mesh-session.ts'
import { Scatter } from './scatter.ts'
import { upscaleClips } from './upscale.ts'
import { describeEvidence, withRollback } from './verify.ts'
import type { VerifyReport } from './verify.ts'
import type { Application, ApplicationInputs } from './applications.ts'
import type { Checkpoint, JobSpec } from './checkpoint.ts'
import type { MeshOptions, MeshSession } from './mesh-session.ts'
import type { PeerInfo } from './coordinator.ts'
import type { LivenessOptions, PoolChange } from './liveness.ts'
import type { KnownRegion } from '../src/diffusion/known-region.ts'
import type { Style } from '../src/model/style.ts'
import type { ModelProto } from '../src/onnx/proto.ts'
import type { Conditioning } from '../src/media/conditions.ts'
import type { Plan } from './plan.ts'
import type { ModelPackage } from '../src/model/package.ts'
import type { Tensor } from '../src/tensor/tensor.ts'
import type { WireFormat } from '../src/tensor/wire.ts'

export interface GenerateOptions extends MeshOptions, ApplicationInputs {
  prompt: string
  negative?: string
  /** Built-in preset name or package folder. */
  model: string
  frames?: number
  steps: number
  guidance: number
  seed: number
  samples: number
  sampler?: 'ddim' | 'ancestral'
  thresholding?: boolean
  /**
   * Stages to cut the base model into. Default: one per peer, following the
   * pool (a peer lost merges its stage into the others'; a peer that joins
   * gets one of its own from the next step). A number given stays fixed,
   * fewer while fewer peers are left; joined peers then take stages only
   * where the planner prefers them.
   */
  stages?: number
  /** Run the package's SSR after the base model (default: when the package has one). */
  ssr?: boolean
  ssrWindow?: number
  ssrStride?: number
  ssrWeighting?: 'uniform' | 'tapered'
  /** Deadline for each forward pass over the mesh. */
  timeoutMs?: number
  /** Stylized generation: a safetensors file of spatial weights, blended on the peers as α·W_style + (1 − α)·W. */
  style?: string
  styleAlpha?: number
  /** Write the sampler state into this folder every `every` steps (see --resume). */
  checkpoint?: { dir: string, every: number }
  /** Finish a job from a checkpoint: its phase and step are skipped, not computed again. */
  resumeFrom?: Checkpoint
  /** Keep the known region of image-to-video, inpainting and cinemagraphs at every step (default on for those). */
  keepKnown?: boolean
  /** 'f16' or 'bf16' halves the bytes of every activation on the wire, at a relative rounding error ≤ 2^-11 or 2^-8 per element (src/tensor/wire.ts). */
  wire?: WireFormat
  /**
   * Fraction in [0, 1] of tasks — (forward pass, stage) of the base model, SSR
   * windows — recomputed on a different peer and compared; a peer caught
   * lying is dropped and its work redone (verify.ts). Default 0.
   */
  verify?: number
  /** Send SSR windows that run long to an idle peer too; the first answer wins. */
  hedge?: boolean
  /** Heartbeats to the peers while the job runs (liveness.ts); a peer that misses them is dropped and its work redone. */
  liveness?: LivenessOptions
  onStep?: (progress: StepProgress) => void
  /** Warnings, a lost peer among them. */
  onWarning?: (message: string) => void
  /** Every change of the job's peers (lost or joined) and the re-plan it caused. */
  onReplan?: (notice: ReplanNotice) => void
}

export interface ReplanNotice extends PoolChange {
  phase: 'base' | 'ssr'
  /** The step (0-based) that runs on the new plan: redone in part after a loss, whole after a join. */
  step: number
  /** One line for people, e.g. "peer X joined; re-planned onto 3 peer(s) in 3 stage(s) from step 4" (or "onto 3 peer(s), each with a copy of the model,"). */
  message: string
}

export interface StepProgress {
  phase: 'base' | 'ssr'
  step: number
  steps: number
  /** Base phase: fraction of wall time each stage spent computing so far. */
  utilisation: number[]
  elapsedMs: number
  /** Base phase: wall ms since the phase began (the denominator of utilisation). */
  phaseMs?: number
  /** Base phase: the plan the pipeline runs. */
  plan?: Plan
}

export interface GenerateResult {
  /** float32 [B, 3, T, H, W] in [−1, 1]: the SSR output when it ran, else the base clip. */
  video: Tensor
  /** The base model's clip, float32 [B, 3, T, h, w]. */
  base: Tensor
  fps: number
  plan: Plan
  seconds: number
  secondsPerStep: number
  utilisation: number[]
  /** Forward passes of the base model (micro-batches): steps × samples × guidance branches. */
  forwardPasses: number
  /** SSR windows each peer computed, by peer id. */
  ssrWindows?: Record<string, number>
  /** With `verify`: checks made and liars caught, per phase. */
  verification?: { base?: VerifyReport, ssr?: VerifyReport }
}

/** The middle of the paper's range [0.5, 1]. */
export const DEFAULT_STYLE_ALPHA = 0.75

/** The plan of a result that ran nothing on the mesh (strength 0, or a job resumed past its base phase). */
const NO_PLAN: Plan = { stages: [], route: [], boundaries: [], totals: { flops: 0, paramBytes: 0, wireBytes: 0 } }

interface Prompts {
  cond: Tensor
  uncond: Tensor
}

/** The base graph and the style blended into it on the peers. */
interface BaseModel {
  model: ModelProto
  style?: Style
}

/** What the user's media contribute to one run: the conditioning fed to a 7-channel model, the pixels kept, the SDEdit start. */
interface Inputs {
  app: Application
  conditioning?: Conditioning
  keep: boolean
  init?: Float32Array
  tStart?: number
}

/**
 * Text-to-video: encodes the prompts, runs the base STUNet pipelined over the
 * mesh, then the SSR on overlapping windows scattered over the same peers.
 */
export async function generate (options: GenerateOptions): Promise<GenerateResult> {
  if (!Number.isInteger(options.steps) || options.steps < 1) throw new LumiereError('BAD_ARGUMENT', `--steps must be a whole number ≥ 1, got ${options.steps}`)
  if (!Number.isInteger(options.samples) || options.samples < 1) throw new LumiereError('BAD_ARGUMENT', `--samples must be a whole number ≥ 1, got ${options.samples}`)
  const app = chooseApplication(options)
  const pkg = await resolveModel(options.model, { frames: options.frames, conditional: isConditional(app) })
  if (pkg.manifest.shapeOnly) throw new LumiereError('BAD_ARGUMENT', `model ${pkg.manifest.name} is shape-only (no weights): use it with 'lumiere plan', not generate`)
  const runSsr = options.ssr ?? pkg.manifest.ssr != null
  if (runSsr && pkg.manifest.ssr == null) throw new LumiereError('BAD_ARGUMENT', `model ${pkg.manifest.name} has no SSR graph; use --no-ssr`)
  const { base: b, ssr } = pkg.manifest
  const outSize = runSsr && ssr != null ? { frames: b.frames, height: ssr.height, width: ssr.width } : { frames: b.frames, height: b.height, width: b.width }
  if (app === 'video-to-video' && options.strength === 0) {
    // Strength 0 adds no noise, so there is nothing to denoise: the answer is the input, at the output size.
    return identity(await loadInitVideo(options, outSize, options.signal), outSize, options.samples, pkg)
  }
  // The peers start (processes, connections) while the inputs are read and the prompts encoded.
  const opening = openMesh(options)
  // Its failure is reported when it is awaited (withMesh); until then it must not count as unhandled.
  opening.catch(() => {})
  let prepared: Awaited<ReturnType<typeof prepare>>
  try {
    prepared = await prepare(app, pkg, options)
  } catch (err) {
    // Bad inputs, prompts, style or checkpoint folder: the mesh started for nothing.
    await opening.then(async (mesh) => { await mesh.close() }, () => {})
    throw err
  }
  const { inputs, prompts, baseModel, style, saver } = prepared

  return withMesh(options, async (mesh) => {
    const started = performance.now()
    // The SSR runs on the peers the base phase ended with: those lost are gone, those that joined are in.
    const { pool, ...base } = options.resumeFrom?.record.phase === 'ssr'
      ? { ...resumedBase(options.resumeFrom, pkg), pool: mesh.peers }
      : await runBase(mesh, pkg, { model: baseModel, style }, prompts, inputs, options, started, saver)
    if (!runSsr) {
      await saver?.flush()
      return { ...base, video: base.base, seconds: (performance.now() - started) / 1000 }
    }
    const known = inputs.keep ? knownRegion(await loadConditioning(app, options, outSize, options.signal)) : undefined
    const { video, windows, verification } = await runSsrPhase({ coordinator: mesh.coordinator, peers: pool }, pkg, prompts, base.base, known, options, started, saver)
    await saver?.flush()
    return { ...base, video, ssrWindows: windows, ...(verification != null ? { verification: { ...base.verification, ssr: verification } } : {}), seconds: (performance.now() - started) / 1000 }
  }, opening)
}

/** What the base phase needs from the coordinator's side: conditioning inputs, encoded prompts, the graph, the style, the checkpoint writer. */
async function prepare (app: Application, pkg: ModelPackage, options: GenerateOptions) {
  const { base: b } = pkg.manifest
  const inputs = await loadInputs(app, pkg, options, { frames: b.frames, height: b.height, width: b.width })
  const prompts = await encodePrompts(pkg, options.prompt, options.negative ?? '', options.onWarning)
  const baseModel = loadModel(pkg.path(b.graph))
  const style = options.style == null ? undefined : { tensors: await loadStyle(options.style, baseModel), alpha: checkAlpha(options.styleAlpha ?? DEFAULT_STYLE_ALPHA) }
  const saver = options.checkpoint == null ? undefined : await CheckpointWriter.open(options.checkpoint.dir, options.checkpoint.every, jobSpec(options))
  return { inputs, prompts, baseModel, style, saver }
}

/** The options a checkpoint records, so that --resume needs nothing else. */
function jobSpec (o: GenerateOptions): JobSpec {
  const { prompt, negative, model, frames, steps, guidance, seed, samples, sampler, thresholding, ssr, ssrWindow, ssrStride, image, video, mask, cinemagraph, strength, keepKnown, style, styleAlpha } = o
  return JSON.parse(JSON.stringify({ prompt, negative, model, frames, steps, guidance, seed, samples, sampler, thresholding, ssr, ssrWindow, ssrStride, image, video, mask, cinemagraph, strength, keepKnown, style, styleAlpha })) as JobSpec
}

/** A job resumed in its SSR phase: the base clip comes from the checkpoint. */
function resumedBase (checkpoint: Checkpoint, pkg: ModelPackage): Omit<GenerateResult, 'video' | 'seconds'> {
  const base = checkpoint.tensors.base
  if (base == null) throw new LumiereError('BAD_ARGUMENT', 'checkpoint of the SSR phase lacks the base clip')
  return { base, fps: pkg.manifest.fps, plan: NO_PLAN, secondsPerStep: 0, utilisation: [], forwardPasses: 0 }
}

export interface UpscaleVideoOptions extends MeshOptions, Pick<GenerateOptions, 'prompt' | 'negative' | 'model' | 'steps' | 'guidance' | 'seed' | 'sampler' | 'thresholding' | 'ssrWindow' | 'ssrStride' | 'ssrWeighting' | 'timeoutMs' | 'wire' | 'verify' | 'hedge' | 'liveness' | 'onStep' | 'onWarning' | 'onReplan'> {
  /** The low-res video (MP4, GIF, PNG folder, safetensors), fitted to the SSR's input size and `frames`. */
  video: string
  /** Frames to upscale (default: the model's base frame count); at least the SSR window. */
  frames?: number
}

/** The SSR alone: upscales a user's video on windows scattered over the mesh. */
export async function upscaleVideo (options: UpscaleVideoOptions): Promise<{ video: Tensor, fps: number, seconds: number, ssrWindows: Record<string, number> }> {
  const pkg = await resolveModel(options.model)
  const ssr = pkg.manifest.ssr
  if (ssr == null) throw new LumiereError('BAD_ARGUMENT', `model ${pkg.manifest.name} has no SSR graph to upscale with`)
  if (pkg.manifest.shapeOnly) throw new LumiereError('BAD_ARGUMENT', `model ${pkg.manifest.name} is shape-only (no weights)`)
  const frames = options.frames ?? pkg.manifest.base.frames
  const low = await loadInitVideo({ video: options.video }, { frames, height: ssr.height / ssr.scale, width: ssr.width / ssr.scale }, options.signal)
  const prompts = await encodePrompts(pkg, options.prompt, options.negative ?? '', options.onWarning)
  return withMesh(options, async (mesh) => {
    const started = performance.now()
    const opts = { ...options, samples: 1 }
    const { video, windows } = await runSsrPhase(mesh, pkg, prompts, f32(low, [1, 3, frames, ssr.height / ssr.scale, ssr.width / ssr.scale]), undefined, opts, started)
    return { video, fps: pkg.manifest.fps, seconds: (performance.now() - started) / 1000, ssrWindows: windows }
  })
}

async function loadInputs (app: Application, pkg: ModelPackage, options: GenerateOptions, size: { frames: number, height: number, width: number }): Promise<Inputs> {
  const conditioning = pkg.manifest.base.conditional ? await loadConditioning(app, options, size, options.signal) : undefined
  const keep = isConditional(app) && options.keepKnown !== false
  if (app !== 'video-to-video') return { app, conditioning, keep }
  // Strength 1 starts from pure noise: the result does not depend on the input at all.
  if (options.strength === 1) return { app, conditioning, keep }
  return { app, conditioning, keep, init: await loadInitVideo(options, size, options.signal), tStart: options.strength }
}

/** The result of a run that needs no sampling. */
function identity (clip: Float32Array, size: { frames: number, height: number, width: number }, samples: number, pkg: ModelPackage): GenerateResult {
  const video = stack(Array.from({ length: samples }, () => clip), [3, size.frames, size.height, size.width])
  return { video, base: video, fps: pkg.manifest.fps, plan: NO_PLAN, seconds: 0, secondsPerStep: 0, utilisation: [], forwardPasses: 0 }
}

async function encodePrompts (pkg: ModelPackage, prompt: string, negative: string, warn?: (m: string) => void): Promise<Prompts> {
  const { text } = pkg.manifest
  const encoder = await TextEncoder.load({ tokenizerJson: pkg.path(text.tokenizer), encoderOnnx: pkg.path(text.encoder) })
  try {
    const encoded = await encoder.encode([prompt, negative], { length: text.length })
    if (encoded.truncated[0]) warn?.(`the prompt is longer than the text encoder's ${text.length} tokens; it was truncated`)
    if (encoded.truncated[1]) warn?.(`the negative prompt is longer than the text encoder's ${text.length} tokens; it was truncated`)
    const [cond, uncond] = splitBatch(encoded.embeddings)
    return { cond, uncond }
  } finally {
    await encoder.close()
  }
}

/** The base STUNet as a pipeline; each sample's two guidance branches are micro-batches in flight together. */
async function runBase (mesh: MeshSession, pkg: ModelPackage, base: BaseModel, prompts: Prompts, inputs: Inputs, options: GenerateOptions, started: number, saver?: CheckpointWriter): Promise<Omit<GenerateResult, 'video' | 'seconds'> & { pool: PeerInfo[] }> {
  const { model } = base
  const dag = await buildDagProbed(model, { dims: { batch: 1 } })
  const shape = [3, pkg.manifest.base.frames, pkg.manifest.base.height, pkg.manifest.base.width]
  // The step whose forward passes are under way, for the re-plan messages.
  let atStep = resumeState(options.resumeFrom, 'base')?.step ?? 0
  const pipeline = new ResilientPipeline(mesh.coordinator, model, dag, mesh.peers, {
    stages: options.stages,
    // Every sample's guidance branches are in flight together each step.
    microBatches: options.samples * (options.guidance === 1 ? 1 : 2),
    signal: options.signal,
    wire: options.wire,
    style: base.style,
    liveness: options.liveness,
    onReplan: (change) => { replanned(options, 'base', change, atStep) },
    onWarning: options.onWarning,
    verify: options.verify,
    onLiar: (evidence) => { options.onWarning?.(describeEvidence(evidence, 'base')) }
  })
  try {
    await pipeline.plan()
    const phaseStart = performance.now()
    let forwardPasses = 0
    const { conditioning } = inputs
    const known = inputs.keep && conditioning != null ? knownRegion(conditioning) : undefined
    const forward = async (x: Float32Array, logsnr: number, text: Tensor): Promise<Float32Array> => {
      forwardPasses++
      const input = conditioning == null ? f32(x, [1, ...shape]) : clipTensor(modelInput({ data: x, shape }, conditioning.condition, conditioning.mask))
      const out = await pipeline.run({ x: input, logsnr: f32(Float32Array.of(logsnr), [1]), text }, { signal: options.signal, timeoutMs: options.timeoutMs })
      return view(out.v) as Float32Array
    }
    const utilisation = async (): Promise<number[]> => {
      const wall = performance.now() - phaseStart
      return (await pipeline.stats()).map((s) => wall > 0 ? Math.min(1, s.busyMs / wall) : 0)
    }
    const clips = await withRollback(options.verify ? pipeline : undefined, resumeState(options.resumeFrom, 'base'), async (resume, record) => sample({
      shape,
      samples: options.samples,
      steps: options.steps,
      seed: options.seed,
      sampler: options.sampler ?? 'ddim',
      prediction: pkg.manifest.prediction,
      thresholding: options.thresholding,
      signal: options.signal,
      init: inputs.init == null ? undefined : Array.from({ length: options.samples }, () => inputs.init as Float32Array),
      tStart: inputs.tStart,
      resume,
      project: known == null ? undefined : (xs, level, step, final) => { for (const [b, x] of xs.entries()) replaceKnown(x, known, level, options.seed, step, b, final) },
      predict: async (xs, logsnr, step) => {
        atStep = step
        // A step boundary: peers that joined come into use here, never mid-step.
        pipeline.beginStep()
        return Promise.all(xs.map(async (x) => {
          if (options.guidance === 1) return forward(x, logsnr, prompts.cond)
          const [vc, vu] = await Promise.all([forward(x, logsnr, prompts.cond), forward(x, logsnr, prompts.uncond)])
          return guidance(vu, vc, options.guidance)
        }))
      },
      onStep: (step, steps, state) => {
        record(state)
        saver?.step('base', step, steps, state.xs, [1, ...shape], options.stages ?? mesh.peers.length)
        if (options.onStep == null) return
        void Promise.all([utilisation(), pipeline.plan()]).then(([u, plan]) => options.onStep?.({ phase: 'base', step, steps, utilisation: u, elapsedMs: performance.now() - started, phaseMs: performance.now() - phaseStart, plan }), () => {})
      }
    }), (from, to) => { options.onWarning?.(rollbackMessage('base', from, to)) })
    const seconds = (performance.now() - phaseStart) / 1000
    return { base: stack(clips, shape), fps: pkg.manifest.fps, plan: await pipeline.plan(), secondsPerStep: seconds / options.steps, utilisation: await utilisation().catch(() => []), forwardPasses, ...(options.verify ? { verification: { base: pipeline.verification() } } : {}), pool: pipeline.pool() }
  } finally {
    await pipeline.close()
  }
}

/** The SSR on overlapping windows, scattered over every peer and fused by MultiDiffusion. */
type SsrPhaseOptions = Pick<GenerateOptions, 'ssrWindow' | 'ssrStride' | 'ssrWeighting' | 'guidance' | 'steps' | 'seed' | 'sampler' | 'thresholding' | 'signal' | 'timeoutMs' | 'wire' | 'onStep' | 'resumeFrom' | 'verify' | 'hedge' | 'liveness' | 'onWarning' | 'onReplan'>

async function runSsrPhase (mesh: MeshSession, pkg: ModelPackage, prompts: Prompts, lowres: Tensor, known: KnownRegion | undefined, options: SsrPhaseOptions, started: number, saver?: CheckpointWriter): Promise<{ video: Tensor, windows: Record<string, number>, verification?: VerifyReport }> {
  const ssr = pkg.manifest.ssr
  if (ssr == null) throw new LumiereError('INTERNAL', 'no SSR in the package')
  const model = loadModel(pkg.path(ssr.graph))
  const dag = await buildDagProbed(model, { dims: { batch: 1 } })
  // The step whose windows are under way (upscaleClips asks for one step's windows at a time).
  let atStep = resumeState(options.resumeFrom, 'ssr')?.step ?? 0
  const scatter = await Scatter.open(mesh.coordinator, model, dag, mesh.peers, {
    signal: options.signal,
    taskTimeoutMs: options.timeoutMs,
    wire: options.wire,
    verify: options.verify,
    hedge: options.hedge,
    liveness: options.liveness,
    onReplan: (change) => { replanned(options, 'ssr', change, atStep) },
    onWarning: options.onWarning,
    onLiar: (evidence) => { options.onWarning?.(describeEvidence(evidence, 'SSR')) }
  })
  try {
    const [samples, , frames] = lowres.shape
    const size = lowres.data.byteLength / 4 / samples
    const all = view(lowres) as Float32Array
    const clips = await withRollback(options.verify ? scatter : undefined, resumeState(options.resumeFrom, 'ssr'), async (resume, record) => upscaleClips({
      lowres: Array.from({ length: samples }, (_, b) => all.subarray(b * size, (b + 1) * size)),
      frames,
      height: ssr.height,
      width: ssr.width,
      scale: ssr.scale,
      window: options.ssrWindow ?? ssr.window,
      stride: options.ssrStride ?? ssr.stride,
      weighting: options.ssrWeighting,
      augLogsnr: ssr.augLogsnr,
      cond: prompts.cond,
      uncond: prompts.uncond,
      guidance: options.guidance,
      steps: options.steps,
      seed: options.seed,
      sampler: options.sampler,
      prediction: pkg.manifest.prediction,
      thresholding: options.thresholding,
      runWindows: async (tasks) => scatter.run(tasks),
      known,
      signal: options.signal,
      resume,
      onStep: (step, steps, state) => {
        record(state)
        atStep = step
        saver?.step('ssr', step, steps, state.xs, [1, 3, frames, ssr.height, ssr.width], mesh.peers.length, lowres)
        options.onStep?.({ phase: 'ssr', step, steps, utilisation: [], elapsedMs: performance.now() - started })
      }
    }), (from, to) => { options.onWarning?.(rollbackMessage('SSR', from, to)) })
    return { video: stack(clips, [3, frames, ssr.height, ssr.width]), windows: scatter.counts(), ...(options.verify ? { verification: scatter.verification() } : {}) }
  } finally {
    await scatter.close()
  }
}

/** Tells the caller of a change of the peers: every change to onReplan, a loss also to onWarning. */
function replanned (options: Pick<GenerateOptions, 'onWarning' | 'onReplan'>, phase: 'base' | 'ssr', change: PoolChange, step: number): void {
  const message = describeChange(phase, change, step)
  if (change.lost.length > 0) options.onWarning?.(message)
  options.onReplan?.({ ...change, phase, step, message })
}

function describeChange (phase: 'base' | 'ssr', change: PoolChange, step: number): string {
  const at = `step ${step + 1}`
  if (phase === 'base') {
    const onto = change.copies === true
      ? `re-planned onto ${change.peers} peer(s), each with a copy of the model,`
      : `re-planned onto ${change.peers} peer(s) in ${change.stages ?? 0} stage(s)`
    return change.lost.length > 0
      ? `lost peer ${change.lost.join(', ')} (${change.why ?? 'gone'}); ${onto} and redoing the lost work of ${at}`
      : `peer ${change.joined.join(', ')} joined; ${onto} from ${at}`
  }
  return change.lost.length > 0
    ? `lost peer ${change.lost.join(', ')} (${change.why ?? 'gone'}); its SSR windows go to the ${change.peers} peer(s) left, from ${at} on`
    : `peer ${change.joined.join(', ')} joined; SSR windows go to ${change.peers} peer(s) from ${at}`
}

function rollbackMessage (phase: string, from: number, to: number): string {
  return `a convicted peer's unchecked work entered the ${phase} sampler state at step ${to + 1}: rolled back and resampling from there (${from - to} finished step(s) discarded)`
}

function clipTensor (clip: { data: Float32Array, shape: readonly number[] }): Tensor {
  return f32(clip.data, [...clip.shape])
}

function f32 (a: Float32Array, shape: number[]): Tensor {
  return { dtype: 'F32', shape, data: new Uint8Array(a.buffer, a.byteOffset, a.byteLength) }
}

/** Rows of an [N, ...] tensor as [1, ...] views. */
function splitBatch (t: Tensor): Tensor[] {
  const [n, ...rest] = t.shape
  const row = t.data.byteLength / n
  return Array.from({ length: n }, (_, i) => ({ dtype: t.dtype, shape: [1, ...rest], data: t.data.subarray(i * row, (i + 1) * row) }))
}

/** Stacks per-sample clips into [B, ...shape], clamped to [−1, 1]. */
function stack (clips: Float32Array[], shape: number[]): Tensor {
  const size = clips[0]?.length ?? 0
  const out = new Float32Array(size * clips.length)
  clips.forEach((c, b) => { for (let i = 0; i < size; i++) out[b * size + i] = Math.max(-1, Math.min(1, c[i])) })
  return f32(out, [clips.length, ...shape])
}
