/**
 * readMask: a mask file → the model's mask, 1 = KNOWN (keep), 0 = GENERATE.
 *
 * File convention (what people paint): WHITE marks the region to GENERATE,
 * black the region to keep. The model's convention (DESIGN §1) is the
 * opposite, 1 = known, so the file is inverted:
 *
 *     luma = (299·R + 587·G + 114·B) / 1000        (BT.601, as JPEG / PIL 'L')
 *     mask = luma ≥ 128 ? 0 (generate) : 1 (known)
 *
 * on the 8-bit decoded pixels, so grey anti-aliased edges and lossy (JPEG,
 * MP4) masks are thresholded at mid-grey: 127 → known, 128 → generate. Alpha
 * is ignored. The binary mask is then fitted by the same
 * cover-then-centre-crop rule as pictures but with NEAREST resampling
 * (fit.ts), so it stays exactly 0/1 and lines up with the picture read with
 * the same width × height.
 *
 * Shapes: without `frames`, the first frame of the file as `[1, H, W]`;
 * with `frames`, `[1, T, H, W]`: a video mask (file or PNG-frame folder)
 * fitted by the temporal rule of fit.ts (a still mask is thus repeated on
 * every frame).
 */
import { decodeFrames } from './decode.ts'
import { checkTarget, resample } from './fit.ts'
import type { FloatArray } from './fit.ts'
import { readFrames } from './read-video.ts'
import type { FrameConversion, VideoSource } from './read-video.ts'

/** Luma at or above this (0–255 scale) means "generate" (white in the file). */
export const MASK_LUMA_THRESHOLD = 128

export interface ReadMaskOptions {
  width: number
  height: number
  /** Read a video mask of T frames: the result is [1, T, H, W]. */
  frames?: number
  signal?: AbortSignal
  /** As in readVideo: cap on fitted frames kept during the first pass. */
  maxBytes?: number
}

export interface MediaMask extends FloatArray {
  source: VideoSource | { kind: 'file', width: number, height: number, frames: 1 }
  /** Source frame of each output frame (only for a [1, T, H, W] mask). */
  indices?: number[]
}

/** Whether an RGB pixel is marked "generate" in a mask file (luma ≥ 128). */
export function isGenerate (r: number, g: number, b: number): boolean {
  return 299 * r + 587 * g + 114 * b >= MASK_LUMA_THRESHOLD * 1000
}

/** Packed RGB888 mask pixels → one plane of w × h in the model's convention (1 = known, 0 = generate). */
export function rgbToKnownMask (rgb: Uint8Array, w: number, h: number): Float32Array {
  const n = w * h
  const out = new Float32Array(n)
  for (let i = 0, o = 0; i < n; i++, o += 3) out[i] = isGenerate(rgb[o], rgb[o + 1], rgb[o + 2]) ? 0 : 1
  return out
}

const MASK_CONVERSION: FrameConversion = { channels: 1, kernel: 'nearest', toPlanes: rgbToKnownMask, what: 'a mask video' }

/** Reads a mask image (or video, with `frames`) and fits it (see the module comment). */
export async function readMask (path: string, options: ReadMaskOptions): Promise<MediaMask> {
  const target = checkTarget(options, false)
  const { width: W, height: H } = target
  if (target.frames !== undefined) {
    return readFrames(path, { ...options, width: W, height: H, frames: target.frames }, MASK_CONVERSION)
  }
  let result: MediaMask | undefined
  await decodeFrames(path, { what: 'a mask image', firstOnly: true, signal: options.signal }, f => {
    const data = resample(rgbToKnownMask(f.rgb, f.width, f.height), 1, f.width, f.height, W, H, 'nearest')
    result = { data, shape: [1, H, W], source: { kind: 'file', width: f.width, height: f.height, frames: 1 } }
    return 'stop'
  })
  return result as MediaMask
}
