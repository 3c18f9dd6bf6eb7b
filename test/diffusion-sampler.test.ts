import t from 'tap'
import { LumiereError } from '../src/errors.ts'
import { GraphBuilder } from '../src/onnx/builder.ts'
import { encodeModel } from '../src/onnx/model-io.ts'
import { runModel } from '../src/onnx/run.ts'
import { gaussian } from '../src/diffusion/rng.ts'
import { ancestralNoiseStream, ancestralStep, ddimStep, initialNoiseStream, posteriorCoefficients, sample } from '../src/diffusion/sampler.ts'
import type { SampleOptions, SamplerState } from '../src/diffusion/sampler.ts'
import { logsnr, noiseLevel, timeGrid } from '../src/diffusion/schedule.ts'
import { f32, view } from '../src/tensor/tensor.ts'

const close = (a: number, b: number, tol: number): boolean => Math.abs(a - b) <= tol
const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]))
  return m
}
const bits = (xs: Float32Array[]): number[][] => xs.map(x => Array.from(new Uint32Array(x.buffer, x.byteOffset, x.length)))

t.test('DDIM step on hand-computed numbers', async (tt) => {
  // From (α, σ) = (0.6, 0.8) to (0.8, 0.6); x_t = 2.2, x̂0 = 1 → ε̂ = (2.2 − 0.6)/0.8 = 2 → x_s = 0.8·1 + 0.6·2 = 2.
  const from = { alpha: 0.6, sigma: 0.8 }
  const to = { alpha: 0.8, sigma: 0.6 }
  const x = Float32Array.of(2.2, 0.5)
  const x0 = Float32Array.of(1, -0.5)
  // second element: ε̂ = (0.5 + 0.3)/0.8 = 1 → x_s = −0.4 + 0.6 = 0.2
  tt.ok(maxAbsDiff(ddimStep(x, x0, undefined, from, to), [2, 0.2]) < 1e-6, 'ε̂ derived from x̂0')
  tt.ok(maxAbsDiff(ddimStep(x, x0, Float32Array.of(2, 1), from, to), [2, 0.2]) < 1e-6, 'ε̂ given')
  tt.ok(maxAbsDiff(ddimStep(x, x0, undefined, from, { alpha: 1, sigma: 0 }), [1, -0.5]) === 0, 'to σ = 0 gives x̂0')
  tt.throws(() => ddimStep(x, Float32Array.of(1), undefined, from, to), { code: 'BAD_ARGUMENT' })
})

t.test('ancestral step: DDPM posterior q(x_s | x_t, x0) on hand-computed numbers', async (tt) => {
  // α_{t|s} = 0.6/0.8 = 0.75, σ²_{t|s} = 0.64 − 0.5625·0.36 = 0.4375.
  // mean = (0.75·0.36/0.64)·x_t + (0.8·0.4375/0.64)·x0 = 0.421875·x_t + 0.546875·x0;
  // var = 0.4375·0.36/0.64 = 0.24609375.
  const from = { alpha: 0.6, sigma: 0.8 }
  const to = { alpha: 0.8, sigma: 0.6 }
  const pc = posteriorCoefficients(from, to)
  tt.ok(close(pc.cx, 0.421875, 1e-15) && close(pc.c0, 0.546875, 1e-15) && close(pc.std, Math.sqrt(0.24609375), 1e-15), JSON.stringify(pc))
  const x = Float32Array.of(2.2, 2.2, -1)
  const x0 = Float32Array.of(1, 1, 0)
  const noise = Float32Array.of(0, 1, -2)
  const want = [0.421875 * 2.2 + 0.546875, 0.421875 * 2.2 + 0.546875 + Math.sqrt(0.24609375), -0.421875 - 2 * Math.sqrt(0.24609375)]
  tt.ok(maxAbsDiff(ancestralStep(x, x0, from, to, noise), want) < 1e-6, 'mean + std·noise')
  tt.same(Array.from(ancestralStep(x, x0, from, { alpha: 1, sigma: 0 }, noise)), [1, 1, 0], 'to σ = 0: x̂0, no noise')
  tt.throws(() => ancestralStep(x, x0, to, from, noise), { code: 'BAD_ARGUMENT' }, 'towards more noise')
  tt.throws(() => ancestralStep(x, x0, from, to, Float32Array.of(0)), { code: 'BAD_ARGUMENT' })
})

// ---------------------------------------------------------------------------
// Gaussian data known answer. Data x0 ~ N(μ, s²·I); then x_t | x0 ~ N(α x0, σ²)
// and the exact denoiser is E[x0 | x_t] = μ + k·(x_t − α μ), k = α s² / (α² s² + σ²).

