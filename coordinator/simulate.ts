import { LumiereError } from '../src/errors.ts'
import { linkBetween } from './plan.ts'
import type { LinkSpeed, PeerCapacity, Plan } from './plan.ts'

/**
 * A pure simulator of one denoising step through a pipeline plan: M
 * micro-batches (forward passes) pushed into the plan at once, as the
 * sampler does with its classifier-free-guidance branches and samples.
 *
 * Model (a discrete-event simulation, deterministic):
 * - Compute: a stage run takes stage.flops / speed of its peer. A peer runs
 *   one stage at a time (its ORT worker queues runs, peer/executor.ts), in
 *   the order its runs become ready (all inputs arrived); ties go to the
 *   lower micro-batch, then the lower stage.
 * - Messages: what one stage sends another for one micro-batch is one
 *   message (routes.ts/peer/jobs.ts group outputs per destination stage):
 *   the bytes of the plan's boundary. Between two stages on one peer it is
 *   free and instant (a `local` boundary). Otherwise it takes bytes /
 *   bandwidth on the link from the producer's peer to the consumer's
 *   (linkBetween, else `defaultLink`), and arrives `latency` later. Each
 *   endpoint has one network interface each way: a peer sends one message
 *   at a time and receives one at a time (FIFO by ready time), so messages
 *   from one peer to several others share its uplink. No link known and no
 *   default: instant.
 * - The coordinator is an endpoint too: it sends every micro-batch's graph
 *   inputs at time 0 to the stages reading them and receives the graph
 *   outputs, over `coordinatorLink` (default: `defaultLink`).
 * - The step ends when the last graph output of the last micro-batch has
 *   arrived at the coordinator (or the last run ended, for a plan without
 *   outputs).
 *
 * Closed forms this reproduces (tests): one stage of t seconds, no
 * transfers: M t. A chain of K stages of c seconds each with K - 1 transfers
 * of x seconds between them (a flow shop of 2K - 1 machines, identical
 * jobs): K c + (K - 1) x + (M - 1) max(c, x); with x = 0 and c = t / K this
 * is (M + K - 1) t / K. Bytes on the wire per step are plan.totals.wireBytes
 * x M exactly.
 */

export interface SimulateOptions {
  /** M, forward passes per denoising step. Default 2 (the two CFG branches). */
  microBatches?: number
  /** Link between peers that have none in PeerCapacity.links. Default: none (instant). */
  defaultLink?: LinkSpeed
  /** Link between the coordinator and every peer, both ways. Default: defaultLink. */
  coordinatorLink?: LinkSpeed
}

export interface PeerActivity {
  id: string
  /** Compute seconds per step. */
  busySeconds: number
  /** busySeconds / secondsPerStep. */
  utilisation: number
  /** Bytes this peer puts on the wire per step (local boundaries excluded). */
  sentBytes: number
}

export interface Simulation {
  microBatches: number
  /** Predicted seconds for one denoising step (M forward passes). */
  secondsPerStep: number
  /** Bytes on the wire per step: plan.totals.wireBytes x M. */
  wireBytesPerStep: number
  /** Seconds the wire is busy on the busiest interface (uplink or downlink) per step. */
  busiestLinkSeconds: number
  /** In stage order of first appearance. */
  peers: PeerActivity[]
}

/** Binary min-heap on [time, key1, key2, id]. */
class Heap {
  private readonly items: Array<[number, number, number, number]> = []
  get size (): number { return this.items.length }
  private less (a: [number, number, number, number], b: [number, number, number, number]): boolean {
    return a[0] < b[0] || (a[0] === b[0] && (a[1] < b[1] || (a[1] === b[1] && (a[2] < b[2] || (a[2] === b[2] && a[3] < b[3])))))
  }

