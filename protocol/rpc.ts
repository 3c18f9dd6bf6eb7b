/**
 * Request/response over /lumiere/rpc/1.0.0, one request per stream.
 *
 *   client → server: [u32 len][msgpack request envelope] then `tensors` tensor frames, then half-close
 *   server → client: [u32 len][msgpack response envelope] then `tensors` tensor frames, then half-close
 *
 * Every received envelope is validated (messages.ts), sizes are bounded before
 * anything is allocated, and every wait is bounded by a deadline. Errors that
 * cross the wire carry a stable code; the client rethrows them as
 * LumiereError with that code (PEER_ERROR when the code is not one of ours).
 */
import { randomBytes } from 'node:crypto'
import { LumiereError, isErrorCode } from '../src/errors.ts'
import type { Tensor } from '../src/tensor/tensor.ts'
import type { Connection, Libp2p, PeerId, Stream } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { ENVELOPE_VERSION, RPC_PROTOCOL } from './ids.ts'
import {
  MAX_CODE_LENGTH, MAX_ENVELOPE_BYTES, MAX_ID_LENGTH, MAX_MESSAGE_LENGTH, MAX_TENSORS,
  checkRequestTensors, parseRequest, parseRequestBody, parseResponse, parseResponseBody
} from './messages.ts'
import type { RequestBodies, RequestType, ResponseBodies, ResponseEnvelope, WireError } from './messages.ts'
import { StreamReader, packMessage, readPrefixed, sendPrefixed, streamError, unpackMessage } from './stream-io.ts'
import { readTensorFrame, writeTensorFrame } from './tensor-frame.ts'
import type { TensorFrameHeader } from './tensor-frame.ts'

export const DEFAULT_RPC_TIMEOUT_MS = 60_000
/** Default bound on the total bytes of tensors attached to one message. */
export const DEFAULT_MAX_TENSOR_BYTES = 1024 * 1024 * 1024
export const DEFAULT_MAX_CONCURRENT = 64
export const DEFAULT_MAX_INBOUND_STREAMS = 128
export const DEFAULT_MAX_OUTBOUND_STREAMS = 256
export const DEFAULT_ENVELOPE_TIMEOUT_MS = 10_000
export const DEFAULT_MAX_DEADLINE_MS = 60 * 60 * 1000
/** Time allowed to deliver an error reply before the stream is reset. */
const ERROR_REPLY_TIMEOUT_MS = 5_000

/** The parts of a libp2p node the RPC layer uses (a MeshNode fits). */
export type RpcNode = Pick<Libp2p, 'dialProtocol' | 'handle' | 'unhandle'>
export type RpcTarget = PeerId | Multiaddr | Multiaddr[]

// ============================================================== client

export interface RpcCallOptions {
  /** Tensors attached to the request (sent as views of their bytes: keep them unchanged until the call settles). */
  tensors?: Record<string, Tensor>
  /** Aborting it rejects the call with ABORTED and resets the stream. */
  signal?: AbortSignal
  /** Bounds dial + write + server work + read (default 60 s); sent to the server as the request deadline. */
  timeoutMs?: number
  /** Bound on the total bytes of tensors in the response (default 1 GiB). */
  maxTensorBytes?: number
  /** Allocates each response tensor's buffer (see ReadFrameOptions.allocate; default: fresh memory). */
  allocate?: TensorAllocator
}

/** Hands out the buffer a received tensor is read into: exactly byteLength bytes, not in use elsewhere. */
export type TensorAllocator = (byteLength: number, header: TensorFrameHeader) => Uint8Array

export interface RpcResult<T extends RequestType> {
  body: ResponseBodies[T]
  tensors: Record<string, Tensor>
}

/**
 * Sends one request and waits for its response.
 *
 * Throws LumiereError: PEER_UNREACHABLE (dial failed), PROTOCOL (the peer does
 * not speak this protocol version, or sent something malformed),
 * DEADLINE_EXCEEDED (timeoutMs passed), ABORTED (options.signal), PEER_LOST
 * (the stream or connection died mid-call), TOO_LARGE (a response tensor over
 * maxTensorBytes), BAD_ARGUMENT (the request itself is invalid, nothing sent),
 * or the remote's error code (PEER_ERROR when it is not a code we know).
 */
