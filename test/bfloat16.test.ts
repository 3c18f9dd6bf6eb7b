// float32 ↔ bfloat16 (the --wire bf16 format) against the format's
// definition: nearest value, ties to even, float32's range, NaN kept NaN.
import t from 'tap'
import { randomWords } from '../src/diffusion/rng.ts'
import { BF16_MAX_RELATIVE_ERROR, bfloat16ToFloat32, float32ToBfloat16, toBF16, toF32 } from '../src/tensor/float16.ts'
import { f32, view } from '../src/tensor/tensor.ts'

const f32OfBits = (b: number): number => new Float32Array(Uint32Array.of(b).buffer)[0]
const narrow = (bits: number): number => float32ToBfloat16(new Float32Array(Uint32Array.of(bits).buffer))[0]
const hex = (h: number): string => '0x' + h.toString(16).toUpperCase()

/** The value of a bfloat16 pattern from the definition; the all-ones exponent reads as 2^128 (unbounded rounding, where inf lies). */
function value (h: number): number {
  const s = (h & 0x8000) !== 0 ? -1 : 1
  const e = (h >>> 7) & 0xff
  const m = h & 0x7f
  if (e === 0xff) return s * 2 ** 128
  if (e === 0) return s * m * 2 ** -133
  return s * (1 + m / 128) * 2 ** (e - 127)
}

/** The nearest bfloat16 to the finite float32 with these bits, ties to the even pattern (independent of the implementation). */
function nearest (bits: number): number {
  const x = f32OfBits(bits)
  const down = bits >>> 16 // same sign, magnitude truncated
  const up = down + 1 // the next magnitude away from zero
  const dd = Math.abs(x - value(down))
  const du = Math.abs(value(up) - x)
  return dd < du || (dd === du && (down & 1) === 0) ? down : up
}

t.test('every finite float32 pattern tried rounds to the nearest bfloat16, ties to even', async (tt) => {
  const words = randomWords(3, 'test/bfloat16', 200_000)
  const cases = [...words,
    0x3F808000, 0x3F818000, 0x3F808001, 0x3F807FFF, // ties at 1 + 2^-8 and 1 + 3·2^-8, and either side of one
    0x7F7F7FFF, 0x7F7F8000, 0xFF7F8000, // largest finite; its half ulp above (a tie, to even: inf)
    0x00008000, 0x00018000, 0x00000001, 0x80000001 // subnormal ties and the smallest subnormals
  ].filter((b) => (b & 0x7f800000) !== 0x7f800000)
  let wrong = 0
  let first = ''
  for (const b of cases) {
    const got = narrow(b)
    const want = nearest(b)
    if (got !== want) { wrong++; first ||= `${hex(b)} → ${hex(got)}, want ${hex(want)}` }
  }
  tt.equal(wrong, 0, `${cases.length} patterns${first !== '' ? `; first wrong ${first}` : ''}`)
  tt.equal(narrow(0x3F808000), 0x3F80, 'a tie goes down to the even pattern')
  tt.equal(narrow(0x3F818000), 0x3F82, 'and up to it')
  tt.equal(narrow(0x7F7F8000), 0x7F80, 'the largest finite plus half an ulp is inf')
})

t.test('every bfloat16 pattern widens exactly and narrows back to itself; NaN stays NaN', async (tt) => {
  const all = new Uint16Array(65536).map((_, i) => i)
  const wide = bfloat16ToFloat32(all)
  const back = float32ToBfloat16(wide)
  let same = 0
  let nans = 0
  for (let h = 0; h < 65536; h++) {
    const isNaN = (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0
    if (isNaN) {
      if (Number.isNaN(wide[h]) && (back[h] & 0x7f80) === 0x7f80 && (back[h] & 0x7f) !== 0 && (back[h] & 0x8000) === (h & 0x8000)) nans++
    } else if (back[h] === h && (Math.abs(value(h)) === 2 ** 128 ? wide[h] === Math.sign(value(h)) * Infinity : wide[h] === value(h))) same++
  }
  tt.equal(same, 65536 - 254, 'every non-NaN pattern: the defined value, and back to itself')
  tt.equal(nans, 254, 'every NaN: a NaN of the same sign')
  tt.equal(narrow(0x7F800001), 0x7FC0, 'a NaN whose payload lives only in the dropped bits stays a (quiet) NaN')
})

t.test(`relative error of the trip ≤ 2^-8 for normal values, and the bound is tight`, async (tt) => {
  const w = randomWords(4, 'test/bfloat16/normals', 2 * 100_000)
  const x = new Float32Array(100_000)
  for (let i = 0; i < x.length; i++) x[i] = ((w[2 * i + 1] & 1) === 1 ? -1 : 1) * 2 ** (-120 + 240 * (w[2 * i] / 2 ** 32))
  const out = new Uint16Array(x.length)
  tt.equal(float32ToBfloat16(x, out), out, 'writes into the given out')
  const y = bfloat16ToFloat32(out)
  let worst = 0
  for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(y[i] - x[i]) / Math.abs(x[i]))
  tt.ok(worst <= BF16_MAX_RELATIVE_ERROR, `worst ${worst} ≤ 2^-8`)
  tt.ok(worst > 0.99 * BF16_MAX_RELATIVE_ERROR, `tight (worst ${worst})`)
  tt.throws(() => float32ToBfloat16(new Float32Array(3), new Uint16Array(2)), { code: 'BAD_ARGUMENT' })
})

t.test('tensors: toBF16', async (tt) => {
  const b = toBF16(f32([2], [1, -2]))
  tt.equal(b.dtype, 'BF16')
  tt.same(Array.from(b.data), [0x80, 0x3F, 0x00, 0xC0], 'little-endian bfloat16 bytes')
  tt.same(Array.from(view(toF32(b)) as Float32Array), [1, -2])
  const copy = toBF16(b)
  tt.not(copy.data.buffer, b.data.buffer, 'BF16 → BF16 copies')
  tt.throws(() => toBF16({ dtype: 'F16', shape: [1], data: new Uint8Array(2) }), { code: 'BAD_ARGUMENT' })
})
