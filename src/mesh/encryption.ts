/**
 * Connection encryption for the mesh: the libp2p Noise XX handshake, then
 * AES-256-GCM transport messages of up to 2 MiB between mesh nodes, and
 * standard ChaChaPoly Noise as the fallback for any other libp2p node.
 *
 * Why. Profiling a 256 MiB tensor over libp2p TCP (bench/transport.ts,
 * `--cpu-prof`) put ~40% of the process's CPU in node:crypto
 * ChaCha20-Poly1305. OpenSSL's AES-256-GCM (AES-NI + CLMUL) costs ~0.12-0.15
 * ns/B of CPU each way on these machines, against ~0.3 encrypting and ~0.45
 * decrypting for ChaCha20-Poly1305; a raw TCP socket costs each end ~0.17 ns/B.
 * Standard Noise also cuts the stream into ≤ 65535-byte messages: per
 * message a cipher set up, a 2-byte length prefix written and parsed, and
 * several Uint8ArrayList operations on the receive path, ~0.1 ns/B more per
 * end at 64 KiB. Both ends of this variant are ours, so its transport
 * messages are as large as a yamux data frame (1 MiB + 12 in the mesh).
 *
 * What. The handshake is @chainsafe/libp2p-noise's own Noise XX (the
 * library's handshake code, identity-key signatures and peer-id checks,
 * run through its Noise class), with the Noise spec's AESGCM cipher
 * function in the library's AEAD slots (96-bit nonce = 32 zero bits ‖ 64-bit
 * big-endian counter, 128-bit tag) and a prologue of its own (the library
 * hashes the ChaChaPoly protocol name into the handshake; the prologue
 * separates the two handshakes). Hashing, HKDF and X25519 are the library's
 * defaults. After the handshake, transport messages are framed
 *
 *   u32 BE length n (16 ≤ n ≤ 2 MiB + 16) ‖ n bytes: AES-256-GCM ciphertext ‖ tag
 *
 * with the handshake's cipher states (one key and nonce counter per
 * direction, empty associated data): the Noise transport phase with a wider
 * length prefix. A message's plaintext is released only after its tag is
 * checked; a bad tag, a bad length or a wrapped nonce aborts the connection.
 * The variant is offered under its own protocol id before '/noise', so
 * multistream-select picks it only when both ends are mesh nodes.
 *
 * node:crypto cannot encrypt into a caller's buffer, so every cipher call
 * allocates its output; calls are kept to ≤ 64 KiB (allocations over
 * ~128 KiB are fresh mmap'd memory: a 1 MiB update costs ~3× the CPU of 16
 * 64 KiB ones). Outputs are handed on as lists, never concatenated: the TCP
 * connection writes a list with one writev (tcp.ts). AES-GCM is only fast
 * with AES instructions (x86-64 AES-NI, ARMv8 crypto extensions: every
 * server CPU of the last decade); a node without them can be created with
 * `aesNoise: false` (node.ts).
 */
import { createCipheriv, createDecipheriv } from 'node:crypto'
import { noise } from '@chainsafe/libp2p-noise'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import { publicKeyFromProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPublicKey } from '@libp2p/peer-id'
import { AbstractMessageStream, lpStream } from '@libp2p/utils'
import { Uint8ArrayList } from 'uint8arraylist'
import type { ICryptoInterface, NoiseComponents, NoiseExtensions } from '@chainsafe/libp2p-noise'
import type { AbortOptions, ConnectionEncrypter, Logger, MessageStream, PrivateKey, PublicKey, SecureConnectionOptions, SecuredConnection, StreamMuxerFactory } from '@libp2p/interface'
import type { LengthPrefixedStream, SendResult } from '@libp2p/utils'

