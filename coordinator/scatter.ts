import PQueue from 'p-queue'
import { LumiereError, toLumiereError } from '../src/errors.ts'
import { deploy } from './deploy.ts'
import type { Coordinator, PeerInfo } from './coordinator.ts'
import type { Pipeline } from './pipeline.ts'
import type { Dag } from '../src/onnx/dag.ts'
import type { ModelProto } from '../src/onnx/proto.ts'
import type { Tensor } from '../src/tensor/tensor.ts'
import type { WireFormat } from '../src/tensor/wire.ts'

export interface ScatterOptions {
  signal?: AbortSignal
  /** Deadline for one task on one peer; past it the task goes to another peer. */
  taskTimeoutMs?: number
  wire?: WireFormat
}

interface Worker {
  peer: PeerInfo
  pipeline: Pipeline
  queue: PQueue
  /** False once the peer failed in a way that says it is gone. */
  live: boolean
  done: number
}

/** Tasks in flight per peer, per unit of its speed relative to the median peer. */
const SLOTS_PER_MEDIAN_PEER = 2
const MAX_SLOTS = 4
/** Failures that mean the peer is gone, not that the task was bad. */
const PEER_GONE = new Set(['PEER_LOST', 'PEER_UNREACHABLE', 'DEADLINE_EXCEEDED', 'BUSY'])

/**
 * Data-parallel execution of one whole graph on many peers: every peer holds
 * the graph (sent once, cached by hash) and takes stateless tasks, inputs to
 * outputs. A peer pulls its next task when a slot frees up, so a faster peer
 * takes more; slots bound the tensors in flight per peer. A task that fails
 * or passes its deadline is sent again to another live peer.
 */
export class Scatter {
  private readonly workers: Worker[]
  private readonly options: ScatterOptions

  private constructor (workers: Worker[], options: ScatterOptions) {
    this.workers = workers
    this.options = options
  }

  static async open (coordinator: Coordinator, model: ModelProto, dag: Dag, peers: PeerInfo[], options: ScatterOptions = {}): Promise<Scatter> {
    const speeds = peers.map((p) => p.capabilities.speed).sort((a, b) => a - b)
    const median = speeds[speeds.length >> 1] || 1
    const workers = await Promise.all(peers.map(async (peer) => {
      const { pipeline } = await deploy(coordinator, model, dag, [peer], 1, options.signal, options.wire)
      const slots = Math.max(1, Math.min(MAX_SLOTS, Math.round(SLOTS_PER_MEDIAN_PEER * peer.capabilities.speed / median)))
      return { peer, pipeline, queue: new PQueue({ concurrency: slots }), live: true, done: 0 }
    }))
    return new Scatter(workers, options)
  }

  /** Tasks done per peer id since open. */
  counts (): Record<string, number> {
    return Object.fromEntries(this.workers.map((w) => [w.peer.id, w.done]))
  }

  /** Runs every task once, somewhere; outputs in task order. */
  async run (tasks: Array<Record<string, Tensor>>): Promise<Array<Record<string, Tensor>>> {
    const results: Array<Record<string, Tensor> | undefined> = new Array(tasks.length)
    const pending = tasks.map((_, i) => ({ index: i, tried: new Set<Worker>() }))
    const { promise: finished, resolve, reject } = Promise.withResolvers<void>()
    let remaining = tasks.length
    if (remaining === 0) return []

    // Gives a worker the next task it has not failed yet, if it has a free slot.
    const pump = (w: Worker): void => {
      while (w.live && w.queue.pending + w.queue.size < w.queue.concurrency) {
        const at = pending.findIndex((t) => !t.tried.has(w))
        if (at < 0) return
        const [task] = pending.splice(at, 1)
        void w.queue.add(async () => {
          try {
            results[task.index] = await w.pipeline.run(tasks[task.index], { signal: this.options.signal, timeoutMs: this.options.taskTimeoutMs })
            w.done++
            if (--remaining === 0) resolve()
          } catch (err) {
            const e = toLumiereError(err, 'PEER_ERROR')
            if (e.code === 'ABORTED') { reject(e); return }
            task.tried.add(w)
            if (PEER_GONE.has(e.code)) w.live = false
            pending.unshift(task)
            // A task no live peer may still try can never finish: fail now, not at some outer deadline.
            const stranded = pending.find((t) => !this.workers.some((o) => o.live && !t.tried.has(o)))
            if (stranded != null) { reject(new LumiereError(e.code, `task ${stranded.index} failed on every peer that is still up; last error: ${e.message}`)); return }
          }
          for (const o of this.workers) pump(o)
        })
      }
    }
    for (const w of this.workers) pump(w)
    await finished
    return results as Array<Record<string, Tensor>>
  }

  async close (): Promise<void> {
    await Promise.allSettled(this.workers.map(async (w) => w.pipeline.close()))
  }
}
