import { encodeModel } from '../src/onnx/model-io.ts'
import { extractStage } from '../src/onnx/extract.ts'
import { graphInputs, graphOutputs } from './check-inputs.ts'
import { measureLinks, withLinks } from './links.ts'
import { partition } from './partition.ts'
import { Pipeline } from './pipeline.ts'
import { Replicas } from './replicas.ts'
import { planForStep } from './replication.ts'
import { stageHash, styleHash } from '../peer/stage-cache.ts'
import { checkAlpha, checkStyle, styleSubset } from '../src/model/style.ts'
import { encodeSafetensors } from '../src/tensor/safetensors.ts'
import type { Style } from '../src/model/style.ts'
import type { Coordinator, PeerInfo } from './coordinator.ts'
import type { LinkMatrix } from './links.ts'
import type { Plan, PeerCapacity } from './plan.ts'
import type { Placement } from './partition.ts'
import type { StageGraph } from './pipeline.ts'
import type { Dag } from '../src/onnx/dag.ts'
import type { ModelProto } from '../src/onnx/proto.ts'
import type { WireFormat } from '../src/tensor/wire.ts'

export interface Deployment {
  plan: Plan
  pipeline: Pipeline
  /** The measured links the plan was made with (empty when not measured). */
  links: LinkMatrix
}

/** A deployment for steps of several passes: a pipeline, or Replicas for a 'replicated' plan. */
export interface StepDeployment extends Omit<Deployment, 'pipeline'> {
  pipeline: Pipeline | Replicas
  /** The stage graphs as placed (a copy's is the whole model): verification runs them again elsewhere. */
  graphs: StageGraph[]
}

export interface DeployOptions {
  /** 'folded' puts each encoder level with its mirror decoder level on one peer (U-Net skips stay local); default contiguous. */
  placement?: Placement
  /** Bottleneck slack allowed for fewer wire bytes (partition.ts; default 0.1). */
  balance?: number
  /**
   * Stylized generation (DESIGN §1): each peer blends the style into the
   * spatial weights of its stages, α·W_style + (1 − α)·W_orig. Each stage
   * gets (once per peer, by content hash) only the style tensors it uses.
   */
  style?: Style
  /**
   * Measure the links among the peers (coordinator/links.ts; once per pair
   * per coordinator) and plan with them. Default true; only with K >= 2
   * stages, since one stage sends nothing peer to peer.
   */
  measureLinks?: boolean
  /** Bytes per link probe (default links.ts DEFAULT_PROBE_BYTES). */
  probeBytes?: number
}

/** What the planner knows of a peer: its free memory and measured speed (GFLOP/s → FLOP/s); links.ts withLinks adds its links. */
export function peerCapacity (p: PeerInfo): PeerCapacity {
  return { id: p.id, memoryBytes: p.capabilities.freeMemoryBytes, speed: Math.max(p.capabilities.speed, 1e-3) * 1e9 }
}

/**
 * Cuts each plan stage out of the model as a standalone graph, addressed by
 * hash. With a style, each stage also carries the style tensors that name
 * its initializers (as safetensors bytes, addressed by hash); a stage using
 * none runs unstyled.
 */
export function buildStages (model: ModelProto, dag: Dag, plan: Plan, peers: PeerInfo[], options: DeployOptions = {}): StageGraph[] {
  const { style } = options
  if (style != null) {
    checkAlpha(style.alpha)
    checkStyle(model, style.tensors)
  }
  // A replicated plan's stages are one graph: cut and hash it once.
  const cut = new Map<string, { stage: ReturnType<typeof extractStage>, bytes: Uint8Array, hash: string }>()
  return plan.stages.map((s) => {
    const key = s.nodes.join(',')
    let c = cut.get(key)
    if (c == null) {
      const stage = extractStage(model, dag, s.nodes)
      const bytes = encodeModel(stage.model)
      c = { stage, bytes, hash: stageHash(bytes) }
      cut.set(key, c)
    }
    const { stage, bytes, hash } = c
    const peer = peers.find((p) => p.id === s.peer)
    const graph: StageGraph = { index: s.index, hash, bytes, peer: s.peer, addrs: peer?.addrs ?? [], inputs: stage.inputs, outputs: stage.outputs, estimatedBytes: s.paramBytes + s.peakActivationBytes }
    if (style != null) {
      const subset = styleSubset(stage.model, style.tensors)
      if (Object.keys(subset).length > 0) {
        const styleBytes = encodeSafetensors(subset)
        graph.style = { hash: styleHash(styleBytes), alpha: style.alpha, bytes: styleBytes }
      }
    }
    return graph
  })
}

/** Measures the links among the peers (unless options say not to), plans the model over them, cuts the stages and sets them up as a pipeline. */
export async function deploy (coordinator: Coordinator, model: ModelProto, dag: Dag, peers: PeerInfo[], stages: number, signal?: AbortSignal, wire?: WireFormat, options: DeployOptions = {}): Promise<Deployment> {
  const { capacities, links } = await measured(coordinator, peers, stages, signal, options)
  const plan = partition(dag, capacities, { stages, placement: options.placement, balance: options.balance })
  const pipeline = await Pipeline.open(coordinator.node, coordinator.inbox, buildStages(model, dag, plan, peers, options), modelIo(model), { signal, wire })
  return { plan, pipeline, links }
}

/**
 * As deploy, for steps of `microBatches` forward passes in flight together
 * (samples × guidance branches): the plan is the pipeline of `stages` or
 * copies of the whole model on several peers (Replicas), whichever the
 * cost model says finishes a step sooner (replication.ts planForStep).
 */
export async function deployForStep (coordinator: Coordinator, model: ModelProto, dag: Dag, peers: PeerInfo[], stages: number, microBatches: number, signal?: AbortSignal, wire?: WireFormat, options: DeployOptions = {}): Promise<StepDeployment> {
  const planOptions = { stages, placement: options.placement, balance: options.balance, microBatches }
  // Links only add to a pipeline's time: when copies or one peer win without them, they win with them, and nothing is probed.
  let plan = planForStep(dag, peers.map(peerCapacity), planOptions)
  let links: LinkMatrix = {}
  if (plan.placement !== 'replicated' && plan.stages.length > 1) {
    const m = await measured(coordinator, peers, stages, signal, options)
    links = m.links
    plan = planForStep(dag, m.capacities, planOptions)
  }
  const graphs = buildStages(model, dag, plan, peers, options)
  const pipeline = plan.placement === 'replicated'
    ? await Replicas.open(coordinator.node, coordinator.inbox, graphs, plan.stages.map((s) => s.estSeconds), modelIo(model), { signal, wire })
    : await Pipeline.open(coordinator.node, coordinator.inbox, graphs, modelIo(model), { signal, wire })
  return { plan, pipeline, links, graphs }
}

/** The peers as the planner sees them, with their links measured unless options say not to (only with K >= 2 stages: one stage sends nothing peer to peer). */
async function measured (coordinator: Coordinator, peers: PeerInfo[], stages: number, signal: AbortSignal | undefined, options: DeployOptions): Promise<{ capacities: PeerCapacity[], links: LinkMatrix }> {
  const links = stages > 1 && peers.length > 1 && options.measureLinks !== false
    ? await measureLinks(coordinator, peers, { signal, ...(options.probeBytes != null ? { probeBytes: options.probeBytes } : {}) })
    : {}
  return { capacities: peers.map((p) => withLinks(peerCapacity(p), links)), links }
}

function modelIo (model: ModelProto): { inputs: string[], outputs: string[] } {
  return { inputs: graphInputs(model).map((i) => i.name), outputs: graphOutputs(model) }
}
