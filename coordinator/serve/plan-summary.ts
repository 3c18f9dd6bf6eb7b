/**
 * The part of a Plan the dashboard and GET /api/jobs/:id show: stages with
 * their peers and costs, the route and the boundaries' bytes, without the
 * node lists and value names (which grow with the model).
 */
import type { Plan } from '../plan.ts'

export interface PlanSummary {
  placement: NonNullable<Plan['placement']>
  stages: Array<{ index: number, peer: string, nodes: number, flops: number, paramBytes: number, peakActivationBytes: number, estSeconds: number }>
  route: number[]
  boundaries: Array<{ from: number | 'input', to: number | 'output', bytes: number, values: number, local: boolean }>
  totals: Plan['totals']
}

export function summarisePlan (plan: Plan): PlanSummary {
  return {
    placement: plan.placement ?? 'contiguous',
    stages: plan.stages.map((s) => ({
      index: s.index,
      peer: s.peer,
      nodes: s.nodes.length,
      flops: s.flops,
      paramBytes: s.paramBytes,
      peakActivationBytes: s.peakActivationBytes,
      estSeconds: s.estSeconds
    })),
    route: [...plan.route],
    boundaries: plan.boundaries.map((b) => ({ from: b.from, to: b.to, bytes: b.bytes, values: b.names.length, local: b.local === true })),
    totals: { ...plan.totals }
  }
}

/** Stage indices each peer holds in a plan, by peer id. */
export function stagesByPeer (plan: PlanSummary | undefined): Map<string, number[]> {
  const held = new Map<string, number[]>()
  for (const s of plan?.stages ?? []) held.set(s.peer, [...(held.get(s.peer) ?? []), s.index])
  return held
}
