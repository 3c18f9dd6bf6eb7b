/**
 * The one random-number generator of the sampler, so that a seed reproduces a
 * video bit for bit on any machine, whatever order or concurrency the noise
 * is drawn in.
 *
 * Generator: Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random
 * numbers: as easy as 1, 2, 3", SC 2011; the Random123 library). A
 * counter-based generator: block = philox(counter[4 x u32], key[2 x u32]) is
 * a pure function, so any element of any stream can be computed directly.
 * Validated against the Random123 `tests/kat_vectors` lines for
 * `philox4x32 10` (see test/diffusion-rng.test.ts).
 *
 * Mapping of (seed, stream, index) to numbers:
 *
 * - key     = seed as a 64-bit unsigned integer: key[0] = low 32 bits,
 *             key[1] = high 32 bits.
 * - stream  = the first 8 bytes of SHA-256(UTF-8 of String(stream)), read as
 *             two little-endian u32: counter[2], counter[3]. A number stream
 *             is hashed as its decimal string (so 7 and '7' are the same
 *             stream). Use distinct names for independent draws, e.g.
 *             `init/3`, `ancestral/12/3` (see sampler.ts).
 * - element i of the stream lies in block j = floor(i / 4), slot i mod 4;
 *             counter[0] = low 32 bits of j, counter[1] = high 32 bits of j.
 * - Gaussians: Box–Muller on the block's words (w0, w1, w2, w3), in float64:
 *               u1 = (w0 + 0.5) / 2^32   (in (0, 1), never 0)
 *               u2 =  w1        / 2^32   (in [0, 1))
 *               r = sqrt(-2 ln u1), θ = 2π u2
 *               slot 0 = r cos θ, slot 1 = r sin θ
 *             and likewise slots 2, 3 from (w2, w3); each value is then
 *             rounded to float32 (round to nearest even). |z| ≤ 6.66.
 *
 * Cross-machine reproducibility: Philox and the uniforms are exact integer
 * arithmetic; sqrt is correctly rounded by IEEE 754; V8 (Node) computes
 * Math.log/cos/sin with its own software port of fdlibm, independent of the
 * CPU and C library, so Node gives identical float64 values everywhere. Any
 * other implementation within 1 ulp of float64 agrees after rounding to
 * float32 except with probability ~1e-8 per value.
 */
import { createHash } from 'node:crypto'
import { LumiereError } from '../errors.ts'

const M0 = 0xD2511F53
const M1 = 0xCD9E8D57
const W0 = 0x9E3779B9
const W1 = 0xBB67AE85
const TWO32 = 4294967296
const INV_TWO32 = 1 / TWO32
const TWO_PI = 2 * Math.PI

/** High 32 bits of the 64-bit product of two u32 (exact, via 16-bit halves). */
function mulhi32 (a: number, b: number): number {
  const aL = a & 0xffff
  const aH = a >>> 16
  const bL = b & 0xffff
  const bH = b >>> 16
  const ll = aL * bL
  const hl = aH * bL
  const lh = aL * bH
  const cross = (ll >>> 16) + (hl & 0xffff) + lh // < 2^33, exact in float64
  return (aH * bH + (hl >>> 16) + Math.floor(cross / 65536)) >>> 0
}

/**
 * Philox4x32 with `rounds` rounds (10 is the standard): encrypts the counter
 * under the key. Writes the four output words into `out` (default a new array).
 */
export function philox4x32 (counter: ArrayLike<number>, key: ArrayLike<number>, rounds = 10, out: Uint32Array = new Uint32Array(4)): Uint32Array {
  let c0 = counter[0] >>> 0
  let c1 = counter[1] >>> 0
  let c2 = counter[2] >>> 0
  let c3 = counter[3] >>> 0
  let k0 = key[0] >>> 0
  let k1 = key[1] >>> 0
  for (let r = 0; r < rounds; r++) {
    if (r > 0) {
      k0 = (k0 + W0) >>> 0
      k1 = (k1 + W1) >>> 0
    }
    const hi0 = mulhi32(M0, c0)
    const lo0 = Math.imul(M0, c0) >>> 0
    const hi1 = mulhi32(M1, c2)
    const lo1 = Math.imul(M1, c2) >>> 0
    c0 = (hi1 ^ c1 ^ k0) >>> 0
    c1 = lo1
    c2 = (hi0 ^ c3 ^ k1) >>> 0
    c3 = lo0
  }
  out[0] = c0
  out[1] = c1
  out[2] = c2
  out[3] = c3
  return out
}

