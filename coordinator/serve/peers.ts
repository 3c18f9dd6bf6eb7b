/**
 * The peers `lumiere serve` runs on: the ones it was started with, then every
 * peer its coordinator admits (found by mDNS or joining; Coordinator.onJoin),
 * with their capabilities and health: an rpc `ping` every `intervalMs` over
 * the server's coordinator, whose round trip is reported, with consecutive
 * failures counted. A peer that stops answering stays listed, marked
 * unhealthy; when it is admitted again its entry is renewed.
 */
import { multiaddr } from '@multiformats/multiaddr'
import { toLumiereError } from '../../src/errors.ts'
import { rpcCall } from '../../protocol/rpc.ts'
import type { Coordinator, PeerInfo } from '../coordinator.ts'
import type { Capabilities } from '../../peer/capabilities.ts'

export interface PeerHealth {
  ok: boolean
  /** Round trip of the last successful ping, ms. */
  rttMs?: number
  /** ISO time of the last ping attempt. */
  checkedAt?: string
  /** ISO time of the last successful ping. */
  lastSeen?: string
  /** Consecutive failed pings. */
  failures: number
  error?: string
}

/** How the server got a peer: started it (--local), was given it (--peers), or it found the server (mDNS, join). */
export type PeerSource = 'local' | 'peers' | 'mdns' | 'join'

export interface MonitoredPeer {
  id: string
  /** The addresses the coordinator dials, and gives the other peers of a job. */
  addrs: string[]
  transport: string
  source: PeerSource
  capabilities: Capabilities
  health: PeerHealth
}

export interface PeerMonitorOptions {
  intervalMs?: number
  pingTimeoutMs?: number
  /** Called after every round of pings, and when a peer is admitted. */
  onUpdate?: (peers: MonitoredPeer[]) => void
}

/** The transport an address uses, for people: tcp, webrtc-direct, ws, … */
export function transportOf (addr: string): string {
  if (addr.includes('/webrtc-direct')) return 'webrtc-direct'
  if (addr.includes('/webrtc')) return 'webrtc'
  if (addr.includes('/wss') || addr.includes('/tls/ws')) return 'wss'
  if (addr.includes('/ws')) return 'ws'
  if (addr.includes('/quic')) return 'quic'
  if (addr.includes('/tcp/')) return 'tcp'
  return 'unknown'
}

export class PeerMonitor {
  readonly coordinator: Coordinator
  readonly peers: MonitoredPeer[]
  private readonly options: PeerMonitorOptions
  private timer: NodeJS.Timeout | undefined
  private round: Promise<void> | undefined
  private stopped = false
  private readonly unsubscribe: () => void

  private constructor (coordinator: Coordinator, options: PeerMonitorOptions) {
    this.coordinator = coordinator
    this.peers = []
    this.options = options
    this.unsubscribe = coordinator.onJoin((peer) => {
      this.add(peer, coordinator.discovery?.via(peer.id) ?? 'join')
      this.options.onUpdate?.(this.peers)
    })
  }

  /**
   * Watches `peers` (connected by `coordinator`, from `source`) and every peer
   * the coordinator admits from now on; pings them all periodically.
   */
  static async start (coordinator: Coordinator, peers: PeerInfo[], source: PeerSource, options: PeerMonitorOptions = {}): Promise<PeerMonitor> {
    const monitor = new PeerMonitor(coordinator, options)
    for (const p of peers) monitor.add(p, source)
    for (const p of coordinator.discovery?.peers() ?? []) monitor.add(p, coordinator.discovery?.via(p.id) ?? 'join')
    await monitor.pingAll()
    monitor.schedule()
    return monitor
  }

  /** Pings every peer once, concurrently. */
  async pingAll (): Promise<void> {
    this.round ??= (async () => {
      await Promise.all(this.peers.map(async (p) => this.ping(p)))
      this.round = undefined
      if (!this.stopped) this.options.onUpdate?.(this.peers)
    })()
    return this.round
  }

  async stop (): Promise<void> {
    this.stopped = true
    this.unsubscribe()
    clearTimeout(this.timer)
    await this.round?.catch(() => {})
  }

  /** Lists a peer, or renews its entry when it is listed already (a peer that came back). */
  private add (peer: PeerInfo, source: PeerSource): void {
    const now = new Date().toISOString()
    const entry: MonitoredPeer = {
      id: peer.id,
      addrs: peer.addrs,
      transport: transportOf(peer.addrs[0] ?? ''),
      source,
      capabilities: peer.capabilities,
      health: { ok: true, checkedAt: now, lastSeen: now, failures: 0 }
    }
    const at = this.peers.findIndex((p) => p.id === peer.id)
    if (at >= 0) this.peers[at] = entry
    else this.peers.push(entry)
  }

  private schedule (): void {
    if (this.stopped) return
    this.timer = setTimeout(() => { void this.pingAll().finally(() => { this.schedule() }) }, this.options.intervalMs ?? 5_000)
    this.timer.unref()
  }

  private async ping (peer: MonitoredPeer): Promise<void> {
    const started = performance.now()
    const checkedAt = new Date().toISOString()
    try {
      await rpcCall(this.coordinator.node, peer.addrs.map((a) => multiaddr(a)), 'ping', {}, { timeoutMs: this.options.pingTimeoutMs ?? 3_000 })
      const rttMs = Number((performance.now() - started).toFixed(2))
      peer.health = { ok: true, rttMs, checkedAt, lastSeen: checkedAt, failures: 0 }
    } catch (err) {
      if (this.stopped) return
      const e = toLumiereError(err)
      peer.health = { ok: false, checkedAt, lastSeen: peer.health.lastSeen, failures: peer.health.failures + 1, error: `${e.code}: ${e.message}` }
    }
  }
}
