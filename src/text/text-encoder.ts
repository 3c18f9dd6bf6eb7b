/**
 * The built-in text encoder graph: a small pre-norm transformer encoder with
 * deterministic seeded weights, the stand-in for T5-XXL (DESIGN.md §1) in
 * packages built in code.
 *
 *   inputs   tokens I64 [N, L]   token ids (pad = 0 in the built-in tokenizer)
 *            mask   I64 [N, L]   1 = token, 0 = padding
 *   output   text   F32 [N, L, D]
 *
 *   x = Embed[tokens] + PE               (sinusoidal positions, fixed)
 *   layers × { x += MHSA(LN(x), key padding mask); x += MLP(LN(x)) }
 *   text = mask ? LN(x) : 0              (padded rows exactly +0)
 *
 * Attention masks padded keys with a large negative bias, so padding never
 * changes the embeddings of real tokens, and padded rows of the output are
 * zero (Where, not a multiply: +0, never -0), so padding never leaks into the
 * video model's cross-attention. L is fixed in the graph (the video model's
 * context length); N is symbolic. Opset 17 (LayerNormalization; GELU built
 * from Erf).
 */
import { LumiereError } from '../errors.ts'
import { GraphBuilder, float } from '../onnx/builder.ts'
import type { ModelProto } from '../onnx/proto.ts'
import { f32 } from '../tensor/tensor.ts'
import type { Tensor } from '../tensor/tensor.ts'
import { mulberry32 } from '../util/prng.ts'

export interface TextEncoderConfig {
  /** Number of token ids the embedding table holds (the tokenizer's vocabulary size). */
  vocabSize: number
  /** Embedding width D (the video model's cross-attention context width). */
  dim: number
  /** Sequence length L fixed in the graph. */
  length: number
  /** Transformer encoder layers (default 2). */
  layers?: number
  /** Attention heads; must divide dim (default: the most of 8, 4, 2, 1 with head width ≥ 16). */
  heads?: number
  /** MLP hidden width as a multiple of dim (default 4). */
  mlpRatio?: number
  /** Weight seed (default 0). */
  seed?: number
}

/** Metadata key under which the built-in encoder records its config (JSON). */
export const TEXT_ENCODER_META_KEY = 'lumiere.text_encoder'

/** Input and output names of the built-in encoder graph. */
export const BUILTIN_INPUTS = { tokens: 'tokens', mask: 'mask' } as const
export const BUILTIN_OUTPUT = 'text'

/** Attention bias for padded keys: large enough to vanish in softmax, finite so nothing turns NaN. */
const MASKED = -1e9
const LN_EPS = 1e-5

export function defaultHeads (dim: number): number {
  for (const h of [8, 4, 2]) if (dim % h === 0 && dim / h >= 16) return h
  return 1
}

/** The resolved config (defaults filled in); BAD_ARGUMENT for impossible values. */
export function resolveTextEncoderConfig (config: TextEncoderConfig): Required<TextEncoderConfig> {
  const positive = (name: string, v: number): number => {
    if (!Number.isSafeInteger(v) || v < 1) throw new LumiereError('BAD_ARGUMENT', `text encoder: ${name} must be a positive integer, got ${v}`)
    return v
  }
  const dim = positive('dim', config.dim)
  const heads = positive('heads', config.heads ?? defaultHeads(dim))
  if (dim % heads !== 0) throw new LumiereError('BAD_ARGUMENT', `text encoder: heads (${heads}) must divide dim (${dim})`)
  const seed = config.seed ?? 0
  if (!Number.isSafeInteger(seed)) throw new LumiereError('BAD_ARGUMENT', `text encoder: seed must be an integer, got ${seed}`)
  return {
    vocabSize: positive('vocabSize', config.vocabSize),
    dim,
    length: positive('length', config.length),
    layers: positive('layers', config.layers ?? 2),
    heads,
    mlpRatio: positive('mlpRatio', config.mlpRatio ?? 4),
    seed
  }
}

/** Uniform weights in [-1/sqrt(fanIn), 1/sqrt(fanIn)). */
function uniform (rand: () => number, shape: number[], scale: number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1)
  const v = new Float32Array(n)
  for (let i = 0; i < n; i++) v[i] = (rand() * 2 - 1) * scale
  return f32(shape, v)
}

/** Sinusoidal positions [L, D] (Vaswani et al.): sin on even, cos on odd channels. */
export function sinusoidalPositions (length: number, dim: number): Float32Array {
  const pe = new Float32Array(length * dim)
  for (let p = 0; p < length; p++) {
    for (let i = 0; i < dim; i++) {
      const angle = p / Math.pow(10000, (2 * Math.floor(i / 2)) / dim)
      pe[p * dim + i] = i % 2 === 0 ? Math.sin(angle) : Math.cos(angle)
    }
  }
  return pe
}

/**
 * Builds the built-in text encoder (see the module comment). Deterministic:
 * the same config gives the same model bytes.
 */
