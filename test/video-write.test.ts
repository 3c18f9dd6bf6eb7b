import { spawn } from 'node:child_process'
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { PNG } from 'pngjs'
import { dequantize, toRgbFrames } from '../src/video/frames.ts'
import type { Float32Clip } from '../src/video/frames.ts'
import { gifDelays } from '../src/video/gif.ts'
import { ffmpegAvailable, ffmpegPath, probeFfmpeg } from '../src/video/probe.ts'
import { samplePath, videoFormatOf, writeVideo } from '../src/video/write-video.ts'

const root = await mkdtemp(join(tmpdir(), 'lumiere-video-'))
t.teardown(() => rm(root, { recursive: true, force: true }))
let n = 0
const fresh = async (): Promise<string> => { const d = join(root, `case-${n++}`); await mkdir(d); return d }

/** A clip whose bytes are given per (channel, frame, y, x), stored exactly on the quantisation grid. */
function clipFromBytes (T: number, H: number, W: number, byte: (c: number, t: number, y: number, x: number) => number): Float32Clip {
  const data = new Float32Array(3 * T * H * W)
  for (let c = 0; c < 3; c++) for (let t = 0; t < T; t++) for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) data[((c * T + t) * H + y) * W + x] = dequantize(byte(c, t, y, x))
  return { data, shape: [3, T, H, W] }
}

/** A smooth moving pattern in [−0.9, 0.9] (what a video model produces, roughly). */
function smoothClip (T: number, H: number, W: number): Float32Clip {
  const data = new Float32Array(3 * T * H * W)
  for (let c = 0; c < 3; c++) for (let t = 0; t < T; t++) for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
    data[((c * T + t) * H + y) * W + x] = 0.9 * Math.sin((x + 2 * t) / 17 + 2 * c) * Math.cos((y - t) / 23 + c)
  }
  return { data, shape: [3, T, H, W] }
}

/** Files left in a folder, hidden ones included (temporaries start with a dot). */
const listing = async (dir: string): Promise<string[]> => (await readdir(dir)).sort()

// ---------------------------------------------------------------- GIF decoding (test-only, independent of gifenc)

interface GifFile {
  version: string
  width: number
  height: number
  loop: number | null
  delays: number[]
  frames: Uint8Array[] // RGB888
}

function lzwDecode (minCodeSize: number, data: Uint8Array, pixels: number): Uint8Array {
  const out = new Uint8Array(pixels)
  const clear = 1 << minCodeSize
  const eoi = clear + 1
  const prefix = new Int32Array(4096).fill(-1)
  const suffix = new Uint8Array(4096)
  for (let i = 0; i < clear; i++) suffix[i] = i
  const stack = new Uint8Array(4097)
  let codeSize = minCodeSize + 1
  let next = eoi + 1
  let prev = -1
  let bit = 0
  let op = 0
  while (bit + codeSize <= data.length * 8) {
    let code = 0
    for (let k = 0; k < codeSize; k++, bit++) code |= ((data[bit >> 3] >> (bit & 7)) & 1) << k
    if (code === clear) { codeSize = minCodeSize + 1; next = eoi + 1; prev = -1; continue }
    if (code === eoi) break
    if (prev === -1) { out[op++] = suffix[code]; prev = code; continue }
    let sp = 0
    for (let x = code < next ? code : prev; x >= 0; x = prefix[x]) stack[sp++] = suffix[x]
    const firstByte = stack[sp - 1]
    while (sp > 0 && op < pixels) out[op++] = stack[--sp]
    if (code >= next && op < pixels) out[op++] = firstByte
    if (next < 4096) { prefix[next] = prev; suffix[next] = firstByte; next++ }
    if (next === 1 << codeSize && codeSize < 12) codeSize++
    prev = code
  }
  if (op !== pixels) throw new Error(`LZW gave ${op} pixels, wanted ${pixels}`)
  return out
}

