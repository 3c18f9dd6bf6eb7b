// Folded placement (coordinator/fold.ts via partition.ts): structure on the
// real STUNet DAGs, exactness against brute force, execution of a folded
// tiny plan, memory, extraction agreement.
import t from 'tap'
import type { Test } from 'tap'
import { partition, partitionAll } from '../coordinator/partition.ts'
import { parsePlan, planBottleneck, peerSeconds } from '../coordinator/plan.ts'
import { formatPlan } from '../coordinator/plan-format.ts'
import { LumiereError } from '../src/errors.ts'
import { extractStage, planStage } from '../src/onnx/extract.ts'
import { buildDag, buildDagProbed } from '../src/onnx/graph.ts'
import { runModel } from '../src/onnx/run.ts'
import { getPreset } from '../src/model/presets.ts'
import { STUNET_IO, buildStunet } from '../src/model/stunet.ts'
import { f32 } from '../src/tensor/tensor.ts'
import { mulberry32 } from '../src/util/prng.ts'
import { FIXTURES, FIXTURE_DIMS } from './fixtures/graphs.ts'
import { maxAbsDiff, runChain } from './fixtures/stages.ts'
import type { Dag, DagNode, DagValue } from '../src/onnx/dag.ts'
import type { PeerCapacity, Plan } from '../coordinator/plan.ts'

/** Structural invariants of any plan (contiguous or folded) over `dag` on at most `k` peers. */
function check (tt: Test, plan: Plan, dag: Dag, k: number): void {
  const nonDup = dag.nodes.filter(n => !n.duplicable).map(n => n.index)
  const assigned = plan.stages.flatMap(s => s.nodes.filter(i => !dag.nodes[i].duplicable))
  tt.same([...assigned].sort((a, b) => a - b), nonDup, 'every non-duplicable node assigned exactly once')
  tt.same(assigned, nonDup, 'stages are consecutive runs of the topological order, in route order')
  tt.same(plan.route, plan.stages.map(s => s.index), 'route = stage order')
  const perPeer = new Map<string, number>()
  for (const s of plan.stages) perPeer.set(s.peer, (perPeer.get(s.peer) ?? 0) + 1)
  tt.ok(perPeer.size <= k, `at most ${k} peers`)
  tt.ok([...perPeer.values()].every(n => n <= 2), 'at most two stages per peer')
  tt.ok(plan.stages.length <= 2 * k - 1, 'at most 2K - 1 stages')
  // Wire accounting: stage inputs from other peers or the coordinator, plus graph outputs; local boundaries excluded.
  let wire = 0
  for (const s of plan.stages) {
    for (const x of s.inputs) {
      if (x.from === 'input' || plan.stages[x.from].peer !== s.peer) wire += x.bytes
      if (x.from !== 'input') tt.ok(x.from < s.index, 'values flow forward along the route')
    }
    for (const o of s.outputs) if (o.to.includes('output')) wire += o.bytes
  }
  tt.equal(plan.totals.wireBytes, wire, 'wire = inputs received across peers + graph outputs')
  tt.equal(plan.totals.wireBytes, plan.boundaries.filter(b => b.local !== true).reduce((a, b) => a + b.bytes, 0), 'wire = non-local boundaries')
  for (const b of plan.boundaries) {
    const local = typeof b.from === 'number' && typeof b.to === 'number' && plan.stages[b.from].peer === plan.stages[b.to].peer
    tt.equal(b.local === true, local, `boundary ${String(b.from)} → ${String(b.to)} local iff same peer`)
  }
  // Per-stage inputs and outputs are what extraction gives.
  for (const s of plan.stages) {
    const x = planStage(dag, s.nodes)
    tt.same(s.inputs.map(i => i.name).sort(), [...x.inputs].sort(), `stage ${s.index + 1} inputs match extraction`)
    tt.same(s.outputs.map(o => o.name).sort(), [...x.outputs].sort(), `stage ${s.index + 1} outputs match extraction`)
  }
  const back = JSON.parse(JSON.stringify(plan)) as unknown
  tt.same(parsePlan(back), plan, 'JSON round trip through parsePlan')
}

/** K equal peers with links of `bandwidth` bytes/s (none when 0). */
function meshPeers (k: number, speed: number, bandwidth: number, memoryBytes = 1e15): PeerCapacity[] {
  const ids = Array.from({ length: k }, (_, i) => `p${i + 1}`)
  return ids.map(id => ({
    id,
    memoryBytes,
    speed,
    ...(bandwidth > 0 ? { links: Object.fromEntries(ids.filter(x => x !== id).map(x => [x, { bandwidth, latency: 1e-3 }])) } : {})
  }))
}

