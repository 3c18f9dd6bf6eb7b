// The mesh's connection layer: AES-256-GCM Noise with large u32-framed
// transport messages between mesh nodes, standard Noise as the fallback,
// batched TCP writes, and the patches on library internals still engaging
// (a dependency update that changes their shape must fail here, not
// silently slow the wire down).
import { createCipheriv, randomBytes } from 'node:crypto'
import { connect, createServer } from 'node:net'
import type { AddressInfo, Socket } from 'node:net'
import t from 'tap'
import { Uint8ArrayList } from 'uint8arraylist'
import { multiaddr } from '@multiformats/multiaddr'
import { StreamReader, sendAll } from '../protocol/stream-io.ts'
import { AesGcmMessageStream, MAX_MESSAGE_PLAINTEXT_BYTES, NOISE_AES_PROTOCOL, aesGcmCrypto } from '../src/mesh/encryption.ts'
import { createMeshNode, loopbackListen } from '../src/mesh/node.ts'
import type { MeshNode } from '../src/mesh/node.ts'
import { batchSocketWrites } from '../src/mesh/tcp.ts'
import { sameBytes, sleep } from './fixtures/protocol.ts'

const MiB = 1024 * 1024

/** The noise library bundles its own uint8arraylist: same class at run time, another type. */
type LibBytes = Parameters<typeof aesGcmCrypto.chaCha20Poly1305Encrypt>[0]
const lib = (list: Uint8ArrayList): LibBytes => list as unknown as LibBytes

/** Sends `bytes` from `client` to `server` on a fresh protocol and returns what arrived. */
async function roundTrip (server: MeshNode, client: MeshNode, bytes: Uint8Array): Promise<Uint8Array> {
  const protocol = `/lumiere-test/enc/${Math.random().toString(36).slice(2)}`
  const got = new Uint8Array(bytes.byteLength)
  const done = Promise.withResolvers<void>()
  await server.handle(protocol, (stream) => {
    const reader = new StreamReader(stream)
    reader.readInto(got).then(done.resolve, done.reject)
  })
  const stream = await client.dialProtocol(server.getMultiaddrs()[0], protocol)
  await sendAll(stream, bytes)
  await done.promise
  await stream.close()
  return got
}

interface Internals { maConn?: { batchedWrites?: boolean, socket?: Socket }, muxer?: { maConn?: unknown } }

t.test('mesh nodes pick AES-GCM Noise; other nodes get standard Noise', async (t) => {
  for (const [serverAes, clientAes, want] of [[true, true, NOISE_AES_PROTOCOL], [true, false, '/noise'], [false, true, '/noise']] as const) {
    const server = await createMeshNode({ listen: [loopbackListen('tcp')], aesNoise: serverAes })
    const client = await createMeshNode({ aesNoise: clientAes })
    try {
      const bytes = randomBytes(5 * MiB + 123)
      const got = await roundTrip(server, client, bytes)
      const conn = client.getConnections()[0]
      t.equal(conn.encryption, want, `server aes=${serverAes}, client aes=${clientAes}: ${want}`)
      t.ok(sameBytes(got, bytes), '5 MiB bit-exact')
      const internals = conn as unknown as Internals
      t.equal(internals.maConn?.batchedWrites, true, 'client TCP connection writes in batches')
      t.equal((server.getConnections()[0] as unknown as Internals).maConn?.batchedWrites, true, 'server TCP connection writes in batches')
      if (want === NOISE_AES_PROTOCOL) t.ok(internals.muxer?.maConn instanceof AesGcmMessageStream, 'the AES connection carries u32-framed messages')
    } finally {
      await Promise.all([client.stop(), server.stop()])
    }
  }
})

