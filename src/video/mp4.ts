/**
 * MP4 (H.264) output through the bundled ffmpeg binary.
 *
 * Raw RGB24 frames are piped to ffmpeg's stdin (respecting backpressure),
 * converted to YUV 4:2:0 with the BT.709 matrix in limited ("tv") range, and
 * encoded with libx264 (`-preset medium`, `-crf 18` by default: visually
 * near-lossless), tagged BT.709 so players convert back with the same matrix,
 * and muxed with `-movflags +faststart` (index at the front, so the file
 * plays while streaming). The timebase is exactly `fps`.
 *
 * Odd sizes: H.264 4:2:0 needs even width and height, so an odd width or
 * height is padded by ONE column/row that repeats the last column/row (no
 * scaling, no black bar). The MP4 is then (W + W%2) × (H + H%2); every
 * original pixel stays where it was.
 *
 * ffmpeg writes a temporary file next to the target which is renamed into
 * place only after ffmpeg exits 0. A non-zero exit becomes a LumiereError
 * FILE_UNWRITABLE carrying ffmpeg's last stderr line; an abort kills ffmpeg
 * and becomes ABORTED. Either way the temporary is removed.
 */
import { spawn } from 'node:child_process'
import type { Writable } from 'node:stream'
import { LumiereError } from '../errors.ts'
import { aborted, throwIfAborted, withTempFile } from '../fs/atomic.ts'
import { rgbFrame } from './frames.ts'
import type { ClipView } from './frames.ts'
import { ffmpegAvailable, ffmpegPath } from './probe.ts'

export interface Mp4Options {
  fps: number
  /** x264 constant rate factor, 0 (lossless) … 51; default 18. */
  crf?: number
  /** x264 preset; default 'medium'. */
  preset?: string
  signal?: AbortSignal
  /** The ffmpeg binary; default {@link ffmpegPath}(). */
  ffmpeg?: string
}

export const DEFAULT_CRF = 18

const PRESETS = ['ultrafast', 'superfast', 'veryfast', 'faster', 'fast', 'medium', 'slow', 'slower', 'veryslow', 'placebo']

/** Even output size for H.264 4:2:0: odd dimensions grow by one. */
export function evenSize (width: number, height: number): { width: number, height: number } {
  return { width: width + (width & 1), height: height + (height & 1) }
}

/** Pads a packed RGB frame to (ow, oh) by repeating its last column and row. */
export function padRgbFrame (src: Uint8Array, w: number, h: number, ow: number, oh: number): Uint8Array {
  if (ow === w && oh === h) return src
  const out = new Uint8Array(ow * oh * 3)
  for (let y = 0; y < oh; y++) {
    const sy = Math.min(y, h - 1)
    out.set(src.subarray(sy * w * 3, (sy + 1) * w * 3), y * ow * 3)
    const last = (sy * w + w - 1) * 3
    for (let x = w; x < ow; x++) {
      const o = (y * ow + x) * 3
      out[o] = src[last]
      out[o + 1] = src[last + 1]
      out[o + 2] = src[last + 2]
    }
  }
  return out
}

/** The ffmpeg argument list for encoding raw RGB24 of (w, h) at fps to `out`. */
export function ffmpegArgs (w: number, h: number, fps: number, out: string, crf = DEFAULT_CRF, preset = 'medium'): string[] {
  return [
    '-hide_banner', '-nostats', '-loglevel', 'error',
    '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-video_size', `${w}x${h}`, '-framerate', String(fps),
    '-i', 'pipe:0',
    '-an',
    '-vf', 'scale=out_color_matrix=bt709:out_range=tv:flags=accurate_rnd+full_chroma_int,format=yuv420p',
    '-c:v', 'libx264', '-preset', preset, '-crf', String(crf), '-pix_fmt', 'yuv420p',
    '-colorspace', 'bt709', '-color_primaries', 'bt709', '-color_trc', 'bt709', '-color_range', 'tv',
    '-movflags', '+faststart',
    '-f', 'mp4', '-y', out
  ]
}

function lastLine (text: string): string {
  const lines = text.split(/\r?\n/).map(l => l.trim()).filter(l => l !== '')
  return lines.at(-1) ?? ''
}

