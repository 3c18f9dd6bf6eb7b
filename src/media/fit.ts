/**
 * Fitting user media to the model's size (pure; no I/O).
 *
 * Every reader in src/media fits pictures and clips with the rules below and
 * with the ONE resampler here ({@link resample}); only the kernel differs
 * (`linear` for pictures and videos, `nearest` for masks, so masks stay
 * binary). Data are planar float32: a picture is `[C, H, W]`, a clip
 * `[C, T, H, W]`.
 *
 * ## Spatial rule: cover, then centre-crop
 *
 * A w×h picture is fitted to the model's W×H by scaling it, aspect ratio
 * preserved, by the smallest factor that makes it COVER W×H,
 *
 *     s = max(W / w, H / h)                 (target pixels per source pixel)
 *
 * and keeping the centred W×H window of the scaled picture. The window's
 * offset is a whole number of scaled pixels, rounded down:
 *
 *     offX = floor((s·w − W) / 2),  offY = floor((s·h − H) / 2)
 *
 * (one of them is 0; computed in exact integer arithmetic). So a picture of
 * the right size is returned unchanged, a same-height picture that is wider
 * is cropped to its centre columns (no resampling, no blur), and an odd
 * surplus leaves the extra column/row on the right/bottom. Nothing is ever
 * padded or stretched.
 *
 * Output pixel i (0-based) on an axis has its centre at source coordinate
 *
 *     c(i) = off / s + (i + 0.5) / s        (source pixel j spans [j, j + 1))
 *
 * and is resampled separably (columns, then rows) with:
 *
 * - `linear`: a triangle (tent) filter centred on c with radius
 *   r = max(1, 1/s) source pixels, weight(j) = max(0, 1 − |j + 0.5 − c| / r),
 *   normalised over the source pixels that exist. Enlarging (s ≥ 1) this is
 *   plain bilinear interpolation with edge clamping; shrinking (s < 1) the
 *   filter widens with the scale, so every source pixel contributes
 *   (anti-aliased bilinear, as PIL's BILINEAR resize and torch's
 *   `interpolate(..., antialias=True)`). Near the crop edge the filter may
 *   read source pixels just outside the window (the picture's real
 *   neighbours, never padding); at s = 1 it reads exactly one pixel.
 * - `nearest`: source pixel clamp(floor(c), 0, n − 1), weight 1. Values stay
 *   exactly what they were (a binary mask stays binary).
 *
 * ## Temporal rule: sample evenly, or pad with the last frame
 *
 * An n-frame clip is fitted to T frames by {@link frameIndices}:
 *
 * - n ≥ T (longer or equal): output frame i is source frame
 *   round(i·(n − 1)/(T − 1)) (round half up; T = 1 takes frame 0). The
 *   first and last frames are always kept and the clip is compressed in
 *   time (frames are counted, not timed: fps and GIF delays are ignored).
 *   n = T is the identity.
 * - n < T (shorter): the n frames, then the last frame repeated up to T
 *   (output frame i is source frame min(i, n − 1)). Nothing is stretched.
 *
 * ## A single image as a clip
 *
 * {@link imageAsClip}: `every` puts the image on every frame (a still
 * video: cinemagraph, inpainting of a still); `first` puts it on frame 0 and
 * zeros (mid-grey, 0 in [−1, 1]) on the others (image-to-video). The caller
 * chooses per application.
 */
import { LumiereError } from '../errors.ts'
import type { Float32Clip } from '../video/frames.ts'

/** Largest width, height or frame count accepted as a fitting target. */
export const MAX_FIT_SIZE = 16384

/** Resampling kernel: `linear` (anti-aliased bilinear) for pictures, `nearest` for masks. */
export type Kernel = 'linear' | 'nearest'

/** A float32 array with a mutable shape (what the media readers return). */
export interface FloatArray extends Float32Clip {
  shape: number[]
}

/** Where the W×H window lies in a w×h source, by the cover-then-centre-crop rule. */
export interface CoverFit {
  /** Target pixels per source pixel, the same on both axes. */
  scale: number
  /** Top-left corner of the window in source pixel coordinates (may be fractional). */
  x0: number
  y0: number
}

function checkPositive (value: unknown, name: string, max = MAX_FIT_SIZE): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > max) {
    throw new LumiereError('BAD_ARGUMENT', `${name} must be a whole number from 1 to ${max}, got ${String(value)}`)
  }
  return value
}

/** Validates a fitting target `{ width, height, frames? }` (BAD_ARGUMENT when wrong). */
export function checkTarget (opts: { width?: unknown, height?: unknown, frames?: unknown } | undefined, needFrames: boolean): { width: number, height: number, frames?: number } {
  if (opts == null || typeof opts !== 'object') throw new LumiereError('BAD_ARGUMENT', `options { width, height${needFrames ? ', frames' : ''} } are required`)
  const width = checkPositive(opts.width, 'width')
  const height = checkPositive(opts.height, 'height')
  if (!needFrames && opts.frames === undefined) return { width, height }
  return { width, height, frames: checkPositive(opts.frames, 'frames') }
}

