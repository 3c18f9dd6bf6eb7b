/**
 * TensorProto <-> bytes: the raw little-endian contents of an ONNX tensor,
 * wherever the proto keeps them (raw_data, typed fields, or an external
 * file), and the reverse for our Tensor type.
 */
import { closeSync, openSync, readSync, fstatSync } from 'node:fs'
import { isAbsolute } from 'node:path'
import { LumiereError } from '../errors.ts'
import { checkTensor, elementCount } from '../tensor/tensor.ts'
import type { Tensor } from '../tensor/tensor.ts'
import { ELEM, elemBytes, elemToDType, dtypeToElem, num, tensorDims } from './proto.ts'
import type { TensorProto } from './proto.ts'

/** TensorProto.DataLocation.EXTERNAL */
export const EXTERNAL = 1

export function isExternal (t: TensorProto): boolean {
  return t.dataLocation === EXTERNAL
}

/** The `location`, `offset` and `length` entries of an external tensor. */
export function externalRef (t: TensorProto): { location: string, offset: number, length: number | undefined } {
  const entries = new Map((t.externalData ?? []).map(e => [e.key ?? '', e.value ?? '']))
  const location = entries.get('location')
  if (location == null || location === '') throw new LumiereError('BAD_ONNX', `tensor '${t.name}' is stored externally but names no location: re-export the model`)
  const length = entries.get('length')
  return { location, offset: Number(entries.get('offset') ?? 0), length: length == null ? undefined : Number(length) }
}

/** Bytes the tensor's contents take (0 for strings and unknown types). */
export function tensorByteSize (t: TensorProto): number {
  return elementCount(tensorDims(t)) * elemBytes(t.dataType ?? 0)
}

/**
 * The tensor's contents as raw little-endian bytes. External data is read
 * from the file now (its location must be absolute: `loadModel` makes it so).
 * May return a view into the decoded model buffer; do not write to it.
 */
export function tensorBytes (t: TensorProto): Uint8Array {
  const type = t.dataType ?? 0
  const count = elementCount(tensorDims(t))
  const size = elemBytes(type)
  if (size === 0) throw new LumiereError('UNSUPPORTED_OP', `tensor '${t.name}' has element type ${type}, which we do not handle: use numeric tensors`)
  if (isExternal(t)) return readExternal(t, count * size)
  if (t.rawData != null && t.rawData.byteLength > 0) return t.rawData
  const out = new Uint8Array(count * size)
  const dv = new DataView(out.buffer)
  if (count === 0) return out
  switch (type) {
    case ELEM.FLOAT: (t.floatData ?? []).forEach((v, i) => dv.setFloat32(i * 4, v, true)); break
    case ELEM.DOUBLE: (t.doubleData ?? []).forEach((v, i) => dv.setFloat64(i * 8, v, true)); break
    case ELEM.INT64: (t.int64Data ?? []).forEach((v, i) => dv.setBigInt64(i * 8, BigInt(num(v)), true)); break
    case ELEM.UINT64:
    case ELEM.UINT32: (t.uint64Data ?? []).forEach((v, i) => size === 8 ? dv.setBigUint64(i * 8, BigInt(num(v)), true) : dv.setUint32(i * 4, num(v), true)); break
    case ELEM.INT32: (t.int32Data ?? []).forEach((v, i) => dv.setInt32(i * 4, v, true)); break
    // The spec keeps these small types in int32_data, one element per entry
    // (float16/bfloat16 as their bit patterns).
    case ELEM.INT16:
    case ELEM.UINT16:
    case ELEM.FLOAT16:
    case ELEM.BFLOAT16: (t.int32Data ?? []).forEach((v, i) => dv.setUint16(i * 2, v & 0xffff, true)); break
    case ELEM.INT8:
    case ELEM.UINT8:
    case ELEM.BOOL: (t.int32Data ?? []).forEach((v, i) => { out[i] = v & 0xff }); break
  }
  // A scalar or tensor written with too few typed values is corrupt.
  const typedCount = [t.floatData, t.doubleData, t.int64Data, t.uint64Data, t.int32Data].reduce((n, a) => n + (a?.length ?? 0), 0)
  if (typedCount !== count) throw new LumiereError('BAD_ONNX', `tensor '${t.name}' holds ${typedCount} values for shape [${tensorDims(t).join(', ')}]: the model is corrupt, re-export it`)
  return out
}