const MU = 0.3
const S = 0.5
const SAMPLES = 8
const D = 8192 // 8 × 8192 = 65 536 independent coordinates

/** The exact denoiser as an ONNX graph: x [B, D], logsnr [B] → v, eps [B, D]. */
function gaussianDenoiser (): Uint8Array {
  const g = new GraphBuilder('gaussian_denoiser')
  const x = g.input('x', 'F32', ['B', 'D'])
  const l = g.input('logsnr', 'F32', ['B'])
  const mu = g.init('mu', Float32Array.of(MU), [])
  const s2 = g.init('s2', Float32Array.of(S * S), [])
  const one = g.init('one', Float32Array.of(1), [])
  const lam = g.op('Unsqueeze', [l, g.constI64([1])]) // [B, 1]
  // α² = sigmoid(λ), σ² = sigmoid(−λ), as 1/(1 + e^∓λ): ORT's Sigmoid kernel
  // returns 0 for sigmoid(−20) and is off by 2e-5 (relative) at −6.9, which
  // an ε-model cannot afford where α → 0 (x̂0 = (x − σε)/α).
  const a2 = g.op('Reciprocal', [g.op('Add', [one, g.op('Exp', [g.op('Neg', [lam])])])])
  const sg2 = g.op('Reciprocal', [g.op('Add', [one, g.op('Exp', [lam])])])
  const a = g.op('Sqrt', [a2])
  const sg = g.op('Sqrt', [sg2])
  const k = g.op('Div', [g.op('Mul', [a, s2]), g.op('Add', [g.op('Mul', [a2, s2]), sg2])])
  const x0 = g.op('Add', [mu, g.op('Mul', [k, g.op('Sub', [x, g.op('Mul', [a, mu])])])])
  g.op('Div', [g.op('Sub', [g.op('Mul', [a, x]), x0]), sg], {}, 'v') // v = (α x_t − x̂0)/σ
  g.op('Div', [g.op('Sub', [x, g.op('Mul', [a, x0])]), sg], {}, 'eps') // ε = (x_t − α x̂0)/σ
  g.output('v', 'F32', ['B', 'D'])
  g.output('eps', 'F32', ['B', 'D'])
  return encodeModel(g.model({ opset: 17 }))
}

function onnxPredict (model: Uint8Array, output: 'v' | 'eps'): SampleOptions['predict'] {
  return async (xs, lambda) => {
    const b = xs.length
    const d = xs[0].length
    const flat = new Float32Array(b * d)
    xs.forEach((x, i) => flat.set(x, i * d))
    const res = await runModel(model, { x: f32([b, d], flat), logsnr: f32([b], new Float32Array(b).fill(lambda)) }, [output])
    const y = view(res[output]) as Float32Array
    return xs.map((_, i) => y.slice(i * d, (i + 1) * d))
  }
}

/** The same denoiser in float64 JavaScript (fast, for high step counts). */
const jsPredict: SampleOptions['predict'] = async (xs, lambda) => {
  const { alpha, sigma } = noiseLevel(lambda)
  const k = alpha * S * S / (alpha * alpha * S * S + sigma * sigma)
  // v = (α x − x̂0)/σ = p·x + q with x̂0 = k·x + μ(1 − kα)
  const p = (alpha - k) / sigma
  const q = -MU * (1 - k * alpha) / sigma
  return xs.map(x => {
    const v = new Float32Array(x.length)
    for (let i = 0; i < x.length; i++) v[i] = p * x[i] + q
    return v
  })
}

/**
 * Exact law of the sampler's output for this data, after N steps: every step
 * is affine in x (plus independent noise for ancestral), so starting from
 * x_1 = σ_1·z, z ~ N(0, 1), the output is N(m_N, v_N) per coordinate with
 * m, v propagated through the steps. Derived here from the definitions, not
 * from sampler.ts: DDIM x_s = α_s x̂0 + (σ_s/σ_t)(x_t − α_t x̂0); ancestral
 * x_s = α_s[(1 − c)·x_t/α_t + c·x̂0] + √c·σ_s·n with c = 1 − e^(λ_t − λ_s).
 * For DDIM also the per-coordinate map x0 = A·z + B.
 */
