/**
 * Decoding user media into 8-bit RGB frames, one at a time.
 *
 * Decoder: the bundled ffmpeg ({@link ffmpegPath}: $LUMIERE_FFMPEG, else
 * `@ffmpeg-installer/ffmpeg`). It decodes the file's first video stream
 * (`-map 0:v:0`) at its stored size, converts each frame to RGB24 with
 * swscale (`in_color_matrix=auto:in_range=auto`, i.e. the matrix and range
 * the file is tagged with — BT.601 when untagged — and
 * `accurate_rnd+full_chroma_int`), and writes the frames to a pipe as PPM
 * (`-f image2pipe -c:v ppm`), whose per-frame header carries the size. Every
 * decoded frame comes out exactly once (`-vsync passthrough`): frames are
 * counted, not timed. ffmpeg's default auto-rotation applies (a phone video
 * comes out upright); pixels are taken as square (sample aspect ratio is
 * ignored); an alpha channel is dropped (the stored colour is kept, not
 * composited). All resizing is done afterwards in JS by fit.ts.
 *
 * Safety: ffmpeg may only open local files (`-protocol_whitelist file`, the
 * path passed as `file:<absolute path>`) through a whitelist of image and
 * video demuxers ({@link DEMUXERS}), so a playlist cannot fetch URLs and a
 * text file is not "decoded" by the tty demuxer. A path with characters the
 * image2 demuxer would read as a sequence pattern or glob (`% * ? [ ] { }`)
 * is opened through a temporary symlink with a plain name.
 *
 * Without a usable ffmpeg, PNG files (recognised by their signature) are
 * decoded with pngjs (8-bit RGB; 16-bit samples rescaled to 8 bits by
 * pngjs); anything else is FILE_NOT_FOUND saying how to get an ffmpeg.
 *
 * Damaged files are refused, not read in part: ffmpeg runs with `-xerror`
 * and `-loglevel error`, and any error it reports (a truncated MP4 or GIF, a
 * corrupt JPEG) fails the read, even if some frames came out.
 *
 * Errors are one-line LumiereErrors: a missing file FILE_NOT_FOUND; a
 * folder, an empty file, or anything ffmpeg cannot decode BAD_ARGUMENT
 * "<path> is not <what> ffmpeg can read (<ffmpeg's reason>)"; an abort
 * ABORTED.
 */
import { spawn } from 'node:child_process'
import { mkdtemp, open, readFile, rm, stat, symlink } from 'node:fs/promises'
import type { Stats } from 'node:fs'
import { tmpdir } from 'node:os'
import { extname, join, resolve } from 'node:path'
import { PNG } from 'pngjs'
import { LumiereError } from '../errors.ts'
import { ffmpegAvailable, ffmpegPath } from '../video/probe.ts'

/** Demuxers ffmpeg may use on user media (others are refused as "not on whitelist"). */
export const DEMUXERS = [
  'mov', 'mp4', 'm4a', '3gp', '3g2', 'mj2', 'matroska', 'webm', 'avi', 'flv', 'mpegts', 'mpeg', 'ogg', 'asf', 'nut',
  'gif', 'gif_pipe', 'apng', 'image2', 'yuv4mpegpipe', 'h264', 'hevc', 'm4v', 'mjpeg',
  'png_pipe', 'jpeg_pipe', 'jpegls_pipe', 'webp_pipe', 'bmp_pipe', 'tiff_pipe', 'ppm_pipe', 'pgm_pipe', 'pgmyuv_pipe',
  'pbm_pipe', 'pam_pipe', 'qoi_pipe', 'j2k_pipe', 'dpx_pipe', 'exr_pipe', 'psd_pipe', 'sgi_pipe', 'xwd_pipe', 'pcx_pipe',
  'dds_pipe', 'hdr_pipe', 'pictor_pipe'
].join(',')

/** The swscale conversion every decoded frame goes through (no resizing). */
export const RGB_FILTER = 'scale=in_color_matrix=auto:in_range=auto:flags=accurate_rnd+full_chroma_int,format=rgb24'

/** One decoded frame: packed RGB888, `width × height × 3` bytes. */
export interface DecodedFrame {
  rgb: Uint8Array
  width: number
  height: number
  /** 0-based index of the frame in the file. */
  index: number
}

export interface DecodeOptions {
  /** How the file is described in errors, with its article: 'an image', 'a video', 'a mask image'. */
  what: string
  /** Decode only the first frame. */
  firstOnly?: boolean
  /** Decode every frame at 1×1 (to count frames cheaply in memory; ffmpeg only). */
  countOnly?: boolean
  signal?: AbortSignal
}

/** What onFrame may return: 'stop' ends decoding early (the promise resolves normally). */
export type FrameHandler = (frame: DecodedFrame) => void | 'stop'

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]
const PATTERN_CHARS = /[%*?[\]{}]/

/** Collapses whitespace so a message stays on one line; caps its length. */
export function oneLine (text: string, max = 300): string {
  const s = text.replace(/\s+/g, ' ').trim()
  return s.length > max ? `${s.slice(0, max - 1)}…` : s
}

