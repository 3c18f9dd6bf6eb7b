import { LumiereError, toLumiereError } from '../src/errors.ts'
import { encodeModel } from '../src/onnx/model-io.ts'
import { stageHash } from '../peer/stage-cache.ts'
import { deploy } from './deploy.ts'
import { Heartbeat, lossReason } from './liveness.ts'
import { Ledger, Referee, RollbackError, compareOutputs, verifyChooser, verifyTolerance } from './verify.ts'
import type { Coordinator, PeerInfo } from './coordinator.ts'
import type { LivenessOptions, PoolChange } from './liveness.ts'
import type { Pipeline } from './pipeline.ts'
import type { LiarEvidence, RefereeGraph, Rollbackable, VerifyReport } from './verify.ts'
import type { Dag } from '../src/onnx/dag.ts'
import type { ModelProto } from '../src/onnx/proto.ts'
import type { Tensor } from '../src/tensor/tensor.ts'
import type { WireFormat } from '../src/tensor/wire.ts'

export interface HedgeOptions {
  /** A task running longer than factor × the median task time so far is also sent to an idle peer (default 2). */
  factor?: number
  /** …but never sooner than this (default 50 ms). */
  minMs?: number
}

export interface ScatterOptions {
  signal?: AbortSignal
  /** Deadline for one task on one peer; past it the task goes to another peer. */
  taskTimeoutMs?: number
  wire?: WireFormat
  /**
   * Fraction in [0, 1] of tasks also run on a second peer and compared
   * (verify.ts); a mismatch is judged by the coordinator's own run, and the
   * liar dropped with every task it completed in that run() redone. 0 or absent: off.
   */
  verify?: number
  /** Seed of the choice of tasks to check (default: unpredictable). */
  verifySeed?: number
  /** Told when a peer is caught returning a wrong result. */
  onLiar?: (evidence: LiarEvidence) => void
  /** Hedge slow tasks: true for the defaults, or the thresholds. */
  hedge?: boolean | HedgeOptions
  /** Heartbeats (liveness.ts): how often, how long to wait, how many misses make a peer down. */
  liveness?: LivenessOptions
  /** Told when a peer is dropped (down, unreachable, past a deadline) or joins. */
  onReplan?: (event: PoolChange) => void
  /** Told when a peer that joined cannot be used. */
  onWarning?: (message: string) => void
}

interface Worker {
  peer: PeerInfo
  pipeline: Pipeline
  /** Tasks (and checks) it may have in flight. */
  slots: number
  inFlight: number
  /** False once the peer failed in a way that says it is gone, or lied. */
  live: boolean
  liar: boolean
  done: number
  /** Aborted when the peer is found down: its tasks in flight fail at once and go elsewhere. */
  down: AbortController
}

/** One task of a run() call and where it stands. */
interface Task {
  index: number
  /** Workers it failed on (or that lied). */
  tried: Set<Worker>
  /** Copies in flight: the first and, hedged, a second. */
  running: Map<Worker, { started: number, abort: AbortController }>
  hedged: boolean
  status: 'pending' | 'running' | 'checking' | 'done'
  /** Chosen to be checked on a second peer. */
  check: boolean
  checked: boolean
  checkTried: Set<Worker>
  checking?: { worker: Worker | undefined, abort: AbortController }
  result?: Record<string, Tensor>
  by?: Worker
  /** Bumped when its result is thrown away (its peer lied): answers for an older version are ignored. */
  version: number
}

/** Tasks in flight per peer, per unit of its speed relative to the median peer. */
const SLOTS_PER_MEDIAN_PEER = 2
const MAX_SLOTS = 4
/** Failures that mean the peer is gone, not that the task was bad. */
const PEER_GONE = new Set(['PEER_LOST', 'PEER_UNREACHABLE', 'DEADLINE_EXCEEDED', 'BUSY'])
const DEFAULT_HEDGE = { factor: 2, minMs: 50 }
/** Task times the hedge threshold is the median of (the latest). */
const DURATIONS_KEPT = 64

