import { setTimeout as wait } from 'node:timers/promises'
import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import { LumiereError, isErrorCode } from '../src/errors.ts'
import type { Tensor } from '../src/tensor/tensor.ts'
import type { WorkerCall, WorkerReply, WorkerStyle } from './worker-messages.ts'

type Pending = { resolve: (reply: WorkerReply & { ok: true }) => void, reject: (err: Error) => void }

export interface ExecutorOptions {
  /** Execution providers in preference order, e.g. ['cuda', 'cpu']. */
  providers?: string[]
  /** ORT intra-op threads (default: every core). */
  threads?: number
  /** Test and demo option: make every run take this many times as long. */
  throttle?: number
}

export interface RunResult {
  outputs: Record<string, Tensor>
  ms: number
}

/**
 * The event-loop side of one ORT worker thread. Runs are queued by the
 * worker, one at a time, so a peer's stages never fight over cores.
 */
export class Executor {
  private readonly worker: Worker
  private readonly pending = new Map<number, Pending>()
  private readonly options: Required<ExecutorOptions>
  private nextId = 0
  private failure: Error | undefined

  constructor (options: ExecutorOptions = {}) {
    this.options = { providers: options.providers ?? ['cpu'], threads: options.threads ?? availableParallelism(), throttle: options.throttle ?? 1 }
    this.worker = new Worker(new URL('./ort-worker.ts', import.meta.url))
    this.worker.on('message', (reply: WorkerReply) => { this.settle(reply) })
    this.worker.on('error', (err) => { this.failAll(new LumiereError('INTERNAL', `ORT worker crashed: ${err.message}`)) })
    this.worker.on('exit', (code) => { this.failAll(new LumiereError('INTERNAL', `ORT worker exited with code ${code}`)) })
  }

  /**
   * Loads a graph under `key` (once: a key already loaded is kept). With
   * `style`, the worker first blends the graph's covered spatial weights
   * (src/model/style.ts blendInitializers; BAD_ARGUMENT when the style does
   * not fit the graph).
   */
  async load (key: string, model: Uint8Array, options: { style?: WorkerStyle } = {}): Promise<void> {
    await this.call({ op: 'load', key, model, providers: this.options.providers, threads: this.options.threads, ...(options.style != null ? { style: options.style } : {}) })
  }

  /**
   * Runs a loaded graph. With `transfer`, feeds that own their whole buffer
   * move to the worker instead of being copied, and are unusable here after.
   * With a throttle, the run is slowed to throttle× its time; `paced: false`
   * only reports that time (the speed figure, so a heavily throttled peer
   * still starts at once).
   */
  async run (key: string, feeds: Record<string, Tensor>, outputs: string[], options: { signal?: AbortSignal, transfer?: boolean, paced?: boolean } = {}): Promise<RunResult> {
    const { signal, transfer = false, paced = true } = options
    const reply = await this.call({ op: 'run', key, feeds, outputs }, transfer ? ownedBuffers(feeds) : [])
    const ms = reply.ms ?? 0
    if (paced && this.options.throttle > 1) {
      await wait(ms * (this.options.throttle - 1), undefined, { signal }).catch(() => { throw new LumiereError('ABORTED', 'run aborted') })
    }
    return { outputs: reply.outputs ?? {}, ms: ms * this.options.throttle }
  }

  /** True while no load, run or release is queued or running. */
  get idle (): boolean {
    return this.pending.size === 0
  }

  async release (key: string): Promise<void> {
    await this.call({ op: 'release', key })
  }

  async close (): Promise<void> {
    this.failure ??= new LumiereError('ABORTED', 'executor closed')
    await this.worker.terminate()
  }

  private async call (req: WorkerCall, transferList: ArrayBuffer[] = []): Promise<WorkerReply & { ok: true }> {
    if (this.failure != null) throw this.failure
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      this.worker.postMessage({ ...req, id }, transferList)
    })
  }

  private settle (reply: WorkerReply): void {
    const p = this.pending.get(reply.id)
    if (p == null) return
    this.pending.delete(reply.id)
    if (reply.ok) p.resolve(reply)
    else p.reject(new LumiereError(isErrorCode(reply.code) ? reply.code : 'STAGE_FAILED', reply.message))
  }

  private failAll (err: Error): void {
    this.failure ??= err
    for (const p of this.pending.values()) p.reject(this.failure)
    this.pending.clear()
  }
}

/** Buffers wholly owned by one tensor: safe to transfer without taking bytes another tensor views. */
function ownedBuffers (tensors: Record<string, Tensor>): ArrayBuffer[] {
  const seen = new Map<ArrayBufferLike, number>()
  for (const t of Object.values(tensors)) seen.set(t.data.buffer, (seen.get(t.data.buffer) ?? 0) + 1)
  return Object.values(tensors)
    .filter((t) => t.data.buffer instanceof ArrayBuffer && t.data.byteOffset === 0 && t.data.byteLength === t.data.buffer.byteLength && seen.get(t.data.buffer) === 1)
    .map((t) => t.data.buffer as ArrayBuffer)
}
