import { spawnSync } from 'node:child_process'
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { PNG } from 'pngjs'
import { isLumiereError } from '../src/errors.ts'
import { readImage } from '../src/media/read-image.ts'
import { MASK_LUMA_THRESHOLD, readMask } from '../src/media/read-mask.ts'
import { readVideo } from '../src/media/read-video.ts'
import { coverFit } from '../src/media/fit.ts'
import { encodeSafetensors, writeSafetensors } from '../src/tensor/safetensors.ts'
import { dequantize, quantize } from '../src/video/frames.ts'
import type { Float32Clip } from '../src/video/frames.ts'
import { ffmpegAvailable, ffmpegPath } from '../src/video/probe.ts'
import { writeVideo } from '../src/video/write-video.ts'

const root = await mkdtemp(join(tmpdir(), 'lumiere-media-'))
t.teardown(() => rm(root, { recursive: true, force: true }))
const at = (name: string): string => join(root, name)
/** Tests that need ffmpeg (JPEG, MP4, GIF) are skipped where there is none; PNG and safetensors still run. */
const HAVE_FFMPEG = ffmpegAvailable()
const NEEDS_FFMPEG = { skip: !HAVE_FFMPEG && 'no ffmpeg' }

type Rgb = [number, number, number]
const RED: Rgb = [255, 0, 0]
const GREEN: Rgb = [0, 255, 0]
const BLUE: Rgb = [0, 0, 255]
const WHITE: Rgb = [255, 255, 255]

/** An 8-bit RGB PNG written with pngjs. */
async function png (name: string, w: number, h: number, px: (x: number, y: number) => Rgb): Promise<string> {
  const img = new PNG({ width: w, height: h })
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const [r, g, b] = px(x, y)
    img.data.set([r, g, b, 255], (y * w + x) * 4)
  }
  await writeFile(at(name), PNG.sync.write(img))
  return at(name)
}

/** Runs the bundled ffmpeg (fixture making only). */
function ffmpeg (...args: string[]): void {
  const r = spawnSync(ffmpegPath() as string, ['-hide_banner', '-loglevel', 'error', '-y', ...args])
  if (r.status !== 0) throw new Error(`ffmpeg ${args.join(' ')}: ${r.stderr.toString()}`)
}

/** A clip whose frame f is solid colour(f) (bytes on the quantisation grid). */
function solidClip (T: number, H: number, W: number, colour: (f: number) => Rgb): Float32Clip {
  const data = new Float32Array(3 * T * H * W)
  for (let c = 0; c < 3; c++) for (let f = 0; f < T; f++) data.fill(dequantize(colour(f)[c]), (c * T + f) * H * W, (c * T + f + 1) * H * W)
  return { data, shape: [3, T, H, W] }
}

/** The byte at (c, y, x) of frame f of a [3, T, H, W] (or [3, H, W] with T = 1) array. */
function byteAt (a: { data: Float32Array, shape: readonly number[] }, c: number, f: number, y: number, x: number): number {
  const [, T, H, W] = a.shape.length === 4 ? a.shape : [a.shape[0], 1, a.shape[1], a.shape[2]]
  return quantize(a.data[((c * T + f) * H + y) * W + x])
}

/** Mean of channel-averaged values of frame f, on the 0–255 byte scale. */
function frameMean (a: { data: Float32Array, shape: readonly number[] }, f: number): number {
  const [, T, H, W] = a.shape
  let s = 0
  for (let c = 0; c < 3; c++) for (let i = 0; i < H * W; i++) s += a.data[(c * T + f) * H * W + i]
  return (s / (3 * H * W) + 1) * 127.5
}

/** Expects a LumiereError with `code` whose message is one line and matches `re`. */
async function rejects (t: Test, p: Promise<unknown>, code: string, re: RegExp, name: string): Promise<void> {
  try {
    await p
    t.fail(`${name}: expected ${code}`)
  } catch (err) {
    t.ok(isLumiereError(err), `${name}: a LumiereError`)
    const e = err as Error & { code: string }
    t.equal(e.code, code, `${name}: ${code}`)
    t.notMatch(e.message, /\n/, `${name}: one line`)
    t.match(e.message, re, `${name}: ${e.message}`)
  }
}

