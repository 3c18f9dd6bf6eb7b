import { LumiereError } from '../errors.ts'

/** Element types we store, send and run. Names follow safetensors. */
export type DType = 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'U8' | 'BOOL'

export const DTYPES: readonly DType[] = ['F32', 'F16', 'BF16', 'I64', 'I32', 'U8', 'BOOL']

const BYTES: Record<DType, number> = { F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, U8: 1, BOOL: 1 }

/**
 * A tensor on the host: dtype, shape and its raw little-endian bytes.
 * `data` may be a view into a larger buffer; nothing here copies it.
 */
export interface Tensor {
  dtype: DType
  shape: number[]
  data: Uint8Array
}

export function isDType (value: unknown): value is DType {
  return typeof value === 'string' && (DTYPES as readonly string[]).includes(value)
}

export function dtypeBytes (dtype: DType): number {
  return BYTES[dtype]
}

export function elementCount (shape: readonly number[]): number {
  let n = 1
  for (const d of shape) n *= d
  return n
}

export function byteLength (dtype: DType, shape: readonly number[]): number {
  return elementCount(shape) * BYTES[dtype]
}

/** Checks that dims are non-negative safe integers and the data length fits. */
export function checkTensor (t: Tensor, what = 'tensor'): Tensor {
  for (const d of t.shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw new LumiereError('BAD_ARGUMENT', `${what}: bad dimension ${d} in shape [${t.shape.join(', ')}]`)
  }
  const want = byteLength(t.dtype, t.shape)
  if (t.data.byteLength !== want) {
    throw new LumiereError('BAD_ARGUMENT', `${what}: ${t.dtype}[${t.shape.join(', ')}] needs ${want} bytes, got ${t.data.byteLength}`)
  }
  return t
}

/** A float32 tensor from numbers or a Float32Array (copies). */
export function f32 (shape: number[], values: ArrayLike<number>): Tensor {
  const arr = Float32Array.from(values)
  return checkTensor({ dtype: 'F32', shape, data: new Uint8Array(arr.buffer) })
}

/**
 * A typed-array view of the tensor's elements, copying only when the bytes
 * are not aligned for the element type. F16/BF16 come back as raw Uint16.
 */
export function view (t: Tensor): Float32Array | Int32Array | BigInt64Array | Uint16Array | Uint8Array {
  const { buffer, byteOffset, byteLength: len } = t.data
  const size = BYTES[t.dtype]
  const aligned = byteOffset % size === 0
  const src = aligned ? t.data : t.data.slice()
  const buf = aligned ? buffer : src.buffer
  const off = aligned ? byteOffset : 0
  switch (t.dtype) {
    case 'F32': return new Float32Array(buf, off, len / 4)
    case 'I32': return new Int32Array(buf, off, len / 4)
    case 'I64': return new BigInt64Array(buf, off, len / 8)
    case 'F16':
    case 'BF16': return new Uint16Array(buf, off, len / 2)
    case 'U8':
    case 'BOOL': return src
  }
}
