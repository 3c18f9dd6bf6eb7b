import { peerIdFromString } from '@libp2p/peer-id'
import { LumiereError, toLumiereError } from '../src/errors.ts'
import { rpcCall } from '../protocol/rpc.ts'
import { graphInputs, graphOutputs } from './check-inputs.ts'
import { deployForStep } from './deploy.ts'
import { DEFAULT_LIVENESS, Heartbeat, lossReason, stuckStage } from './liveness.ts'
import { Pipeline } from './pipeline.ts'
import { planPeers } from './plan.ts'
import { Replicas } from './replicas.ts'
import { Ledger, Referee, RollbackError, compareOutputs, verifyChooser, verifyTolerance } from './verify.ts'
import type { Coordinator, PeerInfo } from './coordinator.ts'
import type { LivenessOptions, PoolChange } from './liveness.ts'
import type { RunOptions, StageGraph } from './pipeline.ts'
import type { Plan } from './plan.ts'
import type { LiarEvidence, Rollbackable, VerifyReport } from './verify.ts'
import type { Dag } from '../src/onnx/dag.ts'
import type { Style } from '../src/model/style.ts'
import type { ModelProto } from '../src/onnx/proto.ts'
import type { Tensor } from '../src/tensor/tensor.ts'
import type { WireFormat } from '../src/tensor/wire.ts'

/** Failures after which the peers are checked and the stages re-planned. */
const PEER_FAILURES = new Set(['PEER_LOST', 'PEER_UNREACHABLE', 'DEADLINE_EXCEEDED', 'BUSY'])

export interface ResilientOptions {
  /**
   * Stages wanted, fewer while fewer peers are left. Default: one per peer,
   * so the cut follows the pool as peers are lost or join.
   */
  stages?: number
  signal?: AbortSignal
  wire?: WireFormat
  /** Spatial weights blended on the peers (stylized generation). */
  style?: Style
  /** Heartbeats (liveness.ts): how often, how long to wait, how many misses make a peer down. */
  liveness?: LivenessOptions
  /** Told when peers are dropped or join and the model is re-planned. */
  onReplan?: (event: PoolChange) => void
  /** Told when a peer that joined cannot be used. */
  onWarning?: (message: string) => void
  /**
   * Fraction in [0, 1] of (forward pass, stage) tasks checked: recomputed on a
   * different peer and compared (verify.ts). 0 or absent: off.
   */
  verify?: number
  /** Seed of the choice of tasks to check (default: unpredictable). */
  verifySeed?: number
  /** Told when a peer is caught returning a wrong result, before it is dropped. */
  onLiar?: (evidence: LiarEvidence) => void
  /**
   * Forward passes in flight per step (samples × guidance branches). Given,
   * with `stages` and `verify` unset, the planner may copy the whole model
   * onto several peers instead of cutting it (coordinator/replication.ts).
   */
  microBatches?: number
}

interface Deployment {
  plan: Plan
  /** Replicas for a 'replicated' plan. */
  pipeline: Pipeline | Replicas
  /** Verification on: the stage graphs as placed, graph inputs and outputs. */
  graphs: StageGraph[]
  inputs: string[]
  outputs: string[]
  /** Verification on: the same stages on the same peers, every stage output also routed to the coordinator. */
  tapped?: Pipeline
  /** Single-stage pipelines that check stage s on peer q, by `${s}/${q}`. */
  checkers: Map<string, Promise<Pipeline>>
  /**
   * Aborted when it is closed: its runs stop waiting at once, on a push to a
   * stopped peer too (a closed inbox alone does not end that wait).
   */
  closed: AbortController
}

/** The model set up on the pool and the peers that joined, waiting for a step boundary. */
interface Prepared {
  peers: PeerInfo[]
  joined: string[]
  abort: AbortController
  deployment?: Deployment
}

