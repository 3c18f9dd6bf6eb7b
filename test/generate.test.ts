// Text-to-video over the mesh: --local 2 (copies of the model) and --local 2
// --stages 2 (a pipeline) equal --local 1 for the same seed (float32 on the
// wire: bit-exact), the same seed twice is bit-identical, another seed
// differs.
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { generate } from '../coordinator/generate.ts'
import type { GenerateOptions } from '../coordinator/generate.ts'

process.env.LUMIERE_CACHE ??= await mkdtemp(join(tmpdir(), 'lumiere-cache-'))

// SSR off here: its distribution over peers is checked in ssr-mesh.test.ts.
const base: GenerateOptions = { prompt: 'a red ball bouncing on the beach', negative: 'blurry', model: 'tiny', steps: 3, guidance: 3, seed: 7, samples: 2, ssr: false }

t.test('generate over the mesh', async (t) => {
  const one = await generate({ ...base, local: 1 })
  const two = await generate({ ...base, local: 2 })
  const piped = await generate({ ...base, local: 2, stages: 2 })
  const again = await generate({ ...base, local: 2 })
  const other = await generate({ ...base, local: 1, seed: 8 })

  t.same(one.video.shape, [2, 3, 16, 32, 32], 'video is [B, 3, T, H, W]')
  // 4 passes per step (2 samples × 2 branches) on 2 equal peers: copies take 2 passes each, a 2-stage pipeline 2.5 stage-pairs.
  t.equal(two.plan.placement, 'replicated', '--local 2 copies the tiny model onto both peers')
  t.equal(new Set(two.plan.stages.map((s) => s.peer)).size, 2, 'one copy on each peer')
  t.ok(two.utilisation.length === 2 && two.utilisation.every((u) => u > 0), `both copies computed (busy ${two.utilisation.map((u) => u.toFixed(2)).join('/')})`)
  t.equal(piped.plan.stages.length, 2, '--stages 2 cuts the model into 2 stages')
  t.not(piped.plan.placement, 'replicated', '--stages K is a pipeline')
  t.equal(one.forwardPasses, 3 * 2 * 2, 'steps × samples × 2 guidance branches forward passes')
  t.ok(Buffer.from(one.video.data).equals(Buffer.from(two.video.data)), '--local 2 (copies) equals --local 1 bit for bit')
  t.ok(Buffer.from(one.video.data).equals(Buffer.from(piped.video.data)), '--local 2 --stages 2 (pipeline) equals --local 1 bit for bit')
  t.ok(Buffer.from(two.video.data).equals(Buffer.from(again.video.data)), 'the same seed twice is bit-identical')
  t.notOk(Buffer.from(one.video.data).equals(Buffer.from(other.video.data)), 'another seed gives another video')
  const values = new Float32Array(one.video.data.buffer, one.video.data.byteOffset, one.video.data.byteLength / 4)
  t.ok(values.every((v) => v >= -1 && v <= 1), 'values lie in [−1, 1]')
  const size = values.length / 2
  t.notOk(values.subarray(0, size).every((v, i) => v === values[size + i]), 'the two samples differ')
})
