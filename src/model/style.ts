/**
 * Stylized generation (DESIGN §1, Lumiere §5): the spatial (image-model)
 * weights are interpolated with those of a style-fine-tuned image model,
 *
 *   W = α·W_style + (1 − α)·W_orig,
 *
 * while the temporal layers (inflation blocks, temporal resampling) keep
 * their weights. The paper uses α ∈ [0.5, 1]; here any α ∈ [0, 1] is taken,
 * 0 (the original model, bit for bit) and 1 (exactly the style's spatial
 * weights) being useful for checks.
 *
 * Which weights blend: initializers of the main graph whose names start with
 * `spatial.` (the built-in STUNet names every image-model weight so, and
 * every inflation weight `temporal.`) and whose type is float (F32, F16,
 * BF16). A style may cover a subset of them; it never names anything else.
 *
 * Arithmetic: each element is computed in double precision from the stored
 * values and rounded once to float32 (nearest even, like Math.fround; for
 * α = 0.5 that is the correctly rounded midpoint), then F16/BF16 weights
 * are rounded to their type. α = 0 copies nothing (the weights keep their bytes, −0
 * and NaN included) and α = 1 copies the style's bytes, so neither endpoint
 * depends on rounding. The same code runs on peers (peer/ort-worker.ts) and
 * in-process, so both compute identical bits.
 */
import { LumiereError } from '../errors.ts'
import { cloneModel } from '../onnx/model-io.ts'
import { ELEM, elemToDType, tensorDims } from '../onnx/proto.ts'
import type { ModelProto, TensorProto } from '../onnx/proto.ts'
import { isExternal, tensorBytes } from '../onnx/tensor-proto.ts'
import { bfloat16ToFloat32, float16ToFloat32, float32ToBfloat16, float32ToFloat16 } from '../tensor/float16.ts'
import { readSafetensors, writeSafetensors } from '../tensor/safetensors.ts'
import { byteLength, checkTensor, elementCount, view } from '../tensor/tensor.ts'
import type { DType, Tensor } from '../tensor/tensor.ts'

/** Name prefix of the weights a style blends (image-model weights). */
export const SPATIAL_PREFIX = 'spatial.'
/** Name prefix of the weights a style never touches (inflation blocks, temporal resampling). */
export const TEMPORAL_PREFIX = 'temporal.'
/** The range of α in the paper; [0, 1] is accepted. */
export const PAPER_ALPHA_RANGE = [0.5, 1] as const

const BLENDABLE_ELEMS = new Set<number>([ELEM.FLOAT, ELEM.FLOAT16, ELEM.BFLOAT16])

/** Style weights and how strongly to apply them. */
export interface Style {
  tensors: Record<string, Tensor>
  /** α ∈ [0, 1]: 0 = the original model, 1 = the style's spatial weights. */
  alpha: number
}

/** Throws BAD_ARGUMENT unless α is a number in [0, 1]. */
export function checkAlpha (alpha: number): number {
  if (typeof alpha !== 'number' || !Number.isFinite(alpha) || alpha < 0 || alpha > 1) {
    throw new LumiereError('BAD_ARGUMENT', `style alpha must be a number in [0, 1] (the paper uses ${PAPER_ALPHA_RANGE[0]}..${PAPER_ALPHA_RANGE[1]}; 0 = the original model, 1 = the style's weights), got ${String(alpha)}`)
  }
  return alpha
}

/** True when the initializer is a weight a style may blend: `spatial.*` and float. */
export function isBlendable (t: TensorProto): boolean {
  return (t.name ?? '').startsWith(SPATIAL_PREFIX) && BLENDABLE_ELEMS.has(t.dataType ?? 0)
}

/** A declared initializer without data (a shapes-only model, built with weights 'none'). */
function hasNoData (t: TensorProto): boolean {
  if (isExternal(t) || (t.rawData?.byteLength ?? 0) > 0) return false
  const typed = [t.floatData, t.int32Data, t.int64Data, t.doubleData, t.uint64Data].reduce((n, a) => n + (a?.length ?? 0), 0)
  return typed === 0 && elementCount(tensorDims(t)) > 0
}