export async function rpcCall<T extends RequestType> (
  node: Pick<Libp2p, 'dialProtocol'>,
  target: RpcTarget,
  type: T,
  body: RequestBodies[T],
  options: RpcCallOptions = {}
): Promise<RpcResult<T>> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_RPC_TIMEOUT_MS
  if (typeof timeoutMs !== 'number' || !(timeoutMs > 0) || !Number.isFinite(timeoutMs)) throw new LumiereError('BAD_ARGUMENT', `rpc ${type}: timeoutMs must be a positive number`)
  const maxTensorBytes = options.maxTensorBytes ?? DEFAULT_MAX_TENSOR_BYTES
  const tensors = options.tensors ?? {}
  const checkedBody = parseRequestBody(type, body, 'BAD_ARGUMENT')
  checkRequestTensors(type, tensors, 'BAD_ARGUMENT')
  const entries = Object.entries(tensors)
  if (entries.length > MAX_TENSORS) throw new LumiereError('BAD_ARGUMENT', `rpc ${type}: more than ${MAX_TENSORS} tensors`)

  const where = `${type} to ${describeTarget(target)}`
  if (options.signal?.aborted === true) throw new LumiereError('ABORTED', `${where}: aborted`)
  const controller = new AbortController()
  const signal = controller.signal
  const timer = setTimeout(() => {
    controller.abort(new LumiereError('DEADLINE_EXCEEDED', `${where}: no answer within ${timeoutMs} ms`))
  }, timeoutMs)
  const onCallerAbort = (): void => { controller.abort(new LumiereError('ABORTED', `${where}: aborted`)) }
  options.signal?.addEventListener('abort', onCallerAbort, { once: true })
  const deadline = Date.now() + timeoutMs

  let stream: Stream | undefined
  let reader: StreamReader | undefined
  try {
    try {
      stream = await node.dialProtocol(target, RPC_PROTOCOL, { signal, maxOutboundStreams: DEFAULT_MAX_OUTBOUND_STREAMS })
    } catch (err) {
      if (signal.aborted) throw signal.reason
      if (err instanceof Error && err.name === 'UnsupportedProtocolError') {
        throw new LumiereError('PROTOCOL', `${where}: the peer does not speak ${RPC_PROTOCOL} (incompatible version?)`, { cause: err })
      }
      throw new LumiereError('PEER_UNREACHABLE', `${where}: cannot dial: ${(err as Error)?.message ?? String(err)}`, { cause: err })
    }
    const s = stream
    reader = new StreamReader(s)
    const id = randomBytes(8).toString('hex')

    const writing = (async () => {
      await sendPrefixed(s, packEnvelope({ v: ENVELOPE_VERSION, id, type, deadline, tensors: entries.length, body: checkedBody }), signal)
      for (const [name, t] of entries) await writeTensorFrame(s, name, t, { signal })
      await s.close({ signal })
    })()
    const written = writing.then(() => undefined, (err: unknown) => err)

    let response: { env: ResponseEnvelope<T>, tensors: Record<string, Tensor> }
    try {
      response = await readResponse(reader, type, id, maxTensorBytes, signal, options.allocate)
    } catch (err) {
      if (signal.aborted) throw signal.reason
      throw err
    }
    if (!response.env.ok) {
      const { code, message } = response.env.error
      if (s.writeStatus !== 'closed') s.abort(new Error(`request rejected: ${code}`))
      throw isErrorCode(code)
        ? new LumiereError(code, message)
        : new LumiereError('PEER_ERROR', `${code}: ${message}`)
    }
    const writeError = await written
    if (writeError != null) throw signal.aborted ? signal.reason : writeError
    return { body: response.env.body, tensors: response.tensors }
  } catch (err) {
    const typed = err instanceof LumiereError ? err : streamError(err, where)
    if (stream != null && stream.status === 'open') stream.abort(typed)
    throw typed
  } finally {
    clearTimeout(timer)
    options.signal?.removeEventListener('abort', onCallerAbort)
    reader?.release()
  }
}

async function readResponse<T extends RequestType> (reader: StreamReader, type: T, id: string, maxTensorBytes: number, signal: AbortSignal, allocate?: TensorAllocator): Promise<{ env: ResponseEnvelope<T>, tensors: Record<string, Tensor> }> {
  const raw = unpackMessage(await readPrefixed(reader, MAX_ENVELOPE_BYTES, 'response envelope', signal), 'response envelope')
  const env = parseResponse(type, raw)
  if (env.id !== id && !(!env.ok && env.id === '')) throw new LumiereError('PROTOCOL', `response id ${JSON.stringify(env.id)} does not match request id ${id}`)
  const tensors: Record<string, Tensor> = {}
  if (env.ok) await readTensors(reader, env.tensors, maxTensorBytes, tensors, signal, allocate)
  return { env, tensors }
}

