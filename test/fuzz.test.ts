// Hostile input against a LIVE peer process: ≥ 10,000 malformed rpc streams
// (random bytes, truncated and huge length prefixes, msgpack of the wrong
// shape, unknown request types, tensor frames with bad dtypes, overflowing
// shapes, terabyte lengths, truncated payloads, stage graphs that are not
// ONNX / use unknown operators / have cycles / point at external files) sent
// concurrently while a legitimate job runs on the same peer. Every input must
// be answered with a typed error or a closed/reset stream within its
// deadline; the legitimate runs must stay correct; the peer must survive with
// bounded memory.
import { mkdtemp, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { multiaddr } from '@multiformats/multiaddr'
import { Coordinator } from '../coordinator/coordinator.ts'
import { deploy } from '../coordinator/deploy.ts'
import { spawnPeer } from '../coordinator/local-mesh.ts'
import { stageHash } from '../peer/stage-cache.ts'
import { ENVELOPE_VERSION, RPC_PROTOCOL } from '../protocol/ids.ts'
import { rpcCall } from '../protocol/rpc.ts'
import { packMessage, unpackMessage } from '../protocol/stream-io.ts'
import { parseRequest } from '../protocol/messages.ts'
import { isErrorCode } from '../src/errors.ts'
import { createMeshNode, loopbackListen } from '../src/mesh/node.ts'
import { GraphBuilder } from '../src/onnx/builder.ts'
import { buildDagProbed } from '../src/onnx/graph.ts'
import { encodeModel } from '../src/onnx/model-io.ts'
import { runModel } from '../src/onnx/run.ts'
import { mulberry32 } from '../src/util/prng.ts'
import { convSkipNet, randomInputs } from './fixtures/graphs.ts'
import { maxAbs, maxAbsDiff } from './fixtures/stages.ts'
import type { Stream } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { MeshNode } from '../src/mesh/node.ts'

const TOTAL = Number(process.env.LUMIERE_FUZZ_CASES ?? 10_000)
const SEED = Number(process.env.LUMIERE_FUZZ_SEED ?? 20240611)
/** Streams in flight per fuzzing client (each client is one connection; the peer allows 128 streams per connection). */
const IN_FLIGHT = 12
const CLIENTS = 4
const DEADLINE_MS = 20_000
/** Streams that send part of an envelope and then nothing: the peer must time them out (10 s). */
const STALLS = 8

type Outcome = 'error' | 'ok' | 'reset' | 'closed' | 'hang' | 'garbage' | 'refused'

interface Case {
  cat: string
  chunks: Uint8Array[]
  /** Half-close after sending (default true); false = stall. */
  close?: boolean
  /** An ok reply is acceptable for this case (it is a valid request). */
  okAllowed?: boolean
  /** Runs after the case's reply arrived (a follow-up request that depends on it). */
  then?: Case
}

// ---------------------------------------------------------------- byte builders

const rand = mulberry32(SEED)
const int = (n: number): number => Math.floor(rand() * n)
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]
const randomBytes = (n: number): Uint8Array => Uint8Array.from({ length: n }, () => int(256))
const u32 = (n: number): Uint8Array => { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, n >>> 0, false); return b }
const concat = (...parts: Uint8Array[]): Uint8Array => { const out = new Uint8Array(parts.reduce((s, p) => s + p.byteLength, 0)); let at = 0; for (const p of parts) { out.set(p, at); at += p.byteLength } return out }
const prefixed = (b: Uint8Array): Uint8Array => concat(u32(b.byteLength), b)
const pack = (v: unknown): Uint8Array => packMessage(v)
let ids = 0
const envelope = (type: unknown, body: unknown, tensors = 0, extra: Record<string, unknown> = {}): Record<string, unknown> =>
  ({ v: ENVELOPE_VERSION, id: `fz${++ids}`, type, deadline: Date.now() + 60_000, tensors, body, ...extra })
const req = (type: unknown, body: unknown, tensors = 0, extra: Record<string, unknown> = {}): Uint8Array => prefixed(pack(envelope(type, body, tensors, extra)))
const frame = (header: unknown, payload: Uint8Array = new Uint8Array(0)): Uint8Array => concat(prefixed(pack(header)), payload)

