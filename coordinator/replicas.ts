import { LumiereError, toLumiereError } from '../src/errors.ts'
import { Pipeline } from './pipeline.ts'
import { firstToFinish } from './replication.ts'
import type { Inbox } from './inbox.ts'
import type { PipelineOptions, RunOptions, StageGraph } from './pipeline.ts'
import type { MeshNode } from '../src/mesh/node.ts'
import type { Tensor } from '../src/tensor/tensor.ts'

/**
 * Copies of the whole model on several peers (a 'replicated' plan,
 * coordinator/replication.ts), run like one pipeline: each forward pass
 * goes to the copy that would finish it first, counting the passes it
 * already has in flight and its estimated seconds per pass. Each copy is a
 * one-stage Pipeline of its own (its own job on its peer).
 */
export class Replicas {
  private readonly copies: Pipeline[]
  private readonly peers: string[]
  private readonly seconds: number[]
  /** Passes in flight, per copy. */
  private readonly running: number[]
  /** The peer of the last pass that passed its deadline. */
  private late: string | undefined

  private constructor (copies: Pipeline[], peers: string[], seconds: number[]) {
    this.copies = copies
    this.peers = peers
    this.seconds = seconds
    this.running = copies.map(() => 0)
  }

  /** Sets a copy up on the peer of each graph (stage i of a replicated plan), with `seconds[i]` its estimated seconds per pass. */
  static async open (node: MeshNode, inbox: Inbox, graphs: StageGraph[], seconds: number[], io: { inputs: string[], outputs: string[] }, options: PipelineOptions = {}): Promise<Replicas> {
    if (graphs.length === 0 || seconds.length !== graphs.length) throw new LumiereError('INTERNAL', 'replicas need one graph and one speed per copy')
    const opened = await Promise.allSettled(graphs.map(async (g) => Pipeline.open(node, inbox, [{ ...g, index: 0 }], io, options)))
    const copies = opened.flatMap((o) => o.status === 'fulfilled' ? [o.value] : [])
    const failed = opened.find((o) => o.status === 'rejected')
    if (failed != null) {
      await Promise.allSettled(copies.map(async (c) => c.close()))
      throw failed.reason
    }
    return new Replicas(copies, graphs.map((g) => g.peer), seconds)
  }

  /** The copies' job ids on their peers. */
  get jobIds (): string[] {
    return this.copies.map((c) => c.jobId)
  }

  /** One forward pass, on the copy that would finish it first. */
  async run (inputs: Record<string, Tensor>, options: RunOptions = {}): Promise<Record<string, Tensor>> {
    return (await this.runTracked(inputs, options)).outputs
  }

  /** As run, also saying which copy (stage i of the plan) answered: verification checks that copy's answer. */
  async runTracked (inputs: Record<string, Tensor>, options: RunOptions = {}): Promise<{ outputs: Record<string, Tensor>, copy: number }> {
    // The rule replication.ts replicaLoads prices, applied to the passes in flight.
    const best = firstToFinish(this.running, this.seconds)
    this.running[best]++
    try {
      return { outputs: await this.copies[best].run(inputs, options), copy: best }
    } catch (err) {
      if (toLumiereError(err).code === 'DEADLINE_EXCEEDED') this.late = this.peers[best]
      throw err
    } finally {
      this.running[best]--
    }
  }

  /** The peer of the last pass that passed its deadline: where it is stuck. */
  latePeer (): string | undefined {
    return this.late
  }

  /** Compute time of each copy so far, as stage i of the plan. */
  async stats (options: { signal?: AbortSignal } = {}): Promise<Array<{ index: number, runs: number, busyMs: number }>> {
    const rows = await Promise.all(this.copies.map(async (c) => c.stats(options)))
    return rows.map((r, index) => ({ index, runs: r.reduce((n, s) => n + s.runs, 0), busyMs: r.reduce((n, s) => n + s.busyMs, 0) }))
  }

  async close (): Promise<void> {
    await Promise.allSettled(this.copies.map(async (c) => c.close()))
  }
}
