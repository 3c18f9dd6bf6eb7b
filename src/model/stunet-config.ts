/**
 * The shape of a STUNet (Space-Time U-Net, DESIGN §1): how many levels, how
 * wide each is, the clip it runs on and its conditioning sizes. Pure data;
 * `validateStunetConfig` says exactly what is wrong with a bad one.
 *
 * Levels: level 0 runs at the clip's full size; every further level halves
 * frames, height and width (a spatial then a temporal downsample), so the
 * coarsest level L-1 runs at T/2^(L-1) × H/2^(L-1) × W/2^(L-1).
 */
import { LumiereError } from '../errors.ts'

export interface StunetConfig {
  /** Resolution levels (>= 1). levels - 1 down/up-samplings of time and space. */
  levels: number
  /** Channels per level (length = levels). */
  channels: number[]
  /** ResBlocks per level (encoder, middle and decoder alike). */
  resBlocks: number
  frames: number
  height: number
  width: number
  /** 3: text-to-video; 7: ⟨noisy video, masked condition video, mask⟩ (DESIGN §1 applications). */
  inChannels: 3 | 7
  /** Width of one text-encoder token embedding (T5-XXL: 4096). */
  textDim: number
  /** Text tokens per prompt. */
  textLength: number
  /** Attention heads (text cross-attention and temporal self-attention). */
  heads: number
  /** Levels (0-based) whose ResBlocks are followed by text cross-attention. */
  attentionLevels: number[]
  /** GroupNorm groups; divides every level's channels. */
  groups: number
}

/** [channels, frames, height, width] of the activations at one level. */
export type LevelShape = [number, number, number, number]

function bad (message: string): never {
  throw new LumiereError('BAD_ARGUMENT', `STUNet config: ${message}`)
}

function positiveInt (name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) bad(`${name} must be a positive integer, got ${JSON.stringify(value)}`)
  return value
}

/**
 * Checks a config (which may come from JSON) and returns it. Throws
 * LumiereError BAD_ARGUMENT naming the field, the number and the reason.
 */
export function validateStunetConfig (config: StunetConfig): StunetConfig {
  if (config == null || typeof config !== 'object') bad('expected an object')
  const levels = positiveInt('levels', config.levels)
  if (!Array.isArray(config.channels) || config.channels.length !== levels) {
    bad(`channels must list one width per level (${levels} levels), got ${JSON.stringify(config.channels)}`)
  }
  config.channels.forEach((c, l) => positiveInt(`channels[${l}]`, c))
  positiveInt('resBlocks', config.resBlocks)
  positiveInt('textDim', config.textDim)
  positiveInt('textLength', config.textLength)
  const heads = positiveInt('heads', config.heads)
  const groups = positiveInt('groups', config.groups)
  if (config.inChannels !== 3 && config.inChannels !== 7) {
    bad(`inChannels must be 3 (text-to-video) or 7 (noisy video + masked condition video + mask), got ${JSON.stringify(config.inChannels)}`)
  }

  // Each of the levels-1 downsamplings halves time and space, so every size
  // must survive levels-1 exact halvings.
  const factor = 2 ** (levels - 1)
  for (const key of ['frames', 'height', 'width'] as const) {
    const n = positiveInt(key, config[key])
    if (n % factor !== 0) {
      const chain = Array.from({ length: levels }, (_, l) => n / 2 ** l).map(x => Number.isInteger(x) ? String(x) : x.toFixed(2)).join(' → ')
      const lower = Math.max(factor, Math.floor(n / factor) * factor)
      bad(`${key} = ${n} must be divisible by 2^(levels-1) = ${factor}: each of the ${levels - 1} downsamplings halves it (${chain}); use a multiple of ${factor}, e.g. ${lower} or ${lower + factor}`)
    }
  }

  if (!Array.isArray(config.attentionLevels)) bad(`attentionLevels must be a list of level indices (0..${levels - 1})`)
  for (const l of config.attentionLevels) {
    if (!Number.isInteger(l) || l < 0 || l >= levels) bad(`attentionLevels lists ${JSON.stringify(l)}, which is not a level (0..${levels - 1})`)
  }
  if (new Set(config.attentionLevels).size !== config.attentionLevels.length) bad(`attentionLevels lists a level twice: ${JSON.stringify(config.attentionLevels)}`)

  config.channels.forEach((c, l) => {
    if (c % groups !== 0) bad(`channels[${l}] = ${c} must be divisible by groups = ${groups} (GroupNorm splits the channels into equal groups)`)
    // Cross-attention at attention levels, temporal self-attention at the coarsest level.
    const attends = config.attentionLevels.includes(l) || l === levels - 1
    if (attends && c % heads !== 0) {
      const why = l === levels - 1 ? 'the coarsest level has temporal self-attention' : 'it is in attentionLevels'
      bad(`channels[${l}] = ${c} must be divisible by heads = ${heads}: ${why}, which splits the channels into equal heads`)
    }
  })
  return config
}

/** [C, T, H, W] at every level, finest first. */
export function describeLevels (config: StunetConfig): LevelShape[] {
  validateStunetConfig(config)
  return config.channels.map((c, l) => [c, config.frames / 2 ** l, config.height / 2 ** l, config.width / 2 ** l])
}