const PEER_ID = '12D3KooWJzt3KqdpWgpoxwriVrMqxJkeRUSN1m6v2pdxXttBvi5T'
const DTYPE_SIZES = { F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, U8: 1, BOOL: 1 } as const
/** Values of the wrong type for any field (no `{}`: that is a valid empty body). */
const WEIRD = [null, true, false, -1, 0, 1.5, 2 ** 53, -(2 ** 63), Infinity, NaN, '', 'x'.repeat(5000), [], [1, 2], { a: 1 }, { '': null }, new Uint8Array(3)]
const VALID_BODIES: Record<string, Record<string, unknown>> = {
  ping: {},
  capabilities: {},
  'stage.has': { hash: 'a'.repeat(64) },
  'stage.put': { hash: 'a'.repeat(64) },
  'job.setup': { jobId: 'j', coordinator: PEER_ID, stages: [{ index: 0, hash: 'a'.repeat(64), inputs: ['x'], outputs: [] }] },
  'run.push': { jobId: 'nojob', runId: 'r', stage: 0 },
  'run.failed': { jobId: 'j', runId: 'r', stage: 0, code: 'X', message: 'm' },
  'job.stats': { jobId: 'nojob' },
  'job.close': { jobId: 'nojob' }
}
const TYPES = Object.keys(VALID_BODIES)

function mutateBody (body: Record<string, unknown>): unknown {
  const b: Record<string, unknown> = structuredClone(body)
  const keys = Object.keys(b)
  switch (int(5)) {
    case 0: if (keys.length > 0) { delete b[pick(keys)]; return b } return { extra: 1 }
    case 1: b[`extra${int(9)}`] = pick(WEIRD); return b
    case 2: if (keys.length > 0) { b[pick(keys)] = pick(WEIRD); return b } return pick(WEIRD)
    case 3: return pick(WEIRD)
    default: {
      if (b.stages != null) {
        const s = { ...(b.stages as Array<Record<string, unknown>>)[0] }
        s[pick(['index', 'hash', 'inputs', 'outputs', 'style', 'estimatedBytes', 'bogus'])] = pick([...WEIRD, -5, 5000, [{ name: 'y', to: [{ peer: 'x', addrs: ['nope'], stage: 1 }] }]])
        b.stages = [s]
        return b
      }
      if (keys.length === 0) return { [pick(['x', 'hash', 'jobId'])]: 'y' }
      b[pick(keys)] = 'x'.repeat(200 + int(400))
      return b
    }
  }
}

/**
 * Whether a mutated envelope happens to be valid after all (a wrong-typed
 * value that is right for that field, a far-future deadline the peer caps, a
 * `__proto__` key msgpackr never makes an own key): then an ok reply is fine.
 */
function validLocally (bytes: Uint8Array): boolean {
  try {
    const env = parseRequest(unpackMessage(bytes, 'envelope'))
    return env.deadline > Date.now() + 1000
  } catch {
    return false
  }
}

/** A valid stage graph (mutated to be hostile in one of a few ways), as ONNX bytes. */
function graphBytes (kind: 'unknown-op' | 'cycle' | 'external' | 'no-output' | 'bad-type'): Uint8Array {
  const g = new GraphBuilder(`fuzz${int(1e9)}`)
  const x = g.input('x', 'F32', [1, 4])
  if (kind === 'unknown-op') {
    g.output(g.op(`NoSuchOp${int(1e6)}`, [x]), 'F32', [1, 4])
  } else if (kind === 'cycle') {
    g.node('Relu', ['t2'], {}, ['t1'])
    g.node('Add', ['t1', x], {}, ['t2'])
    g.output('t1', 'F32', [1, 4])
  } else if (kind === 'bad-type') {
    g.output(g.op('MatMul', [x, g.init('w', new Float32Array(15), [3, 5])]), 'F32', [1, 5])
  } else {
    g.output(g.op('Relu', [x]), 'F32', [1, 4])
  }
  const model = g.model()
  if (kind === 'external') {
    model.graph!.initializer = [{ name: 'w', dims: [4], dataType: 1, dataLocation: 1, externalData: [{ key: 'location', value: pick(['/etc/passwd', '../../secret.bin', 'weights.bin']) }, { key: 'length', value: '16' }] }]
    model.graph!.node!.push({ opType: 'Add', input: [model.graph!.output![0].name!, 'w'], output: ['z'] })
    model.graph!.output = [{ name: 'z' }]
  }
  if (kind === 'no-output') model.graph!.output = []
  return encodeModel(model)
}

const stagePut = (bytes: Uint8Array, hash = stageHash(bytes)): Uint8Array =>
  concat(req('stage.put', { hash }, 1), frame({ name: 'model', dtype: 'U8', shape: [bytes.byteLength], byteLength: bytes.byteLength }, bytes))