export type Seed = number | bigint

/** The Philox key of a seed: [low 32 bits, high 32 bits]. Seeds are integers in [0, 2^64). */
export function seedKey (seed: Seed): [number, number] {
  let s: bigint
  if (typeof seed === 'bigint') s = seed
  else if (Number.isSafeInteger(seed)) s = BigInt(seed)
  else throw new LumiereError('BAD_ARGUMENT', `seed must be a non-negative integer, got ${seed}`)
  if (s < 0n || s >= 1n << 64n) throw new LumiereError('BAD_ARGUMENT', `seed must be an integer in [0, 2^64), got ${s}`)
  return [Number(s & 0xffffffffn), Number(s >> 32n)]
}

/** The two counter words that name a stream: SHA-256(String(stream)), first 8 bytes, little-endian. */
export function streamWords (stream: string | number): [number, number] {
  if (typeof stream === 'number' && !Number.isFinite(stream)) throw new LumiereError('BAD_ARGUMENT', `stream must be a string or a finite number, got ${stream}`)
  const h = createHash('sha256').update(String(stream), 'utf8').digest()
  return [h.readUInt32LE(0), h.readUInt32LE(4)]
}

function checkRange (n: number, offset: number): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new LumiereError('BAD_ARGUMENT', `count must be a non-negative integer, got ${n}`)
  if (!Number.isSafeInteger(offset) || offset < 0 || offset + n > Number.MAX_SAFE_INTEGER) throw new LumiereError('BAD_ARGUMENT', `offset must be a non-negative integer, got ${offset}`)
}

/**
 * Fills `out` with the standard-normal values of elements
 * [offset, offset + out.length) of the stream. Returns `out`.
 */
export function gaussianInto (out: Float32Array, seed: Seed, stream: string | number, offset = 0): Float32Array {
  const z = new Float64Array(4)
  forEachBlock(seed, stream, out.length, offset, (w, slot, end, at) => {
    boxMuller(w[0], w[1], z, 0)
    boxMuller(w[2], w[3], z, 2)
    for (let k = slot; k < end; k++) out[at++] = z[k]
  })
  return out
}

/**
 * Walks the Philox blocks covering elements [offset, offset + n) of a
 * stream (4 words per block, block index in counter words 0–1, stream hash
 * in words 2–3), handing each block's words with the slots [slot, end) that
 * fall in the range and where they go in the output.
 */
function forEachBlock (seed: Seed, stream: string | number, n: number, offset: number, emit: (w: Uint32Array, slot: number, end: number, at: number) => void): void {
  checkRange(n, offset)
  const key = seedKey(seed)
  const [s0, s1] = streamWords(stream)
  const ctr = [0, 0, s0, s1]
  const w = new Uint32Array(4)
  let i = 0
  let block = Math.floor(offset / 4)
  let slot = offset % 4
  while (i < n) {
    ctr[0] = block % TWO32
    ctr[1] = Math.floor(block / TWO32)
    philox4x32(ctr, key, 10, w)
    const end = Math.min(4, slot + n - i)
    emit(w, slot, end, i)
    i += end - slot
    slot = 0
    block++
  }
}

function boxMuller (a: number, b: number, z: Float64Array, at: number): void {
  const u1 = (a + 0.5) * INV_TWO32
  const u2 = b * INV_TWO32
  const r = Math.sqrt(-2 * Math.log(u1))
  const theta = TWO_PI * u2
  z[at] = r * Math.cos(theta)
  z[at + 1] = r * Math.sin(theta)
}

/**
 * `n` standard-normal float32 values: elements [offset, offset + n) of the
 * stream `stream` under `seed`. Pure: the same arguments give the same bits,
 * and a range can be drawn in pieces (offset) with the same result.
 */
export function gaussian (seed: Seed, stream: string | number, n: number, offset = 0): Float32Array {
  checkRange(n, offset)
  return gaussianInto(new Float32Array(n), seed, stream, offset)
}

/**
 * `n` raw u32 words of the stream (4 per Philox block, in order), for
 * uniform draws and tests.
 */
export function randomWords (seed: Seed, stream: string | number, n: number, offset = 0): Uint32Array {
  checkRange(n, offset)
  const out = new Uint32Array(n)
  forEachBlock(seed, stream, n, offset, (w, slot, end, at) => { out.set(w.subarray(slot, end), at) })
  return out
}
