// Known-region replacement keeps known pixels whatever the model predicts.
import t from 'tap'
import { replaceKnown } from '../src/diffusion/known-region.ts'
import { gaussian } from '../src/diffusion/rng.ts'
import { sample } from '../src/diffusion/sampler.ts'
import type { KnownRegion } from '../src/diffusion/known-region.ts'

const [C, T, H, W] = [3, 4, 5, 6]
const n = C * T * H * W
const plane = T * H * W
const known: KnownRegion = {
  condition: gaussian(1, 'condition', n).map(Math.tanh),
  mask: Float32Array.from({ length: plane }, (_, i) => (i % 3 === 0 ? 1 : 0)),
  channels: C
}

t.test('the final clip equals the condition on the known region, for a model that predicts garbage', async (t) => {
  for (const sampler of ['ddim', 'ancestral'] as const) {
    const seen: Float32Array[] = []
    const [x] = await sample({
      shape: [C, T, H, W], samples: 1, steps: 5, seed: 3, sampler, prediction: 'v',
      project: (xs, level, step, final) => { for (const [b, x] of xs.entries()) replaceKnown(x, known, level, 3, step, b, final) },
      predict: async (xs, _logsnr, step) => { seen.push(Float32Array.from(xs[0])); return [gaussian(99, `garbage/${step}`, n)] }
    })
    let known0 = true
    let unknownDiffers = false
    for (let c = 0; c < C; c++) {
      for (let i = 0; i < plane; i++) {
        const j = c * plane + i
        if (known.mask[i] === 1) known0 &&= x[j] === known.condition[j]
        else unknownDiffers ||= x[j] !== known.condition[j]
      }
    }
    t.ok(known0, `${sampler}: every known pixel equals the condition exactly`)
    t.ok(unknownDiffers, `${sampler}: pixels to generate are generated`)
    t.equal(seen.length, 5, `${sampler}: the model saw x_t at every step`)
  }
})

t.test('before a prediction the known region is the condition noised to that level', async (t) => {
  const x = new Float32Array(n).fill(7)
  const level = { alpha: 0.6, sigma: 0.8 }
  replaceKnown(x, known, level, 3, 2, 0, false)
  const eps = gaussian(3, 'known/2/0', n)
  const j = 0 // mask[0] = 1
  t.equal(x[j], Math.fround(0.6 * known.condition[j] + 0.8 * eps[j]), 'α·C + σ·ε from the seeded stream')
  t.equal(x[1], 7, 'unknown pixels untouched')
})
