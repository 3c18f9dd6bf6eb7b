/**
 * Static shape and dtype inference, with constant folding of the small
 * tensors that shapes are computed from (Shape → Gather → Unsqueeze →
 * Concat → Reshape chains, axes, scales, trip counts).
 *
 * Dims are numbers or names. A name is either a symbolic input dim (e.g.
 * 'batch', left as is unless `dims` binds it) or a fresh '?N' for a dim
 * nobody can know statically; two equal names are the same dim.
 *
 * The rule: what an operator's definition fixes from its inputs' shapes and
 * from constant inputs is inferred here. Data-dependent results (NonZero,
 * Loop carried values whose shape changes, ConcatFromSequence of a sequence
 * built in a Loop, unknown operators, ...) get '?' dims or an unknown rank;
 * `probeShapes` (probe.ts) measures those in one ORT run.
 */
import { attr, attrFloat, attrInt, attrInts, attrString, attrTensor, ELEM, isIntegerElem, nodeReads, num, tensorDims, typeInfo, unknownDim } from './proto.ts'
import type { GraphProto, ModelProto, NodeProto, TensorProto } from './proto.ts'
import { tensorNumbers } from './tensor-proto.ts'

export type Dim = number | string

export interface ValueType {
  kind: 'tensor' | 'sequence' | 'other'
  /** ONNX element type (TensorProto.DataType); 0 when unknown. */
  elemType: number
  /** null: rank unknown. For a sequence: the shape of its elements. */
  shape: Dim[] | null
  /** Folded contents of a small tensor (row-major); names for unknown elements. */
  value?: Dim[]
}

export interface ShapeInfo {
  /** Every value of the main graph (inputs, initializers, node outputs). */
  values: Map<string, ValueType>
  /** Values defined inside each subgraph (its inputs, initializers, node outputs). */
  graphs: Map<GraphProto, Map<string, ValueType>>
}

export interface ShapeOptions {
  /** Concrete values for symbolic input dims, e.g. { batch: 2, frames: 16 }. */
  dims?: Record<string, number>
  /** Concrete shapes of graph inputs (e.g. of the tensors about to be fed); override declared ones. */
  inputShapes?: Record<string, readonly number[]>
  /** Measured types and shapes of main-graph values (probe results); they replace inferred ones. */
  known?: ReadonlyMap<string, { elemType: number, shape: number[] }>
}

/** Tensors up to this many elements have their contents folded. */
export const FOLD_LIMIT = 1024

const INT64_MAX = 2 ** 63

export function inferShapes (model: ModelProto, options: ShapeOptions = {}): ShapeInfo {
  const graph = model.graph ?? {}
  const opset = (model.opsetImport ?? []).find(o => (o.domain ?? '') === '' || o.domain === 'ai.onnx')
  const ctx: Ctx = { opset: opset == null ? 17 : num(opset.version), dims: options.dims ?? {}, graphs: new Map(), known: options.known }
  const preset = new Map<string, ValueType>()
  for (const [name, shape] of Object.entries(options.inputShapes ?? {})) preset.set(name, { kind: 'tensor', elemType: 0, shape: [...shape] })
  const values = inferGraph(graph, () => undefined, ctx, preset)
  return { values, graphs: ctx.graphs }
}

interface Ctx {
  opset: number
  dims: Record<string, number>
  graphs: Map<GraphProto, Map<string, ValueType>>
  /** Measured main-graph values (names are unique model-wide, so bodies cannot clash). */
  known?: ReadonlyMap<string, { elemType: number, shape: number[] }>
}

type Lookup = (name: string) => ValueType | undefined

/** Infers a graph's values; `outer` resolves names of enclosing scopes. Body inputs may be preset in `preset`. */
function inferGraph (graph: GraphProto, outer: Lookup, ctx: Ctx, preset?: Map<string, ValueType>): Map<string, ValueType> {
  const local = new Map<string, ValueType>()
  const get: Lookup = name => local.get(name) ?? outer(name)
  const declared = new Map<string, ValueType>()
  for (const v of [...(graph.valueInfo ?? []), ...(graph.output ?? [])]) {
    if (v.name) declared.set(v.name, bind(fromType(v.type), ctx))
  }
  for (const v of graph.input ?? []) {
    if (!v.name) continue
    const given = preset?.get(v.name)
    const own = bind(fromType(v.type), ctx)
    local.set(v.name, given == null ? own : refine(given, own))
  }
  for (const t of graph.initializer ?? []) {
    if (t.name) local.set(t.name, fromTensor(t))
  }
  for (const node of topological(graph.node ?? [])) {
    const ins = (node.input ?? []).map(n => n === '' ? undefined : get(n))
    let outs: ValueType[]
    try {
      outs = inferNode(node, ins, get, ctx)
    } catch {
      // A malformed attribute or an input we misread must not stop planning:
      // the probe run measures what we could not infer.
      outs = []
    }
    ;(node.output ?? []).forEach((name, i) => {
      if (name === '') return
      const out = outs[i] ?? unknown()
      const decl = declared.get(name)
      const measured = ctx.known?.get(name)
      const refined = decl == null ? out : refine(out, decl)
      local.set(name, measured == null || refined.kind !== 'tensor' ? refined : { kind: 'tensor', elemType: measured.elemType || refined.elemType, shape: [...measured.shape], value: refined.value })
    })
  }
  ctx.graphs.set(graph, local)
  return local
}

/**
 * Nodes in an order where producers come first: the file's order when it
 * already is one (ONNX requires it), else a stable sort. Lenient: names
 * from outside the graph are ignored and nodes on a cycle go last (buildDag
 * reports those).
 */
function topological (nodes: NodeProto[]): NodeProto[] {
  const producer = new Map<string, number>()
  nodes.forEach((n, i) => { for (const o of n.output ?? []) if (o !== '') producer.set(o, i) })
  const deps = nodes.map(n => new Set(nodeReads(n).map(r => producer.get(r)).filter((p): p is number => p != null)))
  if (deps.every((d, i) => [...d].every(p => p < i))) return nodes
  const done = new Set<number>()
  const order: NodeProto[] = []
  for (let progress = true; progress;) {
    progress = false
    nodes.forEach((n, i) => {
      if (done.has(i) || ![...deps[i]].every(p => done.has(p))) return
      done.add(i); order.push(n); progress = true
    })
  }
  return [...order, ...nodes.filter((_, i) => !done.has(i))]
}

