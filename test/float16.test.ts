import t from 'tap'
import { randomWords } from '../src/diffusion/rng.ts'
import {
  F16_MAX, F16_MAX_RELATIVE_ERROR, F16_MIN_NORMAL, F16_MIN_SUBNORMAL,
  bfloat16ToFloat32, float16ToFloat32, float32ToFloat16, fromHalfBits, toF16, toF32, toHalfBits
} from '../src/tensor/float16.ts'
import { f32, view } from '../src/tensor/tensor.ts'
import type { Tensor } from '../src/tensor/tensor.ts'

const hex = (h: number): string => '0x' + h.toString(16).toUpperCase().padStart(4, '0')
const f32OfBits = (b: number): number => new Float32Array(Uint32Array.of(b).buffer)[0]

/** The value of a half bit pattern from the format's definition (independent of the implementation). */
function reference (h: number): number {
  const s = (h & 0x8000) !== 0 ? -1 : 1
  const e = (h >>> 10) & 0x1f
  const m = h & 0x3ff
  if (e === 31) return m === 0 ? s * Infinity : NaN
  if (e === 0) return s * m * 2 ** -24
  return s * (1 + m / 1024) * 2 ** (e - 15)
}

t.test('known bit patterns, float32 → half', async (tt) => {
  const cases: Array<[number, number, string]> = [
    [1, 0x3C00, '1.0'],
    [-2, 0xC000, '-2'],
    [0.5, 0x3800, '0.5'],
    [65504, 0x7BFF, 'largest finite'],
    [F16_MIN_NORMAL, 0x0400, 'smallest normal 2^-14'],
    [F16_MIN_SUBNORMAL, 0x0001, 'smallest subnormal 2^-24'],
    [2 ** -15, 0x0200, 'subnormal 2^-15'],
    [1023 * 2 ** -24, 0x03FF, 'largest subnormal'],
    [0, 0x0000, '+0'],
    [-0, 0x8000, '-0'],
    [Infinity, 0x7C00, '+inf'],
    [-Infinity, 0xFC00, '-inf'],
    [0.1, 0x2E66, '0.1'],
    [1 / 3, 0x3555, '1/3'],
    [Math.PI, 0x4248, 'pi'],
    // ties go to even
    [1 + 2 ** -11, 0x3C00, '1 + half ulp: tie to even (down)'],
    [1 + 3 * 2 ** -11, 0x3C02, '1 + 1.5 ulp: tie to even (up)'],
    [1 + 2 ** -11 + 2 ** -20, 0x3C01, 'just above a tie rounds up'],
    [1 + 2 ** -11 - 2 ** -23, 0x3C00, 'just below a tie rounds down'],
    [2 ** -25, 0x0000, 'half the smallest subnormal: tie to even (0)'],
    [3 * 2 ** -26, 0x0001, '0.75 × 2^-24 rounds up to 2^-24'],
    [3 * 2 ** -25, 0x0002, '1.5 × 2^-24: tie to even (2)'],
    [5 * 2 ** -25, 0x0002, '2.5 × 2^-24: tie to even (2)'],
    [1023.5 * 2 ** -24, 0x0400, 'tie between largest subnormal and smallest normal: even (normal)'],
    [2 ** -26, 0x0000, 'underflow to 0'],
    [-1e-10, 0x8000, 'underflow keeps the sign'],
    [f32OfBits(0x00000001), 0x0000, 'float32 subnormal → 0'],
    // overflow: 65520 = 65504 + half an ulp is a tie between 0x7BFF (odd) and inf (0x7C00, even)
    [65520, 0x7C00, '65520 → inf'],
    [f32OfBits(0x477FEFFF), 0x7BFF, 'largest float32 below 65520 → 65504'],
    [65535, 0x7C00, '65535 → inf'],
    [1e6, 0x7C00, '1e6 → inf'],
    [-1e6, 0xFC00, '-1e6 → -inf'],
    [3.4e38, 0x7C00, 'float32 max → inf']
  ]
  for (const [x, h, what] of cases) tt.equal(hex(toHalfBits(x)), hex(h), `${what}: ${x}`)
  const nan = toHalfBits(NaN)
  tt.ok((nan & 0x7C00) === 0x7C00 && (nan & 0x3FF) !== 0, `NaN → NaN (${hex(nan)})`)
  const out = float32ToFloat16(new Float32Array(new Uint32Array([0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FA00000]).buffer))
  tt.same(Array.from(out, hex), ['0x7E00', '0xFE00', '0x7E00', '0x7D00'], 'NaN: sign and top payload bits kept; a payload only in dropped bits gives 0x7E00')
})

