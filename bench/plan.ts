/**
 * Planner benchmark: folded vs contiguous placement of the STUNet base model
 * (shape-only graphs, batch 1), and the simulator's predictions.
 *
 * - folded_bytes_ratio: folded / contiguous wire bytes per denoising step at
 *   K = 4 peers, for the small and paper presets, in two regimes: the
 *   planner's default (1 TFLOP/s peers, links unknown: compute balance only)
 *   and a mesh of 1 TFLOP/s peers on 1 Gb/s links (about libp2p TCP's
 *   throughput on these machines, DESIGN §3), where transfer time counts.
 * - sim: for the paper preset on the peer specs 8x300T@1G and 32x80T@100M
 *   (every peer used, K = N), the simulated seconds per step (M
 *   micro-batches) and bytes on the wire per step of both plans, their
 *   ratios, and the same model on one peer of the spec for reference.
 *
 *   node bench/plan.ts [--micro-batches 2] [--json]
 */
import { partition, partitionAll } from '../coordinator/partition.ts'
import { planBottleneck } from '../coordinator/plan.ts'
import { parsePeersSpec, simulate } from '../coordinator/simulate.ts'
import { buildDag } from '../src/onnx/graph.ts'
import { getPreset } from '../src/model/presets.ts'
import { buildStunet } from '../src/model/stunet.ts'
import type { PeerCapacity, Plan } from '../coordinator/plan.ts'
import type { Dag } from '../src/onnx/dag.ts'
import { benchArgs } from './args.ts'

const values = benchArgs({
  'micro-batches': { type: 'string', default: '2' },
  json: { type: 'boolean', default: false }
}, 'node bench/plan.ts [--micro-batches 2] [--json]')
const M = Number(values['micro-batches'])
if (!Number.isInteger(M) || M < 1) {
  console.error('usage: node bench/plan.ts [--micro-batches 2] [--json]')
  process.exit(2)
}
const log = (line: string): void => { if (values.json !== true) console.log(line) }
const round = (x: number, digits = 4): number => Number(x.toPrecision(digits))

const dags = new Map<string, Dag>()
function dagOf (preset: string): Dag {
  let dag = dags.get(preset)
  if (dag === undefined) {
    dag = buildDag(buildStunet(getPreset(preset), { weights: 'none' }), { dims: { batch: 1 } })
    dags.set(preset, dag)
  }
  return dag
}

function mesh (k: number, speed: number, bandwidth: number): PeerCapacity[] {
  const ids = Array.from({ length: k }, (_, i) => `p${i + 1}`)
  return ids.map(id => ({
    id,
    memoryBytes: Number.MAX_SAFE_INTEGER,
    speed,
    ...(bandwidth > 0 ? { links: Object.fromEntries(ids.filter(x => x !== id).map(x => [x, { bandwidth, latency: 0 }])) } : {})
  }))
}

const K = 4
const regimes = [['compute_only', 0], ['mesh_1T_1G', 125e6]] as const
const ratios: Record<string, Record<string, unknown>> = {}
log(`folded / contiguous bytes per step, K = ${K} (M = ${M})`)
for (const preset of ['small', 'paper']) {
  ratios[preset] = {}
  for (const [regime, bandwidth] of regimes) {
    const started = performance.now()
    const r = partitionAll(dagOf(preset), mesh(K, 1e12, bandwidth), { stages: K, placement: 'auto' })
    const ms = performance.now() - started
    const c = r.contiguous as Plan
    const f = r.folded as Plan
    const ratio = f.totals.wireBytes / c.totals.wireBytes
    ratios[preset][regime] = {
      folded_bytes_ratio: round(ratio),
      contiguous_bytes_per_step: c.totals.wireBytes * M,
      folded_bytes_per_step: f.totals.wireBytes * M,
      contiguous_bottleneck_s: round(planBottleneck(c)),
      folded_bottleneck_s: round(planBottleneck(f)),
      folded_stages: f.stages.length,
      auto: r.chosen === f && f.placement === 'folded' ? 'folded' : 'contiguous',
      plan_ms: Math.round(ms)
    }
    log(`  ${preset.padEnd(6)} ${regime.padEnd(13)} folded_bytes_ratio ${ratio.toFixed(3)}  (${(f.totals.wireBytes * M / 1e6).toFixed(1)} / ${(c.totals.wireBytes * M / 1e6).toFixed(1)} MB per step; bottleneck ${planBottleneck(f).toFixed(3)} / ${planBottleneck(c).toFixed(3)} s; ${Math.round(ms)} ms)`)
  }
}

const sims: Record<string, unknown> = {}
log(`\npaper on peer specs: simulated seconds per step (M = ${M}) and bytes on the wire per step`)
for (const text of ['8x300T@1G', '32x80T@100M']) {
  const spec = parsePeersSpec(text)
  const options = { microBatches: M, coordinatorLink: spec.coordinatorLink ?? undefined }
  const started = performance.now()
  const r = partitionAll(dagOf('paper'), spec.peers, { stages: spec.peers.length, placement: 'auto' })
  const ms = performance.now() - started
  const c = r.contiguous as Plan
  const f = r.folded as Plan
  const sc = simulate(c, spec.peers, options)
  const sf = simulate(f, spec.peers, options)
  const one = simulate(partition(dagOf('paper'), spec.peers, { stages: 1 }), spec.peers, options)
  sims[text] = {
    peers: spec.peers.length,
    contiguous_s_per_step: round(sc.secondsPerStep),
    folded_s_per_step: round(sf.secondsPerStep),
    folded_time_ratio: round(sf.secondsPerStep / sc.secondsPerStep),
    contiguous_bytes_per_step: sc.wireBytesPerStep,
    folded_bytes_per_step: sf.wireBytesPerStep,
    folded_bytes_ratio: round(sf.wireBytesPerStep / sc.wireBytesPerStep),
    folded_stages: f.stages.length,
    busy_peers: sf.peers.filter(p => p.utilisation > 0.01).length,
    one_peer_s_per_step: round(one.secondsPerStep),
    plan_ms: Math.round(ms)
  }
  log(`  ${text.padEnd(12)} contiguous ${sc.secondsPerStep.toFixed(3)} s, ${(sc.wireBytesPerStep / 1e6).toFixed(1)} MB | folded ${sf.secondsPerStep.toFixed(3)} s, ${(sf.wireBytesPerStep / 1e6).toFixed(1)} MB (${f.stages.length} stages) | time ratio ${(sf.secondsPerStep / sc.secondsPerStep).toFixed(3)}, bytes ratio ${(sf.wireBytesPerStep / sc.wireBytesPerStep).toFixed(3)} | one peer ${one.secondsPerStep.toFixed(3)} s | ${Math.round(ms)} ms`)
}

if (values.json === true) console.log(JSON.stringify({ microBatches: M, k: K, folded_bytes_ratio: ratios, sim: sims }))