const jobSetup = (hash: string, jobId = `fj${int(1e9)}`): Uint8Array =>
  req('job.setup', { jobId, coordinator: PEER_ID, stages: [{ index: 0, hash, inputs: ['x'], outputs: [{ name: pick(['y', 't1', 'z']), to: [{ coordinator: true }] }] }] })

/** A hostile tensor frame header (and maybe payload) after a valid run.push envelope. */
function badFrame (): { cat: string, bytes: Uint8Array } {
  const head = req('run.push', { jobId: 'nojob', runId: 'r', stage: 0 }, 1 + int(2))
  const name = 'x'
  switch (int(12)) {
    case 0: return { cat: 'frame-bad-dtype', bytes: concat(head, frame({ name, dtype: pick(['F64', 'f32', 'STRING', 'object', 5, null, '__proto__']), shape: [2], byteLength: 8 }, new Uint8Array(8))) }
    case 1: return { cat: 'frame-shape-overflow', bytes: concat(head, frame({ name, dtype: 'F32', shape: pick([[2 ** 40, 2 ** 40], [2 ** 53, 2], [2 ** 26, 2 ** 26, 2 ** 26]]), byteLength: 0 })) }
    case 2: return { cat: 'frame-bad-shape', bytes: concat(head, frame({ name, dtype: 'U8', shape: pick([[-1], [1.5], ['a'], [null], 'abc', 7, {}, Array(65).fill(1), [NaN]]), byteLength: 1 }, new Uint8Array(1))) }
    case 3: return { cat: 'frame-bytelength-mismatch', bytes: concat(head, frame({ name, dtype: 'F32', shape: [4], byteLength: pick([15, 17, 0, -16, '16', 1e300]) }, new Uint8Array(16))) }
    case 4: { // terabytes declared, consistent with the shape
      const n = pick([2 ** 40, 3 * 2 ** 40, 2 ** 50])
      return { cat: 'frame-terabytes', bytes: concat(head, frame({ name, dtype: 'U8', shape: [n], byteLength: n }, randomBytes(64))) }
    }
    case 5: { // a truncated payload: declared, then EOF
      const n = pick([1024, 65536, 4 * 1024 * 1024])
      return { cat: 'frame-truncated-payload', bytes: concat(head, frame({ name, dtype: 'U8', shape: [n], byteLength: n }, randomBytes(int(Math.min(n, 4096))))) }
    }
    case 6: return { cat: 'frame-header-huge-prefix', bytes: concat(head, u32(pick([16 * 1024 + 1, 2 ** 31, 0xffffffff])), randomBytes(int(64))) }
    case 7: return { cat: 'frame-header-not-msgpack', bytes: concat(head, prefixed(concat(new Uint8Array([0xc1]), randomBytes(int(32))))) }
    case 8: return { cat: 'frame-header-extra-field', bytes: concat(head, frame({ name, dtype: 'U8', shape: [1], byteLength: 1, [pick(['evil', '__proto__', 'constructor'])]: 1 }, new Uint8Array(1))) }
    case 9: return { cat: 'frame-header-missing-field', bytes: concat(head, frame(Object.fromEntries(Object.entries({ name, dtype: 'U8', shape: [1], byteLength: 1 }).filter(() => rand() < 0.6)), new Uint8Array(1))) }
    case 10: return { cat: 'frame-bad-name', bytes: concat(head, frame({ name: pick(['', 'n'.repeat(600), 5, null, '__proto__']), dtype: 'U8', shape: [1], byteLength: 1 }, new Uint8Array(1))) }
    default: { // two frames with one name, or fewer frames than declared
      const one = frame({ name, dtype: 'U8', shape: [1], byteLength: 1 }, new Uint8Array(1))
      return { cat: 'frame-duplicate-or-missing', bytes: concat(head, one, rand() < 0.5 ? one : new Uint8Array(0)) }
    }
  }
}

