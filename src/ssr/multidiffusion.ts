/**
 * MultiDiffusion fusion of per-window predictions (Bar-Tal et al. 2023;
 * DESIGN.md §1 "MultiDiffusion", §2 "SSR over the mesh").
 *
 * Clips are [C, T, H, W] row-major float32 (frames contiguous per channel:
 * element (c, t, p) at c·T·HW + t·HW + p, HW = H·W = `frameSize`); a window
 * [start, end) of L = end − start frames is the [C, L, H, W] block of those
 * frames.
 *
 * At every denoising step each window i predicts Φ_i for its frames. The
 * MultiDiffusion update is the least-squares solution
 *
 *   argmin_J  Σ_i ‖ W_i ⊙ (F_i(J) − Φ_i) ‖²
 *
 * where F_i crops window i and W_i are its per-frame weights. Setting the
 * gradient to zero gives, for every frame t (and every c, p),
 *
 *   J[t] = Σ_{i ∋ t} w_i[t]·Φ_i[t] / Σ_{i ∋ t} w_i[t]
 *
 * (w = W², a per-frame weighted average of the windows containing t), which
 * is what `fuse` computes.
 *
 * Fusing v̂ equals fusing x̂0 (or ε̂). For one sample the sampler's x_t is
 * shared by all windows, and every window sees the same noise level, so
 * x̂0_i = α·x_t − σ·v̂_i on frame t with the SAME α, σ and x_t[t] for every
 * window i. The weighted average of an affine map with window-independent
 * coefficients is the affine map of the weighted average (the weights sum
 * to one after division):
 *   Σ w_i (α·x − σ·v̂_i) / Σ w_i = α·x − σ·(Σ w_i v̂_i / Σ w_i).
 * Likewise for ε̂ (x̂0 = (x − σ·ε̂)/α). So the sampler may fuse the raw model
 * outputs (v̂) into one clip-sized output and take ONE global step with the
 * usual `sample()` driver: x̂0, dynamic thresholding (which is not affine,
 * so it must come after fusion, on the whole clip's x̂0 — which is where the
 * sampler applies it) and any ancestral noise are computed once for the
 * whole clip; the noise is drawn once per clip by the sampler from its own
 * streams, never per window. `fusedPredict` below packages exactly that as
 * a `predict` callback for `sample()`.
 *
 * Window weights: 'uniform' gives every window weight 1 on each of its
 * frames (a plain average where windows overlap). 'tapered' cross-fades
 * linearly across each overlap, so a window's influence fades out towards
 * its edges and seams do not show as steps. `frameWeights` returns weights
 * already normalised per frame (see there); `fuse` divides by their sum all
 * the same, so any positive weights may be passed.
 */
import { LumiereError } from '../errors.ts'
import { checkWindow, checkWindows } from './windows.ts'
import type { FrameWindow } from './windows.ts'

export type WindowWeighting = 'uniform' | 'tapered'

function bad (message: string): LumiereError {
  return new LumiereError('BAD_ARGUMENT', message)
}

/** [C, T, H·W] of a clip shape [C, T, H, W]. */
function clipDims (shape: readonly number[], what: string): [number, number, number] {
  if (!Array.isArray(shape) || shape.length !== 4 || !shape.every(d => Number.isSafeInteger(d) && d > 0)) throw bad(`${what}: shape must be [C, T, H, W] of positive integers, got [${String(shape)}]`)
  return [shape[0], shape[1], shape[2] * shape[3]]
}

function checkDims (frames: number, frameSize: number, channels: number, what: string): void {
  if (!Number.isSafeInteger(frames) || frames < 1) throw bad(`${what}: frames must be a whole number ≥ 1, got ${frames}`)
  if (!Number.isSafeInteger(frameSize) || frameSize < 1) throw bad(`${what}: frameSize (H·W) must be a whole number ≥ 1, got ${frameSize}`)
  if (!Number.isSafeInteger(channels) || channels < 1) throw bad(`${what}: channels must be a whole number ≥ 1, got ${channels}`)
}

/**
 * Per-window, per-frame-in-window fusion weights, normalised so that for
 * every frame t of the clip the weights of the windows containing t sum to
 * one (to float32 rounding).
 *
 * 'uniform': raw weight 1; normalised, 1/(number of windows containing t).
 *
 * 'tapered': window i = [s, e) of length L, frame k = t − s ∈ [0, L). Let
 * O_in be its largest overlap with a window starting before it
 * (max over j with s_j < s of min(e_j, e) − s, else 0) and O_out its
 * largest overlap with a window ending after it (max over j with e_j > e
 * of e − max(s_j, s), else 0). The raw weight is the trapezoid
 *
 *   r_i(k) = min(1, ramp_in(k), ramp_out(k)),
 *   ramp_in(k)  = (k + 1)/(O_in + 1)   (1 when O_in = 0: the clip's first frame)
 *   ramp_out(k) = (L − k)/(O_out + 1)  (1 when O_out = 0: the clip's last frame)
 *
 * On an overlap of O frames shared by exactly two windows A (ending) and B
 * (starting at s_B), frame s_B + m (m = 0..O−1) gets B: (m+1)/(O+1) and
 * A: (O−m)/(O+1), which already sum to one: a linear cross-fade that never
 * reaches 0 (every window keeps a say on each of its frames). Where more
 * than two windows overlap (stride < L/2, or the end-aligned tail) the raw
 * weights are divided by their per-frame sum, so the returned weights sum to
 * one at every frame in all cases.
 */
