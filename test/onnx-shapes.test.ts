import t from 'tap'
import { GraphBuilder, float } from '../src/onnx/builder.ts'
import { costLookup, graphFlops } from '../src/onnx/cost.ts'
import { buildDag, buildDagProbed, unresolvedValues } from '../src/onnx/graph.ts'
import { probeShapes } from '../src/onnx/probe.ts'
import { ELEM, attr } from '../src/onnx/proto.ts'
import type { ModelProto } from '../src/onnx/proto.ts'
import { runModel } from '../src/onnx/run.ts'
import { inferShapes } from '../src/onnx/shapes.ts'
import { f32 } from '../src/tensor/tensor.ts'
import type { DType } from '../src/tensor/tensor.ts'
import { FIXTURES, FIXTURE_DIMS, mlpChain, randomInputs, torchLikeNet } from './fixtures/graphs.ts'

const ORT_TYPES: Record<DType, number> = { F32: ELEM.FLOAT, F16: ELEM.FLOAT16, BF16: ELEM.BFLOAT16, I64: ELEM.INT64, I32: ELEM.INT32, U8: ELEM.UINT8, BOOL: ELEM.BOOL }

/** One small graph per case: float inputs fed at random, everything else constant. */
const CASES: Record<string, (g: GraphBuilder) => string[]> = {
  convSameUpperStride2: g => [g.op('Conv', [g.input('x', 'F32', [1, 3, 7, 9]), g.init('w', f32([4, 3, 3, 3], new Array(108).fill(0.1)))], { auto_pad: 'SAME_UPPER', strides: [2, 2] })],
  convDilatedGrouped: g => [g.op('Conv', [g.input('x', 'F32', [1, 6, 10, 11]), g.init('w', f32([6, 2, 3, 3], new Array(108).fill(0.1)))], { dilations: [2, 2], pads: [1, 2, 1, 2], group: 3 })],
  convValid1d: g => [g.op('Conv', [g.input('x', 'F32', [2, 3, 17]), g.init('w', f32([5, 3, 4], new Array(60).fill(0.1)))], { auto_pad: 'VALID', strides: [3] })],
  maxPoolCeil: g => g.node('MaxPool', [g.input('x', 'F32', [1, 2, 10, 10])], { kernel_shape: [3, 3], strides: [2, 2], ceil_mode: 1 }, 2),
  maxPoolCeilPadded: g => [g.op('MaxPool', [g.input('x', 'F32', [1, 2, 9, 9])], { kernel_shape: [2, 2], strides: [2, 2], pads: [1, 1, 1, 1], ceil_mode: 1 })],
  avgPoolPads: g => [g.op('AveragePool', [g.input('x', 'F32', [1, 2, 9, 8])], { kernel_shape: [2, 3], strides: [1, 2], pads: [0, 1, 0, 1] })],
  globalPool: g => [g.op('GlobalAveragePool', [g.input('x', 'F32', [2, 3, 5, 6, 7])])],
  convTransposeOutPad: g => [g.op('ConvTranspose', [g.input('x', 'F32', [1, 4, 5, 6]), g.init('w', f32([4, 2, 3, 3], new Array(72).fill(0.1)))], { strides: [2, 2], pads: [1, 1, 1, 1], output_padding: [1, 0] })],
  convTransposeGroupShape: g => [g.op('ConvTranspose', [g.input('x', 'F32', [1, 4, 5, 5]), g.init('w', f32([4, 3, 2, 2], new Array(48).fill(0.1)))], { strides: [2, 2], group: 2, output_shape: [11, 10] })],
  matmulBatchBroadcast: g => [g.op('MatMul', [g.input('a', 'F32', [2, 1, 3, 4]), g.input('b', 'F32', [5, 4, 6])])],
  matmulVector: g => [g.op('MatMul', [g.input('a', 'F32', [4]), g.input('b', 'F32', [3, 4, 5])])],
  gemmTransposed: g => [g.op('Gemm', [g.input('a', 'F32', [4, 3]), g.input('b', 'F32', [5, 4]), g.input('c', 'F32', [5])], { transA: 1, transB: 1 })],
  einsumBatched: g => [g.op('Einsum', [g.input('a', 'F32', [2, 3, 4]), g.input('b', 'F32', [2, 4, 5])], { equation: 'bij,bjk->bik' })],
  einsumImplicitEllipsis: g => [g.op('Einsum', [g.input('a', 'F32', [7, 2, 3, 4]), g.input('b', 'F32', [4, 5])], { equation: '...ij,jk' })],
  reshapeZeroMinusOne: g => [g.op('Reshape', [g.input('x', 'F32', [2, 3, 4]), g.constI64([0, -1])])],
  flattenAxis2: g => [g.op('Flatten', [g.input('x', 'F32', [2, 3, 4, 5])], { axis: 2 })],
  transposeDefault: g => [g.op('Transpose', [g.input('x', 'F32', [2, 3, 4])])],
  concatLast: g => [g.op('Concat', [g.input('a', 'F32', [2, 3, 1]), g.input('b', 'F32', [2, 3, 4]), g.input('c', 'F32', [2, 3, 2])], { axis: -1 })],
  splitSizes: g => g.node('Split', [g.input('x', 'F32', [2, 5, 3]), g.constI64([2, 3])], { axis: 1 }, 2),
  splitEqual: g => g.node('Split', [g.input('x', 'F32', [6, 4])], { axis: 0 }, 3),
  sliceNegativeStep: g => [g.op('Slice', [g.input('x', 'F32', [10, 8]), g.constI64([-1]), g.constI64([-1000]), g.constI64([0]), g.constI64([-2])])],
  sliceClamped: g => [g.op('Slice', [g.input('x', 'F32', [10, 8]), g.constI64([2, 1]), g.constI64([100, -1]), g.constI64([1, 0])])],
  squeezeUnsqueeze: g => [g.op('Unsqueeze', [g.op('Squeeze', [g.input('x', 'F32', [3, 1, 5]), g.constI64([1])]), g.constI64([0, 3])])],
  squeezeAll: g => [g.op('Squeeze', [g.input('x', 'F32', [1, 3, 1, 5])])],
  gather2d: g => [g.op('Gather', [g.input('x', 'F32', [5, 6]), g.constI64([0, 1, 2, 3, 4, 5], [2, 3])], { axis: 1 })],
  gatherElements: g => [g.op('GatherElements', [g.input('x', 'F32', [4, 6]), g.constI64([0, 1, 2, 3, 0, 1], [2, 3])], { axis: 1 })],
  shapeSliceConstantOfShape: g => [g.op('ConstantOfShape', [g.op('Shape', [g.input('x', 'F32', [2, 3, 4, 5])], { start: 1, end: -1 })], { value: f32([1], [2]) })],
  castWhere: g => {
    const x = g.input('x', 'F32', [3, 1])
    const y = g.input('y', 'F32', [1, 4])
    return [g.op('Where', [g.op('Greater', [x, y]), x, y]), g.op('Cast', [y], { to: ELEM.INT32 })]
  },
  resizeSizes: g => [g.op('Resize', [g.input('x', 'F32', [1, 2, 4, 5]), '', '', g.constI64([1, 2, 7, 9])], { mode: 'linear' })],
  resizeScales: g => [g.op('Resize', [g.input('x', 'F32', [1, 2, 5, 5]), '', g.constant(f32([4], [1, 1, 1.5, 2]))], { mode: 'nearest' })],
  expand: g => [g.op('Expand', [g.input('x', 'F32', [3, 1]), g.constI64([2, 3, 4])])],
  reduceMeanKeep0: g => [g.op('ReduceMean', [g.input('x', 'F32', [2, 3, 4])], { axes: [1], keepdims: 0 }), g.op('ReduceSum', [g.input('y', 'F32', [2, 3, 4]), g.constI64([0, 2])])],
  tilePad: g => [g.op('Tile', [g.input('x', 'F32', [2, 3, 4]), g.constI64([2, 1, 3])]), g.op('Pad', [g.input('y', 'F32', [2, 3]), g.constI64([0, 1, 2, 3])])],
  range: g => [g.op('Range', [g.constI64([0], []), g.constI64([10], []), g.constI64([3], [])]), g.op('Relu', [g.input('x', 'F32', [1])])],
  topkArgmax: g => {
    const x = g.input('x', 'F32', [4, 7])
    return [...g.node('TopK', [x, g.constI64([3])], { axis: 1 }, 2), g.op('ArgMax', [x], { axis: 1, keepdims: 0 })]
  },
  depthToSpace: g => [g.op('DepthToSpace', [g.input('x', 'F32', [1, 8, 3, 4])], { blocksize: 2 })],
  normalizations: g => {
    const x = g.input('x', 'F32', [2, 4, 3, 3])
    const s = g.init('s', f32([4], [1, 1, 1, 1]))
    const b = g.init('b', f32([4], [0, 0, 0, 0]))
    return [g.op('InstanceNormalization', [x, s, b]), g.op('BatchNormalization', [x, s, b, b, s]), g.op('LayerNormalization', [x, g.init('ls', f32([3], [1, 1, 1]))], { axis: -1, epsilon: float(1e-5) })]
  },
  softmaxErfCastLike: g => {
    const x = g.input('x', 'F32', [2, 5])
    return [g.op('Softmax', [g.op('Erf', [x])], { axis: 0 }), g.op('CastLike', [g.constI64([1, 2]), x])]
  }
}

