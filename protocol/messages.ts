/**
 * Wire messages of /lumiere/rpc/1.0.0: zod schemas, inferred types and the
 * parse functions that validate everything received from the network.
 *
 * Envelopes (msgpack, length-prefixed, see rpc.ts):
 *   request  { v: 1, id, type, deadline /* ms since epoch *\/, tensors /* frames that follow *\/, body }
 *   response { id, ok: true, tensors, body } | { id, ok: false, error: { code, message } }
 *
 * Every object is strict (unknown keys are rejected) so a typo on either side
 * fails loudly; strings, arrays and numbers are bounded by the constants below.
 */
import { z } from 'zod'
import { LumiereError } from '../src/errors.ts'
import type { Tensor } from '../src/tensor/tensor.ts'
import { WIRE_FORMATS } from '../src/tensor/wire.ts'
import { ENVELOPE_VERSION } from './ids.ts'

// ---------------------------------------------------------------- limits

/** Largest encoded envelope (request or response), in bytes. */
export const MAX_ENVELOPE_BYTES = 1024 * 1024
/** ids: request ids, job ids, run ids, content hashes. */
export const MAX_ID_LENGTH = 128
/** Graph value names and tensor names. */
export const MAX_NAME_LENGTH = 512
export const MAX_PEER_ID_LENGTH = 128
export const MAX_ADDR_LENGTH = 512
/** Multiaddrs given for one destination peer. */
export const MAX_ADDRS = 32
/** Stages in one job.setup, and the largest stage index. */
export const MAX_STAGES = 1024
/** Inputs, or outputs, of one stage. */
export const MAX_STAGE_VALUES = 4096
/** Destinations of one stage output. */
export const MAX_DESTINATIONS = 64
/** Tensor frames attached to one message. */
export const MAX_TENSORS = 1024
export const MAX_TYPE_LENGTH = 64
export const MAX_CODE_LENGTH = 64
export const MAX_MESSAGE_LENGTH = 4096
/** Short free-form strings: versions, execution provider names. */
export const MAX_SHORT_STRING = 128
export const MAX_EXECUTION_PROVIDERS = 32
export const MAX_CPUS = 65536
/** Job ids one heartbeat may lease, and the longest lease (ping). */
export const MAX_LEASED_JOBS = 256
export const MAX_LEASE_MS = 24 * 60 * 60 * 1000
/** Bytes one link probe may send (link.probe): enough for a bandwidth figure, bounded for a request from the network. */
export const MAX_PROBE_BYTES = 16 * 1024 * 1024

/**
 * ids and hashes: letters, digits and `_ - : .`, not "." or ".." (peers may
 * use them as file names, e.g. the stage cache keyed by hash).
 */
export const ID_PATTERN = /^(?!\.{1,2}$)[A-Za-z0-9_.:-]+$/
/** libp2p peer ids as strings (base58btc or base32 CID). */
export const PEER_ID_PATTERN = /^[A-Za-z0-9]+$/

// ---------------------------------------------------------------- building blocks

const id = z.string().min(1).max(MAX_ID_LENGTH).regex(ID_PATTERN, 'must be letters, digits, "_", "-", ":" or "." (not "." or "..")')
const hash = id
const peerId = z.string().min(1).max(MAX_PEER_ID_LENGTH).regex(PEER_ID_PATTERN, 'must be a peer id string')
const addr = z.string().min(1).max(MAX_ADDR_LENGTH).startsWith('/')
const valueName = z.string().min(1).max(MAX_NAME_LENGTH)
const shortString = z.string().min(1).max(MAX_SHORT_STRING)
const stageIndex = z.int().min(0).max(MAX_STAGES - 1)
const nonNegative = z.number().min(0)
const ok = z.strictObject({ ok: z.literal(true) })
const empty = z.strictObject({})

export const destinationSchema = z.union([
  z.strictObject({ peer: peerId, addrs: z.array(addr).max(MAX_ADDRS), stage: stageIndex }),
  z.strictObject({ coordinator: z.literal(true) })
])

export const stageOutputSchema = z.strictObject({
  name: valueName,
  to: z.array(destinationSchema).max(MAX_DESTINATIONS)
})

/**
 * Stylized stage (DESIGN §1): the peer blends the stage's covered spatial
 * weights as α·W_style + (1 − α)·W_orig, with the style tensors it cached
 * under `hash` (stage.put kind 'style'), and runs that blended graph.
 */
export const stageStyleSchema = z.strictObject({
  hash,
  alpha: z.number().min(0).max(1)
})

