/**
 * Circuit relay (v2) for peers behind NAT, used for WebRTC signalling only.
 *
 * A peer that joins a coordinator (`lumiere peer --join`) also listens on
 * RELAY_LISTEN: it reserves a slot on a relay it is connected to (the
 * coordinator, started with --relay) and takes WebRTC connections signalled
 * through it. The others of a job reach it as
 * `<relay>/p2p-circuit/webrtc/p2p/<peer>`: the relay carries the SDP offer,
 * answer and ICE candidates, the data then flows over the direct WebRTC
 * connection. The relayed connection itself is limited (128 KiB and 2 min by
 * default) and our rpc protocol does not run on limited connections, so no
 * tensor ever crosses the relay.
 */
import { RELAY_V2_HOP_CODEC, circuitRelayServer } from '@libp2p/circuit-relay-v2'
import { setTimeout as wait } from 'node:timers/promises'
import { LumiereError } from '../errors.ts'
import type { PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { MeshNode } from './node.ts'

/** Listen addresses of a node reachable through a relay: a reservation on any connected relay, WebRTC signalled over it. */
export const RELAY_LISTEN = ['/p2p-circuit', '/webrtc']

/**
 * Reservations one relay holds at once (libp2p's default is 15): every
 * volunteer behind NAT holds one for as long as it is in the mesh.
 */
const MAX_RESERVATIONS = 256

/** The relay server service of a mesh node (createMeshNode's `relay`). */
export function relayServer (): ReturnType<typeof circuitRelayServer> {
  return circuitRelayServer({ reservations: { maxReservations: MAX_RESERVATIONS } })
}

/** Whether `addr` reaches its peer by WebRTC signalled through a relay. */
export function isRelayedWebrtc (addr: string): boolean {
  return addr.includes('/p2p-circuit/webrtc/')
}

/** Whether `addr` goes through a relay at all. */
export function isRelayed (addr: string): boolean {
  return addr.includes('/p2p-circuit')
}

/**
 * Waits until `node` holds a reservation on `relay` (one of its addresses
 * goes through it), or `relay` turns out not to be a relay (identify lists
 * no hop protocol), or `timeoutMs` passes. Returns whether it holds one.
 */
export async function awaitReservation (node: MeshNode, relay: PeerId, options: { signal?: AbortSignal, timeoutMs: number }): Promise<boolean> {
  const through = `/p2p/${relay.toString()}/p2p-circuit`
  const deadline = Date.now() + options.timeoutMs
  while (Date.now() < deadline) {
    options.signal?.throwIfAborted()
    if (node.getMultiaddrs().some((a) => a.toString().includes(through))) return true
    const protocols = await node.peerStore.get(relay).then((p) => p.protocols, (): string[] => [])
    // identify has run (it lists protocols) and the hop protocol is not among them: no relay there.
    if (protocols.length > 0 && !protocols.includes(RELAY_V2_HOP_CODEC)) return false
    await wait(100, undefined, { signal: options.signal })
  }
  return false
}

/**
 * Opens (or finds) a direct WebRTC connection to a peer at its relayed
 * addresses, trying up to three times. Now and then (about 1 dial in 25 on
 * loopback, right after another WebRTC connection there closed) the peer
 * connection closes while ICE runs; libp2p's WebRTC dial swallows that and
 * waits out its 6 s address timeout, or hands back a connection that is
 * already closing. A later attempt has gone through every time.
 */
export async function dialRelayedWebrtc (node: MeshNode, addrs: Multiaddr[], signal?: AbortSignal): Promise<void> {
  let last: unknown
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const conn = await node.dial(addrs, { signal })
      if (conn.status === 'open' && conn.limits == null) return
      last = new Error(`the connection is ${conn.limits != null ? 'the limited relayed one' : conn.status}`)
    } catch (err) {
      last = err
    }
    signal?.throwIfAborted()
  }
  throw new LumiereError('PEER_UNREACHABLE', `cannot open a WebRTC connection through the relay to ${addrs[0]?.toString() ?? '(no address)'}: ${last instanceof Error ? last.message : String(last)}`, { cause: last })
}
