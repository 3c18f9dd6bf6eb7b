import t from 'tap'
import { LumiereError } from '../src/errors.ts'
import { GraphBuilder } from '../src/onnx/builder.ts'
import type { Dag } from '../src/onnx/dag.ts'
import { extractStage, planStage } from '../src/onnx/extract.ts'
import type { Stage } from '../src/onnx/extract.ts'
import { buildDag, buildDagProbed } from '../src/onnx/graph.ts'
import { nodeReads, subgraphs, outerScopeReads } from '../src/onnx/proto.ts'
import type { ModelProto, NodeProto } from '../src/onnx/proto.ts'
import { runModel } from '../src/onnx/run.ts'
import { f32 } from '../src/tensor/tensor.ts'
import type { Tensor } from '../src/tensor/tensor.ts'
import { FIXTURES, FIXTURE_DIMS, mlpChain, mulberry32, randomInputs, torchLikeNet } from './fixtures/graphs.ts'
import { contiguousCuts, convexSplit, isContiguous, maxAbs, maxAbsDiff, runChain } from './fixtures/stages.ts'

/** The type of a subtest's `t`. */
type T = Parameters<Parameters<typeof t.test>[0]>[0]

function code (fn: () => unknown): string | undefined {
  try { fn() } catch (err) { return err instanceof LumiereError ? err.code : `not a LumiereError: ${String(err)}` }
  return undefined
}

/** Every name a stage model's nodes read, bodies included. */
function stageReads (model: ModelProto): Set<string> {
  return new Set((model.graph?.node ?? []).flatMap(nodeReads))
}

/** A non-contiguous convex split: the first seeded pick pair whose middle set is not one run. */
function nonContiguousSplit (dag: Dag, seed: number): number[][] {
  const rand = mulberry32(seed)
  for (let attempt = 0; attempt < 200; attempt++) {
    const a = Math.floor(rand() * dag.nodes.length)
    const b = Math.floor(rand() * dag.nodes.length)
    const split = convexSplit(dag, [a, b])
    if (split.length === 3 && !isContiguous(split[1]) && split[1].length >= 2) return split
  }
  throw new Error('no non-contiguous split found')
}

/** Checks one partition of a fixture: validity, coverage, inputs, and equality with the whole graph. */
async function checkPartition (t: T, label: string, model: ModelProto, dag: Dag, sets: number[][], feeds: Record<string, Tensor>, ref: Record<string, Tensor>): Promise<void> {
  const stages: Stage[] = sets.map(s => extractStage(model, dag, s))
  // Coverage: own nodes partition the graph; extras are duplicable only.
  const owners = new Map<number, number>()
  stages.forEach((stage, k) => {
    const dup = new Set(stage.duplicated)
    for (const i of stage.nodes) {
      if (dup.has(i)) continue
      t.notOk(owners.has(i), `${label}: node ${i} owned once`)
      owners.set(i, k)
    }
    t.ok(stage.folded.every(i => stage.nodes.includes(i) && ['Shape', 'Size'].includes(dag.nodes[i].opType)), `${label}: stage ${k} folds only Shape/Size`)
    t.ok(stage.duplicated.every(i => dag.nodes[i].duplicable), `${label}: stage ${k} duplicates only duplicable nodes`)
    t.equal(new Set(stage.inputs).size, stage.inputs.length, `${label}: stage ${k} inputs unique`)
    t.equal(new Set(stage.outputs).size, stage.outputs.length, `${label}: stage ${k} outputs unique`)
    // Nothing copied that is not read, nothing read that is not defined.
    const reads = stageReads(stage.model)
    const inits = (stage.model.graph?.initializer ?? []).map(x => x.name!)
    t.ok(inits.every(n => reads.has(n)), `${label}: stage ${k} copies only initializers it reads`)
    const names = new Set((stage.model.graph?.node ?? []).map(n => n.name))
    t.equal(names.size, stage.model.graph?.node?.length, `${label}: stage ${k} node names unique`)
    t.ok(stage.inputs.every(n => dag.values.get(n)!.kind !== 'initializer'), `${label}: stage ${k} receives no initializer`)
  })
  t.ok(dag.nodes.every(n => owners.has(n.index) || n.duplicable), `${label}: every non-duplicable node in some stage`)
  // Chaining the stages equals one session on the whole graph.
  const env = await runChain(stages, feeds)
  for (const [name, want] of Object.entries(ref)) {
    const diff = maxAbsDiff(env[name], want)
    t.ok(diff <= 1e-5 * maxAbs(want), `${label}: ${name} matches (max diff ${diff})`)
    t.equal(diff, 0, `${label}: ${name} bit-exact`)
  }
}