function finiteStepLaw (steps: number, sampler: 'ddim' | 'ancestral'): { mean: number, std: number, A: number, B: number } {
  const lv = timeGrid(steps).map(time => noiseLevel(logsnr(time)))
  let A = lv[0].sigma // x = A z + B (+ noise of variance extra)
  let B = 0
  let extra = 0
  for (let i = 0; i < steps; i++) {
    const f = lv[i]
    const to = lv[i + 1]
    const k = f.alpha * S * S / (f.alpha ** 2 * S * S + f.sigma ** 2)
    // x̂0 = k·x + μ(1 − kα)
    const x0A = k * A
    const x0B = k * B + MU * (1 - k * f.alpha)
    const x0E = k * k * extra
    if (i === steps - 1) { A = x0A; B = x0B; extra = x0E; break }
    if (sampler === 'ddim') {
      const r = to.sigma / f.sigma
      A = (to.alpha - r * f.alpha) * x0A + r * A
      B = (to.alpha - r * f.alpha) * x0B + r * B
      extra = ((to.alpha - r * f.alpha) * k + r) ** 2 * extra
    } else {
      const c = -Math.expm1(f.logsnr - to.logsnr)
      const px = to.alpha * (1 - c) / f.alpha
      const p0 = to.alpha * c
      A = px * A + p0 * x0A
      B = px * B + p0 * x0B
      extra = (px + p0 * k) ** 2 * extra + c * to.sigma ** 2
    }
  }
  return { mean: B, std: Math.sqrt(A * A + extra), A, B }
}

function moments (xs: Float32Array[]): { mean: number, std: number, n: number } {
  let n = 0; let s1 = 0; let s2 = 0
  for (const x of xs) for (const v of x) { n++; s1 += v; s2 += v * v }
  const mean = s1 / n
  return { mean, std: Math.sqrt(s2 / n - mean * mean), n }
}

t.test('Gaussian data: sampling with the exact denoiser (ONNX graph) recovers N(μ, s²)', async (tt) => {
  const model = gaussianDenoiser()
  const steps = 50
  const n = SAMPLES * D
  // Statistical error of n independent coordinates: the sample mean has standard
  // error sd/√n, the sample std ≈ sd/√(2n). We allow 5 of them (two-sided
  // p ≈ 6e-7 per check), plus 2e-4 for float32 arithmetic in graph and sampler.
  const slack = 2e-4
  for (const [sampler, prediction] of [['ddim', 'v'], ['ancestral', 'v'], ['ddim', 'eps']] as const) {
    const xs = await sample({ shape: [D], samples: SAMPLES, steps, seed: 11, sampler, prediction, predict: onnxPredict(model, prediction) })
    const m = moments(xs)
    const law = finiteStepLaw(steps, sampler)
    const seMean = law.std / Math.sqrt(n)
    const seStd = law.std / Math.sqrt(2 * n)
    // (1) Against the exact law of the 50-step sampler (discretisation included).
    tt.ok(close(m.mean, law.mean, 5 * seMean + slack), `${sampler}/${prediction}: mean ${m.mean.toFixed(5)} vs 50-step law ${law.mean.toFixed(5)} (±${(5 * seMean + slack).toFixed(5)})`)
    tt.ok(close(m.std, law.std, 5 * seStd + slack), `${sampler}/${prediction}: std ${m.std.toFixed(5)} vs 50-step law ${law.std.toFixed(5)} (±${(5 * seStd + slack).toFixed(5)})`)
    // (2) Against the data: the same statistical tolerance plus the discretisation
    // bias of 50 steps (|law − data|: DDIM std −0.0152, ancestral std −0.0323, means < 1e-5).
    const biasMean = Math.abs(law.mean - MU)
    const biasStd = Math.abs(law.std - S)
    tt.ok(close(m.mean, MU, 5 * S / Math.sqrt(n) + biasMean + slack), `${sampler}/${prediction}: mean ${m.mean.toFixed(5)} vs μ = ${MU} (bias ${biasMean.toExponential(2)})`)
    tt.ok(close(m.std, S, 5 * S / Math.sqrt(2 * n) + biasStd + slack), `${sampler}/${prediction}: std ${m.std.toFixed(5)} vs s = ${S} (bias ${biasStd.toExponential(2)})`)
    if (sampler === 'ddim') {
      // DDIM is deterministic: each output coordinate is A·z + B of its own starting
      // noise z, up to float32 rounding: ~1e-6 for v. For ε the first step
      // amplifies the rounding of ε (≤ 2^-24·|x| ≈ 4e-7 for |x| ≤ 6) by σ/α = e^10
      // in x̂0 = (x − σε)/α (≤ 9e-3); the step to t = 0.98 scales it by
      // α_s − (σ_s/σ_t)·α_t ≈ 0.031 and the rest of the flow by ≈ s/1: ≲ 1.5e-4.
      const tol = prediction === 'v' ? 1e-5 : 2e-4
      let worst = 0
      xs.forEach((x, b) => { worst = Math.max(worst, maxAbsDiff(x, Float32Array.from(gaussian(11, initialNoiseStream(b), D), z => law.A * z + law.B))) })
      tt.ok(worst < tol, `${prediction}: every coordinate = A·z + B (A = ${law.A.toFixed(6)}, B = ${law.B.toFixed(6)}) within ${worst.toExponential(2)}`)
    }
  }
})

