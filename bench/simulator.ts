/**
 * The simulator checked against real runs: seconds per denoising step that
 * coordinator/simulate.ts predicts for the plans `generate` really ran,
 * against the measured ones, on a local mesh of K = 1 and K = 2 peer
 * processes, with B = 1 and B = 4 samples (M = 2B micro-batches: both
 * guidance branches), small preset, no SSR, one step per generation.
 *
 * The simulator takes peer speeds (FLOP/s) and links as inputs; here they
 * are measured on the same mesh:
 *
 * - Link: a probe pipeline, a chain of K `Neg` nodes cut into K stages (one
 *   per peer), run with a 4-byte and with a 16 MiB tensor: K + 1 messages
 *   each (coordinator → peer 1 → … → peer K → coordinator), so latency =
 *   t(4 B) / (K + 1) and bandwidth = (K + 1) × 16 MiB / (t(16 MiB) − t(4 B)).
 *   It goes through the very path activations take (rpc, tensor frames,
 *   worker hand-over), so per-message costs land in the latency.
 * - Speed: ORT's throughput differs from a FLOP count by op type and shape
 *   (a peer's capability figure, a small MatMul, says 2-5x more than a
 *   STUNet stage gets), so the speed is calibrated on the real op mix: for
 *   a run of M micro-batches, a generation that makes the same M forward
 *   passes ONE at a time (guidance 1, M steps: no pipelining, the stages
 *   run one after another), speed = M × the plan's FLOPs ÷ (its base-phase
 *   time − the simulated transfer time of those passes). It lasts as long
 *   as the run it predicts, because under load a short run gets more of the
 *   CPU than a long one (the scheduler favours a process that slept). The
 *   K peers of one machine get the same speed (same cores / K threads).
 *
 * So the pipelined runs (one step of M = 2 and M = 8 micro-batches) are
 * predicted out of sample: the pipelining (bubbles, overlap of compute and
 * transfers, each peer one run at a time) is what is tested. A warm-up
 * generation first loads the stages' sessions (they stay loaded on the
 * peers, so later runs of the same plan are warm). Then `rounds` rounds of
 * calibration and measurement, in alternating order. This measures
 * absolute times, which other work on the machine skews (a shared 2-core
 * machine at load 6 makes one forward pass 1.2 s or 4.4 s from one minute
 * to the next), so the CPU time other processes used during each run is
 * taken from /proc (machine busy time less this bench's and its peers'),
 * and a round counts as quiet when that stayed under QUIET_CORES during
 * both of its runs and both ran warm sessions (each generation measures
 * the links anew, and a different measure can move the cut: the first
 * passes of a new plan load its sessions). Per configuration, the median over the quiet rounds
 * (all rounds when none was quiet, flagged quiet: false) of
 * (predicted − measured) / measured, and
 *   simulator_error = max over the configurations of its absolute value
 * (the mean is reported too). Peers share this machine's cores (cores / K
 * ORT threads each), as in bench/generate.ts.
 *
 *   node bench/simulator.ts [--model small] [--rounds 2] [--json]
 */
import { readFileSync } from 'node:fs'
import { loadavg } from 'node:os'
import { Coordinator } from '../coordinator/coordinator.ts'
import { deploy } from '../coordinator/deploy.ts'
import { generate } from '../coordinator/generate.ts'
import { startLocalMesh } from '../coordinator/local-mesh.ts'
import { simulate } from '../coordinator/simulate.ts'
import { GraphBuilder } from '../src/onnx/builder.ts'
import { buildDag } from '../src/onnx/graph.ts'
import type { LinkSpeed, PeerCapacity, Plan } from '../coordinator/plan.ts'
import type { PeerInfo } from '../coordinator/coordinator.ts'
import { median, PROMPT } from './mesh-overhead.ts'
import { benchArgs, numberFlag } from './args.ts'

const GUIDANCE = 3
const SEED = 1
const PROBE_BYTES = 16 * 2 ** 20
/** A round is quiet when other work on the machine kept at most this many cores busy (on average) during its runs. */
const QUIET_CORES = 0.25

