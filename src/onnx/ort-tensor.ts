import * as ort from 'onnxruntime-node'
import { LumiereError } from '../errors.ts'
import { view } from '../tensor/tensor.ts'
import type { DType, Tensor } from '../tensor/tensor.ts'

// onnxruntime-node has no bfloat16 tensors: BF16 lives on disk and the wire only.
const TO_ORT: Partial<Record<DType, ort.Tensor.Type>> = {
  F32: 'float32', F16: 'float16', I64: 'int64', I32: 'int32', U8: 'uint8', BOOL: 'bool'
}

const FROM_ORT: Partial<Record<string, DType>> = Object.fromEntries(Object.entries(TO_ORT).map(([k, v]) => [v, k as DType]))

/** Wraps our tensor's bytes as an ORT tensor without copying (when aligned). */
export function toOrt (t: Tensor): ort.Tensor {
  return new ort.Tensor(ortType(t.dtype) as ort.Tensor.Type, view(t) as any, t.shape)
}

/** Our tensor over the ORT output's bytes (no copy). */
export function fromOrt (t: ort.Tensor): Tensor {
  const dtype = FROM_ORT[t.type]
  if (dtype == null) throw new LumiereError('UNSUPPORTED_OP', `output element type ${t.type} is not supported on the wire; use one of ${Object.values(TO_ORT).join(', ')}`)
  const data = t.data as ArrayBufferView
  return { dtype, shape: t.dims.map(Number), data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) }
}

/** ORT's element type name for a dtype; used to check inputs against a graph. */
export function ortType (dtype: DType): string {
  const type = TO_ORT[dtype]
  if (type == null) throw new LumiereError('INPUT_MISMATCH', `${dtype} tensors cannot be fed to onnxruntime; convert them to F32 or F16 first`)
  return type
}
