import { LumiereError } from '../src/errors.ts'

/**
 * A pipeline plan: the model's DAG cut into stages, contiguous runs of its
 * topological order, placed on peers. Plain JSON data (numbers, strings,
 * arrays) so that it can be printed by `lumiere plan --json` and sent over
 * the wire as is; `parsePlan` checks such a value coming back in.
 *
 * Placements (`placement`):
 * - 'contiguous': K stages on K distinct peers, route 1 → 2 → … → K.
 * - 'folded' (coordinator/fold.ts): up to 2K − 1 stages on K peers; peer j
 *   holds stage j and its mirror stage 2K − j, so a U-Net's encoder level
 *   and its decoder level share a peer and the skip tensors between them
 *   never cross the wire. The route is still stage order 1 → … → 2K − 1,
 *   which visits peers 1 → 2 → … → K → … → 2 → 1. `peer` repeats.
 * - 'replicated' (coordinator/replication.ts): data parallelism. Every
 *   stage is the whole model on its own peer, and a forward pass runs on
 *   one of them, whichever would finish it first; the stages are copies,
 *   not a chain. `route` is [0] and `boundaries` and `totals.wireBytes`
 *   are those of one pass (graph inputs in, outputs out), whichever copy
 *   runs it; `totals.flops` and `paramBytes` are those of one copy.
 *
 * Wire accounting (exact, per forward pass): a value crosses once per
 * consuming STAGE on a peer other than the producer's (routes.ts sends it to
 * every stage that reads it, however many of its nodes do); graph inputs
 * come from the coordinator once per consuming stage; graph outputs go to
 * the coordinator once. A value passed between two stages on the SAME peer
 * does not cross the wire: its boundary is listed with `local: true` and is
 * left out of `totals.wireBytes` (the stage still lists it in `inputs`).
 *
 * Indices: stages are numbered 0..K-1 in data (`StagePlan.index`,
 * `route`, `from`/`to`); human text (`formatPlan`, error messages) says
 * "stage 1".. "stage K". Node indices are `DagNode.index` values.
 *
 * Duplicable nodes (shape arithmetic, constants) are not listed in any
 * stage's `nodes` (except one whose output is a graph output: it is assigned
 * to the last stage); extraction copies them into every stage that needs
 * them. A `Shape`/`Size` node reading a value of known static shape does not
 * need that value's data: extraction is expected to fold it into a constant,
 * and the partitioner does not send the value for it. The `inputs` list of a
 * stage is exactly what the stage receives.
 */

/** A measured network link from one peer to another. */
export interface LinkSpeed {
  /** Bytes per second, > 0. */
  bandwidth: number
  /** Seconds, >= 0, paid once per message (one boundary of one forward pass). */
  latency: number
}

export interface PeerCapacity {
  id: string
  /** Memory the peer offers for its stages (parameters + activations), bytes; a folded peer's two stages share it. */
  memoryBytes: number
  /** FLOP/s, > 0 (the partitioner uses only ratios; estimates are seconds). */
  speed: number
  /**
   * Measured links from this peer to others, by peer id. The link from A to
   * B is A.links[B.id], else B.links[A.id] (links are taken as symmetric
   * when only one side measured); unknown links cost nothing (see linkBetween).
   */
  links?: Record<string, LinkSpeed>
}

/** The link from `from` to `to`: from.links[to.id], else to.links[from.id], else null (unknown). */
export function linkBetween (from: PeerCapacity, to: PeerCapacity): LinkSpeed | null {
  if (from.id === to.id) return null
  return from.links?.[to.id] ?? to.links?.[from.id] ?? null
}

/** Seconds to send `bytes` as one message over a link: bytes / bandwidth + latency; 0 on an unknown link or for 0 bytes. */
export function transferSeconds (link: LinkSpeed | null, bytes: number): number {
  if (link === null || bytes <= 0) return 0
  return bytes / link.bandwidth + link.latency
}

export interface StageInput {
  /** Main-graph value name. */
  name: string
  /** Producing stage, or 'input' for a graph input sent by the coordinator. */
  from: number | 'input'
  /** Bytes of one instance. */
  bytes: number
}

export interface StageOutput {
  name: string
  /** Consuming stages (ascending), then 'output' when it is a graph output. */
  to: Array<number | 'output'>
  bytes: number
}

export interface StagePlan {
  index: number
  /** PeerCapacity.id */
  peer: string
  /** Assigned node indices, ascending (non-duplicable nodes, plus duplicable graph-output producers on the last stage). */
  nodes: number[]
  flops: number
  /** Distinct initializer bytes the stage holds (including those of duplicated nodes). */
  paramBytes: number
  /** Liveness-scan estimate of the stage's peak activation memory (see partition.ts). */
  peakActivationBytes: number
  inputs: StageInput[]
  outputs: StageOutput[]
  /**
   * Estimated seconds of one forward pass on its peer: flops / peer speed
   * plus `transferSeconds`.
   */
  estSeconds: number
  /**
   * Seconds to receive this stage's inputs from stages on other peers over
   * known links (PeerCapacity.links): per incoming boundary, bytes /
   * bandwidth + latency. 0 when links are unknown; graph inputs from the
   * coordinator are not counted (its links are not known to the planner).
   */
  transferSeconds?: number
}

export interface Boundary {
  from: number | 'input'
  to: number | 'output'
  /** Value names crossing this boundary, in producer order. */
  names: string[]
  bytes: number
  /** Both stages are on the same peer: nothing crosses the wire (not counted in totals.wireBytes). */
  local?: boolean
}