/**
 * A pipeline that survives peers dying, stalling and joining.
 *
 * Lost peers: a peer is dropped when its connection drops, when it misses
 * its heartbeats (liveness.ts: a stopped process keeps its connection), when
 * a failed run is followed by a failed ping, or when a forward pass passes
 * its deadline at its stage although it answers pings. The model is then
 * re-planned and placed on the rest (a peer may hold several stages); runs
 * in flight fail at once and are sent again, so only the lost work of the
 * current step is redone. Forward passes are bit-exact whatever the plan,
 * so the result equals an undisturbed run.
 *
 * Joined peers (Coordinator.admit): the model is set up on the pool with
 * them in the background, and `beginStep` switches to that plan at the next
 * step boundary, never mid-step. The stage count follows the pool unless
 * `stages` fixes it.
 *
 * With `verify` it also survives peers lying. A forward pass with a stage
 * chosen for checking runs on the tapped copy of the pipeline, so the
 * coordinator sees every stage's inputs and outputs; each chosen stage is
 * then run alone, on those inputs, on a peer that does not hold it, and the
 * answers compared (verify.ts: tolerance, referee). On copies of the model
 * a pass chosen for checking is run again on another copy (or an idle
 * peer): the pass's inputs and outputs are all there is to see. A peer
 * convicted is dropped, the model re-planned without it, and the pass run
 * again; if unchecked work of it was already used, the sampler is rolled
 * back (verify.ts withRollback; this is the Rollbackable).
 */
export class ResilientPipeline implements Rollbackable {
  readonly ledger = new Ledger()
  private readonly coordinator: Coordinator
  private readonly model: ModelProto
  private readonly dag: Dag
  private readonly options: ResilientOptions
  private readonly choose: (() => boolean) | undefined
  private readonly tolerance: number
  private readonly referee: Referee
  private readonly heartbeat: Heartbeat
  private readonly unsubscribe: () => void
  /** The peers the job runs on. */
  private peers: PeerInfo[]
  private current: Promise<Deployment>
  /** The current deployment once it is set up. */
  private settled: Deployment | undefined
  /** Aborts the setup of the current deployment when it is superseded. */
  private deploying = new AbortController()
  private generation = 0
  /** Peers admitted but not yet in use, and the plan with them being set up. */
  private joining: PeerInfo[] = []
  private prepared: Prepared | undefined
  /** Peers lost (and why) whose re-plan onReplan has not told yet. */
  private unreported: { lost: string[], why: string[] } = { lost: [], why: [] }
  /** Ids of this job's pipelines open on peers: the heartbeats lease them. */
  private readonly jobIds = new Set<string>()
  /** Checks after failed runs (pings, blame) go one at a time. */
  private lock: Promise<void> = Promise.resolve()
  private inFlight = 0
  private idle: Array<() => void> = []
  private closed = false

  constructor (coordinator: Coordinator, model: ModelProto, dag: Dag, peers: PeerInfo[], options: ResilientOptions) {
    this.coordinator = coordinator
    this.model = model
    this.dag = dag
    this.peers = peers
    this.options = options
    this.choose = verifyChooser(options.verify ?? 0, options.verifySeed)
    this.tolerance = verifyTolerance(options.wire)
    this.referee = new Referee(options.wire)
    this.heartbeat = new Heartbeat(coordinator.node, { ...options.liveness, jobs: () => [...this.jobIds], onDown: (peer, why) => { this.lose([peer], why) } })
    for (const p of peers) this.heartbeat.watch(p.id)
    this.unsubscribe = coordinator.onJoin((peer) => { this.admit(peer) })
    this.current = this.install()
  }

  async plan (): Promise<Plan> {
    return (await this.current).plan
  }

  /** What verification found so far. */
  verification (): VerifyReport {
    return this.ledger.report
  }

  /** The peers of the job now: those in use and those that joined (lost and convicted ones left out). */
  pool (): PeerInfo[] {
    return [...this.peers, ...this.joining]
  }

  async run (inputs: Record<string, Tensor>, options: RunOptions = {}): Promise<Record<string, Tensor>> {
    this.inFlight++
    try {
      return await this.attempt(inputs, options)
    } finally {
      if (--this.inFlight === 0) for (const resolve of this.idle.splice(0)) resolve()
    }
  }

