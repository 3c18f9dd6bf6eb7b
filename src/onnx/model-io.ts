/**
 * Reading and writing ONNX model files, including external data (tensors
 * kept in side files, needed for models over protobuf's 2 GB limit).
 *
 * External tensors: `loadModel` checks every external location (relative to
 * the model's folder, never escaping it) and rewrites it to an absolute path;
 * by default the bytes stay on disk and are read only when used
 * (`tensorBytes`, `extractStage`, `inlineExternalData`), so a planner can
 * look at a huge model without reading its weights.
 */
import { mkdirSync, readFileSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs'
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path'
import { LumiereError } from '../errors.ts'
import { onnx, subgraphs } from './proto.ts'
import type { GraphProto, ModelProto, TensorProto } from './proto.ts'
import { EXTERNAL, externalRef, isExternal, tensorBytes } from './tensor-proto.ts'

/** Protobuf cannot encode messages of 2 GiB or more. */
const PROTOBUF_LIMIT = 2 ** 31 - 1

/** Decodes an ONNX model; BAD_ONNX when the bytes are not one. */
export function decodeModel (bytes: Uint8Array, what = 'model'): ModelProto {
  let model: ModelProto
  try {
    model = onnx.ModelProto.decode(bytes)
  } catch (err) {
    throw new LumiereError('BAD_ONNX', `${what} is not a valid ONNX model (${(err as Error).message}): check the file is a .onnx export and not truncated`, { cause: err })
  }
  // Random bytes can decode as a protobuf by luck; a real model has a graph
  // with outputs and an opset.
  if (model.graph == null || (model.graph.output ?? []).length === 0) {
    throw new LumiereError('BAD_ONNX', `${what} has no graph (or a graph without outputs): check the file is a .onnx export and not truncated`)
  }
  if ((model.opsetImport ?? []).length === 0) {
    throw new LumiereError('BAD_ONNX', `${what} imports no operator set: re-export it with an opset (e.g. opset 17)`)
  }
  return model
}

/** Encodes a model as it is (external references included). */
export function encodeModel (model: ModelProto): Uint8Array {
  let inline = 0
  forEachTensor(model, t => { inline += t.rawData?.byteLength ?? 0 })
  if (inline > PROTOBUF_LIMIT) {
    throw new LumiereError('TOO_LARGE', `model holds ${inline} bytes of tensors, over protobuf's 2 GB limit: save it with external data (saveModel(..., { externalData }))`)
  }
  return onnx.ModelProto.encode(model).finish()
}

export interface LoadOptions {
  /** 'lazy' (default): external tensors stay on disk until used; 'inline': read them all now. */
  externalData?: 'lazy' | 'inline'
}

/** Reads an ONNX file; external data locations are resolved against its folder. */
export function loadModel (path: string, options: LoadOptions = {}): ModelProto {
  let bytes: Uint8Array
  try {
    bytes = readFileSync(path)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'EISDIR' || code === 'ENOTDIR') {
      throw new LumiereError('FILE_NOT_FOUND', `model file ${path} not found: check the path (a .onnx file)`, { cause: err })
    }
    throw new LumiereError('FILE_NOT_FOUND', `model file ${path} cannot be read (${code ?? (err as Error).message}): check its permissions`, { cause: err })
  }
  const model = decodeModel(bytes, `model file ${path}`)
  const folder = dirname(resolve(path))
  forEachTensor(model, t => {
    if (!isExternal(t)) return
    const { location } = externalRef(t)
    const abs = resolve(folder, location)
    // Like ORT: external data must sit in the model's folder tree.
    if (isAbsolute(location) || relative(folder, abs).split(sep)[0] === '..') {
      throw new LumiereError('BAD_ONNX', `model file ${path}: tensor '${t.name}' points outside the model folder (${location}): keep external data next to the model`)
    }
    for (const e of t.externalData ?? []) if (e.key === 'location') e.value = abs
  })
  if (options.externalData === 'inline') inlineExternalData(model)
  return model
}

export interface SaveOptions {
  /**
   * Write initializers of at least `threshold` bytes (default 1024) into the
   * file `location` (relative to the model's folder) instead of the model.
   */
  externalData?: { location: string, threshold?: number }
}

