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
   */
  duplicable: boolean
}

export interface Dag {
  nodes: DagNode[]
  values: Map<string, DagValue>
  inputs: string[]
  outputs: string[]
  initializers: Map<string, { bytes: number, dtype: DType | 'OTHER', shape: number[] }>
}