for (const [name, make] of Object.entries(FIXTURES)) {
  t.test(`${name}: stages chained equal the whole graph`, async t => {
    const model = make()
    const dims = FIXTURE_DIMS[name]
    const dag = await buildDagProbed(model, { dims })
    const feeds = randomInputs(model, 11, dims)
    const ref = await runModel(model, feeds)
    for (let k = 1; k <= 4; k++) {
      const cuts = contiguousCuts(dag, k)
      t.equal(cuts.length, k, `${k} contiguous stages`)
      await checkPartition(t, `${name} K=${k}`, model, dag, cuts, feeds, ref)
    }
    // The planner's contract: duplicable nodes belong to no stage (those
    // making graph outputs go last); every stage recomputes what it needs.
    const assignable = dag.nodes.filter(n => !n.duplicable || n.outputs.some(o => dag.values.get(o)!.isOutput)).map(n => n.index)
    for (let k = 2; k <= 4; k++) {
      const bounds = Array.from({ length: k + 1 }, (_, s) => Math.floor(s * assignable.length / k))
      const sets = bounds.slice(0, -1).map((from, s) => assignable.slice(from, bounds[s + 1]))
      await checkPartition(t, `${name} K=${k} duplicable unassigned`, model, dag, sets, feeds, ref)
    }
    const split = nonContiguousSplit(dag, 5)
    t.notOk(isContiguous(split[1]), 'the middle stage is not contiguous')
    await checkPartition(t, `${name} non-contiguous`, model, dag, split, feeds, ref)
  })
}

t.test('a boundary value read by several later nodes is one stage input', async t => {
  const model = mlpChain()
  const dag = buildDag(model, { dims: { batch: 2 } })
  const h1 = [...dag.values.values()].filter(v => v.kind === 'activation').sort((a, b) => b.consumers.length - a.consumers.length)[0]
  t.ok(h1.consumers.length >= 4, `${h1.name} has ${h1.consumers.length} readers`)
  const head = dag.nodes.filter(n => n.index <= h1.producer).map(n => n.index)
  const rest = dag.nodes.filter(n => n.index > h1.producer).map(n => n.index)
  const stage = extractStage(model, dag, rest)
  t.equal(stage.inputs.filter(n => n === h1.name).length, 1, 'listed once')
  t.equal(stage.model.graph!.input!.filter(v => v.name === h1.name).length, 1, 'declared once')
  t.ok((stage.model.graph?.node ?? []).filter(n => n.input?.includes(h1.name)).length >= 4, 'read by several stage nodes')
  const dimsOf = (s: Stage) => s.model.graph!.input!.find(v => v.name === h1.name)!.type!.tensorType!.shape!.dim!.map(d => d.dimParam ?? d.dimValue)
  t.same(dimsOf(stage), [2, 32], 'declared with the planned batch')
  const first = extractStage(model, dag, head)
  t.same(first.outputs, [h1.name], 'the producing stage outputs it once')
  const feeds = randomInputs(model, 2, { batch: 2 })
  const env = await runChain([first, stage], feeds)
  t.equal(maxAbsDiff(env.probs, (await runModel(model, feeds)).probs), 0, 'identical')

  // Planned without binding the batch, stages keep it symbolic and take any batch.
  const free = buildDag(model)
  const [a, b] = [head, rest].map(s => extractStage(model, free, s))
  t.same(dimsOf(b), ['batch', 32], 'symbolic batch kept')
  for (const batch of [1, 5]) {
    const f = randomInputs(model, 3, { batch })
    const out = await runChain([a, b], f)
    t.equal(maxAbsDiff(out.probs, (await runModel(model, f)).probs), 0, `batch ${batch} identical`)
  }
})

