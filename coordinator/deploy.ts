import { encodeModel } from '../src/onnx/model-io.ts'
import { extractStage } from '../src/onnx/extract.ts'
import { graphInputs, graphOutputs } from './check-inputs.ts'
import { partition } from './partition.ts'
import { Pipeline } from './pipeline.ts'
import { stageHash } from '../peer/stage-cache.ts'
import type { Coordinator, PeerInfo } from './coordinator.ts'
import type { Plan, PeerCapacity } from './plan.ts'
import type { StageGraph } from './pipeline.ts'
import type { Dag } from '../src/onnx/dag.ts'
import type { ModelProto } from '../src/onnx/proto.ts'
import type { WireFormat } from '../src/tensor/wire.ts'

export interface Deployment {
  plan: Plan
  pipeline: Pipeline
}

/** What the planner knows of a peer: its free memory and measured speed (GFLOP/s → FLOP/s). */
export function peerCapacity (p: PeerInfo): PeerCapacity {
  return { id: p.id, memoryBytes: p.capabilities.freeMemoryBytes, speed: Math.max(p.capabilities.speed, 1e-3) * 1e9 }
}

/** Cuts each plan stage out of the model as a standalone graph, addressed by hash. */
export function buildStages (model: ModelProto, dag: Dag, plan: Plan, peers: PeerInfo[]): StageGraph[] {
  return plan.stages.map((s) => {
    const stage = extractStage(model, dag, s.nodes)
    const bytes = encodeModel(stage.model)
    const peer = peers.find((p) => p.id === s.peer)
    return { index: s.index, hash: stageHash(bytes), bytes, peer: s.peer, addrs: peer?.addrs ?? [], inputs: stage.inputs, outputs: stage.outputs }
  })
}

/** Plans the model over the peers, cuts the stages and sets them up as a pipeline. */
export async function deploy (coordinator: Coordinator, model: ModelProto, dag: Dag, peers: PeerInfo[], stages: number, signal?: AbortSignal, wire?: WireFormat): Promise<Deployment> {
  const plan = partition(dag, peers.map(peerCapacity), { stages })
  const graphs = buildStages(model, dag, plan, peers)
  const pipeline = await Pipeline.open(coordinator.node, coordinator.inbox, graphs, { inputs: graphInputs(model).map((i) => i.name), outputs: graphOutputs(model) }, { signal, wire })
  return { plan, pipeline }
}
