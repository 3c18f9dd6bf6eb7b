/**
 * Shapes measured by running the model: for values static inference cannot
 * pin down (Loop outputs, data-dependent ops), a copy of the model lists
 * them as extra graph outputs and runs once in ORT.
 *
 * Inputs: the caller's tensors when given, else zeros of each input's
 * declared shape; symbolic input dims must then be bound with `dims`.
 * A measured shape holds for those inputs only: data-dependent shapes can
 * differ for other data. Runs on the calling thread (it blocks while ORT
 * runs); fine for planning, not for a peer serving requests.
 */
import * as ort from 'onnxruntime-node'
import { LumiereError } from '../errors.ts'
import { byteLength } from '../tensor/tensor.ts'
import type { Tensor } from '../tensor/tensor.ts'
import { cloneModel, encodeModel, inlineExternalData } from './model-io.ts'
import { toOrt } from './ort-tensor.ts'
import { elemToDType, num, tensorType, typeInfo } from './proto.ts'
import type { ModelProto } from './proto.ts'
import { sessionOptions } from './session-options.ts'
import { inferShapes } from './shapes.ts'
import type { ShapeInfo } from './shapes.ts'

export interface ProbeOptions {
  /** Input tensors to run with (else zeros). */
  inputs?: Record<string, Tensor>
  /** Values for symbolic input dims. */
  dims?: Record<string, number>
  /** Concrete input shapes (as for inferShapes). */
  inputShapes?: Record<string, readonly number[]>
}

export interface Probed {
  elemType: number
  shape: number[]
}

/** Runs the model once and returns the measured type and shape of each named main-graph value. */
export async function probeShapes (model: ModelProto, names: string[], options: ProbeOptions = {}): Promise<Map<string, Probed>> {
  const out = new Map<string, Probed>()
  if (names.length === 0) return out
  const probe = cloneModel(model)
  inlineExternalData(probe)
  const graph = probe.graph!
  const outputs = new Set((graph.output ?? []).map(o => o.name))
  const info = inferShapes(model, { dims: options.dims, inputShapes: options.inputShapes })
  for (const name of names) {
    if (outputs.has(name)) continue
    const vt = info.values.get(name)
    // ORT needs the element type of a graph output; the shape it finds itself.
    graph.output = [...(graph.output ?? []), { name, type: vt != null && vt.elemType !== 0 ? tensorType(vt.elemType, null) : undefined }]
  }
  let session: ort.InferenceSession
  try {
    session = await ort.InferenceSession.create(encodeModel(probe), sessionOptions())
  } catch (err) {
    throw new LumiereError('BAD_ONNX', `onnxruntime cannot load the model to measure its shapes (${(err as Error).message.split('\n')[0]}): check the model runs in onnxruntime`, { cause: err })
  }
  try {
    const feeds: Record<string, ort.Tensor> = {}
    for (const [name, t] of Object.entries(probeInputs(model, info, options))) feeds[name] = toOrt(t)
    const result = await session.run(feeds, names)
    for (const name of names) {
      const t = result[name]
      if (t == null) continue
      out.set(name, { elemType: elemOfOrt(t.type), shape: [...t.dims] })
    }
  } finally {
    await session.release()
  }
  return out
}

/** The caller's inputs, or zeros of the declared input shapes. */
export function probeInputs (model: ModelProto, info: ShapeInfo, options: ProbeOptions): Record<string, Tensor> {
  const graph = model.graph ?? {}
  const inits = new Set((graph.initializer ?? []).map(t => t.name))
  const feeds: Record<string, Tensor> = {}
  for (const input of graph.input ?? []) {
    const name = input.name ?? ''
    if (inits.has(name)) continue
    const given = options.inputs?.[name]
    if (given != null) { feeds[name] = given; continue }
    const declared = typeInfo(input.type)
    const shape = info.values.get(name)?.shape ?? declared.dims
    const dtype = elemToDType(declared.elemType)
    if (shape == null || !shape.every(d => typeof d === 'number') || dtype === 'OTHER') {
      throw new LumiereError('BAD_ARGUMENT', `input '${name}' has shape [${(shape ?? ['?']).join(', ')}] of type ${dtype}: give concrete values for its symbolic dims (dims) or an input tensor`)
    }
    const dims = shape.map(num)
    feeds[name] = { dtype, shape: dims, data: new Uint8Array(byteLength(dtype, dims)) }
  }
  return feeds
}

function elemOfOrt (type: string): number {
  const map: Record<string, number> = { float32: 1, uint8: 2, int8: 3, uint16: 4, int16: 5, int32: 6, int64: 7, string: 8, bool: 9, float16: 10, float64: 11, uint32: 12, uint64: 13 }
  return map[type] ?? 0
}
