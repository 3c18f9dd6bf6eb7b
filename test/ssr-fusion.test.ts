import t from 'tap'
import { gaussian } from '../src/diffusion/rng.ts'
import { sample } from '../src/diffusion/sampler.ts'
import type { SampleOptions } from '../src/diffusion/sampler.ts'
import { noiseLevel } from '../src/diffusion/schedule.ts'
import { frameWeights, fuse, fusedPredict, sliceWindow } from '../src/ssr/multidiffusion.ts'
import type { WindowWeighting } from '../src/ssr/multidiffusion.ts'
import { planWindows } from '../src/ssr/windows.ts'
import type { FrameWindow } from '../src/ssr/windows.ts'

const KINDS: WindowWeighting[] = ['uniform', 'tapered']
const PLANS: Array<[number, number, number]> = [[16, 8, 4], [16, 8, 8], [18, 8, 4], [8, 8, 4], [13, 5, 2], [12, 6, 1], [20, 7, 3]]
const bits = (x: Float32Array): number[] => Array.from(new Uint32Array(x.buffer, x.byteOffset, x.length))
const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]))
  return m
}

t.test('tapered weights: linear cross-fades that sum to one per frame', async (tt) => {
  const { windows } = planWindows(16, 8, 4)
  const w = frameWeights(windows, 16, 'tapered')
  const f = (xs: number[]): Float32Array => Float32Array.from(xs)
  tt.same(Array.from(w[0]), Array.from(f([1, 1, 1, 1, 4 / 5, 3 / 5, 2 / 5, 1 / 5])), 'first window: flat, then ramps out across the overlap')
  tt.same(Array.from(w[1]), Array.from(f([1 / 5, 2 / 5, 3 / 5, 4 / 5, 4 / 5, 3 / 5, 2 / 5, 1 / 5])), 'middle window: ramps in and out')
  tt.same(Array.from(w[2]), Array.from(f([1 / 5, 2 / 5, 3 / 5, 4 / 5, 1, 1, 1, 1])), 'last window: ramps in, then flat')
  const u = frameWeights(windows, 16, 'uniform')
  tt.same(Array.from(u[1]), [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5], 'uniform: 1/(windows containing the frame)')
  tt.same(Array.from(u[0]), [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5])

  for (const kind of KINDS) {
    for (let T = 1; T <= 24; T++) {
      for (let L = 1; L <= T; L++) {
        for (let S = 1; S <= L; S++) {
          const plan = planWindows(T, L, S)
          const ws = frameWeights(plan.windows, T, kind)
          const sum = new Float64Array(T)
          plan.windows.forEach((win, i) => { for (let k = 0; k < L; k++) sum[win.start + k] += ws[i][k] })
          for (let t0 = 0; t0 < T; t0++) {
            if (Math.abs(sum[t0] - 1) > 4e-7) tt.fail(`${kind} T=${T} L=${L} S=${S}: frame ${t0} sums to ${sum[t0]}`)
          }
          if (!ws.every(a => a.every(x => x > 0))) tt.fail(`${kind} T=${T} L=${L} S=${S}: a weight is not positive`)
        }
      }
    }
    tt.pass(`${kind}: sums to one on every frame of every plan with T ≤ 24`)
  }
  // T=18 tail: three windows over frames 10, 11 — normalised all the same
  const tail = planWindows(18, 8, 4).windows
  const wt = frameWeights(tail, 18, 'tapered')
  tt.ok(Math.abs(wt[1][6] + wt[2][2] + wt[3][0] - 1) < 1e-6, 'frame 10: three windows sum to one')
  tt.throws(() => frameWeights(tail, 18, 'gaussian' as WindowWeighting), { code: 'BAD_ARGUMENT' })
})

t.test('sliceWindow copies [C, L, H, W] out of [C, T, H, W]', async (tt) => {
  // C=2, T=3, HW=2: value = 100c + 10t + p
  const clip = Float32Array.from([0, 1, 10, 11, 20, 21, 100, 101, 110, 111, 120, 121])
  const s = sliceWindow(clip, [2, 3, 1, 2], { start: 1, end: 3 })
  tt.same(Array.from(s), [10, 11, 20, 21, 110, 111, 120, 121])
  s[0] = -1
  tt.equal(clip[2], 10, 'a copy, not a view')
  const out = new Float32Array(4)
  tt.equal(sliceWindow(clip, [2, 3, 2, 1], { start: 0, end: 1 }, out), out)
  tt.same(Array.from(out), [0, 1, 100, 101])
  tt.throws(() => sliceWindow(clip, [2, 3, 1, 2], { start: 2, end: 4 }), { code: 'BAD_ARGUMENT' })
  tt.throws(() => sliceWindow(clip, [2, 4, 1, 2], { start: 0, end: 2 }), { code: 'BAD_ARGUMENT', message: /holds 12 values/ })
  tt.throws(() => sliceWindow(clip, [2, 3, 2], { start: 0, end: 2 }), { code: 'BAD_ARGUMENT', message: /\[C, T, H, W\]/ })
  tt.throws(() => sliceWindow(clip, [2, 3, 1, 2], { start: 0, end: 2 }, new Float32Array(3)), { code: 'BAD_ARGUMENT' })
})

