import { buildDagProbed } from '../src/onnx/graph.ts'
import { loadModel } from '../src/onnx/model-io.ts'
import { checkInputs } from './check-inputs.ts'
import { deploy } from './deploy.ts'
import { withMesh } from './mesh-session.ts'
import type { MeshOptions } from './mesh-session.ts'
import type { Plan } from './plan.ts'
import type { Tensor } from '../src/tensor/tensor.ts'

export interface InferOptions extends MeshOptions {
  /** Stages to cut the model into (default: one per peer). */
  stages?: number
  timeoutMs?: number
}

export interface InferResult {
  outputs: Record<string, Tensor>
  plan: Plan
}

/** Runs a model once over the mesh: plan, cut, place, push inputs, gather outputs. */
export async function inferOnMesh (modelPath: string, inputs: Record<string, Tensor>, options: InferOptions): Promise<InferResult> {
  const model = loadModel(modelPath)
  const bindings = checkInputs(model, inputs)
  const dag = await buildDagProbed(model, { inputs, dims: bindings, inputShapes: Object.fromEntries(Object.entries(inputs).map(([n, t]) => [n, t.shape])) })
  return withMesh(options, async ({ coordinator, peers }) => {
    const { plan, pipeline } = await deploy(coordinator, model, dag, peers, options.stages ?? peers.length, options.signal)
    try {
      return { outputs: await pipeline.run(inputs, { signal: options.signal, timeoutMs: options.timeoutMs }), plan }
    } finally {
      await pipeline.close()
    }
  })
}
