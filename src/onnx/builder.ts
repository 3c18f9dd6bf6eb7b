/**
 * A small DSL to build ONNX graphs in code (test fixtures, model builders).
 *
 *   const g = new GraphBuilder('net')
 *   const x = g.input('x', 'F32', [1, 4, 'H', 'W'])
 *   const w = g.init('w', f32([8, 4, 3, 3], weights))
 *   const [y] = g.node('Conv', [x, w], { pads: [1, 1, 1, 1] })
 *   g.output(y)
 *   const model = g.model({ opset: 17 })
 *
 * Attribute values: an integer number is an INT, a non-integer an FLOAT
 * (use `float(1)` for an integral float), arrays likewise (`floats([...])`),
 * strings, a Tensor, or a GraphProto (Loop/If/Scan bodies built with
 * another GraphBuilder's `graph()`).
 */
import { LumiereError } from '../errors.ts'
import { f32 } from '../tensor/tensor.ts'
import type { DType, Tensor } from '../tensor/tensor.ts'
import { ATTR, dtypeToElem, tensorType } from './proto.ts'
import type { AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, TypeProto, ValueInfoProto } from './proto.ts'
import { tensorToProto } from './tensor-proto.ts'

/** Explicitly typed attribute values, for cases the plain forms get wrong. */
export interface FloatAttr { kind: 'float', value: number }
export interface FloatsAttr { kind: 'floats', value: number[] }
export interface IntsAttr { kind: 'ints', value: number[] }

export type AttrValue = number | number[] | string | string[] | Tensor | GraphProto | FloatAttr | FloatsAttr | IntsAttr

export function float (value: number): FloatAttr { return { kind: 'float', value } }
export function floats (value: number[]): FloatsAttr { return { kind: 'floats', value } }
/** An INTS attribute, needed for an empty list (plain [] is ambiguous). */
export function ints (value: number[]): IntsAttr { return { kind: 'ints', value } }

export type Dim = number | string

export interface ModelOptions {
  /** Default-domain opset (default 17). */
  opset?: number
  /** Other domains' opsets, e.g. { 'com.microsoft': 1 }. */
  domains?: Record<string, number>
  /** IR version (default 8, what onnx-proto knows). */
  irVersion?: number
  producer?: string
}

export class GraphBuilder {
  readonly name: string
  private readonly nodes: NodeProto[] = []
  private readonly inputs: ValueInfoProto[] = []
  private readonly outputs: ValueInfoProto[] = []
  private readonly inits: TensorProto[] = []
  private readonly names = new Set<string>()
  private counter = 0

  constructor (name = 'graph') {
    this.name = name
  }

  /** A value name with the given prefix that nothing in this builder uses yet. */
  fresh (prefix: string): string {
    let name: string
    do name = `${prefix}_${this.counter++}`; while (this.names.has(name))
    return name
  }

  private claim (name: string): string {
    if (this.names.has(name)) throw new LumiereError('BAD_ARGUMENT', `graph ${this.name}: value name '${name}' is used twice`)
    this.names.add(name)
    return name
  }

  /** A graph input; dims may be numbers or symbolic names; null shape = unknown rank. */
  input (name: string, dtype: DType, shape: Dim[] | null): string {
    this.inputs.push({ name: this.claim(name), type: tensorType(dtypeToElem(dtype), shape) })
    return name
  }

  /** A graph input of any ONNX type (sequences for Loop bodies, ...). */
  inputOfType (name: string, type: TypeProto): string {
    this.inputs.push({ name: this.claim(name), type })
    return name
  }

  /** An initializer from a Tensor, or a Float32Array with its shape. */
  init (name: string, value: Tensor | Float32Array, shape?: number[]): string {
    const t = value instanceof Float32Array ? f32(shape ?? [value.length], value) : value
    this.inits.push(tensorToProto(this.claim(name), t))
    return name
  }