t.test('fuse: per-frame weighted average on hand-made values', async (tt) => {
  // T=3, L=2, S=1: windows [0,2), [1,3); C=1, HW=1
  const windows: FrameWindow[] = [{ start: 0, end: 2 }, { start: 1, end: 3 }]
  const preds = [Float32Array.of(1, 2), Float32Array.of(4, 5)]
  tt.same(Array.from(fuse(preds, windows, 3, 1, 1, 'uniform')), [1, 3, 5], 'frame 1 = (2 + 4)/2')
  // tapered with overlap 1: both weights 1/2 at the shared frame
  tt.same(Array.from(fuse(preds, windows, 3, 1, 1, 'tapered')), [1, 3, 5])
  // explicit, unnormalised weights: frame 1 = (1·2 + 3·4)/4
  tt.same(Array.from(fuse(preds, windows, 3, 1, 1, [Float32Array.of(1, 1), Float32Array.of(3, 1)])), [1, 3.5, 5])
  // two channels, two pixels
  const p2 = [Float32Array.of(0, 0, 2, 2, 10, 10, 20, 20), Float32Array.of(4, 6, 9, 9, 30, 40, 50, 50)]
  tt.same(Array.from(fuse(p2, windows, 3, 2, 2, 'uniform')), [0, 0, 3, 4, 9, 9, 10, 10, 25, 30, 50, 50])
  const out = new Float32Array(3)
  tt.equal(fuse(preds, windows, 3, 1, 1, 'uniform', out), out, 'writes into out')
  tt.throws(() => fuse([preds[0]], windows, 3, 1, 1), { code: 'BAD_ARGUMENT', message: /one prediction per window/ })
  tt.throws(() => fuse([preds[0], Float32Array.of(1)], windows, 3, 1, 1), { code: 'BAD_ARGUMENT', message: /window 1/ })
  tt.throws(() => fuse(preds, windows, 3, 1, 1, [Float32Array.of(1, 0), Float32Array.of(0, 1)]), { code: 'BAD_ARGUMENT', message: /frame 1 has total weight 0/ })
  tt.throws(() => fuse(preds, windows, 3, 1, 1, [Float32Array.of(1, -1), Float32Array.of(1, 1)]), { code: 'BAD_ARGUMENT' })
  tt.throws(() => fuse(preds, [{ start: 0, end: 2 }, { start: 2, end: 3 }], 4, 1, 1), { code: 'BAD_ARGUMENT', message: /frame 3 is in no window/ })
})

t.test('fuse: windows that agree on overlaps give back the same values, bit for bit', async (tt) => {
  const C = 3
  const HW = 6 // H = 2, W = 3
  for (const [T, L, S] of PLANS) {
    const g = gaussian(1, `test/ssr-agree/${T}/${L}/${S}`, C * T * HW)
    const { windows } = planWindows(T, L, S)
    const preds = windows.map(w => sliceWindow(g, [C, T, 2, 3], w))
    for (const kind of KINDS) tt.same(bits(fuse(preds, windows, T, HW, C, kind)), bits(g), `T=${T} L=${L} S=${S} ${kind}`)
    // arbitrary positive weights too
    const rw = windows.map((w, i) => Float32Array.from({ length: L }, (_, k) => 0.1 + ((i * 7 + k * 3) % 5)))
    tt.same(bits(fuse(preds, windows, T, HW, C, rw)), bits(g), `T=${T} L=${L} S=${S} arbitrary weights`)
  }
})

/** A deterministic, nonlinear stand-in model: v̂ depends on x and the level. */
const toyV = (x: Float32Array, logsnr: number): Float32Array => {
  const o = new Float32Array(x.length)
  for (let i = 0; i < x.length; i++) o[i] = 0.5 * Math.tanh(x[i]) + 0.01 * logsnr + 0.001 * (i % 7)
  return o
}

t.test('one window covering the whole clip equals plain sampling', async (tt) => {
  const shape = [3, 8, 4, 4]
  const T = shape[1]
  const base = { shape, samples: 2, steps: 6, seed: 11, prediction: 'v' } as const
  for (const sampler of ['ddim', 'ancestral'] as const) {
    const plain = await sample({ ...base, sampler, predict: async (xs, l) => xs.map(x => toyV(x, l)) })
    for (const kind of KINDS) {
      const { windows } = planWindows(T, T, 4)
      tt.equal(windows.length, 1)
      const fused = await sample({ ...base, sampler, predict: fusedPredict({ shape, windows, weights: kind, predictWindow: (xw, ctx) => toyV(xw, ctx.logsnr) }) })
      tt.same(fused.map(bits), plain.map(bits), `${sampler}, ${kind}: identical bits`)
    }
  }
})

