import { replaceKnown } from '../src/diffusion/known-region.ts'
import { guidance } from '../src/diffusion/prediction.ts'
import { sample } from '../src/diffusion/sampler.ts'
import type { SamplerState } from '../src/diffusion/sampler.ts'
import { concatChannels, noiseAugment, upsample } from '../src/ssr/condition.ts'
import { frameWeights, fuse, sliceWindow } from '../src/ssr/multidiffusion.ts'
import { planWindows } from '../src/ssr/windows.ts'
import { view } from '../src/tensor/tensor.ts'
import type { KnownRegion } from '../src/diffusion/known-region.ts'
import type { Tensor } from '../src/tensor/tensor.ts'

/** Runs window forward passes (inputs → outputs), anywhere: over the mesh or in this process. */
export type RunWindows = (tasks: Array<Record<string, Tensor>>) => Promise<Array<Record<string, Tensor>>>

export interface UpscaleOptions {
  /** Low-res clips, one per sample, float32 [3, T, h, w] in [−1, 1]. */
  lowres: Float32Array[]
  frames: number
  height: number
  width: number
  scale: number
  window: number
  stride: number
  weighting?: 'uniform' | 'tapered'
  /** Log-SNR of the noise added to the upsampled low-res conditioning. */
  augLogsnr: number
  /** Text embeddings [1, L, D] for the conditional and unconditional branches. */
  cond: Tensor
  uncond: Tensor
  guidance: number
  steps: number
  seed: number
  sampler?: 'ddim' | 'ancestral'
  prediction: 'v' | 'eps'
  thresholding?: boolean
  runWindows: RunWindows
  /** Pixels to keep (inpainting, image-to-video), at the output size. */
  known?: KnownRegion
  signal?: AbortSignal
  /** Continue from a sampler state (a checkpoint). */
  resume?: SamplerState
  onStep?: (step: number, steps: number, state: SamplerState) => void
}

/**
 * Spatial super-resolution of whole clips on overlapping temporal windows,
 * fused by MultiDiffusion: at every step each window predicts v̂ for its
 * frames, predictions are averaged per frame (the least-squares fusion), and
 * the sampler takes one global step for the clip with noise drawn once per
 * clip. Fusing v̂ equals fusing x̂0 since x̂0 = α·x − σ·v̂ with the same α, σ
 * for every window.
 */
export async function upscaleClips (o: UpscaleOptions): Promise<Float32Array[]> {
  const { windows } = planWindows(o.frames, o.window, o.stride)
  const weights = frameWeights(windows, o.frames, o.weighting ?? 'tapered')
  const frameSize = o.height * o.width
  // Upsampled, noise-augmented low-res conditioning, once per sample (seeded, so reproducible).
  const conditions = o.lowres.map((clip, b) => noiseAugment(upsample(clip, [3, o.frames, o.height / o.scale, o.width / o.scale], o.scale), o.augLogsnr, o.seed, `ssr-aug/${b}`))
  const scalar = (x: number): Tensor => ({ dtype: 'F32', shape: [1], data: new Uint8Array(Float32Array.of(x).buffer) })
  const asTensor = (data: Float32Array, shape: number[]): Tensor => ({ dtype: 'F32', shape, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) })
  const branches = o.guidance === 1 ? [o.cond] : [o.cond, o.uncond]

  return sample({
    shape: [3, o.frames, o.height, o.width],
    samples: o.lowres.length,
    steps: o.steps,
    seed: o.seed,
    sampler: o.sampler ?? 'ddim',
    prediction: o.prediction,
    thresholding: o.thresholding,
    signal: o.signal,
    onStep: o.onStep,
    resume: o.resume,
    project: o.known == null ? undefined : (xs, level, step, final) => { for (const [b, x] of xs.entries()) replaceKnown(x, o.known as KnownRegion, level, o.seed, step, b, final) },
    predict: async (xs, logsnr) => {
      const tasks: Array<Record<string, Tensor>> = []
      xs.forEach((x, b) => {
        for (const w of windows) {
          const x6 = concatChannels(sliceWindow(x, [3, o.frames, o.height, o.width], w), sliceWindow(conditions[b], [3, o.frames, o.height, o.width], w), [w.end - w.start, o.height, o.width])
          for (const text of branches) {
            tasks.push({ x: asTensor(x6, [1, 6, w.end - w.start, o.height, o.width]), logsnr: scalar(logsnr), aug: scalar(o.augLogsnr), text })
          }
        }
      })
      const outputs = await o.runWindows(tasks)
      let next = 0
      return xs.map(() => {
        const perWindow = windows.map(() => {
          const vc = view(outputs[next++].v) as Float32Array
          if (branches.length === 1) return vc
          const vu = view(outputs[next++].v) as Float32Array
          return guidance(vu, vc, o.guidance)
        })
        return fuse(perWindow, windows, o.frames, frameSize, 3, weights)
      })
    }
  })
}
