import type { Dag, DagValue } from '../src/onnx/dag.ts'
import { LumiereError } from '../src/errors.ts'
import { linkBetween, planBottleneck, transferSeconds } from './plan.ts'
import type { Boundary, PeerCapacity, Plan, StageInput, StageOutput, StagePlan } from './plan.ts'
import { foldedSearch, foldCandidates, FoldTables } from './fold.ts'
import type { FoldLinks, FoldSearch } from './fold.ts'

/**
 * The partitioner: cuts a Dag's topological order into stages and places
 * them on K peers. Pure: no IO, deterministic. Placements (options.placement,
 * default 'contiguous'):
 * - 'contiguous': K contiguous stages on K distinct peers (route 1 → … → K).
 * - 'folded' (coordinator/fold.ts): 2K - 1 contiguous segments, peer j
 *   holding segment j and its mirror 2K - j (empty segments dropped), so a
 *   U-Net's encoder level and its mirror decoder level can share a peer and
 *   the skip tensors between them never cross the wire. Found on the DAG
 *   (bytes and FLOPs from shapes), not from node names. Contiguous plans are
 *   the special case with every mirror empty.
 * - 'auto': both, then the rule below applied to the two results.
 *
 * Time of a stage (estSeconds): flops / speed of its peer, plus, where links
 * are measured (PeerCapacity.links), the time to receive its inputs from
 * stages on other peers, bytes / bandwidth + latency per incoming boundary
 * (graph inputs from the coordinator are not counted: its links are not
 * known). A peer runs its stages one at a time, so a plan's bottleneck is
 * the busiest PEER's sum of estSeconds (planBottleneck); with one stage per
 * peer that is the slowest stage. Unknown links cost nothing, so without
 * links this is the compute-only rule of old.
 *
 * Objective (the rule):
 *   1. Minimise the bottleneck B over every cut and every candidate peer
 *      order (below), subject to every peer fitting its memory (the sum over
 *      its stages of paramBytes + peakActivationBytes <= memoryBytes), for
 *      each placement searched: B*c (contiguous), B*f (folded). The
 *      reference is the best of them, B* = min(B*c, B*f) (just B*c for
 *      placement 'contiguous').
 *   2. Each placement's plan: the fewest wire bytes per forward pass among
 *      its cuts and orders whose bottleneck is <= B* x (1 + balance)
 *      (balance defaults to 0.1: within 10 % of the best plan of either
 *      kind); ties go to the lower bottleneck, then to the earlier candidate
 *      order. A placement that cannot get that close (its best exceeds the
 *      bound) shows its fastest plan instead (bound = its own best). So the
 *      contiguous and the folded plan are held to the same compute balance,
 *      and, since every contiguous plan is a folded one, the folded plan has
 *      no more wire bytes than the contiguous one unless it is more than
 *      `balance` faster. 'auto' then applies the rule to the two finished
 *      plans (pickAuto): the folded plan when it has fewer wire bytes and
 *      its bottleneck is within (1 + balance) of the better one's (or when
 *      the contiguous one is not).
 *   The contiguous steps are exact dynamic programs over cut positions (the
 *   wire bytes of a plan are the sum over stages of the bytes each stage
 *   receives, and what a contiguous stage [i, j) receives depends only on i
 *   and j, so the sum is additive over stages). For graphs with more than
 *   MAX_UNITS assignable nodes the cut positions are first thinned to about
 *   MAX_UNITS candidates, one per block of consecutive positions, the one
 *   with the fewest activation bytes crossing it. The folded search is a DP
 *   over pairs of cuts on coarse candidates, refined in windows (fold.ts).
 *
 * Links in the searches: the DPs charge everything a stage receives from
 * other stages to the link from its route predecessor's peer (exact for a
 * chain and for uniform links; a skip from further back is charged to the
 * predecessor's link) and a latency once. The finished plan's figures are
 * exact per boundary. Then, with links, the peers are re-assigned to the
 * finished stages (assignPeers): every permutation of the chosen peers up to
 * 7 of them (else pairwise swaps), and swaps with unused peers, minimising
 * the exact bottleneck, then the sum of peer times. This is what puts the
 * smallest boundary on a slow link.
 *
 * Wire bytes: a value crosses once to every stage that needs it (however
 * many of that stage's nodes read it), straight from the producing stage
 * (activations travel peer to peer, not through the stages in between),
 * unless both stages are on the same peer (a folded plan): then it does not
 * cross at all, and its boundary is marked `local` and left out of
 * totals.wireBytes. Graph inputs come from 'input' (the coordinator) once
 * per consuming stage; graph outputs go once to 'output'.
 *
 * Duplicable nodes are never assigned: every stage that needs their outputs
 * gets its own copy, so their outputs never cross; what such a node reads in
 * turn is needed by that stage (traced through duplicable chains), except the
 * data input of a duplicable Shape/Size node whose shape is known statically
 * (extraction folds it into a constant). A duplicable node whose output is a
 * graph output is assigned to the last stage.
 *
 * Peer assignment: the order in which peers take consecutive stages matters
 * for heterogeneous peers (speed sets each stage's time, memory what fits),
 * so the DPs (exact for a fixed order) run for a few candidate orders and
 * the rule above picks across all of them. Candidate orders: two subsets of
 * K peers (the K fastest, and the K with the most memory), each ordered four
 * ways (speed descending, speed ascending, memory descending, memory
 * ascending), plus per subset a memory-matched order (cut for speed alone,
 * then the stage needing the most memory gets the peer with the most, and so
 * on: this puts a big peer on a heavy stage in the middle, e.g. a U-Net's
 * deepest levels). Orders whose (speed, memory) sequence repeats one already
 * tried are skipped, so equal peers cost one run. The folded search runs on
 * the same orders, slot j (the j-th outermost pair) taking order[j]. If no candidate fits
 * memory (K > 2), every order one swap away from a candidate is tried too.
 * With K = 1 every peer is tried alone. Ties keep the earlier order, and the
 * caller's order among equal peers. Not exhaustive: with very uneven peers a
 * better order may exist.
 *
 * Peak activation estimate (peakActivationBytes), a liveness scan over the
 * stage's nodes in topological order: the stage's inputs are held for the
 * whole run; each node's outputs are allocated when it runs; a value made
 * inside the stage is freed after its last reader in the stage unless it
 * leaves the stage (needed by a later stage or a graph output), in which case
 * it is held to the end. The peak of that running sum is the estimate. It
 * ignores an operator's own scratch memory and the outputs of duplicated
 * shape nodes (tiny).
 *
 * Stage flops are those of the assigned nodes (duplicated nodes are cheap
 * and not counted). Stage paramBytes are the distinct initializers the stage
 * reads (through duplicated nodes too), each counted once per stage, plus any
 * parameter bytes of a node beyond its main-graph initializer inputs (e.g. a
 * Loop body's own initializers).
 */

export type Placement = 'contiguous' | 'folded' | 'auto'

export interface PartitionOptions {
  /** K, the number of peers used (>= 1, <= peers.length): K contiguous stages, or up to 2K - 1 folded ones. */
  stages: number
  /** Relative slack on the best bottleneck within which fewer wire bytes win. Default 0.1. */
  balance?: number
  /** Default 'contiguous' (see the header). */
  placement?: Placement
}

export const DEFAULT_BALANCE = 0.1
/** Above this many assignable nodes the cut positions are thinned (see the header). */
export const MAX_UNITS = 1000

/** Relative slack for float noise when comparing times against a bound. */
const EPS = 1e-9