t.test('a model whose x̂0 is a known constant gives that constant after fusion', async (tt) => {
  const C = 3
  const H = 2
  const W = 3
  const HW = H * W
  for (const [T, L, S] of PLANS) {
    const shape = [C, T, H, W]
    // the "constant": a fixed clip c (a different value per element), plus a scalar case
    const fields = [gaussian(5, `test/ssr-const/${T}`, C * T * HW), new Float32Array(C * T * HW).fill(0.375)]
    const { windows } = planWindows(T, L, S)
    for (const c of fields) {
      for (const kind of KINDS) {
        for (const sampler of ['ddim', 'ancestral'] as const) {
          const seen = new Set<number>()
          const options: SampleOptions = {
            shape,
            samples: 2,
            steps: 5,
            seed: 3,
            sampler,
            prediction: 'v',
            predict: fusedPredict({
              shape,
              windows,
              weights: kind,
              // v = (α·x − c)/σ on the window's frames, so that x̂0 = α·x − σ·v = c
              predictWindow: (xw, ctx) => {
                seen.add(ctx.index)
                const { alpha, sigma } = noiseLevel(ctx.logsnr)
                const cw = sliceWindow(c, shape, ctx.window)
                const v = new Float32Array(xw.length)
                for (let i = 0; i < v.length; i++) v[i] = (alpha * xw[i] - cw[i]) / sigma
                return v
              }
            })
          }
          const out = await sample(options)
          const err = Math.max(...out.map(x => maxAbsDiff(x, c)))
          // x̂0 = α·x − σ·fl32(v): the float32 rounding of v costs σ·|v|·2^-24 ≤ (|x| + |c|)·2^-24
          if (!(err <= 2e-6)) tt.fail(`T=${T} L=${L} S=${S} ${kind} ${sampler}: max |x − c| = ${err}`)
          if (seen.size !== windows.length) tt.fail('not every window was asked')
        }
      }
    }
    tt.pass(`T=${T} L=${L} S=${S}: both weightings, DDIM and ancestral, final clip = c to float32 rounding`)
  }
})

t.test('fusing v̂ equals fusing x̂0 (same α, σ, x_t for every window)', async (tt) => {
  const C = 2
  const T = 18
  const HW = 5
  const { windows } = planWindows(T, 8, 4)
  const x = gaussian(2, 'test/ssr-vx/x', C * T * HW)
  const lvl = noiseLevel(0.7)
  // windows that disagree: v̂_i = v_true + per-window offsets
  const vs = windows.map((w, i) => {
    const xw = sliceWindow(x, [C, T, 1, HW], w)
    const off = gaussian(2, `test/ssr-vx/off/${i}`, xw.length)
    return Float32Array.from(xw, (xi, j) => 0.3 * xi + off[j])
  })
  for (const kind of KINDS) {
    const vf = fuse(vs, windows, T, HW, C, kind)
    const x0fromFusedV = Float64Array.from(x, (xi, j) => lvl.alpha * xi - lvl.sigma * vf[j])
    const x0s = windows.map((w, i) => {
      const xw = sliceWindow(x, [C, T, 1, HW], w)
      return Float32Array.from(xw, (xi, j) => lvl.alpha * xi - lvl.sigma * vs[i][j])
    })
    const fusedX0 = fuse(x0s, windows, T, HW, C, kind)
    tt.ok(maxAbsDiff(x0fromFusedV, fusedX0) < 1e-5, `${kind}: ${maxAbsDiff(x0fromFusedV, fusedX0)}`)
  }
})

t.test('fusedPredict: checks its arguments and hands the model its window', async (tt) => {
  tt.throws(() => fusedPredict({ shape: [3, 8, 2], windows: [{ start: 0, end: 8 }], predictWindow: x => x }), { code: 'BAD_ARGUMENT' })
  tt.throws(() => fusedPredict({ shape: [3, 8, 2, 2], windows: [{ start: 0, end: 4 }], predictWindow: x => x }), { code: 'BAD_ARGUMENT', message: /frame 4 is in no window/ })
  const shape = [1, 6, 1, 1]
  const windows = planWindows(6, 4, 2).windows
  const calls: string[] = []
  const predict = fusedPredict({
    shape,
    windows,
    weights: 'uniform',
    predictWindow: async (xw, ctx) => {
      calls.push(`${ctx.sample}:${ctx.index}:${ctx.window.start}-${ctx.window.end}:${ctx.step}`)
      return Float32Array.from(xw, v => v + ctx.index)
    }
  })
  const [out] = await predict([Float32Array.of(0, 1, 2, 3, 4, 5)], 1.5, 2)
  tt.same(calls, ['0:0:0-4:2', '0:1:2-6:2'])
  tt.same(Array.from(out), [0, 1, 2.5, 3.5, 5, 6], 'overlap frames average the windows\' outputs')
})