/**
 * Writes a model. Tensors still on disk (lazy external data) are read and
 * written inline or into the new external file, so the result never points
 * at the source model's files.
 */
export function saveModel (model: ModelProto, path: string, options: SaveOptions = {}): void {
  const out = cloneModel(model)
  const ext = options.externalData
  try {
    mkdirSync(dirname(resolve(path)), { recursive: true })
    if (ext == null) {
      inlineExternalData(out)
    } else {
      const threshold = ext.threshold ?? 1024
      const fd = openSync(join(dirname(resolve(path)), ext.location), 'w')
      let offset = 0
      try {
        forEachTensor(out, (t, isInitializer) => {
          const bytes = isExternal(t) || (t.rawData?.byteLength ?? 0) > 0 || isInitializer ? tensorBytes(t) : undefined
          if (bytes == null) return
          if (!isInitializer || bytes.byteLength < threshold) {
            setInline(t, bytes)
            return
          }
          // 64-byte alignment lets readers map tensors directly.
          const pad = (64 - offset % 64) % 64
          if (pad > 0) writeSync(fd, new Uint8Array(pad), 0, pad, offset)
          offset += pad
          writeSync(fd, bytes, 0, bytes.byteLength, offset)
          setExternal(t, ext.location, offset, bytes.byteLength)
          offset += bytes.byteLength
        })
      } finally {
        closeSync(fd)
      }
    }
    writeFileSync(path, encodeModel(out))
  } catch (err) {
    if (err instanceof LumiereError) throw err
    throw new LumiereError('FILE_UNWRITABLE', `cannot write model ${path} (${(err as Error).message}): check the folder exists and is writable`, { cause: err })
  }
}

/** Reads every external tensor into raw_data, in place. Returns the model. */
export function inlineExternalData (model: ModelProto): ModelProto {
  forEachTensor(model, t => { if (isExternal(t)) setInline(t, tensorBytes(t)) })
  return model
}

/** True when some tensor of the model still lives in an external file. */
export function hasExternalData (model: ModelProto): boolean {
  let found = false
  forEachTensor(model, t => { if (isExternal(t)) found = true })
  return found
}

/**
 * A deep copy that shares tensor bytes (raw_data views), cheap even for
 * big models: messages are copied, buffers are not.
 */
export function cloneModel (model: ModelProto): ModelProto {
  // fromObject returns message instances unchanged, toObject copies them
  // into plain objects (byte fields by reference), fromObject builds anew.
  return onnx.ModelProto.fromObject(onnx.ModelProto.toObject(onnx.ModelProto.fromObject(model)))
}

/** Moves a tensor's contents into raw_data (typed fields and external refs cleared). */
function setInline (t: TensorProto, bytes: Uint8Array): void {
  // Deleted, not set to defaults: proto2 would encode an explicit default.
  delete t.dataLocation
  delete t.externalData
  delete t.floatData; delete t.int32Data; delete t.int64Data; delete t.doubleData; delete t.uint64Data
  t.rawData = bytes
}

function setExternal (t: TensorProto, location: string, offset: number, length: number): void {
  setInline(t, new Uint8Array(0))
  delete t.rawData
  t.dataLocation = EXTERNAL
  t.externalData = [{ key: 'location', value: location }, { key: 'offset', value: String(offset) }, { key: 'length', value: String(length) }]
}

/**
 * Calls `fn` for every TensorProto with data in the model: initializers of the
 * graph and of every subgraph (isInitializer true), and tensor attributes
 * (Constant values and the like).
 */
export function forEachTensor (model: ModelProto, fn: (t: TensorProto, isInitializer: boolean) => void): void {
  const visit = (g: GraphProto): void => {
    for (const t of g.initializer ?? []) fn(t, true)
    for (const s of g.sparseInitializer ?? []) { if (s.values != null) fn(s.values, false); if (s.indices != null) fn(s.indices, false) }
    for (const n of g.node ?? []) {
      for (const a of n.attribute ?? []) {
        if (a.t != null) fn(a.t, false)
        for (const t of a.tensors ?? []) fn(t, false)
      }
      for (const sg of subgraphs(n)) visit(sg)
    }
  }
  if (model.graph != null) visit(model.graph)
}