  push (x: [number, number, number, number]): void {
    const h = this.items
    h.push(x)
    let i = h.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (!this.less(h[i], h[p])) break
      [h[i], h[p]] = [h[p], h[i]]
      i = p
    }
  }

  pop (): [number, number, number, number] {
    const h = this.items
    const top = h[0]
    const last = h.pop()!
    if (h.length > 0) {
      h[0] = last
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        const r = l + 1
        let m = i
        if (l < h.length && this.less(h[l], h[m])) m = l
        if (r < h.length && this.less(h[r], h[m])) m = r
        if (m === i) break
        [h[i], h[m]] = [h[m], h[i]]
        i = m
      }
    }
    return top
  }
}

function checkLink (l: LinkSpeed | undefined, what: string): void {
  if (l === undefined) return
  if (!(l.bandwidth > 0) || !(l.latency >= 0) || !Number.isFinite(l.latency)) {
    throw new LumiereError('BAD_ARGUMENT', `${what} needs bandwidth > 0 (bytes/s) and latency >= 0 (s)`)
  }
}

/** Predicts one denoising step of `plan` on `peers` (see the header). */
export function simulate (plan: Plan, peers: PeerCapacity[], options: SimulateOptions = {}): Simulation {
  const M = options.microBatches ?? 2
  if (!Number.isInteger(M) || M < 1) throw new LumiereError('BAD_ARGUMENT', `micro-batches must be a whole number >= 1, got ${String(M)}`)
  checkLink(options.defaultLink, 'the default link')
  checkLink(options.coordinatorLink, 'the coordinator link')
  const byId = new Map(peers.map(p => [p.id, p]))
  const S = plan.stages.length
  const stagePeer = plan.stages.map(s => {
    const p = byId.get(s.peer)
    if (p === undefined) throw new LumiereError('BAD_ARGUMENT', `the plan places stage ${s.index + 1} on peer ${s.peer}, which is not among the simulated peers`)
    return p
  })
  const ids = [...new Set(plan.stages.map(s => s.peer))]
  // Endpoints: peers 0..E-1 by first appearance, the coordinator E.
  const endpoint = new Map(ids.map((id, i) => [id, i]))
  const E = ids.length
  const coordinatorLink = options.coordinatorLink ?? options.defaultLink ?? null
  const linkOf = (from: number, to: number): LinkSpeed | null => {
    if (from === E || to === E) return coordinatorLink
    return linkBetween(byId.get(ids[from])!, byId.get(ids[to])!) ?? options.defaultLink ?? null
  }

  interface Edge { from: number | 'input', to: number | 'output', bytes: number, local: boolean }
  const edges: Edge[] = plan.boundaries.map(b => ({ from: b.from, to: b.to, bytes: b.bytes, local: b.local === true }))
  const incoming = new Array<number>(S).fill(0)
  const outgoing: number[][] = Array.from({ length: S }, () => [])
  const fromInput: number[] = []
  edges.forEach((e, i) => {
    if (typeof e.to === 'number') incoming[e.to]++
    if (e.from === 'input') fromInput.push(i)
    else outgoing[e.from].push(i)
  })

  const computeFree = new Float64Array(E)
  const upFree = new Float64Array(E + 1)
  const downFree = new Float64Array(E + 1)
  const busy = new Float64Array(E)
  const sent = new Float64Array(E + 1)
  const wireBusyUp = new Float64Array(E + 1)
  const wireBusyDown = new Float64Array(E + 1)
  const waiting = new Int32Array(M * S)
  for (let m = 0; m < M; m++) for (let s = 0; s < S; s++) waiting[m * S + s] = incoming[s]
  const readyAt = new Float64Array(M * S)
  // Events: [time, micro-batch, order, id]; order 0 = message (id = edge), 1 = run (id = stage).
  const heap = new Heap()
  let end = 0
  const arrive = (m: number, s: number, t: number): void => {
    const k = m * S + s
    if (t > readyAt[k]) readyAt[k] = t
    if (--waiting[k] === 0) heap.push([readyAt[k], m, 1, s])
  }
  const send = (m: number, e: number, t: number): void => {
    const edge = edges[e]
    if (edge.local && typeof edge.to === 'number') { arrive(m, edge.to, t); return }
    heap.push([t, m, 0, e])
  }
  for (let m = 0; m < M; m++) {
    for (let s = 0; s < S; s++) if (incoming[s] === 0) heap.push([0, m, 1, s])
    for (const e of fromInput) send(m, e, 0)
  }
  while (heap.size > 0) {
    const [t, m, kind, id] = heap.pop()
    if (kind === 1) {
      const p = endpoint.get(plan.stages[id].peer)!
      const start = Math.max(t, computeFree[p])
      const dur = plan.stages[id].flops / stagePeer[id].speed
      computeFree[p] = start + dur
      busy[p] += dur
      if (start + dur > end) end = start + dur
      for (const e of outgoing[id]) send(m, e, start + dur)
      continue
    }
    const edge = edges[id]
    const from = edge.from === 'input' ? E : endpoint.get(plan.stages[edge.from].peer)!
    const to = edge.to === 'output' ? E : endpoint.get(plan.stages[edge.to].peer)!
    const link = linkOf(from, to)
    let arrival = t
    if (link !== null && edge.bytes > 0) {
      const start = Math.max(t, upFree[from], downFree[to])
      const dur = edge.bytes / link.bandwidth
      upFree[from] = start + dur
      downFree[to] = start + dur
      wireBusyUp[from] += dur
      wireBusyDown[to] += dur
      arrival = start + dur + link.latency
    }
    sent[from] += edge.bytes
    if (arrival > end) end = arrival
    if (edge.to !== 'output') arrive(m, edge.to, arrival)
  }
  let busiest = 0
  for (let i = 0; i <= E; i++) busiest = Math.max(busiest, wireBusyUp[i], wireBusyDown[i])
  return {
    microBatches: M,
    secondsPerStep: end,
    wireBytesPerStep: plan.totals.wireBytes * M,
    busiestLinkSeconds: busiest,
    peers: ids.map((id, i) => ({ id, busySeconds: busy[i], utilisation: end > 0 ? busy[i] / end : 0, sentBytes: sent[i] }))
  }
}

