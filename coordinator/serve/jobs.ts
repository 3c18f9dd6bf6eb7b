/**
 * The job queue of `lumiere serve`: jobs run one at a time in submission
 * order. Each job moves queued → running → done | failed | cancelled; a
 * queued job can be cancelled (removed from the queue), a running one is
 * aborted through its AbortSignal and the queue waits for it to stop before
 * starting the next. Progress, the pipeline plan and a per-stage timeline
 * (busy share of each denoising step) are kept on the job and announced
 * through `emit` as they happen.
 */
import { randomBytes } from 'node:crypto'
import { LumiereError, toLumiereError } from '../../src/errors.ts'
import { summarisePlan } from './plan-summary.ts'
import type { PlanSummary } from './plan-summary.ts'
import type { JobParams } from './schema.ts'
import type { StepProgress } from '../generate.ts'
import type { Plan } from '../plan.ts'

export type JobState = 'queued' | 'running' | 'done' | 'failed' | 'cancelled'
export type JobPhase = 'starting' | 'base' | 'ssr' | 'encoding'

/** One base-model step of one job: [t0, t1] in ms since the job's mesh session began; busy[i] = share of it stage i computed. */
export interface BaseSegment {
  step: number
  t0: number
  t1: number
  busy: number[]
}

export interface SsrSegment {
  step: number
  t0: number
  t1: number
}

export interface Timeline {
  /** Ms from the start of the mesh session to the first base step (deploying stages to peers). */
  deployMs?: number
  base: BaseSegment[]
  ssr: SsrSegment[]
  /** Cumulative share of the base phase each stage spent computing. */
  utilisation: number[]
}

export interface JobResult {
  /** Files on disk, one MP4 per sample. */
  files: string[]
  fps: number
  frames: number
  width: number
  height: number
  seconds: number
  secondsPerStep: number
  utilisation: number[]
  plan: Plan
}

export interface JobHooks {
  signal: AbortSignal
  /** Called once the runner knows whether the SSR phase will run (for the progress fraction). */
  onStart: (info: { ssr: boolean }) => void
  onStep: (progress: StepProgress) => void
  onPhase: (phase: JobPhase) => void
  onWarning: (message: string) => void
}

export type JobRunner = (job: { id: string, params: JobParams }, hooks: JobHooks) => Promise<JobResult>

export interface JobError {
  code: string
  message: string
}

interface Job {
  id: string
  params: JobParams
  state: JobState
  progress: number
  phase: JobPhase | null
  step: number
  steps: number
  ssr: boolean
  error?: JobError
  warnings: string[]
  createdAt: Date
  startedAt?: Date
  finishedAt?: Date
  plan?: PlanSummary
  planKey?: string
  timeline: Timeline
  result?: JobResult
  controller?: AbortController
  settled?: Promise<void>
  /** Cumulative busy ms per stage at the last base step (timeline bookkeeping). */
  busyMs: number[]
  phaseMs: number
}

/** What GET /api/jobs/:id answers. */
export interface JobView {
  id: string
  state: JobState
  progress: number
  phase: JobPhase | null
  step: number
  steps: number
  error?: JobError
  warnings?: string[]
  createdAt: string
  startedAt?: string
  finishedAt?: string
  params: JobParams
  plan?: PlanSummary
  timeline?: Timeline
  /** The JobResult as served: URLs instead of file paths; the plan is `plan` above. */
  result?: Omit<JobResult, 'files' | 'plan'> & { urls: string[] }
}

export interface JobQueueOptions {
  run: JobRunner
  emit: (event: string, data: unknown) => void
  /** Called when a finished job's result is no longer needed (evicted or cancelled late): delete its files. */
  discard?: (result: JobResult) => void | Promise<void>
  /** Queued jobs beyond this are refused (QUEUE_FULL). */
  maxQueued?: number
  /** Finished jobs kept (with their results); older ones are forgotten. */
  maxFinished?: number
  /** How long DELETE waits for a running job to stop. */
  cancelWaitMs?: number
}

export class QueueFullError extends Error {}

const round = (x: number, digits = 4): number => Number(x.toFixed(digits))

/** What identifies a plan for display: which peer holds which stage, and the route. */
function planKey (plan: Plan): string {
  return `${plan.stages.map((s) => s.peer).join(',')}|${plan.route.join(',')}`
}

export class JobQueue {
  private readonly jobs = new Map<string, Job>()
  private readonly queue: Job[] = []
  private running: Job | undefined
  private closed = false
  private readonly options: Required<Omit<JobQueueOptions, 'discard'>> & Pick<JobQueueOptions, 'discard'>

  constructor (options: JobQueueOptions) {
    this.options = { maxQueued: 100, maxFinished: 200, cancelWaitMs: 10_000, ...options }
  }