export interface Model {
  /** Non-duplicable (assigned) nodes. */
  n: number
  /** Positions 0..n-1 are the non-duplicable nodes in order; n..P-1 the duplicable graph-output producers (always on the last stage). */
  P: number
  nodeAt: number[]
  flopsPrefix: Float64Array
  /** Per node index: parameter bytes beyond its main-graph initializer inputs. */
  ownExtra: Float64Array
  /** Per position: bytes of its outputs. */
  actBytes: Float64Array
  /** Per position: value ids the node needs from outside itself (activations and graph inputs, traced through duplicable chains). */
  needs: number[][]
  /** Per position: initializer value ids read (traced through duplicable chains). */
  inits: number[][]
  /** Per position: duplicable node indices copied in for it. */
  dups: number[][]
  /** Per position: value ids of its outputs. */
  produced: number[][]
  vName: string[]
  vBytes: Float64Array
  /** Producing position, or -1 (graph input / initializer / not produced by an assigned node). */
  vProd: Int32Array
  vIsOut: Uint8Array
  /** Highest position needing the value, -1 when none. */
  vMaxNeed: Int32Array
  /** Positions needing the value, ascending. */
  vNeeders: number[][]
  /** Per position: values (made by some position) whose last reader it is. */
  freeAt: number[][]
  /** Per position t: bytes live at t in an uncut run (made before t and read at t or later, or graph outputs, plus t's outputs). */
  liveAll: Float64Array
  /** ONNX sequences: they cannot cross stages (onnxruntime's JS API cannot feed or fetch them). */
  vSeq: Uint8Array
}

function bad (message: string): never {
  throw new LumiereError('BAD_ARGUMENT', message)
}

function impossible (message: string): never {
  throw new LumiereError('PLAN_IMPOSSIBLE', message)
}

/** As extraction decides (src/onnx/extract.ts): a Shape/Size of such a value folds to a constant. */
function concrete (v: DagValue): boolean {
  return v.shape != null && v.valueKind !== 'sequence'
}

function analyse (dag: Dag): Model {
  const nodes = dag.nodes
  const N = nodes.length
  nodes.forEach((node, i) => {
    if (node.index !== i) bad(`DAG node ${i} (${node.name}) has index ${node.index}; nodes must be listed by index in topological order`)
  })

  // Value ids for every value and initializer name.
  const ids = new Map<string, number>()
  const vName: string[] = []
  const bytesOf: number[] = []
  const isInit: boolean[] = []
  const idOf = (name: string): number => {
    let id = ids.get(name)
    if (id === undefined) {
      id = vName.length
      ids.set(name, id)
      vName.push(name)
      const v = dag.values.get(name)
      const init = dag.initializers.get(name)
      bytesOf.push(init?.bytes ?? v?.bytes ?? 0)
      isInit.push(init !== undefined || v?.kind === 'initializer')
    }
    return id
  }
  for (const name of dag.values.keys()) idOf(name)
  for (const name of dag.initializers.keys()) idOf(name)
  const outputNames = new Set(dag.outputs)
  for (const [name, v] of dag.values) if (v.isOutput) outputNames.add(name)

  // Positions.
  const nodeAt: number[] = []
  const extras: number[] = []
  for (let i = 0; i < N; i++) {
    const node = nodes[i]
    if (!node.duplicable) nodeAt.push(i)
    else if (node.outputs.some(o => outputNames.has(o))) extras.push(i)
  }
  const n = nodeAt.length
  nodeAt.push(...extras)
  const P = nodeAt.length
  const posOf = new Int32Array(N).fill(-1)
  nodeAt.forEach((i, p) => { posOf[i] = p })

  // What each node needs, traced through duplicable producers (memoised per
  // duplicable node, in index order = topological order).
  interface Closure { needs: Set<number>, inits: Set<number>, dups: Set<number> }
  const dupClosure = new Map<number, Closure>()
  const producerOf = (name: string): number => dag.values.get(name)?.producer ?? -1
  const closureOf = (i: number): Closure => {
    const node = nodes[i]
    const c: Closure = { needs: new Set(), inits: new Set(), dups: new Set() }
    const folds = node.duplicable && (node.opType === 'Shape' || node.opType === 'Size')
    node.inputs.forEach((name, k) => {
      if (name === '') return
      const v = dag.values.get(name)
      if (v === undefined && !dag.initializers.has(name)) return
      if (folds && k === 0 && v !== undefined && concrete(v)) return
      const id = idOf(name)
      if (isInit[id]) { c.inits.add(id); return }
      const p = producerOf(name)
      if (p < 0 || p >= N) { c.needs.add(id); return }
      if (nodes[p].duplicable) {
        c.dups.add(p)
        const sub = dupClosure.get(p)
        if (sub !== undefined) {
          for (const x of sub.needs) c.needs.add(x)
          for (const x of sub.inits) c.inits.add(x)
          for (const x of sub.dups) c.dups.add(x)
        }
        return
      }
      c.needs.add(id)
    })
    return c
  }
  for (let i = 0; i < N; i++) if (nodes[i].duplicable) dupClosure.set(i, closureOf(i))

  const ownExtra = new Float64Array(N)
  for (let i = 0; i < N; i++) {
    let direct = 0
    for (const name of new Set(nodes[i].inputs)) {
      if (name === '') continue
      const id = ids.get(name)
      if (id !== undefined && isInit[id]) direct += bytesOf[id]
    }
    ownExtra[i] = Math.max(0, nodes[i].paramBytes - direct)
  }

  const needs: number[][] = []
  const inits: number[][] = []
  const dups: number[][] = []
  const produced: number[][] = []
  const actBytes = new Float64Array(P)
  const flopsPrefix = new Float64Array(P + 1)
  for (let p = 0; p < P; p++) {
    const i = nodeAt[p]
    const c = p < n ? closureOf(i) : dupClosure.get(i) as Closure
    needs.push([...c.needs])
    inits.push([...c.inits])
    dups.push([...c.dups].filter(d => d !== i))
    const outs = [...new Set(nodes[i].outputs.filter(o => o !== ''))].map(idOf)
    produced.push(outs)
    let a = 0
    for (const v of outs) a += bytesOf[v]
    actBytes[p] = a
    flopsPrefix[p + 1] = flopsPrefix[p] + Math.max(0, nodes[i].flops)
  }

  const V = vName.length
  const vBytes = Float64Array.from(bytesOf)
  const vProd = new Int32Array(V).fill(-1)
  const vIsOut = new Uint8Array(V)
  const vMaxNeed = new Int32Array(V).fill(-1)
  const vNeeders: number[][] = Array.from({ length: V }, () => [])
  for (let p = 0; p < P; p++) for (const v of produced[p]) vProd[v] = p
  for (const name of outputNames) { const id = ids.get(name); if (id !== undefined) vIsOut[id] = 1 }
  for (let p = 0; p < P; p++) {
    for (const v of needs[p]) { vMaxNeed[v] = p; vNeeders[v].push(p) }
  }
  const freeAt: number[][] = Array.from({ length: P }, () => [])
  for (let v = 0; v < V; v++) if (vProd[v] >= 0 && vMaxNeed[v] >= 0) freeAt[vMaxNeed[v]].push(v)
  const liveAll = new Float64Array(P)
  let live = 0
  for (let p = 0; p < P; p++) {
    live += actBytes[p]
    liveAll[p] = live
    for (const v of freeAt[p]) if (vIsOut[v] === 0) live -= vBytes[v]
    for (const v of produced[p]) if (vMaxNeed[v] < 0 && vIsOut[v] === 0) live -= vBytes[v]
  }
  const vSeq = new Uint8Array(V)
  for (let v = 0; v < V; v++) if (dag.values.get(vName[v])?.valueKind === 'sequence') vSeq[v] = 1
  return { n, P, nodeAt, flopsPrefix, ownExtra, actBytes, needs, inits, dups, produced, vName, vBytes, vProd, vIsOut, vMaxNeed, vNeeders, freeAt, liveAll, vSeq }
}