export const stageSpecSchema = z.strictObject({
  index: stageIndex,
  hash,
  inputs: z.array(valueName).max(MAX_STAGE_VALUES),
  outputs: z.array(stageOutputSchema).max(MAX_STAGE_VALUES),
  style: stageStyleSchema.optional(),
  /**
   * The coordinator's estimate of the stage's memory, bytes: parameters +
   * peak activations (plan.ts). A peer with a --memory budget checks it (and
   * its own count of the graph's parameters) before loading the stage.
   */
  estimatedBytes: z.number().min(0).max(Number.MAX_SAFE_INTEGER).optional()
})

/**
 * What stage.has / stage.put address: 'graph' (default) = a stage's ONNX
 * bytes; 'style' = the safetensors bytes of a stage's style tensors. Both
 * are keyed by the sha256 of the bytes, in separate namespaces.
 */
export const cacheKindSchema = z.enum(['graph', 'style'])

// ---------------------------------------------------------------- request bodies

export const requestSchemas = {
  /**
   * Also the coordinator's heartbeat (coordinator/liveness.ts): `lease` keeps
   * these jobs of the sender open on the peer for ttlMs more; a job leased
   * once is closed when its lease runs out (peer/jobs.ts).
   */
  ping: z.strictObject({
    lease: z.strictObject({ jobs: z.array(id).max(MAX_LEASED_JOBS), ttlMs: z.int().min(1_000).max(MAX_LEASE_MS) }).optional()
  }),
  capabilities: empty,
  /**
   * peer → coordinator (`lumiere peer --join`): the peer offers itself for
   * jobs; `addrs` are the addresses it listens on, relay circuits included.
   */
  join: z.strictObject({ addrs: z.array(addr).min(1).max(MAX_ADDRS) }),
  'stage.has': z.strictObject({ hash, kind: cacheKindSchema.optional() }),
  /**
   * + one attached U8 rank-1 tensor named 'model' holding the ONNX bytes
   * (kind 'graph', the default) or the style's safetensors bytes (kind 'style').
   */
  'stage.put': z.strictObject({ hash, kind: cacheKindSchema.optional() }),
  'job.setup': z.strictObject({
    jobId: id,
    stages: z.array(stageSpecSchema).min(1).max(MAX_STAGES),
    coordinator: peerId,
    /** 'f16' or 'bf16': float32 tensors travel as float16 or bfloat16 and are widened back before use (src/tensor/wire.ts). */
    wire: z.enum(WIRE_FORMATS).optional(),
    /** Every peer of the job: a peer that trusts only some coordinators (--trust) takes run.push for this job from these. */
    peers: z.array(peerId).max(MAX_STAGES).optional()
  }).superRefine((body, ctx) => {
    const seen = new Set<number>()
    body.stages.forEach((s, i) => {
      if (seen.has(s.index)) ctx.addIssue({ code: 'custom', path: ['stages', i, 'index'], message: `duplicate stage index ${s.index}` })
      seen.add(s.index)
    })
  }),
  /** stage -1 = delivery to the coordinator; + attached tensors named by graph value names. */
  'run.push': z.strictObject({ jobId: id, runId: id, stage: z.int().min(-1).max(MAX_STAGES - 1) }),
  /** peer → coordinator */
  'run.failed': z.strictObject({
    jobId: id,
    runId: id,
    stage: z.int().min(-1).max(MAX_STAGES - 1),
    code: z.string().min(1).max(MAX_CODE_LENGTH),
    message: z.string().max(MAX_MESSAGE_LENGTH)
  }),
  /** Busy time of this job's stages on the peer, for utilisation and pipeline efficiency. */
  'job.stats': z.strictObject({ jobId: id }),
  'job.close': z.strictObject({ jobId: id }),
  /** coordinator → peer: measure the link from this peer to peer `to` (rpc pings, then `bytes` through a tensor frame; peer/link-probe.ts). */
  'link.probe': z.strictObject({ to: peerId, addrs: z.array(addr).max(MAX_ADDRS), bytes: z.int().min(1).max(MAX_PROBE_BYTES) })
} as const

// ---------------------------------------------------------------- response bodies

export const responseSchemas = {
  ping: z.strictObject({ time: z.number() }),
  capabilities: z.strictObject({
    peerId,
    version: shortString,
    executionProviders: z.array(shortString).max(MAX_EXECUTION_PROVIDERS),
    memoryBytes: nonNegative,
    freeMemoryBytes: nonNegative,
    cpus: z.int().min(0).max(MAX_CPUS),
    /** measured GFLOP/s */
    speed: nonNegative,
    cachedStages: z.int().min(0)
  }),
  /** The addresses the coordinator gives the other peers of its jobs for this one (direct, or WebRTC through its relay). */
  join: z.strictObject({ addrs: z.array(addr).max(MAX_ADDRS) }),
  'stage.has': z.strictObject({ present: z.boolean() }),
  'stage.put': ok,
  'job.setup': ok,
  'run.push': ok,
  'run.failed': ok,
  'job.stats': z.strictObject({
    stages: z.array(z.strictObject({ index: stageIndex, runs: z.int().min(0), busyMs: nonNegative })).max(MAX_STAGES)
  }),
  'job.close': ok,
  /** bandwidth in bytes/s; latency in seconds, one way */
  'link.probe': z.strictObject({ bandwidth: z.number().positive(), latency: nonNegative })
} as const satisfies { [K in keyof typeof requestSchemas]: z.ZodType }

