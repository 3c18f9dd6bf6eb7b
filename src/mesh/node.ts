import { setTimeout as wait } from 'node:timers/promises'
import { yamux } from '@chainsafe/libp2p-yamux'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { webRTC, webRTCDirect } from '@libp2p/webrtc'
import { createLibp2p } from 'libp2p'
import type { Identify } from '@libp2p/identify'
import type { PrivateKey } from '@libp2p/interface'
import type { Ping } from '@libp2p/ping'
import type { Libp2p } from 'libp2p'
import { meshEncrypters } from './encryption.ts'
import { batchedTcp } from './tcp.ts'
import { meshAccessConfig } from './access.ts'
import type { MeshAccess } from './access.ts'
import { relayServer } from './relay.ts'

export type MeshNode = Libp2p<{ identify: Identify, ping: Ping }>

export type TransportName = 'tcp' | 'webrtc'

export interface MeshNodeOptions {
  /** Multiaddrs to listen on; none makes a dial-only node (the coordinator's default). */
  listen?: string[]
  privateKey?: PrivateKey
  /**
   * Offer Noise with AES-256-GCM (see encryption.ts) before standard Noise
   * (default true). False offers standard ChaChaPoly Noise only.
   */
  aesNoise?: boolean
  /** Pre-shared key (TCP/WebSocket) and peer-id allowlist (every transport); see access.ts. */
  access?: MeshAccess
  /**
   * Run a circuit relay server: nodes behind NAT reserve a slot on it and are
   * dialled through it, for WebRTC signalling only (see relay.ts).
   */
  relay?: boolean
}

/** The listen address a loopback node of the given transport uses. */
export function loopbackListen (transport: TransportName): string {
  return transport === 'tcp' ? '/ip4/127.0.0.1/tcp/0' : '/ip4/127.0.0.1/udp/0/webrtc-direct'
}

/** Yamux stream windows: every mesh node must use the same initial window (yamux assumes the peer's equals its own). */
export const YAMUX_INITIAL_WINDOW_BYTES = 4 * 1024 * 1024
export const YAMUX_MAX_WINDOW_BYTES = 16 * 1024 * 1024

/**
 * A libp2p node with both transports, Noise (AES-256-GCM between mesh nodes,
 * standard ChaChaPoly with anyone else; see encryption.ts) and yamux. TCP
 * connections write each batch of Noise messages with one writev (tcp.ts).
 * Yamux windows are widened from the 256 KiB default so one stream can keep
 * a link busy with multi-MiB tensors: with 256 KiB the sender waits for a
 * window update every 256 KiB, a round trip through the receiver's event
 * loop. Yamux data frames are as large as the window allows (the muxer's
 * 64 KiB maxMessageSize setting is not used for data in
 * @chainsafe/libp2p-yamux 8), so a 1 MiB send() is one frame, one AES-GCM
 * Noise message (encryption.ts) and one window update.
 *
 * WebRTC-direct keeps its defaults: its cost is in node-datachannel's native
 * threads (SCTP over DTLS in ~1.2 KB UDP packets), not in JS. Per 32 MiB on
 * loopback, libdatachannel's "RTC worker" threads used 150-180 ms of CPU in
 * the sender and 110-150 ms in the receiver, libjuice's UDP threads 10-50 ms
 * each, the JS main threads 10-60 ms: ~12 ns/B for both ends together, so
 * two cores cap a link near 160 MB/s whatever JS does. Measured with no
 * gain: larger maxBufferedAmount, a non-zero bufferedAmountLow threshold,
 * node-datachannel's SCTP buffer / congestion settings, a tensor striped
 * over 4 data channels, 2-4 connections in parallel; a maxMessageSize over
 * the 16 KiB the transport writes into its SDP makes the data channel close.
 *
 * Every node can dial through a circuit relay and take WebRTC connections
 * signalled over one (`<relay>/p2p-circuit/webrtc/p2p/<peer>`), so a peer
 * behind NAT is reachable by the others of its job; see relay.ts.
 */
export async function createMeshNode (options: MeshNodeOptions = {}): Promise<MeshNode> {
  const node = await createLibp2p({
    ...(options.privateKey != null ? { privateKey: options.privateKey } : {}),
    addresses: { listen: options.listen ?? [] },
    transports: [batchedTcp(), webRTCDirect(), circuitRelayTransport(), webRTC()],
    connectionEncrypters: meshEncrypters({ aes: options.aesNoise }),
    streamMuxers: [yamux({ streamOptions: { initialStreamWindowSize: YAMUX_INITIAL_WINDOW_BYTES, maxStreamWindowSize: YAMUX_MAX_WINDOW_BYTES } })],
    connectionManager: { maxConnections: 256 },
    ...meshAccessConfig(options.access),
    services: { identify: identify(), ping: ping(), ...(options.relay === true ? { relay: relayServer() } : {}) }
  }) as MeshNode
  boundStop(node)
  return node
}

/** How long a stop waits for libp2p to close the connections before aborting them, and then before giving up. */
const STOP_GRACE_MS = 5_000

/**
 * Makes the node's stop bounded. libp2p's stop waits for every connection
 * to close, and a WebRTC connection's close has now and then never
 * completed (seen in full test runs: coordinators and test nodes stuck in
 * stop); after STOP_GRACE_MS the connections are aborted, and after as
 * long again the stop returns, whatever libp2p still holds.
 */
function boundStop (node: MeshNode): void {
  const stop = node.stop.bind(node)
  // Unref'd: a stop that ends in time leaves no timer keeping the process up.
  const grace = async (): Promise<false> => wait(STOP_GRACE_MS, false as const, { ref: false })
  node.stop = async () => {
    const stopped = Promise.resolve(stop())
    if (await Promise.race([stopped.then(() => true), grace()])) return
    for (const c of node.getConnections()) c.abort(new Error('node stopping'))
    await Promise.race([stopped, grace()])
  }
}
