/**
 * The peers `lumiere serve` runs on: their capabilities (asked once at start
 * over the coordinator's own libp2p node) and their health, an rpc `ping`
 * every `intervalMs` whose round trip is reported, with consecutive failures
 * counted. A peer that stops answering stays listed, marked unhealthy.
 */
import { multiaddr } from '@multiformats/multiaddr'
import { toLumiereError } from '../../src/errors.ts'
import { rpcCall } from '../../protocol/rpc.ts'
import { Coordinator } from '../coordinator.ts'
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

export interface MonitoredPeer {
  id: string
  /** The address the coordinator dials. */
  addr: string
  transport: string
  capabilities: Capabilities
  health: PeerHealth
}

export interface PeerMonitorOptions {
  intervalMs?: number
  pingTimeoutMs?: number
  signal?: AbortSignal
  /** Called after every round of pings. */
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

  private constructor (coordinator: Coordinator, peers: MonitoredPeer[], options: PeerMonitorOptions) {
    this.coordinator = coordinator
    this.peers = peers
    this.options = options
  }

  /** Connects to every peer (an unreachable one is an error naming it), then pings them periodically. */
  static async start (addrs: string[], options: PeerMonitorOptions = {}): Promise<PeerMonitor> {
    const coordinator = await Coordinator.start()
    try {
      const infos = await coordinator.connect(addrs, { signal: options.signal })
      const now = new Date().toISOString()
      const peers = infos.map((p) => ({
        id: p.id,
        addr: p.addrs[0] ?? '',
        transport: transportOf(p.addrs[0] ?? ''),
        capabilities: p.capabilities,
        health: { ok: true, checkedAt: now, lastSeen: now, failures: 0 }
      }))
      const monitor = new PeerMonitor(coordinator, peers, options)
      await monitor.pingAll()
      monitor.schedule()
      return monitor
    } catch (err) {
      await coordinator.stop()
      throw err
    }
  }

  addrs (): string[] {
    return this.peers.map((p) => p.addr)
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
    clearTimeout(this.timer)
    await this.round?.catch(() => {})
    await this.coordinator.stop()
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
      await rpcCall(this.coordinator.node, multiaddr(peer.addr), 'ping', {}, { timeoutMs: this.options.pingTimeoutMs ?? 3_000 })
      const rttMs = Number((performance.now() - started).toFixed(2))
      peer.health = { ok: true, rttMs, checkedAt, lastSeen: checkedAt, failures: 0 }
    } catch (err) {
      if (this.stopped) return
      const e = toLumiereError(err)
      peer.health = { ok: false, checkedAt, lastSeen: peer.health.lastSeen, failures: peer.health.failures + 1, error: `${e.code}: ${e.message}` }
    }
  }
}
