import { peerIdFromString } from '@libp2p/peer-id'
import { LumiereError, toLumiereError } from '../src/errors.ts'
import { rpcCall } from '../protocol/rpc.ts'
import { deploy } from './deploy.ts'
import type { Coordinator, PeerInfo } from './coordinator.ts'
import type { Pipeline, RunOptions } from './pipeline.ts'
import type { Plan } from './plan.ts'
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
}

/**
 * A pipeline that survives peers dying: when a run fails because a peer is
 * gone, the peers are pinged, the dead ones dropped, the model re-planned and
 * placed on the rest (a peer may hold several stages), and the failed run —
 * only that run — is sent again. Forward passes are bit-exact whatever the
 * plan, so the result equals an undisturbed run.
 */
export class ResilientPipeline {
  private readonly coordinator: Coordinator
  private readonly model: ModelProto
  private readonly dag: Dag
  private readonly options: ResilientOptions
  private peers: PeerInfo[]
  private current: Promise<{ plan: Plan, pipeline: Pipeline }>
  private generation = 0
  private replanning: Promise<void> | undefined

  constructor (coordinator: Coordinator, model: ModelProto, dag: Dag, peers: PeerInfo[], options: ResilientOptions) {
    this.coordinator = coordinator
    this.model = model
    this.dag = dag
    this.peers = peers
    this.options = options
    this.current = this.deploy()
  }

  async plan (): Promise<Plan> {
    return (await this.current).plan
  }

  async run (inputs: Record<string, Tensor>, options: RunOptions = {}): Promise<Record<string, Tensor>> {
    for (;;) {
      const generation = this.generation
      const { pipeline } = await this.current
      try {
        return await pipeline.run(inputs, options)
      } catch (err) {
        const e = toLumiereError(err, 'PEER_ERROR')
        if (!PEER_FAILURES.has(e.code)) throw e
        await this.replan(generation, e)
      }
    }
  }

  async stats (): Promise<Array<{ index: number, runs: number, busyMs: number }>> {
    return (await this.current).pipeline.stats({ signal: this.options.signal })
  }

  async close (): Promise<void> {
    await (await this.current.catch(() => undefined))?.pipeline.close()
  }

  private async deploy (): Promise<{ plan: Plan, pipeline: Pipeline }> {
    return deploy(this.coordinator, this.model, this.dag, this.peers, Math.min(this.options.stages, this.peers.length), this.options.signal, this.options.wire, { style: this.options.style })
  }

  /** Runs that failed in the same generation share one re-plan. */
  private async replan (generation: number, cause: LumiereError): Promise<void> {
    if (generation !== this.generation) return
    this.replanning ??= (async () => {
      const alive = await Promise.all(this.peers.map(async (p) => this.ping(p)))
      const lost = this.peers.filter((_, i) => !alive[i]).map((p) => p.id)
      if (lost.length === 0) throw cause
      this.peers = this.peers.filter((_, i) => alive[i])
      if (this.peers.length === 0) throw new LumiereError('PEER_LOST', `every peer is gone (last error: ${cause.message}); start peers and run again`)
      const old = this.current
      this.generation++
      this.current = this.deploy()
      void old.then(async ({ pipeline }) => pipeline.close(), () => {})
      await this.current
      this.options.onReplan?.({ lost, peers: this.peers.length, stages: (await this.current).plan.stages.length })
    })().finally(() => { this.replanning = undefined })
    await this.replanning
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
