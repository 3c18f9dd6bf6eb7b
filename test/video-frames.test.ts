import t from 'tap'
import { asClip, dequantize, fromRgbFrames, quantize, sampleOf, toRgbFrames } from '../src/video/frames.ts'
import { f32, view } from '../src/tensor/tensor.ts'

t.test('quantisation rule: round((clamp(x, −1, 1) + 1) · 127.5)', async (tt) => {
  tt.equal(quantize(-1), 0)
  tt.equal(quantize(1), 255)
  tt.equal(quantize(0), 128, '127.5 rounds half up')
  tt.equal(quantize(-0.5), 64, '63.75 → 64')
  tt.equal(quantize(0.5), 191, '191.25 → 191')
  tt.equal(quantize(-0.996), 1, '0.51 → 1')
  tt.equal(quantize(-0.997), 0, '0.3825 → 0')
  tt.equal(quantize(-3), 0, 'clamped below')
  tt.equal(quantize(7.5), 255, 'clamped above')
  tt.equal(quantize(-Infinity), 0)
  tt.equal(quantize(Infinity), 255)
  tt.equal(quantize(Number.NaN), 0, 'NaN → 0')
  // Through float32, as a clip stores them.
  // Planar R = [−1, 0, 1], G = [−2, 2, NaN], B = [0.5, −0.5, 0.999] → packed RGB per pixel.
  const { frames } = toRgbFrames(f32([3, 1, 1, 3], [-1, 0, 1, -2, 2, Number.NaN, 0.5, -0.5, 0.999]))
  tt.same([...frames[0]], [0, 0, 191, 128, 255, 64, 255, 0, 255])
})

t.test('every byte survives fromRgbFrames → toRgbFrames exactly', async (tt) => {
  const rgb = new Uint8Array(256 * 3)
  for (let i = 0; i < 256; i++) { rgb[3 * i] = i; rgb[3 * i + 1] = 255 - i; rgb[3 * i + 2] = (i * 7) & 255 }
  const clip = fromRgbFrames({ width: 16, height: 16, frames: [rgb] })
  tt.same(clip.shape, [3, 1, 16, 16])
  tt.equal(view(clip)[0], -1, 'byte 0 → −1')
  tt.equal(view(clip)[255], 1, 'byte 255 → 1')
  const back = toRgbFrames(clip)
  tt.equal(back.width, 16)
  tt.equal(back.height, 16)
  tt.same([...back.frames[0]], [...rgb])
})

t.test('layout: planar [3, T, H, W] → packed RGB per frame, row-major', async (tt) => {
  const T = 2; const H = 2; const W = 3
  const bytes = (c: number, t: number, y: number, x: number): number => c * 80 + t * 40 + y * 10 + x
  const data = new Float32Array(3 * T * H * W)
  for (let c = 0; c < 3; c++) for (let t = 0; t < T; t++) for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) data[((c * T + t) * H + y) * W + x] = dequantize(bytes(c, t, y, x))
  const out = toRgbFrames({ data, shape: [3, T, H, W] })
  tt.equal(out.frames.length, T)
  for (let t = 0; t < T; t++) {
    const want: number[] = []
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) for (let c = 0; c < 3; c++) want.push(bytes(c, t, y, x))
    tt.same([...out.frames[t]], want, `frame ${t}`)
  }
  // A batch of one is a clip too.
  tt.same(toRgbFrames({ data, shape: [1, 3, T, H, W] }).frames, out.frames)
})

t.test('sampleOf takes one sample of a batch without copying', async (tt) => {
  const B = 3; const per = 3 * 2 * 2 * 2
  const data = new Float32Array(B * per).map((_, i) => i)
  const batch = { dtype: 'F32' as const, shape: [B, 3, 2, 2, 2], data: new Uint8Array(data.buffer) }
  const s1 = sampleOf(batch, 1)
  tt.same(s1.shape, [3, 2, 2, 2])
  tt.equal(s1.data.buffer, data.buffer, 'same memory')
  tt.equal(s1.data.byteOffset, per * 4)
  tt.same([...view(s1)], Array.from({ length: per }, (_, i) => per + i))
  const s2 = sampleOf({ data, shape: [B, 3, 2, 2, 2] }, 2)
  tt.equal(s2.data.buffer, data.buffer)
  tt.equal((view(s2) as Float32Array)[0], 2 * per)
  tt.throws(() => sampleOf(batch, 3), { code: 'BAD_ARGUMENT' })
  tt.throws(() => sampleOf({ dtype: 'F16', shape: [1, 3, 1, 1, 1], data: new Uint8Array(6) }, 0), { code: 'BAD_ARGUMENT' })
  tt.same(sampleOf({ data: data.subarray(0, per), shape: [3, 2, 2, 2] }, 0).shape, [3, 2, 2, 2], 'a 4-D clip is its own sample 0')
})

t.test('bad clips are BAD_ARGUMENT with a useful message', async (tt) => {
  tt.throws(() => asClip({ data: new Float32Array(8), shape: [4, 1, 1, 2] }), { code: 'BAD_ARGUMENT', message: /\[3, T, H, W\]/ })
  tt.throws(() => asClip({ data: new Float32Array(12), shape: [2, 3, 1, 1, 2] }), { code: 'BAD_ARGUMENT', message: /sampleOf/ })
  tt.throws(() => asClip({ data: new Float32Array(5), shape: [3, 1, 1, 2] }), { code: 'BAD_ARGUMENT', message: /needs 6 values/ })
  tt.throws(() => asClip({ data: new Float32Array(0), shape: [3, 0, 1, 2] }), { code: 'BAD_ARGUMENT', message: /empty/ })
  tt.throws(() => asClip({ dtype: 'F16', shape: [3, 1, 1, 1], data: new Uint8Array(6) }), { code: 'BAD_ARGUMENT', message: /F32/ })
  tt.throws(() => fromRgbFrames({ width: 2, height: 1, frames: [new Uint8Array(5)] }), { code: 'BAD_ARGUMENT' })
})
