import t from 'tap'
import './fixtures/exit-when-done.ts'
import { RPC_PROTOCOL } from '../protocol/ids.ts'
import { handleRpc, rpcCall } from '../protocol/rpc.ts'
import { StreamReader, packMessage, readPrefixed, sendPrefixed, unpackMessage } from '../protocol/stream-io.ts'
import { LumiereError } from '../src/errors.ts'
import { createMeshNode, loopbackListen } from '../src/mesh/node.ts'
import { DTYPES } from '../src/tensor/tensor.ts'
import type { Tensor } from '../src/tensor/tensor.ts'
import { addrOf, nodePair, randomTensor, sameBytes, sleep } from './fixtures/protocol.ts'
import type { Stream } from '@libp2p/interface'

const MiB = 1024 * 1024
const PUSH = { jobId: 'job-1', runId: 'run-1', stage: 0 }

/** Sends a raw (possibly invalid) envelope on a fresh rpc stream and returns the decoded reply. */
async function rawRequest (client: Awaited<ReturnType<typeof createMeshNode>>, target: Parameters<typeof client.dialProtocol>[0], payload: Uint8Array | 'oversize'): Promise<any> {
  const stream = await client.dialProtocol(target, RPC_PROTOCOL)
  const reader = new StreamReader(stream)
  if (payload === 'oversize') {
    const prefix = new Uint8Array(4)
    new DataView(prefix.buffer).setUint32(0, 2 * MiB)
    stream.send(prefix)
  } else {
    await sendPrefixed(stream, payload)
  }
  const reply = unpackMessage(await readPrefixed(reader, MiB, 'reply', AbortSignal.timeout(5000)), 'reply')
  reader.release()
  return reply
}