t.test('readImage: a PNG of the exact size round-trips to the exact quantised values', async t => {
  const W = 13
  const H = 11
  const bytes = Uint8Array.from({ length: W * H * 3 }, (_, i) => (i * 97 + 13) % 256)
  const p = await png('exact.png', W, H, (x, y) => [bytes[(y * W + x) * 3], bytes[(y * W + x) * 3 + 1], bytes[(y * W + x) * 3 + 2]])
  const img = await readImage(p, { width: W, height: H })
  t.same(img.shape, [3, H, W])
  t.same(img.source, { width: W, height: H })
  let exact = true
  for (let c = 0; c < 3; c++) for (let i = 0; i < W * H; i++) if (img.data[c * W * H + i] !== Math.fround(dequantize(bytes[i * 3 + c]))) exact = false
  t.ok(exact, 'every value is byte / 127.5 − 1 (as float32), bit for bit')
  t.ok(Array.from({ length: W * H * 3 }, (_, k) => quantize(img.data[(k % 3) * W * H + Math.floor(k / 3)]) === bytes[k]).every(Boolean), 'quantize gives every byte back')

  // Without ffmpeg, PNG is read with pngjs: the same values; other formats say how to get ffmpeg.
  const jpg = at('exact.jpg')
  if (HAVE_FFMPEG) ffmpeg('-i', p, '-q:v', '2', jpg)
  else await writeFile(jpg, Uint8Array.from([0xff, 0xd8, 0xff, 0xe0]))
  const saved = process.env.LUMIERE_FFMPEG
  process.env.LUMIERE_FFMPEG = at('no-such-ffmpeg')
  try {
    const again = await readImage(p, { width: W, height: H })
    t.same(Array.from(again.data), Array.from(img.data), 'no ffmpeg: pngjs gives the same picture')
    await rejects(t, readImage(jpg, { width: W, height: H }), 'FILE_NOT_FOUND', /no usable ffmpeg.*LUMIERE_FFMPEG/, 'JPEG without ffmpeg')
  } finally {
    if (saved === undefined) delete process.env.LUMIERE_FFMPEG
    else process.env.LUMIERE_FFMPEG = saved
  }
})