  /** Resolves when no forward pass is in flight. */
  async settle (): Promise<void> {
    if (this.inFlight === 0) return
    await new Promise<void>((resolve) => { this.idle.push(resolve) })
  }

  /**
   * A step boundary (no forward pass of the step before in flight): peers
   * that joined and whose plan is set up are used from here on. A plan still
   * being set up is taken at a later boundary; the job never waits for it.
   */
  beginStep (): void {
    const p = this.prepared
    if (p?.deployment == null || this.closed) return
    this.prepared = undefined
    this.joining = this.joining.filter((j) => !p.joined.includes(j.id))
    this.peers = p.peers
    this.generation++
    this.deploying.abort()
    const old = this.current
    this.current = Promise.resolve(p.deployment)
    this.settled = p.deployment
    void old.then(async (d) => { await this.closeDeployment(d) }, () => {})
    this.report(p.deployment)
    this.options.onReplan?.({ lost: [], joined: p.joined, ...shape(p.deployment.plan) })
  }

  /** Compute time per stage so far (checked passes, which run on the tapped copy, included; the checks themselves not). */
  async stats (): Promise<Array<{ index: number, runs: number, busyMs: number }>> {
    const d = await this.current
    const [main, tapped] = await Promise.all([d.pipeline.stats({ signal: this.options.signal }), d.tapped?.stats({ signal: this.options.signal }) ?? []])
    for (const t of tapped) {
      const m = main.find((x) => x.index === t.index)
      if (m != null) { m.runs += t.runs; m.busyMs += t.busyMs }
    }
    return main
  }

  async close (): Promise<void> {
    this.closed = true
    this.unsubscribe()
    this.heartbeat.close()
    this.deploying.abort()
    const prepared = this.prepared
    this.prepared = undefined
    prepared?.abort.abort()
    const d = await this.current.catch(() => undefined)
    await Promise.allSettled([d, prepared?.deployment].map(async (x) => { if (x != null) await this.closeDeployment(x) }))
    await this.referee.close()
  }

  private async attempt (inputs: Record<string, Tensor>, options: RunOptions): Promise<Record<string, Tensor>> {
    const step = this.ledger.step
    for (;;) {
      if (this.ledger.rollbackPending()) throw new RollbackError()
      const generation = this.generation
      let d: Deployment
      try {
        d = await this.current
      } catch (err) {
        // Superseded while it was set up (a peer lost meanwhile): use the new one.
        if (generation !== this.generation) continue
        const e = toLumiereError(err, 'PEER_ERROR')
        if (!PEER_FAILURES.has(e.code) || this.aborted(options)) throw e
        await this.replan(generation, e)
        continue
      }
      if (d.graphs.some((g) => this.ledger.isConvicted(g.peer))) {
        this.drop(new Set(d.graphs.map((g) => g.peer).filter((p) => this.ledger.isConvicted(p))))
        continue
      }
      let ran = d.pipeline
      const on = { ...options, signal: AbortSignal.any([d.closed.signal, ...(options.signal != null ? [options.signal] : [])]) }
      try {
        if (d.pipeline instanceof Replicas && this.choose != null) {
          const out = await this.checkedCopyRun(d, d.pipeline, generation, step, inputs, on)
          if (out == null) continue // a liar was dropped and the model re-planned: run it again
          if (this.ledger.rollbackPending()) throw new RollbackError()
          return out
        }
        const checked = this.choose == null ? [] : d.graphs.filter(() => this.choose?.() === true).map((g) => g.index)
        let out: Record<string, Tensor> | undefined
        if (checked.length === 0) {
          out = await d.pipeline.run(inputs, on)
        } else {
          ran = d.tapped ?? d.pipeline
          out = await this.checkedRun(d, generation, step, inputs, on, checked)
          if (out == null) continue // a liar was dropped and the stages re-planned: run it again
        }
        if (this.choose != null) {
          for (const g of d.graphs) if (!checked.includes(g.index)) this.ledger.unchecked(g.peer, step)
          // Unchecked work of a peer convicted meanwhile: do not hand it to the sampler.
          if (this.ledger.rollbackPending()) throw new RollbackError()
        }
        return out
      } catch (err) {
        if (err instanceof RollbackError) throw err
        const e = toLumiereError(err, 'PEER_ERROR')
        // Re-planned (for another run, or a peer down) while this one ran: its pipeline was closed under it. Run it again on the new one.
        if (generation !== this.generation && !this.aborted(options)) continue
        if (!PEER_FAILURES.has(e.code)) throw e
        await this.replan(generation, e, { pipeline: ran, plan: d.plan })
      }
    }
  }

