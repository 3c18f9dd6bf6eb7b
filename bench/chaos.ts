/**
 * Churn: R jobs (tiny, no SSR), each over 3 fresh local peer processes, one
 * of which is killed (`kill`: SIGKILL, its connection drops) or stopped
 * (`stop`: SIGSTOP, its connection stays open and only the heartbeats tell)
 * after a random step, a random delay into the next. The plan is the
 * planner's own (two copies of the model on the three peers, for one guided
 * sample) and the peer hit is one that holds a copy. Prints the success rate
 * (the job finished), the bit-exact rate (its video equals the undisturbed
 * reference), and the mean seconds of a disrupted job ÷ an undisturbed job
 * on the same peers just before it (after a 1-step warm-up, so both find the
 * stages loaded): the cost of losing a peer, as a ratio measured in this run.
 *
 *   node bench/chaos.ts [--runs 20] [--mode kill|stop|mixed] [--steps 10] [--max-delay-ms 250] [--seed N] [--json]
 */
import { generate } from '../coordinator/generate.ts'
import { mulberry32 } from '../src/util/prng.ts'
import { chaosRun } from '../test/fixtures/chaos.ts'
import type { Disruption } from '../test/fixtures/chaos.ts'
import type { GenerateOptions } from '../coordinator/generate.ts'
import { benchArgs, numberFlag } from './args.ts'

const usage = 'node bench/chaos.ts [--runs 20] [--mode kill|stop|mixed] [--steps 10] [--max-delay-ms 250] [--seed N] [--json]'
const values = benchArgs({
  runs: { type: 'string', default: '20' },
  mode: { type: 'string', default: 'kill' },
  steps: { type: 'string', default: '10' },
  'max-delay-ms': { type: 'string', default: '250' },
  seed: { type: 'string' },
  json: { type: 'boolean', default: false }
}, usage)
const runs = numberFlag(values, 'runs', usage)
const steps = numberFlag(values, 'steps', usage, { min: 3 })
const maxDelayMs = numberFlag(values, 'max-delay-ms', usage, { min: 0 })
const mode = values.mode
if (!['kill', 'stop', 'mixed'].includes(mode)) {
  console.error(`error: --mode wants kill, stop or mixed\nusage: ${usage}`)
  process.exit(2)
}
const seed = values.seed != null ? numberFlag(values, 'seed', usage, { min: 0 }) : Math.floor(Math.random() * 2 ** 31)
const random = mulberry32(seed)
const job: GenerateOptions = { prompt: 'a kite over a hill', model: 'tiny', steps, guidance: 2, seed: 11, samples: 1, ssr: false, timeoutMs: 60_000 }
const log = (line: string): void => { if (values.json !== true) console.log(line) }

interface Tally { runs: number, finished: number, bitExact: number, seconds: number, baseline: number, recovery: number }
const tally = (): Tally => ({ runs: 0, finished: 0, bitExact: 0, seconds: 0, baseline: 0, recovery: 0 })
const byMode: Record<Disruption, Tally> = { kill: tally(), stop: tally() }

const reference = Buffer.from((await generate({ ...job, local: 1 })).video.data)
for (let k = 0; k < runs; k++) {
  const m: Disruption = mode === 'mixed' ? (random() < 0.5 ? 'kill' : 'stop') : mode as Disruption
  const run = await chaosRun(job, reference, { mode: m, random, maxDelayMs, baseline: true, holders: true })
  const t = byMode[m]
  t.runs++
  if (run.error == null) t.finished++
  if (run.equal) t.bitExact++
  t.seconds += run.seconds
  t.baseline += run.baselineSeconds ?? 0
  t.recovery += run.recoverySeconds ?? 0
  const outcome = run.error != null ? `FAILED (${run.error instanceof Error ? run.error.message : String(run.error)})` : run.equal ? 'bit-exact' : 'DIFFERS'
  log(`job ${k + 1}: ${m} peer ${run.victim + 1} after step ${run.afterStep} +${run.delayMs} ms${run.disrupted ? '' : ' (the job had ended)'}: ${outcome}; ${run.seconds.toFixed(2)} s vs ${run.baselineSeconds?.toFixed(2)} s undisturbed`)
}

const summarize = (t: Tally): Record<string, number> => ({
  runs: t.runs,
  finished: t.finished,
  successRate: t.finished / t.runs,
  bitExact: t.bitExact,
  bitExactRate: t.bitExact / t.runs,
  secondsPerJob: t.seconds / t.runs,
  secondsUndisturbed: t.baseline / t.runs,
  secondsRatio: t.seconds / t.baseline,
  secondsToFinishAfterSignal: t.recovery / t.runs
})
const all = Object.values(byMode).reduce((a, t) => ({ runs: a.runs + t.runs, finished: a.finished + t.finished, bitExact: a.bitExact + t.bitExact, seconds: a.seconds + t.seconds, baseline: a.baseline + t.baseline, recovery: a.recovery + t.recovery }), tally())
const summary = { mode, steps, seed, ...summarize(all), ...(mode === 'mixed' ? Object.fromEntries(Object.entries(byMode).filter(([, t]) => t.runs > 0).map(([m, t]) => [m, summarize(t)])) : {}) }
if (values.json === true) {
  console.log(JSON.stringify(summary))
} else {
  const line = (name: string, s: Record<string, number>): void => {
    console.log(`${name}: ${s.finished}/${s.runs} finished (${(100 * s.successRate).toFixed(0)} %), ${s.bitExact}/${s.runs} bit-exact (${(100 * s.bitExactRate).toFixed(0)} %); ${s.secondsPerJob.toFixed(2)} s per job vs ${s.secondsUndisturbed.toFixed(2)} s undisturbed = ×${s.secondsRatio.toFixed(2)}; done ${s.secondsToFinishAfterSignal.toFixed(2)} s after the signal`)
  }
  line(mode, summarize(all))
  if (mode === 'mixed') for (const m of ['kill', 'stop'] as const) if (byMode[m].runs > 0) line(`  ${m}`, summarize(byMode[m]))
  console.log(`(seed ${seed}: --seed ${seed} draws the same victims, steps and delays)`)
}
