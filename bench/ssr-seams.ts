/**
 * SSR seam benchmark: how visible are the window boundaries of the temporal
 * windowing in the SSR stage, with MultiDiffusion fusion of overlapping
 * windows versus naive non-overlapping windows concatenated?
 *
 * A smooth moving test clip is the "truth". The per-window model predicts
 * x̂0 = truth + a random offset field that depends on the window (drawn from
 * rng.ts per window, constant over its frames and over the steps), so
 * independent windows disagree the way real SSR windows do, and answers in
 * v-prediction: v = (α·x_t − x̂0)/σ. The full `sample()` driver runs every
 * plan from the same seed (same starting noise, drawn once for the clip):
 *
 *   (a) MultiDiffusion, L=8, S=4, tapered weights (and uniform weights)
 *   (b) naive windows, L=8, S=8 (each frame in exactly one window, so fusion
 *       is plain concatenation, bit for bit)
 *
 * Figure: seam ratio = mean |x[t+1] − x[t]| over frame pairs at window
 * boundaries (pairs where the set of windows covering the frame changes)
 * divided by the same mean over the other pairs (inside windows). 1 means no
 * visible seam; the truth alone gives ~1.
 *
 *   node bench/ssr-seams.ts [--frames 32] [--size 16] [--steps 20] [--offset 0.1] [--seed 1] [--json]
 *
 * The model is pluggable: `seamReport(...)` takes any `WindowPredict`
 * (src/ssr/multidiffusion.ts), e.g. a real SSR model behind the mesh.
 */
import { gaussian } from '../src/diffusion/rng.ts'
import { sample } from '../src/diffusion/sampler.ts'
import { noiseLevel } from '../src/diffusion/schedule.ts'
import { fusedPredict, sliceWindow } from '../src/ssr/multidiffusion.ts'
import type { WindowPredict, WindowWeighting } from '../src/ssr/multidiffusion.ts'
import { planWindows } from '../src/ssr/windows.ts'
import type { FrameWindow } from '../src/ssr/windows.ts'
import { benchArgs, numberFlag } from './args.ts'

/** A smooth moving pattern [C, T, H, W] in about [−0.5, 0.5]. */
export function testClip (channels: number, frames: number, size: number): Float32Array {
  const x = new Float32Array(channels * frames * size * size)
  let i = 0
  for (let c = 0; c < channels; c++) {
    for (let t = 0; t < frames; t++) {
      for (let y = 0; y < size; y++) {
        for (let xx = 0; xx < size; xx++) {
          x[i++] = 0.5 * Math.sin(2 * Math.PI * (1.5 * xx / size - 0.03 * t) + c) * Math.cos(2 * Math.PI * (y / size + 0.01 * t))
        }
      }
    }
  }
  return x
}

/**
 * The stand-in SSR model: per window, x̂0 = truth + offset_w (a per-window
 * [C, H, W] Gaussian field × `amplitude` from rng.ts stream
 * `bench/ssr-seams/offset/<start>-<end>`, the same on all its frames and
 * steps), returned as v = (α·x_t − x̂0)/σ.
 */
export function offsetModel (truth: Float32Array, shape: readonly number[], amplitude: number, seed: number): WindowPredict {
  const [C, , H, W] = shape
  const HW = H * W
  return (xw, ctx) => {
    const { window } = ctx
    const L = window.end - window.start
    const x0 = sliceWindow(truth, shape, window)
    const off = gaussian(seed, `bench/ssr-seams/offset/${window.start}-${window.end}`, C * HW)
    const { alpha, sigma } = noiseLevel(ctx.logsnr)
    const v = new Float32Array(xw.length)
    for (let c = 0; c < C; c++) {
      for (let k = 0; k < L; k++) {
        for (let p = 0; p < HW; p++) {
          const i = (c * L + k) * HW + p
          v[i] = (alpha * xw[i] - (x0[i] + amplitude * off[c * HW + p])) / sigma
        }
      }
    }
    return v
  }
}

/** Frame pairs (t, t+1) whose covering window sets differ: the seams. */
export function boundaryPairs (windows: readonly FrameWindow[], frames: number): boolean[] {
  const key = (t: number): string => windows.map(w => (t >= w.start && t < w.end ? '1' : '0')).join('')
  return Array.from({ length: frames - 1 }, (_, t) => key(t) !== key(t + 1))
}

export interface SeamFigures {
  /** mean |x[t+1] − x[t]| over boundary pairs */
  boundary: number
  /** mean |x[t+1] − x[t]| over the other pairs */
  interior: number
  /** boundary / interior */
  ratio: number
  /** the largest per-pair mean |x[t+1] − x[t]| (the worst single jump) */
  worstPair: number
}

