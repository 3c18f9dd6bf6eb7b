import { multiaddr } from '@multiformats/multiaddr'
import { LumiereError } from '../src/errors.ts'
import { createMeshNode } from '../src/mesh/node.ts'
import { rpcCall } from '../protocol/rpc.ts'
import { Inbox } from './inbox.ts'
import { Discovery } from './discovery.ts'
import type { Capabilities } from '../peer/capabilities.ts'
import type { MeshNode } from '../src/mesh/node.ts'
import type { AccessConfig } from '../src/mesh/access.ts'

export interface PeerInfo {
  id: string
  addrs: string[]
  capabilities: Capabilities
}

export interface CoordinatorStartOptions {
  /** Pre-shared key, peer allowlist and identity of the coordinator's node (access.ts). */
  access?: AccessConfig
  /** Multiaddrs to listen on, so that peers can join (`lumiere peer --join`); none keeps the node dial-only. */
  listen?: string[]
  /** Run a circuit relay server for joining peers behind NAT (needs `listen`; src/mesh/relay.ts). */
  relay?: boolean
  /** Find peers that announce themselves by mDNS on the LAN (discovery.ts). */
  mdns?: boolean
}

export interface ConnectOptions {
  signal?: AbortSignal
  timeoutMs?: number
}

/**
 * The coordinator's libp2p node and its inbox for results. Peers answer over
 * the connection the coordinator opened, so a coordinator behind NAT needs no
 * listen address; it listens only to take join requests (and relay for
 * peers behind NAT), and finds LAN peers by mDNS with no address at all.
 */
export class Coordinator {
  readonly node: MeshNode
  readonly inbox: Inbox
  /** The peers this coordinator may connect with (--allow), when limited; add ids to let more in. */
  readonly allow: Set<string> | undefined
  /** Peers that find this coordinator on their own (mDNS, join requests), when it looks for them. */
  readonly discovery: Discovery | undefined
  private readonly joinListeners = new Set<(peer: PeerInfo) => void>()

  private constructor (node: MeshNode, inbox: Inbox, allow: Set<string> | undefined, options: CoordinatorStartOptions) {
    this.node = node
    this.inbox = inbox
    this.allow = allow
    const join = (options.listen?.length ?? 0) > 0
    this.discovery = options.mdns === true || join ? new Discovery(this, { mdns: options.mdns === true, join }) : undefined
  }

  static async start (options: CoordinatorStartOptions = {}): Promise<Coordinator> {
    const { privateKey, psk, allow } = options.access ?? {}
    const listen = options.listen ?? []
    if (options.relay === true && listen.length === 0) throw new LumiereError('BAD_ARGUMENT', '--relay needs --listen ADDR: peers behind NAT reserve their slot on the relay by dialling it')
    let node: MeshNode
    try {
      node = await createMeshNode({ listen, relay: options.relay, ...(privateKey != null ? { privateKey } : {}), access: { ...(psk != null ? { psk } : {}), ...(allow != null ? { allow } : {}) } })
    } catch (err) {
      if (listen.length === 0) throw err
      throw new LumiereError('BAD_ARGUMENT', `cannot listen on ${listen.join(', ')}: ${err instanceof Error ? err.message : String(err)} (give a multiaddr such as /ip4/0.0.0.0/tcp/4001, on a free port)`, { cause: err })
    }
    const coordinator = new Coordinator(node, await Inbox.start(node), allow, options)
    try {
      await coordinator.discovery?.start()
    } catch (err) {
      await coordinator.stop()
      throw err
    }
    return coordinator
  }

  /** The full addresses (with /p2p/ id) peers can join at; none for a dial-only coordinator. */
  addrs (): string[] {
    return this.node.getMultiaddrs().map(String)
  }

  /** Dials each peer and asks for its capabilities; an unreachable peer is an error naming it. */
  async connect (addrs: string[], options: ConnectOptions = {}): Promise<PeerInfo[]> {
    const peers = await Promise.all(addrs.map(async (addr) => {
      let ma
      try {
        ma = multiaddr(addr)
      } catch {
        throw new LumiereError('BAD_ARGUMENT', `'${addr}' is not a multiaddr; peers print theirs when they start (or use --addr-file)`)
      }
      if (ma.getComponents().find((c) => c.name === 'p2p') == null) {
        throw new LumiereError('BAD_ARGUMENT', `peer address '${addr}' lacks its /p2p/<peer id>; copy the full address the peer printed`)
      }
      const id = ma.getComponents().findLast((c) => c.name === 'p2p')?.value
      if (this.allow != null && id != null && !this.allow.has(id)) {
        throw new LumiereError('PEER_UNREACHABLE', `peer ${addr} is not in this coordinator's --allow list; add ${id} to it`)
      }
      try {
        const { body } = await rpcCall(this.node, ma, 'capabilities', {}, { signal: options.signal, timeoutMs: options.timeoutMs ?? 15_000 })
        return { id: body.peerId, addrs: [addr], capabilities: body }
      } catch (err) {
        if (err instanceof LumiereError && err.code !== 'PEER_UNREACHABLE' && err.code !== 'DEADLINE_EXCEEDED') throw err
        throw new LumiereError('PEER_UNREACHABLE', `cannot reach peer ${addr}: ${err instanceof Error ? err.message : String(err)} — is 'lumiere peer' running there? On a private mesh both sides need the same --psk key, and each side's --allow must list the other`)
      }
    }))
    const seen = new Set<string>()
    for (const p of peers) {
      if (seen.has(p.id)) throw new LumiereError('BAD_ARGUMENT', `peer ${p.id} is listed twice; give each peer once`)
      seen.add(p.id)
    }
    return peers
  }

  /**
   * Tells the running jobs that a peer joined after they started (a join
   * request, mDNS discovery, or a caller that connected it): jobs add it to
   * their pool and use it from their next step.
   */
  admit (peer: PeerInfo): void {
    for (const listener of this.joinListeners) listener(peer)
  }

  /** Calls `listener` for every peer admitted from now on; returns the unsubscribe. */
  onJoin (listener: (peer: PeerInfo) => void): () => void {
    this.joinListeners.add(listener)
    return () => { this.joinListeners.delete(listener) }
  }

  /** Stops discovery and the node (whose stop is bounded: src/mesh/node.ts). */
  async stop (): Promise<void> {
    await this.discovery?.stop()
    await this.node.stop()
  }
}
