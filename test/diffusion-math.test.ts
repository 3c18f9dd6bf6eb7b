import t from 'tap'
import {
  absQuantile, dynamicThreshold, epsFromV, epsFromX0, guidance, noised, predictX0, thresholdScale,
  vFromX0, vFromX0Eps, x0FromEps, x0FromV
} from '../src/diffusion/prediction.ts'
import { gaussian } from '../src/diffusion/rng.ts'
import { alphaSigma, logsnr, noiseLevel, sigmoid, timeGrid, timeOfLogsnr } from '../src/diffusion/schedule.ts'

const close = (a: number, b: number, tol: number): boolean => Math.abs(a - b) <= tol
const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]))
  return m
}

t.test('cosine log-SNR schedule', async (tt) => {
  tt.ok(close(logsnr(0), 20, 1e-12), `λ(0) = ${logsnr(0)}`)
  tt.ok(close(logsnr(1), -20, 1e-12), `λ(1) = ${logsnr(1)}`)
  // b = atan(e^-10), a = atan(e^10) − b = π/2 − 2b, so a/2 + b = π/4: λ(½) = −2 ln tan(π/4) = 0.
  tt.ok(close(logsnr(0.5), 0, 1e-12), `λ(½) = ${logsnr(0.5)}`)
  // a(1−t) + b = π/2 − (a t + b), and tan(π/2 − x) = 1/tan x: λ(1 − t) = −λ(t).
  for (const x of [0.01, 0.1, 0.25, 0.4]) tt.ok(close(logsnr(1 - x), -logsnr(x), 1e-9), `antisymmetric at ${x}`)
  // λ(¼) = −2 ln tan(π/8 + b/2); unclipped it would be −2 ln tan(π/8) = 2 asinh(1) = 1.7627471740390861;
  // the clip shifts it by −4/sin(π/4)·b/2 ≈ −1.284e-4.
  tt.ok(close(logsnr(0.25), 2 * Math.asinh(1) - 2 * Math.SQRT2 * Math.atan(Math.exp(-10)), 1e-8), `λ(¼) = ${logsnr(0.25)}`)
  let prev = Infinity
  let monotone = true
  for (let i = 0; i <= 10000; i++) {
    const l = logsnr(i / 10000)
    if (!(l < prev)) monotone = false
    prev = l
  }
  tt.ok(monotone, 'strictly decreasing on a grid of 10001 times')
  tt.equal(logsnr(-0.5), 20, 'clamped below')
  tt.equal(logsnr(1.5), -20, 'clamped above')
  for (const x of [0, 0.001, 0.3, 0.5, 0.77, 1]) tt.ok(close(timeOfLogsnr(logsnr(x)), x, 1e-9), `timeOfLogsnr inverts at ${x}`)
  tt.ok(close(logsnr(0, -10, 10), 10, 1e-12) && close(logsnr(1, -10, 10), -10, 1e-12), 'custom clip range')
  tt.throws(() => logsnr(Number.NaN), { code: 'BAD_ARGUMENT' })
})

t.test('variance-preserving scales', async (tt) => {
  let worst = 0
  for (let l = -20; l <= 20; l += 0.125) {
    const { alpha, sigma } = alphaSigma(l)
    worst = Math.max(worst, Math.abs(alpha * alpha + sigma * sigma - 1))
    if (!close(Math.log((alpha * alpha) / (sigma * sigma)), l, 1e-9)) tt.fail(`ln(α²/σ²) ≠ λ at ${l}`)
  }
  tt.ok(worst < 1e-15, `α² + σ² = 1 within ${worst}`)
  const mid = alphaSigma(0)
  tt.equal(mid.alpha, Math.SQRT1_2)
  tt.equal(mid.sigma, Math.SQRT1_2)
  // λ = ln 3: α² = 3/4, σ² = 1/4.
  const l3 = alphaSigma(Math.log(3))
  tt.ok(close(l3.alpha, Math.sqrt(3) / 2, 1e-15) && close(l3.sigma, 0.5, 1e-15), 'λ = ln 3 → α = √3/2, σ = 1/2')
  // λ = 20: σ² = 1/(1 + e^20) = 2.0611536181902037e-9.
  tt.ok(close(alphaSigma(20).sigma ** 2, 2.0611536181902037e-9, 1e-22), 'σ² at λ = 20')
  tt.ok(close(sigmoid(-800), 0, 0) && sigmoid(800) === 1, 'sigmoid does not overflow')
  tt.same(noiseLevel(0), { logsnr: 0, alpha: Math.SQRT1_2, sigma: Math.SQRT1_2 })
})

