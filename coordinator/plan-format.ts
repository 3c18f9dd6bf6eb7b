import type { Dag } from '../src/onnx/dag.ts'
import { planBottleneck } from './plan.ts'
import type { Plan, StagePlan } from './plan.ts'
import type { Simulation } from './simulate.ts'

/** Bytes in binary units: "512 B", "1.50 KiB", "12.3 MiB", "140 GiB". */
export function formatBytes (bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']
  let x = bytes
  let u = 0
  while (Math.abs(x) >= 1024 && u < units.length - 1) { x /= 1024; u++ }
  if (u === 0) return `${Math.round(x)} B`
  return `${sig(x)} ${units[u]}`
}

/** Floating-point operations in decimal units: "950 FLOP", "1.20 MFLOP", "34.5 GFLOP". */
export function formatFlops (flops: number): string {
  const units = ['FLOP', 'kFLOP', 'MFLOP', 'GFLOP', 'TFLOP', 'PFLOP']
  let x = flops
  let u = 0
  while (Math.abs(x) >= 1000 && u < units.length - 1) { x /= 1000; u++ }
  if (u === 0) return `${Math.round(x)} FLOP`
  return `${sig(x)} ${units[u]}`
}

/** A duration: milliseconds below one second ("0.52 ms", "23.0 ms", "750 ms"), else seconds ("1.25 s", "3600 s"). */
export function formatTime (seconds: number): string {
  const ms = seconds * 1000
  if (ms === 0) return '0 ms'
  if (ms < 0.9995) return `${sig(ms * 1000)} µs`
  if (ms < 999.5) return ms >= 100 ? `${Math.round(ms)} ms` : `${sig(ms)} ms`
  return seconds >= 100 ? `${Math.round(seconds)} s` : `${sig(seconds)} s`
}

function sig (x: number): string {
  const a = Math.abs(x)
  return x.toFixed(a >= 100 ? 0 : a >= 10 ? 1 : 2)
}

function stageLabel (s: number | 'input' | 'output'): string {
  return s === 'input' ? 'input' : s === 'output' ? 'output' : String(s + 1)
}

function shorten (text: string, max: number): string {
  return text.length <= max ? text : '…' + text.slice(text.length - max + 1)
}

function nodeLabel (dag: Dag | undefined, index: number): string {
  const node = dag?.nodes[index]
  if (node === undefined) return `#${index}`
  return shorten(node.name !== '' ? node.name : `${node.opType}#${index}`, 28)
}

function span (stage: StagePlan, dag?: Dag): string {
  if (stage.nodes.length === 0) return '-'
  const first = stage.nodes[0]
  const last = stage.nodes[stage.nodes.length - 1]
  if (first === last) return nodeLabel(dag, first)
  return `${nodeLabel(dag, first)} → ${nodeLabel(dag, last)}`
}

function table (rows: string[][], right: boolean[]): string[] {
  const widths = rows[0].map((_, c) => Math.max(...rows.map(r => r[c].length)))
  return rows.map(r => r.map((cell, c) => right[c] ? cell.padStart(widths[c]) : cell.padEnd(widths[c])).join('  ').trimEnd())
}

/**
 * A human table of a plan for `lumiere plan`: one row per stage (peer, node
 * count, first → last node, compute, parameters, estimated time, bytes in
 * and out per forward pass), then the route (and, when a peer holds several
 * stages, the peers it visits), the wire total and each boundary (`local`:
 * between two stages of one peer, not on the wire). Stages are numbered from
 * 1 here. With the Dag, nodes are shown by name; without it, by index. Times
 * are flops / peer speed (seconds when speed is in FLOP/s) plus transfer
 * time over known links; the bottleneck is the busiest peer's sum. A
 * replicated plan's rows are copies of the model, not a route.
 */