/** The cover-then-centre-crop window of a w×h source for a W×H target (see the module comment). */
export function coverFit (w: number, h: number, W: number, H: number): CoverFit {
  checkPositive(w, 'source width', Number.MAX_SAFE_INTEGER)
  checkPositive(h, 'source height', Number.MAX_SAFE_INTEGER)
  checkPositive(W, 'width', Number.MAX_SAFE_INTEGER)
  checkPositive(H, 'height', Number.MAX_SAFE_INTEGER)
  if (W * h >= H * w) {
    // Width decides: s = W / w; the scaled height h·W/w ≥ H is cropped.
    const offY = Math.floor((h * W - H * w) / (2 * w))
    return { scale: W / w, x0: 0, y0: offY * w / W }
  }
  // Height decides: s = H / h; the scaled width w·H/h > W is cropped.
  const offX = Math.floor((w * H - W * h) / (2 * h))
  return { scale: H / h, x0: offX * h / H, y0: 0 }
}

/** Per-output-pixel source taps on one axis: taps of output i are [start[i], start[i + 1]). */
interface AxisTaps {
  start: Int32Array
  index: Int32Array
  weight: Float32Array
}

function axisTaps (srcLen: number, dstLen: number, origin: number, scale: number, kernel: Kernel): AxisTaps {
  const start = new Int32Array(dstLen + 1)
  const index: number[] = []
  const weight: number[] = []
  const radius = Math.max(1, 1 / scale)
  for (let i = 0; i < dstLen; i++) {
    start[i] = index.length
    const c = origin + (i + 0.5) / scale
    if (kernel === 'nearest') {
      index.push(Math.min(srcLen - 1, Math.max(0, Math.floor(c))))
      weight.push(1)
      continue
    }
    const lo = Math.max(0, Math.ceil(c - radius - 0.5))
    const hi = Math.min(srcLen - 1, Math.floor(c + radius - 0.5))
    const first = index.length
    let sum = 0
    for (let j = lo; j <= hi; j++) {
      const w = 1 - Math.abs(j + 0.5 - c) / radius
      if (w > 0) { index.push(j); weight.push(w); sum += w }
    }
    if (sum === 0) { // cannot happen for c inside the source; kept as a guard
      index.push(Math.min(srcLen - 1, Math.max(0, Math.floor(c))))
      weight.push(1)
      sum = 1
    }
    for (let k = first; k < weight.length; k++) weight[k] /= sum
  }
  start[dstLen] = index.length
  return { start, index: Int32Array.from(index), weight: Float32Array.from(weight) }
}

/**
 * THE resampler: fits `planes` consecutive h×w planes of `src` (planar
 * float32, e.g. a `[C, h, w]` picture or a `[C, T, h, w]` clip with
 * planes = C·T) to W×H by the cover-then-centre-crop rule with `kernel`.
 * Returns `planes` W×H planes. A source already W×H is copied unchanged.
 */
export function resample (src: Float32Array, planes: number, w: number, h: number, W: number, H: number, kernel: Kernel): Float32Array {
  if (src.length !== planes * w * h) {
    throw new LumiereError('BAD_ARGUMENT', `resample: ${planes} planes of ${w}×${h} need ${planes * w * h} values, got ${src.length}`)
  }
  if (w === W && h === H) return src.slice()
  const fit = coverFit(w, h, W, H)
  const tx = axisTaps(w, W, fit.x0, fit.scale, kernel)
  const ty = axisTaps(h, H, fit.y0, fit.scale, kernel)
  // Only the source rows some output row reads go through the column pass.
  let rowLo = h
  let rowHi = -1
  for (const j of ty.index) { if (j < rowLo) rowLo = j; if (j > rowHi) rowHi = j }
  const rows = rowHi - rowLo + 1
  const tmp = new Float32Array(rows * W)
  const out = new Float32Array(planes * W * H)
  for (let p = 0; p < planes; p++) {
    const base = p * w * h
    for (let r = 0; r < rows; r++) {
      const row = base + (rowLo + r) * w
      for (let x = 0; x < W; x++) {
        let acc = 0
        for (let k = tx.start[x]; k < tx.start[x + 1]; k++) acc += src[row + tx.index[k]] * tx.weight[k]
        tmp[r * W + x] = acc
      }
    }
    const dst = p * W * H
    for (let y = 0; y < H; y++) {
      const o = dst + y * W
      for (let k = ty.start[y]; k < ty.start[y + 1]; k++) {
        const t = (ty.index[k] - rowLo) * W
        const wt = ty.weight[k]
        for (let x = 0; x < W; x++) out[o + x] += tmp[t + x] * wt
      }
    }
  }
  return out
}

