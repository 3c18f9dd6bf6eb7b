/**
 * What a denoiser predicts, and conversions between the parameterisations,
 * at a noise level (α, σ) with α² + σ² = 1 and x_t = α·x0 + σ·ε:
 *
 *   v  = α·ε − σ·x0          (Salimans & Ho 2022; Imagen Video)
 *   x0 = α·x_t − σ·v         ε = σ·x_t + α·v
 *   x0 = (x_t − σ·ε) / α     ε = (x_t − α·x0) / σ     v = (α·x_t − x0) / σ
 *
 * Plus classifier-free guidance and Imagen's dynamic thresholding.
 *
 * All functions are elementwise on Float32Array, compute in float64 and
 * round once to float32 on store. `out` may alias an input.
 */
import { LumiereError } from '../errors.ts'
import type { AlphaSigma } from './schedule.ts'

export type PredictionType = 'v' | 'eps'

export const PREDICTION_TYPES: readonly PredictionType[] = ['v', 'eps']

function sameLength (what: string, ...arrays: Float32Array[]): number {
  const n = arrays[0].length
  for (const a of arrays) {
    if (a.length !== n) throw new LumiereError('BAD_ARGUMENT', `${what}: arrays differ in length (${arrays.map(x => x.length).join(' vs ')})`)
  }
  return n
}

/** out = p·a + q·b, elementwise. */
function affine2 (what: string, a: Float32Array, p: number, b: Float32Array, q: number, out?: Float32Array): Float32Array {
  const n = sameLength(what, a, b)
  const o = out ?? new Float32Array(n)
  sameLength(what, a, o)
  for (let i = 0; i < n; i++) o[i] = p * a[i] + q * b[i]
  return o
}

/** x_t = α·x0 + σ·ε (the forward process q(x_t | x0) with given noise). */
export function noised (x0: Float32Array, eps: Float32Array, level: AlphaSigma, out?: Float32Array): Float32Array {
  return affine2('noised', x0, level.alpha, eps, level.sigma, out)
}

/** x0 = α·x_t − σ·v. */
export function x0FromV (xt: Float32Array, v: Float32Array, level: AlphaSigma, out?: Float32Array): Float32Array {
  return affine2('x0FromV', xt, level.alpha, v, -level.sigma, out)
}

/** ε = σ·x_t + α·v. */
export function epsFromV (xt: Float32Array, v: Float32Array, level: AlphaSigma, out?: Float32Array): Float32Array {
  return affine2('epsFromV', xt, level.sigma, v, level.alpha, out)
}

/** v = α·ε − σ·x0. */
export function vFromX0Eps (x0: Float32Array, eps: Float32Array, level: AlphaSigma, out?: Float32Array): Float32Array {
  return affine2('vFromX0Eps', eps, level.alpha, x0, -level.sigma, out)
}

/** x0 = (x_t − σ·ε) / α. Ill-conditioned where α → 0 (pure noise). */
export function x0FromEps (xt: Float32Array, eps: Float32Array, level: AlphaSigma, out?: Float32Array): Float32Array {
  return affine2('x0FromEps', xt, 1 / level.alpha, eps, -level.sigma / level.alpha, out)
}

/** ε = (x_t − α·x0) / σ. */
export function epsFromX0 (xt: Float32Array, x0: Float32Array, level: AlphaSigma, out?: Float32Array): Float32Array {
  return affine2('epsFromX0', xt, 1 / level.sigma, x0, -level.alpha / level.sigma, out)
}

/** v = (α·x_t − x0) / σ. */
export function vFromX0 (xt: Float32Array, x0: Float32Array, level: AlphaSigma, out?: Float32Array): Float32Array {
  return affine2('vFromX0', xt, level.alpha / level.sigma, x0, -1 / level.sigma, out)
}

/** x̂0 from a model output of the given prediction type. */
export function predictX0 (type: PredictionType, xt: Float32Array, output: Float32Array, level: AlphaSigma, out?: Float32Array): Float32Array {
  switch (type) {
    case 'v': return x0FromV(xt, output, level, out)
    case 'eps': return x0FromEps(xt, output, level, out)
    default: throw new LumiereError('BAD_ARGUMENT', `prediction type must be 'v' or 'eps', got '${String(type)}'`)
  }
}