t.test('AES-256-GCM Noise messages', async (t) => {
  const k = randomBytes(32)
  const ad = randomBytes(32)
  const nonce = new Uint8Array(12)
  new DataView(nonce.buffer).setUint32(4, 7, true) // the library's encoding of n = 7
  const plain = randomBytes(65519)
  const list = new Uint8ArrayList(plain.subarray(0, 12), plain.subarray(12, 40000), plain.subarray(40000))
  const sealed = aesGcmCrypto.chaCha20Poly1305Encrypt(lib(list), nonce, ad, k)
  const whole = sealed instanceof Uint8Array ? sealed : sealed.subarray()
  t.equal(whole.byteLength, plain.byteLength + 16, 'ciphertext ‖ 16-byte tag')

  // The Noise spec's AESGCM nonce: 32 zero bits then n as a big-endian uint64.
  const specNonce = new Uint8Array(12)
  new DataView(specNonce.buffer).setUint32(8, 7, false)
  const reference = createCipheriv('aes-256-gcm', k, specNonce, { authTagLength: 16 }).setAAD(ad)
  const expected = Buffer.concat([reference.update(plain), reference.final(), reference.getAuthTag()])
  t.ok(sameBytes(whole, expected), 'equals AES-256-GCM with the spec nonce')

  const opened = aesGcmCrypto.chaCha20Poly1305Decrypt(lib(new Uint8ArrayList(whole.subarray(0, 30000), whole.subarray(30000))), nonce, ad, k)
  t.ok(sameBytes(opened instanceof Uint8Array ? opened : opened.subarray(), plain), 'decrypts a message split across reads')
  t.ok(sameBytes(aesGcmCrypto.chaCha20Poly1305Decrypt(whole, nonce, ad, k).subarray(), plain), 'decrypts a contiguous message')

  const tampered = Uint8Array.from(whole)
  tampered[1000] ^= 1
  t.throws(() => aesGcmCrypto.chaCha20Poly1305Decrypt(tampered, nonce, ad, k), 'a flipped ciphertext bit fails authentication')
  const badTag = Uint8Array.from(whole)
  badTag[badTag.byteLength - 1] ^= 1
  t.throws(() => aesGcmCrypto.chaCha20Poly1305Decrypt(badTag, nonce, ad, k), 'a flipped tag bit fails authentication')
  const otherNonce = new Uint8Array(12)
  new DataView(otherNonce.buffer).setUint32(4, 8, true)
  t.throws(() => aesGcmCrypto.chaCha20Poly1305Decrypt(whole, otherNonce, ad, k), 'the wrong nonce fails authentication')
  t.throws(() => aesGcmCrypto.chaCha20Poly1305Decrypt(whole, nonce, randomBytes(32), k), 'other associated data fails authentication')
})

t.test('a transport message larger than one cipher step equals AES-256-GCM of the whole', async (t) => {
  const k = randomBytes(32)
  const nonce = new Uint8Array(12)
  new DataView(nonce.buffer).setUint32(4, 0xfffffffe, true)
  // A yamux data frame as the muxer hands it over: 12-byte header, 1 MiB payload.
  const plain = randomBytes(MAX_MESSAGE_PLAINTEXT_BYTES / 2 + 12)
  const sealed = aesGcmCrypto.chaCha20Poly1305Encrypt(lib(new Uint8ArrayList(plain.subarray(0, 12), plain.subarray(12))), nonce, new Uint8Array(0), k)
  const whole = sealed instanceof Uint8Array ? sealed : sealed.subarray()
  const specNonce = new Uint8Array(12)
  new DataView(specNonce.buffer).setUint32(8, 0xfffffffe, false)
  const reference = createCipheriv('aes-256-gcm', k, specNonce, { authTagLength: 16 })
  t.ok(sameBytes(whole, Buffer.concat([reference.update(plain), reference.final(), reference.getAuthTag()])), 'equals one-shot AES-256-GCM')
  const pieces: Uint8Array[] = []
  for (let at = 0; at < whole.byteLength; at += 65536) pieces.push(whole.subarray(at, at + 65536)) // as socket reads arrive
  const opened = aesGcmCrypto.chaCha20Poly1305Decrypt(lib(new Uint8ArrayList(...pieces)), nonce, new Uint8Array(0), k)
  t.ok(sameBytes(opened instanceof Uint8Array ? opened : opened.subarray(), plain), 'decrypts from socket-sized pieces')
  const opened1 = aesGcmCrypto.chaCha20Poly1305Decrypt(whole, nonce, new Uint8Array(0), k)
  t.ok(sameBytes(opened1 instanceof Uint8Array ? opened1 : opened1.subarray(), plain), 'decrypts from one buffer')
})

