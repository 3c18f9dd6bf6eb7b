/**
 * Generation benchmark: seconds per denoising step of `generate` over a
 * local mesh of K = 1 and K = 2 peer processes, with B = 1 and B = 4
 * samples, all measured in one run. With guidance each step is M = 2·B
 * micro-batches; the measured pipeline efficiency is the stages' mean busy
 * fraction (peer-reported compute time / wall time), shown against the
 * ideal M / (M + K − 1). K peers share this machine's cores (each gets
 * cores / K ORT threads), so K = 2 is no faster in raw compute here: the
 * figure of interest is how close the schedule gets to the ideal.
 *
 *   node bench/generate.ts [--model small] [--steps 3] [--json]
 */
import { generate } from '../coordinator/generate.ts'
import { benchArgs, numberFlag } from './args.ts'

const usage = 'node bench/generate.ts [--model small] [--steps 3] [--json]'
const values = benchArgs({
  model: { type: 'string', default: 'small' },
  steps: { type: 'string', default: '3' },
  json: { type: 'boolean', default: false }
}, usage)
const steps = numberFlag(values, 'steps', usage)
const log = (line: string): void => { if (values.json !== true) console.log(line) }

const rows: Array<Record<string, number>> = []
for (const samples of [1, 4]) {
  for (const k of [1, 2]) {
    // --stages K: the pipeline's schedule is the figure (left free, K = 2 would copy the model; replication.ts).
    const r = await generate({ prompt: 'a lighthouse in a storm', model: values.model ?? 'small', steps, guidance: 3, seed: 1, samples, local: k, stages: k })
    const m = 2 * samples
    const efficiency = r.utilisation.reduce((a, b) => a + b, 0) / r.utilisation.length
    const ideal = m / (m + k - 1)
    rows.push({ k, samples, microBatches: m, secondsPerStep: r.secondsPerStep, efficiency, ideal, ratioToIdeal: efficiency / ideal })
    log(`K=${k} B=${samples} M=${m}: ${r.secondsPerStep.toFixed(2)} s/step, stage busy ${r.utilisation.map((u) => (u * 100).toFixed(0) + '%').join('/')}, efficiency ${efficiency.toFixed(2)} vs ideal ${ideal.toFixed(2)} (ratio ${(efficiency / ideal).toFixed(2)})`)
  }
}
for (const samples of [1, 4]) {
  const one = rows.find((r) => r.k === 1 && r.samples === samples)
  const two = rows.find((r) => r.k === 2 && r.samples === samples)
  if (one != null && two != null) log(`B=${samples}: K=2 takes ${(two.secondsPerStep / one.secondsPerStep).toFixed(2)}× the time per step of K=1`)
}
if (values.json === true) console.log(JSON.stringify({ model: values.model, steps, rows }))