t.test('Gaussian data: the discretisation error shrinks with the step count (first order)', async (tt) => {
  const n = SAMPLES * D
  const seStd = S / Math.sqrt(2 * n)
  for (const sampler of ['ddim', 'ancestral'] as const) {
    const law50 = finiteStepLaw(50, sampler)
    const law1000 = finiteStepLaw(1000, sampler)
    // First order in 1/N: the 1000-step bias is ~1/20 of the 50-step one.
    const ratio = (law50.std - S) / (law1000.std - S)
    tt.ok(ratio > 15 && ratio < 25, `${sampler}: std bias ${(law50.std - S).toExponential(3)} at 50 steps, ${(law1000.std - S).toExponential(3)} at 1000 (ratio ${ratio.toFixed(1)})`)
    const xs = await sample({ shape: [D], samples: SAMPLES, steps: 1000, seed: 12, sampler, prediction: 'v', predict: jsPredict })
    const m = moments(xs)
    tt.ok(close(m.std, S, 5 * seStd + Math.abs(law1000.std - S) + 2e-4), `${sampler} 1000 steps: std ${m.std.toFixed(5)} vs s = ${S}`)
    tt.ok(close(m.mean, MU, 5 * S / Math.sqrt(n) + 2e-4), `${sampler} 1000 steps: mean ${m.mean.toFixed(5)} vs μ = ${MU}`)
    if (sampler === 'ddim') {
      // Same seed, same starting noise: the per-coordinate gap to 1000 steps is the
      // 50-step discretisation, |A_50 − A_1000|·|z| + |B_50 − B_1000|.
      const xs50 = await sample({ shape: [D], samples: SAMPLES, steps: 50, seed: 12, sampler, prediction: 'v', predict: jsPredict })
      let worst = 0
      let worstBound = 0
      xs.forEach((x, b) => {
        const z = gaussian(12, initialNoiseStream(b), D)
        for (let i = 0; i < D; i++) {
          worst = Math.max(worst, Math.abs(xs50[b][i] - x[i]))
          worstBound = Math.max(worstBound, Math.abs(law50.A - law1000.A) * Math.abs(z[i]) + Math.abs(law50.B - law1000.B))
        }
      })
      tt.ok(close(worst, worstBound, 2e-4), `ddim: max |x_50 − x_1000| = ${worst.toExponential(3)}, predicted ${worstBound.toExponential(3)}`)
    }
  }
})

t.test('seeds and streams', async (tt) => {
  const base = { shape: [4, 8], steps: 6, prediction: 'v' as const, predict: jsPredict }
  for (const sampler of ['ddim', 'ancestral'] as const) {
    const a = await sample({ ...base, samples: 3, seed: 5, sampler })
    const b = await sample({ ...base, samples: 3, seed: 5, sampler })
    tt.same(bits(a), bits(b), `${sampler}: same seed, same bits`)
    const c = await sample({ ...base, samples: 3, seed: 6, sampler })
    tt.notSame(bits(a), bits(c), `${sampler}: different seed, different samples`)
    tt.notSame(bits([a[0]]), bits([a[1]]), `${sampler}: samples differ from each other`)
    const two = await sample({ ...base, samples: 2, seed: 5, sampler })
    tt.same(bits(two), bits(a.slice(0, 2)), `${sampler}: sample b does not depend on how many are drawn`)
  }
  // The sampler's starting noise is stream init/b and ancestral noise ancestral/i/b.
  tt.equal(initialNoiseStream(3), 'init/3')
  tt.equal(ancestralNoiseStream(7, 3), 'ancestral/7/3')
  let seen: Float32Array[] = []
  await sample({ ...base, samples: 2, seed: 9, sampler: 'ddim', predict: async (xs, l, step) => { if (step === 0) seen = xs.map(x => x.slice()); return jsPredict(xs, l, step) } })
  const sigma1 = noiseLevel(logsnr(1)).sigma
  tt.ok(maxAbsDiff(seen[1], Float32Array.from(gaussian(9, 'init/1', 32), z => sigma1 * z)) === 0, 'x_1 = σ_1·z of stream init/1')
})

