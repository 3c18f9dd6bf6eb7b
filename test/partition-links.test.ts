// Measured links (PeerCapacity.links): transfer time in the planner's
// objective, so a slow link carries the smallest boundary.
import t from 'tap'
import { partition, partitionAll } from '../coordinator/partition.ts'
import { linkBetween, planBottleneck, transferSeconds } from '../coordinator/plan.ts'
import { LumiereError } from '../src/errors.ts'
import type { Dag, DagNode, DagValue } from '../src/onnx/dag.ts'
import type { LinkSpeed, PeerCapacity, Plan } from '../coordinator/plan.ts'

/** A Dag from lines "name in1,in2 -> out [flops]" (flops default 100); bytes per value. */
function makeDag (lines: string[], bytes: Record<string, number>, inputs = ['x'], outputs = ['out']): Dag {
  const values = new Map<string, DagValue>()
  const value = (name: string, producer: number, kind: DagValue['kind']): DagValue => {
    const b = bytes[name] ?? 1000
    const v: DagValue = { name, dtype: 'F32', shape: [b / 4], bytes: b, producer, consumers: [], kind, isOutput: outputs.includes(name) }
    values.set(name, v)
    return v
  }
  for (const name of inputs) value(name, -1, 'input')
  const nodes: DagNode[] = lines.map((line, index) => {
    const [name, ins, , out, flops] = line.trim().split(/\s+/)
    const v = value(out, index, 'activation')
    return { index, name, opType: 'Op', inputs: ins.split(','), outputs: [out], flops: flops === undefined ? 100 : Number(flops), paramBytes: 0, activationBytes: v.bytes, duplicable: false }
  })
  for (const node of nodes) for (const i of node.inputs) values.get(i)!.consumers.push(node.index)
  return { nodes, values, inputs, outputs, initializers: new Map() }
}

/** Peers of `speed` FLOP/s, every link `fast` except those touching a peer in `slowPeers` (or the `slowPair`), which are `slow`. */
function peers (ids: string[], fast: LinkSpeed, slow: LinkSpeed, slowPeers: string[] = [], slowPair: string[] = [], speed = 1): PeerCapacity[] {
  return ids.map(id => ({
    id,
    memoryBytes: 1e12,
    speed,
    links: Object.fromEntries(ids.filter(x => x !== id).map(x => {
      const isSlow = slowPeers.includes(id) || slowPeers.includes(x) || (slowPair.includes(id) && slowPair.includes(x))
      return [x, isSlow ? slow : fast]
    }))
  }))
}

/** Bytes crossing each link used by a plan, by "from>to" peer pair. */
function linkBytes (plan: Plan): Map<string, number> {
  const m = new Map<string, number>()
  for (const b of plan.boundaries) {
    if (typeof b.from !== 'number' || typeof b.to !== 'number' || b.local === true) continue
    const key = `${plan.stages[b.from].peer}>${plan.stages[b.to].peer}`
    m.set(key, (m.get(key) ?? 0) + b.bytes)
  }
  return m
}

const FAST: LinkSpeed = { bandwidth: 1e9, latency: 0 }
const SLOW: LinkSpeed = { bandwidth: 5, latency: 0.5 }

t.test('a slow link moves the cut to the smallest boundary', async tt => {
  // Six 100-FLOP nodes; v3 is small. At 1 FLOP/s the balanced cut is after n2.
  const lines = ['n0 x -> v0', 'n1 v0 -> v1', 'n2 v1 -> v2', 'n3 v2 -> v3', 'n4 v3 -> v4', 'n5 v4 -> out']
  const dag = makeDag(lines, { x: 10, v3: 10, out: 10 })
  const plain = partition(dag, [{ id: 'a', memoryBytes: 1e12, speed: 1 }, { id: 'b', memoryBytes: 1e12, speed: 1 }], { stages: 2 })
  tt.same(plain.boundaries.filter(b => b.from === 0 && b.to === 1).map(b => b.names), [['v2']], 'no links: the balanced cut (v2, 1000 B)')
  const slow = partition(dag, peers(['a', 'b'], FAST, SLOW, [], ['a', 'b']), { stages: 2 })
  tt.same(slow.boundaries.filter(b => b.from === 0 && b.to === 1).map(b => b.names), [['v3']], 'slow link: the cut carries v3 (10 B)')
  // 400 s of compute on the first peer beats 300 s + 1000 B / 5 B/s.
  tt.equal(planBottleneck(slow), 400)
  tt.equal(slow.stages[1].transferSeconds, 10 / 5 + 0.5, 'transfer = bytes / bandwidth + latency')
  tt.equal(slow.stages[1].estSeconds, 200 + 2.5, 'estSeconds = compute + transfer')
})