/**
 * Incremental state of one contiguous range of positions [start, end): the
 * bytes it receives (inBytes), its parameter bytes, and `inside`, the peak
 * of the liveness scan over values made inside the range, so that the
 * stage's peak activation estimate is inBytes + inside. Grows one position
 * at a time, rightwards (new end) or leftwards (new start).
 *
 * The liveness scan (see the header) holds a value made at position p from p
 * through its last reader q = vMaxNeed (freed after q runs) or, when q >= end or it
 * is a graph output, to the end of the range; a value nobody reads is freed
 * right after p. So the live bytes at t are those of values made in the range
 * before t and read at t or later (or held), plus all of t's outputs.
 * Rightwards that is a running sum; leftwards each new position adds its
 * outputs at t = start and its read values over [start + 1, min(q, end - 1)]
 * (held ones to end - 1): a segment tree with
 * range add and global max (stamped, so a reset is O(1)).
 */
export class RangeState {
  start = 0
  end = 0
  inBytes = 0
  /** The part of inBytes that is graph inputs (sent by the coordinator, not by another stage). */
  gin = 0
  params = 0
  inside = 0
  /** Sequence values made by another stage that this range would receive (must be 0). */
  seqIn = 0
  private act = 0
  private liveMax = 0
  private live = 0
  /** Leftwards: positions below this are not in the tree yet. */
  private flushed = 0
  private gen = 0
  private readonly m: Model
  private readonly vStamp: Int32Array
  private readonly vCnt: Int32Array
  private readonly iStamp: Int32Array
  private readonly dStamp: Int32Array
  // Segment tree over positions: max of children + own pending add.
  private readonly size: number
  private readonly tMax: Float64Array
  private readonly tAdd: Float64Array
  private readonly tStamp: Int32Array

  constructor (m: Model, nodeCount: number) {
    this.m = m
    this.vStamp = new Int32Array(m.vName.length)
    this.vCnt = new Int32Array(m.vName.length)
    this.iStamp = new Int32Array(m.vName.length)
    this.dStamp = new Int32Array(nodeCount)
    let size = 1
    while (size < Math.max(1, m.P)) size *= 2
    this.size = size
    this.tMax = new Float64Array(2 * size)
    this.tAdd = new Float64Array(2 * size)
    this.tStamp = new Int32Array(2 * size)
  }

  /** Empties the range, placing it at `pos`. */
  reset (pos: number): void {
    this.gen++
    this.start = pos
    this.end = pos
    this.inBytes = 0
    this.gin = 0
    this.params = 0
    this.inside = 0
    this.seqIn = 0
    this.act = 0
    this.liveMax = 0
    this.live = 0
    this.flushed = pos
  }

  /** Peak activation estimate of the current range. */
  get peak (): number {
    if (this.flushed > this.start) this.flush()
    return this.inBytes + this.inside
  }

  /**
   * Cheap upper bound of `peak`: what is live inside the range at t never
   * exceeds what is live at t in an uncut run (liveAll), nor everything the
   * range makes.
   */
  get peakBound (): number {
    return this.inBytes + Math.min(this.act, this.liveMax)
  }

  /** Puts positions [start, flushed) into the tree, right to left as `treeAdd` expects. */
  private flush (): void {
    const m = this.m
    for (let p = this.flushed - 1; p >= this.start; p--) {
      this.treeAdd(1, 0, this.size - 1, p, p, m.actBytes[p], true)
      for (const v of m.produced[p]) {
        const q = m.vMaxNeed[v]
        if (q < 0 && m.vIsOut[v] === 0) continue
        const hi = m.vIsOut[v] === 1 ? this.end - 1 : Math.min(q, this.end - 1)
        if (hi >= p + 1) this.treeAdd(1, 0, this.size - 1, p + 1, hi, m.vBytes[v], false)
      }
    }
    this.flushed = this.start
    const top = this.tMax[1]
    this.inside = top > 0 ? top : 0
  }

  /** Adds position p, which must be start - 1 (leftwards) or end (rightwards). */
  add (p: number, leftwards: boolean): void {
    const m = this.m
    const gen = this.gen
    if (leftwards) this.start = p
    else this.end = p + 1
    for (const v of m.needs[p]) {
      if (this.vStamp[v] !== gen) { this.vStamp[v] = gen; this.vCnt[v] = 0 }
      if (this.vCnt[v]++ === 0 && m.vProd[v] < this.start) {
        this.inBytes += m.vBytes[v]
        if (m.vProd[v] < 0) this.gin += m.vBytes[v]
        if (m.vSeq[v] === 1 && m.vProd[v] >= 0) this.seqIn++
      }
    }
    if (leftwards) {
      for (const v of m.produced[p]) {
        if (this.vStamp[v] === gen && this.vCnt[v] > 0) {
          this.inBytes -= m.vBytes[v]
          if (m.vSeq[v] === 1) this.seqIn--
        }
      }
    }
    for (const q of m.inits[p]) {
      if (this.iStamp[q] !== gen) { this.iStamp[q] = gen; this.params += m.vBytes[q] }
    }
    for (const d of m.dups[p]) {
      if (this.dStamp[d] !== gen) { this.dStamp[d] = gen; this.params += m.ownExtra[d] }
    }
    const self = m.nodeAt[p]
    if (p < m.n) this.params += m.ownExtra[self]
    else if (this.dStamp[self] !== gen) { this.dStamp[self] = gen; this.params += m.ownExtra[self] }

    this.act += m.actBytes[p]
    if (m.liveAll[p] > this.liveMax) this.liveMax = m.liveAll[p]
    if (!leftwards) {
      this.flushed = this.start
      this.live += m.actBytes[p]
      if (this.live > this.inside) this.inside = this.live
      for (const v of m.freeAt[p]) if (m.vProd[v] >= this.start && m.vIsOut[v] === 0) this.live -= m.vBytes[v]
      for (const v of m.produced[p]) if (m.vMaxNeed[v] < 0 && m.vIsOut[v] === 0) this.live -= m.vBytes[v]
      return
    }
    // Leftwards: the tree is brought up to date lazily, by `peak`.
  }

  private touch (node: number): void {
    if (this.tStamp[node] !== this.gen) {
      this.tStamp[node] = this.gen
      this.tMax[node] = -Infinity
      this.tAdd[node] = 0
    }
  }

  /** Adds delta on [l, r]; with `set`, position l (= r) goes from empty to delta. */
  private treeAdd (node: number, nl: number, nr: number, l: number, r: number, delta: number, set: boolean): void {
    this.touch(node)
    if (r < nl || nr < l) return
    if (l <= nl && nr <= r) {
      if (set) { this.tMax[node] = delta; this.tAdd[node] = delta } else { this.tMax[node] += delta; this.tAdd[node] += delta }
      return
    }
    const mid = (nl + nr) >> 1
    this.treeAdd(2 * node, nl, mid, l, r, delta, set)
    this.treeAdd(2 * node + 1, mid + 1, nr, l, r, delta, set)
    const a = this.tMax[2 * node]
    const b = this.tMax[2 * node + 1]
    this.tMax[node] = (a > b ? a : b) + this.tAdd[node]
  }
}