/** Waits until a writable can take more, or is gone (closed/errored). */
function drained (stream: Writable): Promise<void> {
  return new Promise(resolve => {
    const done = (): void => {
      stream.off('drain', done)
      stream.off('close', done)
      stream.off('error', done)
      resolve()
    }
    stream.on('drain', done)
    stream.on('close', done)
    stream.on('error', done)
  })
}

/** Encodes a validated clip to an MP4 at `target` (atomically). */
export async function writeMp4 (target: string, clip: ClipView, opts: Mp4Options): Promise<void> {
  const crf = opts.crf ?? DEFAULT_CRF
  const preset = opts.preset ?? 'medium'
  if (!Number.isFinite(crf) || crf < 0 || crf > 51) throw new LumiereError('BAD_ARGUMENT', `crf must be between 0 and 51, got ${crf}`)
  if (!PRESETS.includes(preset)) throw new LumiereError('BAD_ARGUMENT', `preset must be one of ${PRESETS.join(', ')}; got ${preset}`)
  const bin = opts.ffmpeg ?? ffmpegPath()
  if (bin == null || !ffmpegAvailable(bin)) {
    throw new LumiereError('FILE_NOT_FOUND', `cannot write ${target}: no usable ffmpeg${bin == null ? '' : ` at ${bin}`}; run npm ci (it installs a bundled ffmpeg), set LUMIERE_FFMPEG to an ffmpeg binary, or write .gif or a PNG folder instead`)
  }
  throwIfAborted(opts.signal)
  const { width: ow, height: oh } = evenSize(clip.width, clip.height)
  await withTempFile(target, tmp => runFfmpeg(bin, ffmpegArgs(ow, oh, opts.fps, tmp, crf, preset), target, clip, ow, oh, opts.signal))
}

/** Runs ffmpeg, feeding it the clip's frames on stdin; resolves when it exited 0. */
async function runFfmpeg (bin: string, args: string[], target: string, clip: ClipView, ow: number, oh: number, signal?: AbortSignal): Promise<void> {
  const { width: w, height: h } = clip
  let stderr = ''
  let spawnError: Error | undefined
  let wasAborted = false
  let gone = false
  const child = spawn(bin, args, { stdio: ['pipe', 'ignore', 'pipe'] })
  const exited = new Promise<{ code: number | null, sig: NodeJS.Signals | null }>(resolve => {
    child.on('error', err => { spawnError = err; gone = true; resolve({ code: null, sig: null }) })
    child.on('close', (code, sig) => { gone = true; resolve({ code, sig }) })
  })
  child.stderr.setEncoding('utf8')
  child.stderr.on('data', (s: string) => { stderr = (stderr + s).slice(-16384) })
  // ffmpeg exiting early makes writes fail with EPIPE; its exit status is what we report.
  child.stdin.on('error', () => {})
  const onAbort = (): void => { wasAborted = true; child.kill('SIGKILL') }
  signal?.addEventListener('abort', onAbort, { once: true })
  try {
    for (let t = 0; t < clip.frames && !gone && !wasAborted && !child.stdin.destroyed; t++) {
      const frame = padRgbFrame(rgbFrame(clip, t), w, h, ow, oh)
      if (!child.stdin.write(frame)) await Promise.race([drained(child.stdin), exited])
    }
    child.stdin.end()
    const { code, sig } = await exited
    if (wasAborted || signal?.aborted === true) throw aborted(signal)
    if (spawnError != null) {
      throw new LumiereError('FILE_NOT_FOUND', `cannot write ${target}: could not start ffmpeg at ${bin} (${spawnError.message}); run npm ci or set LUMIERE_FFMPEG to a working ffmpeg`, { cause: spawnError })
    }
    if (code !== 0) {
      const line = lastLine(stderr)
      const how = sig != null ? `was killed by ${sig}` : `exited with code ${code}`
      throw new LumiereError('FILE_UNWRITABLE', `cannot write ${target}: ffmpeg ${how}${line === '' ? '' : `: ${line}`}`)
    }
  } finally {
    signal?.removeEventListener('abort', onAbort)
    if (!gone) child.kill('SIGKILL')
    await exited
  }
}
