/**
 * The STUNet base model (DESIGN §1) as an ONNX graph, built from a config.
 *
 *   inputs  x       F32 [batch, inChannels, T, H, W]  noisy video (+ condition, mask)
 *           logsnr  F32 [batch]                        noise level
 *           text    F32 [batch, textLength, textDim]   prompt embeddings
 *   output  v       F32 [batch, 3, T, H, W]            v-prediction
 *
 * Layout, with L levels (level l at T/2^l × H/2^l × W/2^l, channels[l]):
 *   temb                timestep embedding, read by every ResBlock
 *   in/conv             conv(1,3,3) inChannels → channels[0]
 *   down{l}, l < L-1    ResBlocks (+ text cross-attention at attentionLevels),
 *                       conv inflation block → `down{l}/out` (the skip),
 *                       downsample (space), tdown (time)
 *   mid                 ResBlocks (+ cross-attention), attention inflation
 *                       block → `mid/out`
 *   up{l}, l = L-2..0   tup (time), upsample (space), concat the skip,
 *                       ResBlocks (+ cross-attention), conv inflation block
 *                       → `up{l}/out`
 *   out                 norm → SiLU → conv(1,3,3) → 3 channels → `v`
 *
 * Weights: see params.ts ('seeded' or 'none'; `spatial.` vs `temporal.`).
 * With inflationInit 'zero' (default) the inflation blocks start as the
 * identity and temporal resampling as nearest-neighbour, so the net is the
 * image model applied frame by frame except that coarse levels see every
 * other frame; 'random' makes the zero-initialised projections random so
 * tests can see frames influence each other.
 */
import { LumiereError } from '../errors.ts'
import { GraphBuilder } from '../onnx/builder.ts'
import type { ModelProto } from '../onnx/proto.ts'
import { tensorDims } from '../onnx/proto.ts'
import { attentionInflation, crossAttention } from './attention.ts'
import type { TextInput } from './attention.ts'
import { convInflation, resBlock, spatialDown, spatialUp, temporalDown, temporalUp, timestepEmbedding } from './blocks.ts'
import type { Embedding } from './blocks.ts'
import { Scope, conv, normSilu } from './layers.ts'
import type { Act, ModelContext } from './layers.ts'
import { Params } from './params.ts'
import type { WeightMode } from './params.ts'
import { describeLevels, validateStunetConfig } from './stunet-config.ts'
import type { LevelShape, StunetConfig } from './stunet-config.ts'

export { describeLevels }

export interface StunetOptions {
  /** 'seeded': deterministic weights from `seed`; 'none': declared shapes only (planning, no memory). */
  weights: WeightMode
  /** Default 1. */
  seed?: number
  /** 'zero' (default): inflation projections start at zero, as in the paper; 'random': live temporal paths. */
  inflationInit?: 'zero' | 'random'
}

/** Graph input and output names. */
export const STUNET_IO = { video: 'x', logsnr: 'logsnr', text: 'text', output: 'v' } as const

/** Residual self-attention layers in the coarsest level's attention inflation block. */
export const TEMPORAL_ATTENTION_LAYERS = 2

