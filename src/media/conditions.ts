/**
 * Conditioning inputs of the conditional (7-channel) model, per DESIGN §1
 * (pure; no I/O).
 *
 * The conditional model reads ⟨noisy video (3), masked condition video (3),
 * mask (1)⟩ = 7 channels, with mask 1 = KNOWN (keep), 0 = GENERATE. Every
 * builder here returns the condition already masked (C·M) and the mask
 * `[1, T, H, W]`:
 *
 * | application    | C (returned, = C·M)                         | M                                             |
 * |----------------|---------------------------------------------|-----------------------------------------------|
 * | image-to-video | image on frame 0, then blank frames          | 1 on frame 0, 0 on every later frame          |
 * | inpainting     | the video, 0 inside the region to fill       | the mask on every frame (0 inside, 1 outside) |
 * | cinemagraph    | frame 0 the whole image; later frames the    | frame 0 all 1; later frames the mask          |
 * |                | image outside the region, 0 inside           | (0 inside the animated region, 1 outside)     |
 * | text-to-video  | all 0 ({@link noCondition})                  | all 0                                         |
 *
 * "Blank" is 0 in the model's [−1, 1] space (mid-grey, not black), which
 * is also what masking writes wherever M = 0: the model must not rely on
 * those values, M tells it they are unknown. Masks are expected binary
 * (readMask makes them so); values must lie in [0, 1].
 *
 * Shapes: image `[3, H, W]`, video `[3, T, H, W]` (or `[1, 3, T, H, W]`),
 * mask `[1, H, W]` (one mask for every frame) or `[1, T, H, W]`. Sizes
 * that disagree are INPUT_MISMATCH; malformed arrays BAD_ARGUMENT.
 */
import { LumiereError } from '../errors.ts'
import type { Float32Clip } from '../video/frames.ts'
import type { FloatArray } from './fit.ts'

/** A condition video (already masked) and its mask. */
export interface Conditioning {
  /** C·M, `[3, T, H, W]`. */
  condition: FloatArray
  /** M, `[1, T, H, W]`, 1 = known, 0 = generate. */
  mask: FloatArray
}

interface Dims { T: number, H: number, W: number }

function checkArray (x: Float32Clip, what: string): readonly number[] {
  if (x == null || !(x.data instanceof Float32Array) || !Array.isArray(x.shape)) {
    throw new LumiereError('BAD_ARGUMENT', `${what}: expected { data: Float32Array, shape }`)
  }
  let n = 1
  for (const d of x.shape) {
    if (!Number.isSafeInteger(d) || d < 1) throw new LumiereError('BAD_ARGUMENT', `${what}: bad dimension ${d} in shape [${x.shape.join(', ')}]`)
    n *= d
  }
  if (x.data.length !== n) throw new LumiereError('BAD_ARGUMENT', `${what}: shape [${x.shape.join(', ')}] needs ${n} values, got ${x.data.length}`)
  return x.shape
}

function imageDims (image: Float32Clip, what = 'image'): { H: number, W: number } {
  const s = checkArray(image, what)
  if (s.length !== 3 || s[0] !== 3) throw new LumiereError('BAD_ARGUMENT', `${what}: expected shape [3, H, W], got [${s.join(', ')}]`)
  return { H: s[1], W: s[2] }
}

function videoDims (video: Float32Clip, what: string): Dims {
  const s = checkArray(video, what)
  const d = s.length === 5 && s[0] === 1 ? s.slice(1) : s
  if (d.length !== 4 || d[0] !== 3) throw new LumiereError('BAD_ARGUMENT', `${what}: expected shape [3, T, H, W] or [1, 3, T, H, W], got [${s.join(', ')}]`)
  return { T: d[1], H: d[2], W: d[3] }
}

function checkFrames (frames: number): number {
  if (!Number.isSafeInteger(frames) || frames < 1) throw new LumiereError('BAD_ARGUMENT', `frames must be a whole number ≥ 1, got ${String(frames)}`)
  return frames
}

function sizeMismatch (what: string, got: { H: number, W: number }, want: { H: number, W: number }): LumiereError {
  return new LumiereError('INPUT_MISMATCH', `${what} is ${got.W}×${got.H} but the picture is ${want.W}×${want.H}; read both with the same width and height`)
}

/**
 * A mask `[1, H, W]` or `[1, T, H, W]` as `[1, T, H, W]` (a 2-D mask is put
 * on every frame), checked against the size and values.
 */
