/**
 * All the performance figures of the issue in one run (a few minutes on a
 * 2-core machine). Every figure is a ratio measured within this run, so that
 * the machine's speed and load cancel out:
 *
 *   wire_tcp_ratio       tensor channel over libp2p TCP ÷ raw TCP socket, 256 MiB   (bench/transport.ts)
 *   wire_webrtc_gain     tensor channel over WebRTC-direct ÷ default libp2p stream  (bench/transport.ts)
 *   mesh_overhead        generate --local 2 wall time ÷ one process, one ORT session (bench/mesh-overhead.ts)
 *   pipeline_efficiency  stage busy fraction at K = 2, M = 8 ÷ M/(M+K−1)            (bench/mesh-overhead.ts)
 *   folded_bytes_ratio   folded ÷ contiguous wire bytes per step at K = 4, small and paper, same balance (bench/plan.ts)
 *   simulator_error      max |predicted − measured| / measured s/step, real local runs (bench/simulator.ts via bench/plan.ts)
 *
 *   npm run bench -- [--json] [--quick] [--skip transport,mesh,pipeline,plan]
 *
 * --json prints one JSON object on stdout (progress goes to stderr); --quick
 * uses smaller tensors and fewer steps (a smoke run, not the figures).
 */
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { measureMeshOverhead, measurePipelineEfficiency } from './mesh-overhead.ts'
import { measureTransport } from './transport.ts'
import { benchArgs } from './args.ts'

const values = benchArgs({
  json: { type: 'boolean', default: false },
  quick: { type: 'boolean', default: false },
  skip: { type: 'string', default: '' }
}, 'npm run -s bench -- [--json] [--quick] [--skip name,...]')
const skip = new Set(values.skip.split(',').map((s) => s.trim()).filter((s) => s.length > 0))
const quick = values.quick
const say = (line: string): void => { (values.json ? process.stderr : process.stdout).write(line + '\n') }

/** What the issue asks of each figure. */
const TARGETS = {
  wire_tcp_ratio: '>= 0.60',
  wire_webrtc_gain: '>= 2',
  mesh_overhead: '<= 1.15',
  pipeline_efficiency: '>= 0.90',
  folded_bytes_ratio: '<= 0.50 each',
  simulator_error: '<= 0.25'
}

const figures: Record<string, unknown> = {}
const details: Record<string, unknown> = {}
const notes: string[] = []

async function section (name: string, work: () => Promise<void>): Promise<void> {
  if (skip.has(name)) { notes.push(`${name}: skipped (--skip)`); return }
  const started = performance.now()
  try {
    await work()
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err)
    notes.push(`${name}: failed: ${message}`)
    say(`${name} failed: ${message}`)
  }
  say(`(${name}: ${((performance.now() - started) / 1000).toFixed(0)} s)`)
}

await section('transport', async () => {
  say('transport: tensor channel vs raw TCP and vs a default libp2p WebRTC-direct stream')
  const t = await measureTransport({ mib: quick ? 64 : 256, webrtcMib: quick ? 16 : 64, rounds: quick ? 3 : 9, log: say })
  figures.wire_tcp_ratio = t.wire_tcp_ratio
  if (t.wire_webrtc_gain != null) figures.wire_webrtc_gain = t.wire_webrtc_gain
  details.transport = t
})

await section('mesh', async () => {
  say('mesh overhead: generate --model small --local 2 --samples 1 --no-ssr vs one process')
  const m = await measureMeshOverhead({ steps: quick ? 2 : 6, reps: quick ? 1 : 4, log: say })
  figures.mesh_overhead = m.mesh_overhead
  details.mesh = m
})

await section('pipeline', async () => {
  say('pipeline efficiency: K = 2 peers, M = 8 micro-batches per step')
  const p = await measurePipelineEfficiency({ steps: quick ? 1 : 2, samples: 4, k: 2, log: say })
  figures.pipeline_efficiency = p.pipeline_efficiency
  details.pipeline = p
})

await section('plan', async () => {
  const script = fileURLToPath(new URL('./plan.ts', import.meta.url))
  say(`planner and simulator: node bench/plan.ts --json${quick ? ' --quick' : ''}`)
  const out = await runJson(script, ['--json', ...(quick ? ['--quick'] : [])])
  for (const key of ['folded_bytes_ratio', 'simulator_error']) {
    if (key in out) figures[key] = out[key]
    else notes.push(`plan: bench/plan.ts reports no ${key}`)
  }
  details.plan = out
})

/** Runs a bench script with this Node and parses the last line of its stdout as JSON. */
async function runJson (script: string, args: string[]): Promise<Record<string, unknown>> {
  const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
  let stdout = ''
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  const code = await new Promise<number | null>((resolve, reject) => { child.once('exit', resolve); child.once('error', reject) })
  if (code !== 0) throw new Error(`${script} exited with code ${code}`)
  const last = stdout.trim().split('\n').pop() ?? ''
  return JSON.parse(last) as Record<string, unknown>
}

const result = { ...figures, targets: TARGETS, quick, node: process.version, ...(notes.length > 0 ? { notes } : {}), details }
if (values.json) {
  console.log(JSON.stringify(result))
} else {
  say('')
  for (const [key, target] of Object.entries(TARGETS)) {
    const value = figures[key]
    if (value !== undefined) say(`${key.padEnd(20)} ${(typeof value === 'object' ? JSON.stringify(value) : String(value)).padStart(7)}   (target ${target})`)
  }
  for (const n of notes) say(`note: ${n}`)
}
// Libp2p and ORT may leave handles (timers, native threads) behind: the figures are out, stop here.
process.exit(0)
