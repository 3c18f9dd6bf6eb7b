import t from 'tap'
import { gaussian } from '../src/diffusion/rng.ts'
import { alphaSigma } from '../src/diffusion/schedule.ts'
import { concatChannels, conditionNoiseStream, noiseAugment, upsample } from '../src/ssr/condition.ts'

t.test('upsample: bilinear, half-pixel centres, 2×2 → 4×4 by hand', async (tt) => {
  const clip = Float32Array.of(0, 1, 2, 3) // [1, 1, 2, 2]: rows [0, 1], [2, 3]
  // x taps: sources −0.25→0 (clamped), 0.25, 0.75, 1.25→1 (clamped); rows along x: [0, .25, .75, 1], [2, 2.25, 2.75, 3]
  // y the same: output rows = row0, .75·row0 + .25·row1, .25·row0 + .75·row1, row1
  tt.same(Array.from(upsample(clip, [1, 1, 2, 2], 2)), [
    0, 0.25, 0.75, 1,
    0.5, 0.75, 1.25, 1.5,
    1.5, 1.75, 2.25, 2.5,
    2, 2.25, 2.75, 3
  ])
  // [3, 2, 2, 2]: every (channel, frame) plane on its own
  const planes = Float32Array.from({ length: 24 }, (_, i) => (i % 4) + 10 * Math.floor(i / 4))
  const up = upsample(planes, [3, 2, 2, 2], 2)
  tt.equal(up.length, 3 * 2 * 16)
  let ok = true
  for (let p = 0; p < 6; p++) {
    const want = [0, 0.25, 0.75, 1, 0.5, 0.75, 1.25, 1.5, 1.5, 1.75, 2.25, 2.5, 2, 2.25, 2.75, 3].map(v => v + 10 * p)
    for (let i = 0; i < 16; i++) if (up[p * 16 + i] !== want[i]) ok = false
  }
  tt.ok(ok, 'planes are independent')
  // non-square 1×3 → 3×9 at scale 3: constant rows stay constant, a ramp stays a ramp inside
  const ramp = upsample(Float32Array.of(0, 3, 6), [1, 1, 1, 3], 3)
  tt.same(Array.from(ramp.subarray(0, 9)), [0, 0, 1, 2, 3, 4, 5, 6, 6])
  tt.same(Array.from(ramp.subarray(9, 18)), Array.from(ramp.subarray(0, 9)))
  const c = upsample(new Float32Array(3 * 4 * 5 * 6).fill(0.7), [3, 4, 5, 6], 4)
  tt.ok(c.every(v => v === Math.fround(0.7)), 'a constant stays constant')
  tt.same(Array.from(upsample(clip, [1, 1, 2, 2], 1)), [0, 1, 2, 3], 'scale 1 copies')
  tt.throws(() => upsample(clip, [1, 1, 2, 2], 1.5), { code: 'BAD_ARGUMENT', message: /whole number/ })
  tt.throws(() => upsample(clip, [1, 1, 2, 2], 0), { code: 'BAD_ARGUMENT' })
  tt.throws(() => upsample(clip, [1, 2, 2], 2), { code: 'BAD_ARGUMENT' })
  tt.throws(() => upsample(clip, [1, 1, 2, 3], 2), { code: 'BAD_ARGUMENT', message: /holds 4 values/ })
})

t.test('noiseAugment: α·clip + σ·z with z from the rng stream', async (tt) => {
  const clip = Float32Array.of(1, -1, 0.5, 0, 2, 3, -2)
  const stream = conditionNoiseStream(0)
  tt.equal(stream, 'ssr-aug/0')
  const z = gaussian(9, stream, clip.length)
  const { alpha, sigma } = alphaSigma(0) // α = σ = √½
  const want = Float32Array.from(clip, (x, i) => alpha * x + sigma * z[i])
  const got = noiseAugment(clip, 0, 9, stream)
  tt.same(Array.from(got), Array.from(want))
  tt.same(Array.from(noiseAugment(clip, 0, 9, stream)), Array.from(got), 'deterministic')
  tt.notSame(Array.from(noiseAugment(clip, 0, 9, conditionNoiseStream(1))), Array.from(got), 'another stream, other noise')
  const clean = noiseAugment(clip, 30, 9, stream)
  tt.ok(clean.every((v, i) => Math.abs(v - clip[i]) < 1e-5), 'high log-SNR ≈ the clip')
  const copy = Float32Array.from(clip)
  tt.equal(noiseAugment(copy, 0, 9, stream, copy), copy, 'in place')
  tt.same(Array.from(copy), Array.from(want))
  tt.throws(() => noiseAugment(clip, NaN, 9, stream), { code: 'BAD_ARGUMENT' })
  tt.throws(() => noiseAugment(clip, 0, 9, stream, new Float32Array(2)), { code: 'BAD_ARGUMENT' })
})

t.test('concatChannels: [3, L, H, W] + [3, L, H, W] → [6, L, H, W]', async (tt) => {
  // L=1, H=1, W=2: plane size 2
  const a = Float32Array.of(1, 2, 3, 4, 5, 6)
  const b = Float32Array.of(-1, -2, -3, -4, -5, -6)
  tt.same(Array.from(concatChannels(a, b, 2)), [1, 2, 3, 4, 5, 6, -1, -2, -3, -4, -5, -6])
  tt.same(Array.from(concatChannels(a, b)), [1, 2, 3, 4, 5, 6, -1, -2, -3, -4, -5, -6])
  tt.same(Array.from(concatChannels(a, b, [1, 1, 2])), [1, 2, 3, 4, 5, 6, -1, -2, -3, -4, -5, -6], 'plane given as [L, H, W]')
  tt.throws(() => concatChannels(a, Float32Array.of(1, 2, 3), [1, 1, 2]), { code: 'BAD_ARGUMENT' })
  tt.throws(() => concatChannels(a, Float32Array.of(1, 2, 3), 2), { code: 'BAD_ARGUMENT', message: /share L, H, W/ })
  tt.throws(() => concatChannels(a, b, 0), { code: 'BAD_ARGUMENT' })
})
