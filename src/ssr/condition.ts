/**
 * The SSR model's conditioning input: the low-resolution clip, upsampled to
 * the output size, noise-augmented (Imagen's conditioning augmentation), and
 * concatenated along channels to the noisy high-resolution window:
 * ⟨x_t (3), upsampled condition (3)⟩ = 6 input channels.
 *
 * Clips are [C, T, H, W] row-major float32 (frames contiguous per channel).
 */
import { LumiereError } from '../errors.ts'
import { gaussianInto } from '../diffusion/rng.ts'
import type { Seed } from '../diffusion/rng.ts'
import { alphaSigma } from '../diffusion/schedule.ts'

function bad (message: string): LumiereError {
  return new LumiereError('BAD_ARGUMENT', message)
}

/** Noise stream of the SSR condition augmentation of sample b (see rng.ts; distinct from the sampler's `init/…` and `ancestral/…`). */
export function conditionNoiseStream (sample: number): string {
  return `ssr-aug/${sample}`
}

/** Source taps of one output axis: lower index, upper index, weight of the upper. */
function taps (size: number, scale: number): { lo: Int32Array, hi: Int32Array, f: Float64Array } {
  const n = size * scale
  const lo = new Int32Array(n)
  const hi = new Int32Array(n)
  const f = new Float64Array(n)
  for (let o = 0; o < n; o++) {
    // half-pixel centres: output pixel o covers source coordinate (o + 0.5)/s − 0.5
    const src = Math.min(size - 1, Math.max(0, (o + 0.5) / scale - 0.5))
    const i = Math.floor(src)
    lo[o] = i
    hi[o] = Math.min(i + 1, size - 1)
    f[o] = src - i
  }
  return { lo, hi, f }
}

/**
 * Spatial upsampling of a clip [C, T, h, w] by an integer factor `scale` to
 * [C, T, h·s, w·s]: bilinear with half-pixel centres (PyTorch
 * `F.interpolate(mode='bilinear', align_corners=False)`, TF2 `resize`
 * bilinear, Pillow-style without antialias): output pixel (Y, X) samples the
 * source at ((X + 0.5)/s − 0.5, (Y + 0.5)/s − 0.5), clamped to the edge
 * pixels' centres, interpolating linearly along x then y. Frames and
 * channels are independent. E.g. a row [0, 1] doubled is
 * [0, 0.25, 0.75, 1]. `scale` = 1 copies.
 */
export function upsample (clip: Float32Array, shape: readonly number[], scale: number): Float32Array {
  if (!Array.isArray(shape) || shape.length !== 4 || !shape.every(d => Number.isSafeInteger(d) && d > 0)) throw bad(`upsample: shape must be [C, T, h, w] of positive integers, got [${String(shape)}]`)
  if (!Number.isSafeInteger(scale) || scale < 1) throw bad(`upsample: scale must be a whole number ≥ 1 (e.g. 4 for 128 → 512), got ${scale}`)
  const [c, t, h, w] = shape
  if (clip.length !== c * t * h * w) throw bad(`upsample: the clip holds ${clip.length} values, [${shape.join(', ')}] needs ${c * t * h * w}`)
  const H = h * scale
  const W = w * scale
  const out = new Float32Array(c * t * H * W)
  const xs = taps(w, scale)
  const ys = taps(h, scale)
  const row = new Float64Array(W * 2) // the two source rows, interpolated along x
  for (let plane = 0; plane < c * t; plane++) {
    const src = plane * h * w
    const dst = plane * H * W
    for (let Y = 0; Y < H; Y++) {
      const r0 = src + ys.lo[Y] * w
      const r1 = src + ys.hi[Y] * w
      for (let X = 0; X < W; X++) {
        const fx = xs.f[X]
        row[X] = (1 - fx) * clip[r0 + xs.lo[X]] + fx * clip[r0 + xs.hi[X]]
        row[W + X] = (1 - fx) * clip[r1 + xs.lo[X]] + fx * clip[r1 + xs.hi[X]]
      }
      const fy = ys.f[Y]
      for (let X = 0; X < W; X++) out[dst + Y * W + X] = (1 - fy) * row[X] + fy * row[W + X]
    }
  }
  return out
}

/**
 * Conditioning augmentation: α·clip + σ·z with (α, σ) of log-SNR `augLogsnr`
 * (variance preserving, schedule.ts) and z the standard-normal values
 * [0, n) of rng.ts stream `stream` under `seed` (use
 * `conditionNoiseStream(sample)`). Computed in float64, rounded once.
 * Writes into `out` (same length; may be `clip`) when given.
 */
export function noiseAugment (clip: Float32Array, augLogsnr: number, seed: Seed, stream: string | number, out?: Float32Array): Float32Array {
  if (!Number.isFinite(augLogsnr)) throw bad(`noiseAugment: the augmentation log-SNR must be finite (large = little noise), got ${augLogsnr}`)
  const n = clip.length
  const o = out ?? new Float32Array(n)
  if (o.length !== n) throw bad(`noiseAugment: out holds ${o.length} values, the clip ${n}`)
  const { alpha, sigma } = alphaSigma(augLogsnr)
  const z = gaussianInto(new Float32Array(n), seed, stream)
  for (let i = 0; i < n; i++) o[i] = alpha * clip[i] + sigma * z[i]
  return o
}

/**
 * Channel concatenation of two clips [Ca, L, H, W] and [Cb, L, H, W] →
 * [Ca + Cb, L, H, W]. Channels are the outermost axis, so this is a plain
 * append of the two buffers. With `plane` — the per-channel dims [L, H, W]
 * or their product L·H·W — both lengths are checked to be whole numbers of
 * channel planes.
 */
export function concatChannels (a: Float32Array, b: Float32Array, plane?: number | readonly number[]): Float32Array {
  if (plane != null) {
    const planeSize = typeof plane === 'number' ? plane : plane.reduce((x, y) => x * y, 1)
    if (!Number.isSafeInteger(planeSize) || planeSize < 1) throw bad(`concatChannels: the channel plane [L, H, W] must hold a whole number ≥ 1 of values, got ${String(plane)}`)
    if (a.length % planeSize !== 0 || b.length % planeSize !== 0) throw bad(`concatChannels: ${a.length} and ${b.length} values are not whole channel planes of ${planeSize} (L·H·W): the two clips must share L, H, W`)
  }
  const out = new Float32Array(a.length + b.length)
  out.set(a, 0)
  out.set(b, a.length)
  return out
}