// ---------------------------------------------------------------- helpers

function unknown (elemType = 0): ValueType {
  return { kind: 'tensor', elemType, shape: null }
}

function tensor (elemType: number, shape: Dim[] | null, value?: Dim[]): ValueType {
  const vt: ValueType = { kind: 'tensor', elemType, shape }
  if (value != null && shape != null && isConcrete(shape) && count(shape) === value.length && value.length <= FOLD_LIMIT) vt.value = value
  return vt
}

function fromType (type: Parameters<typeof typeInfo>[0]): ValueType {
  const t = typeInfo(type)
  return { kind: t.kind, elemType: t.elemType, shape: t.dims }
}

function bind (vt: ValueType, ctx: Ctx): ValueType {
  if (vt.shape == null) return vt
  return { ...vt, shape: vt.shape.map(d => typeof d === 'string' && ctx.dims[d] != null ? ctx.dims[d] : d) }
}

function fromTensor (t: TensorProto): ValueType {
  const dims = tensorDims(t)
  const type = t.dataType ?? 0
  let value: Dim[] | undefined
  if (count(dims) <= FOLD_LIMIT && type !== ELEM.STRING) {
    try { value = tensorNumbers(t) } catch { value = undefined }
  }
  return tensor(type, dims, value)
}

/** Our inference refined by a declared type: known dims win, declared fill the gaps. */
function refine (ours: ValueType, declared: ValueType): ValueType {
  const elemType = ours.elemType !== 0 ? ours.elemType : declared.elemType
  const kind = ours.kind !== 'other' ? ours.kind : declared.kind
  if (ours.shape == null) return { ...ours, kind, elemType, shape: declared.shape }
  if (declared.shape == null || declared.shape.length !== ours.shape.length) return { ...ours, kind, elemType }
  const shape = ours.shape.map((d, i) => typeof d === 'number' ? d : typeof declared.shape![i] === 'number' ? declared.shape![i] : (d.startsWith('?') ? declared.shape![i] : d))
  return { ...ours, kind, elemType, shape }
}

function isConcrete (shape: readonly Dim[]): shape is number[] {
  return shape.every(d => typeof d === 'number')
}

function count (shape: readonly Dim[]): number {
  let n = 1
  for (const d of shape) n *= typeof d === 'number' ? d : NaN
  return n
}

function numbers (vt: ValueType | undefined): number[] | undefined {
  const v = vt?.value
  return v != null && v.every(x => typeof x === 'number') ? v as number[] : undefined
}

function rank (vt: ValueType | undefined): number | undefined {
  return vt?.shape?.length
}

function normAxis (axis: number, r: number): number {
  return axis < 0 ? axis + r : axis
}

function mul (a: Dim, b: Dim): Dim {
  if (typeof a === 'number' && typeof b === 'number') return a * b
  if (a === 1) return b
  if (b === 1) return a
  return unknownDim()
}

function add (a: Dim, b: Dim): Dim {
  if (typeof a === 'number' && typeof b === 'number') return a + b
  if (a === 0) return b
  if (b === 0) return a
  return unknownDim()
}

/** One dim of a broadcast: equal dims stay, 1 yields to the other. */
function broadcastDim (a: Dim, b: Dim): Dim {
  if (a === b) return a
  if (a === 1) return b
  if (b === 1) return a
  if (typeof a === 'number') return a
  if (typeof b === 'number') return b
  return unknownDim()
}

function broadcast (shapes: Array<Dim[] | null>): Dim[] | null {
  if (shapes.some(s => s == null)) return null
  const ss = shapes as Dim[][]
  const r = Math.max(0, ...ss.map(s => s.length))
  const out: Dim[] = []
  for (let i = 0; i < r; i++) {
    let d: Dim = 1
    for (const s of ss) {
      const k = i - (r - s.length)
      if (k >= 0) d = broadcastDim(d, s[k])
    }
    out.push(d)
  }
  return out
}

/** Elementwise fold over broadcast inputs with known contents. */
function foldElementwise (ins: Array<ValueType | undefined>, shape: Dim[] | null, fn: (xs: Dim[]) => Dim): Dim[] | undefined {
  if (shape == null || !isConcrete(shape) || count(shape) > FOLD_LIMIT) return undefined
  if (ins.some(v => v?.value == null || v.shape == null || !isConcrete(v.shape))) return undefined
  const total = count(shape)
  const out: Dim[] = []
  for (let flat = 0; flat < total; flat++) {
    // Row-major index of the output element, mapped into each input.
    const idx: number[] = []
    let rem = flat
    for (let i = shape.length - 1; i >= 0; i--) { idx[i] = rem % shape[i]; rem = Math.floor(rem / shape[i]) }
    const xs = ins.map(v => {
      const s = v!.shape as number[]
      let off = 0
      for (let i = 0; i < s.length; i++) off = off * s[i] + (s[i] === 1 ? 0 : idx[i + shape.length - s.length])
      return v!.value![off]
    })
    out.push(fn(xs))
  }
  return out
}

function arith (op: string, integer: boolean): ((xs: Dim[]) => Dim) | undefined {
  const f = (g: (a: number, b: number) => number, symbolic?: (a: Dim, b: Dim) => Dim) => (xs: Dim[]): Dim => {
    const [a, b] = xs
    if (typeof a === 'number' && typeof b === 'number') return g(a, b)
    return symbolic?.(a, b) ?? unknownDim()
  }
  const round = (x: number): number => integer ? Math.trunc(x) : Math.fround(x)
  switch (op) {
    case 'Add': return f((a, b) => round(a + b), add)
    case 'Sub': return f((a, b) => round(a - b), (a, b) => b === 0 ? a : unknownDim())
    case 'Mul': return f((a, b) => round(a * b), mul)
    case 'Div': return f((a, b) => round(a / b), (a, b) => b === 1 ? a : unknownDim())
    case 'Mod': return f((a, b) => integer ? ((a % b) + b) % b : a % b)
    case 'Equal': return f((a, b) => a === b ? 1 : 0, (a, b) => a === b ? 1 : unknownDim())
    case 'Less': return f((a, b) => a < b ? 1 : 0)
    case 'Greater': return f((a, b) => a > b ? 1 : 0)
    case 'LessOrEqual': return f((a, b) => a <= b ? 1 : 0)
    case 'GreaterOrEqual': return f((a, b) => a >= b ? 1 : 0)
    case 'Max': return f((a, b) => Math.max(a, b))
    case 'Min': return f((a, b) => Math.min(a, b))
    case 'And': return f((a, b) => a && b ? 1 : 0)
    case 'Or': return f((a, b) => a || b ? 1 : 0)
    default: return undefined
  }
}