t.test('rpc over libp2p TCP', async (t) => {
  const pair = await nodePair('tcp')
  t.teardown(pair.stop)
  const addr = addrOf(pair.server)
  let lastSignal: AbortSignal | undefined
  const server = await handleRpc(pair.server, {
    ping: async () => ({ body: { time: Date.now() } }),
    // echo: the attached tensors come back as response tensors
    'run.push': async ({ tensors }) => ({ body: { ok: true }, tensors }),
    'job.setup': async ({ body, signal }) => {
      lastSignal = signal
      const ms = body.jobId === 'slow' ? 1000 : 5000
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(resolve, ms)
        signal.addEventListener('abort', () => { clearTimeout(timer); reject(signal.reason) }, { once: true })
      })
      return { body: { ok: true } }
    },
    'stage.has': async ({ body }) => {
      if (body.hash === 'typed') throw new LumiereError('STAGE_UNKNOWN', 'no stage typed here')
      if (body.hash === 'foreign') throw Object.assign(new LumiereError('INTERNAL', 'x'), { code: 'WEIRD_CODE', message: 'from elsewhere' })
      if (body.hash === 'bug') throw new TypeError('cannot read properties of undefined')
      if (body.hash === 'badreply') return { body: { present: 'yes' } as unknown as { present: boolean } }
      return { body: { present: body.hash === 'have' } }
    }
  })

  t.test('ping and typed bodies', async (tt) => {
    const before = Date.now()
    const { body, tensors } = await rpcCall(pair.client, addr, 'ping', {})
    tt.ok(body.time >= before)
    tt.same(tensors, {})
    tt.same((await rpcCall(pair.client, addr, 'stage.has', { hash: 'have' })).body, { present: true })
    tt.equal(server.active, 0)
  })

  t.test('multi-MiB tensors of every dtype round-trip bit-exact', async (tt) => {
    const sent: Record<string, Tensor> = {}
    DTYPES.forEach((dtype, i) => { sent[`/enc/${i}/${dtype}:0`] = randomTensor(dtype, [2, 1024, 512 + i]) })
    sent.scalar = randomTensor('F32', [])
    sent.empty = randomTensor('I32', [0, 7])
    const { body, tensors } = await rpcCall(pair.client, addr, 'run.push', PUSH, { tensors: sent })
    tt.same(body, { ok: true })
    tt.same(Object.keys(tensors).sort(), Object.keys(sent).sort())
    for (const [name, t0] of Object.entries(sent)) {
      tt.equal(tensors[name].dtype, t0.dtype)
      tt.same(tensors[name].shape, t0.shape)
      tt.ok(sameBytes(tensors[name].data, t0.data), `${name} (${t0.data.byteLength} bytes) bit-exact both ways`)
    }
  })

  t.test('invalid envelopes get typed error replies', async (tt) => {
    const noDeadline = await rawRequest(pair.client, addr, packMessage({ v: 1, id: 'req-1', type: 'ping', tensors: 0, body: {} }))
    tt.match(noDeadline, { id: 'req-1', ok: false, error: { code: 'PROTOCOL', message: /deadline/ } })
    const badBody = await rawRequest(pair.client, addr, packMessage({ v: 1, id: 'req-2', type: 'stage.has', deadline: Date.now() + 5000, tensors: 0, body: { hash: 7 } }))
    tt.match(badBody, { id: 'req-2', ok: false, error: { code: 'PROTOCOL', message: /body\.hash/ } })
    const unknown = await rawRequest(pair.client, addr, packMessage({ v: 1, id: 'req-3', type: 'teleport', deadline: Date.now() + 5000, tensors: 0, body: {} }))
    tt.match(unknown, { id: 'req-3', ok: false, error: { code: 'UNKNOWN_REQUEST' } })
    const garbage = await rawRequest(pair.client, addr, Uint8Array.from([0xc1, 0xc1, 0xc1]))
    tt.match(garbage, { id: '', ok: false, error: { code: 'PROTOCOL', message: /msgpack/ } })
    const oversize = await rawRequest(pair.client, addr, 'oversize')
    tt.match(oversize, { ok: false, error: { code: 'TOO_LARGE', message: /envelope/ } })
    const late = await rawRequest(pair.client, addr, packMessage({ v: 1, id: 'req-4', type: 'ping', deadline: Date.now() - 1000, tensors: 0, body: {} }))
    tt.match(late, { id: 'req-4', ok: false, error: { code: 'DEADLINE_EXCEEDED' } })
    await tt.rejects(rpcCall(pair.client, addr, 'job.close', { jobId: 'j' }), { code: 'UNKNOWN_REQUEST', message: /does not handle 'job.close'/ })
  })

  t.test('handler errors reach the client with their code', async (tt) => {
    await tt.rejects(rpcCall(pair.client, addr, 'stage.has', { hash: 'typed' }), { name: 'LumiereError', code: 'STAGE_UNKNOWN', message: 'no stage typed here' })
    await tt.rejects(rpcCall(pair.client, addr, 'stage.has', { hash: 'foreign' }), { code: 'PEER_ERROR', message: 'WEIRD_CODE: from elsewhere' })
    const err = await rpcCall(pair.client, addr, 'stage.has', { hash: 'bug' }).catch((e: LumiereError) => e)
    tt.match(err, { code: 'INTERNAL', message: /cannot read properties of undefined/ })
    tt.notMatch((err as Error).message, /\n\s+at /, 'no stack trace crosses the wire')
    await tt.rejects(rpcCall(pair.client, addr, 'stage.has', { hash: 'badreply' }), { code: 'INTERNAL', message: /body\.present/ })
  })

  t.test('the deadline aborts the call and the handler', async (tt) => {
    const t0 = Date.now()
    await tt.rejects(rpcCall(pair.client, addr, 'job.setup', { jobId: 'never', coordinator: pair.client.peerId.toString(), stages: [{ index: 0, hash: 'h', inputs: [], outputs: [] }] }, { timeoutMs: 300 }),
      { code: 'DEADLINE_EXCEEDED' })
    const took = Date.now() - t0
    tt.ok(took >= 290 && took < 1500, `rejected after ${took} ms`)
    await sleep(100)
    tt.equal(lastSignal?.aborted, true, 'the handler signal was aborted')
    tt.ok(['DEADLINE_EXCEEDED', 'PEER_LOST'].includes((lastSignal?.reason as LumiereError).code), `abort reason ${(lastSignal?.reason as LumiereError).code}`)
    tt.equal(server.active, 0)
  })

  t.test('ping is answered while another handler is busy for 1 s', async (tt) => {
    const t0 = Date.now()
    const slow = rpcCall(pair.client, addr, 'job.setup', { jobId: 'slow', coordinator: pair.client.peerId.toString(), stages: [{ index: 0, hash: 'h', inputs: [], outputs: [] }] })
    await sleep(50)
    await rpcCall(pair.client, addr, 'ping', {})
    const pinged = Date.now() - t0
    tt.ok(pinged < 500, `ping answered after ${pinged} ms`)
    await slow
    tt.ok(Date.now() - t0 >= 950, 'the slow handler took its time')
  })

  t.test('caller abort, bad requests, response size limit', async (tt) => {
    const ac = new AbortController()
    setTimeout(() => { ac.abort() }, 100)
    await tt.rejects(rpcCall(pair.client, addr, 'job.setup', { jobId: 'never', coordinator: pair.client.peerId.toString(), stages: [{ index: 0, hash: 'h', inputs: [], outputs: [] }] }, { signal: ac.signal }),
      { code: 'ABORTED' })
    await tt.rejects(rpcCall(pair.client, addr, 'stage.has', { hash: '' }), { code: 'BAD_ARGUMENT', message: /body\.hash/ })
    await tt.rejects(rpcCall(pair.client, addr, 'stage.put', { hash: 'h' }), { code: 'BAD_ARGUMENT', message: /1 attached tensors/ })
    await tt.rejects(rpcCall(pair.client, addr, 'ping', {}, { timeoutMs: -1 }), { code: 'BAD_ARGUMENT' })
    await tt.rejects(rpcCall(pair.client, addr, 'run.push', PUSH, { tensors: { x: randomTensor('U8', [2 * MiB]) }, maxTensorBytes: MiB }),
      { code: 'TOO_LARGE', message: /'x' of 2097152 bytes exceeds the 1048576-byte limit/ })
  })
})

