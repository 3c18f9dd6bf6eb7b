import type { LinkTerms, Model, RangeState } from './partition.ts'
import type { PeerCapacity } from './plan.ts'

/**
 * The folded placement search (DESIGN §2, "U-Net skips matter"), used by
 * partition.ts. Pure and deterministic.
 *
 * Formulation. Cut the topological order of the assignable positions (see
 * partition.ts) at 0 = c_0 <= c_1 <= ... <= c_{2K-1} = P into 2K - 1
 * segments S_i = [c_i, c_{i+1}). Peer slot j (0-based) holds S_j and its
 * mirror S_{2K-2-j}; the middle slot K - 1 holds S_{K-1} alone. The route
 * visits the segments in order, i.e. peers 1 -> 2 -> ... -> K -> ... -> 2 ->
 * 1. Nothing here knows about U-Nets: on a U-Net the cheapest such cuts put
 * an encoder level and its mirror decoder level on one peer, so the skip
 * tensor between them stays local, and only the down/up-sampled tensors
 * cross. Segments may be empty (a peer may hold one segment, or a prefix
 * slot nothing in front), but each peer holds something and the middle
 * segment is non-empty; so every contiguous plan on K peers is a folded one
 * too (all mirrors empty), and the search can only improve on it.
 *
 * Cost of slot j with A = S_j = [l, l') and B = S_{2K-2-j} = [r', r):
 *   wire_j = in(A) + in(B) - saved(A, B)
 * where in(X) is what a contiguous stage X receives (partition.ts) and
 * saved(A, B) the bytes of values made in A and read in B (they pass between
 * two stages of one peer: no wire). This is exact: a stage receives a value
 * from another peer iff it is made outside both of its peer's segments, and
 * the folded wire bytes are the sum over slots. The state of the dynamic
 * program is the pair of outer bounds (l, r) = (c_j, c_{2K-1-j}) of slot j:
 * slots j..K-1 hold exactly [l, r), so
 *   G_j(l, r) = min over l <= l' <= r' <= r of cost_j(l, l', r', r) (+) G_{j+1}(l', r')
 * with (+) = (max, max) for the bottleneck ('time') and (sum of wire, max of
 * time) lexicographically for 'wire' under a time bound, as in partition.ts.
 *
 * Slot time: (flops(A) + flops(B)) / speed plus transfer terms: activation
 * bytes A receives at the link from slot j - 1 (A's route predecessor), those
 * B receives, less saved, at the link from slot j + 1 (B's predecessor; the
 * middle segment's predecessor is slot K - 2), each plus that link's latency
 * when non-zero. Memory: need(A) + need(B) <= the peer's memoryBytes, need =
 * parameters + peak activation estimate of each stage (both stay loaded,
 * counted as if both peaks could coincide). A sequence value may not enter
 * either stage (as in partition.ts).
 *
 * Candidates. The pair DP costs about |L|^4 / 8 per slot for |L| candidate
 * cut positions, so it runs first on a coarse list (foldCandidates: per
 * block of positions, the one with the fewest bytes crossing it, and the one
 * with the fewest "local" bytes crossing it, those made and read within a
 * short horizon: long-range values such as skips may stay on a peer when the
 * cut is folded; plus callers' seeds such as the best contiguous cuts), then
 * refines: each cut c_i searched again within a window around its current
 * position, first on a stride of about a block / 8, then on every position,
 * until the cuts stop moving. Each round includes the current cuts, so it
 * never gets worse; the result is exact within the last windows, not
 * globally. Early exits use compute time only (it grows with a segment) and
 * a necessary band on states: with bound B, slots before j can hold at most
 * B x their speeds of compute, slots from j on the rest; A's transfer term
 * only grows with A too (a longer A receives a superset), so it joins the
 * early exit.
 */

export interface FoldSearch {
  /** Cut positions c_0 = 0 .. c_{2K-1} = P (2K entries). */
  cuts: number[]
  bottleneck: number
  wire: number
}

/** Link terms for the two segments of each slot: A from slot j - 1, B (and the middle) from slot j + 1 / K - 2. */
export interface FoldLinks {
  a: LinkTerms
  b: LinkTerms
}

const EPS = 1e-9

/** Per-range figures (received bytes, graph-input part, memory need, sequence check), cached by (start, end) across searches. */
export class FoldTables {
  readonly m: Model
  private readonly state: RangeState
  private readonly index = new Map<number, number>()
  inB: number[] = []
  gin: number[] = []
  need: number[] = []
  ok: number[] = []

  constructor (m: Model, state: RangeState) {
    this.m = m
    this.state = state
  }

  private key (s: number, e: number): number {
    return s * (this.m.P + 1) + e
  }

