/**
 * Joining a coordinator, the volunteer's way into a mesh
 * (`lumiere peer --join ADDR`): the peer dials the coordinator, waits for its
 * relay reservation there when the coordinator is a relay (relay.ts), and
 * sends `join` with the addresses it listens on; the coordinator connects
 * back, asks its capabilities and admits it (coordinator/discovery.ts).
 * Whenever the coordinator goes away (stopped, restarted, the network down)
 * the peer joins again, backing off from 1 s to 30 s between attempts.
 */
import { multiaddr } from '@multiformats/multiaddr'
import { setTimeout as wait } from 'node:timers/promises'
import { LumiereError, toLumiereError } from '../errors.ts'
import { rpcCall } from '../../protocol/rpc.ts'
import { MAX_ADDRS, MAX_ADDR_LENGTH } from '../../protocol/messages.ts'
import { awaitReservation } from './relay.ts'
import { routableAddrs } from './routable.ts'
import type { PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Logger } from '../log.ts'
import type { MeshNode } from './node.ts'

export interface JoinOptions {
  log: Logger
  /** Coordinators this peer takes jobs from (--trust): joining any other is pointless, so it is refused. */
  trust?: ReadonlySet<string>
  /** Bounds of the wait between attempts, ms (default 1 s doubling to 30 s). */
  backoffMs?: { min: number, max: number }
}

export interface Joining {
  /** Stops joining (an attempt under way is abandoned). */
  stop: () => Promise<void>
}

const DIAL_TIMEOUT_MS = 10_000
/** Time for the coordinator's relay to grant a reservation before the join is sent without one. */
const RESERVATION_TIMEOUT_MS = 10_000
/** The coordinator probes the peer's addresses and asks its capabilities before it answers. */
const JOIN_TIMEOUT_MS = 60_000

/** Parses a --join address (BAD_ARGUMENT naming it). Without /p2p/<id>, any node answering there is taken (check it with --trust). */
export function parseJoinAddr (text: string): Multiaddr {
  let ma: Multiaddr
  try {
    ma = multiaddr(text)
  } catch {
    throw new LumiereError('BAD_ARGUMENT', `--join '${text.slice(0, 200)}' is not a multiaddr; give the address the coordinator printed, e.g. /ip4/192.0.2.1/tcp/4001/p2p/12D3KooW…`)
  }
  if (ma.getComponents().some((c) => c.name === 'p2p-circuit')) {
    throw new LumiereError('BAD_ARGUMENT', `--join ${text.slice(0, 200)} goes through a relay; give the coordinator's own address`)
  }
  return ma
}

/** Keeps `node` joined to the coordinator at `target` until stopped. */
export function startJoining (node: MeshNode, target: Multiaddr, options: JoinOptions): Joining {
  const controller = new AbortController()
  const loop = joinLoop(node, target, options, controller.signal)
  return {
    stop: async () => {
      controller.abort()
      await loop
    }
  }
}

async function joinLoop (node: MeshNode, target: Multiaddr, options: JoinOptions, signal: AbortSignal): Promise<void> {
  const { min, max } = options.backoffMs ?? { min: 1_000, max: 30_000 }
  let backoff = min
  let lastError = ''
  while (!signal.aborted) {
    try {
      const coordinator = await joinOnce(node, target, options, signal)
      backoff = min
      lastError = ''
      await untilDisconnected(node, coordinator, signal)
      if (!signal.aborted) options.log.warn({ coordinator: coordinator.toString() }, 'lost the coordinator; joining again')
    } catch (err) {
      if (signal.aborted) break
      const e = toLumiereError(err, 'PEER_UNREACHABLE')
      const message = `${e.code}: ${e.message}`
      // The same failure every 30 s for hours is one warning, then debug lines.
      options.log[message === lastError ? 'debug' : 'warn']({ coordinator: target.toString(), err: message, retryInS: backoff / 1000 }, 'could not join the coordinator; trying again')
      lastError = message
      await wait(backoff, undefined, { signal }).catch(() => {})
      backoff = Math.min(2 * backoff, max)
    }
  }
}

/** One attempt: dial, check trust, wait for the relay slot, send `join`. Returns the coordinator's id. */
async function joinOnce (node: MeshNode, target: Multiaddr, options: JoinOptions, signal: AbortSignal): Promise<PeerId> {
  const connection = await node.dial(target, { signal: AbortSignal.any([signal, AbortSignal.timeout(DIAL_TIMEOUT_MS)]) })
  const coordinator = connection.remotePeer
  if (options.trust != null && !options.trust.has(coordinator.toString())) {
    await node.hangUp(coordinator).catch(() => {})
    throw new LumiereError('UNTRUSTED', `the node at ${target.toString()} is ${coordinator.toString()}, which this peer does not --trust: it would take none of its jobs`)
  }
  const relayed = await awaitReservation(node, coordinator, { signal, timeoutMs: RESERVATION_TIMEOUT_MS })
  const addrs = offeredAddrs(node)
  if (addrs.length === 0) {
    throw new LumiereError('PEER_UNREACHABLE', 'this peer has no address to offer: it listens on none and holds no relay reservation (start the coordinator with --relay, or give this peer a --listen address the coordinator can reach)')
  }
  const { body } = await rpcCall(node, coordinator, 'join', { addrs }, { signal, timeoutMs: JOIN_TIMEOUT_MS })
  options.log.info({ coordinator: coordinator.toString(), reachableAs: body.addrs, relayed }, 'joined the coordinator')
  return coordinator
}

/** The node's addresses another host can use, as many as a join carries. */
function offeredAddrs (node: MeshNode): string[] {
  return routableAddrs(node.getMultiaddrs().map(String).filter((a) => a.length <= MAX_ADDR_LENGTH)).slice(0, MAX_ADDRS)
}

async function untilDisconnected (node: MeshNode, peer: PeerId, signal: AbortSignal): Promise<void> {
  const { promise, resolve } = Promise.withResolvers<void>()
  const onDisconnect = (evt: CustomEvent<PeerId>): void => { if (evt.detail.equals(peer)) resolve() }
  node.addEventListener('peer:disconnect', onDisconnect)
  signal.addEventListener('abort', () => { resolve() }, { once: true })
  try {
    if (node.getConnections(peer).length > 0 && !signal.aborted) await promise
  } finally {
    node.removeEventListener('peer:disconnect', onDisconnect)
  }
}