/**
 * Classifier-free guidance: u + w·(c − u) (for v or ε outputs alike).
 * w = 1 returns a copy of the conditional output exactly, w = 0 of the
 * unconditional one (the formula alone would round).
 */
export function guidance (uncond: Float32Array, cond: Float32Array, w: number, out?: Float32Array): Float32Array {
  if (!Number.isFinite(w)) throw new LumiereError('BAD_ARGUMENT', `guidance weight must be finite, got ${w}`)
  const n = sameLength('guidance', uncond, cond)
  const o = out ?? new Float32Array(n)
  sameLength('guidance', uncond, o)
  if (w === 1) { o.set(cond); return o }
  if (w === 0) { o.set(uncond); return o }
  for (let i = 0; i < n; i++) o[i] = uncond[i] + w * (cond[i] - uncond[i])
  return o
}

/**
 * The p-quantile of |values| with linear interpolation between order
 * statistics (numpy's default, Hyndman–Fan type 7: h = (n − 1)·p,
 * q = x₍⌊h⌋₎ + (h − ⌊h⌋)·(x₍⌊h⌋+1₎ − x₍⌊h⌋₎), 0-based). O(n): quickselect
 * on a copy. NaNs are not supported.
 */
export function absQuantile (values: Float32Array, p: number): number {
  if (!(p >= 0 && p <= 1)) throw new LumiereError('BAD_ARGUMENT', `quantile must be in [0, 1], got ${p}`)
  const n = values.length
  if (n === 0) throw new LumiereError('BAD_ARGUMENT', 'quantile of an empty array')
  const a = new Float32Array(n)
  for (let i = 0; i < n; i++) a[i] = Math.abs(values[i])
  const h = (n - 1) * p
  const k = Math.floor(h)
  const lo = select(a, k)
  if (k + 1 >= n || h === k) return lo
  // After select, a[k+1..] are all ≥ a[k]: the next order statistic is their minimum.
  let hi = Infinity
  for (let i = k + 1; i < n; i++) if (a[i] < hi) hi = a[i]
  return lo + (h - k) * (hi - lo)
}

/** Hoare/Wirth selection: partially orders `a` so a[k] is its k-th smallest (0-based), everything after it ≥ a[k]. */
function select (a: Float32Array, k: number): number {
  let lo = 0
  let hi = a.length - 1
  while (hi > lo) {
    const x = a[lo]
    const y = a[(lo + hi) >>> 1]
    const z = a[hi]
    const pivot = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y))
    let i = lo
    let j = hi
    while (i <= j) {
      while (a[i] < pivot) i++
      while (a[j] > pivot) j--
      if (i <= j) {
        const t = a[i]; a[i] = a[j]; a[j] = t
        i++; j--
      }
    }
    if (k <= j) hi = j
    else if (k >= i) lo = i
    else break
  }
  return a[k]
}

/** Imagen's threshold of one sample: s = max(1, quantile(|x0|, percentile)). */
export function thresholdScale (x0: Float32Array, percentile = 0.995): number {
  if (!(percentile > 0 && percentile <= 1)) throw new LumiereError('BAD_ARGUMENT', `thresholding percentile must be in (0, 1] (e.g. 0.995), got ${percentile}`)
  return Math.max(1, absQuantile(x0, percentile))
}

/**
 * Dynamic thresholding (Saharia et al. 2022, Imagen §2.3) of ONE sample's
 * x̂0: s = max(1, quantile(|x0|, percentile)); x0 ← clip(x0, −s, s) / s.
 * With s = 1 this is static clipping to [−1, 1].
 */
export function dynamicThreshold (x0: Float32Array, percentile = 0.995, out?: Float32Array): Float32Array {
  const s = thresholdScale(x0, percentile)
  const n = x0.length
  const o = out ?? new Float32Array(n)
  sameLength('dynamicThreshold', x0, o)
  for (let i = 0; i < n; i++) o[i] = Math.min(s, Math.max(-s, x0[i])) / s
  return o
}