/** The protocol id of Noise XX with AES-256-GCM and u32-framed transport messages, offered before '/noise'. */
export const NOISE_AES_PROTOCOL = '/lumiere/noise-aes256gcm/2.0.0'
const NOISE_AES_PROLOGUE = new TextEncoder().encode('lumiere-mesh Noise_XX_25519_AESGCM_SHA256, u32-framed transport messages')
const TAG_BYTES = 16
/** Largest plaintext of one transport message. */
export const MAX_MESSAGE_PLAINTEXT_BYTES = 2 * 1024 * 1024
/** Largest input to one cipher call (see the file comment). */
const CIPHER_STEP_BYTES = 64 * 1024
/** Handshake messages keep Noise's u16 length prefix. */
const HANDSHAKE_MESSAGE_BYTES = 65535
const LENGTH_BYTES = 4

/** The library's own byte types (it bundles another uint8arraylist than ours). */
type Bytes = Parameters<ICryptoInterface['chaCha20Poly1305Encrypt']>[0]
type Decrypted = ReturnType<ICryptoInterface['chaCha20Poly1305Decrypt']>
type Pieces = Iterable<Uint8Array>
interface Cipher { update: (data: Uint8Array) => Buffer }

/** Noise AESGCM nonce: 4 zero bytes then n as a big-endian uint64 (the library hands n as LE uint32 at offset 4). */
function aesNonce (nonce: Uint8Array): Uint8Array {
  const n = new DataView(nonce.buffer, nonce.byteOffset, nonce.byteLength).getUint32(4, true)
  const out = new Uint8Array(12)
  new DataView(out.buffer).setUint32(8, n, false)
  return out
}

/** Runs `pieces` through the cipher in calls of ≤ CIPHER_STEP_BYTES, appending the outputs to `out`. */
function cipherInSteps (cipher: Cipher, pieces: Pieces, out: { append: (b: Uint8Array) => void }): void {
  for (const piece of pieces) {
    for (let at = 0; at < piece.byteLength; at += CIPHER_STEP_BYTES) {
      out.append(cipher.update(piece.byteLength <= CIPHER_STEP_BYTES ? piece : piece.subarray(at, at + CIPHER_STEP_BYTES)))
    }
  }
}

/**
 * Encrypts one Noise message: ciphertext then tag. A single buffer in gives a
 * single buffer out (the handshake's small messages); a list gives a list of
 * the same class (the library may bundle another uint8arraylist than ours).
 */
function encrypt (plaintext: Bytes, nonce: Uint8Array, ad: Uint8Array, k: Uint8Array): Uint8Array | Exclude<Bytes, Uint8Array> {
  const cipher = createCipheriv('aes-256-gcm', k, aesNonce(nonce), { authTagLength: TAG_BYTES })
  cipher.setAAD(ad)
  if (plaintext instanceof Uint8Array && plaintext.byteLength <= CIPHER_STEP_BYTES) {
    const body = cipher.update(plaintext)
    cipher.final() // GCM is a stream mode: final() yields no bytes
    return Buffer.concat([body, cipher.getAuthTag()])
  }
  const out = plaintext instanceof Uint8Array ? new Uint8ArrayList() as unknown as Exclude<Bytes, Uint8Array> : plaintext.sublist(0, 0)
  cipherInSteps(cipher, plaintext instanceof Uint8Array ? [plaintext] : plaintext, out)
  cipher.final()
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
  if (ciphertext instanceof Uint8Array && n <= CIPHER_STEP_BYTES) {
    const out = decipher.update(ciphertext.subarray(0, n))
    decipher.final()
    return out
  }
  const out = ciphertext instanceof Uint8Array ? new Uint8ArrayList() as unknown as Exclude<Bytes, Uint8Array> : ciphertext.sublist(0, 0)
  cipherInSteps(decipher, ciphertext instanceof Uint8Array ? [ciphertext.subarray(0, n)] : ciphertext.sublist(0, n), out)
  decipher.final()
  return out
}

/** The library's crypto with AES-256-GCM in the AEAD slots (which the library names after ChaChaPoly). */
export const aesGcmCrypto: ICryptoInterface = {
  ...defaultCrypto,
  chaCha20Poly1305Encrypt: encrypt,
  chaCha20Poly1305Decrypt: decrypt
}

