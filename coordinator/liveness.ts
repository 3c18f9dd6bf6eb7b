import { peerIdFromString } from '@libp2p/peer-id'
import { MAX_LEASED_JOBS } from '../protocol/messages.ts'
import { rpcCall } from '../protocol/rpc.ts'
import type { RpcNode } from '../protocol/rpc.ts'
import type { LumiereError } from '../src/errors.ts'

export interface LivenessOptions {
  /** Between two heartbeats to each peer of a job (default 1 s). */
  intervalMs?: number
  /** A heartbeat unanswered this long is missed (default 2.5 s). */
  timeoutMs?: number
  /** Heartbeats missed in a row after which a peer is down (default 3). */
  misses?: number
  /**
   * Heartbeats name the job's ids: a peer keeps them open this long after
   * the last heartbeat naming them, then closes them (default 60 s). Long,
   * so that a coordinator that stalls a while does not lose its jobs.
   */
  leaseMs?: number
}

/** A change of a job's peer pool: peers lost (and why), or peers that joined and are used from now on. */
export interface PoolChange {
  lost: string[]
  joined: string[]
  /** Why the lost peers were dropped. */
  why?: string
  /** Peers doing the job's work after the change. */
  peers: number
  /** Base pipeline: the stages of the new plan. */
  stages?: number
  /** Base pipeline: the new plan holds copies of the whole model (coordinator/replication.ts), one per peer. */
  copies?: boolean
}

export const DEFAULT_LIVENESS: Required<LivenessOptions> = { intervalMs: 1_000, timeoutMs: 2_500, misses: 3, leaseMs: 60_000 }

interface Watched {
  /** Heartbeats in flight, by sequence number: when sent (in live time, see tick) and how to give up on them. */
  pending: Map<number, { sent: number, abort: AbortController }>
  misses: number
}

/**
 * Heartbeats on the control protocol: while a job runs, every peer of it is
 * pinged each `intervalMs`; a peer that leaves `misses` heartbeats in a row
 * unanswered for `timeoutMs` is reported down once and no longer watched. A
 * stopped process keeps its TCP connection open, so only this tells it from
 * a slow one. Each heartbeat renews the lease of the job ids `jobs()` names
 * (peer/jobs.ts), so a peer drops the stages of a coordinator that is gone.
 *
 * Time spent with this process's event loop blocked does not count towards
 * a heartbeat's timeout: answers may sit unread meanwhile, and a busy
 * coordinator must not declare every peer dead.
 */
export class Heartbeat {
  private readonly node: RpcNode
  private readonly options: Required<LivenessOptions>
  private readonly jobs: () => string[]
  private readonly onDown: (peer: string, why: string) => void
  private readonly watched = new Map<string, Watched>()
  private readonly timer: ReturnType<typeof setInterval>
  private lastTick = performance.now()
  /** Time the event loop was blocked, summed: subtracted from heartbeat ages. */
  private stalled = 0
  private seq = 0

  constructor (node: RpcNode, options: LivenessOptions & { jobs: () => string[], onDown: (peer: string, why: string) => void }) {
    this.node = node
    const d = DEFAULT_LIVENESS
    this.options = { intervalMs: options.intervalMs ?? d.intervalMs, timeoutMs: options.timeoutMs ?? d.timeoutMs, misses: options.misses ?? d.misses, leaseMs: options.leaseMs ?? d.leaseMs }
    this.jobs = options.jobs
    this.onDown = options.onDown
    this.timer = setInterval(() => { this.tick() }, this.options.intervalMs)
    this.timer.unref()
  }

  watch (peer: string): void {
    if (!this.watched.has(peer)) this.watched.set(peer, { pending: new Map(), misses: 0 })
  }

  unwatch (peer: string): void {
    const w = this.watched.get(peer)
    if (w == null) return
    for (const p of w.pending.values()) p.abort.abort()
    this.watched.delete(peer)
  }

  close (): void {
    clearInterval(this.timer)
    for (const peer of [...this.watched.keys()]) this.unwatch(peer)
  }

  private tick (): void {
    const now = performance.now()
    this.stalled += Math.max(0, now - this.lastTick - this.options.intervalMs)
    this.lastTick = now
    const live = now - this.stalled
    const jobs = this.jobs()
    for (const [peer, w] of [...this.watched]) {
      for (const [seq, p] of w.pending) {
        if (live - p.sent < this.options.timeoutMs) continue
        w.pending.delete(seq)
        p.abort.abort()
        w.misses++
      }
      if (w.misses >= this.options.misses) {
        this.unwatch(peer)
        this.onDown(peer, `missed ${this.options.misses} heartbeats in a row, none answered within ${this.options.timeoutMs / 1000} s`)
        continue
      }
      this.beat(peer, w, live, jobs)
    }
  }

  private beat (peer: string, w: Watched, live: number, jobs: string[]): void {
    const seq = this.seq++
    const abort = new AbortController()
    w.pending.set(seq, { sent: live, abort })
    const body = jobs.length > 0 ? { lease: { jobs: jobs.slice(0, MAX_LEASED_JOBS), ttlMs: this.options.leaseMs } } : {}
    // The tick gives up on it first; this bound only frees the stream should ticks stop.
    rpcCall(this.node, peerIdFromString(peer), 'ping', body, { signal: abort.signal, timeoutMs: this.options.timeoutMs * (this.options.misses + 1) }).then(() => {
      if (w.pending.delete(seq)) w.misses = 0
    }, () => {
      // Failed outright (connection refused, reset): a miss now, not at the timeout.
      if (w.pending.delete(seq)) w.misses++
    })
  }
}

/** The stage a forward pass that passed its deadline is stuck at, from each stage's finished runs (index → runs). */
export function stuckStage (runs: ReadonlyMap<number, number>): number | undefined {
  // Passes go through the stages in order, first in first out: the oldest pass not done
  // has left every stage before the first one that has finished fewest runs.
  let stuck: number | undefined
  let fewest = Infinity
  for (const [index, n] of [...runs].sort((a, b) => a[0] - b[0])) {
    if (n < fewest) { fewest = n; stuck = index }
  }
  return stuck
}

/** A short reason for dropping a peer after a run failed with `e`. */
export function lossReason (e: LumiereError): string {
  switch (e.code) {
    case 'PEER_LOST': return 'connection lost'
    case 'PEER_UNREACHABLE': return 'unreachable'
    case 'DEADLINE_EXCEEDED': return 'its work passed the deadline'
    case 'BUSY': return 'busy'
    default: return e.message
  }
}