export function buildTextEncoder (config: TextEncoderConfig): ModelProto {
  const c = resolveTextEncoderConfig(config)
  const { vocabSize: V, dim: D, length: L, layers, heads: H, mlpRatio } = c
  const Dh = D / H
  const F = D * mlpRatio
  const rand = mulberry32(c.seed)
  const g = new GraphBuilder('text_encoder')

  const tokens = g.input(BUILTIN_INPUTS.tokens, 'I64', ['N', L])
  const mask = g.input(BUILTIN_INPUTS.mask, 'I64', ['N', L])

  // Embeddings ~ U(-√3, √3): unit variance per channel, like the positions.
  const embed = g.init('embed.weight', uniform(rand, [V, D], Math.sqrt(3)))
  const pos = g.init('embed.positions', sinusoidalPositions(L, D), [L, D])
  let x = g.op('Add', [g.op('Gather', [embed, tokens], { axis: 0 }), pos])

  // Key padding bias [N, 1, 1, L]: 0 for tokens, MASKED for padding.
  const keep = g.op('Cast', [mask], { to: 9 }) // BOOL
  const zero = g.init('const.zero', f32([], [0]))
  const bias = g.op('Where', [keep, zero, g.init('const.masked', f32([], [MASKED]))])
  const keyBias = g.op('Unsqueeze', [bias, g.i64('const.axes_1_2', [1, 2])])
  const splitHeads = g.i64('const.split_heads', [0, 0, H, Dh])
  const mergeHeads = g.i64('const.merge_heads', [0, 0, D])
  const scale = g.init('const.scale', f32([], [1 / Math.sqrt(Dh)]))
  const sqrtHalf = g.init('const.sqrt_half', f32([], [Math.SQRT1_2]))
  const one = g.init('const.one', f32([], [1]))
  const half = g.init('const.half', f32([], [0.5]))

  const layerNorm = (name: string, input: string): string => {
    const gamma = g.init(`${name}.weight`, f32([D], new Float32Array(D).fill(1)))
    const beta = g.init(`${name}.bias`, f32([D], new Float32Array(D)))
    return g.op('LayerNormalization', [input, gamma, beta], { axis: -1, epsilon: float(LN_EPS) })
  }
  const linear = (name: string, input: string, fanIn: number, fanOut: number): string => {
    const s = 1 / Math.sqrt(fanIn)
    const w = g.init(`${name}.weight`, uniform(rand, [fanIn, fanOut], s))
    const b = g.init(`${name}.bias`, uniform(rand, [fanOut], s))
    return g.op('Add', [g.op('MatMul', [input, w]), b])
  }

  for (let l = 0; l < layers; l++) {
    const p = `layers.${l}`
    // Self-attention: [N, L, D] → heads [N, H, L, Dh].
    const h = layerNorm(`${p}.attn_norm`, x)
    const q = g.op('Transpose', [g.op('Reshape', [linear(`${p}.attn.q`, h, D, D), splitHeads])], { perm: [0, 2, 1, 3] })
    const k = g.op('Transpose', [g.op('Reshape', [linear(`${p}.attn.k`, h, D, D), splitHeads])], { perm: [0, 2, 3, 1] })
    const v = g.op('Transpose', [g.op('Reshape', [linear(`${p}.attn.v`, h, D, D), splitHeads])], { perm: [0, 2, 1, 3] })
    const scores = g.op('Add', [g.op('Mul', [g.op('MatMul', [q, k]), scale]), keyBias])
    const attn = g.op('MatMul', [g.op('Softmax', [scores], { axis: -1 }), v])
    const merged = g.op('Reshape', [g.op('Transpose', [attn], { perm: [0, 2, 1, 3] }), mergeHeads])
    x = g.op('Add', [x, linear(`${p}.attn.out`, merged, D, D)])
    // MLP with exact (erf) GELU.
    const m = linear(`${p}.mlp.fc1`, layerNorm(`${p}.mlp_norm`, x), D, F)
    const gelu = g.op('Mul', [g.op('Mul', [m, half]), g.op('Add', [g.op('Erf', [g.op('Mul', [m, sqrtHalf])]), one])])
    x = g.op('Add', [x, linear(`${p}.mlp.fc2`, gelu, F, D)])
  }

  const y = layerNorm('final_norm', x)
  const rowKeep = g.op('Unsqueeze', [keep, g.i64('const.axes_last', [-1])])
  g.node('Where', [rowKeep, y, zero], {}, [BUILTIN_OUTPUT])
  g.output(BUILTIN_OUTPUT, 'F32', ['N', L, D])

  const model = g.model({ opset: 17 })
  model.docString = `lumiere-mesh built-in text encoder: ${layers}-layer pre-norm transformer, D=${D}, heads=${H}, L=${L}, vocab=${V}, seed=${c.seed}`
  model.metadataProps = [{ key: TEXT_ENCODER_META_KEY, value: JSON.stringify(c) }]
  return model
}