function caseModel (name: string): ModelProto {
  const g = new GraphBuilder(name)
  for (const out of CASES[name](g)) g.output(out)
  return g.model({ opset: 17 })
}

t.test('static shapes of single operators equal what ORT computes', async t => {
  for (const name of Object.keys(CASES)) {
    const model = caseModel(name)
    const info = inferShapes(model)
    const got = await runModel(model, randomInputs(model, 7))
    for (const out of model.graph!.output!) {
      const vt = info.values.get(out.name!)
      const real = got[out.name!]
      t.same(vt?.shape, real.shape, `${name}: ${out.name} shape`)
      t.equal(vt?.elemType, ORT_TYPES[real.dtype], `${name}: ${out.name} dtype`)
    }
  }
})

t.test('static shapes agree with a probe run on every fixture', async t => {
  for (const [name, make] of Object.entries(FIXTURES)) {
    const model = make()
    const dims = FIXTURE_DIMS[name]
    const dag = buildDag(model, { dims })
    const activations = [...dag.values.values()].filter(v => v.kind === 'activation' && v.valueKind === 'tensor')
    const probed = await probeShapes(model, activations.map(v => v.name), { dims, inputs: randomInputs(model, 2, dims) })
    let checked = 0
    for (const v of activations) {
      const p = probed.get(v.name)
      t.ok(p != null, `${name}: ${v.name} measured`)
      if (v.shape == null) continue
      checked++
      t.same(v.shape, p!.shape, `${name}: ${v.name} shape`)
      t.equal(v.elemType, p!.elemType, `${name}: ${v.name} dtype`)
    }
    const unresolved = unresolvedValues(dag)
    if (name === 'torchLikeNet') {
      // Only what follows the Loop-built sequence is unknown statically.
      const cfs = dag.nodes.find(n => n.opType === 'ConcatFromSequence')!
      t.ok(unresolved.includes(cfs.outputs[0]), 'ConcatFromSequence output needs the probe')
      t.ok(unresolved.every(u => dag.values.get(u)!.producer >= cfs.index), 'nothing before it is unresolved')
      const loop = dag.nodes.find(n => n.opType === 'Loop')!
      t.same(dag.values.get(loop.outputs[1])!.shape, [2, 1], 'Loop scan output: [trip count, ...body shape]')
    } else {
      t.same(unresolved, [], `${name}: every activation resolved statically`)
    }
    t.ok(checked >= activations.length - unresolved.length, `${name}: ${checked} static shapes checked`)
    const full = await buildDagProbed(model, { dims })
    t.same(unresolvedValues(full), [], `${name}: nothing unresolved after the probe`)
    for (const v of activations) t.same(full.values.get(v.name)!.shape, probed.get(v.name)!.shape, `${name}: ${v.name} probed dag shape`)
  }
})