  submit (params: JobParams): JobView {
    if (this.closed) throw new LumiereError('ABORTED', 'the server is shutting down')
    if (this.queue.length >= this.options.maxQueued) throw new QueueFullError(`${this.queue.length} jobs are already queued; try again later`)
    const job: Job = {
      id: randomBytes(8).toString('hex'),
      params,
      state: 'queued',
      progress: 0,
      phase: null,
      step: 0,
      steps: params.steps,
      ssr: params.ssr ?? false,
      warnings: [],
      createdAt: new Date(),
      timeline: { base: [], ssr: [], utilisation: [] },
      busyMs: [],
      phaseMs: 0
    }
    this.jobs.set(job.id, job)
    this.queue.push(job)
    this.changed(job)
    void this.pump()
    return this.view(job)
  }

  get (id: string, detail = true): JobView | undefined {
    const job = this.jobs.get(id)
    return job == null ? undefined : this.view(job, detail)
  }

  /** Newest first, without timelines. */
  list (): JobView[] {
    return [...this.jobs.values()].reverse().map((j) => this.view(j, false))
  }

  /** The running job, else the newest job. */
  current (): JobView | undefined {
    const job = this.running ?? [...this.jobs.values()].pop()
    return job == null ? undefined : this.view(job)
  }

  /** The plan of the running job, else of the newest job that has one. */
  currentPlan (): { jobId: string, plan: PlanSummary } | undefined {
    if (this.running?.plan != null) return { jobId: this.running.id, plan: this.running.plan }
    const job = [...this.jobs.values()].reverse().find((j) => j.plan != null)
    return job?.plan == null ? undefined : { jobId: job.id, plan: job.plan }
  }

  resultFile (id: string, sample: number): { state: JobState, file?: string, samples?: number } | undefined {
    const job = this.jobs.get(id)
    if (job == null) return undefined
    return { state: job.state, file: job.result?.files[sample], samples: job.result?.files.length }
  }

  /**
   * Cancels a job: a queued one leaves the queue; a running one is aborted
   * and this waits (up to cancelWaitMs) until it has stopped. 'finished'
   * when it is already done or failed; undefined when unknown.
   */
  async cancel (id: string): Promise<JobView | 'finished' | undefined> {
    const job = this.jobs.get(id)
    if (job == null) return undefined
    if (job.state === 'done' || job.state === 'failed') return 'finished'
    if (job.state === 'queued') {
      this.queue.splice(this.queue.indexOf(job), 1)
      this.finish(job, 'cancelled')
    } else if (job.state === 'running') {
      job.state = 'cancelled'
      job.controller?.abort(new LumiereError('ABORTED', 'the job was cancelled'))
      this.changed(job)
      if (job.settled != null) await Promise.race([job.settled, new Promise((resolve) => setTimeout(resolve, this.options.cancelWaitMs).unref())])
    }
    return this.view(job)
  }

  /** Refuses new jobs, cancels queued ones and aborts the running one. */
  async close (): Promise<void> {
    this.closed = true
    for (const job of this.queue.splice(0)) this.finish(job, 'cancelled')
    const running = this.running
    if (running != null) await this.cancel(running.id)
  }

  private async pump (): Promise<void> {
    if (this.running != null) return
    for (let job = this.queue.shift(); job != null; job = this.queue.shift()) {
      this.running = job
      job.settled = this.runJob(job)
      await job.settled
      this.running = undefined
    }
  }

  private async runJob (job: Job): Promise<void> {
    job.controller = new AbortController()
    job.state = 'running'
    job.phase = 'starting'
    job.startedAt = new Date()
    this.changed(job)
    const hooks: JobHooks = {
      signal: job.controller.signal,
      onStart: ({ ssr }) => { job.ssr = ssr },
      onStep: (p) => {
        if (job.state !== 'running') return
        // generate() calls this from a promise callback: a throw here would be an unhandled rejection.
        try { this.step(job, p) } catch {}
      },
      onPhase: (phase) => {
        if (job.state !== 'running') return
        job.phase = phase
        this.progress(job)
      },
      onWarning: (message) => { if (job.warnings.length < 20) job.warnings.push(message) }
    }
    try {
      const result = await this.options.run({ id: job.id, params: job.params }, hooks)
      if (job.state !== 'running') {
        // Cancelled just as it finished: the result is not wanted.
        await this.options.discard?.(result)
        this.finish(job, 'cancelled')
      } else {
        job.result = result
        if (result.plan.stages.length > 0 && planKey(result.plan) !== job.planKey) this.setPlan(job, result.plan)
        job.timeline.utilisation = result.utilisation.map((u) => round(u))
        this.finish(job, 'done')
      }
    } catch (err) {
      if (job.state === 'running') {
        const e = toLumiereError(err)
        job.error = { code: e.code, message: e.message }
        this.finish(job, 'failed')
      } else {
        this.finish(job, job.state)
      }
    } finally {
      job.controller = undefined
    }
  }