t.test('readImage: cover then centre-crop', async t => {
  // 48×16: red | green | blue bands of 16 columns → 16×16 is the green centre, exactly (s = 1).
  const bands = await png('bands.png', 48, 16, x => x < 16 ? RED : x < 32 ? GREEN : BLUE)
  const sq = await readImage(bands, { width: 16, height: 16 })
  t.same(sq.source, { width: 48, height: 16 })
  t.ok(Array.from({ length: 256 }, (_, i) => [0, 1, 2].map(c => byteAt(sq, c, 0, i >> 4, i & 15))).every(([r, g, b]) => r === 0 && g === 255 && b === 0), 'left and right bands are gone; all green')

  // 16×40: red rows 0–11, green rows 12–27, blue rows 28–39 → rows 12–27 (offset floor(24/2) = 12).
  const tall = await png('tall.png', 16, 40, (_, y) => y < 12 ? RED : y < 28 ? GREEN : BLUE)
  const t16 = await readImage(tall, { width: 16, height: 16 })
  t.ok(Array.from({ length: 256 }, (_, i) => byteAt(t16, 1, 0, i >> 4, i & 15) === 255 && byteAt(t16, 0, 0, i >> 4, i & 15) === 0).every(Boolean), 'taller: top and bottom cut, all green')

  // 64×32 with red 0–15 | green 16–47 | blue 48–63, to 16×16: s = 1/2, window = columns 16–47.
  const wide = await png('wide.png', 64, 32, x => x < 16 ? RED : x < 48 ? GREEN : BLUE)
  t.same(coverFit(64, 32, 16, 16), { scale: 0.5, x0: 16, y0: 0 })
  const half = await readImage(wide, { width: 16, height: 16 })
  for (let x = 1; x < 15; x++) t.ok(byteAt(half, 0, 0, 8, x) === 0 && byteAt(half, 1, 0, 8, x) === 255, `column ${x} pure green`)
  // Column 0 is centred at source x = 17 with tent radius 2: columns 15 (red) .25, 16 .75, 17 .75, 18 .25 → 1/8 red.
  const r0 = half.data[8 * 16]
  const g0 = half.data[256 + 8 * 16]
  t.ok(Math.abs(r0 - (0.25 * 1 + 1.75 * -1) / 2) < 1e-6 && Math.abs(g0 - (0.25 * -1 + 1.75 * 1) / 2) < 1e-6, 'edge column: 1/8 of the neighbouring red band (anti-aliased bilinear)')

  // Enlarging: 8×4 → 16×16 (s = 4): columns 2–5 of the source are shown; column index as colour.
  const cols = await png('cols.png', 8, 4, x => [x * 30, 0, 0])
  const big = await readImage(cols, { width: 16, height: 16 })
  for (let x = 0; x < 16; x++) {
    const c = 2 + (x + 0.5) / 4 - 0.5 // source column coordinate (pixel centres at j)
    const want = Math.round(30 * c)
    t.ok(Math.abs(byteAt(big, 0, 0, 7, x) - want) <= 1, `enlarged column ${x}: ≈ ${want}`)
  }
})

t.test('readImage: JPEG within a stated tolerance', NEEDS_FFMPEG, async t => {
  // Stated tolerance for a JPEG written at -q:v 2 (4:2:0) and read at its own size:
  // flat regions ≥ 4 px from an edge within 6 levels; a smooth colour gradient within
  // 12 levels everywhere and 2 levels on average (measured: 0; 8 max, 1.2 mean).
  const quad: Rgb[] = [[200, 40, 40], [40, 200, 40], [40, 40, 200], [220, 220, 60]]
  const p = await png('quad.png', 32, 32, (x, y) => quad[(y < 16 ? 0 : 2) + (x < 16 ? 0 : 1)])
  ffmpeg('-i', p, '-q:v', '2', at('quad.jpg'))
  const img = await readImage(at('quad.jpg'), { width: 32, height: 32 })
  let worst = 0
  for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) {
    if (Math.min(Math.abs(x - 15.5), Math.abs(y - 15.5)) < 4) continue
    const want = quad[(y < 16 ? 0 : 2) + (x < 16 ? 0 : 1)]
    for (let c = 0; c < 3; c++) worst = Math.max(worst, Math.abs(byteAt(img, c, 0, y, x) - want[c]))
  }
  t.ok(worst <= 6, `flat quadrants: error ${worst} ≤ 6 levels`)

  const W = 48
  const H = 32
  const px = (x: number, y: number, c: number): number => Math.round(127.5 + 100 * Math.sin(x / 9 + c) * Math.cos(y / 7 - c))
  const g = await png('grad.png', W, H, (x, y) => [px(x, y, 0), px(x, y, 1), px(x, y, 2)])
  ffmpeg('-i', g, '-q:v', '2', at('grad.jpg'))
  const gi = await readImage(at('grad.jpg'), { width: W, height: H })
  let max = 0
  let sum = 0
  for (let c = 0; c < 3; c++) for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
    const d = Math.abs(byteAt(gi, c, 0, y, x) - px(x, y, c))
    max = Math.max(max, d)
    sum += d
  }
  const mean = sum / (3 * W * H)
  t.ok(max <= 12 && mean <= 2, `gradient: max error ${max} ≤ 12, mean ${mean.toFixed(2)} ≤ 2 levels`)
})