t.test('SDEdit start, thresholding, resume, abort, arguments', async (tt) => {
  // SDEdit: start at tStart with x = α·init + σ·z.
  const init = [Float32Array.from({ length: 16 }, (_, i) => i / 8 - 1)]
  let start: Float32Array | undefined
  let firstLogsnr = 0
  await sample({
    shape: [16], samples: 1, steps: 3, seed: 1, sampler: 'ddim', prediction: 'v', tStart: 0.3, init,
    predict: async (xs, l, step) => { if (step === 0) { start = xs[0].slice(); firstLogsnr = l } return jsPredict(xs, l, step) }
  })
  const lv = noiseLevel(logsnr(0.3))
  tt.equal(firstLogsnr, logsnr(0.3), 'first prediction at t = tStart')
  tt.ok(maxAbsDiff(start ?? [], Float32Array.from(gaussian(1, 'init/0', 16), (z, i) => lv.alpha * init[0][i] + lv.sigma * z)) === 0, 'x = α·init + σ·z')

  // Thresholding: a model whose x̂0 is 5 everywhere but one coordinate at 2.
  // p = 0.995 over 16 values: s = quantile = 5 → output 1 and 0.4; without: 5 and 2.
  const fiveModel: SampleOptions['predict'] = async (xs, l) => {
    const { alpha, sigma } = noiseLevel(l)
    return xs.map(x => Float32Array.from(x, (v, i) => (alpha * v - (i === 0 ? 2 : 5)) / sigma))
  }
  const opts = { shape: [16], samples: 1, steps: 4, seed: 1, sampler: 'ancestral' as const, prediction: 'v' as const, predict: fiveModel }
  const raw = await sample(opts)
  tt.ok(close(raw[0][0], 2, 1e-5) && close(raw[0][5], 5, 1e-5), `no thresholding: ${raw[0][0]}, ${raw[0][5]}`)
  const th = await sample({ ...opts, thresholding: true })
  tt.ok(close(th[0][0], 0.4, 1e-5) && close(th[0][5], 1, 1e-5), `thresholded: ${th[0][0]}, ${th[0][5]}`)

  // Resume from a state taken mid-run: the same bits as one uninterrupted run.
  for (const sampler of ['ddim', 'ancestral'] as const) {
    const base = { shape: [3, 5], samples: 2, steps: 8, seed: 77, sampler, prediction: 'v' as const, predict: jsPredict }
    let saved: SamplerState | undefined
    const calls: number[] = []
    const whole = await sample({ ...base, onStep: (step, total, state) => { calls.push(step); tt.equal(total, 8); if (step === 3) saved = { step: state.step, xs: state.xs.map(x => x.slice()) } } })
    tt.same(calls, [1, 2, 3, 4, 5, 6, 7, 8], 'onStep after every step')
    if (saved == null) throw new Error('no state')
    const resumed = await sample({ ...base, resume: saved })
    tt.same(bits(resumed), bits(whole), `${sampler}: resumed at step 3 gives the same bits`)
  }

  // Abort between steps.
  const ac = new AbortController()
  await tt.rejects(sample({ shape: [4], samples: 1, steps: 10, seed: 1, sampler: 'ddim', prediction: 'v', predict: jsPredict, signal: ac.signal, onStep: (s) => { if (s === 2) ac.abort() } }), { code: 'ABORTED' })

  // Arguments.
  const ok: SampleOptions = { shape: [4], samples: 1, steps: 2, seed: 1, sampler: 'ddim', prediction: 'v', predict: jsPredict }
  const badCases: Array<[string, Partial<SampleOptions>]> = [
    ['steps 0', { steps: 0 }], ['steps -3', { steps: -3 }], ['steps 1.5', { steps: 1.5 }], ['samples 0', { samples: 0 }],
    ['shape', { shape: [0, 2] }], ['sampler', { sampler: 'euler' as 'ddim' }], ['prediction', { prediction: 'x0' as 'v' }],
    ['tStart', { tStart: 0 }], ['thresholding', { thresholding: 99.5 }], ['init count', { init: [] }], ['seed', { seed: -1 }],
    ['predict output', { predict: async () => [new Float32Array(3)] }], ['resume', { resume: { step: 2, xs: [new Float32Array(4)] } }]
  ]
  for (const [name, patch] of badCases) {
    await tt.rejects(sample({ ...ok, ...patch }), { code: 'BAD_ARGUMENT' }, name)
  }
  const err = await sample({ ...ok, steps: 0 }).catch((e: unknown) => e)
  tt.ok(err instanceof LumiereError && /steps/.test(err.message), 'the message names the argument')
  tt.equal((await sample({ ...ok, steps: 1 })).length, 1, 'one step works (returns x̂0 at t = 1)')
})
