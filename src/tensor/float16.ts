/**
 * IEEE 754 binary16 ("half", safetensors/ONNX F16) ↔ binary32 conversion,
 * with no dependency.
 *
 * binary16: 1 sign bit, 5 exponent bits (bias 15), 10 fraction bits.
 *   exponent 0      : ±0 and subnormals, value = fraction · 2^-24
 *   exponent 1..30  : normals, value = (1 + fraction/2^10) · 2^(exponent − 15)
 *   exponent 31     : ±inf (fraction 0) and NaN (fraction ≠ 0)
 * Largest finite 65504 (0x7BFF), smallest normal 2^-14 (0x0400), smallest
 * subnormal 2^-24 (0x0001).
 *
 * float32 → float16 rounds to nearest, ties to even, in every range:
 * magnitudes ≥ 65520 (= 65504 + half an ulp) become ±inf, magnitudes ≤ 2^-25
 * (half the smallest subnormal; the tie goes to even, i.e. 0) become ±0,
 * between them subnormals are rounded likewise. NaN stays NaN with its sign
 * and the top 10 bits of its payload (a payload only in the
 * 13 dropped bits gives the quiet NaN 0x7E00 with that sign).
 * float16 → float32 is exact (every half value is a float32 value); NaN
 * payloads are kept bit for bit, so half → float → half is the identity on
 * all 65,536 bit patterns.
 *
 * bfloat16 (BF16) is the top half of a float32: 1 sign, 8 exponent, 7
 * fraction bits, float32's range at 8 significant bits. float32 → bfloat16
 * rounds to nearest, ties to even (magnitudes from the largest finite plus
 * half an ulp become ±inf); NaN stays NaN, quieted, with its sign and top
 * payload bits. bfloat16 → float32 is exact.
 *
 * The array functions allocate no buffer when `out` is given (they only take
 * an O(1) typed-array view of the same memory to read/write bit patterns).
 */
import { LumiereError } from '../errors.ts'
import { checkTensor, view } from './tensor.ts'
import type { Tensor } from './tensor.ts'

/**
 * Largest relative error |f16(x) − x| / |x| of a float32 → float16 →
 * float32 trip for x in the normal half range [2^-14, 65504] (and up to the
 * overflow threshold 65520): the unit roundoff of binary16, u = 2^-11.
 *
 * Derivation: a normal half has p = 11 significant bits (10 stored + the
 * implicit 1). For x ∈ [2^e, 2^(e+1)) its neighbours are spaced
 * ulp = 2^(e − 10) apart, and round-to-nearest moves x by at most half of
 * that, 2^(e − 11) ≤ 2^-11 · |x|. (The tighter bound is u/(1 + u), reached
 * just above a power of two; 2^-11 is the customary round number.) The
 * float16 → float32 widening is exact, so the trip's error is the one
 * rounding. Below 2^-14 (subnormals) the error is absolute, at most 2^-25.
 */
export const F16_MAX_RELATIVE_ERROR = 2 ** -11

/**
 * Largest relative error of a float32 → bfloat16 → float32 trip for normal
 * values: half an ulp at 8 significant bits, 2^-8 (the derivation above
 * with p = 8). float32 subnormals keep an absolute error ≤ 2^-134.
 */
export const BF16_MAX_RELATIVE_ERROR = 2 ** -8

/** Largest finite half value, 65504. */
export const F16_MAX = 65504
/** Smallest positive normal half value, 2^-14. */
export const F16_MIN_NORMAL = 2 ** -14
/** Smallest positive subnormal half value, 2^-24. */
export const F16_MIN_SUBNORMAL = 2 ** -24

// Scratch for reinterpreting one float32 as its bits (allocated once).
const scratchF = new Float32Array(1)
const scratchU = new Uint32Array(scratchF.buffer)

/** binary16 bits of the float32 with bits `b` (round to nearest even). */
function bitsToHalf (b: number): number {
  const sign = (b >>> 16) & 0x8000
  const exp = (b >>> 23) & 0xff
  const mant = b & 0x7fffff
  if (exp === 0xff) {
    // inf, or NaN keeping the top 10 bits of its payload (quiet/signalling
    // bit included); a payload that lived only in the dropped bits becomes
    // the quiet NaN 0x7E00 so the result stays a NaN
    if (mant === 0) return sign | 0x7c00
    const payload = mant >>> 13
    return sign | 0x7c00 | (payload === 0 ? 0x200 : payload)
  }
  if (exp > 142) return sign | 0x7c00 // ≥ 2^16: overflow
  if (exp >= 113) {
    // normal half: rebias 127 → 15, keep 10 fraction bits, round the 13 dropped
    let h = ((exp - 112) << 10) | (mant >>> 13)
    const rest = mant & 0x1fff
    if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h++ // may carry into the exponent, up to inf: correct
    return sign | h
  }
  if (exp < 102) return sign // < 2^-25: rounds to ±0 (2^-25 itself is exp 102)
  // subnormal half (or rounds up to the smallest normal): value / 2^-24 =
  // (2^23 + mant) · 2^(exp − 150) / 2^-24 = sig >> (126 − exp), rounded
  const sig = 0x800000 | mant
  const shift = 126 - exp // 14..24
  let h = sig >>> shift
  const rest = sig & ((1 << shift) - 1)
  const halfway = 1 << (shift - 1)
  if (rest > halfway || (rest === halfway && (h & 1) === 1)) h++
  return sign | h
}

/** float32 bits of the binary16 with bits `h` (exact). */
function halfToBits (h: number): number {
  const sign = (h & 0x8000) << 16
  const exp = (h >>> 10) & 0x1f
  const mant = h & 0x3ff
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0
  if (mant === 0) return sign >>> 0
  // subnormal: normalise (mant · 2^-24 with the leading 1 moved to bit 10)
  let e = 113
  let m = mant
  while ((m & 0x400) === 0) { m <<= 1; e-- }
  return (sign | (e << 23) | ((m & 0x3ff) << 13)) >>> 0
}

