import t from 'tap'
import './fixtures/exit-when-done.ts'
import type { Test } from 'tap'
import { ENVELOPE_VERSION, PROTOCOL_VERSION, RPC_PROTOCOL } from '../protocol/ids.ts'
import {
  MAX_ID_LENGTH, MAX_PROBE_BYTES, MAX_STAGES, REQUEST_TYPES, checkRequestTensors, parseRequest, parseRequestBody, parseResponse
} from '../protocol/messages.ts'
import type { RequestBodies, RequestType, ResponseBodies } from '../protocol/messages.ts'

const PEER = '12D3KooWR4irNWpu2dHAerYts1PBC4YFsen4gDSVbhDDyoxryPvw'

const requests: RequestBodies = {
  ping: {},
  capabilities: {},
  join: { addrs: ['/ip4/192.0.2.7/tcp/4001/p2p/' + PEER, '/ip4/192.0.2.1/tcp/4001/p2p/' + PEER + '/p2p-circuit/webrtc/p2p/' + PEER] },
  'stage.has': { hash: 'a'.repeat(64) },
  'stage.put': { hash: 'sha256-abc' },
  'job.setup': {
    jobId: 'job-1',
    coordinator: PEER,
    stages: [
      { index: 0, hash: 'h0', inputs: ['x'], outputs: [{ name: 'y', to: [{ peer: PEER, addrs: ['/ip4/127.0.0.1/tcp/1'], stage: 1 }] }] },
      { index: 1, hash: 'h1', inputs: ['y', 'skip.0'], outputs: [{ name: 'out', to: [{ coordinator: true }] }] }
    ]
  },
  'run.push': { jobId: 'job-1', runId: 'run.7', stage: -1 },
  'run.failed': { jobId: 'job-1', runId: 'r', stage: 2, code: 'STAGE_FAILED', message: 'ort said no' },
  'job.stats': { jobId: 'job-1' },
  'job.close': { jobId: 'job-1' },
  'link.probe': { to: PEER, addrs: ['/ip4/127.0.0.1/tcp/4001/p2p/' + PEER], bytes: 4 * 1024 * 1024 }
}

const responses: ResponseBodies = {
  ping: { time: 1 },
  capabilities: { peerId: PEER, version: '0.1.0', executionProviders: ['cpu', 'cuda'], memoryBytes: 2 ** 34, freeMemoryBytes: 2 ** 33, cpus: 16, speed: 12.5, cachedStages: 3 },
  join: { addrs: ['/ip4/192.0.2.7/tcp/4001/p2p/' + PEER] },
  'stage.has': { present: false },
  'stage.put': { ok: true },
  'job.setup': { ok: true },
  'run.push': { ok: true },
  'run.failed': { ok: true },
  'job.stats': { stages: [{ index: 0, runs: 3, busyMs: 12.5 }] },
  'job.close': { ok: true },
  'link.probe': { bandwidth: 1.5e8, latency: 2e-4 }
}

const envelope = (type: string, body: unknown, extra: Record<string, unknown> = {}): Record<string, unknown> =>
  ({ v: ENVELOPE_VERSION, id: 'abc123', type, deadline: Date.now() + 1000, tensors: type === 'stage.put' ? 1 : 0, body, ...extra })

t.test('protocol ids are versioned', async (tt) => {
  tt.equal(PROTOCOL_VERSION, '1.0.0')
  tt.equal(RPC_PROTOCOL, '/lumiere/rpc/1.0.0')
})

t.test('every request and response type parses', async (tt) => {
  tt.same([...REQUEST_TYPES].sort(), Object.keys(requests).sort())
  for (const type of REQUEST_TYPES) {
    const env = parseRequest(envelope(type, requests[type]))
    tt.equal(env.type, type)
    tt.same(env.body, requests[type], `${type} request`)
    const res = parseResponse(type, { id: 'abc123', ok: true, tensors: 0, body: responses[type] })
    tt.ok(res.ok)
    if (res.ok) tt.same(res.body, responses[type], `${type} response`)
  }
  const err = parseResponse('ping', { id: '', ok: false, error: { code: 'BUSY', message: 'later' } })
  tt.same(err, { id: '', ok: false, error: { code: 'BUSY', message: 'later' } })
})

function bad (tt: Test, value: unknown, code: string, pattern: RegExp): void {
  tt.throws(() => parseRequest(value), { name: 'LumiereError', code, message: pattern }, String(pattern))
}

t.test('bad envelopes are PROTOCOL errors naming the field', async (tt) => {
  bad(tt, 'hello', 'PROTOCOL', /request envelope/)
  bad(tt, envelope('ping', {}, { v: 2 }), 'PROTOCOL', /\bv: /)
  bad(tt, envelope('ping', {}, { id: undefined }), 'PROTOCOL', /\bid: /)
  bad(tt, envelope('ping', {}, { id: 'x'.repeat(MAX_ID_LENGTH + 1) }), 'PROTOCOL', /\bid: Too big/)
  bad(tt, envelope('ping', {}, { deadline: Number.NaN }), 'PROTOCOL', /deadline: /)
  bad(tt, envelope('ping', {}, { deadline: Infinity }), 'PROTOCOL', /deadline: /)
  bad(tt, envelope('ping', {}, { tensors: -1 }), 'PROTOCOL', /tensors: /)
  bad(tt, envelope('ping', {}, { extra: 1 }), 'PROTOCOL', /Unrecognized key.*extra/)
  bad(tt, envelope('nope', {}), 'UNKNOWN_REQUEST', /unknown request type "nope"/)
  bad(tt, envelope('ping', {}, { tensors: 2 }), 'PROTOCOL', /ping.*tensors.*expected 0 attached tensors, got 2/)
  bad(tt, envelope('stage.put', { hash: 'h' }, { tensors: 0 }), 'PROTOCOL', /expected 1 attached tensors/)
})