/**
 * Data-parallel execution of one whole graph on many peers: every peer holds
 * the graph (sent once, cached by hash) and takes stateless tasks, inputs to
 * outputs. A peer pulls its next task when a slot frees up, so a faster peer
 * takes more; slots bound the tasks in flight per peer (hedges and checks
 * included). A task that fails or passes its deadline is sent again to
 * another live peer.
 *
 * Verification (`verify`): a chosen task is run again on a second peer once
 * its first answer is in; disagreement is judged by the coordinator's own run
 * (verify.ts Referee); a convicted peer gets no more tasks and every task it
 * completed in this run() is redone elsewhere, so the step's result is as an
 * honest mesh's. Its unchecked answers of earlier run() calls (earlier
 * sampler steps) are the Ledger's business: run() throws RollbackError and
 * verify.ts withRollback resamples from before them.
 *
 * Hedging (`hedge`): once no task is waiting, an idle peer also takes a task
 * that has run longer than factor × the median task time (at least minMs);
 * the first answer wins and the other copy is aborted here (the peer may
 * still finish it: there is no cancel on the wire). Both answers are
 * bit-identical, so hedging never changes results.
 *
 * Liveness: a peer that misses its heartbeats (liveness.ts), drops its
 * connection or passes a task's deadline is dropped, and its tasks in flight
 * go to the others at once. A peer that joins (Coordinator.admit) gets the
 * graph and takes tasks as soon as it is set up: from the step under way if
 * tasks are still waiting, else from the next.
 */
export class Scatter implements Rollbackable {
  readonly ledger = new Ledger()
  private readonly workers: Worker[]
  private readonly coordinator: Coordinator
  private readonly model: ModelProto
  private readonly dag: Dag
  /** Median peer speed at open: a joining peer's slots are relative to it. */
  private readonly median: number
  private readonly options: ScatterOptions
  private readonly heartbeat: Heartbeat
  private readonly unsubscribe: () => void
  /** Peers whose graph is being set up after they joined. */
  private readonly joining = new Set<string>()
  private closed = false
  private readonly choose: (() => boolean) | undefined
  private readonly tolerance: number
  private readonly referee: Referee
  private readonly graph: () => RefereeGraph
  private readonly hedge: Required<HedgeOptions> | undefined
  private readonly durations: number[] = []
  private readonly hedges = { sent: 0, won: 0 }
  private busy = 0
  /** The `advance` of each run() under way. */
  private readonly wakers = new Set<() => void>()
  private idle: Array<() => void> = []

  private constructor (coordinator: Coordinator, workers: Worker[], model: ModelProto, dag: Dag, median: number, options: ScatterOptions) {
    this.coordinator = coordinator
    this.workers = workers
    this.model = model
    this.dag = dag
    this.median = median
    this.options = options
    this.choose = verifyChooser(options.verify ?? 0, options.verifySeed)
    this.tolerance = verifyTolerance(options.wire)
    this.referee = new Referee(options.wire)
    let graph: RefereeGraph | undefined
    this.graph = () => {
      if (graph == null) {
        const bytes = encodeModel(model)
        graph = { hash: stageHash(bytes), bytes }
      }
      return graph
    }
    this.hedge = options.hedge == null || options.hedge === false ? undefined : { ...DEFAULT_HEDGE, ...(options.hedge === true ? {} : options.hedge) }
    this.heartbeat = new Heartbeat(coordinator.node, {
      ...options.liveness,
      jobs: () => this.workers.filter((w) => w.live).map((w) => w.pipeline.jobId),
      onDown: (peer, why) => { for (const w of this.workers) if (w.peer.id === peer) this.markDown(w, why) }
    })
    for (const w of workers) this.heartbeat.watch(w.peer.id)
    this.unsubscribe = coordinator.onJoin((peer) => { this.admit(peer) })
  }