function unaryFold (op: string, integer: boolean): ((x: number) => number) | undefined {
  switch (op) {
    case 'Neg': return x => -x
    case 'Abs': return Math.abs
    case 'Floor': return Math.floor
    case 'Ceil': return Math.ceil
    case 'Not': return x => x ? 0 : 1
    case 'Sqrt': return x => integer ? Math.trunc(Math.sqrt(x)) : Math.fround(Math.sqrt(x))
    case 'Identity': return x => x
    default: return undefined
  }
}

function castValue (x: Dim, to: number): Dim {
  if (typeof x === 'string') return isIntegerElem(to) ? x : unknownDim()
  if (to === ELEM.BOOL) return x !== 0 ? 1 : 0
  if (isIntegerElem(to)) return Math.trunc(x)
  if (to === ELEM.FLOAT) return Math.fround(x)
  return x
}

// ---------------------------------------------------------------- operators

const UNARY = new Set([
  'Relu', 'Sigmoid', 'Tanh', 'Exp', 'Log', 'Sqrt', 'Neg', 'Abs', 'Erf', 'Reciprocal', 'Floor', 'Ceil', 'Round',
  'Sin', 'Cos', 'Tan', 'Asin', 'Acos', 'Atan', 'Sinh', 'Cosh', 'Softplus', 'Softsign', 'LeakyRelu', 'Elu', 'Selu',
  'Celu', 'HardSigmoid', 'HardSwish', 'Gelu', 'Mish', 'Identity', 'Not', 'Sign', 'Clip', 'Softmax', 'LogSoftmax',
  'Hardmax', 'ThresholdedRelu', 'Shrink', 'CumSum', 'Trilu', 'InstanceNormalization', 'LayerNormalization',
  'GroupNormalization', 'BatchNormalization', 'LpNormalization', 'MeanVarianceNormalization', 'LRN',
  'ScatterND', 'ScatterElements', 'Scatter', 'ReverseSequence', 'Bernoulli', 'Dropout'
])

const BINARY = new Set(['Add', 'Sub', 'Mul', 'Div', 'Pow', 'Mod', 'PRelu', 'BitShift', 'Max', 'Min', 'Sum', 'Mean', 'BitwiseAnd', 'BitwiseOr', 'BitwiseXor'])
const COMPARE = new Set(['Equal', 'Less', 'Greater', 'LessOrEqual', 'GreaterOrEqual', 'And', 'Or', 'Xor'])
const REDUCE = new Set(['ReduceMean', 'ReduceSum', 'ReduceMax', 'ReduceMin', 'ReduceProd', 'ReduceL1', 'ReduceL2', 'ReduceLogSum', 'ReduceLogSumExp', 'ReduceSumSquare'])
const POOL = new Set(['MaxPool', 'AveragePool', 'LpPool'])