/** Seam figures of a clip [C, T, H, W] for the given boundary pairs. */
export function seamFigures (x: Float32Array, shape: readonly number[], boundary: readonly boolean[]): SeamFigures {
  const [C, T, H, W] = shape
  const HW = H * W
  let bs = 0; let bn = 0; let is = 0; let inn = 0
  const pair = new Float64Array(T - 1)
  for (let c = 0; c < C; c++) {
    for (let t = 0; t + 1 < T; t++) {
      const a = (c * T + t) * HW
      let s = 0
      for (let p = 0; p < HW; p++) s += Math.abs(x[a + HW + p] - x[a + p])
      pair[t] += s / (C * HW)
      if (boundary[t]) { bs += s; bn += HW } else { is += s; inn += HW }
    }
  }
  const b = bn > 0 ? bs / bn : NaN
  const i = inn > 0 ? is / inn : NaN
  return { boundary: b, interior: i, ratio: b / i, worstPair: Math.max(...pair) }
}

export interface PlanReport extends SeamFigures {
  name: string
  length: number
  stride: number
  weights: WindowWeighting
  windows: number
  redundancy: number
  /** mean |x − truth| of the sampled clip */
  meanAbsError: number
  /** seam ratio of the truth itself with this plan's boundaries */
  truthRatio: number
  seconds: number
}

/** Samples the clip with one window plan and measures its seams. */
export async function seamReport (name: string, shape: number[], length: number, stride: number, weights: WindowWeighting, predictWindow: WindowPredict, truth: Float32Array, steps: number, seed: number): Promise<PlanReport> {
  const T = shape[1]
  const plan = planWindows(T, length, stride)
  const t0 = performance.now()
  const [x] = await sample({ shape, samples: 1, steps, seed, sampler: 'ddim', prediction: 'v', predict: fusedPredict({ shape, windows: plan.windows, weights, predictWindow }) })
  const seconds = (performance.now() - t0) / 1000
  const boundary = boundaryPairs(plan.windows, T)
  let err = 0
  for (let i = 0; i < x.length; i++) err += Math.abs(x[i] - truth[i])
  return {
    name,
    length,
    stride,
    weights,
    windows: plan.windows.length,
    redundancy: plan.redundancy,
    ...seamFigures(x, shape, boundary),
    meanAbsError: err / x.length,
    truthRatio: seamFigures(truth, shape, boundary).ratio,
    seconds
  }
}

const usage = 'node bench/ssr-seams.ts [--frames 32] [--size 16] [--steps 20] [--offset 0.1] [--seed 1] [--json]'
const values = benchArgs({
  frames: { type: 'string', default: '32' },
  size: { type: 'string', default: '16' },
  steps: { type: 'string', default: '20' },
  offset: { type: 'string', default: '0.1' },
  seed: { type: 'string', default: '1' },
  json: { type: 'boolean', default: false }
}, usage)
// Eight-frame windows on a stride of four (the plans below).
const frames = numberFlag(values, 'frames', usage, { min: 8 })
const size = numberFlag(values, 'size', usage)
const steps = numberFlag(values, 'steps', usage)
const amplitude = numberFlag(values, 'offset', usage, { min: 0, real: true })
const seed = numberFlag(values, 'seed', usage, { min: 0 })
const shape = [3, frames, size, size]
const truth = testClip(3, frames, size)
const model = offsetModel(truth, shape, amplitude, seed)

const rows: PlanReport[] = [
  await seamReport('multidiffusion-tapered', shape, 8, 4, 'tapered', model, truth, steps, seed),
  await seamReport('multidiffusion-uniform', shape, 8, 4, 'uniform', model, truth, steps, seed),
  await seamReport('naive-concatenated', shape, 8, 8, 'uniform', model, truth, steps, seed)
]
const naive = rows[2]
const tapered = rows[0]
const overlapWins = rows[0].ratio < naive.ratio && rows[1].ratio < naive.ratio

if (values.json === true) {
  console.log(JSON.stringify({ shape, steps, offsetAmplitude: amplitude, seed, rows, overlapLowerRatio: overlapWins }))
} else {
  console.log(`clip [${shape.join(', ')}], ${steps} DDIM steps, per-window offset amplitude ${amplitude}, seed ${seed}`)
  for (const r of rows) {
    console.log(`${r.name.padEnd(24)} L=${r.length} S=${r.stride} ${String(r.windows).padStart(2)} windows (redundancy ${r.redundancy.toFixed(2)}): ` +
      `|Δt| boundary ${r.boundary.toFixed(4)} / inside ${r.interior.toFixed(4)} = seam ratio ${r.ratio.toFixed(3)} ` +
      `(truth ${r.truthRatio.toFixed(3)}), worst pair ${r.worstPair.toFixed(4)}, mean |x − truth| ${r.meanAbsError.toFixed(4)}, ${r.seconds.toFixed(2)} s`)
  }
  console.log(`overlapping fusion ${overlapWins ? 'has the lower seam ratio' : 'does NOT have the lower seam ratio'}: tapered ${tapered.ratio.toFixed(3)} vs naive ${naive.ratio.toFixed(3)}`)
}
if (!overlapWins) process.exitCode = 1