t.test('Loop: outer-scope reads of the body become stage inputs', async t => {
  const model = torchLikeNet()
  const dag = await buildDagProbed(model)
  const loop = dag.nodes.find(n => n.opType === 'Loop')!
  const proto = model.graph!.node![loop.protoIndex!]
  const explicit = new Set(proto.input)
  const outer = loop.inputs.filter(n => !explicit.has(n))
  const activation = outer.find(n => dag.values.get(n)!.kind === 'activation')!
  t.ok(activation != null, 'the body reads a main-graph activation')
  t.same(outer.filter(n => dag.initializers.has(n)).sort(), ['frame_conv.bias', 'frame_conv.weight'], 'and two initializers')
  t.ok(dag.values.get(activation)!.consumers.includes(loop.index), 'the Loop consumes it')

  // The Loop with the ConcatFromSequence that reads its sequence.
  const cfs = dag.nodes.find(n => n.opType === 'ConcatFromSequence')!
  const stage = extractStage(model, dag, [loop.index, cfs.index])
  t.notOk(stage.nodes.includes(dag.values.get(activation)!.producer), 'its producer is elsewhere')
  t.same(stage.inputs, [activation], 'the activation is the only input')
  t.same((stage.model.graph?.initializer ?? []).map(x => x.name).sort(), ['frame_conv.bias', 'frame_conv.weight'], 'body initializers copied')
  const dupOps = stage.duplicated.map(i => dag.nodes[i].opType)
  t.ok(dupOps.includes('Shape') && dupOps.includes('SequenceEmpty'), `trip count chain and empty sequence duplicated (${dupOps.join(', ')})`)
  t.same(outerScopeReads(subgraphs(stage.model.graph!.node!.find(n => n.opType === 'Loop') as NodeProto)[0]), ['transpose_67', 'frame_conv.weight', 'frame_conv.bias'].map(n => n === 'transpose_67' ? activation : n))

  // Run before → loop stage → after and compare with the whole graph.
  const before = dag.nodes.filter(n => n.index < loop.index && !stage.nodes.includes(n.index)).map(n => n.index)
  const after = dag.nodes.filter(n => n.index > loop.index && !stage.nodes.includes(n.index) && !before.includes(n.index)).map(n => n.index)
  const feeds = randomInputs(model, 4)
  const ref = await runModel(model, feeds)
  const env = await runChain([extractStage(model, dag, before), stage, extractStage(model, dag, after)], feeds)
  for (const k of Object.keys(ref)) t.equal(maxAbsDiff(env[k], ref[k]), 0, `${k} identical`)
})

t.test('duplicable rule: constants travel never, Shape chains only with their activation', async t => {
  const model = torchLikeNet()
  const dag = buildDag(model)
  const byOp = (op: string) => dag.nodes.filter(n => n.opType === op)
  t.ok(byOp('Constant').every(n => n.duplicable), 'Constant')
  t.ok(byOp('Shape').every(n => n.duplicable), 'Shape')
  t.ok(byOp('Unsqueeze').every(n => n.duplicable), 'Unsqueeze of shape scalars')
  t.ok(byOp('Conv').every(n => !n.duplicable), 'not Conv')
  t.ok(byOp('Reshape').every(n => !n.duplicable), 'not a Reshape of an activation')
  t.ok(byOp('Transpose').every(n => !n.duplicable), 'not Transpose')

  const shape = byOp('Shape')[0]
  const x = shape.inputs[0]
  const reshape = byOp('Reshape')[0]
  const shapeVec = reshape.inputs[1]
  // A stage making the activation runs the Shape chain on it...
  const transpose = dag.values.get(reshape.inputs[0])!.producer
  const holding = planStage(dag, [dag.values.get(x)!.producer, transpose, reshape.index])
  t.notOk(holding.inputs.includes(shapeVec), 'shape vector not received')
  t.ok(holding.duplicated.includes(shape.index), 'Shape duplicated into the stage holding its input')
  t.same(holding.folded, [], 'and run, not folded')
  // ...a stage without it folds the known shape into a constant.
  const alone = planStage(dag, [reshape.index])
  t.same(alone.inputs, [reshape.inputs[0]], 'only the Reshape data is received')
  t.same(alone.folded, [shape.index], 'Shape folded')
  const stage = extractStage(model, dag, [reshape.index])
  const constant0 = stage.model.graph!.node!.find(n => n.output?.[0] === shape.outputs[0])!
  t.equal(constant0.opType, 'Constant', 'the Shape became a Constant')
  const probe = await runModel(stage.model, { [reshape.inputs[0]]: f32([1, 4, 4, 2, 16], new Array(512).fill(1)) })
  t.same(probe[stage.outputs[0]].shape, [16, 2, 16], 'and the Reshape uses it')

  // Constants are never outputs; the consumer stage makes its own.
  const constant = byOp('Constant')[0]
  const user = dag.values.get(constant.outputs[0])!.consumers[0]
  const a = planStage(dag, dag.nodes.filter(n => n.index < user).map(n => n.index))
  const b = planStage(dag, dag.nodes.filter(n => n.index >= user).map(n => n.index))
  t.notOk(a.outputs.includes(constant.outputs[0]), 'a constant is not sent')
  t.notOk(b.inputs.includes(constant.outputs[0]), 'nor received')
  t.ok(b.duplicated.includes(constant.index), 'the consumer duplicates it')

  // A Gather from a large initializer is real work, not a shape computation.
  const g = new GraphBuilder('embed')
  const ids = g.constI64([1, 2])
  const table = g.init('table', f32([100, 4], new Array(400).fill(0.5)))
  const emb = g.op('Gather', [table, ids])
  g.output(g.op('Relu', [g.op('Add', [emb, g.input('x', 'F32', [2, 4])])]))
  const edag = buildDag(g.model())
  t.notOk(edag.nodes.find(n => n.opType === 'Gather')!.duplicable, 'Gather from a 400-element table')
  t.ok(edag.nodes.find(n => n.opType === 'Constant')!.duplicable)
})

