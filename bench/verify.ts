/**
 * Verification catch rate: R base-model jobs (tiny, no SSR) over 3 local
 * peers, one of which lies (`lumiere peer --faulty p`: noise of 1e-2·max|x|
 * on a stage run's outputs with probability p), each with `--verify RATE`.
 * Prints how many jobs caught the liar, whether every caught job still
 * equals the honest reference bit for bit (the rollback's promise), and how
 * many uncaught jobs let a lie into the video. With --samples 2 the planner
 * runs copies of the model on all three peers (4 passes a step); with
 * --stages 3, a pipeline whatever the samples.
 *
 *   node bench/verify.ts [--runs 20] [--rate 0.25] [--faulty 0.5] [--steps 6] [--samples 1] [--stages K] [--json]
 */
import { generate } from '../coordinator/generate.ts'
import { startLocalMesh } from '../coordinator/local-mesh.ts'
import type { GenerateOptions, GenerateResult } from '../coordinator/generate.ts'
import { benchArgs, numberFlag } from './args.ts'

const usage = 'node bench/verify.ts [--runs 20] [--rate 0.25] [--faulty 0.5] [--steps 6] [--samples 1] [--stages K] [--json]'
const values = benchArgs({
  runs: { type: 'string', default: '20' },
  rate: { type: 'string', default: '0.25' },
  faulty: { type: 'string', default: '0.5' },
  steps: { type: 'string', default: '6' },
  samples: { type: 'string', default: '1' },
  stages: { type: 'string' },
  json: { type: 'boolean', default: false }
}, usage)
const runs = numberFlag(values, 'runs', usage)
const rate = numberFlag(values, 'rate', usage, { min: 0, real: true })
const faulty = numberFlag(values, 'faulty', usage, { min: 0, real: true })
const job: GenerateOptions = { prompt: 'a kite over a hill', model: 'tiny', steps: numberFlag(values, 'steps', usage), guidance: 2, seed: 11, samples: numberFlag(values, 'samples', usage), ...(values.stages != null ? { stages: numberFlag(values, 'stages', usage) } : {}), ssr: false, timeoutMs: 60_000 }
const same = (a: GenerateResult, b: GenerateResult): boolean => Buffer.from(a.video.data).equals(Buffer.from(b.video.data))
const log = (line: string): void => { if (values.json !== true) console.log(line) }

const mesh = await startLocalMesh(3, { extraArgs: (i) => i === 2 ? ['--faulty', String(faulty)] : [] })
const addrs = mesh.peers.map((p) => p.addrs[0])
const liar = addrs[2].split('/p2p/')[1]
let caught = 0
let caughtEqual = 0
let spoiled = 0
let rollbacks = 0
let stepsRedone = 0
let checks = 0
let seconds = 0
try {
  const reference = await generate({ ...job, peers: [addrs[0]] })
  let started = performance.now()
  await generate({ ...job, peers: addrs })
  const unverified = (performance.now() - started) / 1000
  for (let k = 0; k < runs; k++) {
    started = performance.now()
    const result = await generate({ ...job, peers: addrs, verify: rate })
    const s = (performance.now() - started) / 1000
    seconds += s
    const report = result.verification?.base
    const equal = same(result, reference)
    const hit = report?.liars.find((e) => e.peer === liar)
    checks += report?.checks ?? 0
    rollbacks += report?.rollbacks ?? 0
    stepsRedone += report?.stepsRedone ?? 0
    if (hit != null) {
      caught++
      if (equal) caughtEqual++
    } else if (!equal) {
      spoiled++
    }
    log(`job ${k + 1} (${result.plan.placement === 'replicated' ? 'copies' : 'pipeline'}): ${hit != null ? `caught at step ${hit.step + 1}, stage ${hit.stage ?? '?'}` : 'not caught'}; ${report?.checks ?? 0} checks, ${report?.rollbacks ?? 0} rollback(s) (${report?.stepsRedone ?? 0} finished step(s) discarded); ${equal ? 'equals' : 'DIFFERS FROM'} the reference; ${s.toFixed(2)} s`)
  }
  const summary = {
    runs,
    rate,
    faulty,
    steps: job.steps,
    samples: job.samples,
    stages: job.stages ?? null,
    caught,
    catchRate: caught / runs,
    caughtEqualReference: caughtEqual,
    uncaughtSpoiled: spoiled,
    rollbacks,
    stepsRedone,
    checksPerJob: checks / runs,
    secondsPerJob: seconds / runs,
    secondsUnverified: unverified
  }
  if (values.json === true) {
    console.log(JSON.stringify(summary))
  } else {
    console.log(`caught the liar in ${caught}/${runs} jobs (${(100 * caught / runs).toFixed(0)}%) at --verify ${rate}, --faulty ${faulty}; ${caughtEqual}/${caught} caught jobs equal the honest reference bit for bit`)
    console.log(`uncaught jobs with a lie in the video: ${spoiled}; rollbacks ${rollbacks} (${stepsRedone} finished steps discarded); ${(seconds / runs).toFixed(2)} s/job verified vs ${unverified.toFixed(2)} s unverified`)
  }
} finally {
  await mesh.stop()
}