/** Cut candidates: positions 0 = c[0] < ... < c[U] = P. */
function cutCandidates (m: Model, k: number): number[] {
  const { n, P } = m
  if (n <= MAX_UNITS || k > MAX_UNITS / 4) {
    const c: number[] = []
    for (let p = 0; p < n; p++) c.push(p)
    c.push(P)
    return n === 0 ? [0, P] : c
  }
  // Activation bytes crossing the cut before position p, for p in 1..n-1.
  const diff = new Float64Array(n + 2)
  for (let v = 0; v < m.vName.length; v++) {
    const a = m.vProd[v]
    const b = Math.min(m.vMaxNeed[v], n - 1)
    if (a >= 0 && a < n && b > a) { diff[a + 1] += m.vBytes[v]; diff[b + 1] -= m.vBytes[v] }
  }
  const cross = new Float64Array(n + 1)
  let run = 0
  for (let p = 0; p <= n; p++) { run += diff[p]; cross[p] = run }
  const block = Math.ceil((n - 1) / (MAX_UNITS - 1))
  const c = [0]
  for (let lo = 1; lo <= n - 1; lo += block) {
    const hi = Math.min(n - 1, lo + block - 1)
    let best = lo
    for (let p = lo + 1; p <= hi; p++) if (cross[p] < cross[best]) best = p
    c.push(best)
  }
  c.push(P)
  return c
}

interface Search {
  /** Unit indices of the K + 1 cut boundaries. */
  cuts: number[]
  bottleneck: number
  wire: number
}

/**
 * Transfer-time terms of the searches for one peer order: what stage (or
 * slot) k pays per byte it receives from other stages, and per message, over
 * the link from its route predecessor's peer, order[k - 1] -> order[k]
 * (see the header: every activation a stage receives is charged to that
 * link, exact for a chain and for uniform links). Zero for unknown links.
 */
export interface LinkTerms {
  /** Seconds per byte (1 / bandwidth) into position k; 0 for k = 0 or an unknown link. */
  inv: Float64Array
  /** Latency into position k. */
  lat: Float64Array
}

/** LinkTerms into each position of `order` from the previous position (`from(k)` overrides the predecessor). */
export function linkTerms (order: PeerCapacity[], from: (k: number) => number = k => k - 1): LinkTerms {
  const K = order.length
  const inv = new Float64Array(K)
  const lat = new Float64Array(K)
  for (let k = 0; k < K; k++) {
    const f = from(k)
    if (f < 0 || f >= K) continue
    const link = linkBetween(order[f], order[k])
    if (link === null) continue
    inv[k] = 1 / link.bandwidth
    lat[k] = link.latency
  }
  return { inv, lat }
}

/** Seconds a range receiving `act` activation bytes pays at position k. */
function transferAt (t: LinkTerms, k: number, act: number): number {
  return act > 0 ? act * t.inv[k] + t.lat[k] : 0
}

/**
 * The DP over cut units for one peer order. mode 'time': minimise the
 * bottleneck. mode 'wire': minimise received bytes (then the bottleneck)
 * subject to every stage time <= bound. Returns null when nothing fits.
 * A stage's time is its compute plus its transfer term (LinkTerms); the
 * early exits use compute alone, which only grows with the stage.
 */
function search (m: Model, c: number[], order: PeerCapacity[], mode: 'time' | 'wire', bound: number, checkMemory: boolean,
  state: RangeState): Search | null {
  const K = order.length
  const U = c.length - 1
  const W = U + 1
  const F = m.flopsPrefix
  const links = linkTerms(order)
  const wire = new Float64Array(K * W).fill(Infinity)
  const worst = new Float64Array(K * W).fill(Infinity)
  const par = new Int32Array(K * W).fill(-1)

  const fits = (mem: number): boolean => !checkMemory || state.params + state.peakBound <= mem || state.params + state.peak <= mem
  // Lexicographic comparison of candidate (w, t) against the table cell.
  const better = (cell: number, w: number, t: number): boolean => mode === 'time'
    ? t < worst[cell]
    : (w < wire[cell] || (w === wire[cell] && t < worst[cell]))

  for (let k = 0; k < K; k++) {
    const peer = order[k]
    const mem = peer.memoryBytes
    const jLo = k === K - 1 ? U : k + 1
    const jHi = k === K - 1 ? U : U - (K - 1 - k)
    if (k === 0) {
      // Stage 0 covers [0, c[j]): one rightward sweep.
      state.reset(0)
      let p = 0
      for (let j = 1; j <= jHi; j++) {
        while (p < c[j]) state.add(p++, false)
        if (j < jLo) continue
        const t = F[c[j]] / peer.speed
        if (t > bound) break
        if (checkMemory && state.params > mem) break
        const cell = j
        if (state.seqIn === 0 && fits(mem)) {
          wire[cell] = state.inBytes
          worst[cell] = t
          par[cell] = 0
        }
      }
      continue
    }
    for (let j = jLo; j <= jHi; j++) {
      const cell = k * W + j
      state.reset(c[j])
      for (let i = j - 1; i >= k; i--) {
        for (let p = c[i + 1] - 1; p >= c[i]; p--) state.add(p, true)
        const tc = (F[c[j]] - F[c[i]]) / peer.speed
        if (tc > bound || (mode === 'time' && tc >= worst[cell])) break
        if (checkMemory && state.params > mem) break
        const prev = (k - 1) * W + i
        if (par[prev] < 0 || worst[prev] > bound) continue
        const t = tc + transferAt(links, k, state.inBytes - state.gin)
        if (t > bound) continue
        const w = wire[prev] + state.inBytes
        const tt = Math.max(worst[prev], t)
        if (!better(cell, w, tt)) continue
        if (state.seqIn > 0 || !fits(mem)) continue
        wire[cell] = w
        worst[cell] = tt
        par[cell] = i
      }
    }
  }
  const end = (K - 1) * W + U
  if (par[end] < 0) return null
  const cuts = [U]
  let j = U
  for (let k = K - 1; k >= 1; k--) { j = par[k * W + j]; cuts.push(j) }
  cuts.push(0)
  cuts.reverse()
  return { cuts, bottleneck: worst[end], wire: wire[end] }
}

/** Peer orders to try, skipping any whose (speed, memory) sequence was tried already. */
class Orders {
  readonly list: PeerCapacity[][] = []
  private readonly seen = new Set<string>()

  add (order: PeerCapacity[]): boolean {
    const key = order.map(p => `${p.speed}:${p.memoryBytes}`).join('|')
    if (this.seen.has(key)) return false
    this.seen.add(key)
    this.list.push(order)
    return true
  }
}

/** The fixed candidate orders (see the header), and the two peer subsets. */
function candidateOrders (peers: PeerCapacity[], K: number): { orders: Orders, subsets: PeerCapacity[][] } {
  const orders = new Orders()
  const idx = peers.map((_, i) => i)
  if (K === 1) {
    for (const p of peers) orders.add([p])
    return { orders, subsets: [] }
  }
  const bySpeed = (a: number, b: number): number => peers[b].speed - peers[a].speed || peers[b].memoryBytes - peers[a].memoryBytes || a - b
  const byMemory = (a: number, b: number): number => peers[b].memoryBytes - peers[a].memoryBytes || peers[b].speed - peers[a].speed || a - b
  const speedAsc = (a: number, b: number): number => peers[a].speed - peers[b].speed || a - b
  const memAsc = (a: number, b: number): number => peers[a].memoryBytes - peers[b].memoryBytes || a - b
  const subsets = [[...idx].sort(bySpeed).slice(0, K), [...idx].sort(byMemory).slice(0, K)]
  for (const subset of subsets) {
    const inPlace = [...subset].sort((a, b) => a - b)
    for (const cmp of [bySpeed, speedAsc, byMemory, memAsc]) orders.add([...inPlace].sort(cmp).map(i => peers[i]))
  }
  return { orders, subsets: subsets.map(s => s.map(i => peers[i])) }
}

