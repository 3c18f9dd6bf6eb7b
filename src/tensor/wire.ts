import { toF16, toF32 } from './float16.ts'
import type { Tensor } from './tensor.ts'

/**
 * How float32 tensors travel between coordinator and peers: as they are
 * (bit-exact) or as float16, half the bytes at a relative rounding error of
 * at most 2^-11 per element (src/tensor/float16.ts). Other dtypes always
 * travel as they are.
 */
export type WireFormat = 'f32' | 'f16'

export function narrowForWire (t: Tensor, wire: WireFormat): Tensor {
  return wire === 'f16' && t.dtype === 'F32' ? toF16(t) : t
}

/** Widens float16 tensors that arrived from a float16 wire back to float32. */
export function widenFromWire (tensors: Record<string, Tensor>, wire: WireFormat): Record<string, Tensor> {
  if (wire !== 'f16') return tensors
  return Object.fromEntries(Object.entries(tensors).map(([n, t]) => [n, t.dtype === 'F16' ? toF32(t) : t]))
}
