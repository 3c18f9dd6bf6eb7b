import { LumiereError } from '../src/errors.ts'
import { elemToDType, num } from '../src/onnx/proto.ts'
import type { ModelProto } from '../src/onnx/proto.ts'
import type { Tensor } from '../src/tensor/tensor.ts'

export interface GraphInput {
  name: string
  dtype: string
  /** A number for a fixed dim, a name for a symbolic one, null when unnamed. */
  dims: Array<number | string | null>
}

/** The inputs a user must feed: graph inputs that are not initializers. */
export function graphInputs (model: ModelProto): GraphInput[] {
  const graph = model.graph ?? {}
  const inits = new Set((graph.initializer ?? []).map((t) => t.name))
  return (graph.input ?? []).filter((v) => !inits.has(v.name)).map((v) => {
    const tt = v.type?.tensorType
    const dims = (tt?.shape?.dim ?? []).map((d) => d.dimValue != null && num(d.dimValue) > 0 ? num(d.dimValue) : (d.dimParam ?? null))
    return { name: v.name ?? '', dtype: elemToDType(tt?.elemType ?? 0), dims }
  })
}

export function graphOutputs (model: ModelProto): string[] {
  return (model.graph?.output ?? []).map((v) => v.name ?? '')
}

/**
 * Checks user tensors against the graph's inputs: every input present, no
 * extras, dtypes equal, ranks equal, fixed dims equal and each symbolic dim
 * bound to one value. Returns the symbolic bindings.
 */
export function checkInputs (model: ModelProto, tensors: Record<string, Tensor>): Record<string, number> {
  const inputs = graphInputs(model)
  const want = inputs.map((i) => i.name)
  const bindings: Record<string, number> = {}
  for (const name of Object.keys(tensors)) {
    if (!want.includes(name)) throw new LumiereError('INPUT_MISMATCH', `the graph has no input '${name}'; its inputs are: ${want.join(', ')}`)
  }
  for (const input of inputs) {
    const t = tensors[input.name]
    const shape = `[${input.dims.map((d) => d ?? '?').join(', ')}]`
    if (t == null) throw new LumiereError('INPUT_MISMATCH', `missing input '${input.name}' (${input.dtype} ${shape})`)
    if (t.dtype !== input.dtype) throw new LumiereError('INPUT_MISMATCH', `input '${input.name}' is ${t.dtype}, the graph wants ${input.dtype}`)
    if (t.shape.length !== input.dims.length) {
      throw new LumiereError('INPUT_MISMATCH', `input '${input.name}' has shape [${t.shape.join(', ')}], the graph wants ${shape}`)
    }
    input.dims.forEach((d, i) => {
      const got = t.shape[i]
      if (typeof d === 'number' && d !== got) throw new LumiereError('INPUT_MISMATCH', `input '${input.name}' has shape [${t.shape.join(', ')}], the graph wants ${shape}`)
      if (typeof d === 'string') {
        if (bindings[d] != null && bindings[d] !== got) throw new LumiereError('INPUT_MISMATCH', `dimension '${d}' is ${bindings[d]} in one input and ${got} in '${input.name}'`)
        bindings[d] = got
      }
    })
  }
  return bindings
}