t.test('Shape of a value of unknown shape: the stage recomputing it receives the value', async t => {
  // NonZero's output length depends on the data: no static shape.
  const g = new GraphBuilder('dynamic')
  const x = g.input('x', 'F32', [6])
  const nz = g.op('NonZero', [x])
  const a = g.op('Relu', [x])
  const count = g.op('ReduceSum', [g.op('Cast', [g.op('Shape', [nz])], { to: 1 }), g.constI64([0])], { keepdims: 0 })
  g.output(g.op('Mul', [a, count], {}, 'y'))
  const model = g.model()
  const dag = buildDag(model)
  t.equal(dag.values.get(nz)!.shape, null, 'NonZero shape unknown statically')
  t.ok(dag.nodes.filter(n => ['Shape', 'Cast', 'ReduceSum', 'Constant'].includes(n.opType)).every(n => n.duplicable), 'the count chain is duplicable')
  const mul = dag.nodes.find(n => n.opType === 'Mul')!
  const producer = dag.nodes.filter(n => n.opType === 'NonZero' || n.opType === 'Relu').map(n => n.index)
  const first = extractStage(model, dag, producer)
  const second = extractStage(model, dag, [mul.index])
  t.same([...second.inputs].sort(), [a, nz].sort(), 'NonZero output received for the Shape')
  t.same(second.folded, [])
  t.ok(first.outputs.includes(nz), 'the producing stage sends it, though its only reader is duplicable')
  for (const values of [[1, 0, 2, 0, 3, 0], [1, 1, 1, 1, 1, 0]]) {
    const feeds = { x: f32([6], values) }
    const ref = await runModel(model, feeds)
    const env = await runChain([first, second], feeds)
    t.equal(maxAbsDiff(env.y, ref.y), 0, `data ${values.join('')}: identical`)
  }
})

t.test('extraOutputs and planStage agree with extractStage', async t => {
  const model = FIXTURES.convSkipNet()
  const dag = buildDag(model)
  const plan = planStage(dag, [0, 1, 2], { extraOutputs: [dag.nodes[0].outputs[0]] })
  const stage = extractStage(model, dag, [0, 1, 2], { extraOutputs: [dag.nodes[0].outputs[0]] })
  t.same(stage.inputs, plan.inputs)
  t.same(stage.outputs, plan.outputs)
  t.ok(stage.outputs.includes(dag.nodes[0].outputs[0]), 'extra output present')
  t.ok(stage.outputs.includes(dag.nodes[1].outputs[0]), 'Relu output read later (residual) is an output')
  t.same(Object.keys(await runModel(stage.model, randomInputs(model))).sort(), [...stage.outputs].sort())
  t.equal(code(() => planStage(dag, [0], { extraOutputs: [dag.nodes[5].outputs[0]] })), 'BAD_ARGUMENT', 'extra output not made by the stage')
})