t.test('known bit patterns, half → float32', async (tt) => {
  tt.equal(fromHalfBits(0x3C00), 1)
  tt.equal(fromHalfBits(0x7BFF), 65504)
  tt.equal(fromHalfBits(0x0001), 2 ** -24)
  tt.equal(fromHalfBits(0x03FF), 1023 * 2 ** -24)
  tt.equal(fromHalfBits(0x0400), 2 ** -14)
  tt.equal(fromHalfBits(0xC000), -2)
  tt.equal(fromHalfBits(0x7C00), Infinity)
  tt.equal(fromHalfBits(0xFC00), -Infinity)
  tt.ok(Object.is(fromHalfBits(0x8000), -0), '-0')
  tt.ok(Number.isNaN(fromHalfBits(0x7E00)), 'NaN')
  tt.equal(F16_MAX, 65504)
  tt.throws(() => fromHalfBits(0x10000), { code: 'BAD_ARGUMENT' })
  tt.throws(() => fromHalfBits(1.5), { code: 'BAD_ARGUMENT' })
})

t.test('exhaustive: all 65,536 half values', async (tt) => {
  const all = new Uint16Array(65536)
  for (let h = 0; h < 65536; h++) all[h] = h
  const f = float16ToFloat32(all)
  let wrongValue = 0
  for (let h = 0; h < 65536; h++) {
    const r = reference(h)
    if (Number.isNaN(r) ? !Number.isNaN(f[h]) : !Object.is(f[h], r)) wrongValue++
  }
  tt.equal(wrongValue, 0, 'half → float32 matches the format definition for every pattern (incl. ±0, subnormals, ±inf, NaN)')
  const back = float32ToFloat16(f)
  let wrongTrip = 0
  for (let h = 0; h < 65536; h++) if (back[h] !== h) wrongTrip++
  tt.equal(wrongTrip, 0, 'half → float32 → half is the identity on every bit pattern, NaN payloads included')

  // Every midpoint between two neighbouring positive finite halves is a float32
  // (12 significant bits); it must round to the even neighbour, and one float32
  // ulp either side to the nearer one.
  const mids = new Float32Array(0x7BFF * 3)
  for (let h = 0; h < 0x7BFF; h++) {
    const m = (f[h] + f[h + 1]) / 2
    const mb = new Uint32Array(Float32Array.of(m).buffer)[0]
    mids[3 * h] = m
    mids[3 * h + 1] = f32OfBits(mb - 1)
    mids[3 * h + 2] = f32OfBits(mb + 1)
  }
  const r = float32ToFloat16(mids)
  let wrongTies = 0
  let wrongNear = 0
  for (let h = 0; h < 0x7BFF; h++) {
    const even = (h & 1) === 0 ? h : h + 1
    if (r[3 * h] !== even) wrongTies++
    if (r[3 * h + 1] !== h || r[3 * h + 2] !== h + 1) wrongNear++
  }
  tt.equal(wrongTies, 0, 'all 31,743 ties round to even')
  tt.equal(wrongNear, 0, 'one float32 ulp off a tie rounds to the nearer neighbour')
})

