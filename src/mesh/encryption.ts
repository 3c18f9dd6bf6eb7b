/**
 * Connection encryption for the mesh: the libp2p Noise XX handshake, with
 * AES-256-GCM as the transport cipher between mesh nodes and standard
 * ChaChaPoly Noise as the fallback for any other libp2p node.
 *
 * Why. Profiling a 256 MiB tensor over libp2p TCP (bench/transport.ts,
 * `--cpu-prof`) puts ~40% of the process's CPU in node:crypto
 * ChaCha20-Poly1305. @chainsafe/libp2p-noise already uses node:crypto
 * (OpenSSL) for frames ≥ 1200 bytes; OpenSSL's ChaCha20-Poly1305 runs at
 * ~0.3 ns/B encrypting and ~0.45 ns/B decrypting on these machines, while
 * AES-256-GCM (AES-NI + CLMUL) runs at ~0.11 ns/B each way: the cipher alone
 * costs more than a raw TCP socket's whole per-byte cost (~0.5 ns/B) with
 * ChaCha, and a fifth of that with AES-GCM.
 *
 * What. Both encrypters are @chainsafe/libp2p-noise's own implementation (the
 * handshake, identity-key signatures and peer-id checks are untouched); the
 * preferred one swaps in AES-256-GCM through the library's public `crypto`
 * hook and is offered under its own protocol id, so multistream-select picks
 * it only when both ends are mesh nodes and falls back to '/noise' otherwise.
 * Its cipher is the Noise spec's AESGCM cipher function (96-bit nonce = 32
 * zero bits ‖ 64-bit big-endian counter, 128-bit tag); the library hashes the
 * ChaChaPoly protocol name into the handshake, so a distinct prologue
 * separates the two handshakes. Hashing, HKDF and X25519 are the library's
 * defaults. AES-GCM is only fast with AES instructions (x86-64 AES-NI, ARMv8
 * crypto extensions: every server CPU of the last decade); a node without
 * them can be created with `aesNoise: false` (node.ts).
 *
 * Also: the AES connection's stream skips a scratch copy the library makes
 * for its WASM cipher (skipScratchCopy), and messages are encrypted without
 * gathering them into one buffer first. Measured in one process, 32 MiB x 15
 * rounds: with ChaCha 1.6–1.7 ns/B of CPU for the tensor channel, with
 * AES-GCM 1.2–1.3, plus the scratch-copy skip and batched TCP writes (tcp.ts)
 * 1.0 — against ~0.45 ns/B for a raw TCP socket.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto'
import { noise } from '@chainsafe/libp2p-noise'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import type { ICryptoInterface, NoiseComponents } from '@chainsafe/libp2p-noise'
import type { ConnectionEncrypter } from '@libp2p/interface'

/** The protocol id of Noise XX with AES-256-GCM, offered before '/noise'. */
export const NOISE_AES_PROTOCOL = '/lumiere/noise-aes256gcm/1.0.0'
const NOISE_AES_PROLOGUE = new TextEncoder().encode('lumiere-mesh Noise_XX_25519_AESGCM_SHA256')
const TAG_BYTES = 16
/** Largest Noise message (u16 length prefix). */
const NOISE_MESSAGE_BYTES = 65535

/** The library's own byte types (it may bundle another uint8arraylist than ours). */
type Bytes = Parameters<ICryptoInterface['chaCha20Poly1305Encrypt']>[0]
type Decrypted = ReturnType<ICryptoInterface['chaCha20Poly1305Decrypt']>

/** Noise AESGCM nonce: 4 zero bytes then n as a big-endian uint64 (the library hands n as LE uint32 at offset 4). */
function aesNonce (nonce: Uint8Array): Uint8Array {
  const n = new DataView(nonce.buffer, nonce.byteOffset, nonce.byteLength).getUint32(4, true)
  const out = new Uint8Array(12)
  new DataView(out.buffer).setUint32(8, n, false)
  return out
}

/**
 * Encrypts one Noise message (≤ 65519 bytes): ciphertext then tag. A message
 * cut from a yamux frame arrives as a list (header + payload pieces) and
 * leaves as a list of the cipher's outputs and the tag, with no copy: the
 * TCP connection writes a whole batch with one writev (tcp.ts), so extra
 * pieces cost nothing. A single buffer in gives a single buffer out.
 */
