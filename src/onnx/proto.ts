/**
 * Thin typed access to the ONNX protobuf messages (onnx-proto, onnx.proto of
 * ONNX 1.10, IR version 8): the message types we pass around, int64 (Long)
 * conversion, attribute readers, element types and subgraph walking.
 *
 * We work on the plain `I*Proto` interfaces so that decoded messages and
 * objects written by hand (the builder) are interchangeable; encode accepts
 * both.
 */
import onnxProto from 'onnx-proto'
import type { onnx as OnnxTypes } from 'onnx-proto'
import type { DType } from '../tensor/tensor.ts'

export const onnx = onnxProto.onnx

export type ModelProto = OnnxTypes.IModelProto
export type GraphProto = OnnxTypes.IGraphProto
export type NodeProto = OnnxTypes.INodeProto
export type TensorProto = OnnxTypes.ITensorProto
export type AttributeProto = OnnxTypes.IAttributeProto
export type ValueInfoProto = OnnxTypes.IValueInfoProto
export type TypeProto = OnnxTypes.ITypeProto

/** ONNX TensorProto.DataType codes we name in code. */
export const ELEM = {
  UNDEFINED: 0,
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  STRING: 8,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  UINT32: 12,
  UINT64: 13,
  BFLOAT16: 16
} as const

/** AttributeProto.AttributeType codes. */
export const ATTR = {
  FLOAT: 1,
  INT: 2,
  STRING: 3,
  TENSOR: 4,
  GRAPH: 5,
  FLOATS: 6,
  INTS: 7,
  STRINGS: 8,
  TENSORS: 9,
  GRAPHS: 10
} as const

/** Bytes per element by ONNX element type (0: variable or unknown). */
const ELEM_BYTES: Record<number, number> = { 1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2 }

const TO_DTYPE: Record<number, DType> = { 1: 'F32', 2: 'U8', 6: 'I32', 7: 'I64', 9: 'BOOL', 10: 'F16', 16: 'BF16' }
const FROM_DTYPE: Record<DType, number> = { F32: 1, U8: 2, I32: 6, I64: 7, BOOL: 9, F16: 10, BF16: 16 }

export function elemBytes (elemType: number): number {
  return ELEM_BYTES[elemType] ?? 0
}

export function elemToDType (elemType: number): DType | 'OTHER' {
  return TO_DTYPE[elemType] ?? 'OTHER'
}

export function dtypeToElem (dtype: DType): number {
  return FROM_DTYPE[dtype]
}

export function isIntegerElem (elemType: number): boolean {
  return [2, 3, 4, 5, 6, 7, 12, 13].includes(elemType)
}

export function isFloatElem (elemType: number): boolean {
  return [1, 10, 11, 16].includes(elemType)
}

/**
 * protobufjs decodes int64 fields as Long objects (the `long` package is
 * installed); hand-built messages use numbers. Both become numbers here:
 * every int64 we meet (dims, attributes, offsets) is far below 2^53.
 */
export function num (v: unknown): number {
  if (typeof v === 'number') return v
  if (typeof v === 'bigint') return Number(v)
  if (v != null && typeof v === 'object' && 'toNumber' in v && typeof v.toNumber === 'function') return v.toNumber() as number
  return 0
}

export function attr (node: NodeProto, name: string): AttributeProto | undefined {
  return node.attribute?.find(a => a.name === name)
}

export function attrInt (node: NodeProto, name: string, dflt: number): number
export function attrInt (node: NodeProto, name: string): number | undefined
export function attrInt (node: NodeProto, name: string, dflt?: number): number | undefined {
  const a = attr(node, name)
  return a?.i != null && (a.type === ATTR.INT || a.type == null) ? num(a.i) : dflt
}

export function attrFloat (node: NodeProto, name: string, dflt: number): number {
  const a = attr(node, name)
  return a != null && a.type === ATTR.FLOAT ? (a.f ?? dflt) : dflt
}

export function attrInts (node: NodeProto, name: string): number[] | undefined {
  const a = attr(node, name)
  return a?.type === ATTR.INTS ? (a.ints ?? []).map(num) : undefined
}

export function attrFloats (node: NodeProto, name: string): number[] | undefined {
  const a = attr(node, name)
  return a?.type === ATTR.FLOATS ? (a.floats ?? []) : undefined
}

export function attrString (node: NodeProto, name: string, dflt: string): string {
  const a = attr(node, name)
  return a?.s != null && a.type === ATTR.STRING ? Buffer.from(a.s).toString('utf8') : dflt
}

