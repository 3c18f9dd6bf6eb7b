/**
 * Peers that find the coordinator on their own: mDNS answers on the LAN
 * (`lumiere peer --mdns`; the coordinator asks with --discover) and join
 * requests (`lumiere peer --join`; the coordinator listens with --listen).
 *
 * Each is connected and asked its capabilities: only a node that answers
 * counts (it speaks our protocol, has our --psk, passes our --allow). It is
 * then admitted: listed in `peers()` and handed to Coordinator.admit, so
 * running jobs take it from their next step. A peer that disconnects is
 * dropped from the list; when it comes back it is admitted again.
 *
 * A joining peer's addresses are checked from here: when the coordinator can
 * dial one of its direct addresses, those are what the other peers of a job
 * get; when it cannot (the peer is behind NAT), they get its WebRTC addresses
 * through a relay (src/mesh/relay.ts), and the coordinator itself talks to
 * the peer over the connection the peer opened.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { LumiereError, toLumiereError } from '../src/errors.ts'
import { handleRpc, rpcCall } from '../protocol/rpc.ts'
import { queryLan } from '../src/mesh/mdns.ts'
import { isRelayed, isRelayedWebrtc } from '../src/mesh/relay.ts'
import { routableAddrs } from '../src/mesh/routable.ts'
import type { PeerId, PeerInfo as Libp2pPeerInfo } from '@libp2p/interface'
import type { Coordinator, PeerInfo } from './coordinator.ts'
import type { LanDiscovery } from '../src/mesh/mdns.ts'
import type { RpcServer } from '../protocol/rpc.ts'

/** How a peer found the coordinator. */
export type DiscoveredVia = 'mdns' | 'join'

export interface DiscoveryOptions {
  /** Ask the LAN by mDNS. */
  mdns: boolean
  /** Take join requests (the coordinator listens). */
  join: boolean
}

export interface WaitOptions {
  signal?: AbortSignal
  timeoutMs: number
}

/** Time to dial a joining peer's direct addresses before taking it as unreachable (behind NAT). */
const PROBE_TIMEOUT_MS = 5_000
const CAPABILITIES_TIMEOUT_MS = 15_000
/** A node found by mDNS that could not be used is tried again after this, doubling up to the max. */
const RETRY_MS = { min: 2_000, max: 60_000 }

interface Failure { error: string, retryAt: number, delayMs: number }

export class Discovery {
  private readonly coordinator: Coordinator
  private readonly options: DiscoveryOptions
  private readonly admitted = new Map<string, PeerInfo & { via: DiscoveredVia }>()
  /** Admissions under way, by peer id. */
  private readonly pending = new Map<string, Promise<unknown>>()
  /** mDNS-found nodes that could not be used, by peer id. */
  private readonly failures = new Map<string, Failure>()
  private readonly changed = new EventTarget()
  private lan: LanDiscovery | undefined
  private rpc: RpcServer | undefined
  private stopped = false
  private readonly onDisconnect = (evt: CustomEvent<PeerId>): void => {
    if (this.admitted.delete(evt.detail.toString())) this.changed.dispatchEvent(new Event('change'))
  }

  constructor (coordinator: Coordinator, options: DiscoveryOptions) {
    this.coordinator = coordinator
    this.options = options
  }

  async start (): Promise<void> {
    const node = this.coordinator.node
    node.addEventListener('peer:disconnect', this.onDisconnect)
    if (this.options.join) {
      this.rpc = await handleRpc(node, {
        join: async ({ body, from, signal }) => {
          const info = await this.admitJoined(from.toString(), body.addrs, signal)
          return { body: { addrs: info.addrs } }
        }
      })
    }
    if (this.options.mdns) this.lan = await queryLan(node, (peer) => { this.onLanPeer(peer) })
  }

  /** The peers admitted and still connected, in the order they came. */
  peers (): PeerInfo[] {
    return [...this.admitted.values()].map(({ via: _via, ...peer }) => peer)
  }

  /** How an admitted peer found the coordinator. */
  via (id: string): DiscoveredVia | undefined {
    return this.admitted.get(id)?.via
  }

  /**
   * Resolves with the admitted peers once there are at least `n`; fails with
   * DEADLINE_EXCEEDED after `timeoutMs`, saying how many were found.
   */
  async waitFor (n: number, options: WaitOptions): Promise<PeerInfo[]> {
    const { promise, resolve, reject } = Promise.withResolvers<PeerInfo[]>()
    const check = (): void => { if (this.admitted.size >= n) resolve(this.peers()) }
    const timer = setTimeout(() => { reject(this.shortfall(n, options.timeoutMs)) }, options.timeoutMs)
    const onAbort = (): void => { reject(new LumiereError('ABORTED', 'stopped while waiting for peers')) }
    this.changed.addEventListener('change', check)
    options.signal?.addEventListener('abort', onAbort, { once: true })
    try {
      options.signal?.throwIfAborted()
      check()
      return await promise
    } finally {
      clearTimeout(timer)
      this.changed.removeEventListener('change', check)
      options.signal?.removeEventListener('abort', onAbort)
    }
  }

  /** Stops finding peers. Admissions under way end when the coordinator's node stops; none is admitted after this. */
  async stop (): Promise<void> {
    this.stopped = true
    this.coordinator.node.removeEventListener('peer:disconnect', this.onDisconnect)
    await this.lan?.stop()
    await this.rpc?.close()
  }

