import { LumiereError, isErrorCode, toLumiereError } from '../src/errors.ts'
import { handleRpc } from '../protocol/rpc.ts'
import type { MeshNode } from '../src/mesh/node.ts'
import type { Tensor } from '../src/tensor/tensor.ts'

interface PendingRun {
  want: Set<string>
  got: Record<string, Tensor>
  resolve: (outputs: Record<string, Tensor>) => void
  reject: (err: LumiereError) => void
}

interface OpenJob {
  peers: Set<string>
  runs: Map<string, PendingRun>
}

/**
 * The coordinator's mailbox: graph outputs and failure reports pushed by
 * peers, matched to the run waiting for them. A peer that disconnects fails
 * every run of every job it serves at once, rather than at the deadline.
 */
export class Inbox {
  private readonly jobs = new Map<string, OpenJob>()

  private constructor () {}

  static async start (node: MeshNode): Promise<Inbox> {
    const inbox = new Inbox()
    await inbox.listen(node)
    return inbox
  }

  private async listen (node: MeshNode): Promise<void> {
    await handleRpc(node, {
      'run.push': async ({ body, tensors, from }) => {
        const run = this.run(body.jobId, body.runId, from.toString())
        for (const [name, t] of Object.entries(tensors)) {
          if (!run.want.has(name)) throw new LumiereError('PROTOCOL', `run ${body.runId} expects no output '${name}'`)
          run.got[name] = t
          run.want.delete(name)
        }
        if (run.want.size === 0) {
          this.jobs.get(body.jobId)?.runs.delete(body.runId)
          run.resolve(run.got)
        }
        return { body: { ok: true } }
      },
      'run.failed': async ({ body, from }) => {
        const run = this.run(body.jobId, body.runId, from.toString())
        this.jobs.get(body.jobId)?.runs.delete(body.runId)
        run.reject(new LumiereError(isErrorCode(body.code) ? body.code : 'PEER_ERROR', `stage ${body.stage} failed on peer ${from.toString()}: ${body.message}`))
        return { body: { ok: true } }
      }
    })
    node.addEventListener('peer:disconnect', (evt) => {
      const peer = evt.detail.toString()
      for (const [jobId, job] of this.jobs) {
        if (!job.peers.has(peer)) continue
        for (const runId of job.runs.keys()) {
          this.fail(jobId, runId, new LumiereError('PEER_LOST', `peer ${peer} disconnected during the run; check that it is still up, then run again`))
        }
      }
    })
  }

  open (jobId: string, peers: string[]): void {
    this.jobs.set(jobId, { peers: new Set(peers), runs: new Map() })
  }

  /** A promise for the named outputs of one run, failing at the deadline. */
  async expect (jobId: string, runId: string, names: string[], signal: AbortSignal, timeoutMs: number): Promise<Record<string, Tensor>> {
    const job = this.jobs.get(jobId)
    if (job == null) throw new LumiereError('INTERNAL', `job ${jobId} is not open`)
    if (names.length === 0) return {}
    const { promise, resolve, reject } = Promise.withResolvers<Record<string, Tensor>>()
    job.runs.set(runId, { want: new Set(names), got: {}, resolve, reject })
    const onAbort = (): void => {
      const timedOut = signal.reason instanceof DOMException && signal.reason.name === 'TimeoutError'
      this.fail(jobId, runId, timedOut
        ? new LumiereError('DEADLINE_EXCEEDED', `no output within ${Math.round(timeoutMs / 1000)} s; a peer may be stuck or too slow — check the peers or raise --timeout`)
        : new LumiereError('ABORTED', 'run aborted'))
    }
    signal.addEventListener('abort', onAbort, { once: true })
    try {
      return await promise
    } finally {
      signal.removeEventListener('abort', onAbort)
    }
  }

  fail (jobId: string, runId: string, err: unknown): void {
    const job = this.jobs.get(jobId)
    const run = job?.runs.get(runId)
    if (run == null) return
    job?.runs.delete(runId)
    run.reject(toLumiereError(err, 'PEER_ERROR'))
  }

  close (jobId: string): void {
    const job = this.jobs.get(jobId)
    if (job == null) return
    for (const runId of job.runs.keys()) this.fail(jobId, runId, new LumiereError('ABORTED', 'job closed'))
    this.jobs.delete(jobId)
  }

  private run (jobId: string, runId: string, from: string): PendingRun {
    const job = this.jobs.get(jobId)
    const run = job?.runs.get(runId)
    if (job == null || run == null) throw new LumiereError('STAGE_UNKNOWN', `no run ${runId} of job ${jobId} is waiting here`)
    if (!job.peers.has(from)) throw new LumiereError('PROTOCOL', `peer ${from} is not part of job ${jobId}`)
    return run
  }
}
