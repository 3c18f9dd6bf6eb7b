/**
 * writeVideo: one generated clip → a file (or folder), format chosen by the path.
 *
 * | path                                            | output                                    |
 * |-------------------------------------------------|-------------------------------------------|
 * | `*.mp4`                                         | H.264 MP4 via the bundled ffmpeg (mp4.ts) |
 * | `*.gif`                                         | looping GIF, global palette (gif.ts)      |
 * | ends in `/`, an existing folder, or no extension| folder of `frame-NNNN.png` (png-folder.ts)|
 *
 * Extensions are matched case-insensitively. `.safetensors` is not written
 * here: the caller saves the raw tensor with writeSafetensors. Anything else
 * is BAD_ARGUMENT listing what is supported.
 *
 * Every format is written atomically (temporary name in the same folder, then
 * rename), so a failure or abort never leaves a partial output under `path`.
 * A missing parent folder or an unwritable location is FILE_UNWRITABLE with a
 * message saying what to do; the parent folder is never created.
 * Pixels follow the quantisation rule in frames.ts.
 */
import { stat } from 'node:fs/promises'
import { basename, extname } from 'node:path'
import { LumiereError } from '../errors.ts'
import { throwIfAborted } from '../fs/atomic.ts'
import { asClip } from './frames.ts'
import type { ClipInput } from './frames.ts'
import { writeGif } from './gif.ts'
import { evenSize, writeMp4 } from './mp4.ts'
import { writePngFolder } from './png-folder.ts'

export type VideoFormat = 'mp4' | 'gif' | 'png'

/** What writeVideo accepts, for help texts and error messages. */
export const SUPPORTED_VIDEO_OUTPUTS = '.mp4 (H.264), .gif, or a folder of PNG frames (a path ending in /, an existing folder, or a name without extension)'

export interface WriteVideoOptions {
  /** Frames per second (> 0). */
  fps: number
  signal?: AbortSignal
  /** MP4 only: x264 CRF 0–51, default 18. */
  crf?: number
  /** MP4 only: x264 preset, default 'medium'. */
  preset?: string
  /** MP4 only: ffmpeg binary to use instead of $LUMIERE_FFMPEG / the bundled one. */
  ffmpeg?: string
}

export interface WrittenVideo {
  path: string
  format: VideoFormat
  /** Size of the encoded picture (MP4: odd sizes rounded up to even). */
  width: number
  height: number
  frames: number
  /** Bytes written (the sum of all PNGs for a folder). */
  bytes: number
}

function endsWithSeparator (path: string): boolean {
  return path.endsWith('/') || (process.platform === 'win32' && path.endsWith('\\'))
}

/**
 * The format a path asks for by its name alone (without looking at the disk;
 * writeVideo also treats an existing folder as 'png').
 */
export function videoFormatOf (path: string): VideoFormat {
  if (typeof path !== 'string' || path === '') throw new LumiereError('BAD_ARGUMENT', `no output path given; use ${SUPPORTED_VIDEO_OUTPUTS}`)
  if (endsWithSeparator(path)) return 'png'
  const ext = extname(path).toLowerCase()
  if (ext === '') return 'png'
  if (ext === '.mp4') return 'mp4'
  if (ext === '.gif') return 'gif'
  if (ext === '.safetensors') {
    throw new LumiereError('BAD_ARGUMENT', `${path}: .safetensors is the raw tensor, not a video; save it with writeSafetensors, or use ${SUPPORTED_VIDEO_OUTPUTS}`)
  }
  throw new LumiereError('BAD_ARGUMENT', `${path}: unsupported video extension ${ext}; use ${SUPPORTED_VIDEO_OUTPUTS}`)
}

/**
 * The output path for sample b of B: unchanged when B ≤ 1, else `-sample<b>`
 * inserted before the extension (`out.mp4` → `out-sample1.mp4`, `frames/` →
 * `frames-sample1/`, `clip` → `clip-sample1`).
 */
export function samplePath (path: string, b: number, B: number): string {
  if (!Number.isSafeInteger(B) || !Number.isSafeInteger(b) || b < 0 || (B > 0 && b >= B)) {
    throw new LumiereError('BAD_ARGUMENT', `samplePath: sample ${b} of ${B} is out of range`)
  }
  if (B <= 1) return path
  const trailing = /[\\/]+$/.exec(path)?.[0] ?? ''
  const body = path.slice(0, path.length - trailing.length)
  const ext = trailing === '' ? extname(basename(body)) : ''
  return `${body.slice(0, body.length - ext.length)}-sample${b}${ext}${trailing}`
}

async function isDirectory (path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory()
  } catch {
    return false
  }
}

/**
 * Writes one clip (`[3, T, H, W]` float32 in [−1, 1], or `[1, 3, T, H, W]`)
 * to `path` as MP4, GIF or a PNG folder (see the table above).
 */
export async function writeVideo (path: string, clip: ClipInput, options: WriteVideoOptions): Promise<WrittenVideo> {
  const fps = options?.fps
  if (typeof fps !== 'number' || !Number.isFinite(fps) || fps <= 0 || fps > 1000) {
    throw new LumiereError('BAD_ARGUMENT', `fps must be a number in (0, 1000], got ${String(fps)}`)
  }
  const format: VideoFormat = (await isDirectory(path)) ? 'png' : videoFormatOf(path)
  const c = asClip(clip)
  throwIfAborted(options.signal)
  const { frames, width, height } = c
  switch (format) {
    case 'mp4': {
      await writeMp4(path, c, { fps, crf: options.crf, preset: options.preset, signal: options.signal, ffmpeg: options.ffmpeg })
      const bytes = (await stat(path)).size
      return { path, format, ...evenSize(width, height), frames, bytes }
    }
    case 'gif':
      return { path, format, width, height, frames, bytes: await writeGif(path, c, fps, options.signal) }
    case 'png':
      return { path, format, width, height, frames, bytes: await writePngFolder(path, c, options.signal) }
  }
}