  private step (job: Job, p: StepProgress): void {
    // The plan comes with each base step; it changes when the pipeline re-plans around a lost peer.
    if (p.plan != null && planKey(p.plan) !== job.planKey) this.setPlan(job, p.plan)
    let segment: BaseSegment | SsrSegment | undefined
    if (p.phase === 'base') {
      const last = job.timeline.base.at(-1)
      if (last != null && p.step <= last.step) return // late or repeated report
      // utilisation = busy / phase wall time; with phaseMs we recover busy ms per stage and so the busy share of this step alone.
      const phaseMs = p.phaseMs ?? p.elapsedMs
      job.timeline.deployMs ??= Math.max(0, p.elapsedMs - phaseMs)
      const offset = job.timeline.deployMs
      const busyMs = p.utilisation.map((u) => u * phaseMs)
      const dt = phaseMs - job.phaseMs
      const busy = busyMs.map((b, i) => dt > 0 ? Math.min(1, Math.max(0, (b - (job.busyMs[i] ?? 0)) / dt)) : 0)
      segment = { step: p.step, t0: round(offset + job.phaseMs, 1), t1: round(offset + phaseMs, 1), busy: busy.map((b) => round(b)) }
      job.timeline.base.push(segment)
      job.timeline.utilisation = p.utilisation.map((u) => round(u))
      job.busyMs = busyMs
      job.phaseMs = phaseMs
      if (job.phase === 'starting' || job.phase === 'base') { job.phase = 'base'; job.step = p.step; job.steps = p.steps }
    } else {
      const last = job.timeline.ssr.at(-1)
      if (last != null && p.step <= last.step) return
      job.ssr = true
      const t0 = last?.t1 ?? job.timeline.base.at(-1)?.t1 ?? 0
      segment = { step: p.step, t0: round(t0, 1), t1: round(p.elapsedMs, 1) }
      job.timeline.ssr.push(segment)
      if (job.phase !== 'encoding') { job.phase = 'ssr'; job.step = p.step; job.steps = p.steps }
    }
    this.progress(job, { segment, utilisation: job.timeline.utilisation, elapsedMs: round(p.elapsedMs, 1), stepPhase: p.phase })
  }

  private progress (job: Job, extra: Record<string, unknown> = {}): void {
    const total = job.params.steps * (job.ssr ? 2 : 1)
    const done = (job.timeline.base.at(-1)?.step ?? 0) + (job.timeline.ssr.at(-1)?.step ?? 0)
    // Encoding the MP4 is the last sliver; 1 only when the job is done.
    job.progress = Math.max(job.progress, job.phase === 'encoding' ? 0.99 : Math.min(0.98, done / total))
    this.options.emit('progress', { id: job.id, state: job.state, phase: job.phase, step: job.step, steps: job.steps, progress: round(job.progress), ...extra })
  }

  private setPlan (job: Job, plan: Plan): void {
    job.plan = summarisePlan(plan)
    job.planKey = planKey(plan)
    this.options.emit('plan', { jobId: job.id, plan: job.plan })
  }

  private finish (job: Job, state: JobState): void {
    job.state = state
    job.finishedAt = new Date()
    if (state === 'done') job.progress = 1
    this.changed(job)
    this.evict()
  }

  private changed (job: Job): void {
    this.options.emit('job', this.view(job, false))
  }

  /** Forgets the oldest finished jobs beyond maxFinished. */
  private evict (): void {
    const finished = [...this.jobs.values()].filter((j) => j.state !== 'queued' && j.state !== 'running')
    for (const job of finished.slice(0, Math.max(0, finished.length - this.options.maxFinished))) {
      this.jobs.delete(job.id)
      if (job.result != null) void this.options.discard?.(job.result)
    }
  }

  private view (job: Job, detail = true): JobView {
    const r = job.result
    return {
      id: job.id,
      state: job.state,
      progress: round(job.progress),
      phase: job.phase,
      step: job.step,
      steps: job.steps,
      ...(job.error != null ? { error: job.error } : {}),
      ...(job.warnings.length > 0 ? { warnings: job.warnings } : {}),
      createdAt: job.createdAt.toISOString(),
      ...(job.startedAt != null ? { startedAt: job.startedAt.toISOString() } : {}),
      ...(job.finishedAt != null ? { finishedAt: job.finishedAt.toISOString() } : {}),
      params: job.params,
      ...(job.plan != null ? { plan: job.plan } : {}),
      ...(detail ? { timeline: job.timeline } : {}),
      ...(r != null && job.state === 'done'
        ? {
            result: {
              urls: r.files.map((_, b) => `/api/jobs/${job.id}/result${b > 0 ? `?sample=${b}` : ''}`),
              fps: r.fps,
              frames: r.frames,
              width: r.width,
              height: r.height,
              seconds: round(r.seconds, 3),
              secondsPerStep: round(r.secondsPerStep, 3),
              utilisation: r.utilisation.map((u) => round(u))
            }
          }
        : {})
    }
  }
}