/** Peers holding nodes whose name starts with `prefix`. */
function peersOf (plan: Plan, dag: Dag, prefix: string): Set<string> {
  return new Set(plan.stages.filter(s => s.nodes.some(i => dag.nodes[i].name.startsWith(prefix))).map(s => s.peer))
}

t.test('folded plans of the small and paper presets keep each U-Net level with its mirror', async tt => {
  // Regimes: the planner's default (compute only, no links), and the nominal
  // mesh of DESIGN §3 (1 TFLOP/s peers, libp2p TCP at about 1 Gb/s).
  for (const name of ['small', 'paper']) {
    const config = getPreset(name)
    const dag = buildDag(buildStunet(config, { weights: 'none' }), { dims: { batch: 1 } })
    const levels = config.levels
    for (const [regime, bandwidth] of [['compute only', 0], ['1 TFLOP/s @ 1 Gb/s', 125e6]] as const) {
      const started = Date.now()
      const r = partitionAll(dag, meshPeers(4, 1e12, bandwidth), { stages: 4, placement: 'auto' })
      const ms = Date.now() - started
      const c = r.contiguous as Plan
      const f = r.folded as Plan
      check(tt, c, dag, 4)
      check(tt, f, dag, 4)
      const ratio = f.totals.wireBytes / c.totals.wireBytes
      tt.comment(`${name} K=4 ${regime}: folded/contiguous wire = ${ratio.toFixed(3)} (${(f.totals.wireBytes / 1e6).toFixed(1)} / ${(c.totals.wireBytes / 1e6).toFixed(1)} MB per pass); bottleneck ${planBottleneck(f).toFixed(3)} / ${planBottleneck(c).toFixed(3)} s; auto → ${r.chosen.placement}; ${ms} ms`)
      tt.ok(ms < 5000, `${name}: planned in ${ms} ms`)
      // Both plans are held to the same balance bound, and every contiguous
      // plan is a folded one: folding can only save bytes at equal balance.
      tt.ok(f.totals.wireBytes <= c.totals.wireBytes, `${name} ${regime}: folded wire <= contiguous wire at the same balance`)
      tt.ok(planBottleneck(f) <= planBottleneck(c) * 1.1 * (1 + 1e-9), `${name} ${regime}: folded within 10 % of the contiguous bottleneck`)
      if (bandwidth === 0) continue
      tt.equal(f.placement, 'folded', `${name} ${regime}: a real fold (a peer holds two stages)`)
      tt.equal(r.chosen, f, `${name} ${regime}: auto chooses it`)
      // The skip of every level never crosses the wire, and each peer holding
      // encoder nodes of a level holds decoder nodes of that level too.
      for (let l = 0; l < levels - 1; l++) {
        const skip = `down${l}/out`
        const v = dag.values.get(skip)
        tt.ok(v !== undefined, `${skip} is a value of the DAG`)
        const producer = f.stages.find(s => s.nodes.includes(v!.producer))!
        const consumers = f.stages.filter(s => s.inputs.some(x => x.name === skip))
        tt.ok(consumers.every(s => s.peer === producer.peer), `${name}: skip ${skip} stays on peer ${producer.peer}`)
        const down = peersOf(f, dag, `down${l}/`)
        const up = peersOf(f, dag, `up${l}/`)
        tt.ok([...down].every(p => up.has(p)), `${name}: peers with down${l} {${[...down].join(',')}} hold up${l} {${[...up].join(',')}}`)
      }
      // With 1 Gb/s links both plans keep most of the work on one peer (a
      // full-resolution tensor costs more to send than to compute): small
      // folds to ~0.22 of the contiguous bytes; paper ~0.58 (down0 + up0 hold
      // 58 % of its FLOPs, so level 0 spans two peers).
      tt.ok(ratio <= (name === 'small' ? 0.5 : 0.6), `${name}: folded wire ${ratio.toFixed(3)} x contiguous`)
      tt.equal(Math.max(...peerSeconds(f).values()), planBottleneck(f), 'bottleneck = busiest peer')
    }
  }
})