/**
 * Memory-matched order for a subset: cut for speed alone (fastest first,
 * memory ignored), then give the stage needing the most memory the peer with
 * the most, and so on down. Catches heavy stages in the middle of the route.
 */
function memoryMatchedOrder (m: Model, c: number[], subset: PeerCapacity[], state: RangeState): PeerCapacity[] | null {
  const base = subset.map((p, i) => ({ p, i })).sort((a, b) => b.p.speed - a.p.speed || b.p.memoryBytes - a.p.memoryBytes || a.i - b.i).map(x => x.p)
  const r = search(m, c, base, 'time', Infinity, false, state)
  if (r === null) return null
  const need: number[] = []
  for (let k = 0; k < base.length; k++) {
    const s = c[r.cuts[k]]
    const e = c[r.cuts[k + 1]]
    state.reset(s)
    for (let p = s; p < e; p++) state.add(p, false)
    need.push(state.params + state.peak)
  }
  const stagesByNeed = need.map((_, k) => k).sort((a, b) => need[b] - need[a] || a - b)
  const peersByMemory = base.map((p, i) => ({ p, i })).sort((a, b) => b.p.memoryBytes - a.p.memoryBytes || a.i - b.i).map(x => x.p)
  const order: PeerCapacity[] = new Array(base.length)
  stagesByNeed.forEach((k, rank) => { order[k] = peersByMemory[rank] })
  return order
}

/** Caps the pairwise-swap rescue (DP runs) when no candidate order fits memory. */
const MAX_RESCUE_RUNS = 200

function checkArguments (dag: Dag, peers: PeerCapacity[], options: PartitionOptions): { K: number, balance: number, placement: Placement } {
  if (dag === null || typeof dag !== 'object' || !Array.isArray(dag.nodes) || !(dag.values instanceof Map)) bad('partition: not a Dag')
  if (!Array.isArray(peers)) bad('partition: peers must be an array')
  const K = options?.stages
  if (typeof K !== 'number' || !Number.isInteger(K) || K < 1) bad(`the number of stages must be an integer >= 1, got ${String(K)}`)
  const balance = options.balance ?? DEFAULT_BALANCE
  if (typeof balance !== 'number' || !Number.isFinite(balance) || balance < 0) bad(`balance must be a finite number >= 0, got ${String(balance)}`)
  const placement = options.placement ?? 'contiguous'
  if (placement !== 'contiguous' && placement !== 'folded' && placement !== 'auto') bad(`placement must be 'contiguous', 'folded' or 'auto', got ${String(placement)}`)
  const ids = new Set<string>()
  for (const p of peers) {
    if (typeof p?.id !== 'string' || p.id === '') bad('every peer needs a non-empty id')
    if (ids.has(p.id)) bad(`peer ${p.id} is listed twice`)
    ids.add(p.id)
    if (typeof p.speed !== 'number' || !Number.isFinite(p.speed) || p.speed <= 0) bad(`peer ${p.id}: speed must be a finite number > 0, got ${String(p.speed)}`)
    if (typeof p.memoryBytes !== 'number' || Number.isNaN(p.memoryBytes) || p.memoryBytes < 0) bad(`peer ${p.id}: memoryBytes must be a number >= 0, got ${String(p.memoryBytes)}`)
    if (p.links !== undefined) {
      if (p.links === null || typeof p.links !== 'object') bad(`peer ${p.id}: links must be an object keyed by peer id`)
      for (const [to, l] of Object.entries(p.links)) {
        if (typeof l?.bandwidth !== 'number' || !(l.bandwidth > 0) || l.bandwidth === Infinity) bad(`peer ${p.id}: link to ${to}: bandwidth must be a finite number > 0 (bytes/s), got ${String(l?.bandwidth)}`)
        if (typeof l.latency !== 'number' || !Number.isFinite(l.latency) || l.latency < 0) bad(`peer ${p.id}: link to ${to}: latency must be a finite number >= 0 (seconds), got ${String(l.latency)}`)
      }
    }
  }
  return { K, balance, placement }
}

/**
 * Plans `dag` over `peers` with K = `options.stages` peers: contiguous
 * stages (one per peer), folded stages (two per peer, coordinator/fold.ts),
 * or 'auto', whichever is better by the header's rule. Default
 * 'contiguous'. See the header for the objective, the peer-assignment rule
 * and the estimates. Throws LumiereError BAD_ARGUMENT for bad arguments and
 * PLAN_IMPOSSIBLE when too few peers or nodes, or when nothing fits memory.
 */
export function partition (dag: Dag, peers: PeerCapacity[], options: PartitionOptions): Plan {
  return partitionAll(dag, peers, options).chosen
}

export interface Partitions {
  /** The best contiguous plan; null only when none fits memory and the placement is not 'contiguous'. */
  contiguous: Plan | null
  /** The best folded plan (null for placement 'contiguous', or when none fits). With nothing to gain from folding it may be contiguous itself (placement 'contiguous'). */
  folded: Plan | null
  /** The plan for options.placement: what partition() returns. */
  chosen: Plan
}

/** Like partition, returning the contiguous and the folded plan too (both searched unless placement is 'contiguous'). */
export function partitionAll (dag: Dag, peers: PeerCapacity[], options: PartitionOptions): Partitions {
  const { K, balance, placement } = checkArguments(dag, peers, options)
  const m = analyse(dag)
  if (K > Math.max(m.n, 1)) {
    impossible(`cannot cut the model into ${K} stages: it has only ${m.n} assignable (non-duplicable) node${m.n === 1 ? '' : 's'}; plan at most ${Math.max(m.n, 1)} stage${m.n > 1 ? 's' : ''}`)
  }
  if (peers.length < K) {
    impossible(`${K} stages need ${K} peers (each stage runs on its own peer), but only ${peers.length} ${peers.length === 1 ? 'is' : 'are'} available: add ${K - peers.length} more or plan fewer stages`)
  }
  const state = new RangeState(m, dag.nodes.length)
  let fastC: ContiguousFastest | null = null
  let failure: unknown = null
  try {
    fastC = contiguousFastest(dag, m, state, peers, K, balance)
  } catch (err) {
    if (placement === 'contiguous' || !(err instanceof LumiereError) || err.code !== 'PLAN_IMPOSSIBLE') throw err
    failure = err
  }
  if (placement === 'contiguous') {
    const c = fastC as ContiguousFastest
    const plan = contiguousPlan(dag, m, state, peers, K, c, c.best * (1 + balance) + c.best * EPS).plan
    return { contiguous: plan, folded: null, chosen: plan }
  }
  const orders = fastC?.orders ?? candidateOrders(peers, K).orders.list
  const fastF = K === 1 ? null : foldedFastest(m, state, K, balance, orders, fastC)
  // One reference for both kinds: the best bottleneck of either (see the header).
  const best = Math.min(fastC?.best ?? Infinity, fastF?.best ?? Infinity)
  const bound = (own: number): number => Math.max(best * (1 + balance), own) + best * EPS
  const contiguous = fastC === null ? null : contiguousPlan(dag, m, state, peers, K, fastC, bound(fastC.best))
  const folded = K === 1 ? contiguous?.plan ?? null : fastF === null ? null : foldedPlan(dag, m, state, peers, K, fastF, bound(fastF.best), contiguous)
  if (folded === null && contiguous === null) throw failure
  if (placement === 'folded') {
    if (folded === null) impossible(`no folded placement of the model on ${K} peers fits the peers' memory; plan contiguous stages or use peers with more memory`)
    return { contiguous: contiguous?.plan ?? null, folded, chosen: folded }
  }
  return { contiguous: contiguous?.plan ?? null, folded, chosen: pickAuto(contiguous?.plan ?? null, folded, balance) }
}

