/**
 * Byte-level I/O on libp2p v3 streams with bounded memory both ways.
 *
 * Writing: `send()` queues without limit; it returns false when the muxer (or
 * data channel) is full, and we then wait for the 'drain' event before the
 * next chunk, so at most one chunk (≤ 1 MiB) sits in the stream's write buffer.
 *
 * Reading: a v3 stream pushes 'message' events as data arrives, and yamux
 * grants the sender more window as soon as data is handed to us, so
 * `for await (const chunk of stream)` on a slow consumer buffers without bound.
 * StreamReader copies arriving bytes straight into the caller's destination
 * when a read is pending; otherwise it queues them and, past a high-water
 * mark, pauses the stream. A paused yamux stream stops sending window
 * updates, so the sender stalls after at most one receive window (≤ 16 MiB).
 * WebRTC data channels do not implement pause: there the stream buffers up to
 * its maxReadBufferLength and is then reset, so keep reading.
 */
import { Packr, Unpackr } from 'msgpackr'
import { LumiereError } from '../src/errors.ts'
import type { Stream } from '@libp2p/interface'
import type { Uint8ArrayList } from 'uint8arraylist'

/** Largest slice handed to one `send()`. */
export const SEND_CHUNK_BYTES = 1024 * 1024
/** StreamReader queues at most about this much (plus one message) before pausing the stream. */
export const READ_HIGH_WATER_BYTES = 1024 * 1024
/**
 * A paused stream may still receive one full yamux window (≤ 16 MiB with the
 * mesh config) before the sender stalls; the default 4 MiB read-buffer limit
 * would reset it, so streams we read get this limit instead.
 */
export const STREAM_READ_BUFFER_BYTES = 32 * 1024 * 1024

const packr = new Packr({ useRecords: false, variableMapSize: true })
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' })

export function packMessage (value: unknown): Uint8Array {
  return packr.pack(value)
}

export function unpackMessage (bytes: Uint8Array, what: string): unknown {
  try {
    return unpackr.unpack(bytes)
  } catch (err) {
    throw new LumiereError('PROTOCOL', `${what}: not valid msgpack (${(err as Error).message})`)
  }
}

function abortReason (signal: AbortSignal): Error {
  const r: unknown = signal.reason
  return r instanceof Error ? r : new LumiereError('ABORTED', 'aborted')
}

/** Maps a stream-level failure to PEER_LOST unless it is already typed. */
export function streamError (err: unknown, what: string): LumiereError {
  if (err instanceof LumiereError) return err
  const name = err instanceof Error ? err.name : ''
  const message = err instanceof Error ? err.message : String(err)
  return new LumiereError('PEER_LOST', `${what}: ${name !== '' && name !== 'Error' ? `${name}: ` : ''}${message}`, { cause: err })
}

/**
 * Sends `data` (a view of the caller's bytes: nothing is copied here) in
 * chunks of at most SEND_CHUNK_BYTES, waiting for 'drain' whenever the
 * stream reports it is full.
 */
export async function sendAll (stream: Stream, data: Uint8Array, signal?: AbortSignal): Promise<void> {
  for (let at = 0; at < data.byteLength;) {
    signal?.throwIfAborted()
    const end = Math.min(at + SEND_CHUNK_BYTES, data.byteLength)
    let more: boolean
    try {
      more = stream.send(data.subarray(at, end))
    } catch (err) {
      throw streamError(err, 'stream closed while sending')
    }
    at = end
    if (!more) await waitDrain(stream, signal)
  }
}

/**
 * Waits for the stream's 'drain' event. Not `stream.onDrain()`: in
 * @libp2p/utils 7.x it caches one promise that is never reset, so after the
 * first drain it resolves at once forever and backpressure silently stops.
 */
async function waitDrain (stream: Stream, signal?: AbortSignal): Promise<void> {
  if (!stream.writableNeedsDrain) return
  if (stream.status !== 'open' || stream.writeStatus !== 'writable') throw new LumiereError('PEER_LOST', `stream ${stream.status} while sending`)
  signal?.throwIfAborted()
  await new Promise<void>((resolve, reject) => {
    const cleanup = (): void => {
      stream.removeEventListener('drain', onDrain)
      stream.removeEventListener('close', onClose)
      signal?.removeEventListener('abort', onAbort)
    }
    const onDrain = (): void => { cleanup(); resolve() }
    const onClose = (evt: Event & { error?: Error }): void => {
      cleanup()
      reject(streamError(evt.error ?? new Error('stream closed'), 'stream closed while sending'))
    }
    const onAbort = (): void => { cleanup(); reject(abortReason(signal as AbortSignal)) }
    stream.addEventListener('drain', onDrain)
    stream.addEventListener('close', onClose)
    signal?.addEventListener('abort', onAbort)
  })
}

/** Writes a u32 big-endian length prefix then `payload` as one send. */
export async function sendPrefixed (stream: Stream, payload: Uint8Array, signal?: AbortSignal): Promise<void> {
  const framed = new Uint8Array(4 + payload.byteLength)
  new DataView(framed.buffer).setUint32(0, payload.byteLength, false)
  framed.set(payload, 4)
  await sendAll(stream, framed, signal)
}

interface PendingRead {
  target: Uint8Array
  filled: number
  resolve: () => void
  reject: (err: Error) => void
}

/**
 * Pull-style reader over a v3 stream with bounded buffering (see the file
 * comment). Create it as soon as the stream exists, before any await, so no
 * data arrives without a listener.
 */