  private shortfall (n: number, timeoutMs: number): LumiereError {
    const found = this.admitted.size
    const failed = [...this.failures.values()]
    const ways = [this.options.mdns ? 'peers on this LAN segment started with `lumiere peer --mdns` (multicast must reach them)' : '', this.options.join ? 'peers started with `lumiere peer --join` and this coordinator\'s address' : ''].filter((w) => w !== '').join(', or ')
    const unusable = failed.length > 0 ? `; ${failed.length} more answered but could not be used (${failed[0].error.slice(0, 300)})` : ''
    return new LumiereError('DEADLINE_EXCEEDED', `found ${found} of the ${n} peers wanted within ${Math.round(timeoutMs / 1000)} s${unusable}. Peers that count are ${ways}, with the same --psk, and each side's --allow listing the other`)
  }

  private onLanPeer (peer: Libp2pPeerInfo): void {
    const id = peer.id.toString()
    if (this.admitted.has(id) || this.pending.has(id)) return
    const failure = this.failures.get(id)
    if (failure != null && Date.now() < failure.retryAt) return
    if (this.coordinator.allow != null && !this.coordinator.allow.has(id)) {
      this.fail(id, `${id} is not in this coordinator's --allow list`)
      return
    }
    const addrs = routableAddrs(peer.multiaddrs.map((ma) => ma.encapsulate(`/p2p/${id}`).toString()))
    // A failure is remembered in `failures` (and tried again later); nobody waits on this one.
    this.track(id, this.admit(id, addrs, 'mdns')).catch(() => {})
  }

  private async admitJoined (id: string, offered: string[], signal: AbortSignal): Promise<PeerInfo> {
    const addrs = offered.filter((a) => peerIdOf(a) === id)
    if (addrs.length === 0) throw new LumiereError('BAD_ARGUMENT', `join: none of the addresses offered ends with the joining peer's id /p2p/${id}`)
    const direct = routableAddrs(addrs.filter((a) => !isRelayed(a)))
    const relayed = routableAddrs(addrs.filter(isRelayedWebrtc))
    let reachable: string[]
    if (await this.probe(direct, signal)) reachable = direct
    else if (relayed.length > 0) reachable = relayed
    else {
      throw new LumiereError('PEER_UNREACHABLE', `this coordinator cannot dial the joining peer at ${direct.join(', ') || '(no direct address)'} and it offers no WebRTC address through a relay: start the coordinator with --relay (peers behind NAT then take WebRTC connections signalled through it), or give the peer a --listen address the coordinator can reach`)
    }
    return await this.track(id, this.admit(id, reachable, 'join', signal))
  }

  /** Whether a fresh connection to one of `addrs` can be opened from here (not reusing the one the peer opened). */
  private async probe (addrs: string[], signal: AbortSignal): Promise<boolean> {
    if (addrs.length === 0) return false
    try {
      const connection = await this.coordinator.node.dial(addrs.map((a) => multiaddr(a)), { force: true, signal: AbortSignal.any([signal, AbortSignal.timeout(PROBE_TIMEOUT_MS)]) })
      await connection.close().catch(() => {})
      return true
    } catch {
      return false
    }
  }

  /** Counts `work` as the admission under way for `id` until it settles. */
  private async track<T> (id: string, work: Promise<T>): Promise<T> {
    const entry = work.then(() => {}, () => {})
    this.pending.set(id, entry)
    try {
      return await work
    } finally {
      if (this.pending.get(id) === entry) this.pending.delete(id)
    }
  }

  /** Asks capabilities at `addrs` and admits the peer. An mDNS failure is remembered (and retried later); a join failure goes back to the joiner. */
  private async admit (id: string, addrs: string[], via: DiscoveredVia, signal?: AbortSignal): Promise<PeerInfo> {
    let info: PeerInfo
    try {
      const { body } = await rpcCall(this.coordinator.node, addrs.map((a) => multiaddr(a)), 'capabilities', {}, { signal, timeoutMs: CAPABILITIES_TIMEOUT_MS })
      if (body.peerId !== id) throw new LumiereError('PROTOCOL', `the node ${id} reports its id as ${body.peerId}`)
      info = { id, addrs: firstUsed(this.coordinator, id, addrs), capabilities: body }
    } catch (err) {
      const e = toLumiereError(err, 'PEER_UNREACHABLE')
      if (via === 'mdns') this.fail(id, `${e.code}: ${e.message}`)
      throw e
    }
    if (this.stopped) throw new LumiereError('ABORTED', 'the coordinator is stopping')
    // Admitted means connected: a peer gone since it answered is left to come back.
    if (this.coordinator.node.getConnections(peerIdFromString(id)).length === 0) throw new LumiereError('PEER_LOST', `peer ${id} disconnected while being admitted`)
    this.failures.delete(id)
    const known = this.admitted.has(id)
    this.admitted.set(id, { ...info, via })
    this.changed.dispatchEvent(new Event('change'))
    if (!known) this.coordinator.admit(info)
    return info
  }

  private fail (id: string, error: string): void {
    const delayMs = Math.min(2 * (this.failures.get(id)?.delayMs ?? RETRY_MS.min / 2), RETRY_MS.max)
    this.failures.set(id, { error, retryAt: Date.now() + delayMs, delayMs })
  }
}

/** `addrs` with the one the coordinator's open connection to the peer uses (when it is one of them) first. */
function firstUsed (coordinator: Coordinator, id: string, addrs: string[]): string[] {
  const used = coordinator.node.getConnections(peerIdFromString(id)).find((c) => c.limits == null)?.remoteAddr.toString()
  return used != null && addrs.includes(used) ? [used, ...addrs.filter((a) => a !== used)] : addrs
}

function peerIdOf (addr: string): string | undefined {
  try {
    return multiaddr(addr).getComponents().findLast((c) => c.name === 'p2p')?.value
  } catch {
    return undefined
  }
}