t.test('bad bodies are PROTOCOL errors naming the field', async (tt) => {
  const setup = requests['job.setup']
  const stage0 = setup.stages[0]
  bad(tt, envelope('ping', { x: 1 }), 'PROTOCOL', /body: Unrecognized key: "x"/)
  bad(tt, envelope('stage.has', {}), 'PROTOCOL', /body\.hash: /)
  bad(tt, envelope('stage.has', { hash: '../etc/passwd' }), 'PROTOCOL', /body\.hash: /)
  bad(tt, envelope('stage.has', { hash: '..' }), 'PROTOCOL', /body\.hash: /)
  bad(tt, envelope('run.push', { jobId: 'j', runId: 'r', stage: 1.5 }), 'PROTOCOL', /body\.stage: /)
  bad(tt, envelope('run.push', { jobId: 'j', runId: 'r', stage: -2 }), 'PROTOCOL', /body\.stage: Too small/)
  bad(tt, envelope('run.push', { jobId: 'j', runId: 'r', stage: MAX_STAGES }), 'PROTOCOL', /body\.stage: Too big/)
  bad(tt, envelope('job.setup', { ...setup, stages: [] }), 'PROTOCOL', /body\.stages: Too small/)
  bad(tt, envelope('job.setup', { ...setup, stages: [{ ...stage0, hash: 5 }] }), 'PROTOCOL', /body\.stages\[0\]\.hash: .*expected string/)
  bad(tt, envelope('job.setup', { ...setup, stages: [{ ...stage0, outputs: [{ name: 'y', to: [{ peer: PEER, addrs: ['nope'], stage: 1 }] }] }] }),
    'PROTOCOL', /body\.stages\[0\]\.outputs\[0\]\.to\[0\]\.addrs\[0\]: /)
  bad(tt, envelope('job.setup', { ...setup, stages: [{ ...stage0, outputs: [{ name: 'y', to: [{ coordinator: false }] }] }] }),
    'PROTOCOL', /body\.stages\[0\]\.outputs\[0\]\.to\[0\]\.coordinator: /)
  bad(tt, envelope('job.setup', { ...setup, stages: [stage0, stage0] }), 'PROTOCOL', /body\.stages\[1\]\.index: duplicate stage index 0/)
  bad(tt, envelope('job.setup', { ...setup, coordinator: 'not a peer id!' }), 'PROTOCOL', /body\.coordinator: /)
  bad(tt, envelope('run.failed', { ...requests['run.failed'], message: 'm'.repeat(5000) }), 'PROTOCOL', /body\.message: Too big/)
  bad(tt, envelope('job.setup', { ...setup, stages: new Array(MAX_STAGES + 1).fill(stage0) }), 'PROTOCOL', /body\.stages: Too big/)
  bad(tt, envelope('link.probe', { ...requests['link.probe'], bytes: MAX_PROBE_BYTES + 1 }), 'PROTOCOL', /body\.bytes: Too big/)
  bad(tt, envelope('link.probe', { ...requests['link.probe'], bytes: 0 }), 'PROTOCOL', /body\.bytes: Too small/)
})

t.test('bad responses are PROTOCOL errors', async (tt) => {
  tt.throws(() => parseResponse('capabilities', { id: 'a', ok: true, tensors: 0, body: { ...responses.capabilities, memoryBytes: -1 } }),
    { code: 'PROTOCOL', message: /body\.memoryBytes: Too small/ })
  tt.throws(() => parseResponse('ping', { id: 'a', ok: true, tensors: 0, body: { time: Infinity } }), { code: 'PROTOCOL', message: /body\.time/ })
  tt.throws(() => parseResponse('ping', { id: 'a', ok: true, body: { time: 1 } }), { code: 'PROTOCOL', message: /tensors/ })
  tt.throws(() => parseResponse('ping', { id: 'a', ok: false, error: { code: '', message: 'x' } }), { code: 'PROTOCOL', message: /error\.code/ })
  tt.throws(() => parseResponse('stage.put', { id: 'a', ok: true, tensors: 0, body: { ok: false } }), { code: 'PROTOCOL', message: /body\.ok/ })
})

t.test('attached tensor rules', async (tt) => {
  const model = { dtype: 'U8' as const, shape: [3], data: new Uint8Array(3) }
  tt.doesNotThrow(() => { checkRequestTensors('stage.put', { model }) })
  tt.throws(() => { checkRequestTensors('stage.put', { weights: model }) }, { code: 'PROTOCOL', message: /unexpected attached tensor 'weights'/ })
  tt.throws(() => { checkRequestTensors('stage.put', { model: { ...model, dtype: 'F32', shape: [0] } }) }, { code: 'PROTOCOL', message: /must be U8/ })
  tt.throws(() => { checkRequestTensors('stage.put', { model: { ...model, shape: [1, 3] } }) }, { code: 'PROTOCOL', message: /rank 1/ })
  tt.throws(() => { checkRequestTensors('ping', { model }) }, { code: 'PROTOCOL' })
  tt.doesNotThrow(() => { checkRequestTensors('run.push', { a: model, b: model }) })
})

t.test('outgoing validation uses BAD_ARGUMENT', async (tt) => {
  const type: RequestType = 'job.close'
  tt.throws(() => parseRequestBody(type, { jobId: '' }, 'BAD_ARGUMENT'), { code: 'BAD_ARGUMENT', message: /body\.jobId/ })
})
