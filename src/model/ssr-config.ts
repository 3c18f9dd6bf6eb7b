/**
 * The shape of an SSR (spatial super-resolution) model, DESIGN §1: a U-Net
 * over space only, inflated to video with convolution-based inflation blocks
 * and run on temporal windows of `window` frames. Pure data;
 * `validateSsrConfig` says exactly what is wrong with a bad one.
 *
 * Sizes: `height` × `width` is the OUTPUT (high-resolution) frame; the
 * low-resolution input is `height / scale` × `width / scale`, upsampled to
 * the output size (and noise-augmented) by the coordinator before it is
 * concatenated to the noisy high-resolution window.
 *
 * Levels: level 0 runs at the output size; every further level halves height
 * and width only. Time is never resampled: every level sees all `window`
 * frames, so `window` has no divisibility constraint.
 */
import { LumiereError } from '../errors.ts'

export interface SsrConfig {
  /** Resolution levels (>= 1). levels - 1 spatial down/up-samplings. */
  levels: number
  /** Channels per level (length = levels). */
  channels: number[]
  /** ResBlocks per level (encoder, middle and decoder alike). */
  resBlocks: number
  /** Frames per temporal window (L). */
  window: number
  /** Output (high-resolution) frame height. */
  height: number
  /** Output (high-resolution) frame width. */
  width: number
  /** Upscale factor: the low-resolution input is height/scale × width/scale. */
  scale: number
  /** Width of one text-encoder token embedding; equals the base model's. */
  textDim: number
  /** Text tokens per prompt; equals the base model's. */
  textLength: number
  /** Heads of the text cross-attention. */
  heads: number
  /** Levels (0-based) whose ResBlocks are followed by text cross-attention. */
  attentionLevels: number[]
  /** GroupNorm groups; divides every level's channels. */
  groups: number
}

/** [channels, frames, height, width] of the activations at one level. */
export type SsrLevelShape = [number, number, number, number]

function bad (message: string): never {
  throw new LumiereError('BAD_ARGUMENT', `SSR config: ${message}`)
}

function positiveInt (name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) bad(`${name} must be a positive integer, got ${JSON.stringify(value)}`)
  return value
}

function gcd (a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b)
}

/**
 * Checks a config (which may come from JSON) and returns it. Throws
 * LumiereError BAD_ARGUMENT naming the field, the number and the reason.
 */
export function validateSsrConfig (config: SsrConfig): SsrConfig {
  if (config == null || typeof config !== 'object') bad('expected an object')
  const levels = positiveInt('levels', config.levels)
  if (!Array.isArray(config.channels) || config.channels.length !== levels) {
    bad(`channels must list one width per level (${levels} levels), got ${JSON.stringify(config.channels)}`)
  }
  config.channels.forEach((c, l) => positiveInt(`channels[${l}]`, c))
  positiveInt('resBlocks', config.resBlocks)
  positiveInt('window', config.window)
  positiveInt('textDim', config.textDim)
  positiveInt('textLength', config.textLength)
  const heads = positiveInt('heads', config.heads)
  const groups = positiveInt('groups', config.groups)
  const scale = positiveInt('scale', config.scale)
  if (scale < 2) bad(`scale must be at least 2 (a super-resolution model upsamples its input), got ${scale}`)

  // Each of the levels-1 spatial downsamplings halves height and width, and
  // the low-resolution input is size/scale: both must be exact.
  const factor = 2 ** (levels - 1)
  const step = factor / gcd(factor, scale) * scale // lcm(factor, scale)
  for (const key of ['height', 'width'] as const) {
    const n = positiveInt(key, config[key])
    const lower = Math.max(step, Math.floor(n / step) * step)
    const hint = `use a multiple of ${step}, e.g. ${lower} or ${lower + step}`
    if (n % factor !== 0) {
      const chain = Array.from({ length: levels }, (_, l) => n / 2 ** l).map(x => Number.isInteger(x) ? String(x) : x.toFixed(2)).join(' → ')
      bad(`${key} = ${n} must be divisible by 2^(levels-1) = ${factor}: each of the ${levels - 1} spatial downsamplings halves it (${chain}); ${hint}`)
    }
    if (n % scale !== 0) {
      bad(`${key} = ${n} must be divisible by scale = ${scale}: the low-resolution input is ${key}/scale = ${(n / scale).toFixed(2)} pixels; ${hint}`)
    }
  }

  if (!Array.isArray(config.attentionLevels)) bad(`attentionLevels must be a list of level indices (0..${levels - 1})`)
  for (const l of config.attentionLevels) {
    if (!Number.isInteger(l) || l < 0 || l >= levels) bad(`attentionLevels lists ${JSON.stringify(l)}, which is not a level (0..${levels - 1})`)
  }
  if (new Set(config.attentionLevels).size !== config.attentionLevels.length) bad(`attentionLevels lists a level twice: ${JSON.stringify(config.attentionLevels)}`)

  config.channels.forEach((c, l) => {
    if (c % groups !== 0) bad(`channels[${l}] = ${c} must be divisible by groups = ${groups} (GroupNorm splits the channels into equal groups)`)
    // Text cross-attention is the only attention (no temporal attention in the SSR).
    if (config.attentionLevels.includes(l) && c % heads !== 0) {
      bad(`channels[${l}] = ${c} must be divisible by heads = ${heads}: it is in attentionLevels, whose cross-attention splits the channels into equal heads`)
    }
  })
  return config
}

/** [C, T, H, W] at every level, finest first: T is always the window. */
export function describeSsrLevels (config: SsrConfig): SsrLevelShape[] {
  validateSsrConfig(config)
  return config.channels.map((c, l) => [c, config.window, config.height / 2 ** l, config.width / 2 ** l])
}

/** The low-resolution frame size the SSR upsamples from (the base model's output size). */
export function ssrInputSize (config: SsrConfig): { height: number, width: number } {
  validateSsrConfig(config)
  return { height: config.height / config.scale, width: config.width / config.scale }
}
