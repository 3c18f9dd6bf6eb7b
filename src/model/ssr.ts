/**
 * The SSR (spatial super-resolution) model of DESIGN §1 as an ONNX graph,
 * built from a config: an image super-resolution U-Net inflated to video
 * with convolution-based inflation blocks only (no temporal resampling, no
 * temporal attention), run on one temporal window of L frames at a time.
 *
 *   inputs  x       F32 [batch, 6, L, H, W]            noisy high-res window (3)
 *                                                       ‖ upsampled, noise-augmented
 *                                                         low-res window (3)
 *           logsnr  F32 [batch]                         noise level of x[:, :3]
 *           aug     F32 [batch]                         log-SNR of the low-res noise
 *                                                         augmentation
 *           text    F32 [batch, textLength, textDim]    prompt embeddings
 *   output  v       F32 [batch, 3, L, H, W]             v-prediction
 *
 * H × W is the output size; the coordinator upsamples the low-res window
 * (H/scale × W/scale) and concatenates it on the channel axis.
 *
 * Layout, with n levels (level l at L × H/2^l × W/2^l, channels[l]):
 *   temb, aug_emb       sinusoidal + MLP embeddings of logsnr and aug,
 *                       summed (`emb/add`) and read by every ResBlock
 *   in/conv             conv(1,3,3) 6 → channels[0]
 *   down{l}, l < n-1    ResBlocks (+ text cross-attention at attentionLevels),
 *                       conv inflation block → `down{l}/out` (the skip),
 *                       spatial downsample
 *   mid                 ResBlocks (+ cross-attention), conv inflation block
 *                       → `mid/out`
 *   up{l}, l = n-2..0   spatial upsample, concat the skip, ResBlocks
 *                       (+ cross-attention), conv inflation block → `up{l}/out`
 *   out                 norm → SiLU → conv(1,3,3) → 3 channels → `v`
 *
 * Weights: see params.ts ('seeded' or 'none'; `spatial.` = the image model,
 * `temporal.` = the inflation blocks). With inflationInit 'zero' (default)
 * every inflation block is the identity and every other op works per frame
 * (per-frame GroupNorm, (1,3,3) convs, per-pixel cross-attention), so each
 * output frame depends only on its own input frame: the image SR model frame
 * by frame, and overlapping windows agree exactly on shared frames.
 * 'random' makes the projections live so frames interact.
 */
import { LumiereError } from '../errors.ts'
import { GraphBuilder } from '../onnx/builder.ts'
import type { ModelProto } from '../onnx/proto.ts'
import { tensorDims } from '../onnx/proto.ts'
import { crossAttention } from './attention.ts'
import type { TextInput } from './attention.ts'
import { convInflation, resBlock, spatialDown, spatialUp, timestepEmbedding } from './blocks.ts'
import type { Embedding } from './blocks.ts'
import { Scope, conv, normSilu } from './layers.ts'
import type { Act, ModelContext } from './layers.ts'
import { Params } from './params.ts'
import type { WeightMode } from './params.ts'
import { describeSsrLevels, ssrInputSize, validateSsrConfig } from './ssr-config.ts'
import type { SsrConfig, SsrLevelShape } from './ssr-config.ts'

export { describeSsrLevels, ssrInputSize, validateSsrConfig }
export type { SsrConfig, SsrLevelShape }

export interface SsrOptions {
  /** 'seeded': deterministic weights from `seed`; 'none': declared shapes only (planning, no memory). */
  weights: WeightMode
  /** Default 1. */
  seed?: number
  /** 'zero' (default): inflation projections start at zero (frames independent); 'random': live temporal paths. */
  inflationInit?: 'zero' | 'random'
}

/** Graph input and output names. */
export const SSR_IO = { video: 'x', logsnr: 'logsnr', aug: 'aug', text: 'text', output: 'v' } as const

/** Channels of `x`: the noisy high-res window (3) then the upsampled low-res window (3). */
export const SSR_IN_CHANNELS = 6

