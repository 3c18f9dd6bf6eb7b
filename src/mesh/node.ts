import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { webRTCDirect } from '@libp2p/webrtc'
import { createLibp2p } from 'libp2p'
import type { Identify } from '@libp2p/identify'
import type { PrivateKey } from '@libp2p/interface'
import type { Ping } from '@libp2p/ping'
import type { Libp2p } from 'libp2p'

export type MeshNode = Libp2p<{ identify: Identify, ping: Ping }>

export type TransportName = 'tcp' | 'webrtc'

export interface MeshNodeOptions {
  /** Multiaddrs to listen on; none makes a dial-only node (the coordinator's default). */
  listen?: string[]
  privateKey?: PrivateKey
}

/** The listen address a loopback node of the given transport uses. */
export function loopbackListen (transport: TransportName): string {
  return transport === 'tcp' ? '/ip4/127.0.0.1/tcp/0' : '/ip4/127.0.0.1/udp/0/webrtc-direct'
}

/**
 * A libp2p node with both transports, noise and yamux. Yamux windows are
 * widened from the 256 KiB default so one stream can keep a link busy with
 * multi-MiB tensors.
 */
export async function createMeshNode (options: MeshNodeOptions = {}): Promise<MeshNode> {
  return createLibp2p({
    ...(options.privateKey != null ? { privateKey: options.privateKey } : {}),
    addresses: { listen: options.listen ?? [] },
    transports: [tcp(), webRTCDirect()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux({ streamOptions: { initialStreamWindowSize: 4 * 1024 * 1024, maxStreamWindowSize: 16 * 1024 * 1024 } })],
    connectionManager: { maxConnections: 256 },
    services: { identify: identify(), ping: ping() }
  })
}
