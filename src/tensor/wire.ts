import { toBF16, toF16, toF32 } from './float16.ts'
import type { DType, Tensor } from './tensor.ts'

/**
 * How float32 tensors travel between coordinator and peers: as they are
 * (bit-exact), as float16 (half the bytes, relative rounding error ≤ 2^-11
 * per element, finite up to 65504), or as bfloat16 (half the bytes, ≤ 2^-8,
 * float32's range). src/tensor/float16.ts has the bounds. Other dtypes
 * always travel as they are.
 */
export const WIRE_FORMATS = ['f32', 'f16', 'bf16'] as const

export type WireFormat = typeof WIRE_FORMATS[number]

/** The dtype a float32 tensor travels as. */
const NARROW: Record<WireFormat, DType> = { f32: 'F32', f16: 'F16', bf16: 'BF16' }

export function narrowForWire (t: Tensor, wire: WireFormat): Tensor {
  if (t.dtype !== 'F32' || wire === 'f32') return t
  return wire === 'f16' ? toF16(t) : toBF16(t)
}

/** Widens the tensors that arrived narrowed by a float16 or bfloat16 wire back to float32. */
export function widenFromWire (tensors: Record<string, Tensor>, wire: WireFormat): Record<string, Tensor> {
  if (wire === 'f32') return tensors
  return Object.fromEntries(Object.entries(tensors).map(([n, t]) => [n, t.dtype === NARROW[wire] ? toF32(t) : t]))
}