function inferNode (node: NodeProto, ins: Array<ValueType | undefined>, get: Lookup, ctx: Ctx): ValueType[] {
  const op = node.opType ?? ''
  if ((node.domain ?? '') !== '' && node.domain !== 'ai.onnx') return []
  const x = ins[0]
  const et = x?.elemType ?? 0

  if (UNARY.has(op)) return unaryOp(node, op, ins)
  if (BINARY.has(op) || COMPARE.has(op)) {
    const shape = broadcast(ins.map(v => v?.shape ?? null))
    const outType = COMPARE.has(op) ? ELEM.BOOL : et
    const fn = ins.length === 2 ? arith(op, isIntegerElem(et) || et === ELEM.BOOL) : undefined
    return [tensor(outType, shape, fn == null ? undefined : foldElementwise(ins, shape, fn))]
  }
  if (REDUCE.has(op)) return [reduce(node, x, numbers(ins[1]), op)]
  if (POOL.has(op)) {
    const out = pool(node, x)
    return [out, tensor(ELEM.INT64, out.shape)]
  }

  switch (op) {
    case 'Constant': return [constant(node)]
    case 'Shape': {
      if (x?.shape == null) return [tensor(ELEM.INT64, [unknownDim()])]
      const r = x.shape.length
      const clampR = (v: number) => Math.min(Math.max(normAxis(v, r), 0), r)
      const dims = x.shape.slice(clampR(attrInt(node, 'start', 0)), clampR(attrInt(node, 'end', r)))
      return [tensor(ELEM.INT64, [dims.length], dims)]
    }
    case 'Size': {
      const n = x?.shape == null ? NaN : count(x.shape)
      return [tensor(ELEM.INT64, [], [Number.isNaN(n) ? unknownDim() : n])]
    }
    case 'Cast': {
      const to = attrInt(node, 'to', 0)
      return [tensor(to, x?.shape ?? null, x?.value?.map(v => castValue(v, to)))]
    }
    case 'CastLike': return [tensor(ins[1]?.elemType ?? 0, x?.shape ?? null, x?.value?.map(v => castValue(v, ins[1]?.elemType ?? 0)))]
    case 'IsNaN':
    case 'IsInf': return [tensor(ELEM.BOOL, x?.shape ?? null)]
    case 'Where': {
      const shape = broadcast(ins.map(v => v?.shape ?? null))
      return [tensor(ins[1]?.elemType ?? 0, shape, foldElementwise(ins, shape, ([c, a, b]) => typeof c === 'number' ? (c ? a : b) : unknownDim()))]
    }
    case 'MatMul': return [tensor(et, matmul(x?.shape ?? null, ins[1]?.shape ?? null))]
    case 'Gemm': {
      const a = x?.shape; const b = ins[1]?.shape
      if (a == null || b == null || a.length !== 2 || b.length !== 2) return [unknown(et)]
      const m = attrInt(node, 'transA', 0) ? a[1] : a[0]
      const n = attrInt(node, 'transB', 0) ? b[0] : b[1]
      return [tensor(et, [m, n])]
    }
    case 'Einsum': return [tensor(et, einsum(attrString(node, 'equation', ''), ins.map(v => v?.shape ?? null)))]
    case 'Conv': return [conv(node, x, ins[1])]
    case 'ConvTranspose': return [convTranspose(node, x, ins[1])]
    case 'GlobalAveragePool':
    case 'GlobalMaxPool':
    case 'GlobalLpPool': return [tensor(et, x?.shape == null ? null : x.shape.map((d, i) => i < 2 ? d : 1))]
    case 'Reshape': return [reshape(node, x, ins[1])]
    case 'Flatten': {
      if (x?.shape == null) return [unknown(et)]
      const axis = normAxis(attrInt(node, 'axis', 1), x.shape.length)
      return [tensor(et, [x.shape.slice(0, axis).reduce(mul, 1), x.shape.slice(axis).reduce(mul, 1)], x.value)]
    }
    case 'Transpose': {
      if (x?.shape == null) return [unknown(et)]
      const s = x.shape
      const perm = attrInts(node, 'perm') ?? s.map((_, i) => s.length - 1 - i)
      return [tensor(et, perm.map(p => s[p]))]
    }
    case 'Squeeze': {
      const axes = attrInts(node, 'axes') ?? numbers(ins[1])
      if (x?.shape == null) return [unknown(et)]
      const s = x.shape
      if (axes == null && ins[1] != null) return [unknown(et)]
      if (axes == null && !isConcrete(s)) return [unknown(et)]
      const drop = new Set((axes ?? s.flatMap((d, i) => d === 1 ? [i] : [])).map(a => normAxis(a, s.length)))
      return [tensor(et, s.filter((_, i) => !drop.has(i)), x.value)]
    }
    case 'Unsqueeze': {
      const axes = attrInts(node, 'axes') ?? numbers(ins[1])
      if (x?.shape == null || axes == null) return [unknown(et)]
      const r = x.shape.length + axes.length
      const put = new Set(axes.map(a => normAxis(a, r)))
      const rest = [...x.shape]
      const out: Dim[] = []
      for (let i = 0; i < r; i++) out.push(put.has(i) ? 1 : rest.shift()!)
      return [tensor(et, out, x.value)]
    }
    case 'Concat': return [concat(node, ins)]
    case 'Split': return split(node, x, ins[1], (node.output ?? []).length)
    case 'Slice': return [slice(node, ins)]
    case 'Gather': return [gather(node, x, ins[1])]
    case 'GatherElements': return [tensor(et, ins[1]?.shape ?? null)]
    case 'ConstantOfShape': {
      const shape = ins[0]?.value
      const t = attrTensor(node, 'value')
      const type = t?.dataType ?? ELEM.FLOAT
      if (shape == null) return [tensor(type, ins[0]?.shape != null && isConcrete(ins[0].shape) ? ins[0].shape.map(() => unknownDim()) : null)]
      const fill = t == null ? 0 : (tensorNumbers(t)[0] ?? 0)
      const n = count(shape)
      return [tensor(type, shape, Number.isNaN(n) || n > FOLD_LIMIT ? undefined : new Array(n).fill(fill))]
    }
    case 'Range': {
      const [s, l, d] = [numbers(ins[0])?.[0], numbers(ins[1])?.[0], numbers(ins[2])?.[0]]
      if (s == null || l == null || d == null) return [tensor(et, [unknownDim()])]
      const n = Math.max(Math.ceil((l - s) / d), 0)
      return [tensor(et, [n], n <= FOLD_LIMIT ? Array.from({ length: n }, (_, i) => s + i * d) : undefined)]
    }
    case 'Expand': {
      const target = ins[1]?.value
      const shape = target == null ? null : broadcast([x?.shape ?? null, target])
      return [tensor(et, shape, x == null ? undefined : foldElementwise([x], shape, ([v]) => v))]
    }
    case 'Tile': {
      const reps = ins[1]?.value
      if (x?.shape == null || reps == null) return [unknown(et)]
      return [tensor(et, x.shape.map((d, i) => mul(d, reps[i])))]
    }
    case 'Pad': return [pad(node, x, ins)]
    case 'Resize':
    case 'Upsample': return [resize(node, ins, ctx)]
    case 'ArgMax':
    case 'ArgMin': {
      const out = reduce(node, x, [attrInt(node, 'axis', 0)], op)
      return [{ ...out, elemType: ELEM.INT64 }]
    }
    case 'TopK': {
      const k = numbers(ins[1])?.[0] ?? attrInt(node, 'k')
      if (x?.shape == null) return [unknown(et), unknown(ELEM.INT64)]
      const axis = normAxis(attrInt(node, 'axis', -1), x.shape.length)
      const shape = x.shape.map((d, i) => i === axis ? (k ?? unknownDim()) : d)
      return [tensor(et, shape), tensor(ELEM.INT64, shape)]
    }
    case 'NonZero': return [tensor(ELEM.INT64, x?.shape == null ? null : [x.shape.length, unknownDim()])]
    case 'DepthToSpace':
    case 'SpaceToDepth': {
      const s = x?.shape
      if (s == null || s.length !== 4) return [unknown(et)]
      const b = attrInt(node, 'blocksize', 1)
      return op === 'DepthToSpace'
        ? [tensor(et, [s[0], typeof s[1] === 'number' ? s[1] / (b * b) : unknownDim(), mul(s[2], b), mul(s[3], b)])]
        : [tensor(et, [s[0], mul(s[1], b * b), typeof s[2] === 'number' ? s[2] / b : unknownDim(), typeof s[3] === 'number' ? s[3] / b : unknownDim()])]
    }
    case 'OneHot': {
      const depth = numbers(ins[1])?.[0]
      if (x?.shape == null) return [unknown(ins[2]?.elemType ?? 0)]
      const r = x.shape.length + 1
      const axis = normAxis(attrInt(node, 'axis', -1), r)
      const out = [...x.shape]
      out.splice(axis, 0, depth ?? unknownDim())
      return [tensor(ins[2]?.elemType ?? 0, out)]
    }
    case 'SequenceEmpty': return [{ kind: 'sequence', elemType: attrInt(node, 'dtype', ELEM.FLOAT), shape: null }]
    case 'SequenceConstruct': return [{ kind: 'sequence', elemType: et, shape: ins.map(v => v?.shape ?? null).reduce((a, b) => merge(a, b)) ?? null }]
    case 'SequenceInsert': {
      const seq = x
      const t = ins[1]
      return [{ kind: 'sequence', elemType: t?.elemType ?? seq?.elemType ?? 0, shape: seq?.shape == null ? (t?.shape ?? null) : merge(seq.shape, t?.shape ?? null) }]
    }
    case 'SequenceErase': return [x ?? unknown()]
    case 'SequenceAt': return [tensor(et, x?.shape ?? null)]
    case 'SequenceLength': return [tensor(ELEM.INT64, [])]
    case 'SplitToSequence': return [{ kind: 'sequence', elemType: et, shape: x?.shape == null ? null : x.shape.map(() => unknownDim()) }]
    case 'ConcatFromSequence': {
      if (x?.shape == null) return [unknown(et)]
      const newAxis = attrInt(node, 'new_axis', 0) === 1
      const r = x.shape.length + (newAxis ? 1 : 0)
      const axis = normAxis(attrInt(node, 'axis', 0), r)
      const out = [...x.shape]
      if (newAxis) out.splice(axis, 0, unknownDim()); else out[axis] = unknownDim()
      return [tensor(et, out)]
    }
    case 'Loop': return loop(node, ins, get, ctx)
    case 'If': return ifOp(node, get, ctx)
    case 'Scan': return scan(node, ins, get, ctx)
    default: return []
  }
}