  static async open (coordinator: Coordinator, model: ModelProto, dag: Dag, peers: PeerInfo[], options: ScatterOptions = {}): Promise<Scatter> {
    const speeds = peers.map((p) => p.capabilities.speed).sort((a, b) => a - b)
    const median = speeds[speeds.length >> 1] || 1
    const opened = await Promise.allSettled(peers.map(async (peer) => openWorker(coordinator, model, dag, peer, median, options)))
    const workers = opened.flatMap((r) => r.status === 'fulfilled' ? [r.value] : [])
    const failed = opened.flatMap((r, i) => r.status === 'rejected' ? [{ peer: peers[i].id, error: toLumiereError(r.reason, 'PEER_ERROR') }] : [])
    if (workers.length === 0) throw failed[0]?.error ?? new LumiereError('BAD_ARGUMENT', 'no peers to scatter tasks over')
    // A peer that cannot take the graph (gone since, out of memory) is left out; the others do its share.
    for (const f of failed) options.onReplan?.({ lost: [f.peer], joined: [], why: lossReason(f.error), peers: workers.length })
    return new Scatter(coordinator, workers, model, dag, median, options)
  }

  /** Tasks done per peer id since open (answers used; checks and lost hedges not counted). */
  counts (): Record<string, number> {
    const out: Record<string, number> = {}
    for (const w of this.workers) out[w.peer.id] = (out[w.peer.id] ?? 0) + w.done
    return out
  }

  /** What verification found so far. */
  verification (): VerifyReport {
    return this.ledger.report
  }

  /** Hedged copies sent, and how many of them answered first. */
  hedgeStats (): { sent: number, won: number } {
    return { ...this.hedges }
  }

  /** Resolves when nothing this scatter started (tasks, checks, referee runs) is in flight. */
  async settle (): Promise<void> {
    if (this.busy === 0) return
    await new Promise<void>((resolve) => { this.idle.push(resolve) })
  }

