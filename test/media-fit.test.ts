import t from 'tap'
import { coverFit, fitClip, frameIndices, imageAsClip, resample, stackFrames } from '../src/media/fit.ts'

t.test('coverFit: scale to cover, centred window offset in whole scaled pixels', async t => {
  t.same(coverFit(16, 16, 16, 16), { scale: 1, x0: 0, y0: 0 }, 'exact size: identity')
  t.same(coverFit(48, 16, 16, 16), { scale: 1, x0: 16, y0: 0 }, 'wider, same height: centre columns')
  t.same(coverFit(16, 40, 16, 16), { scale: 1, x0: 0, y0: 12 }, 'taller: centre rows')
  t.same(coverFit(17, 16, 16, 16), { scale: 1, x0: 0, y0: 0 }, 'odd surplus of 1: the extra column is on the right')
  t.same(coverFit(19, 16, 16, 16), { scale: 1, x0: 1, y0: 0 }, 'odd surplus of 3: floor(3/2) = 1')
  t.same(coverFit(64, 32, 16, 16), { scale: 0.5, x0: 16, y0: 0 }, 'shrink by 2, then crop')
  t.same(coverFit(8, 4, 16, 16), { scale: 4, x0: 2, y0: 0 }, 'enlarge by 4 (height decides), scaled width 32 cropped by 8 on each side')
  t.same(coverFit(32, 24, 16, 16), { scale: 2 / 3, x0: 3, y0: 0 }, '32×24 → 16×16: s = 2/3, scaled width 21.33, offset floor(2.67) = 2 scaled px = 3 source px')
})

t.test('frameIndices: even sampling when longer, last frame repeated when shorter', async t => {
  t.same(frameIndices(24, 16), [0, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 23], '24 → 16: round(i·23/15)')
  t.same(frameIndices(4, 3), [0, 2, 3], 'exact halves round up: 1.5 → 2')
  t.same(frameIndices(80, 80), Array.from({ length: 80 }, (_, i) => i), 'n = T: identity')
  t.same(frameIndices(10, 1), [0], 'T = 1: the first frame')
  t.same(frameIndices(4, 8), [0, 1, 2, 3, 3, 3, 3, 3], 'shorter: pad with the last frame')
  t.same(frameIndices(1, 5), [0, 0, 0, 0, 0], 'one frame: every frame')
  for (let n = 1; n <= 40; n++) {
    for (let T = 1; T <= 40; T++) {
      const idx = frameIndices(n, T)
      if (idx.length !== T || idx[0] !== 0 || idx[T - 1] !== (n >= T ? (T === 1 ? 0 : n - 1) : n - 1) || idx.some((v, i) => i > 0 && v < idx[i - 1]) || (n >= T && new Set(idx).size !== T)) {
        t.fail(`frameIndices(${n}, ${T}) = ${idx.join(',')}`)
      }
    }
  }
  t.throws(() => frameIndices(0, 4), { code: 'BAD_ARGUMENT' })
})

t.test('resample: identity, partition of unity, nearest keeps values', async t => {
  const src = Float32Array.from({ length: 2 * 5 * 7 }, (_, i) => Math.sin(i) * 0.9)
  t.same(Array.from(resample(src, 2, 7, 5, 7, 5, 'linear')), Array.from(src), 'same size: unchanged')
  // A crop with s = 1 reads exactly one source pixel per output pixel.
  const crop = resample(src, 2, 7, 5, 5, 5, 'linear')
  for (let p = 0; p < 2; p++) for (let y = 0; y < 5; y++) for (let x = 0; x < 5; x++) {
    if (crop[(p * 5 + y) * 5 + x] !== src[(p * 5 + y) * 7 + x + 1]) t.fail(`crop pixel ${p},${y},${x}`)
  }
  for (const [w, h, W, H] of [[13, 9, 4, 4], [3, 2, 11, 7], [100, 10, 8, 8], [5, 5, 6, 3]]) {
    const flat = new Float32Array(w * h).fill(0.25)
    const out = resample(flat, 1, w, h, W, H, 'linear')
    t.ok(out.every(v => Math.abs(v - 0.25) < 1e-6), `constant stays constant ${w}×${h} → ${W}×${H}`)
    const bin = Float32Array.from({ length: w * h }, (_, i) => (i * 7) % 3 === 0 ? 1 : 0)
    t.ok(resample(bin, 1, w, h, W, H, 'nearest').every(v => v === 0 || v === 1), `nearest stays binary ${w}×${h} → ${W}×${H}`)
  }
  // Shrinking 4×2 → 2×1 (s = 1/2, radius 2): output 0 is centred at source coordinate 1.
  const rows = Float32Array.from([0, 1, 0, 0, 0, 1, 0, 0]) // 4×2, both rows alike
  const half = resample(rows, 1, 4, 2, 2, 1, 'linear')
  // weights for c = 1: j=0 → 1 − 0.5/2 = .75, j=1 → .75, j=2 → 1 − 1.5/2 = .25 → normalised by 1.75
  t.ok(Math.abs(half[0] - 0.75 / 1.75) < 1e-6, 'anti-aliased bilinear weights when shrinking')
  // Enlarging 2 → 4 (s = 2): plain bilinear with clamped edges
  const up = resample(Float32Array.from([0, 1]), 1, 2, 1, 4, 2, 'linear') // 2×1 → 4×2: s = 2
  t.same(Array.from(up.subarray(0, 4)).map(v => Math.round(v * 1000) / 1000), [0, 0.25, 0.75, 1], 'bilinear when enlarging')
  t.same(Array.from(resample(Float32Array.from([0, 1]), 1, 2, 1, 4, 2, 'nearest').subarray(0, 4)), [0, 0, 1, 1], 'nearest when enlarging')
})

t.test('fitClip, stackFrames, imageAsClip', async t => {
  const T = 5
  const clip = { data: new Float32Array(3 * T * 4 * 6), shape: [3, T, 4, 6] }
  for (let c = 0; c < 3; c++) for (let f = 0; f < T; f++) clip.data.fill(c + f / 10, (c * T + f) * 24, (c * T + f + 1) * 24)
  const out = fitClip(clip, { width: 2, height: 2, frames: 3 }, 'linear')
  t.same(out.shape, [3, 3, 2, 2])
  t.same(out.indices, [0, 2, 4])
  for (let c = 0; c < 3; c++) for (let i = 0; i < 3; i++) t.ok(Math.abs(out.data[(c * 3 + i) * 4] - (c + out.indices[i] / 10)) < 1e-6, `channel ${c} frame ${i}`)
  const st = stackFrames([Float32Array.from([1, 2]), Float32Array.from([3, 4])], 2, 1, 1)
  t.same(st, { data: Float32Array.from([1, 3, 2, 4]), shape: [2, 2, 1, 1] }, 'per-frame [C,H,W] → [C,T,H,W]')
  const img = { data: Float32Array.from([0.5, -0.5, 0.25]), shape: [3, 1, 1] }
  t.same(Array.from(imageAsClip(img, 3, 'every').data), [0.5, 0.5, 0.5, -0.5, -0.5, -0.5, 0.25, 0.25, 0.25])
  t.same(Array.from(imageAsClip(img, 3, 'first').data), [0.5, 0, 0, -0.5, 0, 0, 0.25, 0, 0])
  t.throws(() => imageAsClip(img, 0, 'every'), { code: 'BAD_ARGUMENT' })
})
