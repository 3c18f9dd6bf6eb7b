// Data parallelism (coordinator/replication.ts): the step-time cost model
// against hand-worked schedules, and the planner's choice between copies of
// the whole model and a pipeline on the real small STUNet DAG. That a
// replicated job equals the pipeline bit for bit is in generate.test.ts.
import t from 'tap'
import { partition } from '../coordinator/partition.ts'
import { parsePlan, planPeers } from '../coordinator/plan.ts'
import { formatPlan } from '../coordinator/plan-format.ts'
import { pipelineStepSeconds, planForStep, replicaLoads, replicatedPlan, replicatedStepSeconds } from '../coordinator/replication.ts'
import { buildDag } from '../src/onnx/graph.ts'
import { getPreset } from '../src/model/presets.ts'
import { buildStunet } from '../src/model/stunet.ts'
import type { PeerCapacity, Plan, StagePlan } from '../coordinator/plan.ts'

t.test('replicated step time: passes go to the copy that finishes them first', async (t) => {
  t.equal(replicatedStepSeconds([1, 1], 2), 1, 'two equal copies, two passes: one pass each')
  t.equal(replicatedStepSeconds([1, 1], 3), 2, 'a third pass waits for a copy')
  // Speeds 1 and 1/2 pass per second: 3 passes take 2 s at best (2 on the fast copy, 1 on the slow).
  t.equal(replicatedStepSeconds([1, 2], 3), 2, 'unequal copies: 2 + 1 passes')
  t.equal(replicatedStepSeconds([2, 1], 1), 1, 'one pass goes to the faster copy')
  t.equal(replicatedStepSeconds([1, 3], 2), 2, 'a copy slower than waiting is left idle')
  t.equal(replicatedStepSeconds([4], 3), 12, 'one copy runs them in turn')
  t.same(replicaLoads([1, 2], 3), [2, 1], 'the loads behind 2 s')
  t.same(replicaLoads([1, 1, 1], 2), [1, 1, 0], 'a third equal copy gets nothing of two passes')
})

t.test('pipeline step time: the first pass through every stage, then one per bottleneck', async (t) => {
  const stage = (index: number, peer: string, estSeconds: number): StagePlan => ({ index, peer, nodes: [], flops: 0, paramBytes: 0, peakActivationBytes: 0, inputs: [], outputs: [], estSeconds })
  const plan: Plan = { stages: [stage(0, 'a', 1), stage(1, 'b', 2), stage(2, 'c', 1)], route: [0, 1, 2], boundaries: [], totals: { flops: 0, paramBytes: 0, wireBytes: 0 } }
  t.equal(pipelineStepSeconds(plan, 1), 4, 'M = 1: the route')
  t.equal(pipelineStepSeconds(plan, 4), 4 + 3 * 2, 'M = 4: plus 3 bottlenecks')
  // A folded peer holds two stages: its sum is the bottleneck.
  const folded: Plan = { ...plan, placement: 'folded', stages: [stage(0, 'a', 1), stage(1, 'b', 2), stage(2, 'a', 1.5)] }
  t.equal(pipelineStepSeconds(folded, 3), 4.5 + 2 * 2.5, 'the busiest peer sets the pace')
})

t.test('the planner copies the model when that finishes a step sooner', async (t) => {
  const dag = buildDag(buildStunet(getPreset('small'), { weights: 'none' }), { dims: { batch: 1 } })
  const whole = partition(dag, [{ id: 'x', memoryBytes: Number.MAX_SAFE_INTEGER, speed: 1e12 }], { stages: 1 }).stages[0]
  const need = whole.paramBytes + whole.peakActivationBytes
  const peer = (id: string, speed: number, memoryBytes = 4 * need): PeerCapacity => ({ id, speed, memoryBytes })
  const two = [peer('a', 1e12), peer('b', 1e12)]

  const copies = planForStep(dag, two, { stages: 2, microBatches: 2 })
  t.equal(copies.placement, 'replicated', 'M = 2 on two equal peers: copies (no bubble)')
  t.same(planPeers(copies), ['a', 'b'], 'one copy on each peer')
  t.ok(copies.stages.every((s) => s.nodes.join() === whole.nodes.join()), 'each copy is the whole model')
  t.same(copies.route, [0], 'a pass runs on one copy')
  t.equal(copies.totals.wireBytes, whole.inputs.reduce((n, x) => n + x.bytes, 0) + whole.outputs.reduce((n, o) => n + o.bytes, 0), 'only graph inputs and outputs on the wire')
  t.same(parsePlan(JSON.parse(JSON.stringify(copies))), copies, 'a replicated plan passes parsePlan')
  t.match(formatPlan(copies), /the whole model on each of 2 peers/, 'formatPlan says what the rows are')

  const pipelined = planForStep(dag, two, { stages: 2, microBatches: 1 })
  t.not(pipelined.placement, 'replicated', 'M = 1: nothing for a second copy to do, the pipeline it is')
  t.same(pipelined, partition(dag, two, { stages: 2 }), 'and it is partition()\'s plan')

  const small = [peer('a', 1e12, need * 0.9), peer('b', 1e12, need * 0.9)]
  t.equal(replicatedPlan(dag, small, 2), null, 'no peer holds the whole model: no copies')
  t.not(planForStep(dag, small, { stages: 2, microBatches: 8 }).placement, 'replicated', 'so a pipeline, at any M')

  const mixed = [peer('a', 1e12), peer('tiny', 1e12, need * 0.5), peer('b', 2e12)]
  const some = replicatedPlan(dag, mixed, 3)
  t.same(some == null ? null : planPeers(some), ['b', 'a'], 'copies on the peers that hold the model, fastest first')
  t.same(some?.stages.map((s) => s.estSeconds), [whole.flops / 2e12, whole.flops / 1e12], 'each copy timed at its peer\'s speed')
  const three = [peer('a', 1e12), peer('b', 1e12), peer('c', 1e12)]
  t.same(planPeers(planForStep(dag, three, { stages: 3, microBatches: 2 })), ['a', 'b'], 'two passes on three peers: two copies, the third peer holds nothing')
  t.equal(replicatedPlan(dag, mixed, 1), null, 'one pass: a second copy would only wait')

  // A peer 10× slower than the other: a copy on it would only wait, so the fast peer alone or a pipeline, whichever is faster.
  const lopsided = [peer('a', 1e12), peer('b', 1e11)]
  t.equal(replicatedPlan(dag, lopsided, 2), null, 'no second copy worth having')
  const pipe = partition(dag, lopsided, { stages: 2 })
  const alone = partition(dag, lopsided, { stages: 1 })
  t.equal(pipelineStepSeconds(alone, 2), 2 * whole.flops / 1e12, 'alone: both passes on the fast peer')
  const chosen = planForStep(dag, lopsided, { stages: 2, microBatches: 2 })
  t.same(chosen, pipelineStepSeconds(pipe, 2) <= pipelineStepSeconds(alone, 2) ? pipe : alone, 'the faster of the pipeline and the fast peer alone')
})
