/**
 * Diffusion sampler steps and the sampling loop (Imagen family: cosine
 * log-SNR schedule, v- or ε-prediction, optional dynamic thresholding, DDIM
 * or ancestral steps). The model, guidance and the mesh hide behind
 * `predict`; everything here is pure arithmetic plus seeded noise.
 *
 * Notation: a step goes from the noisier level t ("from") to the cleaner
 * level s ("to"), with scales (α_t, σ_t) and (α_s, σ_s).
 */
import { LumiereError } from '../errors.ts'
import { dynamicThreshold, predictX0 } from './prediction.ts'
import type { PredictionType } from './prediction.ts'
import { gaussian, gaussianInto } from './rng.ts'
import type { Seed } from './rng.ts'
import { logsnr, noiseLevel, timeGrid } from './schedule.ts'
import type { AlphaSigma, NoiseLevel } from './schedule.ts'

/**
 * DDIM step, η = 0 (deterministic): x_s = α_s·x̂0 + σ_s·ε̂. Without `epsHat`,
 * ε̂ = (x_t − α_t·x̂0)/σ_t is derived from x̂0 (the right choice after
 * thresholding changed x̂0).
 */
export function ddimStep (x: Float32Array, x0hat: Float32Array, epsHat: Float32Array | undefined, from: AlphaSigma, to: AlphaSigma, out?: Float32Array): Float32Array {
  const n = x.length
  if (x0hat.length !== n || (epsHat != null && epsHat.length !== n)) throw new LumiereError('BAD_ARGUMENT', 'ddimStep: x, x0hat and epsHat differ in length')
  const o = out ?? new Float32Array(n)
  if (epsHat != null) {
    for (let i = 0; i < n; i++) o[i] = to.alpha * x0hat[i] + to.sigma * epsHat[i]
    return o
  }
  // x_s = α_s·x̂0 + (σ_s/σ_t)·(x_t − α_t·x̂0)
  const r = to.sigma / from.sigma
  const c0 = to.alpha - r * from.alpha
  for (let i = 0; i < n; i++) o[i] = c0 * x0hat[i] + r * x[i]
  return o
}

/**
 * Coefficients of the DDPM posterior q(x_s | x_t, x0) = N(cx·x_t + c0·x0, std²):
 * with α_{t|s} = α_t/α_s and σ²_{t|s} = σ_t² − α²_{t|s}·σ_s²,
 *   cx = α_{t|s}·σ_s²/σ_t²,  c0 = α_s·σ²_{t|s}/σ_t²,  std² = σ²_{t|s}·σ_s²/σ_t².
 * In terms of c = σ²_{t|s}/σ_t² = 1 − e^(λ_t − λ_s) ∈ [0, 1]:
 *   cx = (1 − c)·α_s/α_t,  c0 = c·α_s,  std = √c·σ_s.
 */
export function posteriorCoefficients (from: AlphaSigma, to: AlphaSigma): { cx: number, c0: number, std: number } {
  const ratio = (from.alpha * to.sigma) / (from.sigma * to.alpha) // e^((λ_t − λ_s)/2)
  const c = 1 - ratio * ratio
  if (!(c >= 0 && c <= 1)) throw new LumiereError('BAD_ARGUMENT', `ancestral step must go to a less noisy level (from α=${from.alpha}, σ=${from.sigma} to α=${to.alpha}, σ=${to.sigma})`)
  return {
    cx: (from.alpha * to.sigma * to.sigma) / (from.sigma * from.sigma * to.alpha),
    c0: c * to.alpha,
    std: Math.sqrt(c) * to.sigma
  }
}

/**
 * Ancestral (DDPM) step: a draw from q(x_s | x_t, x0 = x̂0) using the given
 * standard-normal `noise`: mean + std·noise.
 */
export function ancestralStep (x: Float32Array, x0hat: Float32Array, from: AlphaSigma, to: AlphaSigma, noise: Float32Array, out?: Float32Array): Float32Array {
  const n = x.length
  if (x0hat.length !== n || noise.length !== n) throw new LumiereError('BAD_ARGUMENT', 'ancestralStep: x, x0hat and noise differ in length')
  const { cx, c0, std } = posteriorCoefficients(from, to)
  const o = out ?? new Float32Array(n)
  for (let i = 0; i < n; i++) o[i] = cx * x[i] + c0 * x0hat[i] + std * noise[i]
  return o
}

/** Noise stream of sample b's starting noise (see rng.ts). */
export function initialNoiseStream (sample: number): string {
  return `init/${sample}`
}

/** Noise stream of the ancestral noise of step `step` (0-based) of sample b. */
export function ancestralNoiseStream (step: number, sample: number): string {
  return `ancestral/${step}/${sample}`
}

/** Where a sampling run stands: `step` steps done, the current x of each sample. */
export interface SamplerState {
  step: number
  xs: Float32Array[]
}