t.test('bad graphs and bad node sets are refused with stable codes', async t => {
  const model = FIXTURES.convSkipNet()
  const dag = buildDag(model)
  t.equal(code(() => planStage(dag, [])), 'BAD_ARGUMENT', 'empty stage')
  t.equal(code(() => planStage(dag, [dag.nodes.length])), 'BAD_ARGUMENT', 'index out of range')

  const cyclic = new GraphBuilder('cyclic')
  const x = cyclic.input('x', 'F32', [2])
  cyclic.node('Add', [x, 'b'], {}, ['a'])
  cyclic.node('Relu', ['a'], {}, ['b'])
  cyclic.output('b')
  t.equal(code(() => buildDag(cyclic.model())), 'BAD_ONNX', 'cycle')

  const dangling = new GraphBuilder('dangling')
  dangling.output(dangling.op('Relu', ['nowhere']))
  t.equal(code(() => buildDag(dangling.model())), 'BAD_ONNX', 'read of an undefined value')

  const torch = torchLikeNet()
  const tdag = await buildDagProbed(torch)
  const loop = tdag.nodes.find(n => n.opType === 'Loop')!
  t.equal(code(() => planStage(tdag, [loop.index])), 'PLAN_IMPOSSIBLE', 'a cut between a Loop and the reader of its sequence')
})

t.test('unsorted node order and clashing node names', async t => {
  const model = FIXTURES.convSkipNet()
  const nodes = [...model.graph!.node!]
  // Reverse the file order and give every node the same (or no) name.
  const shuffled: ModelProto = { ...model, graph: { ...model.graph, node: nodes.reverse().map((n, i) => ({ ...n, name: i % 2 === 0 ? 'same' : '' })) } }
  const dag = buildDag(shuffled)
  t.ok(dag.nodes.every(n => n.inputs.every(i => dag.values.get(i)!.producer < n.index)), 'Dag order is topological')
  t.not(dag.nodes[0].protoIndex, 0, 'protoIndex maps to the file position')
  const cuts = contiguousCuts(dag, 3)
  const stages = cuts.map(c => extractStage(shuffled, dag, c))
  for (const s of stages) t.equal(new Set(s.model.graph!.node!.map(n => n.name)).size, s.model.graph!.node!.length, 'unique names')
  const feeds = randomInputs(model, 9)
  const ref = await runModel(model, feeds)
  const env = await runChain(stages, feeds)
  for (const k of Object.keys(ref)) t.equal(maxAbsDiff(env[k], ref[k]), 0, `${k} identical`)
})

t.test('If: both branches’ outer reads become inputs of the If stage', async t => {
  const g = new GraphBuilder('branches')
  const x = g.input('x', 'F32', [2, 8])
  const y = g.op('Erf', [x])
  const z = g.op('Relu', [y])
  const cond = g.op('Greater', [g.op('ReduceSum', [z], { keepdims: 0 }), g.init('zero', f32([], [0]))])
  const a = g.op('Sigmoid', [z])
  const thenB = new GraphBuilder('then')
  thenB.output(thenB.op('Add', [a, z]), 'F32', null)
  const elseB = new GraphBuilder('else')
  elseB.output(elseB.op('Mul', [a, y]), 'F32', null)
  const out = g.node('If', [cond], { then_branch: thenB.graph(), else_branch: elseB.graph() })[0]
  g.output(g.op('Tanh', [out]))
  const model = g.model()
  const dag = buildDag(model)
  const ifNode = dag.nodes.find(n => n.opType === 'If')!
  t.same([...ifNode.inputs].sort(), [cond, a, z, y].sort(), 'explicit input plus reads of both branches')
  const stage = extractStage(model, dag, [ifNode.index, ifNode.index + 1])
  t.same([...stage.inputs].sort(), [cond, a, z, y].sort())
  for (const seed of [1, 2]) {
    const feeds = { x: randomInputs(model, seed).x }
    const ref = await runModel(model, feeds)
    const env = await runChain([extractStage(model, dag, dag.nodes.filter(n => n.index < ifNode.index).map(n => n.index)), stage], feeds)
    t.equal(maxAbsDiff(env[stage.outputs[0]], ref[stage.outputs[0]]), 0, `seed ${seed}: identical`)
  }
})