function encrypt (plaintext: Bytes, nonce: Uint8Array, ad: Uint8Array, k: Uint8Array): Uint8Array | Exclude<Bytes, Uint8Array> {
  const cipher = createCipheriv('aes-256-gcm', k, aesNonce(nonce), { authTagLength: TAG_BYTES })
  cipher.setAAD(ad)
  if (plaintext instanceof Uint8Array) {
    const body = cipher.update(plaintext)
    cipher.final() // GCM is a stream mode: final() yields no bytes
    return Buffer.concat([body, cipher.getAuthTag()])
  }
  const out = plaintext.sublist(0, 0) // an empty list of the library's class
  for (const piece of plaintext) out.append(cipher.update(piece))
  const last = cipher.final()
  if (last.byteLength > 0) out.append(last)
  out.append(cipher.getAuthTag())
  return out
}

/** Decrypts and authenticates one Noise message; throws (and the connection is aborted) on a bad tag. */
function decrypt (ciphertext: Bytes, nonce: Uint8Array, ad: Uint8Array, k: Uint8Array): Decrypted {
  const n = ciphertext.byteLength - TAG_BYTES
  if (n < 0) throw new Error('Noise message shorter than its tag')
  const decipher = createDecipheriv('aes-256-gcm', k, aesNonce(nonce), { authTagLength: TAG_BYTES })
  decipher.setAAD(ad)
  decipher.setAuthTag(ciphertext.subarray(n))
  if (ciphertext instanceof Uint8Array) {
    const out = decipher.update(ciphertext.subarray(0, n))
    const last = decipher.final()
    return last.byteLength === 0 ? out : Buffer.concat([out, last])
  }
  const out = ciphertext.sublist(0, 0) // an empty list of the library's class
  for (const piece of ciphertext.sublist(0, n)) out.append(decipher.update(piece))
  const last = decipher.final()
  if (last.byteLength > 0) out.append(last)
  return out
}

/** The library's crypto with AES-256-GCM in the AEAD slots (which the library names after ChaChaPoly). */
export const aesGcmCrypto: ICryptoInterface = {
  ...defaultCrypto,
  chaCha20Poly1305Encrypt: encrypt,
  chaCha20Poly1305Decrypt: decrypt
}

type EncrypterFactory = (components: NoiseComponents) => ConnectionEncrypter

interface DecryptingStream {
  scratchFree?: boolean
  decrypt?: (chunk: Bytes) => unknown
  handshake?: { decrypt?: (ciphertext: Bytes, dst?: Uint8Array) => Decrypted }
}

/**
 * The library's per-message decrypt first copies every Noise message that
 * spans two socket reads (most of them: a 65537-byte message, 64 KiB reads)
 * into a scratch `dst` buffer that only its WASM ChaCha uses; node:crypto
 * cannot decrypt in place, so for us that is one wasted copy and one 64 KiB
 * garbage buffer per message. This replaces the method on the connection's
 * stream with the same loop minus the scratch copy. Skipped (stock
 * behaviour) if the stream does not have the expected shape.
 */
function skipScratchCopy (stream: unknown): void {
  const s = stream as DecryptingStream
  const handshake = s.handshake
  if (typeof s.decrypt !== 'function' || typeof handshake?.decrypt !== 'function') return
  const decryptOne = handshake.decrypt.bind(handshake)
  s.decrypt = (chunk: Bytes) => {
    // The length-prefixed decoder hands over exactly one Noise message.
    if (chunk.byteLength > NOISE_MESSAGE_BYTES || chunk.byteLength < TAG_BYTES) throw new Error('Invalid chunk')
    return decryptOne(chunk)
  }
  s.scratchFree = true
}

/** Noise XX + AES-256-GCM under NOISE_AES_PROTOCOL. */
export function noiseAesGcm (): EncrypterFactory {
  const make = noise({ crypto: aesGcmCrypto, prologueBytes: NOISE_AES_PROLOGUE })
  return (components) => {
    const encrypter = make(components)
    encrypter.protocol = NOISE_AES_PROTOCOL
    const inbound = encrypter.secureInbound.bind(encrypter)
    const outbound = encrypter.secureOutbound.bind(encrypter)
    encrypter.secureInbound = async (connection, options) => {
      const secured = await inbound(connection, options)
      skipScratchCopy(secured.connection)
      return secured
    }
    encrypter.secureOutbound = async (connection, options) => {
      const secured = await outbound(connection, options)
      skipScratchCopy(secured.connection)
      return secured
    }
    return encrypter
  }
}

/** The mesh's encrypters in order of preference: AES-256-GCM Noise, then standard Noise. */
export function meshEncrypters (options: { aes?: boolean } = {}): EncrypterFactory[] {
  return options.aes === false ? [noise()] : [noiseAesGcm(), noise()]
}