t.test('time grid', async (tt) => {
  tt.same(timeGrid(4), [1, 0.75, 0.5, 0.25, 0])
  tt.same(timeGrid(4, 0.5), [0.5, 0.375, 0.25, 0.125, 0])
  tt.same(timeGrid(1), [1, 0])
  const g = timeGrid(50)
  tt.equal(g.length, 51)
  tt.equal(g[50], 0)
  for (const bad of [0, -1, 2.5, Number.NaN]) tt.throws(() => timeGrid(bad), { code: 'BAD_ARGUMENT' }, `steps ${bad}`)
  for (const bad of [0, 1.5, -0.1]) tt.throws(() => timeGrid(10, bad), { code: 'BAD_ARGUMENT' }, `tStart ${bad}`)
})

t.test('v / ε / x0 conversions on hand-computed numbers', async (tt) => {
  // α = 0.6, σ = 0.8 (α² + σ² = 1). x0 = [1, −0.5, 0], ε = [2, 1, −1]:
  //   x_t = α x0 + σ ε = [2.2, 0.5, −0.8];   v = α ε − σ x0 = [0.4, 1.0, −0.6].
  const lv = { alpha: 0.6, sigma: 0.8 }
  const x0 = Float32Array.of(1, -0.5, 0)
  const eps = Float32Array.of(2, 1, -1)
  const xt = [2.2, 0.5, -0.8]
  const v = [0.4, 1.0, -0.6]
  const f = (a: number[]): Float32Array => Float32Array.from(a)
  const tol = 1e-6
  tt.ok(maxAbsDiff(noised(x0, eps, lv), xt) < tol, 'x_t = α x0 + σ ε')
  tt.ok(maxAbsDiff(vFromX0Eps(x0, eps, lv), v) < tol, 'v = α ε − σ x0')
  tt.ok(maxAbsDiff(x0FromV(f(xt), f(v), lv), x0) < tol, 'x0 = α x_t − σ v')
  tt.ok(maxAbsDiff(epsFromV(f(xt), f(v), lv), eps) < tol, 'ε = σ x_t + α v')
  tt.ok(maxAbsDiff(x0FromEps(f(xt), eps, lv), x0) < tol, 'x0 = (x_t − σ ε)/α')
  tt.ok(maxAbsDiff(epsFromX0(f(xt), x0, lv), eps) < tol, 'ε = (x_t − α x0)/σ')
  tt.ok(maxAbsDiff(vFromX0(f(xt), x0, lv), v) < tol, 'v = (α x_t − x0)/σ')
  tt.ok(maxAbsDiff(predictX0('v', f(xt), f(v), lv), x0) < tol, "predictX0 'v'")
  tt.ok(maxAbsDiff(predictX0('eps', f(xt), eps, lv), x0) < tol, "predictX0 'eps'")
  tt.throws(() => predictX0('x' as 'v', f(xt), eps, lv), { code: 'BAD_ARGUMENT' })
  tt.throws(() => noised(x0, Float32Array.of(1), lv), { code: 'BAD_ARGUMENT' })
  const inPlace = f(xt)
  x0FromV(inPlace, f(v), lv, inPlace)
  tt.ok(maxAbsDiff(inPlace, x0) < tol, 'out may alias an input')
})

t.test('conversions round-trip at every noise level of a 50-step grid', async (tt) => {
  const n = 2048
  const x0 = gaussian(1, 'rt/x0', n)
  const eps = gaussian(1, 'rt/eps', n)
  let worst = 0
  for (const time of timeGrid(50).slice(0, 50)) {
    const lv = noiseLevel(logsnr(time))
    const xt = noised(x0, eps, lv)
    const v = vFromX0Eps(x0, eps, lv)
    // Through v: x0 and ε come back up to float32 rounding of x_t and v (|x|, |v| ≲ 5).
    worst = Math.max(worst, maxAbsDiff(x0FromV(xt, v, lv), x0), maxAbsDiff(epsFromV(xt, v, lv), eps))
    const v2 = vFromX0(xt, x0FromV(xt, v, lv), lv)
    // v = (α x_t − x0)/σ amplifies rounding by 1/σ (σ ≥ 0.03 on this grid).
    if (maxAbsDiff(v2, v) > 5 * 2 ** -23 * 5 / lv.sigma) tt.fail(`v round trip at t=${time}`)
    const e2 = epsFromX0(xt, x0, lv)
    if (maxAbsDiff(e2, eps) > 10 * 2 ** -23 * 5 / lv.sigma) tt.fail(`ε round trip at t=${time}`)
  }
  tt.ok(worst < 5e-6, `x0, ε through v within ${worst}`)
})

t.test('classifier-free guidance', async (tt) => {
  // u + (c − u) rounds to 0, not c, for these: w = 1 must return c itself.
  const u = Float32Array.of(1e30, 3, -2, 0.1)
  const c = Float32Array.of(1e-30, 5, 7, 0.30000001192092896)
  tt.same(Array.from(guidance(u, c, 1)), Array.from(c), 'w = 1: the conditional branch, bit for bit')
  tt.same(Array.from(guidance(u, c, 0)), Array.from(u), 'w = 0: the unconditional branch')
  // w = 7.5: 3 + 7.5·2 = 18, −2 + 7.5·9 = 65.5.
  const g = guidance(u.subarray(1, 3), c.subarray(1, 3), 7.5)
  tt.same(Array.from(g), [18, 65.5])
  tt.same(Array.from(guidance(Float32Array.of(1), Float32Array.of(3), -0.5)), [0], 'negative weights extrapolate the other way')
  tt.throws(() => guidance(u, c.subarray(1), 2), { code: 'BAD_ARGUMENT' })
  tt.throws(() => guidance(u, c, Number.NaN), { code: 'BAD_ARGUMENT' })
})