/** What the handshake yields: one cipher state per direction, behind the library's closures. */
interface Handshake {
  payload: { identityKey: Uint8Array, extensions?: NoiseExtensions & { streamMuxers?: string[] } }
  encrypt: (plaintext: Uint8Array | Uint8ArrayList) => Uint8Array | Uint8ArrayList
  decrypt: (ciphertext: Uint8Array | Uint8ArrayList) => Uint8Array | Uint8ArrayList
}

/**
 * The transport phase: AES-256-GCM messages framed with a u32 length over
 * the connection below (see the file comment). Outgoing data is sealed as it
 * is handed over, in messages of ≤ MAX_MESSAGE_PLAINTEXT_BYTES; incoming
 * bytes are parsed straight from the connection's chunks (no reassembly
 * copy: a message's pieces are views of those chunks) and each message is
 * decrypted when its last byte is in.
 */
export class AesGcmMessageStream extends AbstractMessageStream {
  private readonly conn: MessageStream
  private readonly handshake: Handshake
  private readonly head = new Uint8Array(LENGTH_BYTES)
  private headFilled = 0
  /** Ciphertext bytes still missing from the current message; 0 while reading a length. */
  private missing = 0
  private body = new Uint8ArrayList()

  constructor (conn: MessageStream, handshake: Handshake) {
    super({ log: conn.log, inactivityTimeout: conn.inactivityTimeout, maxReadBufferLength: conn.maxReadBufferLength, direction: conn.direction })
    this.conn = conn
    this.handshake = handshake
    conn.addEventListener('message', (evt) => {
      try {
        this.receive(evt.data)
      } catch (err) {
        this.abort(err as Error)
      }
    })
    conn.addEventListener('close', (evt) => {
      if (evt.error == null) this.onTransportClosed()
      else if (evt.local === true) this.abort(evt.error)
      else this.onRemoteReset()
    })
    conn.addEventListener('drain', () => { this.safeDispatchEvent('drain') })
    conn.addEventListener('remoteCloseWrite', () => { this.onRemoteCloseWrite() })
  }

  sendData (data: Uint8ArrayList): SendResult {
    const out = new Uint8ArrayList()
    for (let at = 0; at < data.byteLength; at += MAX_MESSAGE_PLAINTEXT_BYTES) {
      const end = Math.min(at + MAX_MESSAGE_PLAINTEXT_BYTES, data.byteLength)
      const sealed = this.handshake.encrypt(at === 0 && end === data.byteLength ? data : data.sublist(at, end))
      const head = new Uint8Array(LENGTH_BYTES)
      new DataView(head.buffer).setUint32(0, sealed.byteLength, false)
      out.append(head, sealed)
    }
    return { sentBytes: data.byteLength, canSendMore: this.conn.send(out) }
  }

  /** Parses messages out of the connection's bytes; what they decrypt to goes up as one chunk. */
  private receive (data: Uint8Array | Uint8ArrayList): void {
    const plain = new Uint8ArrayList()
    for (let chunk of data instanceof Uint8Array ? [data] : data) {
      while (chunk.byteLength > 0) {
        if (this.missing === 0) {
          const take = Math.min(LENGTH_BYTES - this.headFilled, chunk.byteLength)
          this.head.set(chunk.subarray(0, take), this.headFilled)
          this.headFilled += take
          chunk = chunk.subarray(take)
          if (this.headFilled < LENGTH_BYTES) break
          this.headFilled = 0
          const n = new DataView(this.head.buffer).getUint32(0, false)
          if (n < TAG_BYTES || n > MAX_MESSAGE_PLAINTEXT_BYTES + TAG_BYTES) throw new Error(`invalid AES-GCM Noise message length ${n}`)
          this.missing = n
          continue
        }
        const take = Math.min(this.missing, chunk.byteLength)
        this.body.append(take === chunk.byteLength ? chunk : chunk.subarray(0, take))
        this.missing -= take
        chunk = chunk.subarray(take)
        if (this.missing === 0) {
          plain.append(this.handshake.decrypt(this.body))
          this.body = new Uint8ArrayList()
        }
      }
    }
    this.onData(plain)
  }