  /** An int64 initializer (shapes, axes, indices). Scalar when shape is []. */
  i64 (name: string, values: number[], shape: number[] = [values.length]): string {
    const data = new Uint8Array(BigInt64Array.from(values.map(v => BigInt(v))).buffer)
    return this.init(name, { dtype: 'I64', shape, data })
  }

  /**
   * Adds a node. `outputs` is a count of fresh output names or the names
   * themselves. Returns the output names.
   */
  node (opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, outputs: number | string[] = 1, options: { name?: string, domain?: string } = {}): string[] {
    const outs = typeof outputs === 'number'
      ? Array.from({ length: outputs }, () => this.claim(this.fresh(opType.toLowerCase())))
      : outputs.map(o => o === '' ? o : this.claim(o))
    const node: NodeProto = {
      name: options.name ?? `${opType}_${this.nodes.length}`,
      opType,
      input: inputs,
      output: outs,
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v))
    }
    if (options.domain != null) node.domain = options.domain
    this.nodes.push(node)
    return outs
  }

  /** One-output shorthand for `node`. */
  op (opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, name?: string): string {
    return this.node(opType, inputs, attrs, name == null ? 1 : [name])[0]
  }

  /** A Constant node holding the tensor. */
  constant (value: Tensor, name?: string): string {
    return this.node('Constant', [], { value }, name == null ? 1 : [name])[0]
  }

  /** A Constant node of int64 values (scalar when shape is []). */
  constI64 (values: number[], shape: number[] = [values.length]): string {
    return this.constant({ dtype: 'I64', shape, data: new Uint8Array(BigInt64Array.from(values.map(v => BigInt(v))).buffer) })
  }

  /** Marks a value as a graph output; dtype/shape optional (ORT infers them). */
  output (name: string, dtype?: DType, shape?: Dim[] | null): string {
    this.outputs.push({ name, type: dtype == null ? undefined : tensorType(dtypeToElem(dtype), shape ?? null) })
    return name
  }

  outputOfType (name: string, type: TypeProto): string {
    this.outputs.push({ name, type })
    return name
  }

  graph (): GraphProto {
    return { name: this.name, node: this.nodes, input: this.inputs, output: this.outputs, initializer: this.inits }
  }

  model (options: ModelOptions = {}): ModelProto {
    return {
      irVersion: options.irVersion ?? 8,
      producerName: options.producer ?? 'lumiere-mesh',
      opsetImport: [
        { domain: '', version: options.opset ?? 17 },
        ...Object.entries(options.domains ?? {}).map(([domain, version]) => ({ domain, version }))
      ],
      graph: this.graph()
    }
  }
}

function isTensor (v: object): v is Tensor {
  return 'dtype' in v && 'data' in v && 'shape' in v
}

function attribute (name: string, v: AttrValue): AttributeProto {
  if (typeof v === 'number') return Number.isInteger(v) ? { name, type: ATTR.INT, i: v } : { name, type: ATTR.FLOAT, f: v }
  if (typeof v === 'string') return { name, type: ATTR.STRING, s: Buffer.from(v, 'utf8') }
  if (Array.isArray(v)) {
    if (v.every(x => typeof x === 'string')) return { name, type: ATTR.STRINGS, strings: (v as string[]).map(s => Buffer.from(s, 'utf8')) }
    const nums = v as number[]
    return nums.every(Number.isInteger) ? { name, type: ATTR.INTS, ints: nums } : { name, type: ATTR.FLOATS, floats: nums }
  }
  if ('kind' in v) {
    switch (v.kind) {
      case 'float': return { name, type: ATTR.FLOAT, f: v.value }
      case 'floats': return { name, type: ATTR.FLOATS, floats: v.value }
      case 'ints': return { name, type: ATTR.INTS, ints: v.value }
    }
  }
  if (isTensor(v)) return { name, type: ATTR.TENSOR, t: tensorToProto('', v) }
  return { name, type: ATTR.GRAPH, g: v }
}
