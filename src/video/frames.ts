/**
 * Clip tensors ⇄ 8-bit RGB frames (pure; no I/O).
 *
 * A clip is one sample of a generated video: float32 `[3, T, H, W]`
 * (channels R, G, B; T frames of H rows × W columns, row-major), values
 * nominally in [−1, 1]. A batch is `[B, 3, T, H, W]`; {@link sampleOf} takes
 * one sample out of it as a view. A `[1, 3, T, H, W]` batch of one is also
 * accepted wherever a clip is.
 *
 * Quantisation rule (the only one used by every writer):
 *
 *     byte = round((clamp(x, −1, 1) + 1) · 127.5)      NaN → 0
 *
 * with round = round-half-up (Math.round), so −1 → 0, 0 → 128 (127.5 rounds
 * up), 1 → 255, and anything outside [−1, 1] saturates. The inverse used by
 * {@link fromRgbFrames} is `x = byte / 127.5 − 1`; quantising that again
 * gives the same byte back for all 256 values.
 */
import { LumiereError } from '../errors.ts'
import { elementCount, view } from '../tensor/tensor.ts'
import type { Tensor } from '../tensor/tensor.ts'

/** A float32 array with its shape: the non-Tensor form a clip may come in. */
export interface Float32Clip {
  data: Float32Array
  shape: readonly number[]
}

/** What the clip functions accept: an F32 Tensor or a Float32Array with a shape. */
export type ClipInput = Tensor | Float32Clip

/** Frames as packed RGB888 (3 bytes per pixel, row-major, no padding). */
export interface RgbFrames {
  width: number
  height: number
  /** One Uint8Array of `width × height × 3` bytes per frame. */
  frames: Uint8Array[]
}

/** A validated clip: planar float32 data of `[3, frames, height, width]`. */
export interface ClipView {
  data: Float32Array
  frames: number
  height: number
  width: number
}

function isTensor (x: ClipInput): x is Tensor {
  return (x as Tensor).data instanceof Uint8Array && typeof (x as Tensor).dtype === 'string'
}

/** The elements as a Float32Array (a view unless the tensor's bytes are misaligned). */
function floats (x: ClipInput, what: string): Float32Array {
  if (isTensor(x)) {
    if (x.dtype !== 'F32') throw new LumiereError('BAD_ARGUMENT', `${what}: expected an F32 tensor, got ${x.dtype}; convert it to float32 first`)
    if (x.data.byteLength !== elementCount(x.shape) * 4) {
      throw new LumiereError('BAD_ARGUMENT', `${what}: F32[${x.shape.join(', ')}] needs ${elementCount(x.shape) * 4} bytes, got ${x.data.byteLength}`)
    }
    return view(x) as Float32Array
  }
  if (!(x?.data instanceof Float32Array) || !Array.isArray(x.shape)) {
    throw new LumiereError('BAD_ARGUMENT', `${what}: expected a Tensor or { data: Float32Array, shape }`)
  }
  if (x.data.length !== elementCount(x.shape)) {
    throw new LumiereError('BAD_ARGUMENT', `${what}: shape [${x.shape.join(', ')}] needs ${elementCount(x.shape)} values, got ${x.data.length}`)
  }
  return x.data
}

function checkDims (shape: readonly number[], what: string): void {
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw new LumiereError('BAD_ARGUMENT', `${what}: bad dimension ${d} in shape [${shape.join(', ')}]`)
  }
}

/**
 * Validates a clip (`[3, T, H, W]`, or `[1, 3, T, H, W]`) and returns its
 * float data and sizes without copying. T, H and W must be ≥ 1.
 */
export function asClip (clip: ClipInput, what = 'clip'): ClipView {
  const shape = clip?.shape
  if (!Array.isArray(shape)) throw new LumiereError('BAD_ARGUMENT', `${what}: expected a Tensor or { data: Float32Array, shape }`)
  checkDims(shape, what)
  let dims = shape
  if (dims.length === 5) {
    if (dims[0] !== 1) {
      throw new LumiereError('BAD_ARGUMENT', `${what}: got a batch of ${dims[0]} samples [${shape.join(', ')}]; take one with sampleOf(video, b) and name each file with samplePath(path, b, B)`)
    }
    dims = dims.slice(1)
  }
  if (dims.length !== 4 || dims[0] !== 3) {
    throw new LumiereError('BAD_ARGUMENT', `${what}: expected shape [3, T, H, W] (RGB, frames, height, width), got [${shape.join(', ')}]`)
  }
  const [, frames, height, width] = dims
  if (frames < 1 || height < 1 || width < 1) {
    throw new LumiereError('BAD_ARGUMENT', `${what}: empty clip [${shape.join(', ')}]; it needs at least one frame of at least 1×1 pixels`)
  }
  return { data: floats(clip, what), frames, height, width }
}

/** The quantisation rule: round((clamp(x, −1, 1) + 1) · 127.5), NaN → 0. */
export function quantize (x: number): number {
  if (x >= 1) return 255
  if (x > -1) return Math.round((x + 1) * 127.5)
  return 0 // x ≤ −1 or NaN
}