t.test('symbolic dims stay symbolic and bind to given values', async t => {
  const model = mlpChain()
  const free = buildDag(model)
  const h1 = [...free.values.values()].find(v => v.consumers.length >= 4 && v.kind === 'activation')!
  t.same(h1.dims, ['batch', 32], 'symbolic batch dim kept')
  t.equal(h1.shape, null, 'no concrete shape without a binding')
  t.equal(h1.bytes, 0)
  const bound = buildDag(model, { dims: { batch: 3 } })
  t.same(bound.values.get(h1.name)!.shape, [3, 32])
  t.equal(bound.values.get(h1.name)!.bytes, 3 * 32 * 4)
  const byShape = buildDag(model, { inputShapes: { x: [5, 16] } })
  t.same(byShape.values.get('probs')!.shape, [5, 8], 'input shapes propagate')
  t.same(byShape.values.get('probs')!.dims, ['batch', 8], 'stage dims stay symbolic')

  // A Shape → Gather → Unsqueeze → Concat → Reshape chain over a symbolic dim.
  const g = new GraphBuilder('sym')
  const x = g.input('x', 'F32', ['n', 4, 6])
  const n = g.op('Gather', [g.op('Shape', [x]), g.constI64([0], [])], { axis: 0 })
  const target = g.op('Concat', [g.op('Unsqueeze', [n, g.constI64([0])]), g.constI64([-1])], { axis: 0 })
  g.output(g.op('Reshape', [x, target], {}, 'flat'))
  g.output(g.op('Reshape', [x, g.constI64([-1, 12])], {}, 'pairs'))
  const info = inferShapes(g.model())
  t.same(info.values.get(target)!.value, ['n', -1], 'folded shape vector with a symbol')
  t.same(info.values.get('flat')!.shape, ['n', 24], 'Reshape -1 cancels the symbol')
  t.same(info.values.get('pairs')!.shape, ['?', 12].map((d, i) => i === 0 ? info.values.get('pairs')!.shape![0] : d))
  t.match(String(info.values.get('pairs')!.shape![0]), /^\?/, 'n*24/12 is unknown statically')
})

