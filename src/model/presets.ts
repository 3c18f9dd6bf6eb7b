/**
 * Named STUNet configs:
 * - tiny: tests (well under a second per denoising step on 2 CPU cores);
 * - small: benchmarks (a few seconds per step on 2 CPU cores);
 * - paper: Lumiere's base-model shapes (80 frames of 128×128, time halved
 *   four times 80→40→20→10→5, T5-XXL text): billions of parameters, built
 *   with weights 'none' for planning and simulation only.
 * Measured figures: see test/stunet.test.ts (it prints them).
 */
import { pickPreset } from './preset-table.ts'
import type { StunetConfig } from './stunet-config.ts'

const PRESETS = {
  tiny: {
    levels: 3,
    channels: [16, 32, 64],
    resBlocks: 1,
    frames: 16,
    height: 32,
    width: 32,
    inChannels: 3,
    textDim: 32,
    textLength: 16,
    heads: 4,
    attentionLevels: [1, 2],
    groups: 8
  },
  small: {
    levels: 4,
    channels: [96, 192, 256, 256],
    resBlocks: 2,
    frames: 16,
    height: 64,
    width: 64,
    inChannels: 3,
    textDim: 256,
    textLength: 32,
    heads: 8,
    attentionLevels: [2, 3],
    groups: 32
  },
  paper: {
    levels: 5,
    channels: [256, 512, 1024, 1024, 1024],
    resBlocks: 3,
    frames: 80,
    height: 128,
    width: 128,
    inChannels: 3,
    textDim: 4096,
    textLength: 128,
    heads: 16,
    attentionLevels: [2, 3, 4],
    groups: 32
  }
} satisfies Record<string, StunetConfig>

export type PresetName = keyof typeof PRESETS

export const presetNames: readonly PresetName[] = Object.keys(PRESETS) as PresetName[]

/** A fresh copy of a preset config; unknown name → BAD_ARGUMENT listing the valid ones. */
export function getPreset (name: string): StunetConfig {
  return pickPreset<StunetConfig>(PRESETS, name, 'STUNet')
}
