/**
 * The noise schedule: cosine log-SNR (Imagen / VDM style), variance
 * preserving.
 *
 * Time t ∈ [0, 1] runs from data (t = 0) to noise (t = 1). The log
 * signal-to-noise ratio is
 *
 *   λ(t) = −2 · ln(tan(a·t + b)),  b = atan(e^(−λmax/2)),  a = atan(e^(−λmin/2)) − b
 *
 * so λ(0) = λmax and λ(1) = λmin (default ±20), strictly decreasing between.
 * (Unclipped, the cosine schedule is λ(t) = −2 ln tan(πt/2); a, b squeeze it
 * into [λmin, λmax].) Variance preserving: α² = sigmoid(λ), σ² = sigmoid(−λ),
 * so α² + σ² = 1 and λ = ln(α²/σ²); x_t = α·x0 + σ·ε.
 */
import { LumiereError } from '../errors.ts'

export const LOGSNR_MIN = -20
export const LOGSNR_MAX = 20

/** Signal and noise scales of a noise level: x_t = alpha·x0 + sigma·ε. */
export interface AlphaSigma {
  alpha: number
  sigma: number
}

/** A noise level: its log-SNR and scales. */
export interface NoiseLevel extends AlphaSigma {
  logsnr: number
}

function coefficients (logsnrMin: number, logsnrMax: number): { a: number, b: number } {
  if (!(Number.isFinite(logsnrMin) && Number.isFinite(logsnrMax) && logsnrMin < logsnrMax)) {
    throw new LumiereError('BAD_ARGUMENT', `log-SNR clip range must be finite with min < max, got [${logsnrMin}, ${logsnrMax}]`)
  }
  const b = Math.atan(Math.exp(-logsnrMax / 2))
  return { a: Math.atan(Math.exp(-logsnrMin / 2)) - b, b }
}

/** Cosine log-SNR at time t ∈ [0, 1] (t is clamped into [0, 1]; the result into [min, max]). */
export function logsnr (t: number, logsnrMin = LOGSNR_MIN, logsnrMax = LOGSNR_MAX): number {
  if (Number.isNaN(t)) throw new LumiereError('BAD_ARGUMENT', 'time t is NaN')
  const { a, b } = coefficients(logsnrMin, logsnrMax)
  const tc = Math.min(1, Math.max(0, t))
  const l = -2 * Math.log(Math.tan(a * tc + b))
  return Math.min(logsnrMax, Math.max(logsnrMin, l))
}

/** The inverse of `logsnr`: the time t ∈ [0, 1] whose log-SNR is λ (λ is clamped into [min, max]). */
export function timeOfLogsnr (lambda: number, logsnrMin = LOGSNR_MIN, logsnrMax = LOGSNR_MAX): number {
  if (Number.isNaN(lambda)) throw new LumiereError('BAD_ARGUMENT', 'log-SNR is NaN')
  const { a, b } = coefficients(logsnrMin, logsnrMax)
  const l = Math.min(logsnrMax, Math.max(logsnrMin, lambda))
  return Math.min(1, Math.max(0, (Math.atan(Math.exp(-l / 2)) - b) / a))
}

/** sigmoid(x) = 1 / (1 + e^−x), without overflow for large |x|. */
export function sigmoid (x: number): number {
  if (x >= 0) return 1 / (1 + Math.exp(-x))
  const e = Math.exp(x)
  return e / (1 + e)
}

/** Variance-preserving scales of a log-SNR: α = √sigmoid(λ), σ = √sigmoid(−λ). */
export function alphaSigma (lambda: number): AlphaSigma {
  if (Number.isNaN(lambda)) throw new LumiereError('BAD_ARGUMENT', 'log-SNR is NaN')
  return { alpha: Math.sqrt(sigmoid(lambda)), sigma: Math.sqrt(sigmoid(-lambda)) }
}

/** The noise level of a log-SNR. */
export function noiseLevel (lambda: number): NoiseLevel {
  return { logsnr: lambda, ...alphaSigma(lambda) }
}

/**
 * The sampler's time grid: `steps + 1` times, evenly spaced in t, from
 * `tStart` (default 1, pure noise; less for SDEdit) down to exactly 0:
 * t_i = tStart · (steps − i) / steps.
 */
export function timeGrid (steps: number, tStart = 1): number[] {
  if (!Number.isSafeInteger(steps) || steps < 1) throw new LumiereError('BAD_ARGUMENT', `steps must be an integer ≥ 1, got ${steps}`)
  if (!(tStart > 0 && tStart <= 1)) throw new LumiereError('BAD_ARGUMENT', `tStart must be in (0, 1], got ${tStart}`)
  const grid: number[] = []
  for (let i = 0; i <= steps; i++) grid.push(tStart * (steps - i) / steps)
  return grid
}