/**
 * The temporal rule: which source frame each of the T output frames takes
 * from an n-frame clip. n ≥ T: round(i·(n − 1)/(T − 1)) (round half up,
 * exact integer arithmetic; [0] when T = 1); n < T: min(i, n − 1).
 */
export function frameIndices (n: number, T: number): number[] {
  checkPositive(n, 'source frame count', Number.MAX_SAFE_INTEGER)
  checkPositive(T, 'frames', Number.MAX_SAFE_INTEGER)
  const out: number[] = []
  for (let i = 0; i < T; i++) {
    if (n < T) out.push(Math.min(i, n - 1))
    else if (T === 1) out.push(0)
    else out.push(Math.floor((2 * i * (n - 1) + (T - 1)) / (2 * (T - 1)))) // round(i(n−1)/(T−1)), half up
  }
  return out
}

/**
 * Stacks T per-frame planar `[C, H, W]` arrays into one `[C, T, H, W]`
 * array (channel-major, as every clip here is laid out).
 */
export function stackFrames (frames: readonly Float32Array[], channels: number, height: number, width: number): FloatArray {
  const T = frames.length
  const n = height * width
  const data = new Float32Array(channels * T * n)
  for (let t = 0; t < T; t++) {
    const f = frames[t]
    if (f.length !== channels * n) throw new LumiereError('BAD_ARGUMENT', `stackFrames: frame ${t} has ${f.length} values, expected ${channels * n}`)
    for (let c = 0; c < channels; c++) data.set(f.subarray(c * n, (c + 1) * n), (c * T + t) * n)
  }
  return { data, shape: [channels, T, height, width] }
}

/**
 * Fits a planar `[C, n, h, w]` clip to `[C, T, H, W]`: frames by
 * {@link frameIndices}, then each frame by {@link resample} with `kernel`.
 */
export function fitClip (clip: Float32Clip, target: { width: number, height: number, frames: number }, kernel: Kernel): FloatArray & { indices: number[] } {
  const { width: W, height: H, frames: T } = checkTarget(target, true) as { width: number, height: number, frames: number }
  const shape = clip.shape
  if (shape.length !== 4 || shape.some(d => !Number.isSafeInteger(d) || d < 1)) {
    throw new LumiereError('BAD_ARGUMENT', `fitClip: expected a [C, T, H, W] clip, got [${shape.join(', ')}]`)
  }
  const [C, n, h, w] = shape
  if (clip.data.length !== C * n * h * w) throw new LumiereError('BAD_ARGUMENT', `fitClip: shape [${shape.join(', ')}] needs ${C * n * h * w} values, got ${clip.data.length}`)
  const indices = frameIndices(n, T)
  const plane = h * w
  const picked = new Float32Array(C * T * plane)
  for (let c = 0; c < C; c++) {
    for (let t = 0; t < T; t++) picked.set(clip.data.subarray((c * n + indices[t]) * plane, (c * n + indices[t] + 1) * plane), (c * T + t) * plane)
  }
  return { data: resample(picked, C * T, w, h, W, H, kernel), shape: [C, T, H, W], indices }
}

/**
 * A `[C, H, W]` image as a `[C, T, H, W]` clip: on `every` frame, or on the
 * `first` frame only with zeros (0 = mid-grey in [−1, 1]) after it.
 */
export function imageAsClip (image: Float32Clip, frames: number, mode: 'every' | 'first'): FloatArray {
  const T = checkPositive(frames, 'frames')
  if (mode !== 'every' && mode !== 'first') throw new LumiereError('BAD_ARGUMENT', `imageAsClip: mode must be 'every' or 'first', got ${String(mode)}`)
  const shape = image.shape
  if (shape.length !== 3 || shape.some(d => !Number.isSafeInteger(d) || d < 1)) {
    throw new LumiereError('BAD_ARGUMENT', `imageAsClip: expected a [C, H, W] image, got [${shape.join(', ')}]`)
  }
  const [C, H, W] = shape
  const n = H * W
  if (image.data.length !== C * n) throw new LumiereError('BAD_ARGUMENT', `imageAsClip: shape [${shape.join(', ')}] needs ${C * n} values, got ${image.data.length}`)
  const data = new Float32Array(C * T * n)
  for (let c = 0; c < C; c++) {
    const plane = image.data.subarray(c * n, (c + 1) * n)
    for (let t = 0; t < (mode === 'every' ? T : 1); t++) data.set(plane, (c * T + t) * n)
  }
  return { data, shape: [C, T, H, W] }
}