t.test('readVideo: MP4 of 24 frames fitted to 16 picks round(i·23/15)', NEEDS_FFMPEG, async t => {
  const mp4 = at('ramp.mp4')
  await writeVideo(mp4, solidClip(24, 24, 32, f => [10 + 10 * f, 10 + 10 * f, 10 + 10 * f]), { fps: 8 })
  const v = await readVideo(mp4, { width: 16, height: 16, frames: 16 })
  t.same(v.shape, [3, 16, 16, 16])
  t.same(v.source, { kind: 'file', width: 32, height: 24, frames: 24 })
  const want = [0, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 23]
  t.same(v.indices, want)
  for (let i = 0; i < 16; i++) {
    const m = frameMean(v, i)
    t.ok(Math.abs(m - (10 + 10 * want[i])) <= 2, `frame ${i} is source frame ${want[i]} (mean ${m.toFixed(2)}, ±2 levels)`)
  }
  // Bounded memory: when the kept frames would pass maxBytes, the file is counted then re-read: same result.
  const lean = await readVideo(mp4, { width: 16, height: 16, frames: 16, maxBytes: 3 * 16 * 16 * 4 * 5 })
  t.same(lean.indices, want)
  t.ok(lean.data.every((x, i) => x === v.data[i]), 'three-pass read gives the same clip')
})

t.test('readVideo: a 4-frame GIF padded to 8 repeats the last frame', NEEDS_FFMPEG, async t => {
  const colours: Rgb[] = [RED, GREEN, BLUE, [255, 255, 0]]
  const gif = at('four.gif')
  await writeVideo(gif, solidClip(4, 8, 8, f => colours[f]), { fps: 4 })
  const v = await readVideo(gif, { width: 8, height: 8, frames: 8 })
  t.same(v.indices, [0, 1, 2, 3, 3, 3, 3, 3])
  t.same(v.source, { kind: 'file', width: 8, height: 8, frames: 4 })
  for (let f = 0; f < 8; f++) {
    const want = colours[Math.min(f, 3)]
    t.ok([0, 1, 2].every(c => Array.from({ length: 64 }, (_, i) => byteAt(v, c, f, i >> 3, i & 7)).every(b => b === want[c])), `frame ${f} is ${want.join(',')} exactly`)
  }
  // A still image is a one-frame video: on every frame.
  const still = await readVideo(await png('still.png', 8, 8, () => RED), { width: 4, height: 4, frames: 3 })
  t.same(still.indices, [0, 0, 0])
})

t.test('readVideo: a folder of PNG frames (what writeVideo writes)', async t => {
  const dir = at('frames') + '/'
  await writeVideo(dir, solidClip(5, 6, 6, f => [f * 50, 0, 0]), { fps: 8 })
  const v = await readVideo(dir, { width: 6, height: 6, frames: 3 })
  t.same(v.indices, [0, 2, 4])
  t.same(v.source, { kind: 'png-folder', width: 6, height: 6, frames: 5 })
  t.same([0, 1, 2].map(f => byteAt(v, 0, f, 0, 0)), [0, 100, 200])
  await mkdir(at('empty-folder'))
  await rejects(t, readVideo(at('empty-folder'), { width: 4, height: 4, frames: 2 }), 'BAD_ARGUMENT', /no \.png frames/, 'empty folder')
})

