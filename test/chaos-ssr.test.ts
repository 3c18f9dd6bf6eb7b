// Churn with the SSR: a peer killed in the base phase is gone for the SSR
// phase too (its windows go to the survivors from the start), and a peer
// killed in the SSR phase has its windows of that step redone elsewhere.
// Both jobs equal the undisturbed run bit for bit.
import t from 'tap'
import { generate } from '../coordinator/generate.ts'
import { chaosRun } from './fixtures/chaos.ts'
import type { GenerateOptions } from '../coordinator/generate.ts'

const job: GenerateOptions = { prompt: 'a kite over a hill', model: 'tiny', steps: 4, guidance: 2, seed: 11, samples: 1, timeoutMs: 60_000 }
const reference = Buffer.from((await generate({ ...job, local: 1 })).video.data)

for (const phase of ['base', 'ssr'] as const) {
  t.test(`kill -9 a peer in the ${phase} phase`, async (t) => {
    // holders: in the base phase the planner's copies may leave a peer idle; hit one that works.
    const run = await chaosRun(job, reference, { mode: 'kill', phase, holders: true })
    t.ok(run.disrupted, `peer ${run.victim + 1} killed after ${phase} step ${run.afterStep} (+${run.delayMs} ms), while the job ran`)
    t.equal(run.error, undefined, `the job finished${run.error instanceof Error ? ` (${run.error.message})` : ''}`)
    t.ok(run.warnings.some((w) => w.startsWith(`lost peer ${run.victimId}`)), `the coordinator dropped it (${run.warnings.join('; ')})`)
    if (phase === 'base') t.equal(run.result?.ssrWindows?.[run.victimId] ?? 0, 0, 'the SSR ran on the survivors: no window for it')
    t.ok(run.equal, 'the upscaled video equals the undisturbed run bit for bit')
  })
}