  private aborted (options: RunOptions): boolean {
    return options.signal?.aborted === true || this.options.signal?.aborted === true
  }

  private async checkedRun (d: Deployment, generation: number, step: number, inputs: Record<string, Tensor>, options: RunOptions, checked: number[]): Promise<Record<string, Tensor> | undefined> {
    if (d.tapped == null) throw new LumiereError('INTERNAL', 'verification is on but the pipeline has no tapped copy')
    const all = await d.tapped.run(inputs, options)
    const values = { ...inputs, ...all }
    const verdicts = await Promise.allSettled(checked.map(async (s) => this.check(d, generation, step, s, values, options)))
    const liars = verdicts.flatMap((v) => v.status === 'fulfilled' ? v.value : [])
    if (liars.length > 0) this.drop(new Set(liars))
    const failed = verdicts.find((v) => v.status === 'rejected')
    if (failed != null) throw failed.reason
    if (liars.length > 0) return undefined
    return Object.fromEntries(d.outputs.map((n) => [n, all[n]]))
  }

  /** A pass on copies: checked (when chosen) by running it again elsewhere; undefined when its copy lied and was dropped. */
  private async checkedCopyRun (d: Deployment, replicas: Replicas, generation: number, step: number, inputs: Record<string, Tensor>, options: RunOptions): Promise<Record<string, Tensor> | undefined> {
    const { outputs, copy } = await replicas.runTracked(inputs, options)
    const g = d.graphs[copy]
    if (this.choose?.() !== true) {
      this.ledger.unchecked(g.peer, step)
      return outputs
    }
    const liars = await this.check(d, generation, step, g.index, { ...inputs, ...outputs }, options)
    if (liars.length === 0) return outputs
    this.drop(new Set(liars))
    return undefined
  }

  /** Checks stage `s` of a tapped pass (or copy s's pass); returns the peers convicted. */
  private async check (d: Deployment, generation: number, step: number, s: number, values: Record<string, Tensor>, options: RunOptions): Promise<string[]> {
    const g = d.graphs.find((x) => x.index === s)
    if (g == null) throw new LumiereError('INTERNAL', `no stage ${s} to check`)
    const feeds = Object.fromEntries(g.inputs.map((n) => [n, values[n]]))
    const claimed = Object.fromEntries(g.outputs.map((n) => [n, values[n]]))
    this.ledger.report.checks++
    const q = this.checkerPeer(d, g)
    let second: Record<string, Tensor> | undefined
    if (q != null) {
      try {
        second = await (await this.checker(d, g, q)).run(feeds, options)
      } catch (err) {
        const e = toLumiereError(err, 'PEER_ERROR')
        if (generation !== this.generation || e.code === 'ABORTED') throw err
        // No second opinion from that peer (gone, refused the stage): the referee's is the check.
        second = undefined
      }
      if (second != null && compareOutputs(claimed, second, this.tolerance).match) return []
    }
    if (second != null) this.ledger.report.mismatches++
    const trusted = await this.referee.run({ hash: g.hash, bytes: g.bytes, outputs: g.outputs, style: g.style }, feeds)
    const convicted: string[] = []
    const judge = (peer: string, answer: Record<string, Tensor>, checkedBy: string): void => {
      const c = compareOutputs(trusted, answer, this.tolerance)
      if (c.match) return
      convicted.push(peer)
      const evidence = { peer, step, stage: s, checkedBy, judge: 'coordinator' as const, output: c.output, maxDiff: c.maxDiff, relative: c.relative, tolerance: this.tolerance }
      if (this.ledger.convict(evidence)) this.options.onLiar?.(evidence)
    }
    judge(g.peer, claimed, q?.id ?? 'coordinator')
    if (second != null && q != null) judge(q.id, second, g.peer)
    return convicted
  }