async function readTensors (reader: StreamReader, count: number, maxTensorBytes: number, into: Record<string, Tensor>, signal: AbortSignal, allocate?: TensorAllocator): Promise<void> {
  let budget = maxTensorBytes
  for (let i = 0; i < count; i++) {
    const { name, tensor } = await readTensorFrame(reader, { maxBytes: budget, signal, ...(allocate != null ? { allocate } : {}) })
    if (Object.hasOwn(into, name)) throw new LumiereError('PROTOCOL', `tensor '${name}' attached twice`)
    Object.defineProperty(into, name, { value: tensor, enumerable: true, writable: true, configurable: true })
    budget -= tensor.data.byteLength
  }
}

function packEnvelope (value: unknown): Uint8Array {
  const bytes = packMessage(value)
  if (bytes.byteLength > MAX_ENVELOPE_BYTES) throw new LumiereError('TOO_LARGE', `envelope of ${bytes.byteLength} bytes exceeds ${MAX_ENVELOPE_BYTES}`)
  return bytes
}

function describeTarget (target: RpcTarget): string {
  if (Array.isArray(target)) return target.length > 0 ? target[0].toString() : '(no address)'
  return target.toString()
}

// ============================================================== server

export interface RpcRequest<T extends RequestType> {
  id: string
  type: T
  body: RequestBodies[T]
  tensors: Record<string, Tensor>
  /** The remote peer (authenticated by the connection's encryption). */
  from: PeerId
  /** Aborted at the request deadline (DEADLINE_EXCEEDED), when the caller goes away (PEER_LOST) or the server closes (ABORTED). */
  signal: AbortSignal
  /** ms since the epoch, as sent by the caller (capped by maxDeadlineMs). */
  deadline: number
}

export interface RpcReply<T extends RequestType> {
  body: ResponseBodies[T]
  tensors?: Record<string, Tensor>
}

export type RpcHandler<T extends RequestType> = (req: RpcRequest<T>) => Promise<RpcReply<T>>
export type RpcHandlers = { [T in RequestType]?: RpcHandler<T> }

export interface HandleRpcOptions {
  /** Bound on the total bytes of tensors attached to one request (default 1 GiB); over it → TOO_LARGE, before allocation. */
  maxTensorBytes?: number
  /** Requests handled at once on this node (default 64); more → BUSY. */
  maxConcurrent?: number
  /** libp2p limit on open inbound rpc streams per connection (default 128); excess streams are reset. */
  maxInboundStreams?: number
  /** Time allowed for a request envelope to arrive after the stream opens (default 10 s). */
  envelopeTimeoutMs?: number
  /** Deadlines further than this in the future are shortened to it (default 1 h). */
  maxDeadlineMs?: number
  /** Called with unexpected (non-LumiereError) handler failures, which the caller only sees as INTERNAL. */
  onError?: (err: unknown, context: { type: string, from: PeerId }) => void
  /**
   * Decides whether `from` may make this (validated) request; throw a
   * LumiereError (e.g. UNTRUSTED) to refuse it. Runs before the BUSY check
   * and before any attached tensor is read, so a refused upload costs
   * nothing. Default: everything is allowed.
   */
  authorize?: (req: { type: RequestType, body: unknown, from: PeerId }) => void | Promise<void>
  /** Allocates each request tensor's buffer (see ReadFrameOptions.allocate; default: fresh memory). */
  allocate?: TensorAllocator
}

export interface RpcServer {
  /** Requests being handled right now (whole node). */
  readonly active: number
  /** Removes this call's handlers (and the protocol when none are left) and aborts their in-flight requests. */
  close: () => Promise<void>
}

interface Dispatcher {
  node: RpcNode
  handlers: Map<RequestType, { handler: RpcHandler<any>, owner: object }>
  options: Required<Omit<HandleRpcOptions, 'onError' | 'authorize' | 'allocate'>> & Pick<HandleRpcOptions, 'onError' | 'authorize' | 'allocate'>
  active: number
  inflight: Set<{ owner: object, controller: AbortController }>
  registered: Promise<void> | undefined
}