export interface SimulatorRun {
  k: number
  samples: number
  micro_batches: number
  measured_s_per_step: number
  predicted_s_per_step: number
  /** Median over the rounds used of (predicted − measured) / measured. */
  error: number
  /** Rounds used: the quiet ones (other work below QUIET_CORES during the run and its calibration, both on warm sessions), or all when none was. */
  rounds_used: number
  quiet: boolean
  /** Per round used: the most cores other work kept busy during the run or its calibration. */
  foreign_cores: number[]
  stages: number
  placement: string
}

export interface SimulatorCheck {
  /** max |predicted − measured| / measured over the runs. */
  simulator_error: number
  mean_error: number
  /** Every configuration had a quiet round: the figure is the model's error, not the machine's load. */
  quiet: boolean
  model: string
  rounds: number
  /** The machine's 1-minute load average before and after (other work skews every absolute time). */
  load_average: number[]
  /** Per K: the calibrated speed (GFLOP/s per peer) and the probed link. */
  calibration: Array<{ k: number, gflops: number, bandwidth_mb_s: number, latency_ms: number, pass_s: number }>
  runs: SimulatorRun[]
}

/** Median wall seconds of `reps` runs of a chain of K `Neg` nodes on n floats, one node per peer. */
async function probeSeconds (coordinator: Coordinator, peers: PeerInfo[], n: number, reps: number): Promise<number> {
  const g = new GraphBuilder('probe')
  let h = g.input('x', 'F32', [n])
  for (let i = 0; i < peers.length; i++) h = g.op('Neg', [h], {}, i === peers.length - 1 ? 'y' : undefined)
  g.output(h, 'F32', [n])
  const model = g.model()
  const { pipeline } = await deploy(coordinator, model, buildDag(model), peers, peers.length)
  try {
    const times: number[] = []
    for (let i = 0; i <= reps; i++) {
      const started = performance.now()
      await pipeline.run({ x: { dtype: 'F32', shape: [n], data: new Uint8Array(n * 4) } })
      // The first run warms the sessions up.
      if (i > 0) times.push((performance.now() - started) / 1000)
    }
    return median(times)
  } finally {
    await pipeline.close()
  }
}

/** The link of the mesh's tensor path, from probe pipelines (see the header). */
async function probeLink (addrs: string[]): Promise<LinkSpeed> {
  const coordinator = await Coordinator.start({})
  try {
    const peers = await coordinator.connect(addrs)
    const small = await probeSeconds(coordinator, peers, 1, 7)
    const big = await probeSeconds(coordinator, peers, PROBE_BYTES / 4, 5)
    const messages = peers.length + 1
    return { bandwidth: messages * PROBE_BYTES / Math.max(big - small, 1e-6), latency: small / messages }
  } finally {
    await coordinator.stop()
  }
}

/** Clock ticks per second of /proc's CPU times (USER_HZ; 100 on Linux). */
const TICKS = 100

/** CPU seconds used so far by the whole machine and by this bench's processes (this one and `pids`); null without /proc. */
function cpuSeconds (pids: number[]): { machine: number, ours: number } | null {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
    // user nice system idle iowait irq softirq steal: all but idle and iowait are busy.
    const machine = fields.slice(0, 8).reduce((a, b) => a + b, 0) - fields[3] - fields[4]
    let ours = 0
    for (const pid of pids) {
      // utime and stime are fields 14 and 15; the command (field 2) may hold spaces, so count after its ')'.
      const rest = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
      ours += Number(rest[11]) + Number(rest[12])
    }
    const self = process.cpuUsage()
    return { machine: machine / TICKS, ours: ours / TICKS + (self.user + self.system) / 1e6 }
  } catch {
    return null
  }
}

interface Timed { seconds: number, plan: Plan, /** Cores other work on the machine kept busy meanwhile (NaN without /proc). */ foreign: number }

