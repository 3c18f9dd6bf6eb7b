/**
 * Cutting a stage out of a model: any set of Dag nodes (contiguous or not)
 * becomes a valid standalone ONNX model.
 *
 * - Inputs: every value the stage's nodes read (explicit inputs and
 *   outer-scope reads of Loop/If/Scan bodies) that the stage neither
 *   produces nor holds as an initializer, once each, in order of first read.
 * - Duplicated chains: a needed value made by a duplicable node (see
 *   graph.ts) is recomputed in the stage instead of received, when its whole
 *   producer chain can be: the chain's leaves must be initializers or, for
 *   Shape/Size, values the stage holds anyway (made there or received for
 *   another reason). Values are tried in topological order, so a value that
 *   had to be received can be the leaf of a later chain.
 * - Outputs: values made by the stage's own nodes that a node outside the
 *   stage reads or that are graph outputs, plus `extraOutputs`; except
 *   values every stage can recompute from initializers alone (constants),
 *   which never need to leave.
 * - Initializers: copied only where read (bodies included); external data
 *   is read and inlined unless told otherwise.
 */
import { LumiereError } from '../errors.ts'
import type { Dag, DagValue } from './dag.ts'
import { sequenceType, tensorType } from './proto.ts'
import type { ModelProto, NodeProto, TensorProto, ValueInfoProto } from './proto.ts'
import { isExternal, tensorBytes } from './tensor-proto.ts'

export interface StagePlan {
  /** Dag indices of the nodes the stage runs, sorted: its own and duplicated ones. */
  nodes: number[]
  /** The nodes asked for, sorted. */
  own: number[]
  /** Nodes pulled in as duplicates (not in `own`). */
  duplicated: number[]
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
  const held = new Set<string>()
  for (const i of own) for (const o of dag.nodes[i].outputs) held.add(o)

  // Values read from outside, each with the producing node (-1: graph input).
  const needed = new Set<string>()
  for (const i of own) {
    for (const name of dag.nodes[i].inputs) if (!held.has(name) && !dag.initializers.has(name)) needed.add(name)
  }
  // Values that must be received whatever happens: graph inputs and outputs
  // of nodes that cannot be duplicated.
  const received = new Set<string>()
  for (const name of needed) {
    const p = producerOf(dag, name)
    if (p < 0 || !dag.nodes[p].duplicable) received.add(name)
  }
  const available = (name: string): boolean => held.has(name) || received.has(name) || dag.initializers.has(name)

  const pullable = (name: string, seen: Set<number>): boolean => {
    const p = producerOf(dag, name)
    if (p < 0 || !dag.nodes[p].duplicable) return false
    if (inStage.has(p) || seen.has(p)) return true
    seen.add(p)
    const node = dag.nodes[p]
    return node.inputs.every(u => available(u) || pullable(u, seen))
  }
  const pull = (name: string): void => {
    const p = producerOf(dag, name)
    if (inStage.has(p)) return
    inStage.add(p)
    for (const o of dag.nodes[p].outputs) held.add(o)
    for (const u of dag.nodes[p].inputs) if (!available(u)) pull(u)
  }
  const candidates = [...needed].filter(n => !received.has(n)).sort((a, b) => producerOf(dag, a) - producerOf(dag, b))
  for (const name of candidates) {
    if (held.has(name)) continue
    if (pullable(name, new Set())) pull(name)
    else received.add(name)
  }

  const nodes = [...inStage].sort((a, b) => a - b)
  const inputs: string[] = []
  const initializers: string[] = []
  for (const i of nodes) {
    for (const name of dag.nodes[i].inputs) {
      if (dag.initializers.has(name)) { if (!initializers.includes(name)) initializers.push(name); continue }
      if (!held.has(name) && !inputs.includes(name)) inputs.push(name)
    }
  }

  const extra = new Set(options.extraOutputs ?? [])
  for (const name of extra) {
    if (!held.has(name)) throw new LumiereError('BAD_ARGUMENT', `extra output '${name}' is not computed by this stage`)
  }
  const leaving = (name: string): boolean => {
    const v = dag.values.get(name)!
    return v.isOutput || v.consumers.some(c => !ownSet.has(c))
  }
  const constant = constantValues(dag)
  const ownOutputs = own.flatMap(i => dag.nodes[i].outputs)
  let outputs = ownOutputs.filter(o => extra.has(o) || dag.values.get(o)!.isOutput || (leaving(o) && !constant.has(o)))
  // A stage of constants only still needs an output to be a valid model.
  if (outputs.length === 0) outputs = ownOutputs.filter(leaving)
  if (outputs.length === 0) outputs = ownOutputs.slice(-1)
  for (const name of extra) if (!outputs.includes(name)) outputs.push(name)

  // onnxruntime's JS API can neither feed nor fetch sequences.
  for (const name of [...inputs, ...outputs.filter(o => !dag.values.get(o)!.isOutput)]) {
    if (dag.values.get(name)?.valueKind === 'sequence') {
      throw new LumiereError('PLAN_IMPOSSIBLE', `the cut splits sequence '${name}' from its ${inputs.includes(name) ? 'producer' : 'consumers'}: keep the nodes that make and read a sequence in one stage`)
    }
  }

  return { nodes, own, duplicated: nodes.filter(i => !ownSet.has(i)), inputs, outputs, initializers }
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
      input: plan.inputs.map(valueInfo),
      output: plan.outputs.map(valueInfo),
      initializer
    }
  }
  return { model: stageModel, inputs: plan.inputs, outputs: plan.outputs, nodes: plan.nodes, duplicated: plan.duplicated }
}

function producerOf (dag: Dag, name: string): number {
  return dag.values.get(name)?.producer ?? -1
}

/** Values every stage can recompute from initializers alone: duplicable chains without Shape/Size leaves. */
function constantValues (dag: Dag): Set<string> {
  const out = new Set<string>()
  for (const node of dag.nodes) {
    if (!node.duplicable || node.opType === 'Shape' || node.opType === 'Size') continue
    if (node.inputs.every(u => dag.initializers.has(u) || out.has(u))) for (const o of node.outputs) out.add(o)
  }
  return out
}

function inferredType (v: DagValue | undefined): ValueInfoProto['type'] | undefined {
  if (v?.elemType == null || v.elemType === 0) return undefined
  const dims = v.dims !== undefined ? v.dims : v.shape
  return v.valueKind === 'sequence' ? sequenceType(v.elemType, dims) : tensorType(v.elemType, dims)
}