/**
 * 'auto': the header's rule applied to the two finished plans: among those
 * whose bottleneck (planBottleneck, exact) is within (1 + balance) of the
 * better one's, the fewest wire bytes; ties go to the lower bottleneck, then
 * to the contiguous plan.
 */
function pickAuto (c: Plan | null, f: Plan | null, balance: number): Plan {
  if (c === null) return f as Plan
  if (f === null) return c
  const bc = planBottleneck(c)
  const bf = planBottleneck(f)
  const limit = Math.min(bc, bf) * (1 + balance) * (1 + EPS)
  if (bf > limit) return c
  if (bc > limit) return f
  if (f.totals.wireBytes < c.totals.wireBytes || (f.totals.wireBytes === c.totals.wireBytes && bf < bc)) return f
  return c
}

/** Phase 1 of the contiguous planner: the fastest plan per candidate order. */
interface ContiguousFastest {
  /** Cut candidates (positions) the searches index into. */
  c: number[]
  /** The candidate peer orders searched. */
  orders: PeerCapacity[][]
  /** Per order: its fastest plan (null: nothing fits, or slower than the cut-off). */
  fastest: Array<Search | null>
  /** Best bottleneck of the search (its time model, see the header): B* contiguous. */
  best: number
}

interface Contiguous {
  plan: Plan
  /** Cut positions of the chosen plan, 0 .. P. */
  cuts: number[]
}

/** Phase 1 of the contiguous planner. Throws PLAN_IMPOSSIBLE when nothing fits. */
function contiguousFastest (dag: Dag, m: Model, state: RangeState, peers: PeerCapacity[], K: number, balance: number): ContiguousFastest {
  const c = cutCandidates(m, K)
  const { orders: set, subsets } = candidateOrders(peers, K)
  for (const subset of subsets) {
    // Equal peers: any matched order repeats the (speed, memory) sequence of one already listed.
    if (subset.every(p => p.speed === subset[0].speed && p.memoryBytes === subset[0].memoryBytes)) continue
    const o = memoryMatchedOrder(m, c, subset, state)
    if (o !== null) set.add(o)
  }
  const orders = set.list
  // An order whose bottleneck exceeds (1 + balance) x the best so far can
  // never be chosen, so later searches are cut off there.
  let bestB = Infinity
  const phase1 = (o: PeerCapacity[]): Search | null => {
    const r = search(m, c, o, 'time', bestB * (1 + balance) + bestB * EPS, true, state)
    if (r !== null && r.bottleneck < bestB) bestB = r.bottleneck
    return r
  }
  const fastest = orders.map(phase1)
  if (!fastest.some(r => r !== null) && K > 2) {
    // Nothing fits: try every order one swap away from a candidate.
    let runs = 0
    for (const base of [...orders]) {
      for (let a = 0; a < K && runs < MAX_RESCUE_RUNS; a++) {
        for (let b = a + 1; b < K && runs < MAX_RESCUE_RUNS; b++) {
          const o = [...base]
          o[a] = base[b]
          o[b] = base[a]
          if (!set.add(o)) continue
          runs++
          fastest.push(phase1(o))
        }
      }
    }
  }
  if (bestB === Infinity) memoryFailure(dag, m, c, peers, orders, K, state)
  return { c, orders, fastest, best: bestB }
}

/** Phase 2 of the contiguous planner: the fewest wire bytes with every stage within `bound`. */
function contiguousPlan (dag: Dag, m: Model, state: RangeState, peers: PeerCapacity[], K: number, p1: ContiguousFastest, bound: number): Contiguous {
  const { c, orders, fastest } = p1
  let chosen: { r: Search, order: PeerCapacity[] } | null = null
  orders.forEach((order, o) => {
    const r0 = fastest[o]
    if (r0 === null || r0.bottleneck > bound) return
    const r = search(m, c, order, 'wire', bound, true, state) ?? r0
    if (chosen === null || r.wire < chosen.r.wire || (r.wire === chosen.r.wire && r.bottleneck < chosen.r.bottleneck)) chosen = { r, order }
  })
  const pick = chosen as { r: Search, order: PeerCapacity[] } | null
  if (pick === null) throw new LumiereError('INTERNAL', 'partition: no plan chosen')
  const cuts = pick.r.cuts.map(u => c[u])
  const segments: Segment[] = []
  for (let k = 0; k < K; k++) segments.push({ start: cuts[k], end: cuts[k + 1], slot: k })
  const order = assignPeers(m, state, segments, pick.order, peers)
  return { plan: buildPlan(dag, m, segments, order, 'contiguous'), cuts }
}

/** Coarse cut candidates of the folded search (about; at least 2K + 8): its DP costs ~ count^4 / 8 per peer. */
const FOLD_CANDIDATES = 64

/** Phase 1 of the folded planner: the fastest folded placement per candidate order. */
interface FoldedFastest {
  tables: FoldTables
  /** Coarse cut candidates (foldCandidates), without seeds. */
  coarse: number[]
  orders: PeerCapacity[][]
  terms: FoldLinks[]
  fastest: Array<FoldSearch | null>
  /** Best folded bottleneck (fold.ts's time model): B* folded. */
  best: number
}

/**
 * Phase 1 of the folded planner (coordinator/fold.ts), seeded with the
 * cuts of the fastest contiguous plan. Only plans within (1 + balance) of the best
 * contiguous one can matter, so the searches are cut off there. Null when
 * no folded placement fits memory (or beats that cut-off).
 */
function foldedFastest (m: Model, state: RangeState, K: number, balance: number, orders: PeerCapacity[][], p1: ContiguousFastest | null): FoldedFastest | null {
  const tables = new FoldTables(m, state)
  const coarse = foldCandidates(m, Math.max(FOLD_CANDIDATES, 2 * K + 8))
  const seed = p1?.fastest.find(r => r !== null && r.bottleneck === p1.best)?.cuts.map(u => p1!.c[u]) ?? []
  const Bc = p1?.best ?? Infinity
  const bound0 = Bc === Infinity ? Infinity : Bc * (1 + balance) + Bc * EPS
  const terms = orders.map(o => ({ a: linkTerms(o), b: linkTerms(o, k => k + 1) }))
  const fastest = orders.map((o, i) => foldedSearch(tables, o, terms[i], 'time', bound0, [...coarse, ...seed]))
  let best = Infinity
  for (const r of fastest) if (r !== null && r.bottleneck < best) best = r.bottleneck
  return best === Infinity ? null : { tables, coarse, orders, terms, fastest, best }
}

