/**
 * Cutting a stage out of a model: any set of Dag nodes (contiguous or not)
 * becomes a valid standalone ONNX model.
 *
 * - Duplicable nodes (graph.ts) are recomputed by every stage that reads
 *   their outputs, so those outputs never cross the wire; a planner need not
 *   assign them to any stage (coordinator/plan.ts relies on this). The chain
 *   is pulled in back to its leaves: initializers (copied), and the data
 *   input X of Shape/Size. A Shape/Size whose X the stage does not make is
 *   replaced by a Constant when the Dag knows X's shape (concrete, with the
 *   dims the Dag was built for); otherwise X becomes an input of the stage.
 * - Inputs: every other value the stage's nodes read (explicit inputs and
 *   outer-scope reads of Loop/If/Scan bodies) that the stage neither makes
 *   nor holds as an initializer, once each, in order of first read.
 * - Outputs: values made by the stage's own non-duplicable nodes that some
 *   node outside the stage needs (directly, or through a duplicable chain it
 *   recomputes; see `needers`), graph outputs made by the stage, and
 *   `extraOutputs`.
 * - Types of boundary values: the Dag's concrete shape when known (a stage
 *   runs the shapes it was planned for), else its static dims (symbolic
 *   names kept), else the element type alone. Graph inputs keep their own
 *   declaration.
 * - Initializers: copied only where read (bodies included); external data
 *   is read and inlined unless told otherwise.
 */
import { LumiereError } from '../errors.ts'
import type { Dag, DagNode, DagValue } from './dag.ts'
import { ATTR, ELEM, attrInt, num, sequenceType, tensorDims, tensorType } from './proto.ts'
import type { ModelProto, NodeProto, TensorProto, ValueInfoProto } from './proto.ts'
import { isExternal, numbersToProto, tensorBytes } from './tensor-proto.ts'

export interface StagePlan {
  /** Dag indices of the nodes the stage runs, sorted: its own and duplicated ones. */
  nodes: number[]
  /** The nodes asked for, sorted. */
  own: number[]
  /** Nodes pulled in as duplicates (not in `own`). */
  duplicated: number[]
  /** Shape/Size nodes (among `nodes`) replaced by a Constant of the Dag's shape. */
  folded: number[]
  inputs: string[]
  outputs: string[]
  /** Initializers the stage reads. */
  initializers: string[]
}

export interface StageOptions {
  /** Also output these values (made by the stage). */
  extraOutputs?: string[]
}

/** Which nodes, inputs, outputs and initializers a stage has (from the Dag alone). */
export function planStage (dag: Dag, nodeIndices: readonly number[], options: StageOptions = {}): StagePlan {
  const own = [...new Set(nodeIndices)].sort((a, b) => a - b)
  if (own.length === 0) throw new LumiereError('BAD_ARGUMENT', 'a stage needs at least one node')
  for (const i of own) {
    if (!Number.isInteger(i) || i < 0 || i >= dag.nodes.length) throw new LumiereError('BAD_ARGUMENT', `node index ${i} is not in the graph (0..${dag.nodes.length - 1})`)
  }
  const ownSet = new Set(own)
  const inStage = new Set(own)
  const folded = new Set<number>()
  const held = new Set<string>()
  for (const i of own) for (const o of dag.nodes[i].outputs) held.add(o)

  // Makes `name` available in the stage: pulled in when a duplicable node
  // makes it, else received.
  const ensure = (name: string): void => {
    if (held.has(name) || dag.initializers.has(name)) return
    const p = producerOf(dag, name)
    if (p < 0 || !dag.nodes[p].duplicable) return
    inStage.add(p)
    for (const o of dag.nodes[p].outputs) held.add(o)
    visit(dag.nodes[p])
  }
  const visit = (node: DagNode): void => {
    if (foldsHere(dag, node, held)) { folded.add(node.index); return }
    for (const u of node.inputs) ensure(u)
  }
  for (const i of own) visit(dag.nodes[i])

  const nodes = [...inStage].sort((a, b) => a - b)
  const inputs: string[] = []
  const initializers: string[] = []
  for (const i of nodes) {
    if (folded.has(i)) continue
    for (const name of dag.nodes[i].inputs) {
      if (dag.initializers.has(name)) { if (!initializers.includes(name)) initializers.push(name); continue }
      if (!held.has(name) && !inputs.includes(name)) inputs.push(name)
    }
  }

  const extra = new Set(options.extraOutputs ?? [])
  for (const name of extra) {
    if (!held.has(name)) throw new LumiereError('BAD_ARGUMENT', `extra output '${name}' is not computed by this stage`)
  }
  const readers = needers(dag)
  const leaves = (name: string): boolean => [...readers(name)].some(c => !ownSet.has(c))
  const ownOutputs = own.flatMap(i => dag.nodes[i].outputs.map(o => ({ o, dup: dag.nodes[i].duplicable })))
  let outputs = ownOutputs.filter(({ o, dup }) => extra.has(o) || dag.values.get(o)!.isOutput || (!dup && leaves(o))).map(x => x.o)
  // A stage of duplicable nodes only still needs an output to be a valid model.
  if (outputs.length === 0) outputs = ownOutputs.slice(-1).map(x => x.o)
  for (const name of extra) if (!outputs.includes(name)) outputs.push(name)

  // onnxruntime's JS API can neither feed nor fetch sequences.
  for (const name of [...inputs, ...outputs.filter(o => !dag.values.get(o)!.isOutput)]) {
    if (dag.values.get(name)?.valueKind === 'sequence') {
      throw new LumiereError('PLAN_IMPOSSIBLE', `the cut splits sequence '${name}' from its ${inputs.includes(name) ? 'producer' : 'consumers'}: keep the nodes that make and read a sequence in one stage`)
    }
  }

  return { nodes, own, duplicated: nodes.filter(i => !ownSet.has(i)), folded: [...folded].sort((a, b) => a - b), inputs, outputs, initializers }
}