function parseGif (b: Uint8Array): GifFile {
  const u16 = (o: number): number => b[o] | (b[o + 1] << 8)
  const version = Buffer.from(b.subarray(0, 6)).toString('latin1')
  const width = u16(6); const height = u16(8); const packed = b[10]
  let p = 13
  let gct: Uint8Array | null = null
  if ((packed & 0x80) !== 0) { const size = 3 << ((packed & 7) + 1); gct = b.subarray(p, p + size); p += size }
  const subBlocks = (): Uint8Array => {
    const parts: number[] = []
    for (let len = b[p++]; len !== 0; len = b[p++]) { parts.push(...b.subarray(p, p + len)); p += len }
    return Uint8Array.from(parts)
  }
  const out: GifFile = { version, width, height, loop: null, delays: [], frames: [] }
  for (;;) {
    const kind = b[p++]
    if (kind === 0x3b) break
    if (kind === 0x21) {
      const label = b[p++]
      const body = subBlocks()
      if (label === 0xf9) out.delays.push(body[1] | (body[2] << 8))
      if (label === 0xff && Buffer.from(body.subarray(0, 11)).toString('latin1') === 'NETSCAPE2.0') out.loop = body[12] | (body[13] << 8)
    } else if (kind === 0x2c) {
      const fw = u16(p + 4); const fh = u16(p + 6); const fp = b[p + 8]
      p += 9
      let table = gct
      if ((fp & 0x80) !== 0) { const size = 3 << ((fp & 7) + 1); table = b.subarray(p, p + size); p += size }
      const minCode = b[p++]
      const index = lzwDecode(minCode, subBlocks(), fw * fh)
      if (table == null) throw new Error('no colour table')
      const rgb = new Uint8Array(fw * fh * 3)
      for (let i = 0; i < index.length; i++) rgb.set(table.subarray(index[i] * 3, index[i] * 3 + 3), i * 3)
      out.frames.push(rgb)
    } else {
      throw new Error(`bad GIF block 0x${kind?.toString(16)} at ${p - 1}`)
    }
  }
  return out
}

// ---------------------------------------------------------------- MP4 helpers

const ffmpeg = ffmpegPath() ?? 'ffmpeg'

function runFfmpeg (args: string[]): Promise<{ code: number | null, stdout: Buffer, stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(ffmpeg, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    const chunks: Buffer[] = []
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => chunks.push(c))
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString() })
    child.on('error', reject)
    child.on('close', code => resolve({ code, stdout: Buffer.concat(chunks), stderr }))
  })
}