  /** Runs every task once, somewhere; outputs in task order. */
  async run (tasks: Array<Record<string, Tensor>>): Promise<Array<Record<string, Tensor>>> {
    if (tasks.length === 0) return []
    if (this.ledger.rollbackPending()) throw new RollbackError()
    const { signal, taskTimeoutMs } = this.options
    const step = this.ledger.step
    const states: Task[] = tasks.map((_, index) => ({ index, tried: new Set(), running: new Map(), hedged: false, status: 'pending', check: this.choose?.() === true, checked: false, checkTried: new Set(), version: 0 }))
    const pending: Task[] = [...states]
    const checks: Task[] = []
    let remaining = tasks.length
    let active = true
    let lastError: LumiereError | undefined
    let timer: ReturnType<typeof setTimeout> | undefined
    const { promise: finished, resolve, reject } = Promise.withResolvers<void>()

    const end = (err?: Error): void => {
      if (!active) return
      active = false
      this.wakers.delete(advance)
      clearTimeout(timer)
      for (const t of states) {
        for (const r of t.running.values()) r.abort.abort()
        t.checking?.abort.abort()
      }
      if (err != null) reject(err)
      else resolve()
    }
    const finish = (t: Task): void => {
      t.status = 'done'
      if (--remaining === 0) end()
    }
    const requeue = (t: Task): void => {
      t.status = 'pending'
      pending.unshift(t)
    }
    const aborted = (e: LumiereError): boolean => e.code === 'ABORTED' && signal?.aborted === true
    // Counts work in flight (for slots and settle()); when it settles, the run moves on.
    // The slot is free again before the outcome is handled, so whatever runs next sees it free.
    const track = <T>(w: Worker | undefined, work: Promise<T>, onDone: (value: T) => void | Promise<void>, onError: (err: unknown) => void): void => {
      if (w != null) w.inFlight++
      this.busy++
      const release = (): void => { if (w != null) w.inFlight-- }
      void work.then(async (value) => { release(); await onDone(value) }, (err: unknown) => { release(); onError(err) })
        .catch((err: unknown) => { end(toLumiereError(err, 'INTERNAL')) })
        .finally(() => {
          if (--this.busy === 0) for (const r of this.idle.splice(0)) r()
          // Work of an earlier run() (a lost hedge, an aborted check) may free a slot this run can use.
          for (const wake of [...this.wakers]) wake()
        })
    }

    const compute = (t: Task, w: Worker, hedge: boolean): void => {
      const abort = new AbortController()
      const started = performance.now()
      t.running.set(w, { started, abort })
      t.status = 'running'
      if (hedge) { t.hedged = true; this.hedges.sent++ }
      const runSignal = AbortSignal.any([abort.signal, w.down.signal, ...(signal != null ? [signal] : [])])
      track(w, w.pipeline.run(tasks[t.index], { signal: runSignal, timeoutMs: taskTimeoutMs }), (out) => {
        t.running.delete(w)
        if (!active || t.status !== 'running') return // lost the race, or the run is over
        if (w.liar) { // convicted while this was in flight: its answer is worthless
          t.tried.add(w)
          if (t.running.size === 0) requeue(t)
          return
        }
        this.noteDuration(performance.now() - started)
        for (const r of t.running.values()) r.abort.abort()
        if (hedge) this.hedges.won++
        t.result = out
        t.by = w
        w.done++
        if (t.check) {
          t.status = 'checking'
          checks.push(t)
        } else {
          finish(t)
        }
      }, (err: unknown) => {
        t.running.delete(w)
        if (!active || t.status !== 'running') return
        const e = toLumiereError(err, 'PEER_ERROR')
        if (aborted(e)) { end(e); return }
        if (!w.down.signal.aborted) lastError = e
        t.tried.add(w)
        if (PEER_GONE.has(e.code)) this.markDown(w, lossReason(e))
        if (t.running.size === 0) requeue(t)
      })
    }

    /** Convicts a peer: no more tasks for it, and its answers of this run redone. */
    const convict = (w: Worker, evidence: LiarEvidence): void => {
      w.live = false
      this.heartbeat.unwatch(w.peer.id)
      if (w.liar) return
      w.liar = true
      if (this.ledger.convict(evidence)) this.options.onLiar?.(evidence)
      for (const t of states) {
        for (const [o, r] of t.running) if (o === w) r.abort.abort()
        if (t.checking?.worker === w) t.checking.abort.abort()
        if (t.by === w && (t.status === 'checking' || t.status === 'done')) {
          if (t.status === 'done') remaining++
          const at = checks.indexOf(t)
          if (at >= 0) checks.splice(at, 1)
          t.checking?.abort.abort()
          t.checking = undefined
          t.version++
          t.result = undefined
          t.by = undefined
          t.checked = false
          t.tried.add(w)
          w.done--
          requeue(t)
        }
      }
      // Its unchecked answers of earlier steps may be in the sampler state: roll back.
      if (this.ledger.rollbackPending()) end(new RollbackError())
    }

    /** Judges a task's answer: against a second peer's (`second`), or the referee's alone. */
    const judge = async (t: Task, checker: Worker | undefined, second: Record<string, Tensor> | undefined): Promise<void> => {
      const version = t.version
      const by = t.by
      const claimed = t.result
      if (by == null || claimed == null) return
      this.ledger.report.checks++
      if (second != null) {
        if (compareOutputs(claimed, second, this.tolerance).match) { t.checked = true; finish(t); return }
        this.ledger.report.mismatches++
      }
      const trusted = await this.referee.run(this.graph(), tasks[t.index])
      if (!active || t.version !== version || t.status !== 'checking') return
      const verdict = (w: Worker, answer: Record<string, Tensor>, checkedBy: string): boolean => {
        const c = compareOutputs(trusted, answer, this.tolerance)
        if (!c.match) convict(w, { peer: w.peer.id, step, task: t.index, checkedBy, judge: 'coordinator', output: c.output, maxDiff: c.maxDiff, relative: c.relative, tolerance: this.tolerance })
        return c.match
      }
      if (checker != null && second != null) verdict(checker, second, by.peer.id)
      if (verdict(by, claimed, checker?.peer.id ?? 'coordinator')) { t.checked = true; finish(t) }
    }

    const check = (t: Task, w: Worker): void => {
      const version = t.version
      const abort = new AbortController()
      t.checking = { worker: w, abort }
      const runSignal = AbortSignal.any([abort.signal, w.down.signal, ...(signal != null ? [signal] : [])])
      track(w, w.pipeline.run(tasks[t.index], { signal: runSignal, timeoutMs: taskTimeoutMs }), async (out) => {
        if (t.checking?.worker === w) t.checking = undefined
        if (!active || t.version !== version || t.status !== 'checking') return
        if (w.liar) { t.checkTried.add(w); checks.unshift(t); return }
        await judge(t, w, out)
      }, (err: unknown) => {
        if (t.checking?.worker === w) t.checking = undefined
        if (!active || t.version !== version || t.status !== 'checking') return
        const e = toLumiereError(err, 'PEER_ERROR')
        if (aborted(e)) { end(e); return }
        t.checkTried.add(w)
        if (PEER_GONE.has(e.code)) this.markDown(w, lossReason(e))
        checks.unshift(t)
      })
    }

    /** A running task, old enough to hedge, that `w` may take. */
    const hedgeFor = (w: Worker, now: number): Task | undefined => {
      const threshold = this.hedgeThreshold()
      if (threshold == null) return undefined
      let best: Task | undefined
      let bestStart = Infinity
      for (const t of states) {
        if (t.status !== 'running' || t.hedged || t.running.has(w) || t.tried.has(w)) continue
        const started = Math.min(...[...t.running.values()].map((r) => r.started))
        if (now - started >= threshold && started < bestStart) { best = t; bestStart = started }
      }
      return best
    }

    /** Hands out work to every worker with a free slot; handles what no live peer can do. */
    const advance = (): void => {
      if (!active) return
      const live = this.workers.filter((w) => w.live)
      // A task no live peer may still try can never finish: fail now, not at some outer deadline.
      const stranded = pending.find((t) => !live.some((w) => !t.tried.has(w)))
      if (stranded != null) {
        const code = lastError?.code ?? 'PEER_LOST'
        const why = live.length === 0 && this.workers.some((w) => w.liar) ? 'every peer left is gone or was caught lying' : `last error: ${lastError?.message ?? 'none'}`
        end(new LumiereError(code, `task ${stranded.index} failed on every peer that is still up; ${why}`))
        return
      }
      // A check no other live peer can do: the referee checks it alone.
      for (const t of [...checks]) {
        if (live.some((w) => w !== t.by && !t.checkTried.has(w))) continue
        checks.splice(checks.indexOf(t), 1)
        t.checking = { worker: undefined, abort: new AbortController() }
        track(undefined, judge(t, undefined, undefined), () => { if (t.checking?.worker == null) t.checking = undefined }, (err) => { end(toLumiereError(err, 'INTERNAL')) })
      }
      const now = performance.now()
      for (const w of live) {
        while (active && w.live && w.inFlight < w.slots) {
          let at = pending.findIndex((t) => !t.tried.has(w))
          if (at >= 0) { compute(pending.splice(at, 1)[0], w, false); continue }
          at = checks.findIndex((t) => t.by !== w && !t.checkTried.has(w))
          if (at >= 0) { check(checks.splice(at, 1)[0], w); continue }
          const h = this.hedge != null && pending.length === 0 ? hedgeFor(w, now) : undefined
          if (h == null) break
          compute(h, w, true)
        }
      }
      rearm(live)
    }

    /** Wakes `advance` when the next running task crosses the hedge threshold while some peer has a free slot. */
    const rearm = (live: Worker[]): void => {
      clearTimeout(timer)
      timer = undefined
      const threshold = this.hedgeThreshold()
      if (threshold == null || !live.some((w) => w.inFlight < w.slots)) return
      let next = Infinity
      for (const t of states) {
        if (t.status !== 'running' || t.hedged) continue
        for (const r of t.running.values()) next = Math.min(next, r.started + threshold)
      }
      if (next === Infinity) return
      timer = setTimeout(advance, Math.max(1, next - performance.now() + 1))
    }

    this.wakers.add(advance)
    advance()
    try {
      await finished
    } catch (err) {
      if (err instanceof RollbackError) throw err
      throw toLumiereError(err, 'PEER_ERROR')
    }
    if (this.choose != null) for (const t of states) if (!t.checked && t.by != null) this.ledger.unchecked(t.by.peer.id, step)
    return states.map((t) => t.result as Record<string, Tensor>)
  }

