/**
 * STUNet's convolutional blocks (DESIGN §1) on [N, C, T, H, W]:
 *
 * - timestep embedding: sinusoidal embedding of log-SNR → MLP (image model);
 * - ResBlock (image model, per frame): norm → SiLU → conv(1,3,3), + the
 *   projected timestep embedding per channel, norm → SiLU → conv(1,3,3),
 *   residual (a 1×1 conv on the skip path when the channel count changes);
 * - convolution-based inflation block (temporal): conv(1,3,3) → norm → SiLU
 *   → conv(3,1,1) → norm → SiLU → zero-initialised 1×1 conv, added to x;
 * - spatial down/up-sampling (image model): stride-2 conv(1,3,3); nearest
 *   Resize ×2 then conv(1,3,3);
 * - temporal down/up-sampling (temporal): depthwise temporal convs,
 *   initialised as nearest-neighbour resampling (see each function).
 */
import { conv, f32const, i64, linear, normSilu, silu } from './layers.ts'
import type { Act, Scope } from './layers.ts'

/**
 * log-SNR [N] → SiLU(MLP(sinusoidal(log-SNR))) [N, dim]. The SiLU every
 * ResBlock applies before its own projection is done once here.
 * Frequencies exp(-ln(10000)·k/half), k < half, as in DDPM/Imagen.
 */
export function timestepEmbedding (s: Scope, logsnr: string, sinusoidDim: number, dim: number): string {
  const half = sinusoidDim / 2
  const freqs = Array.from({ length: half }, (_, k) => Math.exp(-Math.log(10000) * k / half))
  const angles = s.op('angles', 'Mul', [s.op('unsqueeze', 'Unsqueeze', [logsnr, i64(s.ctx, [1])]), f32const(s.ctx, freqs, [half])]) // [N, half]
  const sinusoid = s.op('sinusoid', 'Concat', [s.op('sin', 'Sin', [angles]), s.op('cos', 'Cos', [angles])], { axis: 1 })
  const h = silu(s, 'fc1/silu', linear(s, 'fc1', sinusoid, sinusoidDim, dim, 'spatial'))
  return silu(s, 'silu', linear(s, 'fc2', h, dim, dim, 'spatial'))
}

export interface Embedding {
  /** Value name of SiLU(embedding) [N, dim]. */
  v: string
  dim: number
}

export function resBlock (s: Scope, x: Act, cout: number, emb: Embedding, out?: string): Act {
  let h = conv(s, 'conv1', normSilu(s, 'norm1', x, 'spatial'), cout, [1, 3, 3], { kind: 'spatial' })
  // The timestep, one value per channel: [N, cout] → [N, cout, 1, 1, 1].
  const e = s.op('temb/expand', 'Reshape', [linear(s, 'temb', emb.v, emb.dim, cout, 'spatial'), i64(s.ctx, [0, cout, 1, 1, 1])])
  h = { ...h, v: s.op('temb/add', 'Add', [h.v, e]) }
  h = conv(s, 'conv2', normSilu(s, 'norm2', h, 'spatial'), cout, [1, 3, 3], { kind: 'spatial' })
  const skip = x.c === cout ? x : conv(s, 'skip', x, cout, [1, 1, 1], { kind: 'spatial' })
  return { ...h, v: s.op('residual', 'Add', [skip.v, h.v], {}, out) }
}

/** x + conv1×1(SiLU(norm(conv(3,1,1)(SiLU(norm(conv(1,3,3)(x))))))); the 1×1 starts at zero unless `live`. */
export function convInflation (s: Scope, x: Act, live: boolean, out?: string): Act {
  const o = { kind: 'temporal' } as const
  let y = normSilu(s, 'norm1', conv(s, 'spatial_conv', x, x.c, [1, 3, 3], o), 'temporal')
  y = normSilu(s, 'norm2', conv(s, 'temporal_conv', y, x.c, [3, 1, 1], o), 'temporal')
  y = conv(s, 'proj', y, x.c, [1, 1, 1], { ...o, zero: !live })
  return { ...x, v: s.op('residual', 'Add', [x.v, y.v], {}, out) }
}

/** Halves H and W: stride-(1,2,2) conv(1,3,3), channels kept. */
export function spatialDown (s: Scope, x: Act): Act {
  return conv(s, 'conv', x, x.c, [1, 3, 3], { kind: 'spatial', stride: [1, 2, 2] })
}

/** Doubles H and W: nearest-neighbour Resize (pixel (i, j) ← (⌊i/2⌋, ⌊j/2⌋)), then conv(1,3,3). */
export function spatialUp (s: Scope, x: Act): Act {
  const resized = s.op('resize', 'Resize', [x.v, '', f32const(s.ctx, [1, 1, 1, 2, 2], [5])], {
    mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor'
  })
  return conv(s, 'conv', { ...x, v: resized, h: x.h * 2, w: x.w * 2 }, x.c, [1, 3, 3], { kind: 'spatial' })
}

/**
 * Halves T: depthwise conv, kernel 3 over time, stride 2, one zero frame of
 * padding each side, no bias. out[t] = w0·x[2t-1] + w1·x[2t] + w2·x[2t+1];
 * initialised w = [0, 1, 0] per channel, it keeps the even frames
 * (nearest-neighbour): [a, b, c, d] → [a, c].
 */
export function temporalDown (s: Scope, x: Act): Act {
  const w = s.param('temporal', 'conv.weight', [x.c, 1, 3, 1, 1], { kind: 'pattern', values: [0, 1, 0] })
  const v = s.op('conv', 'Conv', [x.v, w], { group: x.c, kernel_shape: [3, 1, 1], strides: [2, 1, 1], pads: [1, 0, 0, 1, 0, 0] })
  return { ...x, v, t: x.t / 2 }
}

/**
 * Doubles T: depthwise transposed conv, kernel 3 over time, stride 2, one
 * frame cropped at the start, no bias. Input frame j lands on output frames
 * 2j + k - 1 with weight w_k (k = 0, 1, 2); output length 2(T-1) + 3 - 1 =
 * 2T. Initialised w = [0, 1, 1] per channel, out[2j] = out[2j+1] = x[j]
 * (nearest-neighbour repetition): [a, c] → [a, a, c, c].
 */
export function temporalUp (s: Scope, x: Act): Act {
  const w = s.param('temporal', 'conv.weight', [x.c, 1, 3, 1, 1], { kind: 'pattern', values: [0, 1, 1] })
  const v = s.op('conv', 'ConvTranspose', [x.v, w], { group: x.c, kernel_shape: [3, 1, 1], strides: [2, 1, 1], pads: [1, 0, 0, 0, 0, 0] })
  return { ...x, v, t: x.t * 2 }
}