export class StreamReader {
  readonly stream: Stream
  private readonly queue: Uint8Array[] = []
  private queued = 0
  private pending: PendingRead | undefined
  private ended = false
  private failure: Error | undefined
  private readonly highWater: number
  private readonly onMessage: (evt: { data: Uint8Array | Uint8ArrayList }) => void
  private readonly onClose: (evt: Event & { error?: Error }) => void
  private readonly onRemoteCloseWrite: () => void

  constructor (stream: Stream, options: { highWaterBytes?: number } = {}) {
    this.stream = stream
    this.highWater = options.highWaterBytes ?? READ_HIGH_WATER_BYTES
    if (stream.maxReadBufferLength < STREAM_READ_BUFFER_BYTES) stream.maxReadBufferLength = STREAM_READ_BUFFER_BYTES
    this.onMessage = (evt) => { this.accept(evt.data) }
    this.onClose = (evt) => {
      if (evt.error != null) this.fail(evt.error)
      else this.end()
    }
    this.onRemoteCloseWrite = () => { this.end() }
    stream.addEventListener('message', this.onMessage)
    stream.addEventListener('close', this.onClose)
    stream.addEventListener('remoteCloseWrite', this.onRemoteCloseWrite)
    if (stream.remoteWriteStatus === 'closed') this.ended = true
  }

  /** Bytes received and not yet read (excluding what the stream itself holds while paused). */
  get bufferedBytes (): number {
    return this.queued
  }

  /** Reads exactly `n` bytes (a fresh copy). */
  async read (n: number, signal?: AbortSignal): Promise<Uint8Array> {
    const out = new Uint8Array(n)
    await this.readInto(out, signal)
    return out
  }

  /** Fills `target` completely with the next bytes of the stream. */
  async readInto (target: Uint8Array, signal?: AbortSignal): Promise<void> {
    if (this.pending != null) throw new Error('StreamReader: concurrent reads')
    const filled = this.drainQueueInto(target, 0)
    if (filled === target.byteLength) return
    if (this.failure != null) throw this.failure
    signal?.throwIfAborted()
    const p = Promise.withResolvers<void>()
    const pending: PendingRead = { target, filled, resolve: p.resolve, reject: p.reject }
    this.pending = pending
    const onAbort = (): void => {
      if (this.pending === pending) {
        this.pending = undefined
        p.reject(abortReason(signal as AbortSignal))
      }
    }
    signal?.addEventListener('abort', onAbort, { once: true })
    this.maybeResume()
    this.checkEnd()
    try {
      await p.promise
    } finally {
      signal?.removeEventListener('abort', onAbort)
    }
  }

  /** Stops listening; unread bytes are dropped. */
  release (): void {
    this.stream.removeEventListener('message', this.onMessage)
    this.stream.removeEventListener('close', this.onClose)
    this.stream.removeEventListener('remoteCloseWrite', this.onRemoteCloseWrite)
    this.queue.length = 0
    this.queued = 0
  }

  private eof (got: number, want: number): LumiereError {
    return new LumiereError('PEER_LOST', `the peer closed the stream after ${got} of ${want} expected bytes`)
  }

  private drainQueueInto (target: Uint8Array, filled: number): number {
    while (filled < target.byteLength && this.queue.length > 0) {
      const head = this.queue[0]
      const take = Math.min(head.byteLength, target.byteLength - filled)
      target.set(take === head.byteLength ? head : head.subarray(0, take), filled)
      filled += take
      this.queued -= take
      if (take === head.byteLength) this.queue.shift()
      else this.queue[0] = head.subarray(take)
    }
    return filled
  }

  private accept (data: Uint8Array | Uint8ArrayList): void {
    const chunks: Iterable<Uint8Array> = data instanceof Uint8Array ? [data] : data
    for (const chunk of chunks) {
      let c = chunk
      const p = this.pending
      if (p != null) {
        const take = Math.min(c.byteLength, p.target.byteLength - p.filled)
        p.target.set(take === c.byteLength ? c : c.subarray(0, take), p.filled)
        p.filled += take
        if (p.filled === p.target.byteLength) {
          this.pending = undefined
          p.resolve()
        }
        if (take === c.byteLength) continue
        c = c.subarray(take)
      }
      this.queue.push(c)
      this.queued += c.byteLength
    }
    if (this.queued > this.highWater && this.stream.readStatus === 'readable') {
      try { this.stream.pause() } catch {}
    }
    this.checkEnd()
  }

  private maybeResume (): void {
    if (this.stream.readStatus === 'paused' && this.queued <= this.highWater) {
      try { this.stream.resume() } catch {}
    }
  }

  private end (): void {
    this.ended = true
    this.checkEnd()
  }

  /** Fails a pending read that can no longer be satisfied: the remote closed and nothing is left to deliver. */
  private checkEnd (): void {
    const p = this.pending
    if (p == null || !this.ended || this.stream.readBufferLength > 0) return
    this.pending = undefined
    p.reject(this.eof(p.filled, p.target.byteLength))
  }

  private fail (err: Error): void {
    if (this.failure != null) return
    this.failure = streamError(err, 'stream reset')
    const p = this.pending
    if (p != null) {
      this.pending = undefined
      p.reject(this.failure)
    }
  }
}

/** Reads a u32 big-endian length prefix, checks it against `maxBytes`, then reads that many bytes. */
export async function readPrefixed (reader: StreamReader, maxBytes: number, what: string, signal?: AbortSignal): Promise<Uint8Array> {
  const head = await reader.read(4, signal)
  const n = new DataView(head.buffer, head.byteOffset, 4).getUint32(0, false)
  if (n > maxBytes) throw new LumiereError('TOO_LARGE', `${what} of ${n} bytes exceeds the ${maxBytes}-byte limit`)
  return await reader.read(n, signal)
}