t.test('a slow peer takes the end of the route with the smaller boundary', async tt => {
  // Three equal stages; boundaries 1000 B then 10 B (and reversed).
  for (const [first, second] of [[1000, 10], [10, 1000]]) {
    const dag = makeDag(['n0 x -> v0', 'n1 v0 -> v1', 'n2 v1 -> out'], { x: 10, v0: first, v1: second, out: 10 })
    const ps = peers(['p1', 'p2', 'p3'], FAST, SLOW, ['p1'])
    for (const placement of ['contiguous', 'auto'] as const) {
      const plan = partition(dag, ps, { stages: 3, placement })
      const used = linkBytes(plan)
      const slowBytes = [...used].filter(([k]) => k.split('>').includes('p1')).map(([, b]) => b)
      tt.same(slowBytes, [10], `${first}/${second} ${placement}: the slow peer's only link carries the 10 B boundary (${[...used].map(([k, b]) => `${k}: ${b}`).join(', ')})`)
      tt.equal(plan.stages[first === 10 ? 0 : 2].peer, 'p1', `${placement}: the slow peer is ${first === 10 ? 'first' : 'last'}`)
    }
  }
})

t.test('folded: the slow peer gets the slot with the lightest traffic', async tt => {
  // A U-Net: skips s0, s1 stay on their peers; h1/u1 are 10 B, h2/u2 1 B.
  const dag = makeDag(
    ['e0 x -> s0', 'p0 s0 -> h1', 'e1 h1 -> s1', 'p1 s1 -> h2', 'm h2 -> u2', 'd1 u2,s1 -> u1', 'd0 u1,s0 -> out'],
    { x: 10, s0: 1000, h1: 10, s1: 1000, h2: 1, u2: 1, u1: 10, out: 10 })
  const ps = peers(['p1', 'p2', 'p3'], FAST, { bandwidth: 1, latency: 0 }, ['p1'])
  const r = partitionAll(dag, ps, { stages: 3, placement: 'folded' })
  const f = r.folded as Plan
  tt.equal(f.placement, 'folded')
  const middle = f.stages.find(s => s.nodes.includes(4))!
  tt.equal(middle.peer, 'p1', 'the slow peer holds the middle (1 B each way)')
  tt.equal(f.boundaries.filter(b => b.local === true).length, 2, 'both skips stay local')
})

t.test('links: lookup, transfer time and validation', async tt => {
  const a: PeerCapacity = { id: 'a', memoryBytes: 1, speed: 1, links: { b: { bandwidth: 100, latency: 0.25 } } }
  const b: PeerCapacity = { id: 'b', memoryBytes: 1, speed: 1 }
  tt.same(linkBetween(a, b), { bandwidth: 100, latency: 0.25 })
  tt.same(linkBetween(b, a), { bandwidth: 100, latency: 0.25 }, 'the other side measured it: taken as symmetric')
  tt.equal(linkBetween(a, a), null)
  tt.equal(transferSeconds(null, 1e9), 0, 'unknown link: free')
  tt.equal(transferSeconds({ bandwidth: 100, latency: 0.25 }, 0), 0, 'nothing to send: free')
  tt.equal(transferSeconds({ bandwidth: 100, latency: 0.25 }, 50), 0.75)
  const dag = makeDag(['n0 x -> v0', 'n1 v0 -> out'], {})
  for (const links of [{ b: { bandwidth: 0, latency: 0 } }, { b: { bandwidth: 1, latency: -1 } }, { b: { bandwidth: Infinity, latency: 0 } }]) {
    try {
      partition(dag, [{ id: 'a', memoryBytes: 1e9, speed: 1, links }, b], { stages: 2 })
      tt.fail('expected BAD_ARGUMENT')
    } catch (err) {
      tt.equal((err as LumiereError).code, 'BAD_ARGUMENT', (err as Error).message)
    }
  }
  try {
    partition(dag, [b], { stages: 1, placement: 'sideways' as 'auto' })
    tt.fail('expected BAD_ARGUMENT')
  } catch (err) {
    tt.equal((err as LumiereError).code, 'BAD_ARGUMENT')
  }
})
