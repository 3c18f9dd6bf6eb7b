import { LumiereError, toLumiereError } from '../src/errors.ts'
import { narrowForWire, widenFromWire } from '../src/tensor/wire.ts'
import { mulberry32 } from '../src/util/prng.ts'
import type { WireFormat } from '../src/tensor/wire.ts'
import type { Executor } from './executor.ts'
import type { Logger } from '../src/log.ts'
import type { Tensor } from '../src/tensor/tensor.ts'

/** Where one stage output goes: another stage (on some peer) or the coordinator. */
export type Destination = { peer: string, addrs: string[], stage: number } | { coordinator: true }

/** A stylized stage: blend the cached style `hash` into the stage graph with weight α. */
export interface RouteStyle {
  hash: string
  alpha: number
}

export interface StageRoute {
  index: number
  hash: string
  inputs: string[]
  outputs: Array<{ name: string, to: Destination[] }>
  /** Stylized generation (DESIGN §1); absent = the graph as it is. */
  style?: RouteStyle
  /** The coordinator's estimate of the stage's memory (parameters + activations), bytes. */
  estimatedBytes?: number
}

/**
 * The executor key of a stage graph as run: its hash, or for a stylized
 * stage `${stageHash}/${styleHash}/${alpha}`, so every job with the same
 * (graph, style, α) shares one blended session.
 */
export function sessionKey (hash: string, style?: RouteStyle): string {
  return style == null ? hash : `${hash}/${style.hash}/${String(style.alpha)}`
}

export interface JobHooks {
  /**
   * Loads a cached stage graph into the executor under sessionKey(hash, style),
   * blending the cached style in when given; throws STAGE_UNKNOWN when the
   * graph or the style is not cached, BAD_ARGUMENT when the style does not
   * fit the graph.
   */
  loadStage: (hash: string, style?: RouteStyle) => Promise<void>
  /** Delivers tensors to a destination (run.push); stage -1 means the coordinator. */
  deliver: (job: Job, dest: Destination, runId: string, tensors: Record<string, Tensor>) => Promise<void>
  /** Tells the coordinator a run failed here (run.failed). */
  report: (job: Job, runId: string, stage: number, err: LumiereError) => Promise<void>
}

export interface Job {
  id: string
  coordinator: string
  wire: WireFormat
  stages: Map<number, StageRoute>
  /** Inputs received so far, per run and stage. */
  waiting: Map<string, Record<string, Tensor>>
  /** Runs done and compute time spent, per stage. */
  stats: Map<number, { runs: number, busyMs: number }>
  /** The job's other peers (job.setup `peers`, and every peer its routes send to). */
  peers: Set<string>
  /** Once its coordinator's heartbeats lease it (ms since the epoch): closed when this passes without a renewal. */
  leaseEnds?: number
}

export interface JobTableOptions {
  /**
   * Test and demo option (`lumiere peer --faulty p`): with probability p per
   * stage run, add noise of 1e-2 · max|x| to every float32 output before it
   * is delivered — a lying peer, for testing verification.
   */
  faulty?: number
  /** Seed of the faulty peer's choices and noise (reproducible tests). */
  faultySeed?: number
}

/** Size of a faulty peer's lie, relative to the output's max |x|. */
export const FAULTY_NOISE = 1e-2

/** Bounds the inputs a job may hold for runs that have not started, per peer. */
const MAX_WAITING_RUNS = 256

/**
 * A peer's jobs: stage routes set up by the coordinator, inputs gathered per
 * (run, stage), and runs started the moment their last input arrives, with
 * outputs forwarded straight to the stages that read them.
 */
export class JobTable {
  private readonly jobs = new Map<string, Job>()
  private readonly executor: Executor
  private readonly hooks: JobHooks
  private readonly log: Logger
  private readonly faulty: number
  private readonly faultyRandom: () => number

  constructor (executor: Executor, hooks: JobHooks, log: Logger, options: JobTableOptions = {}) {
    this.executor = executor
    this.hooks = hooks
    this.log = log
    this.faulty = options.faulty ?? 0
    this.faultyRandom = mulberry32(options.faultySeed ?? 0xfa0175)
  }

  async setup (id: string, coordinator: string, stages: StageRoute[], wire: WireFormat = 'f32', peers: string[] = []): Promise<void> {
    for (const s of stages) await this.hooks.loadStage(s.hash, s.style)
    const members = new Set(peers)
    for (const s of stages) for (const o of s.outputs) for (const d of o.to) if (!('coordinator' in d)) members.add(d.peer)
    this.jobs.set(id, { id, coordinator, wire, stages: new Map(stages.map((s) => [s.index, s])), waiting: new Map(), stats: new Map(stages.map((s) => [s.index, { runs: 0, busyMs: 0 }])), peers: members })
  }

  /** Who set a job up and which peers belong to it (undefined when it is not open here). */
  membership (id: string): { coordinator: string, peers: ReadonlySet<string> } | undefined {
    const job = this.jobs.get(id)
    return job == null ? undefined : { coordinator: job.coordinator, peers: job.peers }
  }

