/**
 * The learned tensors of a model we build: every one goes through
 * `Params.add`, which names it, records its shape and (for seeded weights)
 * makes its data.
 *
 * Names: `<kind>.<block path with dots>.<param>`, e.g.
 * `spatial.down1.res0.conv1.weight` or `temporal.mid.tattn.proj.weight`.
 * `spatial.` holds the image model (what stylized generation blends),
 * `temporal.` the inflation blocks and temporal resampling (never blended).
 *
 * Weights:
 * - 'seeded': each tensor from its own PRNG stream, seeded by the model seed
 *   and the tensor's name, so a tensor's values depend only on (seed, name,
 *   shape), not on the order in which blocks were built.
 * - 'none': initializers are declared (name, dims, float type) with no data
 *   at all, so even a model with billions of parameters costs no memory. Such
 *   a model is for planning (buildDag reads sizes from dims); it cannot run.
 */
import { LumiereError } from '../errors.ts'
import type { GraphBuilder } from '../onnx/builder.ts'
import { ELEM } from '../onnx/proto.ts'
import type { ModelProto, TensorProto } from '../onnx/proto.ts'
import { mulberry32 } from '../util/prng.ts'

export type WeightMode = 'seeded' | 'none'
export type ParamKind = 'spatial' | 'temporal'

/** How a parameter starts out. */
export type Init =
  /** U(-1/sqrt(fanIn), 1/sqrt(fanIn)): PyTorch's default for Conv and Linear, keeps activations O(1). */
  | { kind: 'uniform', fanIn: number }
  | { kind: 'constant', value: number }
  /** `values` repeated to fill the tensor (per-channel kernels such as [0, 1, 0]). */
  | { kind: 'pattern', values: number[] }

export function uniform (fanIn: number): Init {
  return { kind: 'uniform', fanIn }
}
export const ZEROS: Init = { kind: 'constant', value: 0 }
export const ONES: Init = { kind: 'constant', value: 1 }

export class Params {
  readonly mode: WeightMode
  readonly seed: number
  private readonly g: GraphBuilder
  private readonly names = new Set<string>()
  /** Data-less initializers ('none'), added to the model by `finish`. */
  private readonly declared: TensorProto[] = []

  constructor (g: GraphBuilder, mode: WeightMode, seed: number) {
    this.g = g
    this.mode = mode
    this.seed = seed
  }

  /** Declares a float parameter; returns its initializer name. */
  add (kind: ParamKind, path: string, shape: number[], init: Init): string {
    const name = `${kind}.${path.replaceAll('/', '.')}`
    if (this.names.has(name)) throw new LumiereError('INTERNAL', `parameter ${name} is declared twice`)
    this.names.add(name)
    if (this.mode === 'none') {
      this.declared.push({ name, dataType: ELEM.FLOAT, dims: [...shape] })
      return name
    }
    return this.g.init(name, this.values(name, shape, init), shape)
  }

  private values (name: string, shape: number[], init: Init): Float32Array {
    const out = new Float32Array(shape.reduce((a, b) => a * b, 1))
    switch (init.kind) {
      case 'constant': out.fill(init.value); break
      case 'pattern': for (let i = 0; i < out.length; i++) out[i] = init.values[i % init.values.length]; break
      case 'uniform': {
        const rand = mulberry32(streamSeed(this.seed, name))
        const bound = 1 / Math.sqrt(init.fanIn)
        for (let i = 0; i < out.length; i++) out[i] = (rand() * 2 - 1) * bound
      }
    }
    return out
  }

  /** Completes the built model: appends the data-less initializers ('none'). */
  finish (model: ModelProto): ModelProto {
    model.graph!.initializer!.push(...this.declared)
    return model
  }
}

/** FNV-1a over the seed and the name: one independent PRNG seed per tensor. */
function streamSeed (seed: number, name: string): number {
  let h = 0x811c9dc5
  for (const ch of `${seed >>> 0}:${name}`) {
    h ^= ch.charCodeAt(0)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h
}