const dispatchers = new WeakMap<object, Dispatcher>()

/**
 * Serves rpc requests on `node`. Several calls on one node add handlers to the
 * same protocol registration (a type may be handled only once); the options
 * of the first call apply. Await it: the protocol is registered when it resolves.
 */
export async function handleRpc (node: RpcNode, handlers: RpcHandlers, options: HandleRpcOptions = {}): Promise<RpcServer> {
  let d = dispatchers.get(node)
  if (d == null) {
    d = {
      node,
      handlers: new Map(),
      options: {
        maxTensorBytes: options.maxTensorBytes ?? DEFAULT_MAX_TENSOR_BYTES,
        maxConcurrent: options.maxConcurrent ?? DEFAULT_MAX_CONCURRENT,
        maxInboundStreams: options.maxInboundStreams ?? DEFAULT_MAX_INBOUND_STREAMS,
        envelopeTimeoutMs: options.envelopeTimeoutMs ?? DEFAULT_ENVELOPE_TIMEOUT_MS,
        maxDeadlineMs: options.maxDeadlineMs ?? DEFAULT_MAX_DEADLINE_MS,
        onError: options.onError,
        authorize: options.authorize,
        allocate: options.allocate
      },
      active: 0,
      inflight: new Set(),
      registered: undefined
    }
    dispatchers.set(node, d)
  }
  const dispatcher = d
  const owner = {}
  for (const [type, handler] of Object.entries(handlers) as Array<[RequestType, RpcHandler<any> | undefined]>) {
    if (handler == null) continue
    if (dispatcher.handlers.has(type)) throw new LumiereError('BAD_ARGUMENT', `an rpc handler for '${type}' is already registered on this node`)
  }
  for (const [type, handler] of Object.entries(handlers) as Array<[RequestType, RpcHandler<any> | undefined]>) {
    if (handler != null) dispatcher.handlers.set(type, { handler, owner })
  }
  if (dispatcher.registered == null) {
    dispatcher.registered = node.handle(RPC_PROTOCOL, (stream, connection) => serve(dispatcher, stream, connection), {
      maxInboundStreams: dispatcher.options.maxInboundStreams,
      maxOutboundStreams: DEFAULT_MAX_OUTBOUND_STREAMS
    })
  }
  try {
    await dispatcher.registered
  } catch (err) {
    for (const [type, h] of dispatcher.handlers) if (h.owner === owner) dispatcher.handlers.delete(type)
    dispatcher.registered = undefined
    throw err
  }

  return {
    get active () { return dispatcher.active },
    close: async () => {
      for (const [type, h] of dispatcher.handlers) if (h.owner === owner) dispatcher.handlers.delete(type)
      for (const f of dispatcher.inflight) {
        if (f.owner === owner) f.controller.abort(new LumiereError('ABORTED', 'the rpc server is closing'))
      }
      if (dispatcher.handlers.size === 0 && dispatcher.registered != null) {
        dispatcher.registered = undefined
        dispatchers.delete(node)
        await node.unhandle(RPC_PROTOCOL)
      }
    }
  }
}