export function maskFrames (mask: Float32Clip, dims: Dims, what = 'mask'): FloatArray {
  const s = checkArray(mask, what)
  if (s[0] !== 1 || (s.length !== 3 && s.length !== 4)) throw new LumiereError('BAD_ARGUMENT', `${what}: expected shape [1, H, W] or [1, T, H, W], got [${s.join(', ')}]`)
  const H = s[s.length - 2]
  const W = s[s.length - 1]
  if (H !== dims.H || W !== dims.W) throw sizeMismatch(what, { H, W }, dims)
  if (s.length === 4 && s[1] !== dims.T) throw new LumiereError('INPUT_MISMATCH', `${what} has ${s[1]} frames but the video has ${dims.T}; read the mask with frames: ${dims.T}`)
  for (let i = 0; i < mask.data.length; i++) {
    const v = mask.data[i]
    if (!(v >= 0 && v <= 1)) throw new LumiereError('BAD_ARGUMENT', `${what}: value ${v} at element ${i} is outside [0, 1] (1 = known, 0 = generate)`)
  }
  if (s.length === 4) return { data: mask.data.slice(), shape: [1, dims.T, H, W] }
  const n = H * W
  const data = new Float32Array(dims.T * n)
  for (let t = 0; t < dims.T; t++) data.set(mask.data, t * n)
  return { data, shape: [1, dims.T, H, W] }
}

/**
 * The masked condition C·M: `[3, T, H, W]` times the mask `[1, T, H, W]`
 * (or `[1, H, W]`), broadcast over the 3 channels.
 */
export function maskedCondition (condition: Float32Clip, mask: Float32Clip): FloatArray {
  const dims = videoDims(condition, 'condition')
  const m = maskFrames(mask, dims).data
  const n = m.length
  const out = new Float32Array(3 * n)
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < n; i++) out[c * n + i] = condition.data[c * n + i] * m[i]
  }
  return { data: out, shape: [3, dims.T, dims.H, dims.W] }
}

/** Image-to-video: C = the image on frame 0, blank (0) after; M = 1 on frame 0, 0 after. */
export function imageToVideo (image: Float32Clip, frames: number): Conditioning {
  const { H, W } = imageDims(image)
  const T = checkFrames(frames)
  const n = H * W
  const condition = new Float32Array(3 * T * n)
  for (let c = 0; c < 3; c++) condition.set(image.data.subarray(c * n, (c + 1) * n), c * T * n)
  const mask = new Float32Array(T * n)
  mask.fill(1, 0, n)
  return { condition: { data: condition, shape: [3, T, H, W] }, mask: { data: mask, shape: [1, T, H, W] } }
}

/** Inpainting: C = video·M; M = the mask on every frame (0 inside the region to fill, 1 outside). */
export function inpainting (video: Float32Clip, mask: Float32Clip): Conditioning {
  const dims = videoDims(video, 'video')
  const m = maskFrames(mask, dims)
  return { condition: maskedCondition({ data: video.data, shape: [3, dims.T, dims.H, dims.W] }, m), mask: m }
}

/**
 * Cinemagraph: C = the image on every frame, masked by M; M = all 1 on
 * frame 0, the mask on later frames (0 inside the region to animate).
 */
export function cinemagraph (image: Float32Clip, mask: Float32Clip, frames: number): Conditioning {
  const { H, W } = imageDims(image)
  const T = checkFrames(frames)
  const m = maskFrames(mask, { T, H, W })
  m.data.fill(1, 0, H * W)
  const n = H * W
  const still = new Float32Array(3 * T * n)
  for (let c = 0; c < 3; c++) {
    const plane = image.data.subarray(c * n, (c + 1) * n)
    for (let t = 0; t < T; t++) still.set(plane, (c * T + t) * n)
  }
  return { condition: maskedCondition({ data: still, shape: [3, T, H, W] }, m), mask: m }
}

/** No conditioning (text-to-video on the conditional model): C = 0, M = 0 everywhere. */
export function noCondition (frames: number, height: number, width: number): Conditioning {
  const T = checkFrames(frames)
  for (const [v, name] of [[height, 'height'], [width, 'width']] as const) {
    if (!Number.isSafeInteger(v) || v < 1) throw new LumiereError('BAD_ARGUMENT', `${name} must be a whole number ≥ 1, got ${String(v)}`)
  }
  const n = height * width
  return { condition: { data: new Float32Array(3 * T * n), shape: [3, T, height, width] }, mask: { data: new Float32Array(T * n), shape: [1, T, height, width] } }
}

/**
 * The 7-channel model input for a batch of one:
 * x7 = concat(noisy [3, T, H, W], C·M [3, T, H, W], M [1, T, H, W]) along
 * channels → `[1, 7, T, H, W]`. C is masked here (C·M); for a binary mask
 * an already-masked C is unchanged by it.
 */
export function modelInput (noisy: Float32Clip, condition: Float32Clip, mask: Float32Clip): FloatArray {
  const dims = videoDims(noisy, 'noisy video')
  const cd = videoDims(condition, 'condition')
  if (cd.T !== dims.T || cd.H !== dims.H || cd.W !== dims.W) {
    throw new LumiereError('INPUT_MISMATCH', `condition is [3, ${cd.T}, ${cd.H}, ${cd.W}] but the noisy video is [3, ${dims.T}, ${dims.H}, ${dims.W}]`)
  }
  const cm = maskedCondition({ data: condition.data, shape: [3, cd.T, cd.H, cd.W] }, mask)
  const m = maskFrames(mask, dims).data
  const n = m.length
  const data = new Float32Array(7 * n)
  data.set(noisy.data, 0)
  data.set(cm.data, 3 * n)
  data.set(m, 6 * n)
  return { data, shape: [1, 7, dims.T, dims.H, dims.W] }
}
