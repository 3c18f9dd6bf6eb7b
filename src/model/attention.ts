/**
 * STUNet's two attention blocks (DESIGN §1):
 *
 * - Text cross-attention (image model, `spatial.`): every pixel of every
 *   frame queries the prompt's tokens. Each query attends to the L text
 *   tokens on its own, so grouping queries per frame or per clip computes the
 *   same thing: we keep one [N, heads, T·H·W, d] query tensor per clip.
 * - The attention-based inflation block (coarsest level, `temporal.`): per
 *   pixel, a sequence over time [N, H·W, T, C]; residual LayerNorm →
 *   multi-head self-attention layers, then a zero-initialised linear
 *   projection added to the block's input, so a fresh block is the identity.
 *   No positional encoding: the temporal convolutions around it tell frames
 *   apart.
 */
import { float } from '../onnx/builder.ts'
import { conv, f32const, groupNorm, i64, linear } from './layers.ts'
import type { Act, Scope } from './layers.ts'
import { ONES, ZEROS } from './params.ts'

export interface TextInput {
  /** Value name of the text embeddings [N, textLength, textDim]. */
  v: string
  length: number
  dim: number
}

/** x + out(softmax(q(norm x) k(text)ᵀ / √d) v(text)), per head. */
export function crossAttention (s: Scope, x: Act, text: TextInput, heads: number): Act {
  const { ctx } = s
  const d = x.c / heads
  const pixels = x.t * x.h * x.w
  const q = conv(s, 'q', groupNorm(s, 'norm', x, 'spatial'), x.c, [1, 1, 1], { kind: 'spatial' })
  // [N, C, T, H, W] → [N, heads, d, T·H·W] → [N, heads, T·H·W, d]
  const qh = s.op('q/heads', 'Transpose', [s.op('q/split', 'Reshape', [q.v, i64(ctx, [0, heads, d, pixels])])], { perm: [0, 1, 3, 2] })
  // Text [N, L, D] → [N, L, C] → [N, L, heads, d]; keys as [N, heads, d, L], values as [N, heads, L, d].
  const split = (name: string): string => s.op(`${name}/split`, 'Reshape', [linear(s, name, text.v, text.dim, x.c, 'spatial'), i64(ctx, [0, text.length, heads, d])])
  const kh = s.op('k/heads', 'Transpose', [split('k')], { perm: [0, 2, 3, 1] })
  const vh = s.op('v/heads', 'Transpose', [split('v')], { perm: [0, 2, 1, 3] })
  const o = attend(s, qh, kh, vh, d) // [N, heads, T·H·W, d]
  const merged = s.op('merge', 'Reshape', [s.op('merge/transpose', 'Transpose', [o], { perm: [0, 1, 3, 2] }), i64(ctx, [0, x.c, x.t, x.h, x.w])])
  const out = conv(s, 'out', { ...x, v: merged }, x.c, [1, 1, 1], { kind: 'spatial' })
  return { ...x, v: s.op('residual', 'Add', [x.v, out.v]) }
}

/** softmax(q kᵀ / √d) v with q [.., S, d], kᵀ [.., d, S'], v [.., S', d]. */
function attend (s: Scope, q: string, kT: string, v: string, d: number): string {
  const scaled = s.op('q/scale', 'Mul', [q, f32const(s.ctx, [1 / Math.sqrt(d)])])
  const weights = s.op('softmax', 'Softmax', [s.op('scores', 'MatMul', [scaled, kT])], { axis: -1 })
  return s.op('attend', 'MatMul', [weights, v])
}

export interface AttentionInflationOptions {
  heads: number
  /** Residual self-attention layers in the stack. */
  layers: number
  /** Random instead of zero-initialised output projection (tests of the temporal path). */
  live: boolean
}

/** The attention-based inflation block on [N, C, T, H, W]; returns x + proj(attention stack). */
export function attentionInflation (s: Scope, x: Act, o: AttentionInflationOptions, out?: string): Act {
  const { ctx } = s
  const hw = x.h * x.w
  // [N, C, T, H, W] → [N, H, W, T, C] → [N, H·W, T, C]: one sequence over time per pixel.
  const seq = s.op('to_seq', 'Reshape', [s.op('to_seq/transpose', 'Transpose', [x.v], { perm: [0, 3, 4, 2, 1] }), i64(ctx, [0, hw, x.t, x.c])])
  let h = seq
  for (let i = 0; i < o.layers; i++) {
    const layer = s.at(`layer${i}`)
    h = layer.op('residual', 'Add', [h, selfAttention(layer, h, x.c, x.t, hw, o.heads)])
  }
  const proj = linear(s, 'proj', h, x.c, x.c, 'temporal', !o.live)
  const sum = s.op('residual', 'Add', [seq, proj])
  const back = s.op('from_seq', 'Reshape', [sum, i64(ctx, [0, x.h, x.w, x.t, x.c])])
  return { ...x, v: s.op('from_seq/transpose', 'Transpose', [back], { perm: [0, 4, 3, 1, 2] }, out) }
}

/** Multi-head self-attention over T of LayerNorm(x), x [N, H·W, T, C]. */
function selfAttention (s: Scope, x: string, c: number, t: number, hw: number, heads: number): string {
  const { ctx } = s
  const d = c / heads
  const gamma = s.param('temporal', 'norm.weight', [c], ONES)
  const beta = s.param('temporal', 'norm.bias', [c], ZEROS)
  const normed = s.op('norm', 'LayerNormalization', [x, gamma, beta], { axis: -1, epsilon: float(1e-5) })
  // [N, H·W, T, C] → [N, H·W, T, heads, d] → q, v [N, H·W, heads, T, d], kᵀ [N, H·W, heads, d, T]
  const split = (name: string, perm: number[]): string =>
    s.op(`${name}/heads`, 'Transpose', [s.op(`${name}/split`, 'Reshape', [linear(s, name, normed, c, c, 'temporal'), i64(ctx, [0, hw, t, heads, d])])], { perm })
  const o = attend(s, split('q', [0, 1, 3, 2, 4]), split('k', [0, 1, 3, 4, 2]), split('v', [0, 1, 3, 2, 4]), d)
  const merged = s.op('merge', 'Reshape', [s.op('merge/transpose', 'Transpose', [o], { perm: [0, 1, 3, 2, 4] }), i64(ctx, [0, hw, t, c])])
  return linear(s, 'out', merged, c, c, 'temporal')
}
