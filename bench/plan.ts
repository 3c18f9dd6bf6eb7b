/**
 * Planner benchmark: folded vs contiguous placement of the STUNet base model
 * (shape-only graphs, batch 1), the simulator's predictions for the paper
 * preset on big meshes, and the simulator checked against real runs.
 *
 * - folded_bytes_ratio (per preset, small and paper): folded ÷ contiguous
 *   wire bytes per denoising step at K = 4 equal peers under the planner's
 *   compute-balance rule (links unknown; each plan's bottleneck within
 *   --balance, default 0.1, of the best plan of either kind, then the fewest
 *   bytes; coordinator/partition.ts). Shown with the bottleneck ratio (is the
 *   folded plan still a good plan?), the share of the FLOPs at full
 *   resolution (in/, down0/, up0/, out/), and both ratios at balances 0,
 *   0.05, 0.25 and 0.5 (at 0 and 0.05 the contiguous plan cannot get that
 *   close to the folded one's bottleneck and shows its fastest; the folded
 *   plan then buys balance, not bytes). Why the share matters: folding keeps a skip
 *   local only when a level's encoder and decoder halves share a peer, so
 *   while the full-resolution level holds more than ~1/K of the FLOPs a
 *   balanced plan must split it over several peers, and each split sends a
 *   full-resolution activation either way.
 * - sim: the paper preset on 8x300T@1G and 32x80T@100M (every peer used),
 *   simulated seconds and bytes per step of both plans, and one peer alone.
 * - simulator_error: bench/simulator.ts (real generations on a local mesh
 *   vs the simulator's prediction for the same plans); --skip-simulator
 *   leaves it out, --quick runs B = 1 only, one round.
 *
 *   node bench/plan.ts [--micro-batches 2] [--balance 0.1] [--quick] [--skip-simulator] [--json]
 */
import { DEFAULT_BALANCE, partition, partitionAll } from '../coordinator/partition.ts'
import { planBottleneck } from '../coordinator/plan.ts'
import { parsePeersSpec, simulate } from '../coordinator/simulate.ts'
import { buildDag } from '../src/onnx/graph.ts'
import { getPreset } from '../src/model/presets.ts'
import { buildStunet } from '../src/model/stunet.ts'
import type { PeerCapacity, Plan } from '../coordinator/plan.ts'
import type { Dag } from '../src/onnx/dag.ts'
import { benchArgs, numberFlag } from './args.ts'
import { measureSimulatorError } from './simulator.ts'

const USAGE = 'node bench/plan.ts [--micro-batches 2] [--balance 0.1] [--quick] [--skip-simulator] [--json]'
const values = benchArgs({
  'micro-batches': { type: 'string', default: '2' },
  balance: { type: 'string', default: String(DEFAULT_BALANCE) },
  quick: { type: 'boolean', default: false },
  'skip-simulator': { type: 'boolean', default: false },
  json: { type: 'boolean', default: false }
}, USAGE)
const M = numberFlag(values, 'micro-batches', USAGE)
const balance = numberFlag(values, 'balance', USAGE, { min: 0, real: true })
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