t.test('readVideo: .safetensors, any size, same resampler as decoded video', async t => {
  const T = 3
  const clip = solidClip(T, 12, 20, f => [f * 60, 255 - f * 60, 128])
  // Exact size, [1, 3, T, H, W], off-grid values: returned as stored.
  const raw = Float32Array.from(clip.data, (x, i) => i % 7 === 0 ? 0.3 : x)
  await writeSafetensors(at('v.safetensors'), { video: { dtype: 'F32', shape: [1, 3, T, 12, 20], data: new Uint8Array(raw.buffer) } })
  const exact = await readVideo(at('v.safetensors'), { width: 20, height: 12, frames: T })
  t.same(exact.shape, [3, T, 12, 20])
  t.same(exact.source, { kind: 'safetensors', width: 20, height: 12, frames: T })
  t.ok(exact.data.every((x, i) => x === raw[i]), 'exact size: values unchanged')
  // Resized: identical to the same content read from a (lossless) GIF, or from a folder of PNG frames.
  await writeSafetensors(at('c.safetensors'), { video: { dtype: 'F32', shape: [3, T, 12, 20], data: new Uint8Array(clip.data.buffer.slice(0)) } })
  await writeVideo(at('c-frames/'), clip, { fps: 8 })
  const target = { width: 7, height: 5, frames: 5 }
  const a = await readVideo(at('c.safetensors'), target)
  const sources = [at('c-frames/')]
  if (HAVE_FFMPEG) {
    await writeVideo(at('c.gif'), clip, { fps: 8 })
    sources.push(at('c.gif'))
  }
  for (const src of sources) {
    const b = await readVideo(src, target)
    t.same(a.indices, b.indices)
    t.ok(a.data.every((x, i) => Math.abs(x - b.data[i]) < 1e-6), `safetensors and ${src.slice(root.length + 1)} fit alike`)
  }
  // Out-of-range values are clamped.
  await writeSafetensors(at('hot.safetensors'), { video: { dtype: 'F32', shape: [3, 1, 1, 1], data: new Uint8Array(Float32Array.from([1.5, -3, 0.5]).buffer) } })
  t.same(Array.from((await readVideo(at('hot.safetensors'), { width: 1, height: 1, frames: 1 })).data), [1, -1, 0.5])
  // Refusals.
  const f32 = (shape: number[], values: number[]) => ({ dtype: 'F32' as const, shape, data: new Uint8Array(Float32Array.from(values).buffer) })
  await writeSafetensors(at('named.safetensors'), { frames: f32([3, 1, 1, 1], [0, 0, 0]) })
  await rejects(t, readVideo(at('named.safetensors'), target), 'BAD_ARGUMENT', /no tensor named 'video' \(it has frames\)/, 'no video tensor')
  await writeSafetensors(at('i32.safetensors'), { video: { dtype: 'I32', shape: [3, 1, 1, 1], data: new Uint8Array(12) } })
  await rejects(t, readVideo(at('i32.safetensors'), target), 'BAD_ARGUMENT', /is I32; it must be F32/, 'wrong dtype')
  await writeSafetensors(at('shape.safetensors'), { video: f32([3, 2, 2], new Array(12).fill(0)) })
  await rejects(t, readVideo(at('shape.safetensors'), target), 'BAD_ARGUMENT', /expected \[3, T, H, W\]/, 'wrong shape')
  await writeSafetensors(at('nan.safetensors'), { video: f32([3, 1, 1, 1], [0, Number.NaN, 0]) })
  await rejects(t, readVideo(at('nan.safetensors'), target), 'BAD_ARGUMENT', /non-finite/, 'NaN')
  const bytes = encodeSafetensors({ video: f32([3, 1, 1, 1], [0, 0, 0]) })
  await writeFile(at('cut.safetensors'), bytes.subarray(0, bytes.length - 4))
  await rejects(t, readVideo(at('cut.safetensors'), target), 'BAD_SAFETENSORS', /cut\.safetensors/, 'truncated safetensors')
  await rejects(t, readVideo(at('none.safetensors'), target), 'FILE_NOT_FOUND', /none\.safetensors/, 'missing safetensors')
})