export function stageInputs (dag: Dag, nodeIndices: readonly number[]): string[] {
  return planStage(dag, nodeIndices).inputs
}

export function stageOutputs (dag: Dag, nodeIndices: readonly number[], options: StageOptions = {}): string[] {
  return planStage(dag, nodeIndices, options).outputs
}

export interface ExtractOptions extends StageOptions {
  /** Read external-data initializers into the stage (default true: ORT gets one self-contained buffer). */
  inlineExternalData?: boolean
  /** Graph name of the stage model. */
  name?: string
}

export interface Stage {
  model: ModelProto
  inputs: string[]
  outputs: string[]
  /** Dag indices of every node in the stage, duplicated ones included. */
  nodes: number[]
  /** The duplicated nodes among `nodes`. */
  duplicated: number[]
  /** Shape/Size nodes among `nodes` replaced by constants. */
  folded: number[]
}

/** A standalone model running the given Dag nodes (see the file comment for the rules). */
export function extractStage (model: ModelProto, dag: Dag, nodeIndices: readonly number[], options: ExtractOptions = {}): Stage {
  const plan = planStage(dag, nodeIndices, options)
  const graph = model.graph ?? {}
  const protoNodes = graph.node ?? []
  const initProtos = new Map((graph.initializer ?? []).map(t => [t.name ?? '', t]))
  const declared = new Map<string, ValueInfoProto>()
  for (const v of [...(graph.valueInfo ?? []), ...(graph.output ?? []), ...(graph.input ?? [])]) if (v.name) declared.set(v.name, v)

  const used = new Set<string>()
  const nodes: NodeProto[] = plan.nodes.map(i => {
    const protoIndex = dag.nodes[i].protoIndex ?? i
    const node = protoNodes[protoIndex]
    let name = node.name || `${node.opType}_${protoIndex}`
    while (used.has(name)) name = `${name}_${protoIndex}`
    used.add(name)
    if (plan.folded.includes(i)) return foldedNode(dag, node, name)
    // A shallow copy: attributes and bodies are shared, never modified.
    return { ...node, name }
  })

  const initializer: TensorProto[] = plan.initializers.map(name => {
    const t = initProtos.get(name)!
    if (options.inlineExternalData === false || !isExternal(t)) return t
    const { dataLocation: _location, externalData: _external, ...rest } = t
    return { ...rest, rawData: tensorBytes(t) }
  })

  const valueInfo = (name: string): ValueInfoProto => {
    const v = dag.values.get(name)
    // Graph inputs keep their declaration as is (symbolic dims and all).
    if (v?.kind === 'input' && declared.get(name)?.type != null) return declared.get(name)!
    const type = inferredType(v)
    if (type != null) return { name, type }
    const decl = declared.get(name)
    if (decl?.type != null) return { name, type: decl.type }
    throw new LumiereError('BAD_ONNX', `the type of '${name}' is unknown, so it cannot cross a stage boundary: run shape inference with a probe (buildDagProbed)`)
  }

  // Before IR version 4 every initializer had to be a graph input too.
  const ir = num(model.irVersion)
  const initInputs = ir > 0 && ir < 4 ? plan.initializers.map(name => declared.get(name) ?? { name, type: tensorType(initProtos.get(name)!.dataType ?? 0, tensorDims(initProtos.get(name)!)) }) : []

  const stageModel: ModelProto = {
    irVersion: model.irVersion,
    opsetImport: model.opsetImport,
    producerName: model.producerName,
    producerVersion: model.producerVersion,
    domain: model.domain,
    modelVersion: model.modelVersion,
    functions: model.functions,
    graph: {
      name: options.name ?? `${graph.name || 'graph'}_stage`,
      node: nodes,
      input: [...plan.inputs.map(valueInfo), ...initInputs],
      output: plan.outputs.map(valueInfo),
      initializer
    }
  }
  return { model: stageModel, inputs: plan.inputs, outputs: plan.outputs, nodes: plan.nodes, duplicated: plan.duplicated, folded: plan.folded }
}