export function attrTensor (node: NodeProto, name: string): TensorProto | undefined {
  const a = attr(node, name)
  return a?.type === ATTR.TENSOR ? (a.t ?? undefined) : undefined
}

/** Every subgraph held by a node's attributes (Loop/Scan body, If branches). */
export function subgraphs (node: NodeProto): GraphProto[] {
  const out: GraphProto[] = []
  for (const a of node.attribute ?? []) {
    if (a.g != null) out.push(a.g)
    for (const g of a.graphs ?? []) out.push(g)
  }
  return out
}

/** Node input names with omitted optional inputs ('' in ONNX) dropped. */
export function presentInputs (node: NodeProto): string[] {
  return (node.input ?? []).filter(n => n !== '')
}

/** Names a graph defines itself: its inputs, initializers and node outputs. */
export function definedNames (graph: GraphProto): Set<string> {
  const names = new Set<string>()
  for (const v of graph.input ?? []) if (v.name) names.add(v.name)
  for (const t of graph.initializer ?? []) if (t.name) names.add(t.name)
  for (const t of graph.sparseInitializer ?? []) if (t.values?.name) names.add(t.values.name)
  for (const n of graph.node ?? []) for (const o of n.output ?? []) if (o !== '') names.add(o)
  return names
}

/**
 * Names a graph reads from enclosing scopes: read by its nodes (or by their
 * subgraphs, recursively) but defined nowhere inside it. In order of first
 * read, without repeats.
 */
export function outerScopeReads (graph: GraphProto): string[] {
  const defined = definedNames(graph)
  const out = new Set<string>()
  for (const node of graph.node ?? []) {
    for (const name of nodeReads(node)) if (!defined.has(name)) out.add(name)
  }
  return [...out]
}

/**
 * Every name a node reads from the graph it sits in: its explicit inputs,
 * then the outer-scope reads of its subgraphs. In order, without repeats.
 */
export function nodeReads (node: NodeProto): string[] {
  const out = new Set(presentInputs(node))
  for (const g of subgraphs(node)) for (const name of outerScopeReads(g)) out.add(name)
  return [...out]
}

/** Dims of a TensorProto as numbers. */
export function tensorDims (t: TensorProto): number[] {
  return (t.dims ?? []).map(num)
}

/** Element type and dims of a value's TypeProto; shape null when absent. */
export function typeInfo (type: TypeProto | null | undefined): { kind: 'tensor' | 'sequence' | 'other', elemType: number, dims: Array<number | string> | null } {
  if (type == null) return { kind: 'other', elemType: 0, dims: null }
  const tensor = type.tensorType
  if (tensor != null) return { kind: 'tensor', elemType: tensor.elemType ?? 0, dims: shapeDims(tensor.shape) }
  const seqElem = type.sequenceType?.elemType?.tensorType
  if (seqElem != null) return { kind: 'sequence', elemType: seqElem.elemType ?? 0, dims: shapeDims(seqElem.shape) }
  return { kind: 'other', elemType: 0, dims: null }
}

let unknownDims = 0

/** A fresh name for a dimension nobody knows (never equal to another one). */
export function unknownDim (): string {
  return `?${++unknownDims}`
}

function shapeDims (shape: OnnxTypes.ITensorShapeProto | null | undefined): Array<number | string> | null {
  if (shape == null) return null
  // Decoded messages carry prototype defaults (dimValue 0, dimParam ''), so
  // only fields set on the object itself count.
  return (shape.dim ?? []).map(d => {
    if (Object.hasOwn(d, 'dimValue') && d.dimValue != null) return num(d.dimValue)
    if (Object.hasOwn(d, 'dimParam') && d.dimParam != null && d.dimParam !== '') return d.dimParam
    return unknownDim()
  })
}

/** A TypeProto for a tensor; dims starting with '?' are written as unknown. */
export function tensorType (elemType: number, dims: ReadonlyArray<number | string> | null): TypeProto {
  return { tensorType: { elemType, ...(dims == null ? {} : { shape: shapeProto(dims) }) } }
}

export function sequenceType (elemType: number, dims: ReadonlyArray<number | string> | null): TypeProto {
  return { sequenceType: { elemType: tensorType(elemType, dims) } }
}

function shapeProto (dims: ReadonlyArray<number | string>): OnnxTypes.ITensorShapeProto {
  return {
    dim: dims.map(d => typeof d === 'number' ? { dimValue: d } : d.startsWith('?') ? {} : { dimParam: d })
  }
}
