/**
 * ONNX model → Dag (src/onnx/dag.ts), the planner's view: nodes in
 * topological order with their reads (outer-scope reads of Loop/If/Scan
 * bodies included), values with dtype/shape/bytes, costs, and which nodes
 * may be duplicated into stages instead of shipping their outputs.
 *
 * Shapes: static inference (shapes.ts) with the caller's `dims` and
 * `inputShapes`; what it leaves unknown comes from `probed` (probeShapes),
 * which `buildDagProbed` measures for you.
 *
 * Duplicable nodes (`duplicable`): nodes every stage that reads their
 * outputs recomputes (extract.ts), so those outputs never cross the wire
 * and a planner need not assign them:
 * - a default-domain op from DUPLICABLE_OPS (Constant, Shape, Size, Gather,
 *   Unsqueeze, Concat, Slice, Cast, arithmetic, Range, ConstantOfShape,
 *   Where, Reshape, ...) without subgraphs,
 * - every output a tensor of known size ≤ SMALL_ELEMENTS (64) elements
 *   (and SequenceEmpty, whose empty sequence could not cross stages anyway),
 * - every input an initializer of ≤ 64 elements or an output of another
 *   duplicable node, except Shape and Size, which read only the metadata of
 *   their input X and so may read any value.
 * Shape/Size(X) is cheap anywhere when the Dag knows X's shape: a stage that
 * does not make X gets a Constant instead. When X's shape is unknown (a
 * data-dependent shape the probe did not measure), a stage recomputing the
 * chain must hold X and receives it: a Shape node reading an activation is
 * only cheap where that activation is anyway. (Receiving the few shape
 * integers instead would need some stage to own the Shape node, which the
 * plan contract excludes.)
 */
import { LumiereError } from '../errors.ts'
import { dtypeBytes } from '../tensor/tensor.ts'
import type { Dag, DagNode, DagValue } from './dag.ts'
import { costLookup, nodeFlops, subgraphParamBytes } from './cost.ts'
import { elemBytes, elemToDType, nodeReads, subgraphs, tensorDims } from './proto.ts'
import type { ModelProto, NodeProto } from './proto.ts'
import { probeShapes } from './probe.ts'
import type { ProbeOptions, Probed } from './probe.ts'
import { inferShapes } from './shapes.ts'
import type { ShapeOptions, ValueType } from './shapes.ts'

/** Largest output (in elements) of a duplicable node. */
export const SMALL_ELEMENTS = 64

export const DUPLICABLE_OPS: ReadonlySet<string> = new Set([
  'Constant', 'Shape', 'Size', 'Gather', 'Unsqueeze', 'Squeeze', 'Concat', 'Slice', 'Cast', 'Identity',
  'Reshape', 'Flatten', 'Expand', 'Tile', 'Add', 'Sub', 'Mul', 'Div', 'Mod', 'Neg', 'Abs', 'Floor', 'Ceil',
  'Sqrt', 'Max', 'Min', 'Range', 'ConstantOfShape', 'Equal', 'Less', 'Greater', 'LessOrEqual', 'GreaterOrEqual',
  'Not', 'And', 'Or', 'Where', 'ReduceProd', 'ReduceSum', 'SequenceEmpty'
])

/** Ops that read only their input's shape, never its data. */
const METADATA_OPS = new Set(['Shape', 'Size'])

export interface BuildDagOptions extends ShapeOptions {
  /** Types and shapes measured by probeShapes, for values static inference leaves unknown. */
  probed?: Map<string, Probed>
}