function abortedError (signal: AbortSignal | undefined, path: string): LumiereError {
  const reason: unknown = signal?.reason
  return new LumiereError('ABORTED', `reading ${path} aborted${reason instanceof Error ? `: ${oneLine(reason.message)}` : ''}`, { cause: reason })
}

/**
 * Checks that `path` is a readable, non-empty file (not a folder): missing →
 * FILE_NOT_FOUND, folder / empty → BAD_ARGUMENT. Returns its stats.
 */
export async function checkInputFile (path: unknown, what: string): Promise<Stats> {
  if (typeof path !== 'string' || path === '') throw new LumiereError('BAD_ARGUMENT', `no path given for ${what}`)
  let st: Stats
  try {
    st = await stat(path)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    const why = code === 'ENOENT' || code === 'ENOTDIR' ? 'no such file' : code === 'EACCES' ? 'permission denied' : oneLine((err as Error).message)
    throw new LumiereError('FILE_NOT_FOUND', `cannot read ${path}: ${why}`, { cause: err })
  }
  if (st.isDirectory()) throw new LumiereError('BAD_ARGUMENT', `${path} is a folder, not ${what}`)
  if (!st.isFile()) throw new LumiereError('BAD_ARGUMENT', `${path} is not a regular file, so not ${what}`)
  if (st.size === 0) throw new LumiereError('BAD_ARGUMENT', `${path} is empty, not ${what}`)
  return st
}

async function hasPngSignature (path: string): Promise<boolean> {
  const fh = await open(path, 'r').catch(() => null)
  if (fh == null) return false
  try {
    const head = new Uint8Array(8)
    const { bytesRead } = await fh.read(head, 0, 8, 0)
    return bytesRead === 8 && PNG_SIGNATURE.every((b, i) => head[i] === b)
  } finally {
    await fh.close()
  }
}

/**
 * Decodes the frames of an image or video file in order, calling `onFrame`
 * for each as soon as it is decoded (frames are not kept here). Resolves
 * with the number of frames delivered.
 */
export async function decodeFrames (path: string, options: DecodeOptions, onFrame: FrameHandler): Promise<number> {
  const { what, signal } = options
  if (signal?.aborted === true) throw abortedError(signal, String(path))
  await checkInputFile(path, what)
  const bin = ffmpegPath()
  if (bin == null || !ffmpegAvailable(bin)) {
    if (await hasPngSignature(path)) return decodePng(path, options, onFrame)
    throw new LumiereError('FILE_NOT_FOUND', `cannot decode ${path}: no usable ffmpeg${bin == null ? '' : ` at ${bin}`}; run npm ci (it installs a bundled ffmpeg) or set LUMIERE_FFMPEG to an ffmpeg binary (PNG files are read without one)`)
  }
  let input = resolve(path)
  let linkDir: string | undefined
  if (PATTERN_CHARS.test(input)) {
    linkDir = await mkdtemp(join(tmpdir(), 'lumiere-media-'))
    const ext = extname(input).toLowerCase().replace(/[^.a-z0-9]/g, '')
    const link = join(linkDir, `input${ext}`)
    await symlink(input, link)
    input = link
  }
  try {
    return await runFfmpeg(bin, path, input, options, onFrame)
  } finally {
    if (linkDir != null) await rm(linkDir, { recursive: true, force: true })
  }
}

function ffmpegArgs (input: string, options: DecodeOptions): string[] {
  return [
    '-hide_banner', '-nostdin', '-nostats', '-loglevel', 'error', '-xerror',
    '-protocol_whitelist', 'file', '-format_whitelist', DEMUXERS,
    '-i', `file:${input}`,
    '-map', '0:v:0', '-an', '-sn', '-dn', '-vsync', 'passthrough',
    ...(options.firstOnly === true ? ['-frames:v', '1'] : []),
    '-vf', options.countOnly === true ? 'scale=1:1,format=rgb24' : RGB_FILTER,
    '-f', 'image2pipe', '-c:v', 'ppm', '-pix_fmt', 'rgb24', 'pipe:1'
  ]
}

/** Why ffmpeg failed, in words for the user (its first error line, without the "[demuxer @ 0x…]" prefix and the path). */
function ffmpegReason (stderr: string, input: string): string {
  const lines = stderr.split(/\r?\n/).map(l => l.trim()).filter(l => l !== '')
  if (lines.some(l => /matches no streams/.test(l))) return 'it has no video stream'
  if (lines.some(l => /not on whitelist/.test(l))) return 'not an image or video format'
  const first = (lines[0] ?? '').replace(/^\[[^\]]* @ 0x[0-9a-f]+\]\s*/i, '').split(`file:${input}`).join('').replace(/^[:\s]+/, '')
  return oneLine(first === '' ? 'ffmpeg failed' : first, 200)
}

/** ffmpeg's output is not the PPM stream asked for. */
class PpmError extends Error {}

/** PPM (P6, maxval 255) frames from a byte stream, assembled without re-copying whole frames. */
class PpmReader {
  private head: Uint8Array = new Uint8Array(0)
  private frame: Uint8Array | null = null
  private filled = 0
  private width = 0
  private height = 0
  count = 0