  async close (): Promise<void> {
    this.closed = true
    this.unsubscribe()
    this.heartbeat.close()
    await Promise.allSettled(this.workers.map(async (w) => w.pipeline.close()))
    await this.referee.close()
  }

  /** Drops a peer found gone: no more tasks, and its tasks in flight go elsewhere now. */
  private markDown (w: Worker, why: string): void {
    if (!w.live) return
    w.live = false
    w.down.abort(new LumiereError('PEER_LOST', `peer ${w.peer.id} is down: ${why}`))
    this.heartbeat.unwatch(w.peer.id)
    this.options.onReplan?.({ lost: [w.peer.id], joined: [], why, peers: this.workers.filter((x) => x.live).length })
  }

  /** A peer joined (Coordinator.admit): it gets the graph and then takes tasks, from the run() under way on. */
  private admit (peer: PeerInfo): void {
    if (this.closed || this.joining.has(peer.id) || this.ledger.isConvicted(peer.id) || this.workers.some((w) => w.peer.id === peer.id && (w.live || w.liar))) return
    this.joining.add(peer.id)
    openWorker(this.coordinator, this.model, this.dag, peer, this.median, this.options).then((w) => {
      this.joining.delete(peer.id)
      if (this.closed) { void w.pipeline.close(); return }
      this.workers.push(w)
      this.heartbeat.watch(peer.id)
      this.options.onReplan?.({ lost: [], joined: [peer.id], peers: this.workers.filter((x) => x.live).length })
      for (const wake of [...this.wakers]) wake()
    }, (err: unknown) => {
      this.joining.delete(peer.id)
      const e = toLumiereError(err, 'PEER_ERROR')
      this.options.onWarning?.(`peer ${peer.id} joined, but the SSR graph could not be set up on it (${e.code}: ${e.message}); going on without it`)
    })
  }

  private noteDuration (ms: number): void {
    this.durations.push(ms)
    if (this.durations.length > DURATIONS_KEPT) this.durations.shift()
  }

  /** factor × the median task time so far, at least minMs; undefined before two tasks finished. */
  private hedgeThreshold (): number | undefined {
    if (this.hedge == null || this.durations.length < 2) return undefined
    const sorted = [...this.durations].sort((a, b) => a - b)
    return Math.max(this.hedge.minMs, this.hedge.factor * sorted[sorted.length >> 1])
  }
}

/** Sets the whole graph up on one peer, with task slots for its speed relative to the median peer's. */
async function openWorker (coordinator: Coordinator, model: ModelProto, dag: Dag, peer: PeerInfo, median: number, options: ScatterOptions): Promise<Worker> {
  const { pipeline } = await deploy(coordinator, model, dag, [peer], 1, options.signal, options.wire)
  const slots = Math.max(1, Math.min(MAX_SLOTS, Math.round(SLOTS_PER_MEDIAN_PEER * peer.capabilities.speed / median)))
  return { peer, pipeline, slots, inFlight: 0, live: true, liar: false, done: 0, down: new AbortController() }
}