/** One hostile input. */
function makeCase (): Case {
  const r = int(100)
  if (r < 10) return { cat: 'random-bytes', chunks: [randomBytes(int(2048))] }
  if (r < 14) return { cat: 'truncated-prefix', chunks: [randomBytes(int(4))] }
  if (r < 20) return { cat: 'huge-envelope-prefix', chunks: [concat(u32(1024 * 1024 + 1 + int(0xfff00000)), randomBytes(int(256)))] }
  if (r < 24) { // declared N, sent fewer, EOF
    const body = pack(envelope('ping', {}))
    return { cat: 'truncated-envelope', chunks: [concat(u32(body.byteLength), body.subarray(0, int(body.byteLength)))] }
  }
  if (r < 29) return { cat: 'not-msgpack', chunks: [prefixed(concat(new Uint8Array([pick([0xc1, 0xd4, 0xc7, 0xdb, 0xdd])]), randomBytes(int(64))))] }
  if (r < 33) return { cat: 'msgpack-not-a-map', chunks: [prefixed(pack(pick([null, 1, 'ping', [1, 2, 3], true, 2.5, new Uint8Array(9)])))] }
  if (r < 36) { // msgpack with lying lengths inside / deep nesting
    const deep = concat(new Uint8Array(int(2) === 0 ? 100_000 : 5000).fill(0x91), new Uint8Array([0xc0]))
    const lying = concat(new Uint8Array([0x81, 0xa1, 0x76, pick([0xdb, 0xc6, 0xdd, 0xdf])]), u32(0xffffffff), randomBytes(16))
    return { cat: 'msgpack-bomb', chunks: [prefixed(rand() < 0.5 ? deep : lying)] }
  }
  if (r < 44) { // envelope fields of the wrong type, missing or extra
    const env = envelope(pick(TYPES), {})
    const keys = Object.keys(env)
    const k = pick(keys)
    const variant = int(3)
    if (variant === 0) env[k] = pick(WEIRD)
    else if (variant === 1) delete env[k]
    else Object.defineProperty(env, pick(['extra', '__proto__', 'constructor', 'then']), { value: pick(WEIRD), enumerable: true })
    const bytes = pack(env)
    return { cat: 'envelope-wrong-fields', chunks: [prefixed(bytes)], okAllowed: validLocally(bytes) }
  }
  if (r < 49) return { cat: 'unknown-type', chunks: [req(pick(['nope', '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'run.failed', 'stage.get', 'x'.repeat(64), `t${int(1e6)}`]), {})] }
  if (r < 62) {
    const type = pick(TYPES)
    const bytes = pack(envelope(type, mutateBody(VALID_BODIES[type]), type === 'stage.put' ? 1 : 0))
    return { cat: 'bad-body', chunks: [prefixed(bytes)], okAllowed: validLocally(bytes) }
  }
  if (r < 65) {
    const bytes = pack(envelope('ping', {}, 0, { deadline: pick([Date.now() - 1000, 0, -1, 1e300, '1', null]) }))
    return { cat: 'bad-deadline', chunks: [prefixed(bytes)], okAllowed: validLocally(bytes) }
  }
  if (r < 68) return { cat: 'tensor-count-mismatch', chunks: [req(pick(['ping', 'job.stats', 'run.push', 'stage.put']), VALID_BODIES['run.push'], pick([-1, 2, 1025, 1.5, 5]))] }
  if (r < 86) { const f = badFrame(); return { cat: f.cat, chunks: [f.bytes] } }
  if (r < 90) { // stage.put of the wrong tensor / lying hash
    const bytes = randomBytes(32 + int(256))
    const variant = int(3)
    if (variant === 0) return { cat: 'stage-put-wrong-tensor', chunks: [concat(req('stage.put', { hash: stageHash(bytes) }, 1), frame({ name: pick(['model', 'weights']), dtype: 'F32', shape: [bytes.byteLength / 4 | 0], byteLength: (bytes.byteLength / 4 | 0) * 4 }, bytes.subarray(0, (bytes.byteLength / 4 | 0) * 4)))] }
    if (variant === 1) return { cat: 'stage-put-wrong-hash', chunks: [stagePut(bytes, pick(['b'.repeat(64), '../../etc/passwd', 'a'.repeat(63)]))] }
    return { cat: 'stage-put-not-onnx', chunks: [stagePut(bytes)], then: { cat: 'job-setup-not-onnx', chunks: [jobSetup(stageHash(bytes))] } }
  }
  if (r < 96) { // graphs that parse as ONNX but are hostile, then a job using them
    const kind = pick(['unknown-op', 'cycle', 'external', 'no-output', 'bad-type'] as const)
    const bytes = graphBytes(kind)
    const stored = kind === 'unknown-op' || kind === 'cycle' || kind === 'bad-type'
    return { cat: `stage-put-${kind}`, chunks: [stagePut(bytes)], okAllowed: stored, then: { cat: `job-setup-${kind}`, chunks: [jobSetup(stageHash(bytes))] } }
  }
  if (r < 98) { // byte-by-byte dribble of a valid-looking but bad request
    const bytes = req('job.stats', { jobId: 7 })
    return { cat: 'dribble', chunks: Array.from(bytes, (b) => Uint8Array.of(b)) }
  }
  // A valid request in an odd shape: ok is fine, it must just be answered.
  const type = pick(['ping', 'capabilities', 'stage.has', 'job.stats', 'job.close'])
  return { cat: 'valid-odd', chunks: [req(type, VALID_BODIES[type])], okAllowed: true }
}

// ---------------------------------------------------------------- one exchange

interface Result { outcome: Outcome, code?: string }

async function exchange (node: MeshNode, addr: Multiaddr, c: Case): Promise<Result> {
  let stream: Stream
  try {
    stream = await node.dialProtocol(addr, RPC_PROTOCOL, { signal: AbortSignal.timeout(DEADLINE_MS) })
  } catch (err) {
    if (process.env.LUMIERE_FUZZ_DEBUG != null) console.error('dial failed:', (err as Error).name, (err as Error).message)
    return { outcome: 'refused' }
  }
  const got: Uint8Array[] = []
  let timer: ReturnType<typeof setTimeout> | undefined
  const ended = new Promise<'eof' | 'reset' | 'hang'>((resolve) => {
    stream.addEventListener('message', (evt) => { got.push('subarray' in evt.data ? evt.data.subarray() : evt.data) })
    stream.addEventListener('remoteCloseWrite', () => { resolve('eof') })
    stream.addEventListener('close', (evt) => { resolve((evt as Event & { error?: Error }).error != null ? 'reset' : 'eof') })
    timer = setTimeout(() => { resolve('hang') }, c.close === false ? DEADLINE_MS + 10_000 : DEADLINE_MS)
  })
  const writing = (async () => {
    for (const chunk of c.chunks) {
      if (stream.writeStatus !== 'writable') return
      if (!stream.send(chunk)) await stream.onDrain({ signal: AbortSignal.timeout(DEADLINE_MS) })
    }
    if (c.close !== false && stream.writeStatus === 'writable') await stream.close({ signal: AbortSignal.timeout(DEADLINE_MS) })
  })().catch(() => {})
  const end = await ended
  clearTimeout(timer)
  await writing
  if (stream.status === 'open') stream.abort(new Error('fuzz case done'))
  if (end === 'hang') return { outcome: 'hang' }
  const bytes = concat(...got)
  if (bytes.byteLength === 0) return { outcome: end === 'reset' ? 'reset' : 'closed' }
  try {
    const n = new DataView(bytes.buffer, bytes.byteOffset).getUint32(0, false)
    const reply = unpackMessage(bytes.subarray(4, 4 + n), 'reply') as { ok?: unknown, error?: { code?: unknown } }
    if (reply.ok === true) return { outcome: 'ok' }
    if (reply.ok === false && isErrorCode(reply.error?.code)) return { outcome: 'error', code: reply.error.code }
  } catch {}
  return { outcome: 'garbage' }
}

async function rssBytes (pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const m = /VmRSS:\s+(\d+) kB/.exec(status)
  return m == null ? NaN : Number(m[1]) * 1024
}

// ---------------------------------------------------------------- the test

t.test(`fuzz a live peer with ${TOTAL} hostile inputs while a job runs`, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'lumiere-fuzz-'))
  const peer = await spawnPeer(['--listen', loopbackListen('tcp'), '--addr-file', join(dir, 'peer.addrs'), '--cache', join(dir, 'cache'), '--threads', '1'])
  const coordinator = await Coordinator.start()
  const clients = await Promise.all(Array.from({ length: CLIENTS }, async () => createMeshNode()))
  t.teardown(async () => { await Promise.all([coordinator.stop(), ...clients.map(async (c) => c.stop())]); await peer.stop() })
  const addr = multiaddr(peer.addrs[0])
  const pid = peer.process.pid!

  // The legitimate job, warmed up before the baseline RSS.
  const model = convSkipNet()
  const inputs = randomInputs(model, 9)
  const reference = await runModel(model, inputs)
  const dag = await buildDagProbed(model, { inputs })
  const [info] = await coordinator.connect([peer.addrs[0]])
  const { pipeline } = await deploy(coordinator, model, dag, [info], 1)
  t.teardown(async () => { await pipeline.close() })
  const correct = async (): Promise<boolean> => {
    const out = await pipeline.run(inputs, { timeoutMs: 60_000 })
    return Object.keys(reference).every((n) => maxAbsDiff(out[n], reference[n]) <= 1e-5 * maxAbs(reference[n]))
  }
  for (let i = 0; i < 3; i++) await correct()
  const rssBefore = await rssBytes(pid)

  let fuzzing = true
  let legitRuns = 0
  let legitWrong = 0
  const legit = (async () => {
    while (fuzzing) {
      if (await correct().catch(() => false)) legitRuns++
      else legitWrong++
    }
  })()

  const counts = new Map<string, Map<string, number>>()
  const codes = new Map<string, number>()
  const failures: string[] = []
  let done = 0
  const record = (c: Case, r: Result): void => {
    done++
    const byCat = counts.get(c.cat) ?? new Map<string, number>()
    byCat.set(r.outcome, (byCat.get(r.outcome) ?? 0) + 1)
    counts.set(c.cat, byCat)
    if (r.code != null) codes.set(r.code, (codes.get(r.code) ?? 0) + 1)
    const bad = r.outcome === 'hang' || r.outcome === 'garbage' || r.outcome === 'refused' || (r.outcome === 'ok' && c.okAllowed !== true)
    if (bad && failures.length < 20) failures.push(`${c.cat}: ${r.outcome}`)
  }
  const run = async (client: MeshNode, c: Case): Promise<void> => {
    const r = await exchange(client, addr, c)
    record(c, r)
    if (c.then != null) record(c.then, await exchange(client, addr, c.then))
  }

  // One stream first on each client's connection: yamux resets a connection on which more than
  // 10 streams open before it is fully set up (MaxEarlyStreamsError), which would only test that.
  await Promise.all(clients.map(async (client) => { await rpcCall(client, addr, 'ping', {}) }))
  const started = performance.now()
  // Stalled envelopes first: they hold their streams until the peer's envelope timeout.
  const stalls = Array.from({ length: STALLS }, async (_, i) => {
    const partial = req('ping', {}).subarray(0, i % 5)
    await run(clients[i % CLIENTS], { cat: 'stall', chunks: [partial], close: false })
  })
  let issued = STALLS
  await Promise.all(clients.map(async (client) => {
    await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
      while (issued < TOTAL) {
        issued++
        const c = makeCase()
        if (c.then != null) issued++
        await run(client, c)
      }
    }))
  }))
  await Promise.all(stalls)
  const seconds = (performance.now() - started) / 1000
  fuzzing = false
  await legit

  // Still alive, still correct, memory bounded.
  t.equal(peer.process.exitCode, null, 'the peer process is alive')
  t.ok(await correct(), 'the legitimate job still computes correctly after the fuzzing')
  await new Promise((resolve) => setTimeout(resolve, 500))
  const rssAfter = await rssBytes(pid)

  const lines = [...counts].sort(([a], [b]) => a.localeCompare(b)).map(([cat, m]) => `  ${cat.padEnd(28)} ${[...m].map(([o, n]) => `${o}=${n}`).join(' ')}`)
  const totals = new Map<string, number>()
  for (const m of counts.values()) for (const [o, n] of m) totals.set(o, (totals.get(o) ?? 0) + n)
  t.comment(`seed ${SEED}: ${done} inputs in ${seconds.toFixed(1)} s (${(done / seconds).toFixed(0)}/s); outcomes ${[...totals].map(([o, n]) => `${o}=${n}`).join(' ')}`)
  t.comment(`error codes: ${[...codes].sort((a, b) => b[1] - a[1]).map(([c, n]) => `${c}=${n}`).join(' ')}`)
  t.comment(`per category:\n${lines.join('\n')}`)
  t.comment(`peer RSS before ${(rssBefore / 2 ** 20).toFixed(1)} MiB, after ${(rssAfter / 2 ** 20).toFixed(1)} MiB; legitimate runs during the fuzzing: ${legitRuns}`)

  t.ok(done >= TOTAL, `${done} hostile inputs sent`)
  t.same(failures, [], 'every input got a typed error or a closed/reset stream in time (no hang, no garbage, no unexpected ok)')
  t.equal(legitWrong, 0, 'no legitimate run went wrong')
  t.ok(legitRuns > 0, `${legitRuns} legitimate runs completed during the fuzzing`)
  t.ok(rssAfter < 2 * rssBefore + 200 * 2 ** 20, `peer RSS stayed bounded (${(rssBefore / 2 ** 20).toFixed(0)} → ${(rssAfter / 2 ** 20).toFixed(0)} MiB)`)
})
