/**
 * The basic layers STUNet is made of, written as ONNX nodes through the
 * GraphBuilder, on video activations [N, C, T, H, W] (N symbolic).
 *
 * Naming: a `Scope` is a block path such as `down1/res0`; a layer `conv1` in
 * it is the node `down1/res0/conv1`, its output value has the same name, and
 * its parameters are `<kind>.down1.res0.conv1.weight` / `.bias` (params.ts).
 * Plans and DAG dumps are readable that way, and equal names fail loudly.
 *
 * Small structural constants (reshape targets, axes, scales, epsilon) are
 * Constant nodes, not initializers: initializers are exactly the learned
 * weights, so a model built with weights 'none' holds no tensor bytes in
 * initializers, and the planner duplicates those constants into every stage.
 */
import type { AttrValue, GraphBuilder } from '../onnx/builder.ts'
import { f32 } from '../tensor/tensor.ts'
import { ONES, ZEROS, uniform } from './params.ts'
import type { Init, ParamKind, Params } from './params.ts'

/** A video activation: its value name and its static [C, T, H, W] (N is the batch). */
export interface Act {
  v: string
  c: number
  t: number
  h: number
  w: number
}

export interface ModelContext {
  g: GraphBuilder
  params: Params
  /** GroupNorm groups. */
  groups: number
  /** Constant nodes by content, shared by every block that needs the same one. */
  consts: Map<string, string>
}

export class Scope {
  readonly ctx: ModelContext
  readonly path: string

  constructor (ctx: ModelContext, path: string) {
    this.ctx = ctx
    this.path = path
  }

  at (name: string): Scope {
    return new Scope(this.ctx, `${this.path}/${name}`)
  }

  /** One node named `<path>/<name>`; its output value has that name too, unless `out` names it. */
  op (name: string, opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, out?: string): string {
    const node = `${this.path}/${name}`
    return this.ctx.g.node(opType, inputs, attrs, [out ?? node], { name: node })[0]
  }

  param (kind: ParamKind, name: string, shape: number[], init: Init): string {
    return this.ctx.params.add(kind, `${this.path}/${name}`, shape, init)
  }
}

/**
 * A Constant's node and value name: its key (kind, shape, values) when that
 * is short; else the key up to the values, numbered, so that a table of 128
 * frequencies does not name itself with all 128 of them (plans print names).
 */
function constName (ctx: ModelContext, key: string): string {
  return key.length <= 64 ? key : `${key.slice(0, key.lastIndexOf('/'))}/#${ctx.consts.size}`
}

/** A shared int64 Constant (reshape targets, axes). */
export function i64 (ctx: ModelContext, values: number[]): string {
  const key = `const/i64/${values.join('_')}`
  let name = ctx.consts.get(key)
  if (name == null) {
    const id = constName(ctx, key)
    name = ctx.g.node('Constant', [], { value: { dtype: 'I64', shape: [values.length], data: new Uint8Array(BigInt64Array.from(values.map(BigInt)).buffer) } }, [id], { name: id })[0]
    ctx.consts.set(key, name)
  }
  return name
}

/** A shared float Constant; scalar when `shape` is []. */
export function f32const (ctx: ModelContext, values: number[], shape: number[] = []): string {
  const key = `const/f32/${shape.join('x')}/${values.join('_')}`
  let name = ctx.consts.get(key)
  if (name == null) {
    const id = constName(ctx, key)
    name = ctx.g.node('Constant', [], { value: f32(shape, values) }, [id], { name: id })[0]
    ctx.consts.set(key, name)
  }
  return name
}

export interface ConvOptions {
  kind: ParamKind
  /** [t, h, w] strides (default 1). */
  stride?: [number, number, number]
  /** Zero weights and bias (a block that starts as the identity). */
  zero?: boolean
  /** Name of the output value (default: the node's name). */
  out?: string
}