function unaryOp (node: NodeProto, op: string, ins: Array<ValueType | undefined>): ValueType[] {
  const x = ins[0]
  const et = x?.elemType ?? 0
  const shape = x?.shape ?? null
  const fold = unaryFold(op, isIntegerElem(et))
  const value = fold == null ? undefined : x?.value?.map(v => typeof v === 'number' ? fold(v) : (op === 'Identity' ? v : unknownDim()))
  const main = tensor(et, shape, value)
  switch (op) {
    case 'Dropout': return [main, tensor(ELEM.BOOL, shape)]
    case 'LayerNormalization': {
      // Mean and InvStdDev keep X's rank with the normalized axes set to 1.
      if (shape == null) return [main, unknown(ELEM.FLOAT), unknown(ELEM.FLOAT)]
      const axis = normAxis(attrInt(node, 'axis', -1), shape.length)
      const stats = tensor(attrInt(node, 'stash_type', ELEM.FLOAT), shape.map((d, i) => i < axis ? d : 1))
      return [main, stats, stats]
    }
    case 'BatchNormalization': {
      const c = shape?.[1] ?? unknownDim()
      const stat = tensor(et, [c])
      return [main, stat, stat]
    }
    default: return [main]
  }
}

function merge (a: Dim[] | null, b: Dim[] | null): Dim[] | null {
  if (a == null || b == null || a.length !== b.length) return null
  return a.map((d, i) => d === b[i] ? d : unknownDim())
}

function constant (node: NodeProto): ValueType {
  const t = attrTensor(node, 'value')
  if (t != null) return fromTensor(t)
  const f = attr(node, 'value_float')
  if (f != null) return tensor(ELEM.FLOAT, [], [attrFloat(node, 'value_float', 0)])
  const fs = attr(node, 'value_floats')
  if (fs != null) { const v = fs.floats ?? []; return tensor(ELEM.FLOAT, [v.length], v) }
  const i = attrInt(node, 'value_int')
  if (i != null) return tensor(ELEM.INT64, [], [i])
  const is = attrInts(node, 'value_ints')
  if (is != null) return tensor(ELEM.INT64, [is.length], is)
  return unknown()
}

function matmul (a: Dim[] | null, b: Dim[] | null): Dim[] | null {
  if (a == null || b == null || a.length === 0 || b.length === 0) return null
  const a2 = a.length === 1 ? [1, a[0]] : a
  const b2 = b.length === 1 ? [b[0], 1] : b
  const batch = broadcast([a2.slice(0, -2), b2.slice(0, -2)])!
  const out = [...batch]
  if (a.length > 1) out.push(a2[a2.length - 2])
  if (b.length > 1) out.push(b2[b2.length - 1])
  return out
}

function einsum (equation: string, shapes: Array<Dim[] | null>): Dim[] | null {
  const eq = equation.replace(/\s/g, '')
  const [lhs, rhs] = eq.split('->')
  const terms = lhs.split(',')
  if (terms.length !== shapes.length || shapes.some(s => s == null)) return null
  const letters = new Map<string, Dim>()
  let ellipsis: Dim[] | null = []
  const seen = new Map<string, number>()
  terms.forEach((term, k) => {
    const s = shapes[k]!
    const [before, after] = term.includes('...') ? term.split('...') : [term, undefined]
    const nEll = after == null ? 0 : s.length - before.length - after.length
    const dims = [...before].map((c, i) => [c, s[i]] as const)
    if (after != null) {
      ellipsis = broadcast([ellipsis, s.slice(before.length, before.length + nEll)])
      dims.push(...[...after].map((c, i) => [c, s[before.length + nEll + i]] as const))
    }
    for (const [c, d] of dims) {
      seen.set(c, (seen.get(c) ?? 0) + 1)
      const prev = letters.get(c)
      letters.set(c, prev == null ? d : broadcastDim(prev, d))
    }
  })
  const ell: Dim[] = ellipsis ?? []
  // Implicit output: the ellipsis, then letters seen once, in alphabetical order.
  const out = rhs ?? ('...' + [...seen].filter(([, n]) => n === 1).map(([c]) => c).sort().join(''))
  const [oBefore, oAfter] = out.includes('...') ? out.split('...') : [out, undefined]
  const dims = [...oBefore].map(c => letters.get(c) ?? unknownDim())
  if (oAfter != null) dims.push(...ell, ...[...oAfter].map(c => letters.get(c) ?? unknownDim()))
  return dims
}

interface Window { kernel: number[], strides: number[], dilations: number[], pads: number[], autoPad: string }