/**
 * Phase 2 of the folded planner: the fewest wire bytes within `bound`,
 * searched with the chosen contiguous plan's cuts among the candidates (a
 * contiguous plan is a folded one with empty mirrors), so a folded plan
 * under the same bound never has more wire bytes.
 */
function foldedPlan (dag: Dag, m: Model, state: RangeState, peers: PeerCapacity[], K: number, p1: FoldedFastest, bound: number,
  contiguous: Contiguous | null): Plan | null {
  const { tables, orders, terms, fastest } = p1
  const coarse = [...p1.coarse, ...(contiguous?.cuts ?? [])]
  let chosen: { r: FoldSearch, order: PeerCapacity[] } | null = null
  orders.forEach((order, i) => {
    const r0 = fastest[i]
    if (r0 === null || r0.bottleneck > bound) return
    const r = foldedSearch(tables, order, terms[i], 'wire', bound, [...coarse, ...r0.cuts]) ?? r0
    if (chosen === null || r.wire < chosen.r.wire || (r.wire === chosen.r.wire && r.bottleneck < chosen.r.bottleneck)) chosen = { r, order }
  })
  const pick = chosen as { r: FoldSearch, order: PeerCapacity[] } | null
  if (pick === null) return null
  const c = pick.r.cuts
  const segments: Segment[] = []
  for (let i = 0; i < 2 * K - 1; i++) {
    if (c[i] < c[i + 1]) segments.push({ start: c[i], end: c[i + 1], slot: i < K ? i : 2 * K - 2 - i })
  }
  const slots = new Set<number>()
  let folded = false
  for (const s of segments) { if (slots.has(s.slot)) folded = true; slots.add(s.slot) }
  const order = assignPeers(m, state, segments, pick.order, peers)
  return buildPlan(dag, m, segments, order, folded ? 'folded' : 'contiguous')
}

/** Throws PLAN_IMPOSSIBLE explaining which stage needs how much memory. */
function memoryFailure (dag: Dag, m: Model, c: number[], peers: PeerCapacity[], orders: PeerCapacity[][], K: number,
  state: RangeState): never {
  // Sequences first: a structural limit, whatever the memory.
  const order = orders.reduce((a, b) => sumMem(b) > sumMem(a) ? b : a)
  const r = search(m, c, order, 'time', Infinity, false, state)
  if (r === null) {
    const seqs: string[] = []
    for (let v = 0; v < m.vName.length; v++) if (m.vSeq[v] === 1 && m.vProd[v] >= 0 && m.vMaxNeed[v] > m.vProd[v]) seqs.push(m.vName[v])
    impossible(`no cut of the model into ${K} stages keeps every sequence value within one stage (sequences cannot cross stages: ${seqs.slice(0, 3).map(x => `'${x}'`).join(', ')}${seqs.length > 3 ? ', …' : ''}); plan fewer stages`)
  }
  const largest = [...peers].sort((a, b) => b.memoryBytes - a.memoryBytes)[0]
  // A single node that fits no peer.
  for (let p = 0; p < m.P; p++) {
    state.reset(p)
    state.add(p, false)
    const need = state.params + state.peak
    if (need > largest.memoryBytes) {
      const node = dag.nodes[m.nodeAt[p]]
      impossible(`node ${node.name || node.index} (${node.opType}) alone needs ${fmtBytes(need)} (parameters ${fmtBytes(state.params)} + activations ${fmtBytes(need - state.params)}), more than the largest peer ${largest.id} offers (${fmtBytes(largest.memoryBytes)})`)
    }
  }
  // Otherwise show the balanced plan, ignoring memory, on the most-memory order.
  const parts: string[] = []
  {
    const plan = buildPlan(dag, m, contiguousSegments(r.cuts.map(u => c[u])), order, 'contiguous')
    for (const s of plan.stages) {
      const need = s.paramBytes + s.peakActivationBytes
      const peer = order[s.index]
      if (need > peer.memoryBytes && s.nodes.length > 0) {
        const first = dag.nodes[s.nodes[0]]
        const last = dag.nodes[s.nodes[s.nodes.length - 1]]
        parts.push(`stage ${s.index + 1} (${s.nodes.length} node${s.nodes.length === 1 ? '' : 's'}, ${first.name || first.opType} → ${last.name || last.opType}) needs ${fmtBytes(need)} (parameters ${fmtBytes(s.paramBytes)} + activations ${fmtBytes(s.peakActivationBytes)}) but peer ${peer.id} offers ${fmtBytes(peer.memoryBytes)}`)
      }
    }
  }
  const detail = parts.length > 0 ? `; with the balanced cut ${parts.join('; ')}` : ''
  impossible(`no cut of the model into ${K} stages fits the peers' memory${detail}. Plan more stages (on more peers) or use peers with more memory`)
}

function sumMem (order: PeerCapacity[]): number {
  let s = 0
  for (const p of order) s += p.memoryBytes
  return s
}

function fmtBytes (b: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let u = 0
  let x = b
  while (Math.abs(x) >= 1024 && u < units.length - 1) { x /= 1024; u++ }
  return u === 0 ? `${x} B` : `${x.toFixed(x >= 100 ? 0 : x >= 10 ? 1 : 2)} ${units[u]}`
}

/** One stage of a plan: positions [start, end) on the peer of `slot` (an index into the peer order). */
export interface Segment {
  start: number
  end: number
  slot: number
}

function contiguousSegments (bounds: number[]): Segment[] {
  const segments: Segment[] = []
  for (let k = 0; k + 1 < bounds.length; k++) segments.push({ start: bounds[k], end: bounds[k + 1], slot: k })
  return segments
}

/**
 * What the peer assignment needs of a plan's stages: flops, memory need,
 * slot, and the activation bytes each stage receives from each other stage
 * (one message per producing stage and forward pass).
 */
interface Skeleton {
  flops: number[]
  need: number[]
  slot: number[]
  /** Per consuming stage: [producing stage, bytes] pairs. */
  from: Array<Array<[number, number]>>
}

function skeleton (m: Model, state: RangeState, segments: Segment[]): Skeleton {
  const stageOf = new Int32Array(m.P).fill(-1)
  segments.forEach((g, s) => { for (let p = g.start; p < g.end; p++) stageOf[p] = s })
  const flops: number[] = []
  const need: number[] = []
  const from: Array<Array<[number, number]>> = []
  for (const g of segments) {
    state.reset(g.start)
    for (let p = g.start; p < g.end; p++) state.add(p, false)
    need.push(state.params + state.peak)
    flops.push(m.flopsPrefix[g.end] - m.flopsPrefix[g.start])
    const bytes = new Map<number, number>()
    const seen = new Set<number>()
    for (let p = g.start; p < g.end; p++) {
      for (const v of m.needs[p]) {
        if (m.vProd[v] < 0 || m.vProd[v] >= g.start || seen.has(v)) continue
        seen.add(v)
        const q = stageOf[m.vProd[v]]
        bytes.set(q, (bytes.get(q) ?? 0) + m.vBytes[v])
      }
    }
    from.push([...bytes])
  }
  return { flops, need, slot: segments.map(g => g.slot), from }
}

/** Permutations of the chosen peers tried exhaustively up to this many slots (7! = 5040); beyond, swaps only. */
const EXHAUSTIVE_SLOTS = 7

/**
 * With measured links, the order (slot -> peer) for fixed stages that
 * minimises the exact bottleneck (planBottleneck: per peer, its stages'
 * compute plus, per incoming boundary from another peer, bytes / bandwidth +
 * latency), then the sum of peer times, subject to memory: every
 * permutation of the chosen peers when there are at most EXHAUSTIVE_SLOTS
 * slots, then swaps (of two slots, or of a slot with an unused peer) while
 * they improve. This is what puts the smallest boundary on a slow link.
 * Without links the search's own order stands (ties keep it).
 */