export function buildSsr (config: SsrConfig, options: SsrOptions = { weights: 'seeded' }): ModelProto {
  validateSsrConfig(config)
  const { weights, seed = 1, inflationInit = 'zero' } = options
  if (weights !== 'seeded' && weights !== 'none') throw new LumiereError('BAD_ARGUMENT', `weights must be 'seeded' or 'none', got ${JSON.stringify(weights)}`)
  if (!Number.isSafeInteger(seed)) throw new LumiereError('BAD_ARGUMENT', `seed must be an integer, got ${JSON.stringify(seed)}`)
  if (inflationInit !== 'zero' && inflationInit !== 'random') throw new LumiereError('BAD_ARGUMENT', `inflationInit must be 'zero' or 'random', got ${JSON.stringify(inflationInit)}`)
  const live = inflationInit === 'random'
  const { levels: n, channels: C, window: T, height: H, width: W } = config

  const g = new GraphBuilder('ssr')
  const params = new Params(g, weights, seed)
  const ctx: ModelContext = { g, params, groups: config.groups, consts: new Map() }
  const at = (path: string): Scope => new Scope(ctx, path)

  const x = g.input(SSR_IO.video, 'F32', ['batch', SSR_IN_CHANNELS, T, H, W])
  const logsnr = g.input(SSR_IO.logsnr, 'F32', ['batch'])
  const aug = g.input(SSR_IO.aug, 'F32', ['batch'])
  const text: TextInput = { v: g.input(SSR_IO.text, 'F32', ['batch', config.textLength, config.textDim]), length: config.textLength, dim: config.textDim }

  // Embedding width 4·channels[0], sinusoid width ≈ channels[0] (as STUNet);
  // the augmentation level is embedded the same way and added (Imagen SR).
  const sinusoidDim = 2 * Math.ceil(C[0] / 2)
  const dim = 4 * C[0]
  const temb = timestepEmbedding(at('temb'), logsnr, sinusoidDim, dim)
  const augEmb = timestepEmbedding(at('aug_emb'), aug, sinusoidDim, dim)
  const emb: Embedding = { v: at('emb').op('add', 'Add', [temb, augEmb]), dim }

  // ResBlocks of a level, each followed by text cross-attention at attention levels.
  const levelBody = (s: Scope, h: Act, l: number): Act => {
    for (let r = 0; r < config.resBlocks; r++) {
      h = resBlock(s.at(`res${r}`), h, C[l], emb)
      if (config.attentionLevels.includes(l)) h = crossAttention(s.at(`xattn${r}`), h, text, config.heads)
    }
    return h
  }

  let h = conv(at('in'), 'conv', { v: x, c: SSR_IN_CHANNELS, t: T, h: H, w: W }, C[0], [1, 3, 3], { kind: 'spatial' })
  const skips: Act[] = []
  for (let l = 0; l < n - 1; l++) {
    const s = at(`down${l}`)
    h = convInflation(s.at('inflate'), levelBody(s, h, l), live, `down${l}/out`)
    skips.push(h)
    h = spatialDown(s.at('downsample'), h)
  }
  const mid = at('mid')
  h = convInflation(mid.at('inflate'), levelBody(mid, h, n - 1), live, 'mid/out')
  for (let l = n - 2; l >= 0; l--) {
    const s = at(`up${l}`)
    h = spatialUp(s.at('upsample'), h)
    const skip = skips[l]
    h = { ...h, v: s.op('concat', 'Concat', [h.v, skip.v], { axis: 1 }), c: h.c + skip.c }
    h = convInflation(s.at('inflate'), levelBody(s, h, l), live, `up${l}/out`)
  }
  const out = at('out')
  const v = conv(out, 'conv', normSilu(out, 'norm', h, 'spatial'), 3, [1, 3, 3], { kind: 'spatial', out: SSR_IO.output })
  g.output(v.v, 'F32', ['batch', 3, T, H, W])

  const model = params.finish(g.model({ opset: 17, producer: 'lumiere-mesh ssr' }))
  model.metadataProps = [
    { key: 'lumiere.ssr.config', value: JSON.stringify(config) },
    { key: 'lumiere.ssr.weights', value: weights === 'seeded' ? `seeded:${seed}:${inflationInit}` : 'none' }
  ]
  return model
}

export interface SsrLevelOutput {
  /** Value name in the graph. */
  name: string
  level: number
  /** [C, L, H, W] of the value (batch first in the graph). */
  shape: SsrLevelShape
}

/** The named per-level values of the graph (`down{l}/out`, `mid/out`, `up{l}/out`) with their shapes. */
export function ssrLevelOutputs (config: SsrConfig): SsrLevelOutput[] {
  const shapes = describeSsrLevels(config)
  const n = config.levels
  const down = shapes.slice(0, n - 1).map((shape, l) => ({ name: `down${l}/out`, level: l, shape }))
  const up = shapes.slice(0, n - 1).map((shape, l) => ({ name: `up${l}/out`, level: l, shape })).reverse()
  return [...down, { name: 'mid/out', level: n - 1, shape: shapes[n - 1] }, ...up]
}

export interface SsrParameterCounts {
  /** Image super-resolution model weights (`spatial.`). */
  spatial: number
  /** Convolution inflation blocks (`temporal.`). */
  temporal: number
  total: number
}

/** Parameter counts, from the initializer dims of the graph built with weights 'none' (no memory). */
export function ssrParameterCounts (config: SsrConfig): SsrParameterCounts {
  const counts: SsrParameterCounts = { spatial: 0, temporal: 0, total: 0 }
  for (const t of buildSsr(config, { weights: 'none' }).graph?.initializer ?? []) {
    const size = tensorDims(t).reduce((a, b) => a * b, 1)
    if (t.name?.startsWith('temporal.') === true) counts.temporal += size
    else counts.spatial += size
    counts.total += size
  }
  return counts
}

export function ssrParameterCount (config: SsrConfig): number {
  return ssrParameterCounts(config).total
}