export function buildStunet (config: StunetConfig, options: StunetOptions = { weights: 'seeded' }): ModelProto {
  validateStunetConfig(config)
  const { weights, seed = 1, inflationInit = 'zero' } = options
  if (weights !== 'seeded' && weights !== 'none') throw new LumiereError('BAD_ARGUMENT', `weights must be 'seeded' or 'none', got ${JSON.stringify(weights)}`)
  if (!Number.isSafeInteger(seed)) throw new LumiereError('BAD_ARGUMENT', `seed must be an integer, got ${JSON.stringify(seed)}`)
  if (inflationInit !== 'zero' && inflationInit !== 'random') throw new LumiereError('BAD_ARGUMENT', `inflationInit must be 'zero' or 'random', got ${JSON.stringify(inflationInit)}`)
  const live = inflationInit === 'random'
  const { levels: L, channels: C, frames: T, height: H, width: W } = config

  const g = new GraphBuilder('stunet')
  const params = new Params(g, weights, seed)
  const ctx: ModelContext = { g, params, groups: config.groups, consts: new Map() }
  const at = (path: string): Scope => new Scope(ctx, path)

  const x = g.input(STUNET_IO.video, 'F32', ['batch', config.inChannels, T, H, W])
  const logsnr = g.input(STUNET_IO.logsnr, 'F32', ['batch'])
  const text: TextInput = { v: g.input(STUNET_IO.text, 'F32', ['batch', config.textLength, config.textDim]), length: config.textLength, dim: config.textDim }

  // Embedding width 4·channels[0] and sinusoid width ≈ channels[0], as in DDPM/Imagen U-Nets.
  const emb: Embedding = { v: timestepEmbedding(at('temb'), logsnr, 2 * Math.ceil(C[0] / 2), 4 * C[0]), dim: 4 * C[0] }

  // ResBlocks of a level, each followed by text cross-attention at attention levels.
  const levelBody = (s: Scope, h: Act, l: number): Act => {
    for (let r = 0; r < config.resBlocks; r++) {
      h = resBlock(s.at(`res${r}`), h, C[l], emb)
      if (config.attentionLevels.includes(l)) h = crossAttention(s.at(`xattn${r}`), h, text, config.heads)
    }
    return h
  }

  let h = conv(at('in'), 'conv', { v: x, c: config.inChannels, t: T, h: H, w: W }, C[0], [1, 3, 3], { kind: 'spatial' })
  const skips: Act[] = []
  for (let l = 0; l < L - 1; l++) {
    const s = at(`down${l}`)
    h = convInflation(s.at('inflate'), levelBody(s, h, l), live, `down${l}/out`)
    skips.push(h)
    h = temporalDown(s.at('tdown'), spatialDown(s.at('downsample'), h))
  }
  const mid = at('mid')
  h = attentionInflation(mid.at('tattn'), levelBody(mid, h, L - 1), { heads: config.heads, layers: TEMPORAL_ATTENTION_LAYERS, live }, 'mid/out')
  for (let l = L - 2; l >= 0; l--) {
    const s = at(`up${l}`)
    h = spatialUp(s.at('upsample'), temporalUp(s.at('tup'), h))
    const skip = skips[l]
    h = { ...h, v: s.op('concat', 'Concat', [h.v, skip.v], { axis: 1 }), c: h.c + skip.c }
    h = convInflation(s.at('inflate'), levelBody(s, h, l), live, `up${l}/out`)
  }
  const out = at('out')
  const v = conv(out, 'conv', normSilu(out, 'norm', h, 'spatial'), 3, [1, 3, 3], { kind: 'spatial', out: STUNET_IO.output })
  g.output(v.v, 'F32', ['batch', 3, T, H, W])

  const model = params.finish(g.model({ opset: 17, producer: 'lumiere-mesh stunet' }))
  model.metadataProps = [
    { key: 'lumiere.stunet.config', value: JSON.stringify(config) },
    { key: 'lumiere.stunet.weights', value: weights === 'seeded' ? `seeded:${seed}:${inflationInit}` : 'none' }
  ]
  return model
}

export interface LevelOutput {
  /** Value name in the graph. */
  name: string
  level: number
  /** [C, T, H, W] of the value (batch first in the graph). */
  shape: LevelShape
}

/** The named per-level values of the graph (`down{l}/out`, `mid/out`, `up{l}/out`) with their shapes. */
export function levelOutputs (config: StunetConfig): LevelOutput[] {
  const shapes = describeLevels(config)
  const L = config.levels
  const down = shapes.slice(0, L - 1).map((shape, l) => ({ name: `down${l}/out`, level: l, shape }))
  const up = shapes.slice(0, L - 1).map((shape, l) => ({ name: `up${l}/out`, level: l, shape })).reverse()
  return [...down, { name: 'mid/out', level: L - 1, shape: shapes[L - 1] }, ...up]
}

export interface ParameterCounts {
  /** Image-model weights (`spatial.`). */
  spatial: number
  /** Inflation blocks and temporal resampling (`temporal.`). */
  temporal: number
  total: number
}

/** Parameter counts, from the initializer dims of the graph built with weights 'none' (no memory). */
export function parameterCounts (config: StunetConfig): ParameterCounts {
  const counts: ParameterCounts = { spatial: 0, temporal: 0, total: 0 }
  for (const t of buildStunet(config, { weights: 'none' }).graph?.initializer ?? []) {
    const n = tensorDims(t).reduce((a, b) => a * b, 1)
    if (t.name?.startsWith('temporal.') === true) counts.temporal += n
    else counts.spatial += n
    counts.total += n
  }
  return counts
}

export function parameterCount (config: StunetConfig): number {
  return parameterCounts(config).total
}