/** Decodes an MP4 back to RGB24 with the same ffmpeg, converting with the BT.709 limited-range matrix it was tagged with. */
async function decodeMp4 (file: string): Promise<{ width: number, height: number, fps: number, rgb: Buffer }> {
  const info = await runFfmpeg(['-hide_banner', '-i', file])
  const m = /Video: h264.*?, (\d+)x(\d+)[ ,].*?([\d.]+) fps/.exec(info.stderr)
  if (m == null) throw new Error(`no h264 stream in ffmpeg -i output:\n${info.stderr}`)
  const dec = await runFfmpeg(['-hide_banner', '-loglevel', 'error', '-i', file, '-vf', 'scale=in_color_matrix=bt709:in_range=tv:flags=accurate_rnd+full_chroma_int,format=rgb24', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'])
  if (dec.code !== 0) throw new Error(dec.stderr)
  return { width: Number(m[1]), height: Number(m[2]), fps: Number(m[3]), rgb: dec.stdout }
}

/** Top-level MP4 box types in file order. */
function topBoxes (b: Buffer): string[] {
  const out: string[] = []
  for (let p = 0; p + 8 <= b.length;) {
    let size = b.readUInt32BE(p)
    if (size === 1) size = Number(b.readBigUInt64BE(p + 8))
    out.push(b.toString('latin1', p + 4, p + 8))
    if (size < 8) break
    p += size
  }
  return out
}

// ---------------------------------------------------------------- tests

t.test('format by path, and samplePath', async (tt) => {
  tt.equal(videoFormatOf('a/b.mp4'), 'mp4')
  tt.equal(videoFormatOf('a/B.MP4'), 'mp4')
  tt.equal(videoFormatOf('x.gif'), 'gif')
  tt.equal(videoFormatOf('out/'), 'png')
  tt.equal(videoFormatOf('out'), 'png')
  tt.equal(videoFormatOf('runs.v2/frames'), 'png', 'only the last component’s extension counts')
  tt.throws(() => videoFormatOf('clip.webm'), { name: 'LumiereError', code: 'BAD_ARGUMENT', message: /\.webm.*\.mp4.*\.gif.*PNG/ })
  tt.throws(() => videoFormatOf('clip.safetensors'), { code: 'BAD_ARGUMENT', message: /writeSafetensors/ })

  tt.equal(samplePath('out.mp4', 0, 1), 'out.mp4', 'one sample: unchanged')
  tt.equal(samplePath('out.mp4', 1, 4), 'out-sample1.mp4')
  tt.equal(samplePath('dir.v1/out.gif', 3, 4), 'dir.v1/out-sample3.gif')
  tt.equal(samplePath('frames/', 0, 2), 'frames-sample0/')
  tt.equal(samplePath('frames', 1, 2), 'frames-sample1')
  tt.equal(samplePath('runs.v2/frames', 1, 2), 'runs.v2/frames-sample1')
  tt.throws(() => samplePath('a.mp4', 2, 2), { code: 'BAD_ARGUMENT' })
})

t.test('PNG folder: exact RGB bytes, frame-NNNN.png names, atomic', async (tt) => {
  const dir = await fresh()
  const T = 3; const H = 5; const W = 7
  const clip = clipFromBytes(T, H, W, (c, t, y, x) => (c * 83 + t * 40 + y * 31 + x * 13) % 256)
  const want = toRgbFrames(clip)
  const out = join(dir, 'frames/')
  const res = await writeVideo(out, clip, { fps: 8 })
  tt.match(res, { format: 'png', width: W, height: H, frames: T })
  tt.same(await listing(join(dir, 'frames')), ['frame-0000.png', 'frame-0001.png', 'frame-0002.png'])
  tt.same(await listing(dir), ['frames'], 'no temporaries left')
  for (let t = 0; t < T; t++) {
    const png = PNG.sync.read(await readFile(join(dir, 'frames', `frame-000${t}.png`)))
    tt.equal(png.width, W)
    tt.equal(png.height, H)
    tt.equal(png.alpha, false, 'RGB, no alpha channel')
    const rgb: number[] = []
    for (let i = 0; i < W * H; i++) rgb.push(png.data[4 * i], png.data[4 * i + 1], png.data[4 * i + 2])
    tt.same(rgb, [...want.frames[t]], `frame ${t} exact`)
  }
  tt.equal((await stat(join(dir, 'frames'))).mode & 0o077, 0o755 & 0o077 & ~process.umask(), 'usual folder permissions, not mkdtemp’s 0700')

  // No extension → folder too; an existing folder is rewritten in place: stale frames go, other files stay.
  const existing = join(dir, 'existing')
  await mkdir(existing)
  await writeFile(join(existing, 'frame-0007.png'), 'stale')
  await writeFile(join(existing, 'notes.txt'), 'keep me')
  await writeVideo(existing, clip, { fps: 8 })
  tt.same(await listing(existing), ['frame-0000.png', 'frame-0001.png', 'frame-0002.png', 'notes.txt'])

  // A failure part-way (an abort after a few frames) leaves nothing behind, and an existing folder untouched.
  let reads = 0
  const lateAbort = { get aborted () { return ++reads > 4 }, reason: new Error('test abort'), addEventListener () {}, removeEventListener () {} } as unknown as AbortSignal
  const big = clipFromBytes(12, 4, 4, () => 9)
  await tt.rejects(writeVideo(join(dir, 'never'), big, { fps: 8, signal: lateAbort }), { code: 'ABORTED' })
  tt.same(await listing(dir), ['existing', 'frames'])
  reads = 0
  await tt.rejects(writeVideo(existing, big, { fps: 8, signal: lateAbort }), { code: 'ABORTED' })
  tt.same(await listing(existing), ['frame-0000.png', 'frame-0001.png', 'frame-0002.png', 'notes.txt'])
  tt.equal(PNG.sync.read(await readFile(join(existing, 'frame-0000.png'))).width, W, 'old frames intact')
})

t.test('GIF: header, size, frames, loop, delays; exact pixels for ≤ 256 colours', async (tt) => {
  const dir = await fresh()
  const T = 5; const H = 24; const W = 40
  // 64 colours, distinct in RGB565: the global palette reproduces them exactly.
  const level = (k: number): number => [0, 88, 168, 248][k]
  const clip = clipFromBytes(T, H, W, (c, t, y, x) => level(((x >> 3) + (y >> 3) * 2 + t + c * 3 + (c === 1 ? x & 1 : 0)) & 3))
  const out = join(dir, 'clip.gif')
  const res = await writeVideo(out, clip, { fps: 8 })
  tt.match(res, { format: 'gif', width: W, height: H, frames: T })
  const bytes = await readFile(out)
  tt.equal(res.bytes, bytes.byteLength)
  const gif = parseGif(bytes)
  tt.equal(gif.version, 'GIF89a')
  tt.equal(gif.width, W)
  tt.equal(gif.height, H)
  tt.equal(gif.loop, 0, 'NETSCAPE2.0 loop count 0 = forever')
  tt.equal(gif.frames.length, T, 'one image descriptor per frame')
  tt.same(gif.delays, [13, 12, 13, 12, 13], '8 fps: 12.5 cs per frame, no drift')
  tt.same(gifDelays(4, 30), [3, 4, 3, 3], '30 fps')
  tt.same(gifDelays(2, 120), [2, 2], 'at most 50 fps')
  const want = toRgbFrames(clip)
  for (let t = 0; t < T; t++) tt.same([...gif.frames[t]], [...want.frames[t]], `frame ${t} exact`)
  tt.same(await listing(dir), ['clip.gif'])

  // A smooth clip: 256-colour palette, no dithering — close, not exact.
  const smooth = smoothClip(8, 64, 64)
  await writeVideo(out, smooth, { fps: 10 })
  const g2 = parseGif(await readFile(out))
  const w2 = toRgbFrames(smooth)
  let err = 0; let count = 0
  for (let t = 0; t < 8; t++) for (let i = 0; i < w2.frames[t].length; i++) { err += Math.abs(g2.frames[t][i] - w2.frames[t][i]); count++ }
  tt.ok(err / count < 6, `smooth GIF mean abs error ${(err / count).toFixed(2)} < 6 (8-bit levels)`)
  tt.same(g2.delays, Array(8).fill(10))
})

t.test('MP4: H.264 via the bundled ffmpeg, decoded back close to the input', { skip: !ffmpegAvailable() && 'no ffmpeg' }, async (tt) => {
  const dir = await fresh()
  const T = 16; const H = 128; const W = 128
  const clip = smoothClip(T, H, W)
  const out = join(dir, 'clip.mp4')
  const t0 = performance.now()
  const res = await writeVideo(out, clip, { fps: 8 })
  const ms = performance.now() - t0
  tt.match(res, { format: 'mp4', width: W, height: H, frames: T })
  tt.same(await listing(dir), ['clip.mp4'], 'no temporaries left')
  const file = await readFile(out)
  const boxes = topBoxes(file)
  tt.equal(boxes[0], 'ftyp')
  tt.ok(boxes.indexOf('moov') >= 0 && boxes.indexOf('moov') < boxes.indexOf('mdat'), `+faststart: moov before mdat (${boxes.join(' ')})`)

  const dec = await decodeMp4(out)
  tt.equal(dec.width, W)
  tt.equal(dec.height, H)
  tt.equal(dec.fps, 8)
  tt.equal(dec.rgb.length, T * W * H * 3, `${T} frames decoded`)
  const want = toRgbFrames(clip)
  let err = 0
  for (let f = 0; f < T; f++) for (let i = 0; i < W * H * 3; i++) err += Math.abs(dec.rgb[f * W * H * 3 + i] - want.frames[f][i])
  const mae = err / (T * W * H * 3)
  // Lossy (4:2:0 chroma + CRF 18): on this smooth pattern the mean error stays well under 8 of 255.
  tt.ok(mae < 8, `mean abs error ${mae.toFixed(2)} < 8 (8-bit levels)`)
  tt.comment(`MP4 16×128×128: encode ${ms.toFixed(0)} ms, ${file.byteLength} bytes, MAE ${mae.toFixed(2)}`)
})

t.test('MP4: odd sizes are padded by one repeated column/row', { skip: !ffmpegAvailable() && 'no ffmpeg' }, async (tt) => {
  const dir = await fresh()
  const T = 4; const H = 33; const W = 45
  const clip = smoothClip(T, H, W)
  const out = join(dir, 'odd.mp4')
  const res = await writeVideo(out, clip, { fps: 24 })
  tt.match(res, { width: 46, height: 34, frames: T })
  const dec = await decodeMp4(out)
  tt.equal(dec.width, 46)
  tt.equal(dec.height, 34)
  tt.equal(dec.fps, 24)
  tt.equal(dec.rgb.length, T * 46 * 34 * 3)
  const want = toRgbFrames(clip)
  let inner = 0; let pad = 0; let nPad = 0
  for (let f = 0; f < T; f++) {
    for (let y = 0; y < 34; y++) for (let x = 0; x < 46; x++) for (let c = 0; c < 3; c++) {
      const got = dec.rgb[((f * 34 + y) * 46 + x) * 3 + c]
      const ref = want.frames[f][((Math.min(y, H - 1)) * W + Math.min(x, W - 1)) * 3 + c]
      if (x < W && y < H) inner += Math.abs(got - ref)
      else { pad += Math.abs(got - ref); nPad++ }
    }
  }
  tt.ok(inner / (T * H * W * 3) < 8, `picture MAE ${(inner / (T * H * W * 3)).toFixed(2)}`)
  tt.ok(pad / nPad < 12, `padding repeats the edge (MAE ${(pad / nPad).toFixed(2)}), not black`)
})

t.test('a failing or aborted encode leaves no file', async (tt) => {
  const dir = await fresh()
  const clip = smoothClip(4, 16, 16)
  // A stand-in ffmpeg that fails without reading its input.
  const failing = join(root, 'fake-ffmpeg-fail.sh')
  await writeFile(failing, '#!/bin/sh\necho "starting" >&2\necho "Error: boom, the encoder broke" >&2\nexit 3\n')
  await chmod(failing, 0o755)
  const out = join(dir, 'fail.mp4')
  await tt.rejects(writeVideo(out, smoothClip(8, 256, 256), { fps: 8, ffmpeg: failing }), {
    name: 'LumiereError', code: 'FILE_UNWRITABLE', message: /exited with code 3: Error: boom, the encoder broke$/
  })
  tt.same(await listing(dir), [], 'neither the file nor a temporary')

  // An existing file is not touched by a failed rewrite.
  await writeFile(out, 'old contents')
  await tt.rejects(writeVideo(out, clip, { fps: 8, ffmpeg: failing }), { code: 'FILE_UNWRITABLE' })
  tt.equal(await readFile(out, 'utf8'), 'old contents')
  tt.same(await listing(dir), ['fail.mp4'])

  // An abort kills a running encoder.
  const hanging = join(root, 'fake-ffmpeg-hang.sh')
  await writeFile(hanging, '#!/bin/sh\ncat >/dev/null\nexec sleep 30\n')
  await chmod(hanging, 0o755)
  const ac = new AbortController()
  setTimeout(() => ac.abort(new Error('user pressed ctrl-c')), 200)
  const t0 = Date.now()
  await tt.rejects(writeVideo(join(dir, 'abort.mp4'), clip, { fps: 8, ffmpeg: hanging, signal: ac.signal }), { code: 'ABORTED', message: /ctrl-c/ })
  tt.ok(Date.now() - t0 < 5000, 'returned promptly')
  tt.same(await listing(dir), ['fail.mp4'])

  // GIF aborted part-way.
  let reads = 0
  const lateAbort = { get aborted () { return ++reads > 4 }, reason: undefined, addEventListener () {}, removeEventListener () {} } as unknown as AbortSignal
  await tt.rejects(writeVideo(join(dir, 'x.gif'), smoothClip(12, 8, 8), { fps: 8, signal: lateAbort }), { code: 'ABORTED' })
  tt.same(await listing(dir), ['fail.mp4'])

  // No ffmpeg at all.
  await tt.rejects(writeVideo(join(dir, 'y.mp4'), clip, { fps: 8, ffmpeg: join(root, 'no-such-ffmpeg') }), { code: 'FILE_NOT_FOUND', message: /LUMIERE_FFMPEG/ })
  tt.same(await listing(dir), ['fail.mp4'])
})

t.test('bad paths → FILE_UNWRITABLE saying what to do; bad arguments → BAD_ARGUMENT', async (tt) => {
  const dir = await fresh()
  const clip = smoothClip(2, 8, 8)
  for (const name of ['missing/clip.mp4', 'missing/clip.gif', 'missing/frames/', 'missing/frames']) {
    await tt.rejects(writeVideo(join(dir, name), clip, { fps: 8 }), { name: 'LumiereError', code: 'FILE_UNWRITABLE', message: /does not exist; create it first \(mkdir -p .*missing\)/ }, name)
  }
  await writeFile(join(dir, 'afile'), 'x')
  await tt.rejects(writeVideo(join(dir, 'afile', 'clip.gif'), clip, { fps: 8 }), { code: 'FILE_UNWRITABLE', message: /not a folder/ })
  if (process.getuid?.() !== 0) {
    const ro = join(dir, 'readonly')
    await mkdir(ro, { mode: 0o555 })
    await tt.rejects(writeVideo(join(ro, 'clip.gif'), clip, { fps: 8 }), { code: 'FILE_UNWRITABLE', message: /permission denied/ })
  }
  tt.same(await listing(dir), ['afile'], 'nothing created')

  await tt.rejects(writeVideo(join(dir, 'clip.avi'), clip, { fps: 8 }), { code: 'BAD_ARGUMENT', message: /unsupported video extension \.avi; use \.mp4/ })
  await tt.rejects(writeVideo(join(dir, 'clip.safetensors'), clip, { fps: 8 }), { code: 'BAD_ARGUMENT' })
  await tt.rejects(writeVideo(join(dir, 'clip.gif'), clip, { fps: 0 }), { code: 'BAD_ARGUMENT', message: /fps/ })
  await tt.rejects(writeVideo(join(dir, 'clip.mp4'), clip, { fps: 8, crf: 99 }), { code: 'BAD_ARGUMENT', message: /crf/ })
  const batch = { data: new Float32Array(2 * 3 * 2 * 8 * 8), shape: [2, 3, 2, 8, 8] }
  await tt.rejects(writeVideo(join(dir, 'clip.gif'), batch, { fps: 8 }), { code: 'BAD_ARGUMENT', message: /samplePath/ })
  tt.same(await listing(dir), ['afile'])
})

t.test('probe: the bundled ffmpeg is found and can write MP4', async (tt) => {
  tt.ok(ffmpegAvailable(), `ffmpeg at ${ffmpegPath()}`)
  const p = await probeFfmpeg()
  tt.equal(p.mp4, true, p.error ?? 'libx264 present')
  tt.match(p.version, /^ffmpeg version/)
  const missing = await probeFfmpeg(join(root, 'nope'))
  tt.equal(missing.mp4, false)
  tt.match(missing.error, /LUMIERE_FFMPEG/)
  const saved = process.env.LUMIERE_FFMPEG
  process.env.LUMIERE_FFMPEG = '/opt/ffmpeg/bin/ffmpeg'
  tt.equal(ffmpegPath(), '/opt/ffmpeg/bin/ffmpeg')
  if (saved == null) delete process.env.LUMIERE_FFMPEG
  else process.env.LUMIERE_FFMPEG = saved
})
