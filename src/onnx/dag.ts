import type { DType } from '../tensor/tensor.ts'

/**
 * The planner's view of an ONNX graph: nodes in topological order with
 * per-node cost, and every value with its dtype, static shape and size.
 * Built from a ModelProto by `buildDag` (src/onnx/graph.ts); the partitioner
 * (coordinator/partition.ts) consumes only this interface.
 */
export interface DagValue {
  name: string
  dtype: DType | 'OTHER'
  /** Concrete dims; null when unknown even after a probe run. */
  shape: number[] | null
  /** Bytes of one instance of this value (0 when the shape is unknown). */
  bytes: number
  /** Index of the producing node, or -1 for graph inputs and initializers. */
  producer: number
  /** Indices of consuming nodes (including nodes whose subgraphs read it). */
  consumers: number[]
  kind: 'input' | 'initializer' | 'activation'
  /** True for a graph output. */
  isOutput: boolean
  /** ONNX element type (TensorProto.DataType), exact where `dtype` says 'OTHER'; 0 unknown. */
  elemType?: number
  /**
   * 'sequence' for ONNX sequences (lists built in Loops): shape null, bytes 0,
   * dims = element dims. A sequence cannot cross stages (onnxruntime's JS API
   * can neither feed nor fetch one): keep its producer and consumers in one
   * stage, or extraction fails with PLAN_IMPOSSIBLE.
   */
  valueKind?: 'tensor' | 'sequence' | 'other'
  /**
   * Static dims as inferred without binding symbolic input dims: numbers,
   * symbolic names ('batch'), or '?N' for unknown. Stage models declare
   * these, so a stage accepts what the whole graph accepts. null: rank unknown.
   */
  dims?: Array<number | string> | null
}

export interface DagNode {
  index: number
  name: string
  opType: string
  /** Main-graph value names read: explicit inputs plus outer-scope reads of subgraphs. */
  inputs: string[]
  outputs: string[]
  /** Estimated floating-point operations for one run. */
  flops: number
  /** Bytes of initializers this node reads (each initializer counted on every reader). */
  paramBytes: number
  /** Bytes of this node's outputs. */
  activationBytes: number
  /**
   * True for nodes cheap enough to duplicate into any stage that needs their
   * outputs instead of sending those over the wire: Constant, and pure
   * shape-computing chains (Shape, Gather on shapes, Unsqueeze, Concat of
   * shapes, ...) whose inputs are all constants, initializers or shapes.
   * Every stage reading their outputs recomputes them (src/onnx/extract.ts);
   * Shape/Size(X) becomes a constant where X is absent and its shape known,
   * else that stage receives X.
   */
  duplicable: boolean
  /** Index of the node in the model's graph.node (differs from `index` only if the file was not sorted). */
  protoIndex?: number
}

export interface Dag {
  nodes: DagNode[]
  values: Map<string, DagValue>
  inputs: string[]
  outputs: string[]
  initializers: Map<string, { bytes: number, dtype: DType | 'OTHER', shape: number[] }>
}