  /** Index of range [s, e) (ensure it first). */
  at (s: number, e: number): number {
    const i = this.index.get(this.key(s, e))
    if (i === undefined) throw new Error(`fold: range [${s}, ${e}) not tabulated`)
    return i
  }

  private record (s: number, e: number, empty: boolean): void {
    const st = this.state
    this.index.set(this.key(s, e), this.inB.length)
    this.inB.push(empty ? 0 : st.inBytes)
    this.gin.push(empty ? 0 : st.gin)
    this.need.push(empty ? 0 : st.params + st.peak)
    this.ok.push(empty || st.seqIn === 0 ? 1 : 0)
  }

  /** Tabulates every [s, e) with s in starts, e in ends, s <= e (ends ascending). */
  ensure (starts: number[], ends: number[]): void {
    for (const s of new Set(starts)) {
      const missing = ends.filter(e => e >= s && !this.index.has(this.key(s, e)))
      if (missing.length === 0) continue
      this.state.reset(s)
      let p = s
      for (const e of missing) {
        if (e === s) { this.record(s, e, true); continue }
        while (p < e) this.state.add(p++, false)
        this.record(s, e, false)
      }
    }
  }
}

/** Fenwick tree over positions, for sums of bytes by producing position. */
class Fenwick {
  private readonly t: Float64Array
  constructor (n: number) { this.t = new Float64Array(n + 1) }
  clear (): void { this.t.fill(0) }
  add (i: number, x: number): void { for (i++; i < this.t.length; i += i & -i) this.t[i] += x }
  /** Sum over positions < i. */
  prefix (i: number): number {
    let s = 0
    for (; i > 0; i -= i & -i) s += this.t[i]
    return s
  }
}

/**
 * Coarse cut candidates for the folded search: 0, P, and per block of
 * positions (about count / 2 blocks over 1..n-1) the position with the
 * fewest activation bytes crossing it and the one with the fewest local
 * bytes crossing it (made at most H positions before, read within H after;
 * H = two blocks). Ascending, distinct.
 */
export function foldCandidates (m: Model, count: number): number[] {
  const { n, P } = m
  if (n + 1 <= count) {
    const all: number[] = []
    for (let p = 0; p < n; p++) all.push(p)
    all.push(P)
    return all
  }
  const blocks = Math.max(1, Math.floor(count / 2))
  const block = Math.ceil((n - 1) / blocks)
  const H = 2 * block
  const crossD = new Float64Array(n + 2)
  const localD = new Float64Array(n + 2)
  for (let v = 0; v < m.vName.length; v++) {
    const a = m.vProd[v]
    if (a < 0 || a >= n) continue
    const needers = m.vNeeders[v]
    const b = Math.min(m.vMaxNeed[v], n - 1)
    if (b > a) { crossD[a + 1] += m.vBytes[v]; crossD[b + 1] -= m.vBytes[v] }
    // Local: p in (a, a + H] with a reader q, p <= q < p + H: p in (q - H, q].
    let lo = -1
    let hi = -2
    const flush = (): void => {
      const x = Math.max(lo, a + 1)
      const y = Math.min(hi, a + H, n - 1)
      if (x <= y) { localD[x] += m.vBytes[v]; localD[y + 1] -= m.vBytes[v] }
    }
    for (const q of needers) {
      if (q <= a) continue
      if (q - H + 1 > a + H) break
      const s = q - H + 1
      if (s > hi + 1) { flush(); lo = s }
      hi = q
    }
    flush()
  }
  const cross = new Float64Array(n + 1)
  const local = new Float64Array(n + 1)
  let c = 0
  let l = 0
  for (let p = 0; p <= n; p++) { c += crossD[p]; l += localD[p]; cross[p] = c; local[p] = l }
  const out = new Set<number>([0, P])
  for (let lo = 1; lo <= n - 1; lo += block) {
    const hi = Math.min(n - 1, lo + block - 1)
    let bc = lo
    let bl = lo
    for (let p = lo + 1; p <= hi; p++) {
      if (cross[p] < cross[bc]) bc = p
      if (local[p] < local[bl]) bl = p
    }
    out.add(bc)
    out.add(bl)
  }
  return [...out].sort((a, b) => a - b)
}

interface Ctx {
  t: FoldTables
  order: PeerCapacity[]
  links: FoldLinks
  mode: 'time' | 'wire'
  bound: number
}

/** Cut positions valid for c_1..c_{2K-2}: 0..n-1 and P. */
function validCut (m: Model, x: number): boolean {
  return (x >= 0 && x < m.n) || x === m.P
}

/**
 * One DP over per-cut candidate lists L[0..2K-1] (ascending; L[0] = [0],
 * L[2K-1] = [P]). Null when nothing satisfies the bound and memory.
 */