function readExternal (t: TensorProto, want: number): Uint8Array {
  const { location, offset, length } = externalRef(t)
  if (!isAbsolute(location)) {
    throw new LumiereError('BAD_ONNX', `tensor '${t.name}' lives in external file '${location}': load the model with loadModel(path) so its folder is known`)
  }
  if (length != null && length !== want) throw new LumiereError('BAD_ONNX', `tensor '${t.name}': external length ${length} but its shape needs ${want} bytes; re-export the model`)
  let fd: number
  try {
    fd = openSync(location, 'r')
  } catch (err) {
    throw new LumiereError('FILE_NOT_FOUND', `external data file ${location} of tensor '${t.name}' cannot be read: keep it next to the .onnx file`, { cause: err })
  }
  try {
    if (offset + want > fstatSync(fd).size) throw new LumiereError('BAD_ONNX', `external data file ${location} is too short for tensor '${t.name}': the file is truncated, copy it again`)
    const out = new Uint8Array(want)
    let done = 0
    while (done < want) {
      const n = readSync(fd, out, done, want - done, offset + done)
      if (n === 0) break
      done += n
    }
    return out
  } finally {
    closeSync(fd)
  }
}

/** A TensorProto holding the tensor's bytes as raw_data (copies). */
export function tensorToProto (name: string, t: Tensor): TensorProto {
  checkTensor(t, name)
  return { name, dataType: dtypeToElem(t.dtype), dims: [...t.shape], rawData: t.data.slice() }
}

/** A Tensor from a TensorProto of a type Tensor can hold. */
export function protoToTensor (t: TensorProto): Tensor {
  const dtype = elemToDType(t.dataType ?? 0)
  if (dtype === 'OTHER') throw new LumiereError('UNSUPPORTED_OP', `tensor '${t.name}' has element type ${t.dataType}, which Tensor cannot hold`)
  return { dtype, shape: tensorDims(t), data: tensorBytes(t) }
}

/**
 * The elements as JS numbers, for small tensors we fold at plan time (shapes,
 * axes, scales). Integers beyond 2^53 lose precision; we never meet them in
 * shapes.
 */
export function tensorNumbers (t: TensorProto): number[] {
  const bytes = tensorBytes(t)
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const type = t.dataType ?? 0
  const size = elemBytes(type)
  const out: number[] = []
  for (let off = 0; off < bytes.byteLength; off += size) out.push(readElem(dv, off, type))
  return out
}

function readElem (dv: DataView, off: number, type: number): number {
  switch (type) {
    case ELEM.FLOAT: return dv.getFloat32(off, true)
    case ELEM.DOUBLE: return dv.getFloat64(off, true)
    case ELEM.INT64: return Number(dv.getBigInt64(off, true))
    case ELEM.UINT64: return Number(dv.getBigUint64(off, true))
    case ELEM.INT32: return dv.getInt32(off, true)
    case ELEM.UINT32: return dv.getUint32(off, true)
    case ELEM.INT16: return dv.getInt16(off, true)
    case ELEM.UINT16: return dv.getUint16(off, true)
    case ELEM.INT8: return dv.getInt8(off)
    case ELEM.UINT8:
    case ELEM.BOOL: return dv.getUint8(off)
    case ELEM.FLOAT16: return f16ToNumber(dv.getUint16(off, true))
    case ELEM.BFLOAT16: return new Float32Array(new Uint32Array([dv.getUint16(off, true) << 16]).buffer)[0]
    default: return NaN
  }
}

function f16ToNumber (h: number): number {
  const sign = h & 0x8000 ? -1 : 1
  const exp = (h >> 10) & 0x1f
  const frac = h & 0x3ff
  if (exp === 0) return sign * frac * 2 ** -24
  if (exp === 31) return frac === 0 ? sign * Infinity : NaN
  return sign * (1 + frac / 1024) * 2 ** (exp - 15)
}

/** A TensorProto of the given ONNX element type from JS numbers (small tensors). */
export function numbersToProto (name: string, elemType: number, dims: number[], values: readonly number[]): TensorProto {
  const size = elemBytes(elemType)
  const bytes = new Uint8Array(values.length * size)
  const dv = new DataView(bytes.buffer)
  values.forEach((v, i) => {
    switch (elemType) {
      case ELEM.FLOAT: dv.setFloat32(i * 4, v, true); break
      case ELEM.DOUBLE: dv.setFloat64(i * 8, v, true); break
      case ELEM.INT64: dv.setBigInt64(i * 8, BigInt(Math.trunc(v)), true); break
      case ELEM.INT32: dv.setInt32(i * 4, v, true); break
      case ELEM.UINT8:
      case ELEM.BOOL: dv.setUint8(i, v ? (elemType === ELEM.BOOL ? 1 : v) : 0); break
      default: throw new LumiereError('INTERNAL', `numbersToProto: element type ${elemType} not supported`)
    }
  })
  return { name, dataType: elemType, dims, rawData: bytes }
}