function window (node: NodeProto, spatial: number, kernel: number[] | undefined): Window | undefined {
  const k = attrInts(node, 'kernel_shape') ?? kernel
  if (k == null || k.length !== spatial) return undefined
  return {
    kernel: k,
    strides: attrInts(node, 'strides') ?? k.map(() => 1),
    dilations: attrInts(node, 'dilations') ?? k.map(() => 1),
    pads: attrInts(node, 'pads') ?? [...k, ...k].map(() => 0),
    autoPad: attrString(node, 'auto_pad', 'NOTSET')
  }
}

/** Output spatial dims of a sliding window (Conv, pooling). */
function slide (x: Dim[], w: Window, ceilMode: boolean): Dim[] {
  const n = w.kernel.length
  return x.slice(2).map((d, i) => {
    if (typeof d !== 'number') return unknownDim()
    const s = w.strides[i]
    const dk = (w.kernel[i] - 1) * w.dilations[i] + 1
    if (w.autoPad === 'SAME_UPPER' || w.autoPad === 'SAME_LOWER') return Math.ceil(d / s)
    if (w.autoPad === 'VALID') return Math.floor((d - dk) / s) + 1
    const span = d + w.pads[i] + w.pads[i + n] - dk
    if (!ceilMode) return Math.floor(span / s) + 1
    let out = Math.ceil(span / s) + 1
    // The last window must start inside the input or its left padding.
    if ((out - 1) * s >= d + w.pads[i]) out--
    return out
  })
}

function conv (node: NodeProto, x: ValueType | undefined, w: ValueType | undefined): ValueType {
  const et = x?.elemType ?? 0
  const xs = x?.shape; const ws = w?.shape
  if (xs == null || ws == null || xs.length < 3) return unknown(et)
  const win = window(node, xs.length - 2, ws.slice(2).every(d => typeof d === 'number') ? ws.slice(2) as number[] : undefined)
  if (win == null) return tensor(et, [xs[0], ws[0], ...xs.slice(2).map(() => unknownDim())])
  return tensor(et, [xs[0], ws[0], ...slide(xs, win, false)])
}

function convTranspose (node: NodeProto, x: ValueType | undefined, w: ValueType | undefined): ValueType {
  const et = x?.elemType ?? 0
  const xs = x?.shape; const ws = w?.shape
  if (xs == null || ws == null || xs.length < 3) return unknown(et)
  const group = attrInt(node, 'group', 1)
  const cout = mul(ws[1], group)
  const n = xs.length - 2
  const outputShape = attrInts(node, 'output_shape')
  if (outputShape != null) return tensor(et, [xs[0], cout, ...outputShape.slice(-n)])
  const win = window(node, n, ws.slice(2).every(d => typeof d === 'number') ? ws.slice(2) as number[] : undefined)
  if (win == null) return tensor(et, [xs[0], cout, ...xs.slice(2).map(() => unknownDim())])
  const outPad = attrInts(node, 'output_padding') ?? win.kernel.map(() => 0)
  const spatial = xs.slice(2).map((d, i) => {
    if (typeof d !== 'number') return unknownDim()
    if (win.autoPad === 'SAME_UPPER' || win.autoPad === 'SAME_LOWER') return d * win.strides[i]
    const dk = (win.kernel[i] - 1) * win.dilations[i] + 1
    const pads = win.autoPad === 'VALID' ? 0 : win.pads[i] + win.pads[i + n]
    return win.strides[i] * (d - 1) + outPad[i] + dk - pads
  })
  return tensor(et, [xs[0], cout, ...spatial])
}

function pool (node: NodeProto, x: ValueType | undefined): ValueType {
  const et = x?.elemType ?? 0
  const xs = x?.shape
  if (xs == null || xs.length < 3) return unknown(et)
  const win = window(node, xs.length - 2, undefined)
  if (win == null) return unknown(et)
  return tensor(et, [xs[0], xs[1], ...slide(xs, win, attrInt(node, 'ceil_mode', 0) === 1)])
}

function reduce (node: NodeProto, x: ValueType | undefined, axesInput: number[] | undefined, op: string): ValueType {
  const et = x?.elemType ?? 0
  if (x?.shape == null) return unknown(et)
  const s = x.shape
  const keep = attrInt(node, 'keepdims', 1) === 1
  let axes = attrInts(node, 'axes') ?? axesInput
  // opset 18 ReduceX: axes as an input we could not fold → shape unknown.
  if (axes == null && (node.input ?? [])[1] != null && (node.input ?? [])[1] !== '' && !op.startsWith('Arg')) return unknown(et)
  if (axes == null || axes.length === 0) {
    if (attrInt(node, 'noop_with_empty_axes', 0) === 1) return tensor(et, s)
    axes = s.map((_, i) => i)
  }
  const set = new Set(axes.map(a => normAxis(a, s.length)))
  const out = keep ? s.map((d, i) => set.has(i) ? 1 : d) : s.filter((_, i) => !set.has(i))
  // ReduceProd/Sum of a folded shape vector (flatten sizes in exports).
  let value: Dim[] | undefined
  const vals = numbers(x)
  if (vals != null && s.length === 1 && set.has(0)) {
    if (op === 'ReduceProd') value = [vals.reduce((a, b) => a * b, 1)]
    if (op === 'ReduceSum') value = [vals.reduce((a, b) => a + b, 0)]
  }
  return tensor(et, out, value)
}

function reshape (node: NodeProto, x: ValueType | undefined, shapeIn: ValueType | undefined): ValueType {
  const et = x?.elemType ?? 0
  const target = shapeIn?.value ?? attrInts(node, 'shape')
  if (target == null) {
    const r = shapeIn?.shape?.[0]
    return tensor(et, typeof r === 'number' ? Array.from({ length: r }, () => unknownDim()) : null)
  }
  const allowZero = attrInt(node, 'allowzero', 0) === 1
  const out: Dim[] = target.map((d, i) => d === 0 && !allowZero ? (x?.shape?.[i] ?? unknownDim()) : d)
  const minus = out.indexOf(-1)
  if (minus >= 0) {
    out[minus] = inferMinusOne(x?.shape ?? null, out.filter((_, i) => i !== minus))
  }
  return tensor(et, out, x?.value)
}