  async close (options?: AbortOptions): Promise<void> {
    await this.conn.close(options)
  }

  sendPause (): void {
    this.conn.pause()
  }

  sendResume (): void {
    this.conn.resume()
  }

  sendReset (err: Error): void {
    this.conn.abort(err)
  }
}

/** The Noise class's handshake methods (TypeScript-private in the library, public at run time). */
interface NoiseHandshakes {
  performHandshakeInitiator: (connection: LengthPrefixedStream, privateKey: PrivateKey, log: Logger, remoteIdentityKey?: PublicKey, options?: SecureConnectionOptions) => Promise<Handshake>
  performHandshakeResponder: (connection: LengthPrefixedStream, privateKey: PrivateKey, log: Logger, remoteIdentityKey?: PublicKey, options?: SecureConnectionOptions) => Promise<Handshake>
  getStreamMuxer: (protocols?: string[]) => StreamMuxerFactory | undefined
}

function uint16BEEncode (n: number): Uint8Array {
  return Uint8Array.of(n >> 8, n & 0xff)
}

function uint16BEDecode (data: Uint8ArrayList): number {
  if (data.byteLength < 2) throw new RangeError('need 2 bytes for a u16 length')
  return data.getUint16(0)
}

type EncrypterFactory = (components: NoiseComponents) => ConnectionEncrypter

/** Noise XX + AES-256-GCM with u32-framed transport messages under NOISE_AES_PROTOCOL. */
export function noiseAesGcm (): EncrypterFactory {
  const make = noise({ crypto: aesGcmCrypto, prologueBytes: NOISE_AES_PROLOGUE })
  return (components) => {
    const encrypter = make(components)
    const handshakes = encrypter as unknown as NoiseHandshakes
    if (typeof handshakes.performHandshakeInitiator !== 'function' || typeof handshakes.performHandshakeResponder !== 'function' || typeof handshakes.getStreamMuxer !== 'function') {
      throw new Error('@chainsafe/libp2p-noise has changed shape: the AES-GCM encrypter needs Noise.performHandshakeInitiator/Responder and getStreamMuxer')
    }
    const secure = async (initiator: boolean, connection: MessageStream, options?: SecureConnectionOptions): Promise<SecuredConnection<NoiseExtensions>> => {
      const log = connection.log.newScope('noise-aes')
      const framed = lpStream(connection, { lengthEncoder: uint16BEEncode, lengthDecoder: uint16BEDecode, maxDataLength: HANDSHAKE_MESSAGE_BYTES })
      const perform = initiator ? handshakes.performHandshakeInitiator : handshakes.performHandshakeResponder
      const handshake = await perform.call(encrypter, framed, components.privateKey, log, options?.remotePeer?.publicKey, options)
      const extensions = handshake.payload.extensions
      return {
        connection: new AesGcmMessageStream(framed.unwrap(), handshake),
        remoteExtensions: extensions,
        remotePeer: peerIdFromPublicKey(publicKeyFromProtobuf(handshake.payload.identityKey)),
        streamMuxer: options?.skipStreamMuxerNegotiation === true ? undefined : handshakes.getStreamMuxer.call(encrypter, extensions?.streamMuxers)
      }
    }
    encrypter.protocol = NOISE_AES_PROTOCOL
    encrypter.secureOutbound = async (connection, options) => await secure(true, connection, options)
    encrypter.secureInbound = async (connection, options) => await secure(false, connection, options)
    return encrypter
  }
}

/** The mesh's encrypters in order of preference: AES-256-GCM Noise, then standard Noise. */
export function meshEncrypters (options: { aes?: boolean } = {}): EncrypterFactory[] {
  return options.aes === false ? [noise()] : [noiseAesGcm(), noise()]
}