function dp (ctx: Ctx, L: number[][]): FoldSearch | null {
  const { t, order, links, mode, bound } = ctx
  const m = t.m
  const F = m.flopsPrefix
  const K = order.length
  const total = F[m.P]
  const finite = Number.isFinite(bound)
  // Band: cumulative bound x speed before slot j, and from slot j on.
  const capBefore = new Float64Array(K + 1)
  for (let j = 0; j < K; j++) capBefore[j + 1] = capBefore[j] + (finite ? bound * order[j].speed : Infinity)
  const inBand = (j: number, l: number, r: number): boolean => {
    if (!finite) return true
    const outer = F[l] + total - F[r]
    const inner = F[r] - F[l]
    return outer <= capBefore[j] * (1 + EPS) && inner <= (capBefore[K] - capBefore[j]) * (1 + EPS)
  }
  for (let j = 0; j < K - 1; j++) {
    t.ensure(L[j], L[j + 1])
    t.ensure(L[2 * K - 2 - j], L[2 * K - 1 - j])
  }
  t.ensure(L[K - 1], L[K])

  const wire: Float64Array[] = []
  const time: Float64Array[] = []
  const par: Int32Array[] = []
  // Middle slot.
  {
    const j = K - 1
    const Ls = L[j]
    const Re = L[K]
    const peer = order[j]
    const w = new Float64Array(Ls.length * Re.length).fill(Infinity)
    const tm = new Float64Array(Ls.length * Re.length).fill(Infinity)
    for (let li = 0; li < Ls.length; li++) {
      for (let ri = 0; ri < Re.length; ri++) {
        const l = Ls[li]
        const r = Re[ri]
        if (l >= r || !inBand(j, l, r)) continue
        const x = t.at(l, r)
        if (t.ok[x] === 0 || t.need[x] > peer.memoryBytes) continue
        const act = t.inB[x] - t.gin[x]
        const tt = (F[r] - F[l]) / peer.speed + (act > 0 ? act * links.a.inv[j] + links.a.lat[j] : 0)
        if (tt > bound) continue
        w[li * Re.length + ri] = t.inB[x]
        tm[li * Re.length + ri] = tt
      }
    }
    wire[j] = w
    time[j] = tm
    par[j] = new Int32Array(0)
  }
  const fen = new Fenwick(m.P)
  const stamp = new Int32Array(m.vName.length)
  let gen = 0
  for (let j = K - 2; j >= 0; j--) {
    const Ls = L[j]
    const Re = L[2 * K - 1 - j]
    const Ln = L[j + 1]
    const Rs = L[2 * K - 2 - j]
    const peer = order[j]
    const speed = peer.speed
    const mem = peer.memoryBytes
    const nw = wire[j + 1]
    const nt = time[j + 1]
    const w = new Float64Array(Ls.length * Re.length).fill(Infinity)
    const tm = new Float64Array(Ls.length * Re.length).fill(Infinity)
    const pr = new Int32Array(Ls.length * Re.length).fill(-1)
    // Per right bound, the left bounds of valid states (ascending).
    const validLi: number[][] = Re.map(() => [])
    for (let ri = 0; ri < Re.length; ri++) {
      for (let li = 0; li < Ls.length; li++) if (Ls[li] <= Re[ri] && inBand(j, Ls[li], Re[ri])) validLi[ri].push(li)
    }
    const invA = links.a.inv[j]
    const latA = links.a.lat[j]
    const invB = links.b.inv[j]
    const latB = links.b.lat[j]
    for (let ri = 0; ri < Re.length; ri++) {
      const r = Re[ri]
      const lis = validLi[ri]
      if (lis.length === 0) continue
      fen.clear()
      gen++
      let sweep = r
      for (let rj = Rs.length - 1; rj >= 0; rj--) {
        const r2 = Rs[rj]
        if (r2 > r) continue
        while (sweep > r2) {
          sweep--
          for (const v of m.needs[sweep]) {
            if (stamp[v] === gen) continue
            stamp[v] = gen
            if (m.vProd[v] >= 0) fen.add(m.vProd[v], m.vBytes[v])
          }
        }
        const FB = F[r] - F[r2]
        if (FB / speed > bound) break
        const bx = t.at(r2, r)
        const needB = t.need[bx]
        if (needB > mem) break
        if (t.ok[bx] === 0) continue
        const inB = t.inB[bx]
        const actB0 = inB - t.gin[bx]
        let first = 0
        for (const li of lis) {
          const l = Ls[li]
          if (l > r2) break
          const cur = li * Re.length + ri
          const prefL = fen.prefix(l)
          // First l' >= l (monotone in l).
          while (first < Ln.length && Ln[first] < l) first++
          for (let lj = first; lj < Ln.length; lj++) {
            const l2 = Ln[lj]
            if (l2 > r2) break
            const ax = t.at(l, l2)
            // Compute and A's transfer only grow with l' (A receives more).
            const actA = t.inB[ax] - t.gin[ax]
            const ta = (F[l2] - F[l] + FB) / speed + (actA > 0 ? actA * invA + latA : 0)
            if (ta > bound || (mode === 'time' && ta >= tm[cur])) break
            if (l2 === l && r2 === r) continue
            const nx = lj * Rs.length + rj
            if (nt[nx] === Infinity) continue
            if (t.need[ax] + needB > mem) break
            if (t.ok[ax] === 0) continue
            const saved = l2 > l ? fen.prefix(l2) - prefL : 0
            const actB = actB0 - saved
            const tt = ta + (actB > 0.5 ? actB * invB + latB : 0)
            if (tt > bound) continue
            const worst = tt > nt[nx] ? tt : nt[nx]
            const ww = t.inB[ax] + inB - saved + nw[nx]
            const better = mode === 'time'
              ? worst < tm[cur] || (worst === tm[cur] && ww < w[cur])
              : ww < w[cur] || (ww === w[cur] && worst < tm[cur])
            if (!better) continue
            w[cur] = ww
            tm[cur] = worst
            pr[cur] = nx
          }
        }
      }
    }
    wire[j] = w
    time[j] = tm
    par[j] = pr
  }
  if (L[0].length !== 1 || L[2 * K - 1].length !== 1) throw new Error('fold: the outer cuts are fixed')
  if (time[0][0] === Infinity) return null
  const cuts = new Array<number>(2 * K)
  let li = 0
  let ri = 0
  for (let j = 0; j < K; j++) {
    const Re = L[2 * K - 1 - j]
    cuts[j] = L[j][li]
    cuts[2 * K - 1 - j] = Re[ri]
    if (j === K - 1) break
    const nx = par[j][li * Re.length + ri]
    const Rs = L[2 * K - 2 - j]
    li = Math.floor(nx / Rs.length)
    ri = nx % Rs.length
  }
  return { cuts, bottleneck: time[0][0], wire: wire[0][0] }
}

