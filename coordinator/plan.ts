import { LumiereError } from '../src/errors.ts'

/**
 * A pipeline plan: the model's DAG cut into K contiguous stages, each placed
 * on a distinct peer. Plain JSON data (numbers, strings, arrays) so that it
 * can be printed by `lumiere plan --json` and sent over the wire as is;
 * `parsePlan` checks such a value coming back in.
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

export interface PeerCapacity {
  id: string
  /** Memory the peer offers for one stage (parameters + activations), bytes. */
  memoryBytes: number
  /** FLOP/s, > 0 (the partitioner uses only ratios; estimates are seconds). */
  speed: number
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
  /** flops / peer speed: seconds when speed is FLOP/s. */
  estSeconds: number
}

export interface Boundary {
  from: number | 'input'
  to: number | 'output'
  /** Value names crossing this boundary, in producer order. */
  names: string[]
  bytes: number
}

export interface Plan {
  stages: StagePlan[]
  /** Stage order of one forward pass. */
  route: number[]
  boundaries: Boundary[]
  totals: {
    /** Sum of stage flops. */
    flops: number
    /** Sum of stage paramBytes (an initializer shared by two stages counts twice). */
    paramBytes: number
    /** Sum of boundary bytes per forward pass: graph inputs in, stage to stage, graph outputs out. */
    wireBytes: number
  }
}

/** The slowest stage's estSeconds: the pipeline's bottleneck. */
export function planBottleneck (plan: Plan): number {
  let worst = 0
  for (const s of plan.stages) if (s.estSeconds > worst) worst = s.estSeconds
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
  const { stages, route, boundaries, totals } = value
  if (!Array.isArray(stages) || stages.length === 0) fail('stages must be a non-empty array')
  const k = stages.length
  stages.forEach((s: unknown, i: number) => {
    const w = `stages[${i}]`
    if (!isObject(s)) fail(`${w} is not an object`)
    if (s.index !== i) fail(`${w}.index must be ${i}`)
    if (typeof s.peer !== 'string' || s.peer === '') fail(`${w}.peer must be a peer id`)
    if (!Array.isArray(s.nodes) || !s.nodes.every(n => Number.isInteger(n) && n >= 0)) fail(`${w}.nodes must be node indices`)
    for (const f of ['flops', 'paramBytes', 'peakActivationBytes', 'estSeconds']) num(s[f], `${w}.${f}`)
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
  })
  if (!isObject(totals)) fail('totals must be an object')
  for (const f of ['flops', 'paramBytes', 'wireBytes']) num(totals[f], `totals.${f}`)
  return value as unknown as Plan
}
