import { LumiereError } from '../src/errors.ts'
import { buildDagProbed } from '../src/onnx/graph.ts'
import { loadModel } from '../src/onnx/model-io.ts'
import { checkInputs } from './check-inputs.ts'
import { Coordinator } from './coordinator.ts'
import { deploy } from './deploy.ts'
import { startLocalMesh } from './local-mesh.ts'
import type { Plan } from './plan.ts'
import type { LocalMesh } from './local-mesh.ts'
import type { TransportName } from '../src/mesh/node.ts'
import type { Tensor } from '../src/tensor/tensor.ts'

export interface InferOptions {
  /** Multiaddrs of running peers. */
  peers?: string[]
  /** Start this many peer processes on loopback instead. */
  local?: number
  /** Stages to cut the model into (default: one per peer). */
  stages?: number
  transport?: TransportName
  timeoutMs?: number
  signal?: AbortSignal
  /** Extra arguments for local peers (tests). */
  localPeerArgs?: (i: number) => string[]
}

export interface InferResult {
  outputs: Record<string, Tensor>
  plan: Plan
}

/** Runs a model once over the mesh: plan, cut, place, push inputs, gather outputs. */
export async function inferOnMesh (modelPath: string, inputs: Record<string, Tensor>, options: InferOptions): Promise<InferResult> {
  if ((options.peers == null) === (options.local == null)) throw new LumiereError('BAD_ARGUMENT', 'give either --local K or --peers ADDR[,ADDR…]')
  const model = await loadModel(modelPath)
  const bindings = checkInputs(model, inputs)
  const dag = await buildDagProbed(model, { inputs, dims: bindings, inputShapes: Object.fromEntries(Object.entries(inputs).map(([n, t]) => [n, t.shape])) })
  let mesh: LocalMesh | undefined
  const coordinator = await Coordinator.start()
  try {
    if (options.local != null) {
      mesh = await startLocalMesh(options.local, { transport: options.transport, signal: options.signal, extraArgs: options.localPeerArgs })
    }
    const addrs = mesh != null ? mesh.peers.map((p) => pickAddr(p.addrs, options.transport ?? 'tcp')) : (options.peers ?? [])
    const peers = await coordinator.connect(addrs, { signal: options.signal })
    const { plan, pipeline } = await deploy(coordinator, model, dag, peers, options.stages ?? peers.length, options.signal)
    try {
      const outputs = await pipeline.run(inputs, { signal: options.signal, timeoutMs: options.timeoutMs })
      return { outputs, plan }
    } finally {
      await pipeline.close()
    }
  } finally {
    await coordinator.stop()
    await mesh?.stop()
  }
}

/** The address of a local peer for the chosen transport. */
function pickAddr (addrs: string[], transport: TransportName): string {
  const want = transport === 'tcp' ? '/tcp/' : '/webrtc-direct/'
  const addr = addrs.find((a) => a.includes(want))
  if (addr == null) throw new LumiereError('INTERNAL', `local peer has no ${transport} address: ${addrs.join(' ')}`)
  return addr
}
