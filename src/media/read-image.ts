/**
 * readImage: a picture file → the model's `[3, H, W]` float32 in [−1, 1].
 *
 * Any file the bundled ffmpeg decodes (PNG, JPEG, WebP, BMP, TIFF, GIF, …;
 * a video gives its first frame) is decoded to 8-bit RGB by decode.ts, each
 * byte mapped to float by the inverse quantisation rule of video/frames.ts
 * (x = byte / 127.5 − 1, so −1 = black, 1 = white, and quantize(x) gives
 * the byte back), then fitted to width × height by the cover-then-centre-crop
 * rule with the anti-aliased bilinear kernel (fit.ts). A picture that is
 * already width × height comes back exactly, byte for byte.
 *
 * Errors: missing file FILE_NOT_FOUND; a folder, an empty file or anything
 * ffmpeg cannot decode BAD_ARGUMENT "<path> is not an image ffmpeg can read
 * (<reason>)"; bad sizes BAD_ARGUMENT.
 */
import { dequantize } from '../video/frames.ts'
import { decodeFrames } from './decode.ts'
import { checkTarget, resample } from './fit.ts'
import type { FloatArray } from './fit.ts'

export interface ReadImageOptions {
  /** Model width and height to fit to. */
  width: number
  height: number
  signal?: AbortSignal
}

/** A fitted picture `[3, H, W]`, with the size it had in the file. */
export interface MediaImage extends FloatArray {
  source: { width: number, height: number }
}

/** x = byte / 127.5 − 1 for all 256 bytes (dequantize, tabulated). */
const BYTE_TO_FLOAT = Float32Array.from({ length: 256 }, (_, b) => dequantize(b))

/** Packed RGB888 (w × h × 3 bytes) → planar float32 `[3, h, w]` in [−1, 1]. */
export function rgbToPlanes (rgb: Uint8Array, w: number, h: number): Float32Array {
  const n = w * h
  const out = new Float32Array(3 * n)
  for (let i = 0, o = 0; i < n; i++, o += 3) {
    out[i] = BYTE_TO_FLOAT[rgb[o]]
    out[n + i] = BYTE_TO_FLOAT[rgb[o + 1]]
    out[2 * n + i] = BYTE_TO_FLOAT[rgb[o + 2]]
  }
  return out
}

/** Reads a picture and fits it to `[3, height, width]` (see the module comment). */
export async function readImage (path: string, options: ReadImageOptions): Promise<MediaImage> {
  const { width: W, height: H } = checkTarget(options, false)
  let result: MediaImage | undefined
  await decodeFrames(path, { what: 'an image', firstOnly: true, signal: options.signal }, f => {
    const data = resample(rgbToPlanes(f.rgb, f.width, f.height), 3, f.width, f.height, W, H, 'linear')
    result = { data, shape: [3, H, W], source: { width: f.width, height: f.height } }
    return 'stop'
  })
  return result as MediaImage
}
