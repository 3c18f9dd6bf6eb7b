import { peerIdFromString } from '@libp2p/peer-id'
import { LumiereError, toLumiereError } from '../src/errors.ts'
import { rpcCall } from '../protocol/rpc.ts'
import { graphInputs, graphOutputs } from './check-inputs.ts'
import { buildStages, deploy } from './deploy.ts'
import { Pipeline } from './pipeline.ts'
import { Ledger, Referee, RollbackError, compareOutputs, verifyChooser, verifyTolerance } from './verify.ts'
import type { Coordinator, PeerInfo } from './coordinator.ts'
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
const PING_TIMEOUT_MS = 3_000

export interface ResilientOptions {
  /** Stages wanted; fewer when fewer peers are left. */
  stages: number
  signal?: AbortSignal
  wire?: WireFormat
  /** Spatial weights blended on the peers (stylized generation). */
  style?: Style
  /** Told when peers are dropped and the model is re-planned. */
  onReplan?: (event: { lost: string[], peers: number, stages: number }) => void
  /**
   * Fraction in [0, 1] of (forward pass, stage) tasks checked: recomputed on a
   * different peer and compared (verify.ts). 0 or absent: off.
   */
  verify?: number
  /** Seed of the choice of tasks to check (default: unpredictable). */
  verifySeed?: number
  /** Told when a peer is caught returning a wrong result, before it is dropped. */
  onLiar?: (evidence: LiarEvidence) => void
}

interface Deployment {
  plan: Plan
  pipeline: Pipeline
  /** Verification on: the stage graphs as placed, graph inputs and outputs. */
  graphs: StageGraph[]
  inputs: string[]
  outputs: string[]
  /** Verification on: the same stages on the same peers, every stage output also routed to the coordinator. */
  tapped?: Pipeline
  /** Single-stage pipelines that check stage s on peer q, by `${s}/${q}`. */
  checkers: Map<string, Promise<Pipeline>>
  closed?: boolean
}