export type RequestType = keyof typeof requestSchemas
export const REQUEST_TYPES = Object.keys(requestSchemas) as RequestType[]

export type RequestBodies = { [K in RequestType]: z.infer<typeof requestSchemas[K]> }
export type ResponseBodies = { [K in RequestType]: z.infer<typeof responseSchemas[K]> }
export type RequestBody<T extends RequestType> = RequestBodies[T]
export type ResponseBody<T extends RequestType> = ResponseBodies[T]

export type Destination = z.infer<typeof destinationSchema>
export type StageOutput = z.infer<typeof stageOutputSchema>
export type StageSpec = z.infer<typeof stageSpecSchema>
export type StageStyle = z.infer<typeof stageStyleSchema>
export type CacheKind = z.infer<typeof cacheKindSchema>
export type PingRequest = RequestBodies['ping']
export type CapabilitiesResponse = ResponseBodies['capabilities']
export type JobSetupRequest = RequestBodies['job.setup']
export type RunPushRequest = RequestBodies['run.push']
export type RunFailedRequest = RequestBodies['run.failed']

export function isRequestType (value: unknown): value is RequestType {
  return typeof value === 'string' && Object.hasOwn(requestSchemas, value)
}

// ---------------------------------------------------------------- attached tensors

export interface TensorRule {
  min: number
  max: number
  /** exact names required, when set */
  names?: readonly string[]
  dtype?: Tensor['dtype']
  rank?: number
}

/** How many tensor frames each request type carries. */
export const REQUEST_TENSORS: Record<RequestType, TensorRule> = {
  ping: { min: 0, max: 0 },
  capabilities: { min: 0, max: 0 },
  join: { min: 0, max: 0 },
  'stage.has': { min: 0, max: 0 },
  'stage.put': { min: 1, max: 1, names: ['model'], dtype: 'U8', rank: 1 },
  'job.setup': { min: 0, max: 0 },
  'run.push': { min: 0, max: MAX_TENSORS },
  'run.failed': { min: 0, max: 0 },
  'job.stats': { min: 0, max: 0 },
  'job.close': { min: 0, max: 0 },
  'link.probe': { min: 0, max: 0 }
}

/** Checks the attached tensors of a received (or outgoing) request against its type. */
export function checkRequestTensors (type: RequestType, tensors: Record<string, Tensor>, code: 'PROTOCOL' | 'BAD_ARGUMENT' = 'PROTOCOL'): void {
  const rule = REQUEST_TENSORS[type]
  const names = Object.keys(tensors)
  if (names.length < rule.min || names.length > rule.max) {
    throw new LumiereError(code, `${type}: expected ${rule.min === rule.max ? rule.min : `${rule.min}..${rule.max}`} attached tensors, got ${names.length}`)
  }
  for (const name of names) {
    if (rule.names != null && !rule.names.includes(name)) throw new LumiereError(code, `${type}: unexpected attached tensor '${name}' (expected ${rule.names.map(n => `'${n}'`).join(', ')})`)
    const t = tensors[name]
    if (rule.dtype != null && t.dtype !== rule.dtype) throw new LumiereError(code, `${type}: tensor '${name}' must be ${rule.dtype}, got ${t.dtype}`)
    if (rule.rank != null && t.shape.length !== rule.rank) throw new LumiereError(code, `${type}: tensor '${name}' must have rank ${rule.rank}, got [${t.shape.join(', ')}]`)
  }
}

// ---------------------------------------------------------------- envelopes

export const requestEnvelopeSchema = z.strictObject({
  v: z.literal(ENVELOPE_VERSION),
  id,
  type: z.string().min(1).max(MAX_TYPE_LENGTH),
  deadline: z.number().positive(),
  tensors: z.int().min(0).max(MAX_TENSORS),
  body: z.unknown()
})

export const errorSchema = z.strictObject({
  code: z.string().min(1).max(MAX_CODE_LENGTH),
  message: z.string().max(MAX_MESSAGE_LENGTH)
})

export const responseEnvelopeSchema = z.discriminatedUnion('ok', [
  z.strictObject({ id: z.string().max(MAX_ID_LENGTH), ok: z.literal(true), tensors: z.int().min(0).max(MAX_TENSORS), body: z.unknown() }),
  z.strictObject({ id: z.string().max(MAX_ID_LENGTH), ok: z.literal(false), error: errorSchema })
])