/** The Dag of a model, from static shapes (plus `probed` ones). */
export function buildDag (model: ModelProto, options: BuildDagOptions = {}): Dag {
  const graph = model.graph
  if (graph == null) throw new LumiereError('BAD_ONNX', 'model has no graph: check the file is a .onnx export')
  if ((graph.sparseInitializer ?? []).length > 0) {
    throw new LumiereError('UNSUPPORTED_OP', 'the model has sparse initializers, which we do not partition: store them dense (re-export without sparsity)')
  }
  const protoNodes = graph.node ?? []
  const initializerProtos = new Map((graph.initializer ?? []).map(t => [t.name ?? '', t]))
  const inputNames = (graph.input ?? []).map(v => v.name ?? '').filter(n => n !== '' && !initializerProtos.has(n))
  const outputNames = (graph.output ?? []).map(v => v.name ?? '')

  const order = topologicalOrder(protoNodes, new Set([...inputNames, ...initializerProtos.keys()]))

  // Static shapes twice: symbolic (declared in stage models) and bound to the
  // caller's dims (sizes for planning).
  const symbolic = inferShapes(model)
  const probed = options.probed ?? new Map<string, Probed>()
  const bound = options.dims != null || options.inputShapes != null || probed.size > 0 ? inferShapes(model, { ...options, known: probed }) : symbolic

  const values = new Map<string, DagValue>()
  const addValue = (name: string, kind: DagValue['kind'], producer: number): void => {
    values.set(name, describe(name, kind, producer, symbolic.values.get(name), bound.values.get(name), probed.get(name), outputNames.includes(name)))
  }
  for (const name of inputNames) addValue(name, 'input', -1)
  for (const name of initializerProtos.keys()) addValue(name, 'initializer', -1)

  const initializers: Dag['initializers'] = new Map()
  for (const [name, t] of initializerProtos) {
    const dims = tensorDims(t)
    initializers.set(name, { bytes: dims.reduce((a, b) => a * b, 1) * elemBytes(t.dataType ?? 0), dtype: elemToDType(t.dataType ?? 0), shape: dims })
  }

  const look = costLookup(bound, name => probed.get(name)?.shape ?? null)
  const nodes: DagNode[] = order.map((protoIndex, index) => {
    const node = protoNodes[protoIndex]
    const outputs = (node.output ?? []).filter(o => o !== '')
    for (const o of outputs) addValue(o, 'activation', index)
    const inputs = nodeReads(node)
    let paramBytes = subgraphParamBytes(node)
    for (const name of inputs) paramBytes += initializers.get(name)?.bytes ?? 0
    return {
      index,
      protoIndex,
      name: node.name || `${node.opType}_${protoIndex}`,
      opType: node.opType ?? '',
      inputs,
      outputs,
      flops: nodeFlops(node, look),
      paramBytes,
      activationBytes: outputs.reduce((sum, o) => sum + (values.get(o)?.bytes ?? 0), 0),
      duplicable: false
    }
  })
  for (const node of nodes) {
    for (const name of node.inputs) {
      const v = values.get(name)!
      if (!v.consumers.includes(node.index)) v.consumers.push(node.index)
    }
  }
  for (const node of nodes) node.duplicable = isDuplicable(node, protoNodes[node.protoIndex!], nodes, values, initializers)

  return { nodes, values, inputs: inputNames, outputs: outputNames, initializers }
}

/**
 * buildDag after measuring, in one ORT run, the activations static inference
 * leaves without a concrete shape (see probe.ts for the inputs used).
 */
export async function buildDagProbed (model: ModelProto, options: BuildDagOptions & ProbeOptions = {}): Promise<Dag> {
  const first = buildDag(model, options)
  const unknown = unresolvedValues(first)
  if (unknown.length === 0) return first
  const probed = await probeShapes(model, unknown, options)
  return buildDag(model, { ...options, probed: new Map([...(options.probed ?? []), ...probed]) })
}

/** Tensor activations whose concrete shape is unknown (the ones to probe). */
export function unresolvedValues (dag: Dag): string[] {
  return [...dag.values.values()].filter(v => v.kind === 'activation' && v.shape == null && v.valueKind !== 'sequence').map(v => v.name)
}

