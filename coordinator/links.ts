/**
 * Measured links among a coordinator's peers, for the planner
 * (PeerCapacity.links): for every ordered pair (A, B) the coordinator asks A
 * to probe B (`link.probe`, peer/link-probe.ts: rpc pings for latency, a few
 * MiB through a tensor frame for bandwidth). Both directions are probed: an
 * uplink may be slower than the downlink.
 *
 * Probes run one at a time, across every caller of one coordinator: two at
 * once would share the wire and each measure less than the link. A pair is
 * probed once per coordinator lifetime; later deployments (a re-plan, a peer
 * that joins) probe only pairs not seen before.
 *
 * A probe that fails leaves its link unknown (the planner charges nothing
 * for it), except one that ran out of time: that link moved fewer than
 * `probeBytes` in PROBE_TIMEOUT_MS, and is recorded at that rate, an upper
 * bound, so the planner avoids it rather than take it for free.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { LumiereError, toLumiereError } from '../src/errors.ts'
import { MAX_ADDRS, MAX_PROBE_BYTES } from '../protocol/messages.ts'
import { rpcCall } from '../protocol/rpc.ts'
import { formatBytes, formatTime } from './plan-format.ts'
import type { Coordinator, PeerInfo } from './coordinator.ts'
import type { LinkSpeed, PeerCapacity } from './plan.ts'

/** Bytes one probe sends: ~10-30 ms on loopback, enough to see past per-message costs. */
export const DEFAULT_PROBE_BYTES = 4 * 1024 * 1024
/** Time one probe (pings and payload) may take. */
export const PROBE_TIMEOUT_MS = 30_000

/** Measured links by peer id, links[from][to]; links[p.id] is what PeerCapacity.links holds for p. */
export type LinkMatrix = Record<string, Record<string, LinkSpeed>>

export interface ProbeEvent {
  from: string
  to: string
  /** The link as recorded; absent when the probe failed and the link stays unknown. */
  link?: LinkSpeed
  error?: LumiereError
  /** Wall time of the probe. */
  seconds: number
}

export interface MeasureLinksOptions {
  signal?: AbortSignal
  /** Bytes each probe sends (default DEFAULT_PROBE_BYTES, at most MAX_PROBE_BYTES). */
  probeBytes?: number
  /** Told of every probe made (pairs already measured are not probed again). */
  onProbe?: (event: ProbeEvent) => void
}

/** The links one coordinator measured, by ordered pair; null = probed, unknown. */
export class LinkTable {
  private readonly coordinator: Coordinator
  private readonly measured = new Map<string, LinkSpeed | null>()
  private queue: Promise<unknown> = Promise.resolve()
  private made = 0

  constructor (coordinator: Coordinator) {
    this.coordinator = coordinator
  }

  /** Probes made so far. */
  get probes (): number {
    return this.made
  }

  /** Probes every ordered pair of `peers` not probed before, one at a time; returns their known links. */
  async measure (peers: PeerInfo[], options: MeasureLinksOptions = {}): Promise<LinkMatrix> {
    const bytes = options.probeBytes ?? DEFAULT_PROBE_BYTES
    if (!Number.isInteger(bytes) || bytes < 1 || bytes > MAX_PROBE_BYTES) throw new LumiereError('BAD_ARGUMENT', `link probes send 1..${MAX_PROBE_BYTES} bytes, not ${bytes}`)
    const run = this.queue.then(async () => {
      for (const from of peers) {
        for (const to of peers) {
          if (from.id === to.id || this.measured.has(key(from.id, to.id))) continue
          options.signal?.throwIfAborted()
          this.measured.set(key(from.id, to.id), await this.probe(from, to, bytes, options))
        }
      }
      return this.matrix(peers)
    })
    this.queue = run.catch(() => {})
    return await run
  }

  /** The known links among `peers`. */
  matrix (peers: PeerInfo[]): LinkMatrix {
    const out: LinkMatrix = {}
    for (const from of peers) {
      for (const to of peers) {
        const link = this.measured.get(key(from.id, to.id))
        if (link != null) (out[from.id] ??= {})[to.id] = link
      }
    }
    return out
  }

  private async probe (from: PeerInfo, to: PeerInfo, bytes: number, options: MeasureLinksOptions): Promise<LinkSpeed | null> {
    const start = performance.now()
    const done = (link: LinkSpeed | null, error?: LumiereError): LinkSpeed | null => {
      options.onProbe?.({ from: from.id, to: to.id, ...(link != null ? { link } : {}), ...(error != null ? { error } : {}), seconds: (performance.now() - start) / 1000 })
      return link
    }
    this.made++
    try {
      const target = from.addrs.length > 0 ? from.addrs.map((a) => multiaddr(a)) : peerIdFromString(from.id)
      const { body } = await rpcCall(this.coordinator.node, target, 'link.probe', { to: to.id, addrs: to.addrs.slice(0, MAX_ADDRS), bytes }, { signal: options.signal, timeoutMs: PROBE_TIMEOUT_MS })
      return done(body)
    } catch (err) {
      options.signal?.throwIfAborted()
      const error = toLumiereError(err)
      if (error.code === 'DEADLINE_EXCEEDED') return done({ bandwidth: bytes / (PROBE_TIMEOUT_MS / 1000), latency: 0 }, error)
      return done(null, error)
    }
  }
}

function key (from: string, to: string): string {
  return `${from}>${to}`
}

const tables = new WeakMap<Coordinator, LinkTable>()

/** The link table of `coordinator`, kept as long as it is. */
export function linkTable (coordinator: Coordinator): LinkTable {
  let table = tables.get(coordinator)
  if (table == null) {
    table = new LinkTable(coordinator)
    tables.set(coordinator, table)
  }
  return table
}

/** Measures the links among `peers` not measured yet by this coordinator (LinkTable.measure). */
export async function measureLinks (coordinator: Coordinator, peers: PeerInfo[], options: MeasureLinksOptions = {}): Promise<LinkMatrix> {
  return await linkTable(coordinator).measure(peers, options)
}

/** `peer` with its measured links to others (PeerCapacity.links), when there are any. */
export function withLinks (peer: PeerCapacity, links: LinkMatrix): PeerCapacity {
  const measured = links[peer.id]
  return measured != null && Object.keys(measured).length > 0 ? { ...peer, links: measured } : peer
}

/** Text lines listing the links among `peers` (numbered as given), unknown ones included. */
export function formatLinks (peers: PeerInfo[], links: LinkMatrix): string {
  const name = (i: number): string => `peer ${i + 1} (…${peers[i].id.slice(-6)})`
  const lines = ['measured links (bandwidth, one-way latency):']
  peers.forEach((from, i) => {
    peers.forEach((to, j) => {
      if (i === j) return
      const link = links[from.id]?.[to.id]
      lines.push(`  ${name(i)} → ${name(j)}: ${link == null ? 'unknown (probe failed)' : `${formatBytes(link.bandwidth)}/s, ${formatTime(link.latency)}`}`)
    })
  })
  return lines.join('\n')
}
