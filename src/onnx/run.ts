/**
 * Runs a model once in-process with the shared session options (tests,
 * reference runs, tools). Blocks the calling thread while ORT computes:
 * peers use their worker threads instead.
 */
import * as ort from 'onnxruntime-node'
import type { Tensor } from '../tensor/tensor.ts'
import { encodeModel } from './model-io.ts'
import { fromOrt, toOrt } from './ort-tensor.ts'
import type { ModelProto } from './proto.ts'
import { sessionOptions } from './session-options.ts'

/** Runs the model on the feeds and returns the outputs asked for (default: all graph outputs). */
export async function runModel (model: ModelProto | Uint8Array, feeds: Record<string, Tensor>, outputs?: string[], options?: ort.InferenceSession.SessionOptions): Promise<Record<string, Tensor>> {
  const bytes = model instanceof Uint8Array ? model : encodeModel(model)
  const session = await ort.InferenceSession.create(bytes, options ?? sessionOptions())
  try {
    const ortFeeds: Record<string, ort.Tensor> = {}
    for (const [name, t] of Object.entries(feeds)) ortFeeds[name] = toOrt(t)
    const result = await session.run(ortFeeds, outputs ?? session.outputNames)
    const out: Record<string, Tensor> = {}
    for (const [name, t] of Object.entries(result)) out[name] = fromOrt(t)
    return out
  } finally {
    await session.release()
  }
}