t.test('server limits: request tensor bytes and concurrency', async (t) => {
  const pair = await nodePair('tcp')
  t.teardown(pair.stop)
  const addr = addrOf(pair.server)
  let release: () => void = () => {}
  await handleRpc(pair.server, {
    ping: async () => ({ body: { time: Date.now() } }),
    'run.push': async () => ({ body: { ok: true } }),
    'job.close': async () => { await new Promise<void>(resolve => { release = resolve }); return { body: { ok: true } } }
  }, { maxTensorBytes: 4 * MiB, maxConcurrent: 1 })

  t.test('an oversize request tensor is refused before it is received', async (tt) => {
    const big: Tensor = { dtype: 'F32', shape: [64, 1024, 1024], data: new Uint8Array(256 * MiB) }
    const t0 = Date.now()
    await tt.rejects(rpcCall(pair.client, addr, 'run.push', PUSH, { tensors: { big } }),
      { code: 'TOO_LARGE', message: /'big' of 268435456 bytes exceeds the 4194304-byte limit/ })
    tt.ok(Date.now() - t0 < 1000, 'the 256 MiB upload was cut short')
    await tt.resolves(rpcCall(pair.client, addr, 'run.push', PUSH, { tensors: { a: randomTensor('U8', [2 * MiB]), b: randomTensor('U8', [2 * MiB]) } }), 'exactly at the limit')
    await tt.rejects(rpcCall(pair.client, addr, 'run.push', PUSH, { tensors: { a: randomTensor('U8', [3 * MiB]), b: randomTensor('U8', [2 * MiB]) } }), { code: 'TOO_LARGE', message: /'b'/ }, 'the limit is on the total')
  })

  t.test('beyond maxConcurrent the server answers BUSY', async (tt) => {
    const busy = rpcCall(pair.client, addr, 'job.close', { jobId: 'j' })
    await sleep(100)
    await tt.rejects(rpcCall(pair.client, addr, 'ping', {}), { code: 'BUSY' })
    release()
    await tt.resolves(busy)
    await tt.resolves(rpcCall(pair.client, addr, 'ping', {}))
  })
})