t.test('relative error of a float32 → half → float32 trip ≤ 2^-11 over the normal range', async (tt) => {
  tt.equal(F16_MAX_RELATIVE_ERROR, 2 ** -11)
  const n = 200_000
  const w = randomWords(7, 'test/float16', 2 * n)
  const x = new Float32Array(n)
  const lo = Math.log2(F16_MIN_NORMAL)
  const hi = Math.log2(F16_MAX)
  for (let i = 0; i < n; i++) {
    const e = lo + (hi - lo) * (w[2 * i] / 2 ** 32)
    x[i] = ((w[2 * i + 1] & 1) === 1 ? -1 : 1) * 2 ** e
  }
  const h = new Uint16Array(n)
  const y = new Float32Array(n)
  const ho = float32ToFloat16(x, h)
  const yo = float16ToFloat32(h, y)
  tt.equal(ho, h, 'writes into the given out')
  tt.equal(yo, y, 'writes into the given out')
  let worst = 0
  for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(y[i] - x[i]) / Math.abs(x[i]))
  tt.ok(worst <= F16_MAX_RELATIVE_ERROR, `worst ${worst} ≤ 2^-11`)
  tt.ok(worst > F16_MAX_RELATIVE_ERROR * 0.99, `the bound is tight (worst ${worst})`)
  // the tight case: just under 1 + 2^-11 above a power of two
  const just = f32OfBits(0x3F801000 - 1)
  tt.ok(Math.abs(fromHalfBits(toHalfBits(just)) - just) / just <= F16_MAX_RELATIVE_ERROR)
})

t.test('out must match in length', async (tt) => {
  tt.throws(() => float32ToFloat16(new Float32Array(3), new Uint16Array(2)), { code: 'BAD_ARGUMENT' })
  tt.throws(() => float16ToFloat32(new Uint16Array(3), new Float32Array(4)), { code: 'BAD_ARGUMENT' })
})

t.test('tensors: toF16 / toF32', async (tt) => {
  const a = f32([2, 2], [1, -2, 65504, 1e6])
  const h = toF16(a)
  tt.equal(h.dtype, 'F16')
  tt.same(h.shape, [2, 2])
  tt.same(Array.from(h.data), [0x00, 0x3C, 0x00, 0xC0, 0xFF, 0x7B, 0x00, 0x7C], 'little-endian half bytes')
  const b = toF32(h)
  tt.equal(b.dtype, 'F32')
  tt.same(b.shape, [2, 2])
  tt.same(Array.from(view(b) as Float32Array), [1, -2, 65504, Infinity])
  // unaligned F16 bytes (view copies)
  const raw = new Uint8Array(5)
  raw.set([0x00, 0x3C, 0x00, 0x38], 1)
  const unaligned: Tensor = { dtype: 'F16', shape: [2], data: raw.subarray(1) }
  tt.same(Array.from(view(toF32(unaligned)) as Float32Array), [1, 0.5])
  tt.same(Array.from(view(toF32({ dtype: 'BF16', shape: [2], data: new Uint8Array([0x80, 0x3F, 0x00, 0xC0]) })) as Float32Array), [1, -2], 'BF16 → F32')
  tt.same(Array.from(bfloat16ToFloat32(Uint16Array.of(0x3F80))), [1])
  const copy = toF16(h)
  tt.not(copy.data.buffer, h.data.buffer, 'F16 → F16 copies')
  tt.same(Array.from(copy.data), Array.from(h.data))
  tt.throws(() => toF16({ dtype: 'I32', shape: [1], data: new Uint8Array(4) }), { code: 'BAD_ARGUMENT' })
  tt.throws(() => toF32({ dtype: 'U8', shape: [1], data: new Uint8Array(1) }), { code: 'BAD_ARGUMENT' })
  tt.throws(() => toF16({ dtype: 'F32', shape: [2], data: new Uint8Array(4) }), { code: 'BAD_ARGUMENT' })
})