/** The inverse of {@link quantize} on bytes: byte / 127.5 − 1. */
export function dequantize (byte: number): number {
  return byte / 127.5 - 1
}

/**
 * Frame t of a clip as packed RGB888 (`width × height × 3` bytes), written
 * into `out` when given (it must be at least that long), else a new array.
 */
export function rgbFrame (clip: ClipView, t: number, out?: Uint8Array): Uint8Array {
  const { data, frames, height, width } = clip
  if (!Number.isSafeInteger(t) || t < 0 || t >= frames) throw new LumiereError('BAD_ARGUMENT', `frame ${t} is out of range 0..${frames - 1}`)
  const n = height * width
  const dst = out ?? new Uint8Array(n * 3)
  if (dst.length < n * 3) throw new LumiereError('BAD_ARGUMENT', `frame buffer holds ${dst.length} bytes, needs ${n * 3}`)
  const r = t * n
  const g = (frames + t) * n
  const b = (2 * frames + t) * n
  for (let i = 0, o = 0; i < n; i++, o += 3) {
    dst[o] = quantize(data[r + i])
    dst[o + 1] = quantize(data[g + i])
    dst[o + 2] = quantize(data[b + i])
  }
  return dst
}

/** All frames of a clip as RGB888, by the quantisation rule above. */
export function toRgbFrames (clip: ClipInput): RgbFrames {
  const c = asClip(clip)
  const frames: Uint8Array[] = []
  for (let t = 0; t < c.frames; t++) frames.push(rgbFrame(c, t))
  return { width: c.width, height: c.height, frames }
}

/** RGB888 frames back to a float32 `[3, T, H, W]` clip (x = byte / 127.5 − 1). */
export function fromRgbFrames (rgb: RgbFrames): Tensor {
  const { width, height, frames } = rgb
  checkDims([width, height], 'fromRgbFrames')
  if (!Array.isArray(frames) || frames.length < 1 || width < 1 || height < 1) {
    throw new LumiereError('BAD_ARGUMENT', 'fromRgbFrames: needs at least one frame of at least 1×1 pixels')
  }
  const T = frames.length
  const n = width * height
  const out = new Float32Array(3 * T * n)
  for (let t = 0; t < T; t++) {
    const f = frames[t]
    if (!(f instanceof Uint8Array) || f.length !== n * 3) {
      throw new LumiereError('BAD_ARGUMENT', `fromRgbFrames: frame ${t} must be ${n * 3} bytes (${width}×${height}×3), got ${f?.length}`)
    }
    const r = t * n
    const g = (T + t) * n
    const b = (2 * T + t) * n
    for (let i = 0, o = 0; i < n; i++, o += 3) {
      out[r + i] = f[o] / 127.5 - 1
      out[g + i] = f[o + 1] / 127.5 - 1
      out[b + i] = f[o + 2] / 127.5 - 1
    }
  }
  return { dtype: 'F32', shape: [3, T, height, width], data: new Uint8Array(out.buffer) }
}

/**
 * Sample b of a batch `[B, 3, T, H, W]` as an F32 `[3, T, H, W]` tensor whose
 * data is a view into the batch's memory (never a copy). A 4-D clip is
 * returned as a tensor over the same memory for b = 0.
 */
export function sampleOf (video: ClipInput, b: number): Tensor {
  const shape = video?.shape
  if (!Array.isArray(shape)) throw new LumiereError('BAD_ARGUMENT', 'sampleOf: expected a Tensor or { data: Float32Array, shape }')
  checkDims(shape, 'sampleOf')
  if (isTensor(video) && video.dtype !== 'F32') throw new LumiereError('BAD_ARGUMENT', `sampleOf: expected an F32 tensor, got ${video.dtype}`)
  const B = shape.length === 5 ? shape[0] : shape.length === 4 ? 1 : -1
  if (B < 0) throw new LumiereError('BAD_ARGUMENT', `sampleOf: expected shape [B, 3, T, H, W], got [${shape.join(', ')}]`)
  if (!Number.isSafeInteger(b) || b < 0 || b >= B) throw new LumiereError('BAD_ARGUMENT', `sampleOf: sample ${b} is out of range 0..${B - 1}`)
  const inner = shape.length === 5 ? shape.slice(1) : shape.slice()
  const count = elementCount(inner)
  const bytes = isTensor(video) ? video.data : new Uint8Array(video.data.buffer, video.data.byteOffset, video.data.byteLength)
  if (bytes.byteLength !== elementCount(shape) * 4) {
    throw new LumiereError('BAD_ARGUMENT', `sampleOf: F32[${shape.join(', ')}] needs ${elementCount(shape) * 4} bytes, got ${bytes.byteLength}`)
  }
  return { dtype: 'F32', shape: inner, data: bytes.subarray(b * count * 4, (b + 1) * count * 4) }
}
