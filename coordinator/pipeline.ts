import { randomUUID } from 'node:crypto'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { LumiereError } from '../src/errors.ts'
import { rpcCall } from '../protocol/rpc.ts'
import { narrowForWire, widenFromWire } from '../src/tensor/wire.ts'
import { routeStages } from './routes.ts'
import type { Inbox } from './inbox.ts'
import type { PlacedStage, Routes } from './routes.ts'
import type { MeshNode } from '../src/mesh/node.ts'
import type { Tensor } from '../src/tensor/tensor.ts'
import type { WireFormat } from '../src/tensor/wire.ts'

/** A stage's style (DESIGN §1): the safetensors bytes of the style tensors it uses, their hash, and α. */
export interface StageGraphStyle {
  hash: string
  alpha: number
  bytes: Uint8Array
}

export interface StageGraph extends PlacedStage {
  bytes: Uint8Array
  /** Stylized generation: the peer blends these weights into the stage graph. */
  style?: StageGraphStyle
}

/** What Pipeline.open sent: content hashes uploaded, each with the peer that lacked it. */
export interface Uploads {
  graphs: Array<{ peer: string, hash: string }>
  styles: Array<{ peer: string, hash: string }>
}

export interface PipelineOptions {
  signal?: AbortSignal
  /** How float32 tensors travel (default 'f32': bit-exact). */
  wire?: WireFormat
  /** Deadline for each control call (stage upload, setup). */
  callTimeoutMs?: number
}

export interface RunOptions {
  signal?: AbortSignal
  /** Deadline for the whole forward pass, inputs to outputs. */
  timeoutMs?: number
}

const DEFAULT_CALL_TIMEOUT_MS = 60_000
const DEFAULT_RUN_TIMEOUT_MS = 600_000

/**
 * A model's stages set up on peers for one job. `run` pushes the graph
 * inputs to the stages that read them; activations then travel peer to
 * peer, and only graph outputs come back here. Runs may overlap: that is
 * what keeps a pipeline's stages busy.
 */
export class Pipeline {
  readonly jobId = randomUUID()
  private readonly node: MeshNode
  private readonly inbox: Inbox
  private readonly stages: StageGraph[]
  private readonly routes: Routes
  private readonly graphInputs: string[]
  private readonly graphOutputs: string[]
  private readonly wire: WireFormat
  /** Stage graphs and styles uploaded by open() (peers already holding one by hash are skipped). */
  readonly uploaded: Uploads = { graphs: [], styles: [] }
  private nextRun = 0

  private constructor (node: MeshNode, inbox: Inbox, stages: StageGraph[], graphInputs: string[], graphOutputs: string[], wire: WireFormat) {
    this.node = node
    this.wire = wire
    this.inbox = inbox
    this.stages = stages
    this.graphInputs = graphInputs
    this.graphOutputs = graphOutputs
    this.routes = routeStages(stages, graphInputs, graphOutputs)
    for (const routes of this.routes.byPeer.values()) {
      for (const r of routes) {
        const style = stages.find((s) => s.index === r.index)?.style
        if (style != null) r.style = { hash: style.hash, alpha: style.alpha }
      }
    }
  }