function assignPeers (m: Model, state: RangeState, segments: Segment[], order: PeerCapacity[], peers: PeerCapacity[]): PeerCapacity[] {
  if (!peers.some(p => p.links !== undefined && Object.keys(p.links).length > 0)) return order
  const sk = skeleton(m, state, segments)
  const K = order.length
  const S = segments.length
  const evaluate = (o: PeerCapacity[]): [number, number] | null => {
    const time = new Float64Array(K)
    const mem = new Float64Array(K)
    for (let s = 0; s < S; s++) {
      const j = sk.slot[s]
      const peer = o[j]
      mem[j] += sk.need[s]
      let t = sk.flops[s] / peer.speed
      for (const [q, bytes] of sk.from[s]) {
        const i = sk.slot[q]
        if (i !== j) t += transferSeconds(linkBetween(o[i], peer), bytes)
      }
      time[j] += t
    }
    let worst = 0
    let sum = 0
    for (let j = 0; j < K; j++) {
      if (mem[j] > o[j].memoryBytes) return null
      if (time[j] > worst) worst = time[j]
      sum += time[j]
    }
    return [worst, sum]
  }
  const better = (a: [number, number], b: [number, number] | null): boolean =>
    b === null || a[0] < b[0] * (1 - EPS) || (a[0] <= b[0] * (1 + EPS) && a[1] < b[1] * (1 - EPS))
  let best = order
  let bestScore = evaluate(order)
  if (K <= EXHAUSTIVE_SLOTS) {
    const perm = [...order]
    const permute = (k: number): void => {
      if (k === K) {
        const score = evaluate(perm)
        if (score !== null && better(score, bestScore)) { best = [...perm]; bestScore = score }
        return
      }
      for (let i = k; i < K; i++) {
        [perm[k], perm[i]] = [perm[i], perm[k]]
        permute(k + 1);
        [perm[k], perm[i]] = [perm[i], perm[k]]
      }
    }
    permute(0)
  }
  for (let round = 0; round < 100; round++) {
    let improved = false
    const used = new Set(best.map(p => p.id))
    const unused = peers.filter(p => !used.has(p.id))
    for (let a = 0; a < K; a++) {
      const tries: PeerCapacity[][] = []
      for (let b = a + 1; b < K; b++) {
        const o = [...best]
        o[a] = best[b]
        o[b] = best[a]
        tries.push(o)
      }
      for (const u of unused) {
        const o = [...best]
        o[a] = u
        tries.push(o)
      }
      for (const o of tries) {
        const score = evaluate(o)
        if (score !== null && better(score, bestScore)) { best = o; bestScore = score; improved = true; break }
      }
      if (improved) break
    }
    if (!improved) break
  }
  return best
}

/**
 * The Plan for `segments` (non-empty, in position order, covering 0..P) on
 * peers `order` (segment slot -> peer). Stage i is segment i.
 */
function buildPlan (dag: Dag, m: Model, segments: Segment[], order: PeerCapacity[], placement: 'contiguous' | 'folded'): Plan {
  const K = segments.length
  const stageOf = new Int32Array(m.P)
  segments.forEach((g, s) => { for (let p = g.start; p < g.end; p++) stageOf[p] = s })
  const peerOf = (s: number): PeerCapacity => order[segments[s].slot]
  const state = new RangeState(m, dag.nodes.length)
  const stages: StagePlan[] = []
  const boundaryMap = new Map<string, Boundary>()
  const addBoundary = (from: number | 'input', to: number | 'output', name: string, bytes: number): void => {
    const key = `${from}>${to}`
    let b = boundaryMap.get(key)
    if (b === undefined) {
      b = { from, to, names: [], bytes: 0 }
      if (typeof from === 'number' && typeof to === 'number' && peerOf(from).id === peerOf(to).id) b.local = true
      boundaryMap.set(key, b)
    }
    b.names.push(name)
    b.bytes += bytes
  }

  for (let s = 0; s < K; s++) {
    const start = segments[s].start
    const end = segments[s].end
    state.reset(start)
    let flops = 0
    const nodeList: number[] = []
    const needed: number[] = []
    const seen = new Set<number>()
    for (let p = start; p < end; p++) {
      state.add(p, false)
      const i = m.nodeAt[p]
      nodeList.push(i)
      flops += Math.max(0, dag.nodes[i].flops)
      for (const v of m.needs[p]) if (m.vProd[v] < start && !seen.has(v)) { seen.add(v); needed.push(v) }
    }
    nodeList.sort((a, b) => a - b)
    needed.sort((a, b) => m.vProd[a] - m.vProd[b] || (m.vName[a] < m.vName[b] ? -1 : 1))
    const inputs: StageInput[] = needed.map(v => ({
      name: m.vName[v],
      from: m.vProd[v] < 0 ? 'input' : stageOf[m.vProd[v]],
      bytes: m.vBytes[v]
    }))
    const outputs: StageOutput[] = []
    for (let p = start; p < end; p++) {
      for (const v of m.produced[p]) {
        const to: Array<number | 'output'> = []
        for (const q of m.vNeeders[v]) {
          const t = stageOf[q]
          if (t !== s && !to.includes(t)) to.push(t)
        }
        if (m.vIsOut[v] === 1) to.push('output')
        if (to.length > 0) outputs.push({ name: m.vName[v], to, bytes: m.vBytes[v] })
      }
    }
    const peer = peerOf(s)
    // Transfer: one message per producing stage on another peer.
    const fromStage = new Map<number, number>()
    for (const x of inputs) if (x.from !== 'input' && peerOf(x.from).id !== peer.id) fromStage.set(x.from, (fromStage.get(x.from) ?? 0) + x.bytes)
    let transfer = 0
    for (const [q, bytes] of fromStage) transfer += transferSeconds(linkBetween(peerOf(q), peer), bytes)
    stages.push({
      index: s,
      peer: peer.id,
      nodes: nodeList,
      flops,
      paramBytes: state.params,
      peakActivationBytes: state.peak,
      inputs,
      outputs,
      estSeconds: flops / peer.speed + transfer,
      transferSeconds: transfer
    })
  }
  // Boundaries in order: graph inputs first, then by producing stage; within, by consumer.
  for (const st of stages) for (const x of st.inputs) if (x.from === 'input') addBoundary('input', st.index, x.name, x.bytes)
  for (const st of stages) {
    for (const o of st.outputs) for (const t of o.to) if (t === 'output') addBoundary(st.index, 'output', o.name, o.bytes)
  }
  for (const st of stages) for (const x of st.inputs) if (x.from !== 'input') addBoundary(x.from, st.index, x.name, x.bytes)
  const rank = (x: number | 'input' | 'output'): number => x === 'input' ? -1 : x === 'output' ? K : x
  const boundaries = [...boundaryMap.values()].sort((a, b) => rank(a.from) - rank(b.from) || rank(a.to) - rank(b.to))

  let flops = 0
  let paramBytes = 0
  let wireBytes = 0
  for (const s of stages) { flops += s.flops; paramBytes += s.paramBytes }
  for (const b of boundaries) if (b.local !== true) wireBytes += b.bytes
  return { placement, stages, route: stages.map(s => s.index), boundaries, totals: { flops, paramBytes, wireBytes } }
}