t.test('a bit flipped on the wire after the handshake aborts the connection; nothing unauthenticated is delivered', async (t) => {
  const server = await createMeshNode({ listen: [loopbackListen('tcp')] })
  const client = await createMeshNode()
  const serverPort = Number(server.getMultiaddrs()[0].toString().split('/')[4])
  const flipAt = 3 * MiB + 12345 // client → server bytes, far past the handshake
  let forwarded = 0
  const sockets: Socket[] = []
  const proxy = createServer((down) => {
    const up = connect(serverPort, '127.0.0.1')
    sockets.push(down, up)
    down.on('data', (d: Buffer) => {
      if (forwarded <= flipAt && flipAt < forwarded + d.byteLength) d[flipAt - forwarded] ^= 0x10
      forwarded += d.byteLength
      up.write(d)
    })
    up.on('data', (d: Buffer) => { down.write(d) })
    for (const [a, b] of [[down, up], [up, down]]) {
      a.on('error', () => { b.destroy() })
      a.on('close', () => { b.destroy() })
    }
  })
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const s of sockets) s.destroy()
    proxy.close()
    await Promise.all([client.stop(), server.stop()])
  })

  const bytes = randomBytes(8 * MiB)
  let delivered = 0
  let authentic = true
  const closed = Promise.withResolvers<void>()
  await server.handle('/lumiere-test/tamper/1', (stream) => {
    stream.addEventListener('message', (evt) => {
      for (const piece of evt.data instanceof Uint8Array ? [evt.data] : evt.data) {
        if (!sameBytes(piece, bytes.subarray(delivered, delivered + piece.byteLength))) authentic = false
        delivered += piece.byteLength
      }
    })
    stream.addEventListener('close', () => { closed.resolve() })
  })
  const addr = `/ip4/127.0.0.1/tcp/${(proxy.address() as AddressInfo).port}/p2p/${server.peerId.toString()}`
  const stream = await client.dialProtocol(multiaddr(addr), '/lumiere-test/tamper/1')
  t.equal(client.getConnections()[0].encryption, NOISE_AES_PROTOCOL, 'through the proxy, still AES-GCM Noise')
  await sendAll(stream, bytes).catch(() => {}) // the connection may die under the sender
  await closed.promise
  t.ok(forwarded > flipAt, 'the proxy flipped a bit')
  t.ok(delivered < bytes.byteLength, `the stream ended early (${delivered} of ${bytes.byteLength} bytes delivered)`)
  t.ok(authentic, 'every delivered byte is what the client sent')
  t.equal(server.getConnections().length, 0, 'the server dropped the connection')
})

t.test('batched TCP writes: one writev per batch, bytes in order', async (t) => {
  const received: Buffer[] = []
  const arrived = Promise.withResolvers<void>()
  const total = 2 + 65535 + 2 + 1000
  let got = 0
  const server = createServer((sock) => {
    sock.on('data', (d: Buffer) => { received.push(d); got += d.byteLength; if (got >= total) arrived.resolve() })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const sock = connect((server.address() as AddressInfo).port, '127.0.0.1')
  await new Promise<void>((resolve) => sock.once('connect', resolve))
  t.teardown(() => { sock.destroy(); server.close() })

  let writevs = 0
  let writes = 0
  const s = sock as unknown as { _writev: (...a: unknown[]) => unknown, _write: (...a: unknown[]) => unknown }
  const writev = s._writev.bind(sock)
  const write = s._write.bind(sock)
  s._writev = (...a) => { writevs++; return writev(...a) }
  s._write = (...a) => { writes++; return write(...a) }

  const conn: { socket: Socket, sendData: (data: Uint8ArrayList) => { sentBytes: number, canSendMore: boolean } } = {
    socket: sock,
    sendData: () => { throw new Error('not patched') }
  }
  t.equal(batchSocketWrites(conn), true, 'patched')
  t.equal(batchSocketWrites({ sendData: () => ({}) }), false, 'an object without a socket is left alone')
  const parts = [Uint8Array.of(0xff, 0xef), randomBytes(65535), Uint8Array.of(0x03, 0xe8), randomBytes(1000)]
  const result = conn.sendData(new Uint8ArrayList(...parts))
  t.equal(result.sentBytes, total, 'reports every byte sent')
  await arrived.promise
  t.equal(writevs, 1, 'one writev')
  t.equal(writes, 0, 'no single writes')
  t.ok(sameBytes(Buffer.concat(received), Buffer.concat(parts)), 'bytes arrive in order')
})

t.test('a slow reader bounds the sender all the way down to the socket', async (t) => {
  const server = await createMeshNode({ listen: [loopbackListen('tcp')] })
  const client = await createMeshNode()
  t.teardown(async () => { await Promise.all([client.stop(), server.stop()]) })
  const inbound = Promise.withResolvers<StreamReader>()
  await server.handle('/lumiere-test/slow/1', (stream) => { inbound.resolve(new StreamReader(stream)) })
  const stream = await client.dialProtocol(server.getMultiaddrs()[0], '/lumiere-test/slow/1')
  const bytes = randomBytes(64 * MiB)
  let done = false
  const writing = sendAll(stream, bytes).then(() => { done = true })
  const reader = await inbound.promise
  const socket = (client.getConnections()[0] as unknown as Internals).maConn?.socket
  t.ok(socket != null, 'the TCP socket is reachable')
  let maxSocket = 0
  for (let i = 0; i < 50; i++) { // nobody reads for 1 s
    await sleep(20)
    maxSocket = Math.max(maxSocket, socket?.writableLength ?? 0)
  }
  t.notOk(done, 'the writer is held back')
  t.ok(maxSocket <= 20 * MiB, `the socket's own buffer stays within about one yamux window (max ${maxSocket})`)
  const got = new Uint8Array(bytes.byteLength)
  await reader.readInto(got)
  await writing
  t.ok(sameBytes(got, bytes), '64 MiB bit-exact after the stall')
})