function producerOf (dag: Dag, name: string): number {
  return dag.values.get(name)?.producer ?? -1
}

function isShapeRead (node: DagNode): boolean {
  return node.duplicable && (node.opType === 'Shape' || node.opType === 'Size')
}

function concrete (v: DagValue | undefined): v is DagValue & { shape: number[] } {
  return v?.shape != null && v.valueKind !== 'sequence'
}

/** A Shape/Size whose data input the Dag knows the shape of: no stage needs that input for it. */
function folds (dag: Dag, node: DagNode): boolean {
  return isShapeRead(node) && concrete(dag.values.get(node.inputs[0]))
}

/** The stage folds it when it does not make the data input itself. */
function foldsHere (dag: Dag, node: DagNode, held: Set<string>): boolean {
  return folds(dag, node) && !held.has(node.inputs[0])
}

const needersCache = new WeakMap<Dag, Map<string, Set<number>>>()

/**
 * For each value, the nodes that need it to exist where they run: its
 * non-duplicable consumers, and through duplicable consumers (recomputed
 * wherever needed) the nodes that need those in turn; a folded Shape/Size
 * needs nothing. Duplicable nodes making graph outputs count as needers.
 */
export function needers (dag: Dag): (name: string) => Set<number> {
  let memo = needersCache.get(dag)
  if (memo == null) { memo = new Map(); needersCache.set(dag, memo) }
  const cache = memo
  const of = (name: string): Set<number> => {
    const hit = cache.get(name)
    if (hit != null) return hit
    const out = new Set<number>()
    for (const c of dag.values.get(name)?.consumers ?? []) {
      const node = dag.nodes[c]
      if (!node.duplicable) { out.add(c); continue }
      if (folds(dag, node) && node.inputs[0] === name) continue
      if (node.outputs.some(o => dag.values.get(o)?.isOutput)) out.add(c)
      for (const o of node.outputs) for (const x of of(o)) out.add(x)
    }
    cache.set(name, out)
    return out
  }
  return of
}

/** The Constant that replaces a folded Shape/Size node (same output name). */
function foldedNode (dag: Dag, node: NodeProto, name: string): NodeProto {
  const dims = dag.values.get(node.input![0])!.shape!
  let values: number[]
  let shape: number[]
  if (node.opType === 'Size') {
    values = [dims.reduce((a, b) => a * b, 1)]
    shape = []
  } else {
    const r = dims.length
    const clamp = (v: number): number => Math.min(Math.max(v < 0 ? v + r : v, 0), r)
    values = dims.slice(clamp(attrInt(node, 'start', 0)), clamp(attrInt(node, 'end', r)))
    shape = [values.length]
  }
  return { name, opType: 'Constant', input: [], output: [node.output![0]], attribute: [{ name: 'value', type: ATTR.TENSOR, t: numbersToProto('', ELEM.INT64, shape, values) }] }
}

function inferredType (v: DagValue | undefined): ValueInfoProto['type'] | undefined {
  if (v?.elemType == null || v.elemType === 0) return undefined
  const dims = v.shape ?? v.dims ?? null
  return v.valueKind === 'sequence' ? sequenceType(v.elemType, dims) : tensorType(v.elemType, dims)
}