t.test('a synthetic U-Net folds exactly', async tt => {
  // e0 -s0-> p0 -h1-> e1 -s1-> p1 -h2-> m -u2-> d1(s1) -u1-> d0(s0) -> out
  // Skips s0, s1 are 1000 B; the resampled tensors 10 B; every node 100 FLOP.
  const dag = makeDag({
    inputs: ['x'],
    outputs: ['out'],
    nodes: ['e0 Op x -> s0', 'p0 Op s0 -> h1', 'e1 Op h1 -> s1', 'p1 Op s1 -> h2', 'm Op h2 -> u2', 'd1 Op u2,s1 -> u1', 'd0 Op u1,s0 -> out'],
    bytes: { x: 10, s0: 1000, h1: 10, s1: 1000, h2: 10, u2: 10, u1: 10, out: 10 }
  })
  const peers = meshPeers(3, 1, 0)
  const r = partitionAll(dag, peers, { stages: 3, placement: 'folded' })
  const f = r.folded as Plan
  check(tt, f, dag, 3)
  tt.same(f.stages.map(s => s.nodes), [[0, 1], [2, 3], [4], [5], [6]], 'segments e0 p0 | e1 p1 | m | d1 | d0')
  tt.same(f.stages.map(s => s.peer), ['p1', 'p2', 'p3', 'p2', 'p1'], 'route p1 → p2 → p3 → p2 → p1')
  tt.same(f.boundaries.filter(b => b.local === true).map(b => b.names), [['s0'], ['s1']], 'both skips stay local')
  tt.equal(f.totals.wireBytes, 10 + 10 + 10 + 10 + 10 + 10, 'x, h1, h2, u2, u1, out')
  const c = r.contiguous as Plan
  tt.ok(c.totals.wireBytes > 1000, `contiguous sends a skip (${c.totals.wireBytes} B)`)
  tt.equal(planBottleneck(f), 300, 'peer p1 and p2: 300 FLOP each')
  tt.equal(r.chosen, f, 'folded is chosen: fewer bytes, same bottleneck')
  tt.equal(partition(dag, peers, { stages: 3 }).placement, 'contiguous', 'default placement stays contiguous')
  tt.match(formatPlan(f, dag), /peers: p1 → p2 → p3 → p2 → p1 \(folded\)/)
  tt.match(formatPlan(f, dag), /1 → 5: 1000 B \(local\) \[s0\]/)
})

t.test('a chain gains nothing from folding', async tt => {
  const nodes = Array.from({ length: 8 }, (_, i) => `n${i} Op ${i === 0 ? 'x' : `v${i - 1}`} -> ${i === 7 ? 'out' : `v${i}`}`)
  const dag = makeDag({ inputs: ['x'], outputs: ['out'], nodes })
  const r = partitionAll(dag, meshPeers(4, 1, 0), { stages: 4, placement: 'auto' })
  check(tt, r.folded as Plan, dag, 4)
  tt.equal((r.folded as Plan).totals.wireBytes, (r.contiguous as Plan).totals.wireBytes, 'same bytes')
  tt.equal(r.chosen, r.contiguous, 'auto keeps the contiguous plan on a tie')
})

t.test('tiny: a folded plan executes bit-exactly, stage by stage in route order', async tt => {
  const tiny = getPreset('tiny')
  const model = buildStunet(tiny, { weights: 'seeded', seed: 9, inflationInit: 'random' })
  const dag = buildDag(model, { dims: { batch: 2 } })
  const rand = mulberry32(17)
  const n = (shape: number[]): ReturnType<typeof f32> => f32(shape, Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rand() * 2 - 1))
  const feeds = {
    [STUNET_IO.video]: n([2, tiny.inChannels, tiny.frames, tiny.height, tiny.width]),
    [STUNET_IO.logsnr]: f32([2], [1.5, -2]),
    [STUNET_IO.text]: n([2, tiny.textLength, tiny.textDim])
  }
  const whole = await runModel(model, feeds)
  // K = 2 at 50 % balance: the natural fold (level 0 on one peer, the rest on
  // the other); K = 4 at the default balance: level 0 spread over three peers.
  for (const [k, balance] of [[2, 0.5], [4, 0.1]]) {
    const plan = partition(dag, meshPeers(k, 1e9, 0), { stages: k, placement: 'folded', balance })
    check(tt, plan, dag, k)
    tt.equal(plan.placement, 'folded', `K=${k}: a real fold`)
    if (k === 2) tt.ok(plan.boundaries.some(b => b.local === true && b.names.includes('down0/out')), 'K=2: the level-0 skip passes between two stages of one peer')
    const stages = plan.route.map(i => extractStage(model, dag, plan.stages[i].nodes))
    stages.forEach((s, i) => tt.same([...s.inputs].sort(), plan.stages[plan.route[i]].inputs.map(x => x.name).sort(), `K=${k} stage ${i + 1} receives what the plan says`))
    const chained = await runChain(stages, feeds)
    tt.equal(maxAbsDiff(chained[STUNET_IO.output], whole[STUNET_IO.output]), 0, `K=${k}: ${plan.stages.length} stages on ${new Set(plan.stages.map(s => s.peer)).size} peers, bit-exact`)
    tt.comment(`tiny folded K=${k}: ${plan.stages.map(s => `${s.peer}:${s.nodes.length}`).join(' → ')}`)
  }
})