function describe (name: string, kind: DagValue['kind'], producer: number, sym: ValueType | undefined, bound: ValueType | undefined, probe: Probed | undefined, isOutput: boolean): DagValue {
  const valueKind = bound?.kind ?? sym?.kind ?? 'tensor'
  const elemType = bound?.elemType || probe?.elemType || sym?.elemType || 0
  const dtype = elemToDType(elemType)
  let shape: number[] | null = null
  if (valueKind === 'tensor') {
    if (bound?.shape != null && bound.shape.every(d => typeof d === 'number')) shape = bound.shape as number[]
    else if (probe != null) shape = probe.shape
  }
  const size = dtype === 'OTHER' ? elemBytes(elemType) : dtypeBytes(dtype)
  const bytes = shape == null ? 0 : shape.reduce((a, b) => a * b, 1) * size
  return { name, dtype, shape, bytes, producer, consumers: [], kind, isOutput, elemType, valueKind, dims: sym?.shape ?? null }
}

/**
 * Node order for the Dag: the file's order when it is topological (ONNX
 * requires it), else a stable topological sort. Every read must be defined;
 * a cycle is an error.
 */
function topologicalOrder (nodes: NodeProto[], graphValues: Set<string>): number[] {
  const producer = new Map<string, number>()
  nodes.forEach((node, i) => {
    for (const o of node.output ?? []) {
      if (o === '') continue
      if (producer.has(o) || graphValues.has(o)) throw new LumiereError('BAD_ONNX', `value '${o}' is defined twice (node ${node.name || i}): the model is not valid ONNX, re-export it`)
      producer.set(o, i)
    }
  })
  const deps = nodes.map((node, i) => {
    const d = new Set<number>()
    for (const name of nodeReads(node)) {
      const p = producer.get(name)
      if (p != null) { d.add(p); continue }
      if (!graphValues.has(name)) throw new LumiereError('BAD_ONNX', `node ${node.name || i} (${node.opType}) reads '${name}', which no node, input or initializer defines: the model is not valid ONNX, re-export it`)
    }
    return d
  })
  if (deps.every((d, i) => [...d].every(p => p < i))) return nodes.map((_, i) => i)
  // Kahn's algorithm, always taking the lowest ready index (stable).
  const remaining = deps.map(d => d.size)
  const users = nodes.map(() => [] as number[])
  deps.forEach((d, i) => { for (const p of d) users[p].push(i) })
  const ready = remaining.flatMap((n, i) => n === 0 ? [i] : [])
  const order: number[] = []
  while (ready.length > 0) {
    ready.sort((a, b) => a - b)
    const i = ready.shift()!
    order.push(i)
    for (const u of users[i]) if (--remaining[u] === 0) ready.push(u)
  }
  if (order.length !== nodes.length) {
    const stuck = nodes.filter((_, i) => remaining[i] > 0).slice(0, 3).map((n, k) => n.name || `#${k}`)
    throw new LumiereError('BAD_ONNX', `the graph has a cycle (through ${stuck.join(', ')}): the model is not valid ONNX, re-export it`)
  }
  return order
}

function isDuplicable (node: DagNode, proto: NodeProto, nodes: DagNode[], values: Map<string, DagValue>, initializers: Dag['initializers']): boolean {
  if (!DUPLICABLE_OPS.has(node.opType) || (proto.domain ?? '') !== '' || subgraphs(proto).length > 0) return false
  // An empty sequence costs nothing to make, and sequences cannot cross stages.
  if (node.opType === 'SequenceEmpty') return true
  for (const o of node.outputs) {
    const v = values.get(o)!
    if (v.valueKind !== 'tensor' || v.shape == null || v.shape.reduce((a, b) => a * b, 1) > SMALL_ELEMENTS) return false
  }
  if (METADATA_OPS.has(node.opType)) return true
  return node.inputs.every(name => {
    const init = initializers.get(name)
    if (init != null) return init.shape.reduce((a, b) => a * b, 1) <= SMALL_ELEMENTS
    const p = values.get(name)?.producer ?? -1
    return p >= 0 && nodes[p].duplicable
  })
}
