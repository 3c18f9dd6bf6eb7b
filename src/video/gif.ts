/**
 * Animated GIF output with gifenc (pure JS).
 *
 * Palette: ONE global palette for the whole clip (≤ 256 colours), built with
 * gifenc's PnnQuant quantiser from up to 2^20 pixels sampled evenly across
 * all frames; each frame is mapped to its nearest palette colours, without
 * dithering. A global palette avoids the colour flicker of per-frame palettes
 * and stores one colour table. A clip with ≤ 256 distinct colours that are
 * distinct in RGB565 comes out exact; smooth gradients show banding.
 *
 * Timing: loops forever (NETSCAPE2.0, count 0). GIF delays are whole
 * centiseconds, so frame i waits round((i+1)·100/fps) − round(i·100/fps)
 * cs: the total duration matches fps with no drift (e.g. 8 fps → 12/13 cs
 * alternating). Delays are at least 2 cs (most viewers slow 0–1 cs to 10 cs),
 * so a GIF plays at most 50 fps; above that the clip plays slower.
 */
import { createRequire } from 'node:module'
import { setImmediate as tick } from 'node:timers/promises'
import { LumiereError } from '../errors.ts'
import { throwIfAborted, withTempFile, writeAndSync } from '../fs/atomic.ts'
import { quantize as q8, rgbFrame } from './frames.ts'
import type { ClipView } from './frames.ts'

type Palette = number[][]

interface GifEncoder {
  writeFrame: (index: Uint8Array, width: number, height: number, opts: { palette?: Palette, delay?: number, repeat?: number }) => void
  finish: () => void
  bytesView: () => Uint8Array
}

interface GifEnc {
  GIFEncoder: (opts?: { initialCapacity?: number }) => GifEncoder
  quantize: (rgba: Uint8Array, maxColors: number, opts?: { format?: 'rgb565' | 'rgb444' }) => Palette
  applyPalette: (rgba: Uint8Array, palette: Palette, format?: 'rgb565' | 'rgb444') => Uint8Array
}

const gifenc = createRequire(import.meta.url)('gifenc') as GifEnc

/** Most pixels fed to the palette quantiser. */
export const GIF_PALETTE_SAMPLE = 1 << 20

/** Frame delays in centiseconds for T frames at fps (cumulative rounding, each ≥ 2). */
export function gifDelays (frames: number, fps: number): number[] {
  const out: number[] = []
  for (let i = 0; i < frames; i++) {
    out.push(Math.max(2, Math.round((i + 1) * 100 / fps) - Math.round(i * 100 / fps)))
  }
  return out
}

/** The global palette for a clip, from an even sample of its pixels. */
function clipPalette (clip: ClipView): Palette {
  const { data, frames, height, width } = clip
  const n = height * width
  const total = frames * n
  const step = Math.max(1, Math.ceil(total / GIF_PALETTE_SAMPLE))
  const count = Math.ceil(total / step)
  const rgba = new Uint8Array(count * 4)
  for (let k = 0, o = 0; k < total; k += step, o += 4) {
    const t = Math.floor(k / n)
    const i = k - t * n
    rgba[o] = q8(data[t * n + i])
    rgba[o + 1] = q8(data[(frames + t) * n + i])
    rgba[o + 2] = q8(data[(2 * frames + t) * n + i])
    rgba[o + 3] = 255
  }
  return gifenc.quantize(rgba, 256, { format: 'rgb565' })
}

/** Encodes a validated clip as GIF bytes. */
export async function encodeGif (clip: ClipView, fps: number, signal?: AbortSignal): Promise<Uint8Array> {
  const { frames, height, width } = clip
  if (width > 65535 || height > 65535) throw new LumiereError('BAD_ARGUMENT', `GIF frames are at most 65535×65535 pixels, got ${width}×${height}; write .mp4 or a PNG folder`)
  const palette = clipPalette(clip)
  const delays = gifDelays(frames, fps)
  const n = width * height
  const rgb = new Uint8Array(n * 3)
  const rgba = new Uint8Array(n * 4) // own buffer at offset 0: gifenc reads it as Uint32
  const enc = gifenc.GIFEncoder({ initialCapacity: Math.min(n * frames, 1 << 26) + 4096 })
  for (let t = 0; t < frames; t++) {
    throwIfAborted(signal)
    rgbFrame(clip, t, rgb)
    for (let i = 0, s = 0, o = 0; i < n; i++, s += 3, o += 4) {
      rgba[o] = rgb[s]
      rgba[o + 1] = rgb[s + 1]
      rgba[o + 2] = rgb[s + 2]
      rgba[o + 3] = 255
    }
    const index = gifenc.applyPalette(rgba, palette, 'rgb565')
    // The palette on the first frame becomes the global colour table; later frames use it.
    enc.writeFrame(index, width, height, t === 0 ? { palette, delay: delays[t] * 10, repeat: 0 } : { delay: delays[t] * 10 })
    if (t % 8 === 7) await tick() // let an abort signal through on long clips
  }
  enc.finish()
  return enc.bytesView()
}

/** Writes a validated clip as an animated GIF at `target` (atomically); returns its size in bytes. */
export async function writeGif (target: string, clip: ClipView, fps: number, signal?: AbortSignal): Promise<number> {
  throwIfAborted(signal)
  let size = 0
  await withTempFile(target, async tmp => {
    const bytes = await encodeGif(clip, fps, signal)
    throwIfAborted(signal)
    await writeAndSync(tmp, bytes)
    size = bytes.byteLength
  })
  return size
}