t.test('dial failures, missing protocol, lost peers', async (t) => {
  t.test('a stopped peer is PEER_UNREACHABLE', async (tt) => {
    const pair = await nodePair('tcp')
    const addr = addrOf(pair.server)
    await pair.server.stop()
    await tt.rejects(rpcCall(pair.client, addr, 'ping', {}, { timeoutMs: 5000 }), { code: 'PEER_UNREACHABLE' })
    await pair.client.stop()
  })

  t.test('a peer without the rpc protocol is PROTOCOL', async (tt) => {
    const pair = await nodePair('tcp')
    tt.teardown(pair.stop)
    await tt.rejects(rpcCall(pair.client, addrOf(pair.server), 'ping', {}), { code: 'PROTOCOL', message: /does not speak \/lumiere\/rpc\/1\.0\.0/ })
  })

  t.test('a stream reset mid-response is PEER_LOST', async (tt) => {
    const pair = await nodePair('tcp')
    tt.teardown(pair.stop)
    // A server that starts a 4 MiB response tensor, then resets the stream.
    await pair.server.handle(RPC_PROTOCOL, async (stream: Stream) => {
      const reader = new StreamReader(stream)
      const env = unpackMessage(await readPrefixed(reader, MiB, 'req'), 'req') as { id: string }
      await sendPrefixed(stream, packMessage({ id: env.id, ok: true, tensors: 1, body: { ok: true } }))
      await sendPrefixed(stream, packMessage({ name: 'out', dtype: 'U8', shape: [4 * MiB], byteLength: 4 * MiB }))
      await sendPrefixed(stream, new Uint8Array(64 * 1024))
      await sleep(30)
      stream.abort(new Error('crash'))
    })
    await tt.rejects(rpcCall(pair.client, addrOf(pair.server), 'run.push', PUSH), { code: 'PEER_LOST' })
  })

  t.test('a peer that stops mid-call is PEER_LOST', async (tt) => {
    const pair = await nodePair('tcp')
    tt.teardown(pair.stop)
    await handleRpc(pair.server, {
      'job.close': async ({ signal }) => {
        await new Promise(resolve => { signal.addEventListener('abort', resolve, { once: true }) })
        return { body: { ok: true } }
      }
    })
    setTimeout(() => { void pair.server.stop() }, 200)
    await tt.rejects(rpcCall(pair.client, addrOf(pair.server), 'job.close', { jobId: 'j' }, { timeoutMs: 4000 }), { code: 'PEER_LOST' })
  })
})

t.test('rpc over WebRTC-direct', async (tt) => {
  const pair = await nodePair('webrtc')
  tt.teardown(pair.stop)
  await handleRpc(pair.server, { 'run.push': async ({ tensors, from }) => { tt.equal(from.toString(), pair.client.peerId.toString()); return { body: { ok: true }, tensors } } })
  const x = randomTensor('F16', [2, 1024, 1024]) // 4 MiB
  const { tensors } = await rpcCall(pair.client, addrOf(pair.server, 'webrtc'), 'run.push', PUSH, { tensors: { x } })
  tt.ok(sameBytes(tensors.x.data, x.data), '4 MiB bit-exact both ways over WebRTC')
})

t.test('several handleRpc calls share one node; close removes them', async (tt) => {
  const node = await createMeshNode({ listen: [loopbackListen('tcp')] })
  const client = await createMeshNode()
  tt.teardown(async () => { await client.stop(); await node.stop() })
  const a = await handleRpc(node, { ping: async () => ({ body: { time: 1 } }) })
  await handleRpc(node, { 'job.close': async () => ({ body: { ok: true } }) })
  await tt.rejects(handleRpc(node, { ping: async () => ({ body: { time: 2 } }) }), { code: 'BAD_ARGUMENT' })
  const addr = addrOf(node)
  tt.same((await rpcCall(client, addr, 'ping', {})).body, { time: 1 })
  tt.same((await rpcCall(client, addr, 'job.close', { jobId: 'j' })).body, { ok: true })
  await a.close()
  await tt.rejects(rpcCall(client, addr, 'ping', {}), { code: 'UNKNOWN_REQUEST' })
})