  /**
   * Who checks stage `g`: a peer holding no stage if there is one (it is
   * otherwise idle), else the peer of the next stage that is not g's. One
   * fixed checker per stage, so each peer loads at most a few extra stages.
   */
  private checkerPeer (d: Deployment, g: StageGraph): PeerInfo | undefined {
    const holders = new Set(d.graphs.map((x) => x.peer))
    const idle = this.peers.filter((p) => !holders.has(p.id))
    if (idle.length > 0) return idle[g.index % idle.length]
    const order = [...d.graphs].sort((a, b) => a.index - b.index)
    const at = order.indexOf(g)
    for (let k = 1; k < order.length; k++) {
      const next = order[(at + k) % order.length]
      if (next.peer !== g.peer) return this.peers.find((p) => p.id === next.peer)
    }
    return undefined
  }

  private async checker (d: Deployment, g: StageGraph, q: PeerInfo): Promise<Pipeline> {
    if (d.closed.signal.aborted) throw new LumiereError('ABORTED', 'the pipeline was re-planned')
    const key = `${g.index}/${q.id}`
    let p = d.checkers.get(key)
    if (p == null) {
      p = Pipeline.open(this.coordinator.node, this.coordinator.inbox, [{ ...g, peer: q.id, addrs: q.addrs }], { inputs: g.inputs, outputs: g.outputs }, { signal: this.options.signal, wire: this.options.wire })
      d.checkers.set(key, p)
      p.then((c) => { this.jobIds.add(c.jobId) }, () => { if (d.checkers.get(key) === p) d.checkers.delete(key) })
    }
    return p
  }

  /** Sets the model up on `peers`: the stages (one per peer unless `stages` fixes them) and, with verification, their tapped copy. */
  private async deployOnto (peers: PeerInfo[], abort: AbortController): Promise<Deployment> {
    const signal = this.options.signal == null ? abort.signal : AbortSignal.any([this.options.signal, abort.signal])
    const stages = Math.min(this.options.stages ?? peers.length, peers.length)
    // Copies of the model are an option only when the stage count is free.
    const microBatches = this.options.stages == null ? this.options.microBatches ?? 1 : 1
    const { plan, pipeline, graphs } = await deployForStep(this.coordinator, this.model, this.dag, peers, stages, microBatches, signal, this.options.wire, { style: this.options.style })
    for (const id of jobIdsOf(pipeline)) this.jobIds.add(id)
    const inputs = graphInputs(this.model).map((i) => i.name)
    const outputs = graphOutputs(this.model)
    // Kept only to verify with: they hold the graphs' bytes.
    const d: Deployment = { plan, pipeline, graphs: this.choose != null ? graphs : [], inputs, outputs, checkers: new Map(), closed: new AbortController() }
    // A copy's inputs and outputs are the pass's own: nothing to tap.
    if (this.choose == null || plan.placement === 'replicated') return d
    try {
      // The same stage graphs (the peers load nothing new), every output routed here too.
      const taps = [...new Set([...outputs, ...d.graphs.flatMap((g) => g.outputs)])]
      d.tapped = await Pipeline.open(this.coordinator.node, this.coordinator.inbox, d.graphs, { inputs, outputs: taps }, { signal, wire: this.options.wire })
      this.jobIds.add(d.tapped.jobId)
      return d
    } catch (err) {
      await this.closeDeployment(d)
      throw err
    }
  }

  /** Makes a deployment onto the pool the current one; when it is set up, onReplan hears of the losses it answers. */
  private install (): Promise<Deployment> {
    this.deploying = new AbortController()
    const current = this.deployOnto(this.peers, this.deploying)
    current.then((d) => {
      if (this.current !== current) return
      this.settled = d
      this.report(d)
    }, () => {})
    return current
  }