export interface Plan {
  /** How stages map to peers (see the header); absent in older plans: 'contiguous'. */
  placement?: 'contiguous' | 'folded' | 'replicated'
  stages: StagePlan[]
  /** Stage order of one forward pass. */
  route: number[]
  boundaries: Boundary[]
  totals: {
    /** Sum of stage flops. */
    flops: number
    /** Sum of stage paramBytes (an initializer shared by two stages counts twice). */
    paramBytes: number
    /** Bytes on the wire per forward pass: graph inputs in, stage to stage across peers, graph outputs out (local boundaries excluded). */
    wireBytes: number
  }
}

/** The peers holding stages, in stage order, each once. */
export function planPeers (plan: Plan): string[] {
  return [...new Set(plan.stages.map((s) => s.peer))]
}

/**
 * Seconds each peer spends per forward pass: the sum of its stages'
 * estSeconds (a peer runs its stages one at a time), by peer id in stage order.
 */
export function peerSeconds (plan: Plan): Map<string, number> {
  const byPeer = new Map<string, number>()
  for (const s of plan.stages) byPeer.set(s.peer, (byPeer.get(s.peer) ?? 0) + s.estSeconds)
  return byPeer
}

/** The busiest peer's seconds per forward pass (peerSeconds): the pipeline's bottleneck. With one stage per peer, the slowest stage's estSeconds. */
export function planBottleneck (plan: Plan): number {
  let worst = 0
  for (const t of peerSeconds(plan).values()) if (t > worst) worst = t
  return worst
}

function fail (what: string): never {
  throw new LumiereError('PROTOCOL', `invalid plan: ${what}`)
}

function isObject (x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x)
}

function num (x: unknown, what: string): number {
  if (typeof x !== 'number' || !Number.isFinite(x) || x < 0) fail(`${what} must be a non-negative number`)
  return x
}

function stageRef (x: unknown, k: number, special: 'input' | 'output', what: string): number | 'input' | 'output' {
  if (x === special) return special
  if (typeof x !== 'number' || !Number.isInteger(x) || x < 0 || x >= k) fail(`${what} must be a stage index below ${k} or '${special}'`)
  return x
}

function strings (x: unknown, what: string): string[] {
  if (!Array.isArray(x) || !x.every(s => typeof s === 'string')) fail(`${what} must be an array of strings`)
  return x as string[]
}

/**
 * Checks that a value (e.g. a decoded wire message or parsed JSON) has the
 * shape of a Plan and returns it typed. Throws LumiereError PROTOCOL.
 */
export function parsePlan (value: unknown): Plan {
  if (!isObject(value)) fail('not an object')
  const { stages, route, boundaries, totals, placement } = value
  if (placement !== undefined && placement !== 'contiguous' && placement !== 'folded' && placement !== 'replicated') fail("placement must be 'contiguous', 'folded' or 'replicated'")
  if (!Array.isArray(stages) || stages.length === 0) fail('stages must be a non-empty array')
  const k = stages.length
  stages.forEach((s: unknown, i: number) => {
    const w = `stages[${i}]`
    if (!isObject(s)) fail(`${w} is not an object`)
    if (s.index !== i) fail(`${w}.index must be ${i}`)
    if (typeof s.peer !== 'string' || s.peer === '') fail(`${w}.peer must be a peer id`)
    if (!Array.isArray(s.nodes) || !s.nodes.every(n => Number.isInteger(n) && n >= 0)) fail(`${w}.nodes must be node indices`)
    for (const f of ['flops', 'paramBytes', 'peakActivationBytes', 'estSeconds']) num(s[f], `${w}.${f}`)
    if (s.transferSeconds !== undefined) num(s.transferSeconds, `${w}.transferSeconds`)
    if (!Array.isArray(s.inputs)) fail(`${w}.inputs must be an array`)
    s.inputs.forEach((x: unknown, j: number) => {
      if (!isObject(x) || typeof x.name !== 'string') fail(`${w}.inputs[${j}] needs a name`)
      stageRef(x.from, k, 'input', `${w}.inputs[${j}].from`)
      num(x.bytes, `${w}.inputs[${j}].bytes`)
    })
    if (!Array.isArray(s.outputs)) fail(`${w}.outputs must be an array`)
    s.outputs.forEach((x: unknown, j: number) => {
      if (!isObject(x) || typeof x.name !== 'string') fail(`${w}.outputs[${j}] needs a name`)
      if (!Array.isArray(x.to)) fail(`${w}.outputs[${j}].to must be an array`)
      for (const t of x.to) stageRef(t, k, 'output', `${w}.outputs[${j}].to`)
      num(x.bytes, `${w}.outputs[${j}].bytes`)
    })
  })
  if (!Array.isArray(route) || !route.every(r => Number.isInteger(r) && r >= 0 && r < k)) fail('route must be stage indices')
  if (!Array.isArray(boundaries)) fail('boundaries must be an array')
  boundaries.forEach((b: unknown, j: number) => {
    if (!isObject(b)) fail(`boundaries[${j}] is not an object`)
    stageRef(b.from, k, 'input', `boundaries[${j}].from`)
    stageRef(b.to, k, 'output', `boundaries[${j}].to`)
    strings(b.names, `boundaries[${j}].names`)
    num(b.bytes, `boundaries[${j}].bytes`)
    if (b.local !== undefined && typeof b.local !== 'boolean') fail(`boundaries[${j}].local must be a boolean`)
  })
  if (!isObject(totals)) fail('totals must be an object')
  for (const f of ['flops', 'paramBytes', 'wireBytes']) num(totals[f], `totals.${f}`)
  return value as unknown as Plan
}
