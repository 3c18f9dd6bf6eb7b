/** Shared helpers for the protocol tests: loopback libp2p nodes and tensors. */
import { randomFillSync } from 'node:crypto'
import { createMeshNode, loopbackListen } from '../src/mesh/node.ts'
import type { MeshNode, TransportName } from '../src/mesh/node.ts'
import { byteLength } from '../src/tensor/tensor.ts'
import type { DType, Tensor } from '../src/tensor/tensor.ts'
import { StreamReader } from '../protocol/stream-io.ts'
import type { Stream } from '@libp2p/interface'

export interface Pair {
  server: MeshNode
  client: MeshNode
  stop: () => Promise<void>
}

/** A listening server node and a dial-only client node on loopback. */
export async function nodePair (transport: TransportName = 'tcp'): Promise<Pair> {
  const server = await createMeshNode({ listen: [loopbackListen(transport)] })
  const client = await createMeshNode()
  return {
    server,
    client,
    stop: async () => { await Promise.all([client.stop(), server.stop()]) }
  }
}

/** The server's first listen address of the given transport. */
export function addrOf (node: MeshNode, transport: TransportName = 'tcp'): ReturnType<MeshNode['getMultiaddrs']>[number] {
  const want = transport === 'tcp' ? '/tcp/' : '/webrtc-direct'
  const ma = node.getMultiaddrs().find(a => a.toString().includes(want))
  if (ma == null) throw new Error(`no ${transport} address on node`)
  return ma
}

/** A tensor of random bytes of about `approxBytes`. */
export function randomTensor (dtype: DType, shape: number[]): Tensor {
  const data = new Uint8Array(byteLength(dtype, shape))
  for (let at = 0; at < data.byteLength; at += 65536) randomFillSync(data.subarray(at, Math.min(at + 65536, data.byteLength)))
  return { dtype, shape, data }
}

export function sameBytes (a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))
}

export const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

let protoCounter = 0

/**
 * Opens a stream from client to server on a fresh test protocol and returns
 * both ends. A StreamReader is attached to the inbound end at once (before
 * any await), as real handlers do.
 */
export async function openStreams (pair: Pair, transport: TransportName = 'tcp'): Promise<{ out: Stream, inbound: Stream, reader: StreamReader }> {
  const protocol = `/lumiere-test/${++protoCounter}`
  const got = Promise.withResolvers<{ inbound: Stream, reader: StreamReader }>()
  await pair.server.handle(protocol, (stream) => { got.resolve({ inbound: stream, reader: new StreamReader(stream) }) })
  const out = await pair.client.dialProtocol(addrOf(pair.server, transport), protocol)
  // multistream-select has completed, so the server already has the stream.
  return { out, ...await got.promise }
}