export interface SampleOptions {
  /** Shape of one sample (e.g. [C, T, H, W]); only its element count matters here. */
  shape: number[]
  /** Number of samples (each gets its own noise streams). */
  samples: number
  /** Number of denoising steps (≥ 1) from tStart to 0. */
  steps: number
  seed: Seed
  sampler: 'ddim' | 'ancestral'
  prediction: PredictionType
  /**
   * The model: outputs (already guided) for x_t of every sample at log-SNR
   * `logsnr`, at step `step` (0-based). Must not modify `xs`.
   */
  predict: (xs: Float32Array[], logsnr: number, step: number) => Promise<Float32Array[]>
  /**
   * Rewrites x_t of every sample in place before each prediction (`final`
   * false, at that step's level) and the result once at the end (`final`
   * true): the hook for keeping known pixels (inpainting, image-to-video).
   */
  project?: (xs: Float32Array[], level: NoiseLevel, step: number, final: boolean) => void
  /** Dynamic thresholding of x̂0: true = percentile 0.995, a number = that percentile. */
  thresholding?: boolean | number
  /** Starting time in (0, 1] (default 1). Below 1 with `init`: SDEdit. */
  tStart?: number
  /** x0 of each sample; the start is x = α·init + σ·z (z the sample's seeded noise), else x = σ·z. */
  init?: Float32Array[]
  /** Called after each step with steps done, the total, and the state (live arrays: copy to keep). */
  onStep?: (step: number, total: number, state: SamplerState) => void
  /** Continue from a state taken by `onStep` (same options otherwise): gives the same result bit for bit. */
  resume?: SamplerState
  signal?: AbortSignal
}

function bad (message: string): LumiereError {
  return new LumiereError('BAD_ARGUMENT', message)
}

/**
 * Runs the sampler and returns x0 of each sample. The time grid is
 * `timeGrid(steps, tStart)`; each step asks `predict` at the current level,
 * turns the output into x̂0 (thresholded if asked), then takes a DDIM or
 * ancestral step; the last step (to t = 0) returns x̂0 itself.
 */
export async function sample (options: SampleOptions): Promise<Float32Array[]> {
  const { shape, samples, steps, seed, predict, signal } = options
  if (!Array.isArray(shape) || !shape.every(d => Number.isSafeInteger(d) && d > 0)) throw bad(`sample shape must be positive integers, got [${String(shape)}]`)
  if (!Number.isSafeInteger(samples) || samples < 1) throw bad(`samples must be an integer ≥ 1, got ${samples}`)
  if (!Number.isSafeInteger(steps) || steps < 1) throw bad(`steps must be an integer ≥ 1, got ${steps}`)
  if (options.sampler !== 'ddim' && options.sampler !== 'ancestral') throw bad(`sampler must be 'ddim' or 'ancestral', got '${String(options.sampler)}'`)
  if (options.prediction !== 'v' && options.prediction !== 'eps') throw bad(`prediction must be 'v' or 'eps', got '${String(options.prediction)}'`)
  const th = options.thresholding
  const percentile = th === true ? 0.995 : typeof th === 'number' ? th : undefined
  if (percentile != null && !(percentile > 0 && percentile <= 1)) throw bad(`thresholding percentile must be in (0, 1], got ${percentile}`)
  const n = shape.reduce((a, b) => a * b, 1)
  const grid = timeGrid(steps, options.tStart ?? 1)
  const levels = grid.map(t => noiseLevel(logsnr(t)))

  let xs: Float32Array[]
  let first = 0
  if (options.resume != null) {
    const r = options.resume
    if (!Number.isSafeInteger(r.step) || r.step < 0 || r.step >= steps) throw bad(`resume step must be in [0, ${steps}), got ${r.step}`)
    if (r.xs.length !== samples || r.xs.some(x => x.length !== n)) throw bad(`resume state must hold ${samples} arrays of ${n} values`)
    xs = r.xs.map(x => Float32Array.from(x))
    first = r.step
  } else {
    const init = options.init
    if (init != null && (init.length !== samples || init.some(x => x.length !== n))) throw bad(`init must hold ${samples} arrays of ${n} values`)
    const { alpha, sigma } = levels[0]
    xs = []
    for (let b = 0; b < samples; b++) {
      const x = gaussian(seed, initialNoiseStream(b), n)
      const x0 = init?.[b]
      for (let i = 0; i < n; i++) x[i] = (x0 == null ? 0 : alpha * x0[i]) + sigma * x[i]
      xs.push(x)
    }
  }

  const x0hat = new Float32Array(n)
  const noise = new Float32Array(n)
  for (let step = first; step < steps; step++) {
    if (signal?.aborted === true) throw new LumiereError('ABORTED', `sampling aborted at step ${step} of ${steps}`, { cause: signal.reason })
    const from = levels[step]
    const to = levels[step + 1]
    const last = step === steps - 1
    options.project?.(xs, from, step, false)
    const outs = await predict(xs, from.logsnr, step)
    if (!Array.isArray(outs) || outs.length !== samples || outs.some(o => !(o instanceof Float32Array) || o.length !== n)) {
      throw bad(`predict must return ${samples} Float32Array of ${n} values at step ${step}`)
    }
    for (let b = 0; b < samples; b++) {
      const x = xs[b]
      predictX0(options.prediction, x, outs[b], from, x0hat)
      if (percentile != null) dynamicThreshold(x0hat, percentile, x0hat)
      if (last) {
        x.set(x0hat)
      } else if (options.sampler === 'ddim') {
        ddimStep(x, x0hat, undefined, from, to, x)
      } else {
        gaussianInto(noise, seed, ancestralNoiseStream(step, b))
        ancestralStep(x, x0hat, from, to, noise, x)
      }
    }
    options.onStep?.(step + 1, steps, { step: step + 1, xs })
  }
  options.project?.(xs, levels[steps], steps, true)
  return xs
}
