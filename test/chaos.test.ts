// Churn: kill -9 one of 3 peer processes at a random point of a 10-step job;
// the job re-plans onto the survivors, redoes only the lost work, and ends
// bit-identical to an undisturbed run. Runs alternate between a 3-stage
// pipeline (--stages 3) and the planner's own choice, copies of the model on
// two of the peers (coordinator/replication.ts), where a peer holding a copy
// is hit.
import t from 'tap'
import { generate } from '../coordinator/generate.ts'
import { chaosRun } from './fixtures/chaos.ts'
import type { GenerateOptions } from '../coordinator/generate.ts'

const job: GenerateOptions = { prompt: 'a kite over a hill', model: 'tiny', steps: 10, guidance: 2, seed: 11, samples: 1, ssr: false, timeoutMs: 30_000 }
const KILLS = Number(process.env.LUMIERE_CHAOS_KILLS ?? 5)

t.test(`kill -9 a peer mid-job, ${KILLS} times`, async (t) => {
  const reference = Buffer.from((await generate({ ...job, local: 1 })).video.data)
  for (let k = 0; k < KILLS; k++) {
    const piped = k % 2 === 0
    const run = await chaosRun(piped ? { ...job, stages: 3 } : job, reference, { mode: 'kill', holders: !piped })
    t.equal(run.placement, piped ? 'contiguous' : 'replicated', `run ${k + 1}: ${piped ? 'a pipeline' : 'copies of the model'} when hit`)
    t.ok(run.disrupted, `run ${k + 1}: peer ${run.victim + 1} killed after step ${run.afterStep} (+${run.delayMs} ms), while the job ran`)
    t.equal(run.error, undefined, `run ${k + 1}: the job finished`)
    t.ok(run.warnings.some((w) => w.startsWith('lost peer')), `run ${k + 1}: the coordinator re-planned (${run.warnings.join('; ')})`)
    t.ok(run.equal, `run ${k + 1}: output equals the undisturbed run bit for bit`)
  }
})