t.test('memory: a peer holds both its stages', async tt => {
  const dag = buildDag(buildStunet(getPreset('small'), { weights: 'none' }), { dims: { batch: 1 } })
  const free = partition(dag, meshPeers(4, 1e12, 125e6), { stages: 4, placement: 'folded' })
  const need = (p: Plan): Map<string, number> => {
    const m = new Map<string, number>()
    for (const s of p.stages) m.set(s.peer, (m.get(s.peer) ?? 0) + s.paramBytes + s.peakActivationBytes)
    return m
  }
  const most = Math.max(...need(free).values())
  // Cap every peer below what the unconstrained plan's busiest peer needs.
  const cap = Math.floor(most * 0.8)
  const peers = meshPeers(4, 1e12, 125e6, cap)
  let plan: Plan | null = null
  try {
    plan = partition(dag, peers, { stages: 4, placement: 'folded' })
  } catch (err) {
    tt.ok(err instanceof LumiereError && err.code === 'PLAN_IMPOSSIBLE', 'or a clear refusal')
  }
  if (plan !== null) {
    check(tt, plan, dag, 4)
    for (const [peer, bytes] of need(plan)) tt.ok(bytes <= cap, `${peer} needs ${bytes} <= ${cap}`)
  }
  tt.ok(plan !== null, 'small fits at 80 % of the unconstrained need')
  // Nothing fits: one peer cannot hold the biggest node.
  const tiny = meshPeers(4, 1e12, 0, 1000)
  try {
    partition(dag, tiny, { stages: 4, placement: 'folded' })
    tt.fail('expected PLAN_IMPOSSIBLE')
  } catch (err) {
    tt.equal((err as LumiereError).code, 'PLAN_IMPOSSIBLE')
  }
})

t.test('exporter-style fixtures: folded stage boundaries match extraction', async tt => {
  for (const [name, make] of Object.entries(FIXTURES)) {
    const model = make()
    const dag = await buildDagProbed(model, { dims: FIXTURE_DIMS[name] })
    for (let k = 2; k <= 3; k++) {
      const plan = partition(dag, meshPeers(k, 1e9, 0), { stages: k, placement: 'folded', balance: 0.5 })
      check(tt, plan, dag, k)
    }
  }
})