/** Share of the FLOPs in the full-resolution level (STUNet node names, src/model/stunet.ts). */
function fullResolutionShare (dag: Dag): number {
  let full = 0
  let total = 0
  for (const node of dag.nodes) {
    total += node.flops
    if (/^(in|out|down0|up0)\//.test(node.name)) full += node.flops
  }
  return full / total
}

function equalPeers (k: number): PeerCapacity[] {
  return Array.from({ length: k }, (_, i) => ({ id: `p${i + 1}`, memoryBytes: Number.MAX_SAFE_INTEGER, speed: 1e12 }))
}

const K = 4
const OTHER_BALANCES = [0, 0.05, 0.25, 0.5]
const ratios: Record<string, number> = {}
const presets: Record<string, unknown> = {}
log(`folded / contiguous bytes per step, K = ${K} equal peers, links unknown, balance ${balance} (M = ${M})`)
for (const preset of ['small', 'paper']) {
  const dag = dagOf(preset)
  const started = performance.now()
  const r = partitionAll(dag, equalPeers(K), { stages: K, placement: 'auto', balance })
  const ms = performance.now() - started
  const c = r.contiguous as Plan
  const f = r.folded as Plan
  const ratio = f.totals.wireBytes / c.totals.wireBytes
  const others: Record<string, { bytes_ratio: number, bottleneck_ratio: number }> = {}
  for (const b of OTHER_BALANCES) {
    const x = partitionAll(dag, equalPeers(K), { stages: K, placement: 'auto', balance: b })
    const xc = x.contiguous as Plan
    const xf = x.folded as Plan
    others[String(b)] = { bytes_ratio: round(xf.totals.wireBytes / xc.totals.wireBytes), bottleneck_ratio: round(planBottleneck(xf) / planBottleneck(xc)) }
  }
  const share = fullResolutionShare(dag)
  ratios[preset] = round(ratio)
  presets[preset] = {
    folded_bytes_ratio: round(ratio),
    folded_bottleneck_ratio: round(planBottleneck(f) / planBottleneck(c)),
    contiguous_bytes_per_step: c.totals.wireBytes * M,
    folded_bytes_per_step: f.totals.wireBytes * M,
    contiguous_bottleneck_s: round(planBottleneck(c)),
    folded_bottleneck_s: round(planBottleneck(f)),
    ideal_bottleneck_s: round(c.totals.flops / K / 1e12),
    folded_stages: f.stages.length,
    auto: r.chosen === f && f.placement === 'folded' ? 'folded' : 'contiguous',
    full_resolution_flops_share: round(share, 3),
    other_balances: others,
    plan_ms: Math.round(ms)
  }
  log(`  ${preset.padEnd(6)} folded_bytes_ratio ${ratio.toFixed(3)} (${(f.totals.wireBytes * M / 1e6).toFixed(1)} / ${(c.totals.wireBytes * M / 1e6).toFixed(1)} MB per step); bottleneck ${planBottleneck(f).toFixed(4)} / ${planBottleneck(c).toFixed(4)} s (${(planBottleneck(f) / planBottleneck(c)).toFixed(3)}x, ideal ${(c.totals.flops / K / 1e12).toFixed(4)} s); full resolution holds ${(share * 100).toFixed(0)} % of the FLOPs vs 1/K = ${(100 / K).toFixed(0)} %`)
  log(`         other balances: ${OTHER_BALANCES.map(b => `${b}: ${others[String(b)].bytes_ratio.toFixed(3)} (bottleneck ${others[String(b)].bottleneck_ratio.toFixed(3)}x)`).join(', ')}`)
}

const sims: Record<string, unknown> = {}
log(`\npaper on peer specs: simulated seconds per step (M = ${M}) and bytes on the wire per step`)
for (const text of ['8x300T@1G', '32x80T@100M']) {
  const spec = parsePeersSpec(text)
  const options = { microBatches: M, coordinatorLink: spec.coordinatorLink ?? undefined }
  const started = performance.now()
  const r = partitionAll(dagOf('paper'), spec.peers, { stages: spec.peers.length, placement: 'auto', balance })
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
    one_peer_s_per_step: round(one.secondsPerStep),
    folded_time_ratio: round(sf.secondsPerStep / sc.secondsPerStep),
    contiguous_bytes_per_step: sc.wireBytesPerStep,
    folded_bytes_per_step: sf.wireBytesPerStep,
    folded_bytes_ratio: round(sf.wireBytesPerStep / sc.wireBytesPerStep),
    folded_stages: f.stages.length,
    busy_peers: sf.peers.filter(p => p.utilisation > 0.01).length,
    plan_ms: Math.round(ms)
  }
  log(`  ${text.padEnd(12)} contiguous ${sc.secondsPerStep.toFixed(3)} s, ${(sc.wireBytesPerStep / 1e6).toFixed(1)} MB | folded ${sf.secondsPerStep.toFixed(3)} s, ${(sf.wireBytesPerStep / 1e6).toFixed(1)} MB (${f.stages.length} stages, ${sf.peers.filter(p => p.utilisation > 0.01).length} peers busy) | one peer ${one.secondsPerStep.toFixed(3)} s | ${Math.round(ms)} ms`)
}

let simulator: Awaited<ReturnType<typeof measureSimulatorError>> | undefined
if (values['skip-simulator'] !== true) {
  log('\nsimulator vs real runs (bench/simulator.ts): generate --model small --local K --no-ssr')
  simulator = await measureSimulatorError({ samples: values.quick === true ? [1] : [1, 4], rounds: values.quick === true ? 1 : 2, log })
  log(`simulator_error ${simulator.simulator_error} (max |predicted − measured| / measured over ${simulator.runs.length} configurations; mean ${simulator.mean_error})${simulator.quiet ? '' : '; NOT quiet: other work on the machine skewed some configurations'}`)
}

if (values.json === true) {
  console.log(JSON.stringify({
    folded_bytes_ratio: ratios,
    ...(simulator !== undefined ? { simulator_error: simulator.simulator_error } : {}),
    microBatches: M,
    k: K,
    balance,
    presets,
    sim: sims,
    ...(simulator !== undefined ? { simulator } : {})
  }))
}
// ORT and libp2p may leave handles behind: the figures are out.
process.exit(0)