/** Base-phase seconds of a generation over the mesh at `addrs`, the plan it ran, and the foreign load meanwhile. */
async function generation (model: string, addrs: string[], pids: number[], o: { samples: number, guidance: number, steps: number }): Promise<Timed> {
  const before = cpuSeconds(pids)
  const started = performance.now()
  // --stages K: the pipeline the simulator models (left free, the planner may copy the model instead; replication.ts).
  const r = await generate({ prompt: PROMPT, model, seed: SEED, peers: addrs, stages: addrs.length, ssr: false, ...o })
  const wall = (performance.now() - started) / 1000
  const after = cpuSeconds(pids)
  const foreign = before === null || after === null ? NaN : Math.max(0, (after.machine - before.machine) - (after.ours - before.ours)) / wall
  return { seconds: r.secondsPerStep * o.steps, plan: r.plan, foreign }
}

function peersOf (plan: Plan, speed: number): PeerCapacity[] {
  return [...new Set(plan.stages.map((s) => s.peer))].map((id) => ({ id, memoryBytes: Number.MAX_SAFE_INTEGER, speed }))
}

/** Stage node lists: two runs with the same key ran the same stages (their sessions stay warm on the peers). */
function planKey (plan: Plan): string {
  return JSON.stringify(plan.stages.map((s) => [s.peer, s.nodes]))
}