  /** Uploads stage graphs peers lack (by hash) and sets the job up on every peer. */
  static async open (node: MeshNode, inbox: Inbox, stages: StageGraph[], graph: { inputs: string[], outputs: string[] }, options: PipelineOptions = {}): Promise<Pipeline> {
    const p = new Pipeline(node, inbox, stages, graph.inputs, graph.outputs, options.wire ?? 'f32')
    const timeoutMs = options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS
    const call = { signal: options.signal, timeoutMs }
    // One upload per (peer, kind, hash), even when two stages share bytes.
    const items = new Map<string, { peer: string, kind: 'graph' | 'style', hash: string, bytes: Uint8Array }>()
    for (const s of stages) {
      items.set(`${s.peer}/graph/${s.hash}`, { peer: s.peer, kind: 'graph', hash: s.hash, bytes: s.bytes })
      if (s.style != null) items.set(`${s.peer}/style/${s.style.hash}`, { peer: s.peer, kind: 'style', hash: s.style.hash, bytes: s.style.bytes })
    }
    await Promise.all([...items.values()].map(async ({ peer, kind, hash, bytes }) => {
      const target = p.target(peer)
      // Graphs keep the original request shape (no `kind`), which every peer understands.
      const body = kind === 'graph' ? { hash } : { hash, kind }
      const { body: has } = await rpcCall(node, target, 'stage.has', body, call)
      if (has.present !== true) {
        await rpcCall(node, target, 'stage.put', body, { ...call, tensors: { model: { dtype: 'U8', shape: [bytes.byteLength], data: bytes } } })
        const list = kind === 'graph' ? p.uploaded.graphs : p.uploaded.styles
        list.push({ peer, hash })
      }
    }))
    inbox.open(p.jobId, stages.map((s) => s.peer))
    try {
      await Promise.all([...p.routes.byPeer].map(async ([peer, routes]) => {
        await rpcCall(node, p.target(peer), 'job.setup', { jobId: p.jobId, stages: routes, coordinator: node.peerId.toString(), wire: p.wire, peers: [...p.routes.byPeer.keys()] }, call)
      }))
    } catch (err) {
      await p.close()
      throw err
    }
    return p
  }

  /** One forward pass over the mesh. */
  async run (inputs: Record<string, Tensor>, options: RunOptions = {}): Promise<Record<string, Tensor>> {
    const runId = String(this.nextRun++)
    const timeoutMs = options.timeoutMs ?? DEFAULT_RUN_TIMEOUT_MS
    const signal = AbortSignal.any([AbortSignal.timeout(timeoutMs), ...(options.signal != null ? [options.signal] : [])])
    const direct = Object.fromEntries(this.graphOutputs.filter((n) => this.graphInputs.includes(n)).map((n) => [n, inputs[n]]))
    const expected = this.graphOutputs.filter((n) => direct[n] == null)
    const done = this.inbox.expect(this.jobId, runId, expected, signal, timeoutMs)
    done.catch(() => {})
    await Promise.all([...this.routes.feeds].map(async ([stage, names]) => {
      const s = this.stages.find((x) => x.index === stage)
      if (s == null) throw new LumiereError('INTERNAL', `no stage ${stage}`)
      const tensors = Object.fromEntries(names.map((n) => [n, narrowForWire(inputs[n], this.wire)]))
      await rpcCall(this.node, this.target(s.peer), 'run.push', { jobId: this.jobId, runId, stage }, { tensors, signal, timeoutMs })
    })).catch((err: unknown) => {
      this.inbox.fail(this.jobId, runId, err)
    })
    return { ...direct, ...widenFromWire(await done, this.wire) }
  }

  /** Compute time each stage has spent on this job so far, as its peer measured it. */
  async stats (options: { signal?: AbortSignal } = {}): Promise<Array<{ index: number, runs: number, busyMs: number }>> {
    const replies = await Promise.all([...this.routes.byPeer.keys()].map(async (peer) => {
      const { body } = await rpcCall(this.node, this.target(peer), 'job.stats', { jobId: this.jobId }, { signal: options.signal, timeoutMs: 10_000 })
      return body.stages
    }))
    return replies.flat().sort((a, b) => a.index - b.index)
  }

  /** Content hashes of the stage graphs, in stage order. */
  stageHashes (): string[] {
    return this.stages.map((s) => s.hash)
  }

  async close (): Promise<void> {
    this.inbox.close(this.jobId)
    await Promise.allSettled([...this.routes.byPeer.keys()].map(async (peer) => {
      await rpcCall(this.node, this.target(peer), 'job.close', { jobId: this.jobId }, { timeoutMs: 5_000 })
    }))
  }

  private target (peer: string) {
    const s = this.stages.find((x) => x.peer === peer)
    if (s != null && s.addrs.length > 0) return s.addrs.map((a) => multiaddr(a))
    return peerIdFromString(peer)
  }
}