/** The blendable initializers of the main graph, by name. */
function blendable (model: ModelProto): Map<string, TensorProto> {
  const out = new Map<string, TensorProto>()
  for (const t of model.graph?.initializer ?? []) if (isBlendable(t)) out.set(t.name ?? '', t)
  return out
}

function describe (dtype: string, shape: readonly number[]): string {
  return `${dtype}[${shape.join(', ')}]`
}

/**
 * The blendable weights of a model (its `spatial.*` float initializers) as
 * tensors: the template a style file fills in. Tensors are views of the
 * model's bytes (external data is read now).
 */
export function styleTemplate (model: ModelProto): Record<string, Tensor> {
  const out: Record<string, Tensor> = {}
  for (const [name, t] of blendable(model)) {
    if (hasNoData(t)) throw new LumiereError('BAD_ARGUMENT', `the model holds no weights (weight '${name}' has shape only): a style template needs a model with weights`)
    const dtype = elemToDType(t.dataType ?? 0) as DType
    Object.defineProperty(out, name, { value: { dtype, shape: tensorDims(t), data: tensorBytes(t) }, enumerable: true, writable: true, configurable: true })
  }
  return out
}

/**
 * Checks a style against a model: every style tensor must name a blendable
 * weight of the model (a `spatial.*` float initializer) with the same dtype
 * and shape. A style may cover a subset. Throws BAD_ARGUMENT naming the
 * first offending tensor; `what` names the model in messages.
 */
export function checkStyle (model: ModelProto, style: Record<string, Tensor>, what = 'the model'): void {
  const weights = blendable(model)
  const all = new Map((model.graph?.initializer ?? []).map((t) => [t.name ?? '', t]))
  for (const [name, s] of Object.entries(style)) {
    const t = weights.get(name)
    if (t == null) {
      const other = all.get(name)
      if (name.startsWith(TEMPORAL_PREFIX) && other != null) throw new LumiereError('BAD_ARGUMENT', `style tensor '${name}' is a temporal weight: a style changes spatial (image-model) weights only, temporal layers keep theirs; drop it from the style`)
      if (other != null && !name.startsWith(SPATIAL_PREFIX)) throw new LumiereError('BAD_ARGUMENT', `style tensor '${name}' is not a spatial weight (only initializers named '${SPATIAL_PREFIX}*' blend); drop it from the style`)
      if (other != null) throw new LumiereError('BAD_ARGUMENT', `style tensor '${name}' names a weight of type ${elemToDType(other.dataType ?? 0)}, which does not blend (only float weights do)`)
      throw new LumiereError('BAD_ARGUMENT', `style tensor '${name}' is not a weight of ${what}; make the style from this model's template ('lumiere model style-template')`)
    }
    if (s == null || typeof s !== 'object' || !(s.data instanceof Uint8Array) || !Array.isArray(s.shape)) throw new LumiereError('BAD_ARGUMENT', `style tensor '${name}' is not a tensor`)
    const dtype = elemToDType(t.dataType ?? 0)
    const dims = tensorDims(t)
    if (s.dtype !== dtype || s.shape.length !== dims.length || s.shape.some((d, i) => d !== dims[i])) {
      throw new LumiereError('BAD_ARGUMENT', `style tensor '${name}' is ${describe(s.dtype, s.shape)} but the weight of ${what} is ${describe(dtype, dims)}`)
    }
    if (s.data.byteLength !== byteLength(s.dtype, s.shape)) checkTensor(s, `style tensor '${name}'`)
  }
}

/** The style tensors that name initializers of `model` (e.g. one extracted stage). */
export function styleSubset (model: ModelProto, style: Record<string, Tensor>): Record<string, Tensor> {
  const names = new Set((model.graph?.initializer ?? []).map((t) => t.name ?? ''))
  const out: Record<string, Tensor> = {}
  for (const [name, t] of Object.entries(style)) {
    if (names.has(name)) Object.defineProperty(out, name, { value: t, enumerable: true, writable: true, configurable: true })
  }
  return out
}

