import { gaussian } from './rng.ts'
import type { Seed } from './rng.ts'
import type { AlphaSigma } from './schedule.ts'

/** What is known of a clip: its condition video and a mask, 1 = known, 0 = generate. */
export interface KnownRegion {
  /** float32 [C, T, H, W] */
  condition: Float32Array
  /** float32 [T, H, W] (one plane for all channels), values 0 or 1 */
  mask: Float32Array
  channels: number
}

/**
 * Replaces the known region of x_t with the condition noised to the same
 * level, x ← M·(α·C + σ·ε) + (1 − M)·x, with ε drawn from the seeded stream
 * `known/<step>/<sample>`; with `final` the known region becomes C exactly.
 * Applied before every prediction, it makes known pixels survive whatever
 * the model's weights do (RePaint-style replacement).
 */
export function replaceKnown (x: Float32Array, known: KnownRegion, level: AlphaSigma, seed: Seed, step: number, sample: number, final: boolean): void {
  const plane = known.mask.length
  const noise = final ? undefined : gaussian(seed, `known/${step}/${sample}`, x.length)
  for (let c = 0; c < known.channels; c++) {
    for (let i = 0; i < plane; i++) {
      if (known.mask[i] === 0) continue
      const j = c * plane + i
      x[j] = noise == null ? known.condition[j] : level.alpha * known.condition[j] + level.sigma * noise[j]
    }
  }
}
