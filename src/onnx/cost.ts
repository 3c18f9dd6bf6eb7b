/**
 * Cost estimates for planning (pure: shapes in, numbers out).
 *
 * FLOPs per node, counting a multiply-add as 2:
 * - MatMul 2·(output elements)·K; Gemm 2·M·N·K (+ M·N with a C input);
 *   Einsum 2·(product of every distinct index's size).
 * - Conv 2·N·Cout·(Cin/group)·prod(kernel)·prod(output spatial) (+ bias);
 *   ConvTranspose 2·N·Cin·(Cout/group)·prod(kernel)·prod(input spatial).
 * - Normalizations ~5 per element (mean, variance, normalize, scale, shift),
 *   BatchNormalization 2, Softmax-like 3; pooling prod(kernel) per output.
 * - Reductions: input elements. Views (Reshape, Squeeze, Shape, Constant,
 *   ...): 0. Everything else (elementwise, copies, Resize, unknown ops):
 *   output elements.
 * - Loop: body × trip count when M is a known constant (an upper bound when
 *   the loop can stop early), else one body. Scan: body × sequence length.
 *   If: the dearer branch.
 * Unknown shapes count as 0.
 */
import type { Dim, ShapeInfo, ValueType } from './shapes.ts'
import { attr, attrInt, attrInts, attrString, presentInputs, subgraphs, tensorDims, elemBytes } from './proto.ts'
import type { GraphProto, NodeProto } from './proto.ts'

export interface CostLookup {
  /** Concrete shape of a value visible from this graph, or null. */
  shape (name: string): number[] | null
  /** Folded contents of a small tensor (trip counts). */
  value (name: string): Dim[] | undefined
  /** The lookup for the values of one of this graph's subgraphs. */
  inside (graph: GraphProto): CostLookup
}

/** A CostLookup over inferred shapes; `known` overrides (e.g. probe results) for the main graph. */
export function costLookup (info: ShapeInfo, known?: (name: string) => number[] | null): CostLookup {
  const make = (local: Map<string, ValueType>, outer: CostLookup | undefined, override?: (name: string) => number[] | null): CostLookup => {
    const self: CostLookup = {
      shape (name) {
        const fromOverride = override?.(name)
        if (fromOverride != null) return fromOverride
        const vt = local.get(name)
        if (vt == null) return outer?.shape(name) ?? null
        return vt.shape != null && vt.shape.every(d => typeof d === 'number') ? vt.shape as number[] : null
      },
      value (name) {
        return local.has(name) ? local.get(name)?.value : outer?.value(name)
      },
      inside (graph) {
        return make(info.graphs.get(graph) ?? new Map(), self)
      }
    }
    return self
  }
  return make(info.values, undefined, known)
}

const VIEWS = new Set(['Reshape', 'Squeeze', 'Unsqueeze', 'Flatten', 'Identity', 'Shape', 'Size', 'Constant', 'Dropout', 'SequenceEmpty', 'SequenceLength', 'Optional', 'OptionalGetElement'])
const NORMS = new Set(['InstanceNormalization', 'LayerNormalization', 'GroupNormalization', 'MeanVarianceNormalization', 'LpNormalization', 'SimplifiedLayerNormalization', 'SkipLayerNormalization'])
const SOFTMAX = new Set(['Softmax', 'LogSoftmax', 'Hardmax'])
const REDUCTIONS = new Set(['ReduceMean', 'ReduceSum', 'ReduceMax', 'ReduceMin', 'ReduceProd', 'ReduceL1', 'ReduceL2', 'ReduceLogSum', 'ReduceLogSumExp', 'ReduceSumSquare', 'ArgMax', 'ArgMin', 'GlobalAveragePool', 'GlobalMaxPool', 'GlobalLpPool'])

function elements (shape: number[] | null): number {
  if (shape == null) return 0
  let n = 1
  for (const d of shape) n *= d
  return n
}

