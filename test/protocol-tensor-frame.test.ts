import t from 'tap'
import './fixtures/exit-when-done.ts'
import { MAX_FRAME_HEADER_BYTES, readTensorFrame, writeTensorFrame } from '../protocol/tensor-frame.ts'
import { SEND_CHUNK_BYTES, packMessage, sendPrefixed } from '../protocol/stream-io.ts'
import { DTYPES } from '../src/tensor/tensor.ts'
import type { Tensor } from '../src/tensor/tensor.ts'
import { nodePair, openStreams, randomTensor, sameBytes, sleep } from './fixtures/protocol.ts'

const MiB = 1024 * 1024

t.test('tensor frames over libp2p TCP', async (t) => {
  const pair = await nodePair('tcp')
  t.teardown(pair.stop)

  t.test('multi-MiB tensors of every dtype, plus empty and scalar, arrive bit-exact', async (tt) => {
    const { out, reader } = await openStreams(pair)
    const sent: Array<[string, Tensor]> = DTYPES.map((dtype, i) => [`value/${dtype}`, randomTensor(dtype, [2 + i, 1024, 512])])
    sent.push(['empty', randomTensor('F32', [3, 0, 2])], ['scalar', randomTensor('I64', [])])
    const writing = (async () => {
      for (const [name, tensor] of sent) await writeTensorFrame(out, name, tensor)
      await out.close()
    })()
    for (const [name, tensor] of sent) {
      const got = await readTensorFrame(reader, { maxBytes: 64 * MiB })
      tt.equal(got.name, name)
      tt.equal(got.tensor.dtype, tensor.dtype, name)
      tt.same(got.tensor.shape, tensor.shape, name)
      tt.ok(sameBytes(got.tensor.data, tensor.data), `${name}: ${tensor.data.byteLength} bytes bit-exact`)
    }
    await writing
  })

  t.test('a slow reader does not make the writer buffer the tensor', async (tt) => {
    const { out, inbound, reader } = await openStreams(pair)
    const tensor = randomTensor('F32', [16, 1024, 1024]) // 64 MiB
    let writerDone = false
    const writing = writeTensorFrame(out, 'big', tensor).then(() => { writerDone = true })
    let maxWrite = 0
    let maxRead = 0
    for (let i = 0; i < 50; i++) { // the reader does nothing for 1 s
      await sleep(20)
      maxWrite = Math.max(maxWrite, out.writeBufferLength)
      maxRead = Math.max(maxRead, reader.bufferedBytes + inbound.readBufferLength)
    }
    tt.notOk(writerDone, 'the writer is held back while nobody reads')
    tt.ok(maxWrite <= 2 * SEND_CHUNK_BYTES, `writer's pending bytes stay bounded (max ${maxWrite})`)
    tt.ok(maxRead <= 20 * MiB, `reader-side buffering stays within about one yamux window (max ${maxRead})`)
    tt.ok(maxRead > 0, 'some data did arrive')
    const got = await readTensorFrame(reader, { maxBytes: 64 * MiB })
    await writing
    tt.ok(sameBytes(got.tensor.data, tensor.data), '64 MiB bit-exact after the stall')
  })

  t.test('an oversize declared byteLength is rejected before allocation', async (tt) => {
    const { out, reader } = await openStreams(pair)
    await sendPrefixed(out, packMessage({ name: 'huge', dtype: 'F32', shape: [2 ** 30, 4], byteLength: 2 ** 34 }))
    let allocated = 0
    await tt.rejects(readTensorFrame(reader, { maxBytes: 16 * MiB, allocate: (n) => { allocated += n; return new Uint8Array(n) } }),
      { code: 'TOO_LARGE', message: /'huge' of 17179869184 bytes exceeds the 16777216-byte limit/ })
    tt.equal(allocated, 0, 'nothing allocated')
  })

  t.test('invalid headers are PROTOCOL errors; oversize headers TOO_LARGE', async (tt) => {
    const cases: Array<[unknown, RegExp]> = [
      [{ name: 'x', dtype: 'F64', shape: [1], byteLength: 8 }, /unknown dtype "F64"/],
      [{ name: 'x', dtype: 'F32', shape: [2], byteLength: 4 }, /byteLength 4 does not match F32\[2\] = 8/],
      [{ name: 'x', dtype: 'F32', shape: [-1], byteLength: 0 }, /bad dimension -1/],
      [{ name: 'x', dtype: 'F32', shape: [0.5], byteLength: 2 }, /bad dimension 0.5/],
      [{ name: 'x', dtype: 'F32', shape: [2 ** 40, 2 ** 40], byteLength: 0 }, /too large/],
      [{ name: 'x', dtype: 'F32', shape: 'abc', byteLength: 0 }, /shape must be an array/],
      [{ name: '', dtype: 'F32', shape: [1], byteLength: 4 }, /name must be/],
      [{ name: 'x', dtype: 'F32', shape: [1], byteLength: 4, extra: true }, /unexpected field 'extra'/],
      [[1, 2, 3], /not a map/]
    ]
    for (const [header, pattern] of cases) {
      const { out, reader } = await openStreams(pair)
      await sendPrefixed(out, packMessage(header))
      await tt.rejects(readTensorFrame(reader, { maxBytes: MiB, allocate: () => { throw new Error('must not allocate') } }), { code: 'PROTOCOL', message: pattern }, String(pattern))
      out.abort(new Error('done'))
    }
    const { out, reader } = await openStreams(pair)
    const prefix = new Uint8Array(4)
    new DataView(prefix.buffer).setUint32(0, MAX_FRAME_HEADER_BYTES + 1)
    out.send(prefix)
    await tt.rejects(readTensorFrame(reader, { maxBytes: MiB }), { code: 'TOO_LARGE', message: /header/ })
  })

  t.test('a stream that ends or is reset mid-payload is PEER_LOST', async (tt) => {
    {
      const { out, reader } = await openStreams(pair)
      await sendPrefixed(out, packMessage({ name: 'x', dtype: 'U8', shape: [100], byteLength: 100 }))
      out.send(new Uint8Array(10))
      await out.close()
      await tt.rejects(readTensorFrame(reader, { maxBytes: MiB }), { code: 'PEER_LOST', message: /closed the stream after 10 of 100 expected bytes/ })
    }
    {
      const { out, reader } = await openStreams(pair)
      await sendPrefixed(out, packMessage({ name: 'x', dtype: 'U8', shape: [100], byteLength: 100 }))
      out.send(new Uint8Array(10))
      setTimeout(() => { out.abort(new Error('boom')) }, 50)
      await tt.rejects(readTensorFrame(reader, { maxBytes: MiB }), { code: 'PEER_LOST' })
    }
  })

  t.test('writing rejects bad tensors before sending anything', async (tt) => {
    const { out } = await openStreams(pair)
    await tt.rejects(writeTensorFrame(out, 'x', { dtype: 'F32', shape: [3], data: new Uint8Array(8) }), { code: 'BAD_ARGUMENT', message: /needs 12 bytes/ })
    await tt.rejects(writeTensorFrame(out, '', randomTensor('U8', [1])), { code: 'BAD_ARGUMENT' })
    tt.equal(out.writeBufferLength, 0)
  })
})

t.test('a tensor frame over WebRTC-direct', async (tt) => {
  const pair = await nodePair('webrtc')
  tt.teardown(pair.stop)
  const { out, reader } = await openStreams(pair, 'webrtc')
  const tensor = randomTensor('BF16', [3, 1024, 1024]) // 6 MiB
  const writing = writeTensorFrame(out, 'w', tensor)
  const got = await readTensorFrame(reader, { maxBytes: 8 * MiB })
  await writing
  tt.ok(sameBytes(got.tensor.data, tensor.data), 'bit-exact over WebRTC')
})
