/**
 * readVideo: a video → the model's `[3, T, H, W]` float32 in [−1, 1].
 *
 * Sources:
 * - any file the bundled ffmpeg decodes (MP4, GIF, WebM, MOV, …; a still
 *   image is a one-frame video): every frame is decoded (decode.ts), mapped
 *   to float as in read-image.ts, and fitted to width × height on arrival;
 * - a folder of PNG frames (what writeVideo writes for a path ending in /):
 *   the folder's `*.png` files in natural name order (`frame-2` before
 *   `frame-10`), hidden files skipped; only the frames the temporal rule
 *   picks are decoded;
 * - `*.safetensors`: the tensor named `video`, F32 `[3, T, H, W]` or
 *   `[1, 3, T, H, W]` in [−1, 1] (what the generator saves). Non-finite
 *   values are refused; values outside [−1, 1] are clamped (the same
 *   saturation as the writers' quantisation). Any size is accepted and
 *   fitted by the same rules with the same resampler as decoded video.
 *
 * Fitting (fit.ts): each frame by cover-then-centre-crop with the
 * anti-aliased bilinear kernel; the frame count by {@link frameIndices}
 * (longer: frame i ← round(i·(n − 1)/(T − 1)); shorter: the last frame
 * repeated). Frames are counted, not timed.
 *
 * Memory: the fitted frames (3·H·W floats each) of a decoded file are kept
 * until its frame count is known. If they would pass `maxBytes` (default
 * 1 GiB), decoding stops, the frames are counted in a second pass at 1×1,
 * and a third pass keeps only the frames the rule picks, so any length can
 * be read in bounded memory (it is just slower).
 */
import { readdir, stat } from 'node:fs/promises'
import { extname, join } from 'node:path'
import { LumiereError } from '../errors.ts'
import { readSafetensors } from '../tensor/safetensors.ts'
import { view } from '../tensor/tensor.ts'
import { checkInputFile, decodeFrames, oneLine } from './decode.ts'
import type { DecodedFrame } from './decode.ts'
import { checkTarget, fitClip, frameIndices, resample, stackFrames } from './fit.ts'
import type { FloatArray, Kernel } from './fit.ts'
import { rgbToPlanes } from './read-image.ts'

/** Default cap on fitted frames kept while a file's length is unknown. */
export const DEFAULT_MAX_DECODED_BYTES = 1 << 30

export interface ReadVideoOptions {
  width: number
  height: number
  /** Frames to fit to (T). */
  frames: number
  signal?: AbortSignal
  /** Cap on fitted frames kept in memory during the first pass (bytes). */
  maxBytes?: number
}

export interface VideoSource {
  kind: 'file' | 'png-folder' | 'safetensors'
  /** Size of the first frame as stored. */
  width: number
  height: number
  /** Frames in the source (n). */
  frames: number
}

/** A fitted clip `[C, T, H, W]`, where it came from, and which source frame each output frame is. */
export interface MediaVideo extends FloatArray {
  source: VideoSource
  /** indices[t] = source frame of output frame t (by the temporal rule). */
  indices: number[]
}

/** How decoded RGB frames become planes, and how they are resampled. */
export interface FrameConversion {
  /** Planes per frame (3 for RGB, 1 for a mask). */
  channels: number
  kernel: Kernel
  /** Packed RGB888 → `channels` planar float32 planes of w × h. */
  toPlanes: (rgb: Uint8Array, w: number, h: number) => Float32Array
  /** The file described in errors, with its article ('a video', 'a mask video'). */
  what: string
}

export const RGB_CONVERSION: FrameConversion = { channels: 3, kernel: 'linear', toPlanes: rgbToPlanes, what: 'a video' }

const collator = new Intl.Collator('en', { numeric: true })

async function isFolder (path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory()
  } catch {
    return false
  }
}

/**
 * Reads a video file or a folder of PNG frames, fitted to
 * `[channels, frames, height, width]` with the given conversion.
 */