/**
 * A copy of the model whose covered spatial weights are
 * α·W_style + (1 − α)·W_orig (see the file comment for the arithmetic).
 * Checks α and the style first (BAD_ARGUMENT). The copy shares the bytes of
 * every weight it does not change; the input model is not modified.
 */
export function blendInitializers (model: ModelProto, style: Record<string, Tensor>, alpha: number, what = 'the model'): ModelProto {
  checkAlpha(alpha)
  checkStyle(model, style, what)
  const out = cloneModel(model)
  if (alpha === 0) return out
  for (const t of out.graph?.initializer ?? []) {
    const s = Object.hasOwn(style, t.name ?? '') ? style[t.name ?? ''] : undefined
    if (s == null) continue
    setRaw(t, alpha === 1 ? s.data.slice() : blendBytes(tensorBytes(t), s, alpha))
  }
  return out
}

/** α·s + (1 − α)·w per element, rounded once to the dtype. */
function blendBytes (orig: Uint8Array, s: Tensor, alpha: number): Uint8Array {
  const beta = 1 - alpha
  const w = view({ dtype: s.dtype, shape: s.shape, data: orig })
  const st = view(s)
  const n = elementCount(s.shape)
  if (s.dtype === 'F32') {
    const a = w as Float32Array
    const b = st as Float32Array
    const o = new Float32Array(n)
    for (let i = 0; i < n; i++) o[i] = alpha * b[i] + beta * a[i]
    return new Uint8Array(o.buffer)
  }
  const toF32 = s.dtype === 'F16' ? float16ToFloat32 : bfloat16ToFloat32
  const a = toF32(w as Uint16Array)
  const b = toF32(st as Uint16Array)
  const o = new Float32Array(n)
  for (let i = 0; i < n; i++) o[i] = alpha * b[i] + beta * a[i]
  const bits = s.dtype === 'F16' ? float32ToFloat16(o) : float32ToBfloat16(o)
  return new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength)
}

/** Moves a tensor's contents into raw_data (typed fields and external refs cleared). */
function setRaw (t: TensorProto, bytes: Uint8Array): void {
  delete t.dataLocation
  delete t.externalData
  delete t.floatData; delete t.int32Data; delete t.int64Data; delete t.doubleData; delete t.uint64Data
  t.rawData = bytes
}

/**
 * Reads a style file (safetensors) and checks it against the model: the
 * tensors `generate --style FILE` sends. FILE_NOT_FOUND / BAD_SAFETENSORS
 * for the file, BAD_ARGUMENT for a style that does not fit the model or
 * covers no weight.
 */
export async function loadStyle (path: string, model: ModelProto): Promise<Record<string, Tensor>> {
  const { tensors } = await readSafetensors(path)
  if (Object.keys(tensors).length === 0) throw new LumiereError('BAD_ARGUMENT', `style file ${path} holds no tensors; make one from 'lumiere model style-template'`)
  try {
    checkStyle(model, tensors)
  } catch (err) {
    if (err instanceof LumiereError) throw new LumiereError(err.code, `style file ${path}: ${err.message}`, { cause: err })
    throw err
  }
  return tensors
}

/** safetensors metadata of a style template: `format` and the model it came from. */
export const STYLE_FORMAT = 'lumiere-style/1'

/**
 * Writes the model's blendable weights (styleTemplate) to a safetensors file
 * (atomically). Returns how many tensors and parameters it holds.
 */
export async function writeStyleTemplate (model: ModelProto, path: string, metadata: Record<string, string> = {}): Promise<{ tensors: number, parameters: number }> {
  const tensors = styleTemplate(model)
  const names = Object.keys(tensors)
  if (names.length === 0) throw new LumiereError('BAD_ARGUMENT', `the model has no spatial weights (float initializers named '${SPATIAL_PREFIX}*'), so nothing can be stylized`)
  await writeSafetensors(path, tensors, { format: STYLE_FORMAT, ...metadata })
  return { tensors: names.length, parameters: names.reduce((n, k) => n + elementCount(tensors[k].shape), 0) }
}