export async function measureSimulatorError (o: { model?: string, ks?: number[], samples?: number[], rounds?: number, log?: (line: string) => void } = {}): Promise<SimulatorCheck> {
  const model = o.model ?? 'small'
  const log = o.log ?? (() => {})
  const rounds = o.rounds ?? 2
  const loadBefore = loadavg()[0]
  const calibration: SimulatorCheck['calibration'] = []
  const runs: SimulatorRun[] = []
  for (const k of o.ks ?? [1, 2]) {
    const mesh = await startLocalMesh(k)
    try {
      const addrs = mesh.peers.map((p) => p.addrs.find((a) => a.includes('/tcp/')) ?? p.addrs[0])
      const link = await probeLink(addrs)
      const options = (m: number): { microBatches: number, defaultLink: LinkSpeed, coordinatorLink: LinkSpeed } => ({ microBatches: m, defaultLink: link, coordinatorLink: link })
      const pids = mesh.peers.flatMap((p) => p.process.pid === undefined ? [] : [p.process.pid])
      const rows = new Map<number, Array<{ measured: number, predicted: number, error: number, foreign: number, warm: boolean, plan: Plan }>>()
      const speeds: number[] = []
      const passes: number[] = []
      // Plans whose stages the peers have loaded and run: another run of one is warm.
      const seen = new Set<string>()
      const warm = (t: Timed): boolean => { const key = planKey(t.plan); const was = seen.has(key); seen.add(key); return was }
      // The calibration for M micro-batches makes the same M forward passes
      // one at a time (guidance 1, M steps), so that it lasts as long as the
      // run it predicts: under load, a short run gets more of the CPU than a
      // long one (the scheduler favours a process that slept).
      const calibrate = async (m: number): Promise<Timed & { speed: number }> => {
        const cal = await generation(model, addrs, pids, { samples: 1, guidance: 1, steps: m })
        const wire = m * simulate(cal.plan, peersOf(cal.plan, Number.MAX_VALUE), options(1)).secondsPerStep
        passes.push(cal.seconds / m)
        return { ...cal, speed: m * cal.plan.totals.flops / Math.max(cal.seconds - wire, 1e-6) }
      }
      // Loads and warms the stages' sessions; its time is not used.
      warm(await generation(model, addrs, pids, { samples: 1, guidance: 1, steps: 1 }))
      for (let round = 0; round < rounds; round++) {
        for (const samples of o.samples ?? [1, 4]) {
          const m = 2 * samples
          // The order alternates between rounds, so that a drift in the load favours neither.
          const measure = async (): Promise<Timed> => generation(model, addrs, pids, { samples, guidance: GUIDANCE, steps: 1 })
          let r: Timed
          let cal: Timed & { speed: number }
          if (round % 2 === 0) { cal = await calibrate(m); r = await measure() } else { r = await measure(); cal = await calibrate(m) }
          // Runs in order: a plan first seen in the later one is warm there only if the earlier one ran it.
          const [first, second] = round % 2 === 0 ? [cal, r] : [r, cal]
          const clean = [warm(first), warm(second)].every(Boolean)
          speeds.push(cal.speed)
          const predicted = simulate(r.plan, peersOf(r.plan, cal.speed), options(m)).secondsPerStep
          const foreign = Math.max(cal.foreign, r.foreign)
          const list = rows.get(samples) ?? []
          list.push({ measured: r.seconds, predicted, error: (predicted - r.seconds) / r.seconds, foreign, warm: clean, plan: r.plan })
          rows.set(samples, list)
          log(`  K=${k} round ${round + 1} B=${samples} M=${m}: ${m} passes one at a time ${cal.seconds.toFixed(2)} s (${(cal.speed / 1e9).toFixed(1)} GFLOP/s per peer); pipelined step measured ${r.seconds.toFixed(2)} s, predicted ${predicted.toFixed(2)} s (${signed(predicted / r.seconds - 1)}); other work kept ${foreign.toFixed(2)} cores busy${clean ? '' : '; a new plan (re-measured links): cold sessions'}`)
        }
      }
      calibration.push({ k, gflops: round(median(speeds) / 1e9), bandwidth_mb_s: round(link.bandwidth / 1e6), latency_ms: round(link.latency * 1e3), pass_s: round(median(passes)) })
      log(`  K=${k}: link ${(link.bandwidth / 1e6).toFixed(0)} MB/s, ${(link.latency * 1e3).toFixed(2)} ms per message; ${(median(speeds) / 1e9).toFixed(1)} GFLOP/s per peer`)
      for (const [samples, list] of rows) {
        // Rounds that other work disturbed, or that loaded new sessions, say nothing about the model: use the quiet, warm ones when there are any.
        const quiet = list.filter((x) => x.warm && !(x.foreign > QUIET_CORES))
        const used = quiet.length > 0 ? quiet : list
        runs.push({
          k,
          samples,
          micro_batches: 2 * samples,
          measured_s_per_step: round(median(used.map((x) => x.measured))),
          predicted_s_per_step: round(median(used.map((x) => x.predicted))),
          error: round(median(used.map((x) => x.error))),
          rounds_used: used.length,
          quiet: quiet.length > 0,
          foreign_cores: used.map((x) => round(x.foreign)),
          stages: used[0].plan.stages.length,
          placement: used[0].plan.placement ?? 'contiguous'
        })
      }
    } finally {
      await mesh.stop()
    }
  }
  const errors = runs.map((r) => Math.abs(r.error))
  return {
    simulator_error: round(Math.max(...errors)),
    mean_error: round(errors.reduce((a, b) => a + b, 0) / errors.length),
    quiet: runs.every((r) => r.quiet),
    model,
    rounds,
    load_average: [round(loadBefore), round(loadavg()[0])],
    calibration,
    runs
  }
}

function signed (x: number): string {
  return `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)} %`
}

function round (x: number): number {
  return Number(x.toPrecision(4))
}

if (import.meta.main) {
  const usage = 'node bench/simulator.ts [--model small] [--rounds 2] [--json]'
  const values = benchArgs({
    model: { type: 'string', default: 'small' },
    rounds: { type: 'string', default: '2' },
    json: { type: 'boolean', default: false }
  }, usage)
  const rounds = numberFlag(values, 'rounds', usage)
  const log = (line: string): void => { if (values.json !== true) console.log(line) }
  log(`simulator vs real runs: generate --model ${values.model} --local K --no-ssr, K = 1, 2; B = 1, 4`)
  const r = await measureSimulatorError({ model: values.model, rounds, log })
  log(`simulator_error ${r.simulator_error} (max |predicted − measured| / measured; mean ${r.mean_error})${r.quiet ? '' : '; NOT quiet: other work on the machine skewed some configurations'}`)
  if (values.json === true) console.log(JSON.stringify(r))
  // ORT and libp2p may leave handles behind: the figures are out.
  process.exit(0)
}