const FLOPS_UNITS: Record<string, number> = { '': 1, k: 1e3, K: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15 }
const BIT_UNITS: Record<string, number> = { '': 1, k: 1e3, K: 1e3, M: 1e6, G: 1e9, T: 1e12 }
const TIME_UNITS: Record<string, number> = { s: 1, ms: 1e-3, us: 1e-6, µs: 1e-6 }
const BYTE_UNITS: Record<string, number> = {
  '': 1, B: 1, k: 1e3, kB: 1e3, K: 1e3, KB: 1e3, M: 1e6, MB: 1e6, G: 1e9, GB: 1e9, T: 1e12, TB: 1e12,
  Ki: 2 ** 10, KiB: 2 ** 10, Mi: 2 ** 20, MiB: 2 ** 20, Gi: 2 ** 30, GiB: 2 ** 30, Ti: 2 ** 40, TiB: 2 ** 40
}

export interface PeersSpec {
  peers: PeerCapacity[]
  /** The first group's link, for the coordinator (null when it gives none). */
  coordinatorLink: LinkSpeed | null
}

/**
 * Parses a peer spec for planning and simulation without real peers:
 *
 *   SPEC  = GROUP ("," GROUP)*
 *   GROUP = COUNT "x" FLOPS ["@" BITS ["/" LATENCY]] [":" MEMORY]
 *
 * COUNT a whole number; FLOPS a number with an optional k/M/G/T/P suffix
 * (FLOP/s: 300T = 3e14); BITS the peer's link in bits per second with an
 * optional k/M/G/T suffix (1G = 1e9 bit/s = 125 MB/s; a trailing "b" or
 * "bps" is allowed); LATENCY a number with s/ms/us (default 0); MEMORY bytes
 * with B, kB/MB/GB/TB (powers of 1000) or KiB/MiB/GiB/TiB (powers of 1024)
 * (default unlimited). Examples: `8x300T@1G`, `32x80T@100M`,
 * `4x300T@10G/0.2ms:80GiB,4x80T@1G`. Peers are named p1, p2, … in order.
 * The link between two peers is the slower of their two links (the larger
 * latency); a group without "@" has no known link (instant, unless the
 * other side has one). Throws BAD_ARGUMENT.
 */