/** 3-D convolution with 'same' padding for odd kernels: (1,3,3) is spatial, (3,1,1) temporal. */
export function conv (s: Scope, name: string, x: Act, cout: number, kernel: [number, number, number], o: ConvOptions): Act {
  const stride = o.stride ?? [1, 1, 1]
  const pads = kernel.map(k => (k - 1) / 2)
  const fanIn = x.c * kernel[0] * kernel[1] * kernel[2]
  const w = s.param(o.kind, `${name}.weight`, [cout, x.c, ...kernel], o.zero === true ? ZEROS : uniform(fanIn))
  const b = s.param(o.kind, `${name}.bias`, [cout], o.zero === true ? ZEROS : uniform(fanIn))
  const v = s.op(name, 'Conv', [x.v, w, b], { kernel_shape: kernel, strides: stride, pads: [...pads, ...pads] }, o.out)
  const size = (d: number, i: number): number => Math.floor((d + 2 * pads[i] - kernel[i]) / stride[i]) + 1
  return { v, c: cout, t: size(x.t, 0), h: size(x.h, 1), w: size(x.w, 2) }
}

/** x @ W + b over the last axis of x (any rank). */
export function linear (s: Scope, name: string, x: string, cin: number, cout: number, kind: ParamKind, zero = false): string {
  const w = s.param(kind, `${name}.weight`, [cin, cout], zero ? ZEROS : uniform(cin))
  const b = s.param(kind, `${name}.bias`, [cout], zero ? ZEROS : uniform(cin))
  return s.op(name, 'Add', [s.op(`${name}/matmul`, 'MatMul', [x, w]), b])
}

/** SiLU(x) = x · sigmoid(x), as two ops every runtime has. */
export function silu (s: Scope, name: string, x: string): string {
  return s.op(name, 'Mul', [x, s.op(`${name}/sigmoid`, 'Sigmoid', [x])])
}

export function siluAct (s: Scope, name: string, x: Act): Act {
  return { ...x, v: silu(s, name, x.v) }
}

/**
 * GroupNorm with statistics per frame: over (C/G, H, W) for every (n, group,
 * t). The image model normalises each frame on its own, so an inflated net
 * with zero-initialised temporal blocks is exactly the image model frame by
 * frame (DESIGN §1). Written with ReduceMean on [N, G, C/G, T, H·W], which
 * opset 17 has (GroupNormalization needs opset 18+, and InstanceNormalization
 * would need T moved next to N first).
 */
export function groupNorm (s: Scope, name: string, x: Act, kind: ParamKind): Act {
  const { ctx } = s
  const G = ctx.groups
  const grouped = s.op(`${name}/group`, 'Reshape', [x.v, i64(ctx, [0, G, x.c / G, x.t, x.h * x.w])])
  const mean = s.op(`${name}/mean`, 'ReduceMean', [grouped], { axes: [2, 4], keepdims: 1 })
  const centered = s.op(`${name}/center`, 'Sub', [grouped, mean])
  const variance = s.op(`${name}/var`, 'ReduceMean', [s.op(`${name}/square`, 'Mul', [centered, centered])], { axes: [2, 4], keepdims: 1 })
  const std = s.op(`${name}/std`, 'Sqrt', [s.op(`${name}/var_eps`, 'Add', [variance, f32const(ctx, [1e-5])])])
  const normed = s.op(`${name}/ungroup`, 'Reshape', [s.op(`${name}/normalize`, 'Div', [centered, std]), i64(ctx, [0, x.c, x.t, x.h, x.w])])
  // Per-channel affine, [C,1,1,1] so it broadcasts over [N, C, T, H, W].
  const gamma = s.param(kind, `${name}.weight`, [x.c, 1, 1, 1], ONES)
  const beta = s.param(kind, `${name}.bias`, [x.c, 1, 1, 1], ZEROS)
  return { ...x, v: s.op(name, 'Add', [s.op(`${name}/scale`, 'Mul', [normed, gamma]), beta]) }
}

/** norm → SiLU, the pre-activation of every conv in a ResBlock or inflation block. */
export function normSilu (s: Scope, name: string, x: Act, kind: ParamKind): Act {
  return siluAct(s, `${name}/silu`, groupNorm(s, name, x, kind))
}