function errorMessageOf (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

function toWireError (err: unknown, type: string): WireError {
  if (err instanceof LumiereError) {
    return { code: err.code.slice(0, MAX_CODE_LENGTH), message: err.message.slice(0, MAX_MESSAGE_LENGTH) }
  }
  // No stack, and only the message of an unexpected error.
  return { code: 'INTERNAL', message: `internal error handling '${type}': ${errorMessageOf(err)}`.slice(0, MAX_MESSAGE_LENGTH) }
}

async function serve (d: Dispatcher, stream: Stream, connection: Connection): Promise<void> {
  const from = connection.remotePeer
  const reader = new StreamReader(stream)
  let id = ''
  let type = '?'
  let counted = false
  let flight: { owner: object, controller: AbortController } | undefined
  let timer: ReturnType<typeof setTimeout> | undefined
  // Any 'close' before we have replied means the reply can no longer be delivered.
  const onStreamClose = (): void => {
    flight?.controller.abort(new LumiereError('PEER_LOST', `the caller of '${type}' went away`))
  }
  stream.addEventListener('close', onStreamClose)
  try {
    // 1. the envelope, within envelopeTimeoutMs
    const envelopeSignal = AbortSignal.timeout(d.options.envelopeTimeoutMs)
    let raw: unknown
    try {
      raw = unpackMessage(await readPrefixed(reader, MAX_ENVELOPE_BYTES, 'request envelope', envelopeSignal), 'request envelope')
    } catch (err) {
      if (envelopeSignal.aborted) throw new LumiereError('DEADLINE_EXCEEDED', `no request envelope within ${d.options.envelopeTimeoutMs} ms`)
      throw err
    }
    if (typeof raw === 'object' && raw !== null) {
      const r = raw as Record<string, unknown>
      if (typeof r.id === 'string' && r.id.length <= MAX_ID_LENGTH) id = r.id
      if (typeof r.type === 'string') type = r.type.slice(0, 64)
    }
    const req = parseRequest(raw)
    const entry = d.handlers.get(req.type)
    if (entry == null) throw new LumiereError('UNKNOWN_REQUEST', `this node does not handle '${req.type}'`)
    if (d.options.authorize != null) await d.options.authorize({ type: req.type, body: req.body, from })
    const now = Date.now()
    if (req.deadline <= now) throw new LumiereError('DEADLINE_EXCEEDED', `'${req.type}' arrived ${now - req.deadline} ms after its deadline (check the clocks of both hosts)`)
    if (d.active >= d.options.maxConcurrent) throw new LumiereError('BUSY', `this node is handling ${d.active} requests (limit ${d.options.maxConcurrent}); retry later`)
    d.active++
    counted = true

    // 2. a deadline for everything that follows
    const deadline = Math.min(req.deadline, now + d.options.maxDeadlineMs)
    const controller = new AbortController()
    flight = { owner: entry.owner, controller }
    d.inflight.add(flight)
    const signal = controller.signal
    timer = setTimeout(() => {
      controller.abort(new LumiereError('DEADLINE_EXCEEDED', `'${req.type}' passed its deadline`))
    }, deadline - now)

    // 3. the attached tensors, bounded in total
    const tensors: Record<string, Tensor> = {}
    try {
      await readTensors(reader, req.tensors, d.options.maxTensorBytes, tensors, signal, d.options.allocate)
    } catch (err) {
      if (signal.aborted) throw signal.reason
      throw err
    }
    checkRequestTensors(req.type, tensors)

    // 4. the handler
    let reply: RpcReply<RequestType>
    try {
      reply = await entry.handler({ id: req.id, type: req.type, body: req.body, tensors, from, signal, deadline })
    } catch (err) {
      if (!(err instanceof LumiereError)) {
        if (signal.aborted) throw signal.reason
        d.options.onError?.(err, { type: req.type, from })
      }
      throw err
    }
    if (signal.aborted) throw signal.reason
    const replyTensors = Object.entries(reply?.tensors ?? {})
    let replyBody: unknown
    try {
      replyBody = parseResponseBody(req.type, reply?.body, 'INTERNAL')
      if (replyTensors.length > MAX_TENSORS) throw new LumiereError('INTERNAL', `'${req.type}' handler returned more than ${MAX_TENSORS} tensors`)
    } catch (err) {
      d.options.onError?.(err, { type: req.type, from })
      throw err
    }

    // 5. the response
    const envelope = packEnvelope({ id: req.id, ok: true, tensors: replyTensors.length, body: replyBody })
    try {
      await sendPrefixed(stream, envelope, signal)
      for (const [name, t] of replyTensors) await writeTensorFrame(stream, name, t, { signal })
      await stream.close({ signal })
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    }
  } catch (err) {
    await replyError(stream, id, toWireError(err, type))
  } finally {
    clearTimeout(timer)
    if (counted) d.active--
    if (flight != null) d.inflight.delete(flight)
    stream.removeEventListener('close', onStreamClose)
    reader.release()
  }
}

async function replyError (stream: Stream, id: string, error: WireError): Promise<void> {
  if (stream.status !== 'open' || stream.writeStatus !== 'writable') {
    if (stream.status === 'open') stream.abort(new Error(error.message))
    return
  }
  const signal = AbortSignal.timeout(ERROR_REPLY_TIMEOUT_MS)
  try {
    await sendPrefixed(stream, packMessage({ id, ok: false, error }), signal)
    await stream.close({ signal })
  } catch {}
  // If the caller is still uploading (e.g. a rejected 1 GiB tensor), reset rather than drain it.
  if (stream.status === 'open') stream.abort(new Error(`request rejected: ${error.code}`))
}