export async function readFrames (path: string, options: ReadVideoOptions, conv: FrameConversion): Promise<MediaVideo> {
  const { width: W, height: H, frames: T } = checkTarget(options, true) as { width: number, height: number, frames: number }
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_DECODED_BYTES
  if (typeof maxBytes !== 'number' || !(maxBytes >= 0)) throw new LumiereError('BAD_ARGUMENT', `maxBytes must be a number ≥ 0, got ${String(maxBytes)}`)
  const C = conv.channels
  const signal = options.signal
  let first: { width: number, height: number } | undefined
  const fit = (f: DecodedFrame): Float32Array => {
    first ??= { width: f.width, height: f.height }
    return resample(conv.toPlanes(f.rgb, f.width, f.height), C, f.width, f.height, W, H, conv.kernel)
  }
  const done = (frames: Float32Array[], n: number, indices: number[], kind: VideoSource['kind']): MediaVideo => {
    const clip = stackFrames(frames, C, H, W)
    const src = first ?? { width: 0, height: 0 }
    return { ...clip, source: { kind, width: src.width, height: src.height, frames: n }, indices }
  }

  if (typeof path === 'string' && path !== '' && await isFolder(path)) {
    const names = (await readdir(path)).filter(name => !name.startsWith('.') && /\.png$/i.test(name)).sort(collator.compare)
    if (names.length === 0) throw new LumiereError('BAD_ARGUMENT', `${path} is a folder with no .png frames, not ${conv.what}; give a video file or a folder of PNG frames`)
    const indices = frameIndices(names.length, T)
    const got = new Map<number, Float32Array>()
    for (const i of indices) {
      if (got.has(i)) continue
      await decodeFrames(join(path, names[i]), { what: 'a PNG frame', firstOnly: true, signal }, f => { got.set(i, fit(f)); return 'stop' })
    }
    return done(indices.map(i => got.get(i) as Float32Array), names.length, indices, 'png-folder')
  }

  const frameBytes = C * W * H * 4
  const kept: Float32Array[] = []
  let over = false
  await decodeFrames(path, { what: conv.what, signal }, f => {
    if ((kept.length + 1) * frameBytes > maxBytes) { over = true; return 'stop' }
    kept.push(fit(f))
  })
  if (!over) {
    const indices = frameIndices(kept.length, T)
    return done(indices.map(i => kept[i]), kept.length, indices, 'file')
  }
  kept.length = 0
  const n = await decodeFrames(path, { what: conv.what, signal, countOnly: true }, () => {})
  const indices = frameIndices(n, T)
  const need = new Set(indices)
  const last = indices[indices.length - 1]
  const got = new Map<number, Float32Array>()
  await decodeFrames(path, { what: conv.what, signal }, f => {
    if (need.has(f.index)) got.set(f.index, fit(f))
    if (f.index >= last) return 'stop'
  })
  const frames = indices.map(i => got.get(i))
  if (frames.some(f => f == null)) throw new LumiereError('BAD_ARGUMENT', `${path} gave different frames on a second decoding pass; convert it to a plain MP4 first`)
  return done(frames as Float32Array[], n, indices, 'file')
}

/** The `video` tensor of a safetensors file, fitted (see the module comment). */
async function readVideoTensor (path: string, options: ReadVideoOptions): Promise<MediaVideo> {
  const target = checkTarget(options, true) as { width: number, height: number, frames: number }
  await checkInputFile(path, 'a safetensors video')
  const file = await readSafetensors(path)
  const t = Object.hasOwn(file.tensors, 'video') ? file.tensors.video : undefined
  if (t == null) {
    const names = Object.keys(file.tensors)
    throw new LumiereError('BAD_ARGUMENT', `${path} has no tensor named 'video' (it has ${names.length === 0 ? 'none' : oneLine(names.slice(0, 8).join(', '), 200)}); save the clip as 'video'`)
  }
  if (t.dtype !== 'F32') throw new LumiereError('BAD_ARGUMENT', `${path}: tensor 'video' is ${t.dtype}; it must be F32 (float32)`)
  const shape = t.shape.length === 5 && t.shape[0] === 1 ? t.shape.slice(1) : t.shape
  if (shape.length !== 4 || shape[0] !== 3 || shape.slice(1).some(d => d < 1)) {
    throw new LumiereError('BAD_ARGUMENT', `${path}: tensor 'video' has shape [${t.shape.join(', ')}]; expected [3, T, H, W] or [1, 3, T, H, W] (RGB, frames, height, width)`)
  }
  const src = view(t) as Float32Array
  const data = new Float32Array(src.length)
  for (let i = 0; i < src.length; i++) {
    const x = src[i]
    if (!Number.isFinite(x)) throw new LumiereError('BAD_ARGUMENT', `${path}: tensor 'video' has a non-finite value (${x}) at element ${i}; it must be in [−1, 1]`)
    data[i] = x > 1 ? 1 : x < -1 ? -1 : x
  }
  const fitted = fitClip({ data, shape }, target, 'linear')
  return {
    data: fitted.data,
    shape: fitted.shape,
    indices: fitted.indices,
    source: { kind: 'safetensors', width: shape[3], height: shape[2], frames: shape[1] }
  }
}

/**
 * Reads a video (file, PNG-frame folder or `.safetensors`) and fits it to
 * `[3, frames, height, width]` in [−1, 1] (see the module comment).
 */
export async function readVideo (path: string, options: ReadVideoOptions): Promise<MediaVideo> {
  checkTarget(options, true)
  if (typeof path === 'string' && extname(path).toLowerCase() === '.safetensors') return readVideoTensor(path, options)
  return readFrames(path, options, RGB_CONVERSION)
}