export function parsePeersSpec (spec: string): PeersSpec {
  const bad = (why: string): never => {
    throw new LumiereError('BAD_ARGUMENT', `bad peer spec '${spec}': ${why} (write e.g. 8x300T@1G or 32x80T@100M/2ms:80GiB)`)
  }
  const groups = spec.split(',').map(g => g.trim()).filter(g => g !== '')
  if (groups.length === 0) bad('no peer group')
  const peers: PeerCapacity[] = []
  const peerLinks: Array<LinkSpeed | null> = []
  let coordinatorLink: LinkSpeed | null = null
  groups.forEach((g, gi) => {
    const m = /^(\d+)\s*[xX×]\s*([0-9.eE+]+)\s*([kKMGTP]?)(?:FLOPS|flops|FLOP\/s)?\s*(?:@\s*([0-9.eE+]+)\s*([kKMGT]?)(?:bps|b|bit\/s)?\s*(?:\/\s*([0-9.eE+]+)\s*(s|ms|us|µs))?)?\s*(?::\s*([0-9.eE+]+)\s*([A-Za-z]*))?$/.exec(g)
    if (m === null) bad(`cannot read '${g}'`)
    const [, count, flops, fu, bits, bu, lat, lu, mem, mu] = m as RegExpExecArray
    const n = Number(count)
    if (!Number.isSafeInteger(n) || n < 1) bad(`'${g}': the count must be a whole number >= 1`)
    const speed = Number(flops) * FLOPS_UNITS[fu]
    if (!(speed > 0) || !Number.isFinite(speed)) bad(`'${g}': the speed must be > 0`)
    let link: LinkSpeed | null = null
    if (bits !== undefined) {
      const bandwidth = Number(bits) * BIT_UNITS[bu] / 8
      const latency = lat === undefined ? 0 : Number(lat) * TIME_UNITS[lu]
      if (!(bandwidth > 0) || !Number.isFinite(bandwidth)) bad(`'${g}': the link speed must be > 0`)
      if (!(latency >= 0) || !Number.isFinite(latency)) bad(`'${g}': the latency must be >= 0`)
      link = { bandwidth, latency }
    }
    let memoryBytes = Number.MAX_SAFE_INTEGER
    if (mem !== undefined) {
      const unit = BYTE_UNITS[mu]
      if (unit === undefined) bad(`'${g}': unknown memory unit '${mu}'`)
      memoryBytes = Number(mem) * unit
      if (!(memoryBytes > 0) || !Number.isFinite(memoryBytes)) bad(`'${g}': the memory must be > 0`)
    }
    if (gi === 0) coordinatorLink = link
    for (let i = 0; i < n; i++) {
      peers.push({ id: `p${peers.length + 1}`, memoryBytes, speed })
      peerLinks.push(link)
    }
  })
  if (peers.length > 1024) bad('more than 1024 peers')
  // Pairwise links: the slower side.
  for (let a = 0; a < peers.length; a++) {
    const links: Record<string, LinkSpeed> = {}
    for (let b = 0; b < peers.length; b++) {
      if (a === b) continue
      const x = peerLinks[a]
      const y = peerLinks[b]
      if (x === null && y === null) continue
      if (x === null || y === null) { links[peers[b].id] = (x ?? y)!; continue }
      links[peers[b].id] = { bandwidth: Math.min(x.bandwidth, y.bandwidth), latency: Math.max(x.latency, y.latency) }
    }
    if (Object.keys(links).length > 0) peers[a].links = links
  }
  return { peers, coordinatorLink }
}