t.test('readMask: white = generate, returned inverted (1 = known), threshold luma ≥ 128', async t => {
  t.equal(MASK_LUMA_THRESHOLD, 128)
  // Greys around the threshold, and colours by BT.601 luma: red 76 → known, green 150 → generate.
  const row: Rgb[] = [[0, 0, 0], [126, 126, 126], [127, 127, 127], [128, 128, 128], [129, 129, 129], WHITE, RED, GREEN]
  const p = await png('edge.png', row.length, 1, x => row[x])
  const m = await readMask(p, { width: row.length, height: 1 })
  t.same(m.shape, [1, 1, row.length])
  t.same(Array.from(m.data), [1, 1, 1, 0, 0, 0, 1, 0], 'luma < 128 → 1 (known), ≥ 128 → 0 (generate)')

  // An anti-aliased disc (white = generate) fitted 40×40 → 16×16 with nearest: binary, and the pixel nearest's choice.
  const disc = (x: number, y: number): number => {
    const d = Math.hypot(x + 0.5 - 20, y + 0.5 - 20)
    return Math.round(255 * Math.min(1, Math.max(0, 12.5 - d)))
  }
  const dp = await png('disc.png', 40, 40, (x, y) => { const v = disc(x, y); return [v, v, v] })
  const dm = await readMask(dp, { width: 16, height: 16 })
  t.ok(dm.data.every(v => v === 0 || v === 1), 'binary after resampling')
  t.equal(dm.data[8 * 16 + 8], 0, 'centre is generated')
  t.equal(dm.data[0], 1, 'corner is known')
  let agree = true
  for (let y = 0; y < 16; y++) for (let x = 0; x < 16; x++) {
    const sx = Math.floor((x + 0.5) * 2.5)
    const sy = Math.floor((y + 0.5) * 2.5)
    if (dm.data[y * 16 + x] !== (disc(sx, sy) >= 128 ? 0 : 1)) agree = false
  }
  t.ok(agree, 'each output pixel is the thresholded nearest source pixel (floor of its centre)')
  // The same mask read as a picture lines up with the same window.
  const img = await readImage(dp, { width: 16, height: 16 })
  t.ok(byteAt(img, 0, 0, 8, 8) === 255 && byteAt(img, 0, 0, 0, 0) === 0, 'picture and mask fitted alike')

  // frames: a still mask on every frame; a GIF mask video fitted by the frame rule.
  const still = await readMask(p, { width: row.length, height: 1, frames: 3 })
  t.same(still.shape, [1, 3, 1, row.length])
  t.same(Array.from(still.data), [...m.data, ...m.data, ...m.data])
  const maskVideo = at(HAVE_FFMPEG ? 'mask.gif' : 'mask-frames/')
  await writeVideo(maskVideo, solidClip(2, 4, 4, f => f === 0 ? [0, 0, 0] : WHITE), { fps: 4 })
  const mv = await readMask(maskVideo, { width: 4, height: 4, frames: 4 })
  t.same(mv.shape, [1, 4, 4, 4])
  t.same(mv.indices, [0, 1, 1, 1])
  t.same([0, 1, 2, 3].map(f => mv.data[f * 16]), [1, 0, 0, 0], 'frame 0 black → known; later white → generate')
})