t.test('quantile (numpy linear / type 7)', async (tt) => {
  // |x| sorted = [0, 1, 2, 3, 4]: p = 0.75 → h = 3 → 3; p = 0.9 → h = 3.6 → 3.6; p = 1 → 4; p = 0 → 0.
  const x = Float32Array.of(0, 1, -2, 3, -4)
  tt.equal(absQuantile(x, 0.75), 3)
  tt.ok(close(absQuantile(x, 0.9), 3.6, 1e-6))
  tt.equal(absQuantile(x, 1), 4)
  tt.equal(absQuantile(x, 0), 0)
  tt.equal(absQuantile(Float32Array.of(-2.5), 0.995), 2.5)
  tt.same(Array.from(x), [0, 1, -2, 3, -4], 'input untouched')
  // Against a full sort, on random data, many ties, sorted and reversed input.
  const rnd = gaussian(3, 'q', 10007)
  const ties = Float32Array.from(rnd, v => Math.round(v * 2))
  const asc = Float32Array.from({ length: 1000 }, (_, i) => i)
  const cases: Array<[string, Float32Array]> = [['random', rnd], ['ties', ties], ['ascending', asc], ['descending', asc.slice().reverse()], ['all equal', new Float32Array(500).fill(-1.5)]]
  for (const [name, a] of cases) {
    const s = Float64Array.from(a, Math.abs).sort()
    for (const p of [0, 0.1, 0.5, 0.9, 0.995, 0.9999, 1]) {
      const h = (s.length - 1) * p
      const k = Math.floor(h)
      const want = k + 1 < s.length ? s[k] + (h - k) * (s[k + 1] - s[k]) : s[k]
      if (!close(absQuantile(a, p), want, 1e-6 * (1 + Math.abs(want)))) tt.fail(`${name} p=${p}: ${absQuantile(a, p)} vs ${want}`)
    }
  }
  tt.pass('matches the sort-based definition')
  tt.throws(() => absQuantile(x, 1.5), { code: 'BAD_ARGUMENT' })
  tt.throws(() => absQuantile(new Float32Array(0), 0.5), { code: 'BAD_ARGUMENT' })
})

t.test('dynamic thresholding (Imagen)', async (tt) => {
  // All |x| ≤ 1: s = max(1, q) = 1, values unchanged.
  tt.same(Array.from(dynamicThreshold(Float32Array.of(0.5, -0.25, 0.75))), [0.5, -0.25, 0.75])
  // p = 0.75 on [0, 1, −2, 3, −4]: s = 3; clip to [−3, 3], divide by 3.
  tt.ok(maxAbsDiff(dynamicThreshold(Float32Array.of(0, 1, -2, 3, -4), 0.75), [0, 1 / 3, -2 / 3, 1, -1]) < 1e-7, 's = 3')
  // p = 0.9: s = 3.6.
  tt.ok(maxAbsDiff(dynamicThreshold(Float32Array.of(0, 1, -2, 3, -4), 0.9), [0, 1 / 3.6, -2 / 3.6, 3 / 3.6, -1]) < 1e-7, 's = 3.6')
  // Quantile below 1 (median 0.2): s = 1, i.e. static clipping to [−1, 1].
  tt.same(Array.from(dynamicThreshold(Float32Array.of(0.1, 0.2, 5), 0.5)), [0.1, 0.2, 1].map(Math.fround))
  // Default p = 0.995 on x_i = i/100, i = 0..999: h = 999·0.995 = 994.005 → s = 9.94 + 0.005·0.01 = 9.94005.
  const ramp = Float32Array.from({ length: 1000 }, (_, i) => i / 100)
  tt.ok(close(thresholdScale(ramp), 9.94005, 2e-6), `s = ${thresholdScale(ramp)}`)
  const out = dynamicThreshold(ramp)
  tt.ok(close(out[999], 1, 0) && close(out[500], 5 / 9.94005, 1e-6), 'ramp clipped and scaled')
  tt.throws(() => dynamicThreshold(ramp, 99.5), { code: 'BAD_ARGUMENT' }, 'percentile is a fraction')
  const inPlace = Float32Array.of(0, 1, -2, 3, -4)
  dynamicThreshold(inPlace, 0.75, inPlace)
  tt.ok(maxAbsDiff(inPlace, [0, 1 / 3, -2 / 3, 1, -1]) < 1e-7, 'in place')
})