/** Estimated FLOPs of one run of a node. */
export function nodeFlops (node: NodeProto, look: CostLookup): number {
  const op = node.opType ?? ''
  const ins = node.input ?? []
  const inShape = (i: number): number[] | null => ins[i] != null && ins[i] !== '' ? look.shape(ins[i]) : null
  const out = elements(node.output?.[0] != null ? look.shape(node.output[0]) : null)
  switch (op) {
    case 'MatMul': {
      const a = inShape(0)
      return a == null || a.length === 0 ? 0 : 2 * out * a[a.length - 1]
    }
    case 'Gemm': {
      const a = inShape(0)
      if (a == null || a.length !== 2) return 0
      const k = attrInt(node, 'transA', 0) ? a[0] : a[1]
      return 2 * out * k + (presentInputs(node).length > 2 ? out : 0)
    }
    case 'Conv': {
      const w = inShape(1)
      if (w == null) return 0
      // Each output element: Cin/group · prod(kernel) multiply-adds.
      return 2 * out * elements(w.slice(1)) + (presentInputs(node).length > 2 ? out : 0)
    }
    case 'ConvTranspose': {
      const w = inShape(1)
      // Each input element scatters into Cout/group · prod(kernel) outputs.
      return w == null ? 0 : 2 * elements(inShape(0)) * elements(w.slice(1)) + (presentInputs(node).length > 2 ? out : 0)
    }
    case 'Einsum': return einsumFlops(attrString(node, 'equation', ''), ins.map((_, i) => inShape(i)))
    case 'MaxPool':
    case 'AveragePool':
    case 'LpPool': return out * elements(attrInts(node, 'kernel_shape') ?? [])
    case 'BatchNormalization': return 2 * out
    case 'Loop': {
      const body = attr(node, 'body')?.g
      if (body == null) return 0
      const m = ins[0] != null && ins[0] !== '' ? look.value(ins[0])?.[0] : undefined
      return graphFlops(body, look.inside(body)) * (typeof m === 'number' ? m : 1)
    }
    case 'Scan': {
      const body = attr(node, 'body')?.g
      if (body == null) return 0
      const nScan = attrInt(node, 'num_scan_inputs', 0)
      const first = inShape(ins.length - nScan)
      const axis = attrInts(node, 'scan_input_axes')?.[0] ?? 0
      const len = first == null ? 1 : first[axis < 0 ? axis + first.length : axis]
      return graphFlops(body, look.inside(body)) * len
    }
    case 'If': return Math.max(0, ...subgraphs(node).map(g => graphFlops(g, look.inside(g))))
  }
  if (VIEWS.has(op)) return 0
  if (NORMS.has(op)) return 5 * out
  if (SOFTMAX.has(op)) return 3 * out
  if (REDUCTIONS.has(op)) return elements(inShape(0))
  return out
}

/** Sum of node FLOPs over a graph (a subgraph body). */
export function graphFlops (graph: GraphProto, look: CostLookup): number {
  let total = 0
  for (const node of graph.node ?? []) total += nodeFlops(node, look)
  return total
}

function einsumFlops (equation: string, shapes: Array<number[] | null>): number {
  const [lhs] = equation.replace(/\s/g, '').split('->')
  const sizes = new Map<string, number>()
  let ellipsis = 1
  const terms = lhs.split(',')
  for (let k = 0; k < terms.length; k++) {
    const s = shapes[k]
    if (s == null) return 0
    const [before, after] = terms[k].includes('...') ? terms[k].split('...') : [terms[k], undefined]
    const nEll = after == null ? 0 : s.length - before.length - after.length
    ;[...before].forEach((c, i) => sizes.set(c, Math.max(sizes.get(c) ?? 1, s[i])))
    if (after != null) {
      ellipsis = Math.max(ellipsis, elements(s.slice(before.length, before.length + nEll)))
      ;[...after].forEach((c, i) => sizes.set(c, Math.max(sizes.get(c) ?? 1, s[before.length + nEll + i])))
    }
  }
  let n = ellipsis
  for (const d of sizes.values()) n *= d
  return 2 * n
}

/** Bytes of the initializers defined inside a node's subgraphs (recursively). */
export function subgraphParamBytes (node: NodeProto): number {
  let total = 0
  for (const g of subgraphs(node)) {
    for (const t of g.initializer ?? []) total += elements(tensorDims(t)) * elemBytes(t.dataType ?? 0)
    for (const n of g.node ?? []) total += subgraphParamBytes(n)
  }
  return total
}