function improves (mode: 'time' | 'wire', a: FoldSearch, b: FoldSearch): boolean {
  return mode === 'time'
    ? a.bottleneck < b.bottleneck || (a.bottleneck === b.bottleneck && a.wire < b.wire)
    : a.wire < b.wire || (a.wire === b.wire && a.bottleneck < b.bottleneck)
}

/**
 * The folded search for one peer order (slot j -> order[j]): coarse DP on
 * `coarse` candidate positions (any invalid or duplicate ones are dropped),
 * then window refinement (see the header). Null when nothing fits.
 */
export function foldedSearch (t: FoldTables, order: PeerCapacity[], links: FoldLinks, mode: 'time' | 'wire', bound: number,
  coarse: number[]): FoldSearch | null {
  const m = t.m
  const K = order.length
  const ctx: Ctx = { t, order, links, mode, bound }
  const list = [...new Set(coarse)].filter(x => validCut(m, x)).sort((a, b) => a - b)
  const lists = (pick: (i: number) => number[]): number[][] => {
    const L: number[][] = []
    for (let i = 0; i < 2 * K; i++) L.push(i === 0 ? [0] : i === 2 * K - 1 ? [m.P] : pick(i))
    return L
  }
  let best = dp(ctx, lists(() => list))
  if (best === null) return null
  // Windows in the index space of valid cuts: 0..n-1, then P at index n.
  const toIndex = (x: number): number => x === m.P ? m.n : x
  const toPos = (i: number): number => i >= m.n ? m.P : i
  const window = (x: number, half: number, stride: number): number[] => {
    const c = toIndex(x)
    const out = new Set<number>([x])
    for (let d = -half; d <= half; d += stride) {
      const i = c + d
      if (i >= 0 && i <= m.n) out.add(toPos(i))
    }
    return [...out].sort((a, b) => a - b)
  }
  const block = Math.max(1, Math.ceil(m.n / Math.max(1, list.length)))
  const schedule: Array<[number, number]> = []
  let half = 2 * block
  for (;;) {
    const stride = Math.max(1, Math.ceil(half / 8))
    schedule.push([half, stride])
    if (stride === 1) break
    half = stride
  }
  let rounds = 0
  for (let s = 0; s < schedule.length && rounds < 12; rounds++) {
    const [h, stride] = schedule[s]
    const cur: FoldSearch = best
    const r = dp(ctx, lists(i => window(cur.cuts[i], h, stride)))
    const moved = r !== null && improves(mode, r, cur)
    if (moved) best = r
    // On the finest stride, repeat while the cuts still move.
    if (!moved || stride > 1) s++
  }
  return best
}