t.test('constant folding of exporter shape chains', async t => {
  const model = torchLikeNet()
  const dag = buildDag(model)
  const info = inferShapes(model)
  const reshapes = dag.nodes.filter(n => n.opType === 'Reshape')
  t.equal(reshapes.length, 2)
  t.same(info.values.get(reshapes[0].inputs[1])!.value, [16, 2, 16], 'N*H*W, T, C folded')
  t.same(dag.values.get(reshapes[0].outputs[0])!.shape, [16, 2, 16])
  t.same(dag.values.get(reshapes[1].outputs[0])!.shape, [1, 4, 4, 2, 16])
  const loop = dag.nodes.find(n => n.opType === 'Loop')!
  t.same(info.values.get(loop.inputs[0])!.value, [2], 'trip count folded from Shape → Gather')
})

t.test('costs', async t => {
  const model = FIXTURES.convSkipNet()
  const dag = buildDag(model)
  const conv0 = dag.nodes[0]
  t.equal(conv0.opType, 'Conv')
  t.equal(conv0.flops, 2 * 8 * 4 * 9 * 16 * 16 + 8 * 16 * 16, 'Conv: 2·Cout·Cin·k·out + bias')
  t.equal(conv0.paramBytes, (8 * 4 * 9 + 8) * 4, 'weights and bias')
  t.equal(conv0.activationBytes, 8 * 16 * 16 * 4)
  const up = dag.nodes.find(n => n.opType === 'ConvTranspose')!
  t.equal(up.flops, 2 * (16 * 8 * 8) * (8 * 2 * 2) + 8 * 16 * 16, 'ConvTranspose: 2·input·(Cout/g)·k + bias')
  const relu = dag.nodes[1]
  t.equal(relu.flops, 8 * 16 * 16, 'elementwise: output elements')

  const mlp = buildDag(mlpChain(), { dims: { batch: 2 } })
  const mm = mlp.nodes.find(n => n.opType === 'MatMul')!
  t.equal(mm.flops, 2 * 2 * 32 * 16, 'MatMul: 2·M·N·K')
  t.equal(mlp.nodes.find(n => n.opType === 'LayerNormalization')!.flops, 5 * 2 * 32)

  const torch = torchLikeNet()
  const tdag = buildDag(torch)
  const loop = tdag.nodes.find(n => n.opType === 'Loop')!
  const body = attr(torch.graph!.node![loop.protoIndex!], 'body')!.g!
  const info = inferShapes(torch)
  const bodyFlops = graphFlops(body, costLookup(info).inside(body))
  t.ok(bodyFlops >= 2 * 16 * 16 * 9 * 4 * 4, 'body cost includes its Conv')
  t.equal(loop.flops, 2 * bodyFlops, 'Loop: body × constant trip count')
  t.equal(loop.paramBytes, (16 * 16 * 9 + 16) * 4, 'Loop reads the body’s outer initializers')
  const shared = 'onnx::Conv_shared_proj'
  const readers = tdag.nodes.filter(n => n.inputs.includes(shared))
  t.equal(readers.length, 2, 'shared initializer read by two nodes')
  t.ok(readers[1].index - readers[0].index > 20, 'far apart')
  for (const r of readers) t.ok(r.paramBytes >= 8 * 8 * 4, 'counted on each reader')
})

t.test('an operator we do not know is measured by the probe', async t => {
  const g = new GraphBuilder('contrib')
  const x = g.input('x', 'F32', [3, 8])
  const y = g.node('Gelu', [x], {}, 1, { domain: 'com.microsoft' })[0]
  g.output(g.op('Relu', [y]))
  const model = g.model({ opset: 17, domains: { 'com.microsoft': 1 } })
  const dag = buildDag(model)
  t.same(unresolvedValues(dag), [y, dag.nodes[1].outputs[0]], 'unknown statically, and what follows')
  const probed = await buildDagProbed(model)
  t.same(probed.values.get(y)!.shape, [3, 8])
  t.equal(probed.values.get(y)!.dtype, 'F32')
  t.same(probed.values.get(dag.nodes[1].outputs[0])!.shape, [3, 8], 'downstream inferred from the measured shape')
  t.equal(probed.nodes[1].flops, 24)
})