  /** Accepts inputs for one run of one stage; starts the run once all are in. */
  push (jobId: string, runId: string, stage: number, tensors: Record<string, Tensor>): void {
    const job = this.jobs.get(jobId)
    if (job == null) throw new LumiereError('STAGE_UNKNOWN', `job ${jobId} is not set up on this peer`)
    const route = job.stages.get(stage)
    if (route == null) throw new LumiereError('STAGE_UNKNOWN', `stage ${stage} of job ${jobId} is not on this peer`)
    for (const name of Object.keys(tensors)) {
      if (!route.inputs.includes(name)) throw new LumiereError('PROTOCOL', `stage ${stage} has no input '${name}'`)
    }
    const key = `${runId}/${stage}`
    if (!job.waiting.has(key) && job.waiting.size >= MAX_WAITING_RUNS) {
      throw new LumiereError('TOO_LARGE', `job ${jobId} already holds inputs of ${MAX_WAITING_RUNS} runs that have not started`)
    }
    const have = { ...job.waiting.get(key), ...tensors }
    if (route.inputs.some((name) => have[name] == null)) {
      job.waiting.set(key, have)
      return
    }
    job.waiting.delete(key)
    void this.execute(job, route, runId, have)
  }

  /**
   * A heartbeat of `coordinator` (ping `lease`): its jobs among `ids` stay
   * open `ttlMs` more. Ids of jobs it did not set up are ignored.
   */
  renew (coordinator: string, ids: string[], ttlMs: number, now = Date.now()): void {
    for (const id of ids) {
      const job = this.jobs.get(id)
      if (job?.coordinator === coordinator) job.leaseEnds = Math.max(job.leaseEnds ?? 0, now + ttlMs)
    }
  }

  /**
   * Closes the jobs whose lease ran out (their coordinator stopped
   * heartbeating: it died, or lost this peer) and returns their ids. Jobs
   * never leased stay until job.close: their coordinator sends no heartbeats.
   */
  expire (now = Date.now()): string[] {
    const expired: string[] = []
    for (const job of this.jobs.values()) {
      if (job.leaseEnds == null || job.leaseEnds > now) continue
      this.jobs.delete(job.id)
      expired.push(job.id)
      this.log.info({ job: job.id, coordinator: job.coordinator }, 'job closed: its coordinator stopped heartbeating')
    }
    return expired
  }

  stats (id: string): Array<{ index: number, runs: number, busyMs: number }> {
    const job = this.jobs.get(id)
    if (job == null) throw new LumiereError('STAGE_UNKNOWN', `job ${id} is not set up on this peer`)
    return [...job.stats].map(([index, s]) => ({ index, ...s }))
  }

  async close (id: string): Promise<void> {
    this.jobs.delete(id)
  }

  has (id: string): boolean {
    return this.jobs.has(id)
  }

  /** Executor keys the open jobs run (see sessionKey). */
  keysInUse (): Set<string> {
    const keys = new Set<string>()
    for (const job of this.jobs.values()) for (const r of job.stages.values()) keys.add(sessionKey(r.hash, r.style))
    return keys
  }

  private async execute (job: Job, route: StageRoute, runId: string, feeds: Record<string, Tensor>): Promise<void> {
    this.log.debug({ job: job.id, run: runId, stage: route.index }, 'stage run started')
    try {
      const { outputs, ms } = await this.executor.run(sessionKey(route.hash, route.style), widenFromWire(feeds, job.wire), route.outputs.map((o) => o.name), { transfer: true })
      if (this.faulty > 0 && this.faultyRandom() < this.faulty) {
        perturb(outputs, this.faultyRandom)
        this.log.debug({ job: job.id, run: runId, stage: route.index }, 'faulty: perturbed this run\'s outputs')
      }
      this.log.debug({ job: job.id, run: runId, stage: route.index, ms }, 'stage run finished')
      const stats = job.stats.get(route.index)
      if (stats != null) { stats.runs++; stats.busyMs += ms }
      const byDest = new Map<string, { dest: Destination, tensors: Record<string, Tensor> }>()
      for (const out of route.outputs) {
        for (const dest of out.to) {
          const key = 'coordinator' in dest ? 'coordinator' : `${dest.peer}/${dest.stage}`
          const entry = byDest.get(key) ?? { dest, tensors: {} }
          entry.tensors[out.name] = narrowForWire(outputs[out.name], job.wire)
          byDest.set(key, entry)
        }
      }
      await Promise.all([...byDest.values()].map(async ({ dest, tensors }) => this.hooks.deliver(job, dest, runId, tensors)))
    } catch (err) {
      const e = toLumiereError(err, 'STAGE_FAILED')
      this.log.warn({ job: job.id, run: runId, stage: route.index, code: e.code }, e.message)
      await this.hooks.report(job, runId, route.index, e).catch(() => {})
    }
  }
}

/** A lie: every float32 output gets uniform noise in ±FAULTY_NOISE · max|x| (in place of the tensor, not its bytes). */
function perturb (outputs: Record<string, Tensor>, random: () => number): void {
  for (const [name, t] of Object.entries(outputs)) {
    if (t.dtype !== 'F32') continue
    const x = new Float32Array(t.data.byteLength / 4)
    new Uint8Array(x.buffer).set(t.data)
    let max = 0
    for (const v of x) max = Math.max(max, Math.abs(v))
    const scale = FAULTY_NOISE * (max > 0 ? max : 1)
    for (let i = 0; i < x.length; i++) x[i] += scale * (2 * random() - 1)
    outputs[name] = { dtype: 'F32', shape: t.shape, data: new Uint8Array(x.buffer) }
  }
}