t.test('unreadable, corrupt and missing files: one-line LumiereErrors', NEEDS_FFMPEG, async t => {
  const size = { width: 8, height: 8 }
  await rejects(t, readImage(at('missing.png'), size), 'FILE_NOT_FOUND', /cannot read .*missing\.png: no such file/, 'missing image')
  await rejects(t, readVideo(at('missing.mp4'), { ...size, frames: 4 }), 'FILE_NOT_FOUND', /no such file/, 'missing video')
  await rejects(t, readMask(at('missing-mask.png'), size), 'FILE_NOT_FOUND', /no such file/, 'missing mask')
  await writeFile(at('notes.png'), 'these are my notes, not a picture\n')
  await rejects(t, readImage(at('notes.png'), size), 'BAD_ARGUMENT', /notes\.png is not an image ffmpeg can read \(/, 'text named .png')
  await writeFile(at('notes.txt'), 'plain text is not a video either\n')
  await rejects(t, readVideo(at('notes.txt'), { ...size, frames: 2 }), 'BAD_ARGUMENT', /notes\.txt is not a video ffmpeg can read \(not an image or video format\)/, 'text file (no tty demuxer)')
  await writeFile(at('empty.png'), '')
  await rejects(t, readImage(at('empty.png'), size), 'BAD_ARGUMENT', /is empty, not an image/, 'empty file')
  await rejects(t, readImage(root, size), 'BAD_ARGUMENT', /is a folder, not an image/, 'folder')
  // Corrupt: a truncated MP4 (lossless, so it has many frames of data) and a truncated JPEG / GIF.
  const mp4 = at('long.mp4')
  await writeVideo(mp4, { data: Float32Array.from({ length: 3 * 12 * 32 * 32 }, (_, i) => Math.sin(i * 0.37)), shape: [3, 12, 32, 32] }, { fps: 8, crf: 0 })
  const whole = await readFile(mp4)
  await writeFile(at('cut.mp4'), whole.subarray(0, whole.length >> 1))
  await rejects(t, readVideo(at('cut.mp4'), { ...size, frames: 4 }), 'BAD_ARGUMENT', /cut\.mp4 is not a video ffmpeg can read/, 'truncated MP4 (refused, not read in part)')
  ffmpeg('-i', await png('jp.png', 32, 32, (x, y) => [x * 8, y * 8, 99]), '-q:v', '2', at('jp.jpg'))
  const jpg = await readFile(at('jp.jpg'))
  await writeFile(at('cut.jpg'), jpg.subarray(0, jpg.length >> 1))
  await rejects(t, readImage(at('cut.jpg'), size), 'BAD_ARGUMENT', /cut\.jpg is not an image ffmpeg can read/, 'truncated JPEG')
  await writeVideo(at('g.gif'), solidClip(3, 8, 8, f => [f * 80, 0, 0]), { fps: 4 })
  const gif = await readFile(at('g.gif'))
  await writeFile(at('cut.gif'), gif.subarray(0, 40))
  await rejects(t, readVideo(at('cut.gif'), { ...size, frames: 2 }), 'BAD_ARGUMENT', /cut\.gif is not a video ffmpeg can read/, 'truncated GIF')
  // No video stream.
  ffmpeg('-f', 'lavfi', '-i', 'sine=d=0.2', '-c:a', 'aac', at('tone.m4a'))
  await rejects(t, readVideo(at('tone.m4a'), { ...size, frames: 2 }), 'BAD_ARGUMENT', /has no video stream|not a video/, 'audio only')
  // Bad options.
  const ok = await png('ok.png', 4, 4, () => RED)
  await rejects(t, readImage(ok, { width: 0, height: 8 }), 'BAD_ARGUMENT', /width must be a whole number/, 'width 0')
  await rejects(t, readVideo(ok, { width: 8, height: 8 } as never), 'BAD_ARGUMENT', /frames must be a whole number/, 'no frames')
  // Aborted.
  const ac = new AbortController()
  ac.abort()
  await rejects(t, readVideo(mp4, { ...size, frames: 2, signal: ac.signal }), 'ABORTED', /aborted/, 'aborted')
})

t.test('file names ffmpeg would take for patterns are read as plain files', async t => {
  await png('shot1.png', 4, 4, () => BLUE) // a decoy that shot%d.png would match as a sequence
  const pct = await png('shot%d.png', 4, 4, () => RED)
  const img = await readImage(pct, { width: 4, height: 4 })
  t.same([0, 1, 2].map(c => byteAt(img, c, 0, 0, 0)), RED, 'shot%d.png is itself, not shot1.png')
  const glob = await png('take[1].png', 4, 4, () => GREEN)
  const g = await readImage(glob, { width: 4, height: 4 })
  t.same([0, 1, 2].map(c => byteAt(g, c, 0, 0, 0)), GREEN)
  await copyFile(pct, at('-dash.png'))
  const dash = await readImage(at('-dash.png'), { width: 4, height: 4 })
  t.same([0, 1, 2].map(c => byteAt(dash, c, 0, 0, 0)), RED, 'a name starting with - is not an option')
})