/**
 * A pipeline that survives peers dying: when a run fails because a peer is
 * gone, the peers are pinged, the dead ones dropped, the model re-planned and
 * placed on the rest (a peer may hold several stages), and the failed run —
 * only that run — is sent again. Forward passes are bit-exact whatever the
 * plan, so the result equals an undisturbed run.
 *
 * With `verify` it also survives peers lying. A forward pass with a stage
 * chosen for checking runs on the tapped copy of the pipeline, so the
 * coordinator sees every stage's inputs and outputs; each chosen stage is
 * then run alone, on those inputs, on a peer that does not hold it, and the
 * answers compared (verify.ts: tolerance, referee). A peer convicted is
 * dropped, the model re-planned without it, and the pass run again; if
 * unchecked work of it was already used, the sampler is rolled back
 * (verify.ts withRollback; this is the Rollbackable).
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
  private peers: PeerInfo[]
  private current: Promise<Deployment>
  private generation = 0
  /** Re-plans (for dead or lying peers) go one at a time. */
  private lock: Promise<void> = Promise.resolve()
  private inFlight = 0
  private idle: Array<() => void> = []

  constructor (coordinator: Coordinator, model: ModelProto, dag: Dag, peers: PeerInfo[], options: ResilientOptions) {
    this.coordinator = coordinator
    this.model = model
    this.dag = dag
    this.peers = peers
    this.options = options
    this.choose = verifyChooser(options.verify ?? 0, options.verifySeed)
    this.tolerance = verifyTolerance(options.wire)
    this.referee = new Referee(options.wire)
    this.current = this.deploy()
    this.current.catch(() => {})
  }

  async plan (): Promise<Plan> {
    return (await this.current).plan
  }

  /** What verification found so far. */
  verification (): VerifyReport {
    return this.ledger.report
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
    const d = await this.current.catch(() => undefined)
    if (d != null) await closeDeployment(d)
    await this.referee.close()
  }

  private async attempt (inputs: Record<string, Tensor>, options: RunOptions): Promise<Record<string, Tensor>> {
    const step = this.ledger.step
    for (;;) {
      if (this.ledger.rollbackPending()) throw new RollbackError()
      const generation = this.generation
      const d = await this.current
      if (d.graphs.some((g) => this.ledger.isConvicted(g.peer))) {
        await this.drop(new Set(d.graphs.map((g) => g.peer).filter((p) => this.ledger.isConvicted(p))))
        continue
      }
      try {
        const checked = this.choose == null ? [] : d.graphs.filter(() => this.choose?.() === true).map((g) => g.index)
        let out: Record<string, Tensor> | undefined
        if (checked.length === 0) {
          out = await d.pipeline.run(inputs, options)
        } else {
          out = await this.checkedRun(d, generation, step, inputs, options, checked)
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
        // Re-planned (for another run) while this one ran: its pipeline may have been closed under it. Run it again on the new one.
        if (generation !== this.generation && options.signal?.aborted !== true && this.options.signal?.aborted !== true) continue
        if (!PEER_FAILURES.has(e.code)) throw e
        await this.replan(generation, e)
      }
    }
  }

  /** One pass on the tapped pipeline, then the chosen stages checked. Undefined when a liar was found (and dropped). */
  private async checkedRun (d: Deployment, generation: number, step: number, inputs: Record<string, Tensor>, options: RunOptions, checked: number[]): Promise<Record<string, Tensor> | undefined> {
    if (d.tapped == null) throw new LumiereError('INTERNAL', 'verification is on but the pipeline has no tapped copy')
    const all = await d.tapped.run(inputs, options)
    const values = { ...inputs, ...all }
    const verdicts = await Promise.allSettled(checked.map(async (s) => this.check(d, generation, step, s, values, options)))
    const liars = verdicts.flatMap((v) => v.status === 'fulfilled' ? v.value : [])
    if (liars.length > 0) await this.drop(new Set(liars))
    const failed = verdicts.find((v) => v.status === 'rejected')
    if (failed != null) throw failed.reason
    if (liars.length > 0) return undefined
    return Object.fromEntries(d.outputs.map((n) => [n, all[n]]))
  }

  /** Checks stage `s` of a tapped pass; returns the peers convicted. */
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
    if (d.closed === true) throw new LumiereError('ABORTED', 'the pipeline was re-planned')
    const key = `${g.index}/${q.id}`
    let p = d.checkers.get(key)
    if (p == null) {
      p = Pipeline.open(this.coordinator.node, this.coordinator.inbox, [{ ...g, peer: q.id, addrs: q.addrs }], { inputs: g.inputs, outputs: g.outputs }, { signal: this.options.signal, wire: this.options.wire })
      d.checkers.set(key, p)
      p.catch(() => { if (d.checkers.get(key) === p) d.checkers.delete(key) })
    }
    return p
  }

  private async deploy (): Promise<Deployment> {
    const stages = Math.min(this.options.stages, this.peers.length)
    const { plan, pipeline } = await deploy(this.coordinator, this.model, this.dag, this.peers, stages, this.options.signal, this.options.wire, { style: this.options.style })
    const inputs = graphInputs(this.model).map((i) => i.name)
    const outputs = graphOutputs(this.model)
    if (this.choose == null) return { plan, pipeline, graphs: [], inputs, outputs, checkers: new Map() }
    try {
      // The same stage graphs (same hashes: the peers load nothing new), every output tapped.
      const graphs = buildStages(this.model, this.dag, plan, this.peers, { style: this.options.style })
      const taps = [...new Set([...outputs, ...graphs.flatMap((g) => g.outputs)])]
      const tapped = await Pipeline.open(this.coordinator.node, this.coordinator.inbox, graphs, { inputs, outputs: taps }, { signal: this.options.signal, wire: this.options.wire })
      return { plan, pipeline, graphs, inputs, outputs, tapped, checkers: new Map() }
    } catch (err) {
      await pipeline.close()
      throw err
    }
  }

  /** Runs one re-plan at a time. */
  private async serial<T> (fn: () => Promise<T>): Promise<T> {
    const result = this.lock.then(fn)
    this.lock = result.then(() => {}, () => {})
    return result
  }

  /** After a peer failure in `generation`: pings the peers and re-plans onto those alive (once per generation). */
  private async replan (generation: number, cause: LumiereError): Promise<void> {
    await this.serial(async () => {
      if (generation !== this.generation) return
      const alive = await Promise.all(this.peers.map(async (p) => this.ping(p)))
      const lost = this.peers.filter((_, i) => !alive[i]).map((p) => p.id)
      if (lost.length === 0) throw cause
      await this.redeploy(lost, `every peer is gone (last error: ${cause.message}); start peers and run again`)
      this.options.onReplan?.({ lost, peers: this.peers.length, stages: (await this.current).plan.stages.length })
    })
  }

  /** Drops convicted peers still in the job and re-plans onto the rest. */
  private async drop (liars: Set<string>): Promise<void> {
    await this.serial(async () => {
      const still = this.peers.filter((p) => liars.has(p.id)).map((p) => p.id)
      if (still.length === 0) return
      await this.redeploy(still, 'every peer was caught returning wrong results; no peer is left to run the job')
    })
  }

  private async redeploy (removed: string[], noneLeft: string): Promise<void> {
    this.peers = this.peers.filter((p) => !removed.includes(p.id))
    if (this.peers.length === 0) throw new LumiereError('PEER_LOST', noneLeft)
    const old = this.current
    this.generation++
    this.current = this.deploy()
    this.current.catch(() => {})
    void old.then(closeDeployment, () => {})
    await this.current
  }

  private async ping (peer: PeerInfo): Promise<boolean> {
    try {
      await rpcCall(this.coordinator.node, peerIdFromString(peer.id), 'ping', {}, { timeoutMs: PING_TIMEOUT_MS, signal: this.options.signal })
      return true
    } catch {
      return false
    }
  }
}

async function closeDeployment (d: Deployment): Promise<void> {
  d.closed = true
  const checkers = [...d.checkers.values()]
  d.checkers.clear()
  await Promise.allSettled([
    d.pipeline.close(),
    ...(d.tapped != null ? [d.tapped.close()] : []),
    ...checkers.map(async (c) => (await c).close())
  ])
}