export function frameWeights (windows: readonly FrameWindow[], frames: number, kind: WindowWeighting = 'tapered'): Float32Array[] {
  checkWindows(windows, frames, 'frameWeights')
  if (kind !== 'uniform' && kind !== 'tapered') throw bad(`frameWeights: weighting must be 'uniform' or 'tapered', got '${String(kind)}'`)
  const raw: Float64Array[] = windows.map((w, i) => {
    const len = w.end - w.start
    const r = new Float64Array(len)
    if (kind === 'uniform') return r.fill(1)
    let oin = 0
    let oout = 0
    for (const [j, v] of windows.entries()) {
      if (j === i) continue
      if (v.start < w.start && v.end > w.start) oin = Math.max(oin, Math.min(v.end, w.end) - w.start)
      if (v.end > w.end && v.start < w.end) oout = Math.max(oout, w.end - Math.max(v.start, w.start))
    }
    for (let k = 0; k < len; k++) {
      const rin = oin > 0 ? (k + 1) / (oin + 1) : 1
      const rout = oout > 0 ? (len - k) / (oout + 1) : 1
      r[k] = Math.min(1, rin, rout)
    }
    return r
  })
  const sum = new Float64Array(frames)
  windows.forEach((w, i) => { for (let t = w.start; t < w.end; t++) sum[t] += raw[i][t - w.start] })
  return windows.map((w, i) => {
    const out = new Float32Array(w.end - w.start)
    for (let t = w.start; t < w.end; t++) out[t - w.start] = raw[i][t - w.start] / sum[t]
    return out
  })
}

/**
 * Copies window [start, end) out of a clip of shape [C, T, H, W] into a new
 * [C, L, H, W] buffer (or into `out`, of C·L·H·W values).
 */
export function sliceWindow (clip: Float32Array, shape: readonly number[], window: FrameWindow, out?: Float32Array): Float32Array {
  const [channels, frames, frameSize] = clipDims(shape, 'sliceWindow')
  if (clip.length !== channels * frames * frameSize) throw bad(`sliceWindow: the clip holds ${clip.length} values, [${shape.join(', ')}] needs ${channels * frames * frameSize}`)
  checkWindow(window, frames, 'sliceWindow')
  const len = window.end - window.start
  const size = channels * len * frameSize
  const o = out ?? new Float32Array(size)
  if (o.length !== size) throw bad(`sliceWindow: out holds ${o.length} values, the window needs ${size}`)
  const plane = frames * frameSize
  const wplane = len * frameSize
  for (let c = 0; c < channels; c++) {
    const from = c * plane + window.start * frameSize
    o.set(clip.subarray(from, from + wplane), c * wplane)
  }
  return o
}

/**
 * MultiDiffusion fusion: the [C, T, H, W] clip whose every frame is the
 * weighted average of the predictions ([C, L_i, H, W] each) of the windows
 * containing it, Σ w_i[t]·Φ_i[t] / Σ w_i[t] (the least-squares solution,
 * see the top of this file). `weights` defaults to 'tapered'; it may be
 * 'uniform', 'tapered', or per-window per-frame weights (positive, as from
 * `frameWeights`; normalisation is not required). Sums are taken in float64
 * and rounded once, so windows that agree on a frame give exactly their
 * common value there, and one window covering the whole clip returns its
 * prediction bit for bit. Writes into `out` (C·T·HW values) when given.
 */
