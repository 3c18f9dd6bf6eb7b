/**
 * A folder of PNG frames: `frame-0000.png`, `frame-0001.png`, … (8-bit RGB,
 * no alpha, pngjs). The index has at least 4 digits, more when the clip has
 * ≥ 10000 frames, so names always sort in frame order.
 *
 * Atomicity:
 * - folder does not exist yet: frames are written into a hidden temporary
 *   folder next to it, which is renamed to the target when complete; the
 *   parent folder must exist (it is not created).
 * - folder exists: frames are written into a hidden temporary folder inside
 *   it; only when all are written are they renamed into place (replacing
 *   same-named files), and `frame-N.png` files left by an earlier, longer
 *   clip are deleted so the folder holds exactly this clip. Other files are
 *   left alone. A failure before that point leaves the folder untouched.
 */
import { readdir, rename, rmdir, stat, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setImmediate as tick } from 'node:timers/promises'
import { PNG } from 'pngjs'
import { throwIfAborted, commit, createTempDir, discard, unwritable } from '../fs/atomic.ts'
import { rgbFrame } from './frames.ts'
import type { ClipView } from './frames.ts'
import { LumiereError } from '../errors.ts'

const FRAME_NAME = /^frame-(\d+)\.png$/

/** The file name of frame t in a clip of T frames. */
export function frameName (t: number, frames: number): string {
  const digits = Math.max(4, String(Math.max(0, frames - 1)).length)
  return `frame-${String(t).padStart(digits, '0')}.png`
}

/** One RGB888 frame as PNG bytes (colour type 2, 8 bits). */
export function encodePng (rgb: Uint8Array, width: number, height: number): Uint8Array {
  // pngjs only reads width, height and data from its first argument; with
  // inputColorType 2 it takes packed RGB as is.
  const img = { width, height, data: Buffer.from(rgb.buffer, rgb.byteOffset, rgb.byteLength) } as unknown as PNG
  return PNG.sync.write(img, { colorType: 2, inputColorType: 2, inputHasAlpha: false, bitDepth: 8, deflateLevel: 6 })
}

async function isDirectory (path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory()
  } catch {
    return false
  }
}

async function writeFrames (dir: string, target: string, clip: ClipView, signal?: AbortSignal): Promise<number> {
  const rgb = new Uint8Array(clip.width * clip.height * 3)
  let bytes = 0
  for (let t = 0; t < clip.frames; t++) {
    throwIfAborted(signal)
    const png = encodePng(rgbFrame(clip, t, rgb), clip.width, clip.height)
    try {
      await writeFile(join(dir, frameName(t, clip.frames)), png)
    } catch (err) {
      throw unwritable(target, err)
    }
    bytes += png.byteLength
    if (t % 8 === 7) await tick()
  }
  throwIfAborted(signal)
  return bytes
}

/**
 * Writes a validated clip as a folder of PNG frames at `target` (a folder
 * path, with or without a trailing slash); returns the total PNG bytes.
 */
export async function writePngFolder (target: string, clip: ClipView, signal?: AbortSignal): Promise<number> {
  throwIfAborted(signal)
  const dir = target.replace(/[\\/]+$/, '') || target
  const exists = await isDirectory(dir)
  const tmp = exists ? await createTempDir(dir, dir) : await createTempDir(dir)
  let bytes: number
  try {
    bytes = await writeFrames(tmp, dir, clip, signal)
  } catch (err) {
    await discard(tmp)
    throw err instanceof LumiereError ? err : unwritable(dir, err)
  }
  if (!exists) {
    await commit(tmp, dir)
    return bytes
  }
  try {
    const keep = new Set<string>()
    for (let t = 0; t < clip.frames; t++) keep.add(frameName(t, clip.frames))
    for (const name of await readdir(dir)) {
      if (FRAME_NAME.test(name) && !keep.has(name)) await unlink(join(dir, name))
    }
    for (const name of keep) await rename(join(tmp, name), join(dir, name))
    await rmdir(tmp)
  } catch (err) {
    await discard(tmp)
    throw unwritable(dir, err)
  }
  return bytes
}