t.test('random DAGs: the folded search against brute force', async tt => {
  const rnd = mulberry32(4242)
  const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)]
  let compared = 0
  for (let trial = 0; trial < 60; trial++) {
    const lines: string[] = []
    const bytes: Record<string, number> = { x: 1 + Math.floor(rnd() * 50) }
    const inits: Record<string, number> = {}
    const avail = ['x']
    const size = 4 + Math.floor(rnd() * 5)
    for (let i = 0; i < size; i++) {
      const ins = new Set<string>([avail[avail.length - 1]])
      if (rnd() < 0.5) ins.add(pick(avail))
      if (rnd() < 0.4) { inits[`w${i}`] = 1 + Math.floor(rnd() * 100); ins.add(`w${i}`) }
      bytes[`a${i}`] = 1 + Math.floor(rnd() * 100)
      lines.push(`n${i} Op ${[...ins].join(',')} -> a${i} ${1 + Math.floor(rnd() * 100)}`)
      avail.push(`a${i}`)
    }
    const dag = makeDag({ inputs: ['x'], outputs: [`a${size - 1}`], nodes: lines, inits, bytes })
    const K = rnd() < 0.5 ? 2 : 3
    const balance = pick([0, 0.1, 0.5])
    const limited = rnd() < 0.3
    const peers = meshPeers(K, 1, 0, limited ? 150 + Math.floor(rnd() * 300) : 1e15)
    const best = bruteFold(dag, peers, balance)
    if (best === null) {
      try {
        partition(dag, peers, { stages: K, balance, placement: 'folded' })
        tt.fail(`trial ${trial}: expected PLAN_IMPOSSIBLE`)
      } catch (err) {
        tt.equal((err as LumiereError).code, 'PLAN_IMPOSSIBLE', `trial ${trial}: nothing fits`)
      }
      continue
    }
    const plan = partition(dag, peers, { stages: K, balance, placement: 'folded' })
    check(tt, plan, dag, K)
    const both = partitionAll(dag, peers, { stages: K, balance, placement: 'auto' })
    if (both.contiguous !== null) {
      tt.ok(plan.totals.wireBytes <= both.contiguous.totals.wireBytes || planBottleneck(both.contiguous) > planBottleneck(plan),
        `trial ${trial}: folded wire <= contiguous wire, unless the folded plan is faster`)
    }
    const mine = costFold(dag, plan.stages.map(s => s.nodes), plan.stages.map(s => s.peer), peers)
    tt.ok(mine.fits, `trial ${trial}: fits memory`)
    tt.ok(mine.bottleneck <= best.bound * (1 + 1e-9), `trial ${trial}: bottleneck ${mine.bottleneck} within the bound ${best.bound}`)
    tt.equal(plan.totals.wireBytes, best.wire, `trial ${trial}: fewest wire bytes (${best.wire})`)
    tt.equal(planBottleneck(plan), mine.bottleneck, `trial ${trial}: bottleneck as costed independently`)
    compared++
  }
  tt.ok(compared >= 30, `${compared} plans compared`)
})

// ---------------------------------------------------------------------------
// Helpers: Dags from a compact description, and an independent costing.

interface Spec {
  inputs: string[]
  outputs: string[]
  /** "name Op in1,in2 -> out1 [flops]" (flops default 100). */
  nodes: string[]
  inits?: Record<string, number>
  /** Bytes per value (default 1000). */
  bytes?: Record<string, number>
}

function makeDag (spec: Spec): Dag {
  const bytesOf = (name: string): number => spec.bytes?.[name] ?? spec.inits?.[name] ?? 1000
  const values = new Map<string, DagValue>()
  const initializers = new Map<string, { bytes: number, dtype: 'F32', shape: number[] }>()
  const value = (name: string, producer: number, kind: DagValue['kind']): DagValue => {
    const v: DagValue = { name, dtype: 'F32', shape: [bytesOf(name) / 4], bytes: bytesOf(name), producer, consumers: [], kind, isOutput: spec.outputs.includes(name) }
    values.set(name, v)
    return v
  }
  for (const name of spec.inputs) value(name, -1, 'input')
  for (const [name, b] of Object.entries(spec.inits ?? {})) {
    value(name, -1, 'initializer')
    initializers.set(name, { bytes: b, dtype: 'F32', shape: [b / 4] })
  }
  const nodes: DagNode[] = spec.nodes.map((line, index) => {
    const [name, opType, ins, arrow, outs, flops] = line.trim().split(/\s+/)
    if (arrow !== '->') throw new Error(`bad node line: ${line}`)
    const inputs = ins.split(',')
    const outputs = outs.split(',')
    let paramBytes = 0
    for (const i of inputs) if (initializers.has(i)) paramBytes += bytesOf(i)
    let activationBytes = 0
    for (const o of outputs) activationBytes += value(o, index, 'activation').bytes
    return { index, name, opType, inputs, outputs, flops: flops === undefined ? 100 : Number(flops), paramBytes, activationBytes, duplicable: false }
  })
  for (const node of nodes) {
    for (const i of node.inputs) {
      const v = values.get(i)
      if (v === undefined) throw new Error(`node ${node.name} reads unknown ${i}`)
      if (!v.consumers.includes(node.index)) v.consumers.push(node.index)
    }
  }
  return { nodes, values, inputs: spec.inputs, outputs: spec.outputs, initializers }
}