/** The binary16 bit pattern nearest to `x` (x is first rounded to float32, as storing it in a Float32Array would). */
export function toHalfBits (x: number): number {
  scratchF[0] = x
  return bitsToHalf(scratchU[0])
}

/** The value of a binary16 bit pattern (0..0xFFFF), as a number (NaN payloads are not kept in a JS number; use the array function for bits). */
export function fromHalfBits (h: number): number {
  if (!Number.isInteger(h) || h < 0 || h > 0xffff) throw new LumiereError('BAD_ARGUMENT', `a binary16 bit pattern is an integer in [0, 0xFFFF], got ${h}`)
  scratchU[0] = halfToBits(h)
  return scratchF[0]
}

/** float32 values → binary16 bit patterns (round to nearest even). Writes into `out` when given (same length; no new buffer). */
export function float32ToFloat16 (src: Float32Array, out?: Uint16Array): Uint16Array {
  const n = src.length
  const o = out ?? new Uint16Array(n)
  if (o.length !== n) throw new LumiereError('BAD_ARGUMENT', `float32ToFloat16: out holds ${o.length} values, the source ${n}: pass an out of the same length`)
  const bits = new Uint32Array(src.buffer, src.byteOffset, n)
  for (let i = 0; i < n; i++) o[i] = bitsToHalf(bits[i])
  return o
}

/** binary16 bit patterns → float32 values (exact, NaN payloads kept). Writes into `out` when given (same length; no new buffer). */
export function float16ToFloat32 (src: Uint16Array, out?: Float32Array): Float32Array {
  const n = src.length
  const o = out ?? new Float32Array(n)
  if (o.length !== n) throw new LumiereError('BAD_ARGUMENT', `float16ToFloat32: out holds ${o.length} values, the source ${n}: pass an out of the same length`)
  const bits = new Uint32Array(o.buffer, o.byteOffset, n)
  for (let i = 0; i < n; i++) bits[i] = halfToBits(src[i])
  return o
}

/** float32 values → bfloat16 bit patterns (round to nearest even; NaN stays NaN). Writes into `out` when given (same length; no new buffer). */
export function float32ToBfloat16 (src: Float32Array, out?: Uint16Array): Uint16Array {
  const n = src.length
  const o = out ?? new Uint16Array(n)
  if (o.length !== n) throw new LumiereError('BAD_ARGUMENT', `float32ToBfloat16: out holds ${o.length} values, the source ${n}: pass an out of the same length`)
  const bits = new Uint32Array(src.buffer, src.byteOffset, n)
  for (let i = 0; i < n; i++) {
    const b = bits[i]
    // Below 2^32 for every non-NaN pattern: −inf (0xFF800000) is the largest.
    o[i] = (b & 0x7fffffff) > 0x7f800000 ? (b >>> 16) | 0x40 : (b + 0x7fff + ((b >>> 16) & 1)) >>> 16
  }
  return o
}

/** bfloat16 bit patterns → float32 values (exact: the top half of the float32 bits). */
export function bfloat16ToFloat32 (src: Uint16Array, out?: Float32Array): Float32Array {
  const n = src.length
  const o = out ?? new Float32Array(n)
  if (o.length !== n) throw new LumiereError('BAD_ARGUMENT', `bfloat16ToFloat32: out holds ${o.length} values, the source ${n}: pass an out of the same length`)
  const bits = new Uint32Array(o.buffer, o.byteOffset, n)
  for (let i = 0; i < n; i++) bits[i] = (src[i] << 16) >>> 0
  return o
}

/** An F16 tensor of the same shape (from F32 by rounding to nearest even; an F16 tensor is copied). */
export function toF16 (t: Tensor): Tensor {
  return toHalfWidth(t, 'F16', float32ToFloat16)
}

/** A BF16 tensor of the same shape (from F32 by rounding to nearest even; a BF16 tensor is copied). */
export function toBF16 (t: Tensor): Tensor {
  return toHalfWidth(t, 'BF16', float32ToBfloat16)
}

function toHalfWidth (t: Tensor, dtype: 'F16' | 'BF16', narrow: (src: Float32Array) => Uint16Array): Tensor {
  checkTensor(t, `to${dtype}`)
  let h: Uint16Array
  if (t.dtype === 'F32') h = narrow(view(t) as Float32Array)
  else if (t.dtype === dtype) h = (view(t) as Uint16Array).slice()
  else throw new LumiereError('BAD_ARGUMENT', `to${dtype} converts F32 (or copies ${dtype}) tensors, got ${t.dtype}: convert it to F32 first`)
  return { dtype, shape: [...t.shape], data: new Uint8Array(h.buffer, h.byteOffset, h.byteLength) }
}

/** An F32 tensor of the same shape (from F16 or BF16 exactly; an F32 tensor is copied). */
export function toF32 (t: Tensor): Tensor {
  checkTensor(t, 'toF32')
  let f: Float32Array
  if (t.dtype === 'F16') f = float16ToFloat32(view(t) as Uint16Array)
  else if (t.dtype === 'BF16') f = bfloat16ToFloat32(view(t) as Uint16Array)
  else if (t.dtype === 'F32') f = (view(t) as Float32Array).slice()
  else throw new LumiereError('BAD_ARGUMENT', `toF32 converts F16, BF16 (or copies F32) tensors, got ${t.dtype}`)
  return { dtype: 'F32', shape: [...t.shape], data: new Uint8Array(f.buffer, f.byteOffset, f.byteLength) }
}