/** The -1 of a Reshape: input elements / the other output dims, cancelling equal names. */
function inferMinusOne (input: Dim[] | null, others: Dim[]): Dim {
  if (input == null) return unknownDim()
  const inSyms = input.filter(d => typeof d === 'string') as string[]
  const outSyms = others.filter(d => typeof d === 'string') as string[]
  for (const s of [...outSyms]) {
    const k = inSyms.indexOf(s)
    if (k < 0) return unknownDim()
    inSyms.splice(k, 1)
    outSyms.splice(outSyms.indexOf(s), 1)
  }
  const inNum = input.filter(d => typeof d === 'number').reduce<number>((a, b) => a * (b as number), 1)
  const outNum = others.filter(d => typeof d === 'number').reduce<number>((a, b) => a * (b as number), 1)
  if (inSyms.length === 0) return outNum === 0 ? 0 : inNum / outNum
  if (inSyms.length === 1 && inNum === outNum) return inSyms[0]
  return unknownDim()
}

function concat (node: NodeProto, ins: Array<ValueType | undefined>): ValueType {
  const et = ins.find(v => v != null)?.elemType ?? 0
  const known = ins.filter(v => v?.shape != null) as Array<ValueType & { shape: Dim[] }>
  if (known.length !== ins.length || known.length === 0) return unknown(et)
  const r = known[0].shape.length
  const axis = normAxis(attrInt(node, 'axis', 0), r)
  const out = known[0].shape.map((_, i) => {
    if (i === axis) return known.map(v => v.shape[i]).reduce(add, 0)
    return known.map(v => v.shape[i]).reduce(broadcastDim)
  })
  const value = r === 1 && known.every(v => v.value != null) ? known.flatMap(v => v.value!) : undefined
  return tensor(et, out, value)
}

function split (node: NodeProto, x: ValueType | undefined, sizesIn: ValueType | undefined, n: number): ValueType[] {
  const et = x?.elemType ?? 0
  if (x?.shape == null) return Array.from({ length: n }, () => unknown(et))
  const s = x.shape
  const axis = normAxis(attrInt(node, 'axis', 0), s.length)
  let sizes: Dim[] | undefined = attrInts(node, 'split') ?? numbers(sizesIn)
  const d = s[axis]
  if (sizes == null) {
    if (typeof d !== 'number') sizes = Array.from({ length: n }, () => unknownDim())
    else {
      // Equal parts; opset 18 num_outputs allows a smaller last part.
      const chunk = Math.ceil(d / n)
      sizes = Array.from({ length: n }, (_, i) => Math.max(0, Math.min(chunk, d - i * chunk)))
    }
  }
  return sizes.map(size => tensor(et, s.map((dd, i) => i === axis ? size : dd)))
}

function slice (node: NodeProto, ins: Array<ValueType | undefined>): ValueType {
  const x = ins[0]
  const et = x?.elemType ?? 0
  if (x?.shape == null) return unknown(et)
  const s = x.shape
  const starts = attrInts(node, 'starts') ?? numbers(ins[1])
  const ends = attrInts(node, 'ends') ?? numbers(ins[2])
  if (starts == null || ends == null) return tensor(et, s.map(() => unknownDim()))
  const axes = (attrInts(node, 'axes') ?? numbers(ins[3]) ?? starts.map((_, i) => i)).map(a => normAxis(a, s.length))
  const steps = numbers(ins[4]) ?? starts.map(() => 1)
  const out = [...s]
  const picks: Array<number[] | undefined> = s.map(() => undefined)
  axes.forEach((axis, k) => {
    const d = s[axis]
    const step = steps[k]
    if (typeof d !== 'number') {
      // A whole symbolic axis (0 → end) stays that axis.
      out[axis] = step === 1 && starts[k] === 0 && ends[k] >= INT64_MAX / 2 ? d : unknownDim()
      return
    }
    let st = starts[k] < 0 ? starts[k] + d : starts[k]
    let en = ends[k] < 0 ? ends[k] + d : ends[k]
    if (step > 0) {
      st = Math.min(Math.max(st, 0), d); en = Math.min(Math.max(en, 0), d)
    } else {
      st = Math.min(Math.max(st, 0), d - 1); en = Math.min(Math.max(en, -1), d - 1)
    }
    const len = Math.max(0, Math.ceil((en - st) / step))
    out[axis] = len
    picks[axis] = Array.from({ length: len }, (_, i) => st + i * step)
  })
  let value: Dim[] | undefined
  if (x.value != null && s.length === 1) value = (picks[0] ?? x.value.map((_, i) => i)).map(i => x.value![i])
  return tensor(et, out, value)
}

function gather (node: NodeProto, x: ValueType | undefined, idx: ValueType | undefined): ValueType {
  const et = x?.elemType ?? 0
  if (x?.shape == null || idx?.shape == null) return unknown(et)
  const s = x.shape
  const axis = normAxis(attrInt(node, 'axis', 0), s.length)
  const out = [...s.slice(0, axis), ...idx.shape, ...s.slice(axis + 1)]
  let value: Dim[] | undefined
  const ids = numbers(idx)
  if (x.value != null && s.length === 1 && ids != null && typeof s[0] === 'number') {
    const n = s[0]
    value = ids.map(i => x.value![i < 0 ? i + n : i])
  }
  return tensor(et, out, value)
}

function pad (node: NodeProto, x: ValueType | undefined, ins: Array<ValueType | undefined>): ValueType {
  const et = x?.elemType ?? 0
  if (x?.shape == null) return unknown(et)
  const s = x.shape
  const pads = attrInts(node, 'pads') ?? numbers(ins[1])
  if (pads == null) return tensor(et, s.map(() => unknownDim()))
  const axes = (numbers(ins[3]) ?? s.map((_, i) => i)).map(a => normAxis(a, s.length))
  const out = [...s]
  axes.forEach((axis, k) => { out[axis] = add(add(s[axis], pads[k]), pads[k + axes.length]) })
  return tensor(et, out)
}