  /** Re-plans onto the pool as it is now; runs in flight on the old plan fail and are sent again. */
  private redeploy (noneLeft: string): void {
    this.generation++
    this.deploying.abort()
    this.settled = undefined
    const old = this.current
    if (this.peers.length === 0) {
      this.current = Promise.reject(new LumiereError('PEER_LOST', noneLeft))
      this.current.catch(() => {})
    } else {
      this.current = this.install()
    }
    void old.then(async (d) => { await this.closeDeployment(d) }, () => {})
  }

  /** Takes peers out of the job (pool, joiners, heartbeats); returns those that were in the pool. */
  private remove (ids: ReadonlySet<string>): string[] {
    const gone = this.peers.filter((p) => ids.has(p.id)).map((p) => p.id)
    const joiners = this.joining.filter((p) => ids.has(p.id))
    if (gone.length === 0 && joiners.length === 0) return []
    for (const id of ids) this.heartbeat.unwatch(id)
    this.peers = this.peers.filter((p) => !ids.has(p.id))
    this.joining = this.joining.filter((p) => !ids.has(p.id))
    if (this.prepared?.peers.some((p) => ids.has(p.id)) === true) this.prepare()
    return gone
  }

  /** Drops peers that are down or too slow, and re-plans when they held stages. */
  private lose (ids: string[], why: string): void {
    if (this.closed) return
    const gone = this.remove(new Set(ids))
    if (gone.length === 0) return
    this.unreported.lost.push(...gone)
    this.unreported.why.push(why)
    const d = this.settled
    if (d != null && !planPeers(d.plan).some((p) => gone.includes(p))) {
      // It held no stage: the plan stands.
      this.report(d)
      return
    }
    this.redeploy(`every peer is gone (last: ${why}); start peers and run again`)
  }

  /** Drops convicted peers still in the job and re-plans onto the rest. */
  private drop (liars: Set<string>): void {
    if (this.remove(liars).length === 0) return
    this.redeploy('every peer was caught returning wrong results; no peer is left to run the job')
  }

  private report (d: Deployment): void {
    if (this.unreported.lost.length === 0) return
    const { lost, why } = this.unreported
    this.unreported = { lost: [], why: [] }
    this.options.onReplan?.({ lost, joined: [], why: [...new Set(why)].join('; '), ...shape(d.plan) })
  }

  /** A peer joined (Coordinator.admit): sets the model up on the pool with it, for the next step boundary. */
  private admit (peer: PeerInfo): void {
    if (this.closed || this.ledger.isConvicted(peer.id) || this.peers.some((p) => p.id === peer.id) || this.joining.some((p) => p.id === peer.id)) return
    this.joining.push(peer)
    this.heartbeat.watch(peer.id)
    this.prepare()
  }

  /** (Re)starts setting the model up on the pool and the peers that joined; a setup under way for an older pool is abandoned. */
  private prepare (): void {
    const previous = this.prepared
    this.prepared = undefined
    if (previous != null) {
      previous.abort.abort()
      if (previous.deployment != null) void this.closeDeployment(previous.deployment)
    }
    if (this.joining.length === 0 || this.closed) return
    const entry: Prepared = { peers: [...this.peers, ...this.joining], joined: this.joining.map((p) => p.id), abort: new AbortController() }
    this.prepared = entry
    this.deployOnto(entry.peers, entry.abort).then((d) => {
      if (this.prepared === entry) entry.deployment = d
      else void this.closeDeployment(d)
    }, (err: unknown) => {
      if (this.prepared !== entry) return
      this.prepared = undefined
      for (const id of entry.joined) this.heartbeat.unwatch(id)
      this.joining = this.joining.filter((p) => !entry.joined.includes(p.id))
      const e = toLumiereError(err, 'PEER_ERROR')
      this.options.onWarning?.(`peer ${entry.joined.join(', ')} joined, but the model could not be set up with it (${e.code}: ${e.message}); going on without it`)
    })
  }