export function formatPlan (plan: Plan, dag?: Dag): string {
  const rows: string[][] = [['stage', 'peer', 'nodes', 'first → last', 'compute', 'params', 'peak act.', 'est. time', 'in', 'out']]
  for (const s of plan.stages) {
    let inBytes = 0
    for (const x of s.inputs) inBytes += x.bytes
    let outBytes = 0
    for (const o of s.outputs) outBytes += o.bytes * o.to.length
    rows.push([
      stageLabel(s.index),
      shorten(s.peer, 20),
      String(s.nodes.length),
      span(s, dag),
      formatFlops(s.flops),
      formatBytes(s.paramBytes),
      formatBytes(s.peakActivationBytes),
      formatTime(s.estSeconds),
      formatBytes(inBytes),
      formatBytes(outBytes)
    ])
  }
  const lines = table(rows, [true, false, true, false, true, true, true, true, true, true])

  let fromInput = 0
  let toOutput = 0
  let between = 0
  let local = 0
  for (const b of plan.boundaries) {
    if (b.local === true) local += b.bytes
    else if (b.from === 'input') fromInput += b.bytes
    else if (b.to === 'output') toOutput += b.bytes
    else between += b.bytes
  }
  const bottleneck = planBottleneck(plan)
  lines.push('')
  if (plan.placement === 'replicated') {
    lines.push(`copies: the whole model on each of ${plan.stages.length} peers; a forward pass runs on one of them (replicated)`)
  } else {
    lines.push(`route: ${plan.route.map(r => stageLabel(r)).join(' → ')}`)
  }
  if (new Set(plan.stages.map(s => s.peer)).size < plan.stages.length) {
    lines.push(`peers: ${plan.route.map(r => shorten(plan.stages[r].peer, 12)).join(' → ')} (${plan.placement ?? 'contiguous'})`)
  }
  lines.push(`total: ${formatFlops(plan.totals.flops)}, params ${formatBytes(plan.totals.paramBytes)}, bottleneck ${formatTime(bottleneck)} (est.)`)
  lines.push(`wire per forward pass: ${formatBytes(plan.totals.wireBytes)} (in ${formatBytes(fromInput)}, between peers ${formatBytes(between)}, out ${formatBytes(toOutput)})` +
    (local > 0 ? `; ${formatBytes(local)} stays on peers` : ''))
  if (plan.boundaries.length > 0) {
    lines.push('boundaries:')
    for (const b of plan.boundaries) {
      const shown = b.names.slice(0, 4).join(', ')
      const more = b.names.length > 4 ? `, … (+${b.names.length - 4} more)` : ''
      lines.push(`  ${stageLabel(b.from)} → ${stageLabel(b.to)}: ${formatBytes(b.bytes)}${b.local === true ? ' (local)' : ''} [${shown}${more}]`)
    }
  }
  return lines.join('\n')
}

/**
 * The contiguous and the folded plan side by side, one row each: stages,
 * peers, bottleneck, wire bytes per forward pass and per denoising step (M
 * forward passes), and with simulations the predicted seconds per step.
 */
export function formatComparison (plans: Array<{ label: string, plan: Plan | null, simulation?: Simulation }>, microBatches: number): string {
  const head = ['placement', 'stages', 'peers', 'bottleneck', 'wire/pass', `wire/step (M=${microBatches})`]
  const sims = plans.some(p => p.simulation !== undefined)
  if (sims) head.push('s/step (sim.)', 'busiest link')
  const rows: string[][] = [head]
  for (const { label, plan, simulation } of plans) {
    if (plan === null) { rows.push([label, '-', '-', 'no plan fits', '-', '-', ...(sims ? ['-', '-'] : [])]); continue }
    const row = [
      label,
      String(plan.stages.length),
      String(new Set(plan.stages.map(s => s.peer)).size),
      formatTime(planBottleneck(plan)),
      formatBytes(plan.totals.wireBytes),
      formatBytes(plan.totals.wireBytes * microBatches)
    ]
    if (sims) row.push(simulation === undefined ? '-' : formatTime(simulation.secondsPerStep), simulation === undefined ? '-' : formatTime(simulation.busiestLinkSeconds))
    rows.push(row)
  }
  return table(rows, rows[0].map((_, i) => i > 0)).join('\n')
}