/** Wire bytes, bottleneck and memory fit of stages (node lists) on peers (ids), costed from the Dag alone. */
function costFold (dag: Dag, stages: number[][], stagePeers: string[], peers: PeerCapacity[]): { wire: number, bottleneck: number, fits: boolean } {
  const byId = new Map(peers.map(p => [p.id, p]))
  const stageOfNode = new Map<number, number>()
  stages.forEach((s, k) => { for (const i of s) stageOfNode.set(i, k) })
  const neededBy = new Map<string, Set<number>>()
  stages.forEach((s, k) => { for (const i of s) for (const v of dag.nodes[i].inputs) if (dag.values.get(v)!.kind !== 'initializer') { if (!neededBy.has(v)) neededBy.set(v, new Set()); neededBy.get(v)!.add(k) } })
  let wire = 0
  const time = new Map<string, number>()
  const mem = new Map<string, number>()
  stages.forEach((nodes, k) => {
    const peer = byId.get(stagePeers[k])!
    const made = new Set(nodes.flatMap(i => dag.nodes[i].outputs))
    const inputs = new Set<string>()
    const params = new Set<string>()
    for (const i of nodes) for (const v of dag.nodes[i].inputs) { if (dag.initializers.has(v)) params.add(v); else if (!made.has(v)) inputs.add(v) }
    let inBytes = 0
    for (const v of inputs) {
      inBytes += dag.values.get(v)!.bytes
      const p = dag.values.get(v)!.producer
      if (p < 0 || stagePeers[stageOfNode.get(p)!] !== peer.id) wire += dag.values.get(v)!.bytes
    }
    for (const v of made) if (dag.outputs.includes(v)) wire += dag.values.get(v)!.bytes
    let paramBytes = 0
    for (const q of params) paramBytes += dag.initializers.get(q)!.bytes
    const held = (v: string): boolean => dag.outputs.includes(v) || [...(neededBy.get(v) ?? [])].some(s => s !== k)
    const lastUse = new Map<string, number>()
    nodes.forEach((i, idx) => { for (const v of dag.nodes[i].inputs) if (made.has(v)) lastUse.set(v, idx) })
    let live = inBytes
    let peak = live
    nodes.forEach((i, idx) => {
      for (const o of dag.nodes[i].outputs) live += dag.values.get(o)!.bytes
      peak = Math.max(peak, live)
      for (const v of dag.nodes[i].inputs) if (made.has(v) && lastUse.get(v) === idx && !held(v)) live -= dag.values.get(v)!.bytes
      for (const o of dag.nodes[i].outputs) if (!lastUse.has(o) && !held(o)) live -= dag.values.get(o)!.bytes
    })
    let flops = 0
    for (const i of nodes) flops += dag.nodes[i].flops
    time.set(peer.id, (time.get(peer.id) ?? 0) + flops / peer.speed)
    mem.set(peer.id, (mem.get(peer.id) ?? 0) + paramBytes + peak)
  })
  let bottleneck = 0
  for (const x of time.values()) bottleneck = Math.max(bottleneck, x)
  const fits = [...mem].every(([id, m]) => m <= byId.get(id)!.memoryBytes)
  return { wire, bottleneck, fits }
}

/**
 * Every folded placement of a small Dag (all cut vectors, each peer
 * non-empty, the middle segment non-empty) on equal peers: the rule's
 * answer, fewest wire bytes within (1 + balance) x the best bottleneck.
 */
function bruteFold (dag: Dag, peers: PeerCapacity[], balance: number): { wire: number, bound: number } | null {
  const K = peers.length
  const n = dag.nodes.length
  const all: Array<{ wire: number, bottleneck: number }> = []
  const cuts: number[] = [0]
  const rec = (i: number): void => {
    if (i === 2 * K - 1) {
      const c = [...cuts, n]
      const stages: number[][] = []
      const owners: string[] = []
      const held = new Array<number>(K).fill(0)
      for (let s = 0; s < 2 * K - 1; s++) {
        if (c[s] === c[s + 1]) continue
        const slot = s < K ? s : 2 * K - 2 - s
        stages.push(Array.from({ length: c[s + 1] - c[s] }, (_, j) => c[s] + j))
        owners.push(peers[slot].id)
        held[slot]++
      }
      if (held.some(h => h === 0) || c[K - 1] === c[K]) return
      const r = costFold(dag, stages, owners, peers)
      if (r.fits) all.push(r)
      return
    }
    for (let x = cuts[cuts.length - 1]; x <= n; x++) { cuts.push(x); rec(i + 1); cuts.pop() }
  }
  rec(1)
  if (all.length === 0) return null
  const best = Math.min(...all.map(r => r.bottleneck))
  const bound = best * (1 + balance)
  const wire = Math.min(...all.filter(r => r.bottleneck <= bound * (1 + 1e-9)).map(r => r.wire))
  return { wire, bound }
}
