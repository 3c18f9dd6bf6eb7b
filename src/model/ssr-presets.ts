/**
 * Named SSR configs, one per base preset of the same name (presets.ts): the
 * SSR's low-resolution input (height/scale × width/scale) is the base
 * model's frame size, and textDim/textLength equal the base model's, so one
 * text encoding feeds both.
 * - tiny: tests, ×4 32² → 128², windows of 8 frames (well under a second per
 *   window on 2 CPU cores);
 * - small: benchmarks, ×4 64² → 256², windows of 8 frames (a few seconds per
 *   window on 2 CPU cores);
 * - paper: Lumiere's SSR shapes, ×8 128² → 1024², windows of 16 frames, T5-XXL
 *   text; built with weights 'none' for planning and simulation only.
 * Measured figures: see test/ssr-model.test.ts (it prints them).
 */
import { pickPreset } from './preset-table.ts'
import type { SsrConfig } from './ssr-config.ts'

const SSR_PRESETS = {
  tiny: {
    levels: 3,
    channels: [8, 16, 32],
    resBlocks: 1,
    window: 8,
    height: 128,
    width: 128,
    scale: 4,
    textDim: 32,
    textLength: 16,
    heads: 4,
    attentionLevels: [2],
    groups: 4
  },
  small: {
    levels: 4,
    channels: [32, 64, 128, 256],
    resBlocks: 1,
    window: 8,
    height: 256,
    width: 256,
    scale: 4,
    textDim: 256,
    textLength: 32,
    heads: 8,
    attentionLevels: [2, 3],
    groups: 16
  },
  paper: {
    levels: 5,
    channels: [128, 256, 512, 768, 1024],
    resBlocks: 2,
    window: 16,
    height: 1024,
    width: 1024,
    scale: 8,
    textDim: 4096,
    textLength: 128,
    heads: 16,
    attentionLevels: [4],
    groups: 32
  }
} satisfies Record<string, SsrConfig>

export type SsrPresetName = keyof typeof SSR_PRESETS

export const ssrPresetNames: readonly SsrPresetName[] = Object.keys(SSR_PRESETS) as SsrPresetName[]

/** A fresh copy of an SSR preset config; unknown name → BAD_ARGUMENT listing the valid ones. */
export function getSsrPreset (name: string): SsrConfig {
  return pickPreset<SsrConfig>(SSR_PRESETS, name, 'SSR')
}