export interface RequestEnvelope<T extends RequestType = RequestType> {
  v: typeof ENVELOPE_VERSION
  id: string
  type: T
  /** ms since the epoch; the server aborts the handler then */
  deadline: number
  /** number of tensor frames that follow the envelope */
  tensors: number
  body: RequestBodies[T]
}

/** A request envelope narrowed by `type`. */
export type AnyRequestEnvelope = { [T in RequestType]: RequestEnvelope<T> }[RequestType]

export interface WireError { code: string, message: string }

export type ResponseEnvelope<T extends RequestType = RequestType> =
  | { id: string, ok: true, tensors: number, body: ResponseBodies[T] }
  | { id: string, ok: false, error: WireError }

// ---------------------------------------------------------------- parsing

function formatPath (path: readonly PropertyKey[]): string {
  let out = ''
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`
    else out += out === '' ? String(p) : `.${String(p)}`
  }
  return out
}

interface FlatIssue { path: PropertyKey[], message: string }

/** Flattens zod issues, descending into the closest branch of a failed union. */
function flatten (issues: readonly z.core.$ZodIssue[], base: PropertyKey[] = []): FlatIssue[] {
  const out: FlatIssue[] = []
  for (const issue of issues) {
    const path = [...base, ...issue.path]
    if (issue.code === 'invalid_union' && issue.errors.length > 0) {
      const best = [...issue.errors].sort((a, b) => a.length - b.length)[0]
      out.push(...flatten(best, path))
    } else {
      out.push({ path, message: issue.message })
    }
  }
  return out
}

/** A readable one-line description naming the bad fields, e.g. `body.stages[0].hash: Too big: ...`. */
export function describeIssues (error: z.ZodError, prefix: PropertyKey[] = []): string {
  const flat = flatten(error.issues, prefix)
  const shown = flat.slice(0, 3).map(i => `${formatPath(i.path) || '(root)'}: ${i.message}`)
  if (flat.length > 3) shown.push(`and ${flat.length - 3} more`)
  return shown.join('; ')
}

/**
 * Validates a received request envelope and its body. Throws LumiereError
 * PROTOCOL naming the bad field, or UNKNOWN_REQUEST for a well-formed
 * envelope of a type this protocol version does not define.
 */
export function parseRequest (value: unknown): AnyRequestEnvelope {
  const env = requestEnvelopeSchema.safeParse(value)
  if (!env.success) throw new LumiereError('PROTOCOL', `bad request envelope: ${describeIssues(env.error)}`)
  const { type } = env.data
  if (!isRequestType(type)) throw new LumiereError('UNKNOWN_REQUEST', `unknown request type ${JSON.stringify(type)}`)
  const body = parseRequestBody(type, env.data.body)
  const rule = REQUEST_TENSORS[type]
  if (env.data.tensors < rule.min || env.data.tensors > rule.max) {
    throw new LumiereError('PROTOCOL', `bad request '${type}': tensors: expected ${rule.min === rule.max ? rule.min : `${rule.min}..${rule.max}`} attached tensors, got ${env.data.tensors}`)
  }
  return { ...env.data, type, body } as AnyRequestEnvelope
}

/** Validates a request body of a known type (PROTOCOL, or `code` for outgoing checks). */
export function parseRequestBody<T extends RequestType> (type: T, body: unknown, code: 'PROTOCOL' | 'BAD_ARGUMENT' = 'PROTOCOL'): RequestBodies[T] {
  const r = (requestSchemas[type] as z.ZodType).safeParse(body)
  if (!r.success) throw new LumiereError(code, `bad request '${type}': ${describeIssues(r.error, ['body'])}`)
  return r.data as RequestBodies[T]
}

/** Validates a response body of a known type (PROTOCOL, or `code` for a handler's own result). */
export function parseResponseBody<T extends RequestType> (type: T, body: unknown, code: 'PROTOCOL' | 'INTERNAL' = 'PROTOCOL'): ResponseBodies[T] {
  const r = (responseSchemas[type] as z.ZodType).safeParse(body)
  if (!r.success) throw new LumiereError(code, `bad response to '${type}': ${describeIssues(r.error, ['body'])}`)
  return r.data as ResponseBodies[T]
}

/** Validates a received response envelope to a request of `type`. Throws PROTOCOL naming the bad field. */
export function parseResponse<T extends RequestType> (type: T, value: unknown): ResponseEnvelope<T> {
  const env = responseEnvelopeSchema.safeParse(value)
  if (!env.success) throw new LumiereError('PROTOCOL', `bad response envelope to '${type}': ${describeIssues(env.error)}`)
  if (!env.data.ok) return env.data
  return { ...env.data, body: parseResponseBody(type, env.data.body) }
}
