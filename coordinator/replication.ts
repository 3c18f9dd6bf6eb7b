import { LumiereError } from '../src/errors.ts'
import { partition } from './partition.ts'
import { planBottleneck } from './plan.ts'
import type { PartitionOptions } from './partition.ts'
import type { PeerCapacity, Plan } from './plan.ts'
import type { Dag } from '../src/onnx/dag.ts'

/**
 * Data parallelism as the alternative to a pipeline. A sampler step makes M
 * independent forward passes (samples × guidance branches). A pipeline of K
 * stages keeps its stages idle while it fills and drains (the bubble: a
 * step costs about (M + K − 1) bottlenecks), which at the M = 2 of one
 * guided sample is half the compute again. When the whole model fits on
 * several peers, each can hold a copy and take whole passes: no bubble, and
 * only graph inputs and outputs on the wire. The planner takes whichever
 * the cost model says finishes a step first. Pure.
 */

/**
 * Seconds of one step of M passes through a pipeline plan: the first pass
 * goes through every stage of the route, then one pass leaves per
 * bottleneck (the busiest peer's seconds per pass).
 */
export function pipelineStepSeconds (plan: Plan, microBatches: number): number {
  const first = plan.route.reduce((t, i) => t + plan.stages[i].estSeconds, 0)
  return first + (Math.max(1, microBatches) - 1) * planBottleneck(plan)
}

/**
 * Passes of one step of M that each copy takes, copy i taking
 * `passSeconds[i]` per pass: the passes go one by one to the copy that
 * would finish it first (what coordinator/replicas.ts does), ties to the
 * lower index.
 */
export function replicaLoads (passSeconds: number[], microBatches: number): number[] {
  const loads = passSeconds.map(() => 0)
  for (let m = 0; m < microBatches; m++) loads[firstToFinish(loads, passSeconds)]++
  return loads
}

/** The copy that would finish one more pass first, copy i having `loads[i]` passes and taking `passSeconds[i]` per pass; ties to the lower index. */
export function firstToFinish (loads: number[], passSeconds: number[]): number {
  const finish = (i: number): number => (loads[i] + 1) * passSeconds[i]
  let best = 0
  for (let i = 1; i < passSeconds.length; i++) if (finish(i) < finish(best)) best = i
  return best
}

/** Seconds of one step of M passes on copies (replicaLoads): the step ends with the busiest copy. */
export function replicatedStepSeconds (passSeconds: number[], microBatches: number): number {
  return Math.max(0, ...replicaLoads(passSeconds, microBatches).map((n, i) => n * passSeconds[i]))
}

/**
 * The whole model copied onto the peers whose memory holds it and that
 * get passes of a step of M (replicaLoads: a copy that would only wait is
 * left out), fastest first; the copies are the plan's stages (plan.ts
 * 'replicated'). Null when fewer than two copies would be used.
 */
export function replicatedPlan (dag: Dag, peers: PeerCapacity[], microBatches: number): Plan | null {
  const single = singlePeerPlan(dag, peers)
  return single == null ? null : copiesOf(single, peers, microBatches)
}

/**
 * The plan for M passes per step, whichever finishes a step first by the
 * cost model: the pipeline partition() makes for `options`, the whole
 * model on the one peer that runs it fastest (when the others would only
 * slow it down), or copies of it (replicatedPlan). Ties go to copies, then
 * to the pipeline: copies put the least on the wire.
 */
export function planForStep (dag: Dag, peers: PeerCapacity[], options: PartitionOptions & { microBatches: number }): Plan {
  const pipeline = partition(dag, peers, options)
  const m = options.microBatches
  if (m < 2 || peers.length < 2) return pipeline
  const single = singlePeerPlan(dag, peers)
  if (single == null) return pipeline
  const copies = copiesOf(single, peers, m)
  const best = pipelineStepSeconds(single, m) < pipelineStepSeconds(pipeline, m) ? single : pipeline
  if (copies != null && replicatedStepSeconds(copies.stages.map((s) => s.estSeconds), m) <= pipelineStepSeconds(best, m)) return copies
  return best
}

/** The whole model on the one peer that runs it fastest; null when no single peer's memory holds it. */
export function singlePeerPlan (dag: Dag, peers: PeerCapacity[]): Plan | null {
  try {
    return partition(dag, peers, { stages: 1 })
  } catch (err) {
    if (err instanceof LumiereError && err.code === 'PLAN_IMPOSSIBLE') return null
    throw err
  }
}

/** replicatedPlan from the whole model's one-stage plan. */
function copiesOf (single: Plan, peers: PeerCapacity[], microBatches: number): Plan | null {
  const whole = single.stages[0]
  const holders = [...peers].sort((a, b) => b.speed - a.speed).filter((p) => whole.paramBytes + whole.peakActivationBytes <= p.memoryBytes)
  const loads = replicaLoads(holders.map((p) => whole.flops / p.speed), microBatches)
  const used = holders.filter((_, i) => loads[i] > 0)
  if (used.length < 2) return null
  return {
    ...single,
    placement: 'replicated',
    stages: used.map((p, index) => ({ ...whole, index, peer: p.id, estSeconds: whole.flops / p.speed, transferSeconds: 0 }))
  }
}
