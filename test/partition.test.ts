import t from 'tap'
import type { Test } from 'tap'
import { partition, MAX_UNITS } from '../coordinator/partition.ts'
import { formatPlan, formatBytes, formatFlops, formatTime } from '../coordinator/plan-format.ts'
import { parsePlan, planBottleneck } from '../coordinator/plan.ts'
import { LumiereError } from '../src/errors.ts'
import type { Dag, DagNode, DagValue } from '../src/onnx/dag.ts'
import type { PeerCapacity, Plan } from '../coordinator/plan.ts'

/**
 * A Dag from a compact description. Each node line is
 *   "name Op in1,in2 -> out1,out2 [flops] [dup]"   ('-' for no inputs)
 * Value bytes default to 1000 (F32, static shape [bytes / 4]); `bytes`
 * overrides, `unknownShape` marks values whose shape is unknown. Names in
 * `inputs` are graph inputs, in `inits` initializers (name → bytes).
 */
interface Spec {
  inputs: string[]
  outputs: string[]
  nodes: string[]
  inits?: Record<string, number>
  bytes?: Record<string, number>
  unknownShape?: string[]
  /** ONNX sequence values (shape null, 0 bytes). */
  sequences?: string[]
}

function makeDag (spec: Spec): Dag {
  const bytesOf = (name: string): number => spec.bytes?.[name] ?? spec.inits?.[name] ?? 1000
  const values = new Map<string, DagValue>()
  const initializers = new Map<string, { bytes: number, dtype: 'F32', shape: number[] }>()
  const value = (name: string, producer: number, kind: DagValue['kind']): DagValue => {
    const seq = spec.sequences?.includes(name) === true
    const b = seq ? 0 : bytesOf(name)
    const v: DagValue = {
      name,
      dtype: 'F32',
      shape: spec.unknownShape?.includes(name) === true || seq ? null : [b / 4],
      bytes: b,
      producer,
      consumers: [],
      kind,
      isOutput: spec.outputs.includes(name),
      ...(seq ? { valueKind: 'sequence' as const } : {})
    }
    values.set(name, v)
    return v
  }
  for (const name of spec.inputs) value(name, -1, 'input')
  for (const [name, b] of Object.entries(spec.inits ?? {})) {
    value(name, -1, 'initializer')
    initializers.set(name, { bytes: b, dtype: 'F32', shape: [b / 4] })
  }
  const nodes: DagNode[] = spec.nodes.map((line, index) => {
    const [name, opType, ins, arrow, outs, ...rest] = line.trim().split(/\s+/)
    if (arrow !== '->') throw new Error(`bad node line: ${line}`)
    const inputs = ins === '-' ? [] : ins.split(',')
    const outputs = outs.split(',')
    const flops = rest.find(r => /^\d/.test(r))
    let paramBytes = 0
    for (const i of inputs) if (initializers.has(i)) paramBytes += bytesOf(i)
    let activationBytes = 0
    for (const o of outputs) activationBytes += value(o, index, 'activation').bytes
    return { index, name, opType, inputs, outputs, flops: flops === undefined ? 100 : Number(flops), paramBytes, activationBytes, duplicable: rest.includes('dup') }
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

/** n equal nodes in a chain x -> v0 -> v1 -> ... -> out. */
function chain (n: number, opts: { flops?: number[], bytes?: Record<string, number>, params?: number[] } = {}): Dag {
  const nodes: string[] = []
  const inits: Record<string, number> = {}
  for (let i = 0; i < n; i++) {
    const input = i === 0 ? 'x' : `v${i - 1}`
    const out = i === n - 1 ? 'out' : `v${i}`
    const p = opts.params?.[i]
    if (p !== undefined) inits[`w${i}`] = p
    nodes.push(`n${i} Op ${input}${p !== undefined ? `,w${i}` : ''} -> ${out} ${opts.flops?.[i] ?? 100}`)
  }
  return makeDag({ inputs: ['x'], outputs: ['out'], nodes, inits, bytes: opts.bytes })
}

function peersOf (n: number, memoryBytes = 1e12, speed = 1): PeerCapacity[] {
  return Array.from({ length: n }, (_, i) => ({ id: `p${i}`, memoryBytes, speed }))
}

const nodesOf = (plan: Plan): number[][] => plan.stages.map(s => s.nodes)

/** Structural invariants every plan must satisfy. */
function check (tt: Test, plan: Plan, dag: Dag): void {
  const K = plan.stages.length
  // Every non-duplicable node exactly once, contiguous in topological order;
  // duplicable nodes only when they produce a graph output, on the last stage.
  const nonDup = dag.nodes.filter(n => !n.duplicable).map(n => n.index)
  const assigned = plan.stages.flatMap(s => s.nodes.filter(i => !dag.nodes[i].duplicable))
  tt.same(assigned, nonDup, 'non-duplicable nodes assigned once each, contiguous, in order')
  plan.stages.forEach((s, k) => {
    tt.equal(s.index, k)
    tt.same(s.nodes, [...s.nodes].sort((a, b) => a - b), 'stage nodes ascending')
    for (const i of s.nodes) {
      if (dag.nodes[i].duplicable) {
        tt.equal(k, K - 1, 'duplicable node only on the last stage')
        tt.ok(dag.nodes[i].outputs.some(o => dag.outputs.includes(o)), 'assigned duplicable node makes a graph output')
      }
    }
  })
  tt.equal(new Set(plan.stages.map(s => s.peer)).size, K, 'distinct peers')
  tt.same(plan.route, plan.stages.map(s => s.index))
  // Totals are the sums.
  tt.equal(plan.totals.flops, plan.stages.reduce((a, s) => a + s.flops, 0))
  tt.equal(plan.totals.paramBytes, plan.stages.reduce((a, s) => a + s.paramBytes, 0))
  tt.equal(plan.totals.wireBytes, plan.boundaries.reduce((a, b) => a + b.bytes, 0))
  const outBytes = plan.stages.reduce((a, s) => a + s.outputs.filter(o => o.to.includes('output')).reduce((x, o) => x + o.bytes, 0), 0)
  tt.equal(plan.totals.wireBytes, plan.stages.reduce((a, s) => a + s.inputs.reduce((x, i) => x + i.bytes, 0), 0) + outBytes, 'wire = stage inputs + graph outputs')
  // Stage inputs and outputs agree with each other and the boundaries.
  for (const s of plan.stages) {
    for (const x of s.inputs) {
      if (x.from === 'input') continue
      const o = plan.stages[x.from].outputs.find(y => y.name === x.name)
      tt.ok(o !== undefined && o.to.includes(s.index), `${x.name} announced by stage ${x.from} to ${s.index}`)
      tt.ok(x.from < s.index, 'values flow forward')
      tt.ok(plan.boundaries.some(b => b.from === x.from && b.to === s.index && b.names.includes(x.name)))
    }
    tt.equal(new Set(s.inputs.map(x => x.name)).size, s.inputs.length, 'a value enters a stage once')
  }
  // JSON round trip.
  const back = JSON.parse(JSON.stringify(plan)) as unknown
  tt.same(back, plan, 'JSON round trip')
  tt.same(parsePlan(back), plan)
}

function throwsCode (tt: Test, fn: () => unknown, code: string, match?: RegExp): void {
  try {
    fn()
    tt.fail(`expected ${code}`)
  } catch (err) {
    tt.ok(err instanceof LumiereError, 'a LumiereError')
    tt.equal((err as LumiereError).code, code)
    if (match !== undefined) tt.match((err as Error).message, match)
  }
}

t.test('equal chain of 8, K=4: 2 nodes each', async tt => {
  const dag = chain(8)
  const plan = partition(dag, peersOf(4), { stages: 4 })
  check(tt, plan, dag)
  tt.same(nodesOf(plan), [[0, 1], [2, 3], [4, 5], [6, 7]])
  tt.same(plan.stages.map(s => s.estSeconds), [200, 200, 200, 200])
  tt.same(plan.stages.map(s => s.peer), ['p0', 'p1', 'p2', 'p3'], 'equal peers keep the caller order')
  tt.equal(plan.totals.flops, 800)
  // x in, 3 cuts of 1000 B, out: 5 x 1000.
  tt.equal(plan.totals.wireBytes, 5000)
  tt.same(plan.boundaries.map(b => [b.from, b.to, b.names]), [
    ['input', 0, ['x']], [0, 1, ['v1']], [1, 2, ['v3']], [2, 3, ['v5']], [3, 'output', ['out']]
  ])
  tt.same(plan.stages[1].inputs, [{ name: 'v1', from: 0, bytes: 1000 }])
  tt.same(plan.stages[1].outputs, [{ name: 'v3', to: [2], bytes: 1000 }])
})

t.test('K=1 takes the whole graph on the fastest peer', async tt => {
  const dag = chain(5)
  const peers = [{ id: 'slow', memoryBytes: 1e9, speed: 1 }, { id: 'fast', memoryBytes: 1e9, speed: 4 }]
  const plan = partition(dag, peers, { stages: 1 })
  check(tt, plan, dag)
  tt.same(nodesOf(plan), [[0, 1, 2, 3, 4]])
  tt.equal(plan.stages[0].peer, 'fast')
  tt.equal(plan.stages[0].estSeconds, 125)
  tt.same(plan.boundaries.map(b => [b.from, b.to]), [['input', 0], [0, 'output']])
})

t.test('heterogeneous speeds shift work to the fast peer', async tt => {
  const dag = chain(8)
  const peers = [{ id: 'slow', memoryBytes: 1e9, speed: 1 }, { id: 'fast', memoryBytes: 1e9, speed: 3 }]
  const plan = partition(dag, peers, { stages: 2 })
  check(tt, plan, dag)
  // 6 x 100 / 3 = 200 = 2 x 100 / 1: the unique balanced split 6 / 2.
  const fast = plan.stages.find(s => s.peer === 'fast')
  const slow = plan.stages.find(s => s.peer === 'slow')
  tt.equal(fast?.nodes.length, 6)
  tt.equal(slow?.nodes.length, 2)
  tt.equal(planBottleneck(plan), 200)
  tt.same(nodesOf(plan), [[0, 1, 2, 3, 4, 5], [6, 7]], 'the fast peer takes the first stage (speed-descending order first)')

  // Three peers 1 : 2 : 1 over 8 equal nodes: 2 / 4 / 2 is the only 200-bottleneck split
  // when the fast peer is in the middle; any order reaches 200 and ties keep the first order.
  const three = [{ id: 'a', memoryBytes: 1e9, speed: 1 }, { id: 'b', memoryBytes: 1e9, speed: 2 }, { id: 'c', memoryBytes: 1e9, speed: 1 }]
  const p3 = partition(dag, three, { stages: 3 })
  check(tt, p3, dag)
  tt.equal(planBottleneck(p3), 200)
  tt.equal(p3.stages.find(s => s.peer === 'b')?.nodes.length, 4)
})

t.test('a heavy boundary is avoided when an equally balanced cut is lighter', async tt => {
  const flops = [100, 100, 10, 100, 100]
  // Cut after n1 or after n2: both give a 210 bottleneck.
  const heavyAfter1 = chain(5, { flops, bytes: { v1: 1_000_000, v2: 10 } })
  const a = partition(heavyAfter1, peersOf(2), { stages: 2 })
  check(tt, a, heavyAfter1)
  tt.same(nodesOf(a), [[0, 1, 2], [3, 4]])
  tt.same(a.boundaries.find(b => b.from === 0 && b.to === 1), { from: 0, to: 1, names: ['v2'], bytes: 10 })
  tt.equal(planBottleneck(a), 210)

  const heavyAfter2 = chain(5, { flops, bytes: { v1: 10, v2: 1_000_000 } })
  const b = partition(heavyAfter2, peersOf(2), { stages: 2 })
  check(tt, b, heavyAfter2)
  tt.same(nodesOf(b), [[0, 1], [2, 3, 4]])
  tt.equal(b.totals.wireBytes, 1000 + 10 + 1000)
})

t.test('balance tolerance: wire bytes only win within the tolerance', async tt => {
  // Balanced cut (after n1) crosses 1 MB; cut after n0 crosses 10 B but is 50 % slower.
  const dag = chain(4, { bytes: { v0: 10, v1: 1_000_000, v2: 1000 } })
  const strict = partition(dag, peersOf(2), { stages: 2 })
  check(tt, strict, dag)
  tt.same(nodesOf(strict), [[0, 1], [2, 3]], 'default 10 %: balance first')
  tt.equal(planBottleneck(strict), 200)
  const loose = partition(dag, peersOf(2), { stages: 2, balance: 0.6 })
  check(tt, loose, dag)
  tt.same(nodesOf(loose), [[0], [1, 2, 3]], '60 %: the light cut wins')
  tt.equal(planBottleneck(loose), 300)
  const zero = partition(dag, peersOf(2), { stages: 2, balance: 0 })
  tt.same(nodesOf(zero), [[0, 1], [2, 3]])
})

t.test('a value read by several nodes of one later stage crosses once', async tt => {
  const dag = makeDag({
    inputs: ['x'],
    outputs: ['D'],
    bytes: { A: 5000 },
    nodes: [
      'a Op x -> A',
      'b Op A -> B',
      'c Op B,A -> C',
      'd Op C,A -> D'
    ]
  })
  const plan = partition(dag, peersOf(2), { stages: 2 })
  check(tt, plan, dag)
  tt.same(nodesOf(plan), [[0, 1], [2, 3]])
  tt.same(plan.stages[1].inputs, [{ name: 'A', from: 0, bytes: 5000 }, { name: 'B', from: 0, bytes: 1000 }])
  tt.same(plan.boundaries.find(b => b.from === 0 && b.to === 1), { from: 0, to: 1, names: ['A', 'B'], bytes: 6000 })
  tt.equal(plan.totals.wireBytes, 1000 + 6000 + 1000)
})

t.test('a value needed by later stages goes to each directly', async tt => {
  const dag = makeDag({
    inputs: ['x'],
    outputs: ['out'],
    bytes: { X: 7000 },
    nodes: [
      'n0 Op x -> X',
      'n1 Op X -> Y1',
      'n2 Op Y1,X -> Y2',
      'n3 Op Y2,X -> out'
    ]
  })
  const plan = partition(dag, peersOf(4), { stages: 4 })
  check(tt, plan, dag)
  tt.same(nodesOf(plan), [[0], [1], [2], [3]])
  tt.same(plan.stages[0].outputs, [{ name: 'X', to: [1, 2, 3], bytes: 7000 }])
  tt.same(plan.stages[1].outputs, [{ name: 'Y1', to: [2], bytes: 1000 }], 'stage 1 does not relay X')
  tt.same(plan.boundaries.map(b => [b.from, b.to, b.names, b.bytes]), [
    ['input', 0, ['x'], 1000],
    [0, 1, ['X'], 7000],
    [0, 2, ['X'], 7000],
    [0, 3, ['X'], 7000],
    [1, 2, ['Y1'], 1000],
    [2, 3, ['Y2'], 1000],
    [3, 'output', ['out'], 1000]
  ])
  tt.equal(plan.totals.wireBytes, 1000 + 3 * 7000 + 2 * 1000 + 1000)
})

t.test('diamond', async tt => {
  const dag = makeDag({
    inputs: ['x'],
    outputs: ['D'],
    bytes: { A: 4000 },
    nodes: ['a Op x -> A', 'b Op A -> B', 'c Op A -> C', 'd Op B,C -> D']
  })
  const plan = partition(dag, peersOf(2), { stages: 2 })
  check(tt, plan, dag)
  tt.same(nodesOf(plan), [[0, 1], [2, 3]])
  tt.same(plan.stages[1].inputs.map(i => i.name), ['A', 'B'])
  tt.equal(plan.stages[0].peakActivationBytes, 1000 + 4000 + 1000, 'x held, A held (leaves the stage), B')
})

t.test('U-Net-like graph with long skips', async tt => {
  const dag = makeDag({
    inputs: ['x'],
    outputs: ['out'],
    bytes: { E1: 8000, E2: 4000 },
    nodes: [
      'enc1 Conv x -> E1',
      'enc2 Conv E1 -> E2',
      'mid Conv E2 -> M',
      'dec2 Conv M,E2 -> D2',
      'dec1 Conv D2,E1 -> out'
    ]
  })
  // K=2: cuts after enc2 and after mid both give 300; after enc2 carries E1 + E2 = 12000,
  // after mid M + E2 + E1 = 13000.
  const two = partition(dag, peersOf(2), { stages: 2 })
  check(tt, two, dag)
  tt.same(nodesOf(two), [[0, 1], [2, 3, 4]])
  tt.same(two.boundaries.find(b => b.from === 0 && b.to === 1), { from: 0, to: 1, names: ['E1', 'E2'], bytes: 12000 })
  // K=3 (bottleneck 200): 2/2/1 carries E2, then D2 + E1 (E1 straight from stage 0) = 13000;
  // 2/1/2 carries 17000 and 1/2/2 21000.
  const three = partition(dag, peersOf(3), { stages: 3 })
  check(tt, three, dag)
  tt.same(nodesOf(three), [[0, 1], [2, 3], [4]])
  tt.same(three.boundaries.find(b => b.from === 0 && b.to === 2), { from: 0, to: 2, names: ['E1'], bytes: 8000 })
  tt.same(three.stages[0].outputs, [{ name: 'E1', to: [2], bytes: 8000 }, { name: 'E2', to: [1], bytes: 4000 }])
  tt.equal(three.totals.wireBytes - 2000, 13000)
  // Loose balance (bottleneck up to 600 allowed): the lightest cut overall wins:
  // after enc1 carries E1 once (8000) although enc2 and dec1 both read it; after dec2, D2 + E1 = 9000.
  const loose = partition(dag, peersOf(2), { stages: 2, balance: 1 })
  check(tt, loose, dag)
  tt.same(nodesOf(loose), [[0], [1, 2, 3, 4]])
  tt.equal(planBottleneck(loose), 400)
})

t.test('duplicable Shape -> Gather chain is copied, never sent', async tt => {
  const spec: Spec = {
    inputs: ['x'],
    outputs: ['out'],
    inits: { idx: 8 },
    bytes: { Y: 4000, S: 16, G: 8 },
    nodes: [
      'c1 Conv x -> Y',
      'sh Shape Y -> S 0 dup',
      'g Gather S,idx -> G 0 dup',
      'c2 Conv Y -> Z',
      'r Reshape Z,G -> R',
      'c3 Conv R -> out'
    ]
  }
  const dag = makeDag(spec)
  const plan = partition(dag, peersOf(2), { stages: 2 })
  check(tt, plan, dag)
  tt.same(nodesOf(plan), [[0, 3], [4, 5]], 'duplicable nodes are in no stage')
  tt.same(plan.stages[1].inputs, [{ name: 'Z', from: 0, bytes: 1000 }], 'neither S, G nor Y (folded Shape) cross')
  tt.equal(plan.stages[1].paramBytes, 8, 'the copied Gather brings its initializer')
  tt.equal(plan.stages[0].paramBytes, 0)

  // Shape of a value with unknown shape needs the value itself.
  const unknown = makeDag({ ...spec, unknownShape: ['Y'] })
  const p2 = partition(unknown, peersOf(2), { stages: 2 })
  check(tt, p2, unknown)
  tt.same(p2.stages[1].inputs.map(i => i.name), ['Y', 'Z'])
})

t.test('a graph output made by a duplicable node goes to the last stage', async tt => {
  const dag = makeDag({
    inputs: ['x'],
    outputs: ['Z', 'S'],
    bytes: { S: 16 },
    nodes: [
      'c1 Conv x -> Y',
      'sh Shape Y -> S 0 dup',
      'c2 Conv Y -> Z'
    ]
  })
  const plan = partition(dag, peersOf(2), { stages: 2 })
  check(tt, plan, dag)
  tt.same(nodesOf(plan), [[0], [1, 2]])
  tt.same(plan.stages[1].outputs, [{ name: 'Z', to: ['output'], bytes: 1000 }, { name: 'S', to: ['output'], bytes: 16 }])
  tt.same(plan.stages[0].outputs, [{ name: 'Y', to: [1], bytes: 1000 }])
  tt.equal(plan.totals.wireBytes, 1000 + 1000 + 1000 + 16)
})

t.test('a sequence value never crosses stages', async tt => {
  const dag = makeDag({
    inputs: ['x'],
    outputs: ['out'],
    sequences: ['SEQ'],
    bytes: { C: 5000 },
    nodes: ['a Op x -> A', 'loop Loop A -> SEQ', 'c ConcatFromSequence SEQ -> C', 'd Op C -> out']
  })
  // The balanced cut [a, loop] | [c, d] would send SEQ; of the 300 cuts, after a sends 1000 B, after c 5000 B.
  const plan = partition(dag, peersOf(2), { stages: 2 })
  check(tt, plan, dag)
  tt.same(nodesOf(plan), [[0], [1, 2, 3]])
  throwsCode(tt, () => partition(dag, peersOf(4), { stages: 4 }), 'PLAN_IMPOSSIBLE', /sequence.*'SEQ'.*plan fewer stages/)
  const three = partition(dag, peersOf(3), { stages: 3 })
  tt.same(nodesOf(three), [[0], [1, 2], [3]])
})

t.test('memory limits', async tt => {
  // Heavy parameters at the end: the big peer must take the last stage.
  const heavyEnd = chain(4, { params: [10, 10, 10, 5000] })
  const peers = [{ id: 'big', memoryBytes: 10_000, speed: 1 }, { id: 'small', memoryBytes: 5000, speed: 1 }]
  const a = partition(heavyEnd, peers, { stages: 2 })
  check(tt, a, heavyEnd)
  tt.same(nodesOf(a), [[0, 1], [2, 3]])
  tt.same(a.stages.map(s => s.peer), ['small', 'big'])
  for (const [k, s] of a.stages.entries()) {
    tt.ok(s.paramBytes + s.peakActivationBytes <= peers.find(p => p.id === s.peer)!.memoryBytes, `stage ${k} fits`)
  }
  tt.equal(a.stages[1].paramBytes, 5010)

  // Memory forces an unbalanced cut: 'tight' holds one node (100 B params, 1000 B values) at most.
  const dag = chain(4, { params: [100, 100, 100, 100] })
  // One node: 100 + (1000 in + 1000 out) = 2100; two nodes: 200 + 3000 = 3200.
  const tight = [{ id: 'roomy', memoryBytes: 1e6, speed: 1 }, { id: 'tight', memoryBytes: 2500, speed: 1 }]
  const b = partition(dag, tight, { stages: 2 })
  check(tt, b, dag)
  tt.same(nodesOf(b), [[0, 1, 2], [3]])
  tt.same(b.stages.map(s => s.peer), ['roomy', 'tight'])
  tt.equal(b.stages[1].paramBytes + b.stages[1].peakActivationBytes, 2100)
  tt.equal(b.stages[0].peakActivationBytes, 3000, 'x held, then two values live at a time, v2 held to the end')

  // Nothing fits: two peers of 2500 B cannot hold 4 nodes in 2 stages.
  throwsCode(tt, () => partition(dag, [{ id: 'a', memoryBytes: 2500, speed: 1 }, { id: 'b', memoryBytes: 2500, speed: 1 }], { stages: 2 }),
    'PLAN_IMPOSSIBLE', /stage \d \(2 nodes, n\d → n\d\) needs 3\.1[0-9] KiB .* peer [ab] offers 2\.44 KiB/)
  // A single node too big for every peer.
  const huge = chain(3, { params: [10, 1_000_000, 10] })
  throwsCode(tt, () => partition(huge, peersOf(3, 100_000), { stages: 3 }), 'PLAN_IMPOSSIBLE', /node n1 \(Op\) alone needs/)
  // Enough with more memory.
  const ok = partition(huge, [...peersOf(2, 100_000), { id: 'giant', memoryBytes: 2_000_000, speed: 1 }], { stages: 3 })
  tt.equal(ok.stages[1].peer, 'giant')
})

t.test('bad arguments and impossible plans', async tt => {
  const dag = chain(3)
  throwsCode(tt, () => partition(dag, peersOf(4), { stages: 4 }), 'PLAN_IMPOSSIBLE', /only 3 assignable/)
  throwsCode(tt, () => partition(dag, peersOf(2), { stages: 3 }), 'PLAN_IMPOSSIBLE', /3 stages need 3 peers.*only 2 are available/)
  throwsCode(tt, () => partition(dag, peersOf(2), { stages: 0 }), 'BAD_ARGUMENT')
  throwsCode(tt, () => partition(dag, peersOf(2), { stages: 1.5 }), 'BAD_ARGUMENT')
  throwsCode(tt, () => partition(dag, peersOf(2), { stages: 1, balance: -1 }), 'BAD_ARGUMENT')
  throwsCode(tt, () => partition(dag, [{ id: 'a', memoryBytes: 1, speed: 0 }], { stages: 1 }), 'BAD_ARGUMENT', /speed/)
  throwsCode(tt, () => partition(dag, [{ id: 'a', memoryBytes: 1e9, speed: 1 }, { id: 'a', memoryBytes: 1e9, speed: 1 }], { stages: 1 }), 'BAD_ARGUMENT', /twice/)
  // Duplicable nodes do not count as assignable.
  const dupHeavy = makeDag({ inputs: ['x'], outputs: ['y'], nodes: ['s Shape x -> S 0 dup', 'u Unsqueeze S -> U 0 dup', 'r Reshape x,U -> y'] })
  throwsCode(tt, () => partition(dupHeavy, peersOf(2), { stages: 2 }), 'PLAN_IMPOSSIBLE', /only 1 assignable/)
  const one = partition(dupHeavy, peersOf(2), { stages: 1 })
  check(tt, one, dupHeavy)
  tt.same(one.stages[0].inputs, [{ name: 'x', from: 'input', bytes: 1000 }])
  throwsCode(tt, () => parsePlan({ stages: [] }), 'PROTOCOL')
  throwsCode(tt, () => parsePlan({ ...partition(dag, peersOf(1), { stages: 1 }), route: [5] }), 'PROTOCOL')
})

t.test('formatPlan', async tt => {
  const dag = chain(8, { flops: [2e9, 2e9, 2e9, 2e9, 2e9, 2e9, 2e9, 2e9], bytes: { x: 3 * 1024 * 1024 } })
  const plan = partition(dag, peersOf(4), { stages: 4 })
  const text = formatPlan(plan, dag)
  tt.match(text, /route: 1 → 2 → 3 → 4/)
  tt.match(text, /n0 → n1/)
  tt.match(text, /4\.00 GFLOP/)
  tt.match(text, /3\.00 MiB/)
  tt.match(text, /wire per forward pass: /)
  tt.match(text, /input → 1: 3\.00 MiB \[x\]/)
  tt.equal(text.split('\n')[0].startsWith('stage'), true)
  tt.match(formatPlan(plan), /#0 → #1/, 'without the dag: node indices')
  tt.equal(formatBytes(512), '512 B')
  tt.equal(formatBytes(1536), '1.50 KiB')
  tt.equal(formatFlops(2.5e6), '2.50 MFLOP')
  tt.equal(formatTime(0.023), '23.0 ms')
  tt.equal(formatTime(750), '750 s')
  tt.equal(formatTime(1.25), '1.25 s')
})

t.test('large graphs plan fast and near the ideal balance', async tt => {
  // Deterministic pseudo-random flops.
  let seed = 7
  const rnd = (): number => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648 }
  for (const n of [MAX_UNITS, 12_000]) {
    const flops = Array.from({ length: n }, () => 1 + Math.floor(rnd() * 1000))
    const dag = chain(n, { flops })
    const total = flops.reduce((a, b) => a + b, 0)
    const start = performance.now()
    const plan = partition(dag, peersOf(6), { stages: 6 })
    const ms = performance.now() - start
    check(tt, plan, dag)
    tt.ok(ms < 3000, `${n} nodes planned in ${ms.toFixed(0)} ms`)
    tt.ok(planBottleneck(plan) <= (total / 6) * 1.01 + 1000, `bottleneck ${planBottleneck(plan)} near ${total / 6}`)
  }
})

/**
 * Brute force on small random DAGs: every cut and every peer order, costed
 * by an independent implementation of the rules (stage inputs traced through
 * duplicable nodes, distinct initializers, the liveness scan). The planner
 * must reach the best bottleneck within the tolerance and, among those, the
 * fewest wire bytes; and its per-stage numbers must match.
 */
t.test('random DAGs against brute force', async tt => {
  let seed = 12345
  const rnd = (): number => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648 }
  const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)]
  let compared = 0
  let impossibleSeen = 0
  for (let trial = 0; trial < 150; trial++) {
    const lines: string[] = []
    const bytes: Record<string, number> = { x: 1 + Math.floor(rnd() * 100), y: 1 + Math.floor(rnd() * 100) }
    const inits: Record<string, number> = {}
    const avail = ['x', 'y']
    const size = 3 + Math.floor(rnd() * 9)
    for (let i = 0; i < size; i++) {
      const ins = new Set<string>()
      const k = 1 + Math.floor(rnd() * 3)
      for (let j = 0; j < k; j++) ins.add(pick(avail))
      if (rnd() < 0.4) { inits[`w${i}`] = 1 + Math.floor(rnd() * 200); ins.add(`w${i}`) }
      if (rnd() < 0.2 && i > 0) ins.add(`w${Math.floor(rnd() * i)}`)
      const outs = rnd() < 0.2 ? [`a${i}`, `b${i}`] : [`a${i}`]
      for (const o of outs) bytes[o] = 1 + Math.floor(rnd() * 100)
      const dup = i > 0 && rnd() < 0.2
      lines.push(`n${i} Op ${[...ins].filter(x => !x.startsWith('w') || x in inits).join(',')} -> ${outs.join(',')} ${dup ? 0 : 1 + Math.floor(rnd() * 100)}${dup ? ' dup' : ''}`)
      avail.push(...outs)
    }
    const dag0 = makeDag({ inputs: ['x', 'y'], outputs: [], nodes: lines, inits, bytes })
    // Graph outputs: the last non-duplicable node's outputs and maybe one more non-duplicable value.
    const nonDup = dag0.nodes.filter(n => !n.duplicable)
    if (nonDup.length < 2) continue
    const outputs = [...nonDup[nonDup.length - 1].outputs]
    if (rnd() < 0.5) outputs.push(pick(pick(nonDup).outputs))
    const dag = makeDag({ inputs: ['x', 'y'], outputs: [...new Set(outputs)], nodes: lines, inits, bytes })
    const K = rnd() < 0.5 ? 2 : 3
    if (nonDup.length < K) continue
    const balance = pick([0, 0.1, 0.3])

    // Independent costing of one cut (non-dup node lists per stage) on one peer order.
    const cost = (stages: number[][], order: PeerCapacity[]) => {
      const stageOf = new Map<number, number>()
      stages.forEach((s, k) => { for (const i of s) stageOf.set(i, k) })
      const trace = (name: string, needs: Set<string>, params: Set<string>): void => {
        if (name in inits) { params.add(name); return }
        const v = dag.values.get(name)!
        if (v.producer < 0) { needs.add(name); return }
        const p = dag.nodes[v.producer]
        if (p.duplicable) { for (const i of p.inputs) trace(i, needs, params); return }
        needs.add(name)
      }
      const per = stages.map(nodes => nodes.map(i => { const needs = new Set<string>(); const params = new Set<string>(); for (const x of dag.nodes[i].inputs) trace(x, needs, params); return { i, needs, params } }))
      // Which stages need each value.
      const neededBy = new Map<string, Set<number>>()
      per.forEach((ns, k) => { for (const n of ns) for (const v of n.needs) { if (!neededBy.has(v)) neededBy.set(v, new Set()); neededBy.get(v)!.add(k) } })
      let wire = 0
      let bottleneck = 0
      let fits = true
      const detail = per.map((ns, k) => {
        const made = new Set(ns.flatMap(n => dag.nodes[n.i].outputs))
        const inputs = new Set<string>()
        const params = new Set<string>()
        for (const n of ns) { for (const v of n.needs) if (!made.has(v)) inputs.add(v); for (const q of n.params) params.add(q) }
        let inBytes = 0
        for (const v of inputs) inBytes += bytes[v]
        let paramBytes = 0
        for (const q of params) paramBytes += inits[q]
        // Liveness scan.
        const held = (v: string): boolean => dag.outputs.includes(v) || [...(neededBy.get(v) ?? [])].some(s => s !== k)
        const lastUse = new Map<string, number>()
        ns.forEach((n, idx) => { for (const v of n.needs) if (made.has(v)) lastUse.set(v, idx) })
        let live = inBytes
        let peak = live
        ns.forEach((n, idx) => {
          for (const o of dag.nodes[n.i].outputs) live += bytes[o]
          peak = Math.max(peak, live)
          for (const v of n.needs) if (made.has(v) && lastUse.get(v) === idx && !held(v)) live -= bytes[v]
          for (const o of dag.nodes[n.i].outputs) if (!lastUse.has(o) && !held(o)) live -= bytes[o]
        })
        let flops = 0
        for (const n of ns) flops += dag.nodes[n.i].flops
        const time = flops / order[k].speed
        bottleneck = Math.max(bottleneck, time)
        wire += inBytes
        for (const v of made) if (dag.outputs.includes(v)) wire += bytes[v]
        if (paramBytes + peak > order[k].memoryBytes) fits = false
        return { paramBytes, peak, inBytes, time }
      })
      return { wire, bottleneck, fits, detail }
    }

    // Every cut of the non-dup order into K parts.
    const ids = nonDup.map(n => n.index)
    const cuts: number[][][] = []
    const rec = (start: number, left: number, acc: number[][]): void => {
      if (left === 1) { cuts.push([...acc, ids.slice(start)]); return }
      for (let e = start + 1; e <= ids.length - left + 1; e++) rec(e, left - 1, [...acc, ids.slice(start, e)])
    }
    rec(0, K, [])
    // Peers: K=2 two different peers (both orders tried by brute force and the planner); K=3 equal peers.
    const need = cost([ids], [{ id: 'all', memoryBytes: Infinity, speed: 1 }]).detail[0]
    const memFor = (): number => Math.floor((need.paramBytes + need.peak) * (0.3 + rnd() * 0.8))
    const peers: PeerCapacity[] = K === 2
      ? [{ id: 'a', memoryBytes: memFor(), speed: 1 + Math.floor(rnd() * 3) }, { id: 'b', memoryBytes: memFor(), speed: 1 + Math.floor(rnd() * 3) }]
      : peersOf(3, memFor())
    const orders = K === 2 ? [peers, [peers[1], peers[0]]] : [peers]
    const all = cuts.flatMap(c => orders.map(o => ({ c, o, r: cost(c, o) }))).filter(x => x.r.fits)
    if (all.length === 0) {
      impossibleSeen++
      throwsCode(tt, () => partition(dag, peers, { stages: K, balance }), 'PLAN_IMPOSSIBLE')
      continue
    }
    const best = Math.min(...all.map(x => x.r.bottleneck))
    const within = all.filter(x => x.r.bottleneck <= best * (1 + balance) * (1 + 1e-9))
    const minWire = Math.min(...within.map(x => x.r.wire))
    const plan = partition(dag, peers, { stages: K, balance })
    check(tt, plan, dag)
    const order = plan.stages.map(s => peers.find(p => p.id === s.peer)!)
    const mine = cost(plan.stages.map(s => s.nodes), order)
    tt.ok(mine.fits, `trial ${trial}: plan fits memory`)
    tt.ok(mine.bottleneck <= best * (1 + balance) * (1 + 1e-9), `trial ${trial}: bottleneck ${mine.bottleneck} within ${balance} of ${best}`)
    tt.equal(mine.wire, minWire, `trial ${trial}: fewest wire bytes`)
    tt.equal(plan.totals.wireBytes, mine.wire)
    tt.same(plan.stages.map(s => [s.paramBytes, s.peakActivationBytes, s.estSeconds]), mine.detail.map(d => [d.paramBytes, d.peak, d.time]), `trial ${trial}: stage numbers`)
    compared++
  }
  tt.ok(compared > 60, `${compared} plans compared`)
  tt.ok(impossibleSeen > 3, `${impossibleSeen} impossible cases`)
})