  /** Feeds a chunk; calls emit for every completed frame; returns false if emit asked to stop. */
  push (chunk: Uint8Array, emit: FrameHandler): boolean {
    let data = chunk
    while (data.length > 0) {
      if (this.frame == null) {
        const joined = new Uint8Array(this.head.length + data.length)
        joined.set(this.head)
        joined.set(data, this.head.length)
        const text = Buffer.from(joined.buffer, joined.byteOffset, Math.min(joined.length, 64)).toString('latin1')
        const m = /^P6\s+(\d+)\s+(\d+)\s+(\d+)\s/.exec(text)
        if (m == null) {
          if (joined.length >= 64 || !/^(P(6(\s+\d+)*\s*)?)?$/.test(text)) throw new PpmError('ffmpeg wrote something that is not a PPM frame')
          this.head = joined
          return true
        }
        if (m[3] !== '255') throw new PpmError(`ffmpeg wrote a PPM frame with maxval ${m[3]}`)
        this.width = Number(m[1])
        this.height = Number(m[2])
        this.frame = new Uint8Array(this.width * this.height * 3)
        this.filled = 0
        this.head = new Uint8Array(0)
        data = joined.subarray(m[0].length)
        continue
      }
      const take = Math.min(data.length, this.frame.length - this.filled)
      this.frame.set(data.subarray(0, take), this.filled)
      this.filled += take
      data = data.subarray(take)
      if (this.filled === this.frame.length) {
        const frame = { rgb: this.frame, width: this.width, height: this.height, index: this.count++ }
        this.frame = null
        if (emit(frame) === 'stop') return false
      }
    }
    return true
  }

  /** Whether a frame or header was left incomplete. */
  get partial (): boolean {
    return this.frame != null || this.head.length > 0
  }
}

function runFfmpeg (bin: string, path: string, input: string, options: DecodeOptions, onFrame: FrameHandler): Promise<number> {
  const { what, signal } = options
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ffmpegArgs(input, options), { stdio: ['ignore', 'pipe', 'pipe'] })
    const reader = new PpmReader()
    let stderr = ''
    let failure: unknown
    let stopped = false
    let settled = false
    const finish = (fn: () => void): void => {
      if (settled) return
      settled = true
      signal?.removeEventListener('abort', onAbort)
      fn()
    }
    const kill = (): void => { if (child.exitCode == null && child.signalCode == null) child.kill('SIGKILL') }
    const onAbort = (): void => { failure ??= abortedError(signal, path); kill() }
    signal?.addEventListener('abort', onAbort, { once: true })
    child.stderr.setEncoding('utf8')
    child.stderr.on('data', (s: string) => { if (stderr.length < 65536) stderr += s })
    child.stdout.on('data', (chunk: Buffer) => {
      if (stopped || failure != null) return
      try {
        if (!reader.push(chunk, onFrame)) { stopped = true; kill() }
      } catch (err) {
        failure = err instanceof PpmError ? new LumiereError('BAD_ARGUMENT', `${path} is not ${what} ffmpeg can read (${oneLine(err.message, 200)})`, { cause: err }) : err
        kill()
      }
    })
    child.on('error', err => {
      finish(() => reject(new LumiereError('FILE_NOT_FOUND', `cannot run ffmpeg at ${bin} to read ${path}: ${oneLine(err.message)}; run npm ci or set LUMIERE_FFMPEG to an ffmpeg binary`, { cause: err })))
    })
    child.on('close', code => {
      finish(() => {
        if (failure != null) reject(failure)
        else if (stopped) resolve(reader.count)
        else if (code !== 0 || stderr.trim() !== '') reject(new LumiereError('BAD_ARGUMENT', `${path} is not ${what} ffmpeg can read (${ffmpegReason(stderr, input)})`))
        else if (reader.partial) reject(new LumiereError('BAD_ARGUMENT', `${path} is not ${what} ffmpeg can read (its last frame came out incomplete)`))
        else if (reader.count === 0) reject(new LumiereError('BAD_ARGUMENT', `${path} is not ${what} ffmpeg can read (no frames decoded)`))
        else resolve(reader.count)
      })
    })
  })
}

/** The no-ffmpeg path for PNG files: pngjs, one frame. */
async function decodePng (path: string, options: DecodeOptions, onFrame: FrameHandler): Promise<number> {
  let png: { width: number, height: number, data: Uint8Array }
  try {
    png = PNG.sync.read(await readFile(path))
  } catch (err) {
    throw new LumiereError('BAD_ARGUMENT', `${path} is not ${options.what} that can be read without ffmpeg (${oneLine((err as Error).message, 200)})`, { cause: err })
  }
  const { width, height, data } = png
  const n = width * height
  const rgb = new Uint8Array(n * 3)
  for (let i = 0; i < n; i++) {
    rgb[3 * i] = data[4 * i]
    rgb[3 * i + 1] = data[4 * i + 1]
    rgb[3 * i + 2] = data[4 * i + 2]
  }
  if (options.signal?.aborted === true) throw abortedError(options.signal, path)
  onFrame({ rgb, width, height, index: 0 })
  return 1
}