export function fuse (
  predictions: readonly Float32Array[],
  windows: readonly FrameWindow[],
  frames: number,
  frameSize: number,
  channels: number,
  weights: WindowWeighting | readonly Float32Array[] = 'tapered',
  out?: Float32Array
): Float32Array {
  checkDims(frames, frameSize, channels, 'fuse')
  checkWindows(windows, frames, 'fuse')
  if (!Array.isArray(predictions) || predictions.length !== windows.length) throw bad(`fuse: need one prediction per window (${windows.length}), got ${Array.isArray(predictions) ? predictions.length : typeof predictions}`)
  const wts = typeof weights === 'string' ? frameWeights(windows, frames, weights) : weights
  if (!Array.isArray(wts) || wts.length !== windows.length) throw bad(`fuse: need one weight array per window (${windows.length})`)
  const den = new Float64Array(frames)
  windows.forEach((w, i) => {
    const len = w.end - w.start
    const p = predictions[i]
    if (!(p instanceof Float32Array) || p.length !== channels * len * frameSize) {
      throw bad(`fuse: the prediction of window ${i} [${w.start}, ${w.end}) must be a Float32Array of ${channels}·${len}·${frameSize} = ${channels * len * frameSize} values, got ${p instanceof Float32Array ? p.length : typeof p}`)
    }
    const wi = wts[i]
    if (wi == null || wi.length !== len) throw bad(`fuse: the weights of window ${i} must hold ${len} values (one per frame), got ${wi?.length}`)
    for (let k = 0; k < len; k++) {
      if (!(wi[k] >= 0 && Number.isFinite(wi[k]))) throw bad(`fuse: weight ${wi[k]} of window ${i}, frame ${k} must be finite and ≥ 0`)
      den[w.start + k] += wi[k]
    }
  })
  const zero = den.indexOf(0)
  if (zero >= 0) throw bad(`fuse: frame ${zero} has total weight 0: give each frame a positive weight in some window`)
  const size = channels * frames * frameSize
  const o = out ?? new Float32Array(size)
  if (o.length !== size) throw bad(`fuse: out holds ${o.length} values, the clip needs ${size}`)

  // Windows containing each frame, as (window index, weight) lists.
  const cover: Array<Array<[number, number]>> = Array.from({ length: frames }, () => [])
  windows.forEach((w, i) => { for (let t = w.start; t < w.end; t++) if (wts[i][t - w.start] > 0) cover[t].push([i, wts[i][t - w.start]]) })
  const acc = new Float64Array(frameSize)
  for (let c = 0; c < channels; c++) {
    for (let t = 0; t < frames; t++) {
      const dst = (c * frames + t) * frameSize
      const list = cover[t]
      if (list.length === 1) {
        // One window: w·Φ / w is Φ itself (skip the arithmetic, keep the bits).
        const [i] = list[0]
        const w = windows[i]
        const src = (c * (w.end - w.start) + (t - w.start)) * frameSize
        o.set(predictions[i].subarray(src, src + frameSize), dst)
        continue
      }
      acc.fill(0)
      for (const [i, wt] of list) {
        const w = windows[i]
        const p = predictions[i]
        const src = (c * (w.end - w.start) + (t - w.start)) * frameSize
        for (let q = 0; q < frameSize; q++) acc[q] += wt * p[src + q]
      }
      const inv = den[t]
      for (let q = 0; q < frameSize; q++) o[dst + q] = acc[q] / inv
    }
  }
  return o
}

/** What a per-window model call is told besides its input. */
export interface WindowContext {
  /** The window's frames [start, end) in the clip. */
  window: FrameWindow
  /** Its index in the window list. */
  index: number
  /** Which sample of the batch (index into the sampler's `xs`). */
  sample: number
  /** The sampler's log-SNR at this step. */
  logsnr: number
  /** The sampler's step (0-based). */
  step: number
}

/**
 * One window's model output for its noisy frames x_t [C, L, H, W] (a fresh
 * copy it may keep or modify), as [C, L, H, W]. Where the SSR model needs
 * its low-resolution condition, the callback slices it with `ctx.window`
 * (sliceWindow) and concatenates it (condition.ts).
 */
export type WindowPredict = (x: Float32Array, ctx: WindowContext) => Promise<Float32Array> | Float32Array

export interface FusedPredictOptions {
  /** Clip shape [C, T, H, W] of each sample. */
  shape: readonly number[]
  windows: readonly FrameWindow[]
  /** Fusion weights (default 'tapered'). */
  weights?: WindowWeighting | readonly Float32Array[]
  predictWindow: WindowPredict
}

/**
 * A `predict` callback for `sample()` (src/diffusion/sampler.ts) that runs
 * the model on every window of every sample (all calls started at once, so
 * a mesh scheduler behind `predictWindow` can spread them) and fuses the
 * outputs per sample. Fusing the raw v̂ (or ε̂) outputs is exact MultiDiffusion
 * — see the top of this file — so the sampler's single global step, noise
 * and thresholding then apply to the whole clip.
 */
export function fusedPredict (options: FusedPredictOptions): (xs: Float32Array[], logsnr: number, step: number) => Promise<Float32Array[]> {
  const { shape, windows, predictWindow } = options
  const [channels, frames, frameSize] = clipDims(shape, 'fusedPredict')
  checkWindows(windows, frames, 'fusedPredict')
  const weights = typeof options.weights === 'object' ? options.weights : frameWeights(windows, frames, options.weights ?? 'tapered')
  return async (xs, logsnr, step) => {
    const outs = await Promise.all(xs.map(async (x, sample) => {
      const preds = await Promise.all(windows.map(async (window, index) => {
        const xw = sliceWindow(x, shape, window)
        return await predictWindow(xw, { window, index, sample, logsnr, step })
      }))
      return fuse(preds, windows, frames, frameSize, channels, weights)
    }))
    return outs
  }
}
