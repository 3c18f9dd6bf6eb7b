import type { Tensor } from '../src/tensor/tensor.ts'

/**
 * Style to blend into a graph before it loads (DESIGN §1): the covered
 * spatial weights become α·W_style + (1 − α)·W_orig.
 */
export interface WorkerStyle {
  tensors: Record<string, Tensor>
  alpha: number
}

/** Messages between a peer's event loop and its ORT worker thread. */
export type WorkerRequest =
  | { id: number, op: 'load', key: string, model: Uint8Array, providers: string[], threads: number, style?: WorkerStyle }
  | { id: number, op: 'run', key: string, feeds: Record<string, Tensor>, outputs: string[] }
  | { id: number, op: 'release', key: string }

export type WorkerReply =
  | { id: number, ok: true, outputs?: Record<string, Tensor>, ms?: number }
  | { id: number, ok: false, code: string, message: string }

/** A request before the executor numbers it. */
export type WorkerCall = WorkerRequest extends infer R ? R extends unknown ? Omit<R, 'id'> : never : never
