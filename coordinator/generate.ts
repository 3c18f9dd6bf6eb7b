import { LumiereError } from '../src/errors.ts'
import { guidance } from '../src/diffusion/prediction.ts'
import { sample } from '../src/diffusion/sampler.ts'
import { resolveModel } from '../src/model/builtin.ts'
import { buildDagProbed } from '../src/onnx/graph.ts'
import { loadModel } from '../src/onnx/model-io.ts'
import { TextEncoder } from '../src/text/encode.ts'
import { view } from '../src/tensor/tensor.ts'
import { Coordinator } from './coordinator.ts'
import { deploy } from './deploy.ts'
import { startLocalMesh } from './local-mesh.ts'
import type { LocalMesh } from './local-mesh.ts'
import type { Plan } from './plan.ts'
import type { TransportName } from '../src/mesh/node.ts'
import type { Tensor } from '../src/tensor/tensor.ts'

export interface GenerateOptions {
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
  local?: number
  peers?: string[]
  stages?: number
  transport?: TransportName
  /** Deadline for each forward pass over the mesh. */
  timeoutMs?: number
  signal?: AbortSignal
  onStep?: (progress: StepProgress) => void
  onWarning?: (message: string) => void
}

export interface StepProgress {
  step: number
  steps: number
  /** Fraction of wall time each stage spent computing so far. */
  utilisation: number[]
  elapsedMs: number
}

export interface GenerateResult {
  /** float32 [B, 3, T, H, W] in [−1, 1] */
  video: Tensor
  fps: number
  plan: Plan
  seconds: number
  secondsPerStep: number
  utilisation: number[]
  /** Forward passes run over the mesh (micro-batches): steps × samples × guidance branches. */
  forwardPasses: number
}

/**
 * Text-to-video: encodes the prompts, places the base STUNet on the mesh and
 * runs the sampler over it. Each sample's conditional and unconditional
 * passes are separate micro-batches in flight together, so with K stages up
 * to K of them compute at once.
 */
export async function generate (options: GenerateOptions): Promise<GenerateResult> {
  if ((options.peers == null) === (options.local == null)) throw new LumiereError('BAD_ARGUMENT', 'give either --local K or --peers ADDR[,ADDR…]')
  if (!Number.isInteger(options.steps) || options.steps < 1) throw new LumiereError('BAD_ARGUMENT', `--steps must be a whole number ≥ 1, got ${options.steps}`)
  if (!Number.isInteger(options.samples) || options.samples < 1) throw new LumiereError('BAD_ARGUMENT', `--samples must be a whole number ≥ 1, got ${options.samples}`)
  const pkg = await resolveModel(options.model, { frames: options.frames })
  const { base, text } = pkg.manifest
  if (pkg.manifest.shapeOnly) throw new LumiereError('BAD_ARGUMENT', `model ${pkg.manifest.name} is shape-only (no weights): use it with 'lumiere plan', not generate`)

  const encoder = await TextEncoder.load({ tokenizerJson: pkg.path(text.tokenizer), encoderOnnx: pkg.path(text.encoder) })
  const encoded = await encoder.encode([options.prompt, options.negative ?? ''], { length: text.length }).finally(async () => { await encoder.close() })
  if (encoded.truncated[0]) options.onWarning?.(`the prompt is longer than the text encoder's ${text.length} tokens; it was truncated`)
  if (encoded.truncated[1]) options.onWarning?.(`the negative prompt is longer than the text encoder's ${text.length} tokens; it was truncated`)
  const [cond, uncond] = splitBatch(encoded.embeddings)

  const model = loadModel(pkg.path(base.graph))
  const dag = await buildDagProbed(model, { dims: { batch: 1 } })
  const shape = [3, base.frames, base.height, base.width]
  let mesh: LocalMesh | undefined
  const coordinator = await Coordinator.start()
  try {
    if (options.local != null) mesh = await startLocalMesh(options.local, { transport: options.transport, signal: options.signal })
    const addrs = mesh != null ? mesh.peers.map((p) => p.addrs[0]) : (options.peers ?? [])
    const peers = await coordinator.connect(addrs, { signal: options.signal })
    const { plan, pipeline } = await deploy(coordinator, model, dag, peers, options.stages ?? peers.length, options.signal)
    try {
      const started = performance.now()
      let forwardPasses = 0
      const forward = async (x: Float32Array, logsnr: number, textEmb: Tensor): Promise<Float32Array> => {
        forwardPasses++
        const out = await pipeline.run({
          x: { dtype: 'F32', shape: [1, ...shape], data: bytes(x) },
          logsnr: { dtype: 'F32', shape: [1], data: bytes(Float32Array.of(logsnr)) },
          text: textEmb
        }, { signal: options.signal, timeoutMs: options.timeoutMs })
        return view(out.v) as Float32Array
      }
      const utilisation = async (): Promise<number[]> => {
        const wall = performance.now() - started
        return (await pipeline.stats({ signal: options.signal })).map((s) => wall > 0 ? Math.min(1, s.busyMs / wall) : 0)
      }
      const clips = await sample({
        shape,
        samples: options.samples,
        steps: options.steps,
        seed: options.seed,
        sampler: options.sampler ?? 'ddim',
        prediction: pkg.manifest.prediction,
        thresholding: options.thresholding,
        signal: options.signal,
        predict: async (xs, logsnr) => Promise.all(xs.map(async (x) => {
          if (options.guidance === 1) return forward(x, logsnr, cond)
          const [vc, vu] = await Promise.all([forward(x, logsnr, cond), forward(x, logsnr, uncond)])
          return guidance(vu, vc, options.guidance)
        })),
        onStep: (step, steps) => {
          if (options.onStep == null) return
          void utilisation().then((u) => options.onStep?.({ step, steps, utilisation: u, elapsedMs: performance.now() - started }), () => {})
        }
      })
      const seconds = (performance.now() - started) / 1000
      return {
        video: stack(clips, shape),
        fps: pkg.manifest.fps,
        plan,
        seconds,
        secondsPerStep: seconds / options.steps,
        utilisation: await utilisation(),
        forwardPasses
      }
    } finally {
      await pipeline.close()
    }
  } finally {
    await coordinator.stop()
    await mesh?.stop()
  }
}

function bytes (a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength)
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
  return { dtype: 'F32', shape: [clips.length, ...shape], data: new Uint8Array(out.buffer) }
}