function resize (node: NodeProto, ins: Array<ValueType | undefined>, ctx: Ctx): ValueType {
  const x = ins[0]
  const et = x?.elemType ?? 0
  if (x?.shape == null) return unknown(et)
  const s = x.shape
  // Upsample and opset-10 Resize: (X, scales); opset 11+: (X, roi, scales, sizes).
  const old = node.opType === 'Upsample' || ctx.opset < 11
  const scales = old ? (numbers(ins[1]) ?? attrFloats0(node)) : numbers(ins[2])
  const sizes = old ? undefined : numbers(ins[3])
  const axes = (attrInts(node, 'axes') ?? s.map((_, i) => i)).map(a => normAxis(a, s.length))
  const out = [...s]
  if (sizes != null && sizes.length > 0) {
    axes.forEach((axis, k) => { out[axis] = sizes[k] })
    return tensor(et, out)
  }
  if (scales != null && scales.length > 0) {
    axes.forEach((axis, k) => {
      const d = s[axis]
      out[axis] = scales[k] === 1 ? d : typeof d === 'number' ? Math.floor(d * scales[k]) : unknownDim()
    })
    return tensor(et, out)
  }
  return tensor(et, s.map(() => unknownDim()))
}

function attrFloats0 (node: NodeProto): number[] | undefined {
  const a = attr(node, 'scales')
  return a?.floats ?? undefined
}

// ---------------------------------------------------------------- control flow

function loop (node: NodeProto, ins: Array<ValueType | undefined>, get: Lookup, ctx: Ctx): ValueType[] {
  const body = attr(node, 'body')?.g
  const nOut = (node.output ?? []).length
  if (body == null) return []
  const carried = ins.slice(2)
  const bodyIn = body.input ?? []
  const preset = new Map<string, ValueType>()
  if (bodyIn[0]?.name) preset.set(bodyIn[0].name, tensor(ELEM.INT64, []))
  if (bodyIn[1]?.name) preset.set(bodyIn[1].name, tensor(ELEM.BOOL, []))
  carried.forEach((v, i) => { const name = bodyIn[i + 2]?.name; if (name && v != null) preset.set(name, { ...v, value: undefined }) })
  const local = inferGraph(body, get, ctx, preset)
  const bodyOut = (body.output ?? []).map(o => local.get(o.name ?? '') ?? get(o.name ?? ''))
  const trips = tripCount(node, ins, body, local)
  const out: ValueType[] = []
  carried.forEach((v, i) => {
    const o = bodyOut[i + 1]
    if (o == null) { out.push(unknown(v?.elemType ?? 0)); return }
    // The final value keeps the initial shape only where the body does.
    const stable = v?.shape != null && o.shape != null ? merge(v.shape, o.shape) : null
    out.push({ kind: o.kind, elemType: o.elemType || (v?.elemType ?? 0), shape: stable })
  })
  for (let k = carried.length + 1; k < bodyOut.length && out.length < nOut; k++) {
    const o = bodyOut[k]
    out.push(tensor(o?.elemType ?? 0, o?.shape == null ? null : [trips ?? unknownDim(), ...o.shape]))
  }
  return out
}

/**
 * The trip count of a Loop when it is fixed: M is a known constant and the
 * loop cannot stop early (no cond input, or a true one the body passes on).
 */
function tripCount (node: NodeProto, ins: Array<ValueType | undefined>, body: GraphProto, local: Map<string, ValueType>): number | undefined {
  const m = numbers(ins[0])?.[0]
  if (m == null) return undefined
  const condIn = (node.input ?? [])[1]
  if (condIn != null && condIn !== '' && numbers(ins[1])?.[0] !== 1) return undefined
  const condOut = body.output?.[0]?.name ?? ''
  const bodyCondIn = body.input?.[1]?.name ?? ''
  if (numbers(local.get(condOut))?.[0] === 1) return m
  let name = condOut
  // Follow Identity nodes back to the body's cond input.
  for (let guard = 0; guard < 16; guard++) {
    if (name === bodyCondIn) return m
    const producer = (body.node ?? []).find(n => (n.output ?? []).includes(name))
    if (producer?.opType !== 'Identity') return undefined
    name = producer.input?.[0] ?? ''
  }
  return undefined
}

function ifOp (node: NodeProto, get: Lookup, ctx: Ctx): ValueType[] {
  const thenG = attr(node, 'then_branch')?.g
  const elseG = attr(node, 'else_branch')?.g
  if (thenG == null || elseG == null) return []
  const a = inferGraph(thenG, get, ctx)
  const b = inferGraph(elseG, get, ctx)
  return (thenG.output ?? []).map((o, i) => {
    const x = a.get(o.name ?? '') ?? get(o.name ?? '')
    const y = b.get(elseG.output?.[i]?.name ?? '') ?? get(elseG.output?.[i]?.name ?? '')
    return { kind: x?.kind ?? 'tensor', elemType: x?.elemType || y?.elemType || 0, shape: merge(x?.shape ?? null, y?.shape ?? null) }
  })
}

function scan (node: NodeProto, ins: Array<ValueType | undefined>, get: Lookup, ctx: Ctx): ValueType[] {
  const body = attr(node, 'body')?.g
  const nScanIn = attrInt(node, 'num_scan_inputs', 0)
  if (body == null) return []
  const nState = ins.length - nScanIn
  const inAxes = attrInts(node, 'scan_input_axes') ?? Array.from({ length: nScanIn }, () => 0)
  const outAxes = attrInts(node, 'scan_output_axes')
  const preset = new Map<string, ValueType>()
  let seqLen: Dim = unknownDim()
  ;(body.input ?? []).forEach((bi, i) => {
    const v = ins[i]
    if (!bi.name || v == null) return
    if (i < nState) { preset.set(bi.name, { ...v, value: undefined }); return }
    const axis = normAxis(inAxes[i - nState] ?? 0, v.shape?.length ?? 1)
    if (v.shape != null) seqLen = v.shape[axis]
    preset.set(bi.name, tensor(v.elemType, v.shape == null ? null : v.shape.filter((_, k) => k !== axis)))
  })
  const local = inferGraph(body, get, ctx, preset)
  return (body.output ?? []).map((o, i) => {
    const v = local.get(o.name ?? '') ?? get(o.name ?? '')
    if (i < nState) return { kind: v?.kind ?? 'tensor', elemType: v?.elemType ?? 0, shape: merge(ins[i]?.shape ?? null, v?.shape ?? null) }
    if (v?.shape == null) return unknown(v?.elemType ?? 0)
    const shape = [...v.shape]
    shape.splice(normAxis(outAxes?.[i - nState] ?? 0, shape.length + 1), 0, seqLen)
    return tensor(v.elemType, shape)
  })
}