  /** Runs one check at a time. */
  private async serial<T> (fn: () => Promise<T>): Promise<T> {
    const result = this.lock.then(fn)
    this.lock = result.then(() => {}, () => {})
    return result
  }

  /**
   * After a peer failure in `generation`: pings the peers and drops those
   * that do not answer; if all do and a pass passed its deadline, drops the
   * peer it is stuck at (`late`: the pipeline it ran on). Once per generation.
   */
  private async replan (generation: number, cause: LumiereError, late?: { pipeline: Pipeline | Replicas, plan: Plan }): Promise<void> {
    await this.serial(async () => {
      if (generation !== this.generation) return
      const alive = await Promise.all(this.peers.map(async (p) => this.ping(p)))
      if (generation !== this.generation) return
      const dead = this.peers.filter((_, i) => !alive[i]).map((p) => p.id)
      if (dead.length > 0) {
        this.lose(dead, lossReason(cause))
        return
      }
      // One peer left: it is all there is; the deadline is the user's to raise.
      if (cause.code === 'DEADLINE_EXCEEDED' && late != null && this.peers.length > 1) {
        const peer = await this.blame(late)
        if (generation !== this.generation) return
        if (peer != null) {
          this.lose([peer], 'a forward pass passed its deadline at its stage, though it answers heartbeats')
          return
        }
      }
      throw cause
    })
  }

  /** The peer a pass that passed its deadline is stuck at: one that does not answer job.stats, else the holder of liveness.ts stuckStage; on copies, the one whose pass passed its deadline. */
  private async blame (late: { pipeline: Pipeline | Replicas, plan: Plan }): Promise<string | undefined> {
    const { pipeline } = late
    if (pipeline instanceof Replicas) return pipeline.latePeer()
    const runs = new Map<number, number>()
    const silent: string[] = []
    const timeoutMs = this.options.liveness?.timeoutMs ?? DEFAULT_LIVENESS.timeoutMs
    await Promise.all(planPeers(late.plan).map(async (peer) => {
      try {
        const { body } = await rpcCall(this.coordinator.node, peerIdFromString(peer), 'job.stats', { jobId: pipeline.jobId }, { timeoutMs, signal: this.options.signal })
        for (const s of body.stages) runs.set(s.index, s.runs)
      } catch {
        silent.push(peer)
      }
    }))
    if (silent.length > 0) return silent[0]
    const stage = stuckStage(runs)
    return late.plan.stages.find((s) => s.index === stage)?.peer
  }

  private async ping (peer: PeerInfo): Promise<boolean> {
    try {
      await rpcCall(this.coordinator.node, peerIdFromString(peer.id), 'ping', {}, { timeoutMs: this.options.liveness?.timeoutMs ?? DEFAULT_LIVENESS.timeoutMs, signal: this.options.signal })
      return true
    } catch {
      return false
    }
  }

  private async closeDeployment (d: Deployment): Promise<void> {
    d.closed.abort()
    const checkers = [...d.checkers.values()]
    d.checkers.clear()
    const pipelines = [d.pipeline, ...(d.tapped != null ? [d.tapped] : [])]
    for (const p of pipelines) for (const id of jobIdsOf(p)) this.jobIds.delete(id)
    await Promise.allSettled([
      ...pipelines.map(async (p) => p.close()),
      ...checkers.map(async (c) => {
        const p = await c
        this.jobIds.delete(p.jobId)
        await p.close()
      })
    ])
  }
}

/** What a re-plan notice says of the new plan: peers holding stages, the stages, whether they are copies. */
function shape (plan: Plan): Pick<PoolChange, 'peers' | 'stages' | 'copies'> {
  return { peers: planPeers(plan).length, stages: plan.stages.length, ...(plan.placement === 'replicated' ? { copies: true } : {}) }
}

function jobIdsOf (p: Pipeline | Replicas): string[] {
  return p instanceof Replicas ? p.jobIds : [p.jobId]
}
