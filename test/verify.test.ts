// Verification against a lying peer (`lumiere peer --faulty p` adds noise of
// 1e-2·max|x| to a stage's outputs with probability p). With --verify 1 every
// task is checked on a second peer, disagreements are judged by the
// coordinator's own run (tolerance: 1e-4 of max|x|, see coordinator/verify.ts
// — honest answers are bit-identical here and differ by ≲ 1e-5 across CPUs,
// a lie by 1e-2), the liar is dropped and its work redone: the base video and
// the SSR's fused windows equal an honest run's bit for bit. At --verify 0.25
// some lies go unchecked before the liar is caught; the sampler is rolled back
// to before its first unchecked work, so a caught run still equals the
// reference.
import t from 'tap'
import { Coordinator } from '../coordinator/coordinator.ts'
import { generate } from '../coordinator/generate.ts'
import { startLocalMesh } from '../coordinator/local-mesh.ts'
import { Scatter } from '../coordinator/scatter.ts'
import { upscaleClips } from '../coordinator/upscale.ts'
import { VERIFY_TOLERANCE, withRollback } from '../coordinator/verify.ts'
import { FAULTY_NOISE } from '../peer/jobs.ts'
import { smallSsr } from './fixtures/small-ssr.ts'
import type { GenerateOptions, GenerateResult } from '../coordinator/generate.ts'
import type { LiarEvidence } from '../coordinator/verify.ts'

const job: GenerateOptions = { prompt: 'a kite over a hill', model: 'tiny', steps: 6, guidance: 2, seed: 11, samples: 1, ssr: false, timeoutMs: 60_000 }
const sameVideo = (a: GenerateResult, b: GenerateResult): boolean => Buffer.from(a.video.data).equals(Buffer.from(b.video.data))

// Three peers; the third lies on every stage run.
const mesh = await startLocalMesh(3, { extraArgs: (i) => i === 2 ? ['--faulty', '1'] : [] })
t.teardown(async () => { await mesh.stop() })
const addrs = mesh.peers.map((p) => p.addrs[0])
const liar = addrs[2].split('/p2p/')[1]
// The honest reference: one honest peer of its own.
const reference = await generate({ ...job, local: 1 })

t.test('base pipeline: --verify 1 catches the liar and the video equals the honest reference', async (t) => {
  // --stages 3: a pipeline in which the liar holds a stage (left free, the planner may copy the model onto the two others; copies are checked below).
  const spoiled = await generate({ ...job, peers: addrs, stages: 3 })
  t.notOk(sameVideo(spoiled, reference), 'unchecked, the faulty peer changes the video')

  const warnings: string[] = []
  const result = await generate({ ...job, peers: addrs, stages: 3, verify: 1, onWarning: (m) => { warnings.push(m) } })
  const report = result.verification?.base
  t.ok(warnings.some((w) => w.includes(`peer ${liar} returned a wrong result`)), `a warning names the liar (${warnings.join('; ')})`)
  t.same(report?.liars.map((e) => e.peer), [liar], 'the liar, and only it, was convicted')
  const evidence = report?.liars[0] as LiarEvidence
  // The lie is uniform noise in ±1e-2 · max|x| per element, so its largest draw is ~1e-2 on a big output, but can be far less on an output of a few elements (where the plan's cut puts one on the liar's stage).
  t.ok(evidence.relative > VERIFY_TOLERANCE.f32 && evidence.relative <= 1.01 * FAULTY_NOISE, `evidence: relative diff ${evidence.relative.toExponential(2)}, above the 1e-4 tolerance and at most the lie's 1e-2`)
  t.equal(report?.rollbacks, 0, 'every task checked: nothing unchecked to roll back')
  t.ok(sameVideo(result, reference), 'the video equals the honest reference bit for bit')
})

t.test('base pipeline: --verify 0.25 catches the liar in most runs; caught runs roll back and still equal the reference', async (t) => {
  let caught = 0
  for (let k = 0; k < 3; k++) {
    const result = await generate({ ...job, peers: addrs, stages: 3, verify: 0.25 })
    const report = result.verification?.base
    if (report?.liars.some((e) => e.peer === liar) !== true) { t.comment(`run ${k + 1}: the liar went unnoticed`); continue }
    caught++
    t.comment(`run ${k + 1}: caught at step ${(report.liars[0].step) + 1} after ${report.checks} checks; ${report.rollbacks} rollback(s), ${report.stepsRedone} finished step(s) discarded`)
    t.ok(sameVideo(result, reference), `run ${k + 1}: caught, rolled back, equal to the reference`)
  }
  t.ok(caught >= 1, `caught in ${caught} of 3 runs`)
})

t.test('copies of the model: --verify 1 checks each pass on another copy, catches the liar, and the video equals the honest reference', async (t) => {
  // Two samples: 4 passes a step, which the planner spreads over copies on all three peers, the liar's included.
  const two = { ...job, samples: 2 }
  const honest = await generate({ ...two, local: 1 })
  const result = await generate({ ...two, peers: addrs, verify: 1 })
  const report = result.verification?.base
  t.equal(result.plan.placement, 'replicated', `run on copies (${result.plan.stages.length} after the re-plan)`)
  t.same(report?.liars.map((e) => e.peer), [liar], 'the liar, and only it, was convicted')
  t.ok(result.plan.stages.every((s) => s.peer !== liar), 'and holds no copy after')
  t.ok((report?.checks ?? 0) >= 2 * job.steps * 2, `every pass checked (${report?.checks} checks for ${2 * job.steps * 2} passes)`)
  t.equal(report?.rollbacks, 0, 'nothing unchecked to roll back')
  t.ok(sameVideo(result, honest), 'the video equals the honest reference bit for bit')
})

t.test('SSR scatter: --verify 1 catches the liar and the fused result equals the honest one', async (t) => {
  const { model, dag, options, reference: local } = smallSsr(2)
  const reference = await local()

  const coordinator = await Coordinator.start()
  t.teardown(async () => { await coordinator.stop() })
  const peers = await coordinator.connect(addrs)
  const caught: LiarEvidence[] = []
  const scatter = await Scatter.open(coordinator, model, dag, peers, { taskTimeoutMs: 60_000, verify: 1, onLiar: (e) => { caught.push(e) } })
  t.teardown(async () => { await scatter.close() })
  const [clip] = await withRollback(scatter, undefined, async (resume, record) => upscaleClips({ ...options(async (tasks) => scatter.run(tasks)), resume, onStep: (_s, _n, state) => { record(state) } }))
  t.same(caught.map((e) => e.peer), [liar], 'the liar, and only it, was convicted')
  t.equal(caught[0]?.step, 0, 'in the first step')
  t.equal(scatter.counts()[liar], 0, 'no answer of the liar was used')
  t.ok(Buffer.from(clip.buffer).equals(Buffer.from(reference.buffer)), 'the fused result equals the single-process loop bit for bit')
})
