/**
 * safetensors read/write (https://github.com/huggingface/safetensors).
 *
 * Layout: an 8-byte little-endian u64 N, then N bytes of UTF-8 JSON
 * `{ "__metadata__"?: {string: string}, name: { dtype, shape, data_offsets: [begin, end] }, ... }`,
 * then the data buffer; offsets are relative to the start of the data buffer.
 * Validation follows the reference implementation: header ≤ 100 MB, offsets
 * contiguous from 0 with no holes or overlaps, the last one ending exactly at
 * the end of the file, and `end - begin = prod(shape) × dtype size`.
 *
 * Writing matches the reference serializer byte for byte: tensors ordered by
 * dtype alignment (largest first) then name, `__metadata__` first in the JSON,
 * the header padded with spaces to a multiple of 8 so every tensor's data is
 * aligned to its element size.
 */
import { randomBytes } from 'node:crypto'
import { open, rename, unlink } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { LumiereError } from '../errors.ts'
import { byteLength, dtypeBytes, isDType } from './tensor.ts'
import type { DType, Tensor } from './tensor.ts'

/** Largest JSON header accepted, as in the reference implementation. */
export const MAX_SAFETENSORS_HEADER_BYTES = 100_000_000

const METADATA_KEY = '__metadata__'

/** Reference dtype order (ascending alignment); writing sorts by this, descending. */
const DTYPE_RANK: Record<DType, number> = { BOOL: 0, U8: 1, F16: 7, BF16: 8, I32: 9, F32: 11, I64: 13 }

export interface SafetensorsFile {
  tensors: Record<string, Tensor>
  metadata: Record<string, string>
}

interface Planned {
  header: Uint8Array // 8-byte length + padded JSON
  order: Array<[string, Tensor]>
  dataBytes: number
}

function bad (message: string): LumiereError {
  return new LumiereError('BAD_SAFETENSORS', message)
}

/** Defines an own enumerable property, safe for names such as "__proto__". */
function setOwn<T> (obj: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true })
}

function compareUtf8 (a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'))
}

function plan (tensors: Record<string, Tensor>, metadata?: Record<string, string>): Planned {
  const order: Array<[string, Tensor]> = []
  for (const [name, t] of Object.entries(tensors)) {
    if (name === '' || name === METADATA_KEY) throw new LumiereError('BAD_ARGUMENT', `safetensors: invalid tensor name ${JSON.stringify(name)}`)
    if (t == null || !isDType(t.dtype)) throw new LumiereError('BAD_ARGUMENT', `safetensors: tensor '${name}' has unsupported dtype ${String(t?.dtype)}`)
    if (!Array.isArray(t.shape) || !(t.data instanceof Uint8Array)) throw new LumiereError('BAD_ARGUMENT', `safetensors: tensor '${name}' is not a tensor`)
    for (const d of t.shape) {
      if (!Number.isSafeInteger(d) || d < 0) throw new LumiereError('BAD_ARGUMENT', `safetensors: tensor '${name}' has bad dimension ${d} in shape [${t.shape.join(', ')}]`)
    }
    const want = byteLength(t.dtype, t.shape)
    if (t.data.byteLength !== want) {
      throw new LumiereError('BAD_ARGUMENT', `safetensors: tensor '${name}' ${t.dtype}[${t.shape.join(', ')}] needs ${want} bytes, has ${t.data.byteLength}`)
    }
    order.push([name, t])
  }
  order.sort(([an, a], [bn, b]) => (DTYPE_RANK[b.dtype] - DTYPE_RANK[a.dtype]) || compareUtf8(an, bn))

  // Build the JSON by hand so the key order is exactly the reference one.
  const parts: string[] = []
  if (metadata != null) {
    const entries: string[] = []
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new LumiereError('BAD_ARGUMENT', `safetensors: metadata '${k}' must be a string`)
      entries.push(`${JSON.stringify(k)}:${JSON.stringify(v)}`)
    }
    parts.push(`${JSON.stringify(METADATA_KEY)}:{${entries.join(',')}}`)
  }
  let offset = 0
  for (const [name, t] of order) {
    const end = offset + t.data.byteLength
    parts.push(`${JSON.stringify(name)}:{"dtype":${JSON.stringify(t.dtype)},"shape":[${t.shape.join(',')}],"data_offsets":[${offset},${end}]}`)
    offset = end
  }
  const json = Buffer.from(`{${parts.join(',')}}`, 'utf8')
  const padded = Math.ceil(json.byteLength / 8) * 8
  if (padded > MAX_SAFETENSORS_HEADER_BYTES) throw new LumiereError('TOO_LARGE', `safetensors: header of ${padded} bytes exceeds ${MAX_SAFETENSORS_HEADER_BYTES}`)
  const header = new Uint8Array(8 + padded)
  new DataView(header.buffer).setBigUint64(0, BigInt(padded), true)
  header.set(json, 8)
  header.fill(0x20, 8 + json.byteLength)
  return { header, order, dataBytes: offset }
}

/** Serialises tensors (and optional string metadata) to one safetensors buffer. */
export function encodeSafetensors (tensors: Record<string, Tensor>, metadata?: Record<string, string>): Uint8Array {
  const { header, order, dataBytes } = plan(tensors, metadata)
  const out = new Uint8Array(header.byteLength + dataBytes)
  out.set(header, 0)
  let at = header.byteLength
  for (const [, t] of order) {
    out.set(t.data, at)
    at += t.data.byteLength
  }
  return out
}

function isPlainObject (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/**
 * Parses a safetensors buffer. Tensor data are views into `bytes` (no copy);
 * keep `bytes` alive and unmodified while the tensors are in use.
 */
export function decodeSafetensors (bytes: Uint8Array): SafetensorsFile {
  if (!(bytes instanceof Uint8Array)) throw new LumiereError('BAD_ARGUMENT', 'safetensors: expected a Uint8Array')
  if (bytes.byteLength < 8) throw bad(`safetensors: file of ${bytes.byteLength} bytes is shorter than the 8-byte header length`)
  const n64 = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true)
  if (n64 > BigInt(MAX_SAFETENSORS_HEADER_BYTES)) throw bad(`safetensors: header length ${n64} exceeds the ${MAX_SAFETENSORS_HEADER_BYTES}-byte limit`)
  const n = Number(n64)
  if (8 + n > bytes.byteLength) throw bad(`safetensors: header length ${n} runs past the end of the ${bytes.byteLength}-byte file`)

  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n))
  } catch {
    throw bad('safetensors: header is not valid UTF-8')
  }
  let header: unknown
  try {
    header = JSON.parse(text)
  } catch (err) {
    throw bad(`safetensors: header is not valid JSON (${(err as Error).message})`)
  }
  if (!isPlainObject(header)) throw bad('safetensors: header is not a JSON object')

  const dataStart = 8 + n
  const dataLength = bytes.byteLength - dataStart
  const metadata: Record<string, string> = {}
  const entries: Array<{ name: string, dtype: DType, shape: number[], begin: number, end: number }> = []

  for (const [name, info] of Object.entries(header)) {
    if (name === METADATA_KEY) {
      if (!isPlainObject(info)) throw bad('safetensors: __metadata__ must be an object of strings')
      for (const [k, v] of Object.entries(info)) {
        if (typeof v !== 'string') throw bad(`safetensors: __metadata__ entry '${k}' is not a string`)
        setOwn(metadata, k, v)
      }
      continue
    }
    const what = `safetensors: tensor '${name}'`
    if (!isPlainObject(info)) throw bad(`${what}: entry is not an object`)
    for (const key of Object.keys(info)) {
      if (key !== 'dtype' && key !== 'shape' && key !== 'data_offsets') throw bad(`${what}: unexpected field '${key}'`)
    }
    const { dtype, shape, data_offsets: offsets } = info
    if (typeof dtype !== 'string') throw bad(`${what}: missing dtype`)
    if (!isDType(dtype)) throw bad(`${what}: unsupported dtype ${dtype} (supported: F32, F16, BF16, I64, I32, U8, BOOL)`)
    if (!Array.isArray(shape)) throw bad(`${what}: shape is not an array`)
    let elements = 1
    for (const d of shape) {
      if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) throw bad(`${what}: bad dimension ${JSON.stringify(d)} in shape`)
      elements *= d
      if (!Number.isSafeInteger(elements)) throw bad(`${what}: shape [${shape.join(', ')}] overflows`)
    }
    const nbytes = elements * dtypeBytes(dtype)
    if (!Number.isSafeInteger(nbytes)) throw bad(`${what}: shape [${shape.join(', ')}] overflows`)
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o: unknown) => typeof o === 'number' && Number.isSafeInteger(o) && o >= 0)) {
      throw bad(`${what}: data_offsets must be two non-negative integers`)
    }
    const [begin, end] = offsets as [number, number]
    if (end < begin) throw bad(`${what}: data_offsets [${begin}, ${end}] end before they begin`)
    if (end > dataLength) throw bad(`${what}: data_offsets [${begin}, ${end}] run past the ${dataLength}-byte data section`)
    if (end - begin !== nbytes) throw bad(`${what}: ${dtype}[${shape.join(', ')}] needs ${nbytes} bytes but data_offsets [${begin}, ${end}] hold ${end - begin}`)
    entries.push({ name, dtype, shape: shape as number[], begin, end })
  }

  // Offsets must tile the data section exactly: no holes, no overlaps.
  entries.sort((a, b) => (a.begin - b.begin) || (a.end - b.end))
  let cursor = 0
  for (const e of entries) {
    if (e.begin < cursor) throw bad(`safetensors: tensor '${e.name}' data_offsets [${e.begin}, ${e.end}] overlap the previous tensor (which ends at ${cursor})`)
    if (e.begin > cursor) throw bad(`safetensors: tensor '${e.name}' data_offsets [${e.begin}, ${e.end}] leave a hole after byte ${cursor}`)
    cursor = e.end
  }
  if (cursor !== dataLength) throw bad(`safetensors: tensors cover ${cursor} bytes but the data section has ${dataLength}`)

  const tensors: Record<string, Tensor> = {}
  for (const e of entries) {
    setOwn(tensors, e.name, { dtype: e.dtype, shape: e.shape, data: bytes.subarray(dataStart + e.begin, dataStart + e.end) })
  }
  return { tensors, metadata }
}

/**
 * Reads and validates a safetensors file (any size: read in chunks into one
 * buffer). Tensors are views into that buffer.
 */
export async function readSafetensors (path: string): Promise<SafetensorsFile> {
  let bytes: Uint8Array
  try {
    bytes = await readWhole(path)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    const why = code === 'ENOENT' || code === 'ENOTDIR' ? 'no such file' : (err as Error).message
    throw new LumiereError('FILE_NOT_FOUND', `cannot read safetensors file ${path}: ${why}`, { cause: err })
  }
  try {
    return decodeSafetensors(bytes)
  } catch (err) {
    if (err instanceof LumiereError) throw new LumiereError(err.code, `${path}: ${err.message}`, { cause: err })
    throw err
  }
}

async function readWhole (path: string): Promise<Uint8Array> {
  const fh = await open(path, 'r')
  try {
    const size = (await fh.stat()).size
    const b = Buffer.allocUnsafeSlow(size)
    const out = new Uint8Array(b.buffer, b.byteOffset, size)
    const CHUNK = 64 * 1024 * 1024
    let at = 0
    while (at < size) {
      const { bytesRead } = await fh.read(out, at, Math.min(CHUNK, size - at), at)
      if (bytesRead === 0) break
      at += bytesRead
    }
    if (at !== size) throw new Error(`file shrank while reading (${at} of ${size} bytes)`)
    return out
  } finally {
    await fh.close()
  }
}

/**
 * Writes tensors to `path` atomically: the file is written to a temporary
 * sibling, flushed, then renamed over `path`, so readers never see a partial
 * file. Tensor data are written straight from their buffers (no joined copy).
 */
export async function writeSafetensors (path: string, tensors: Record<string, Tensor>, metadata?: Record<string, string>): Promise<void> {
  const { header, order } = plan(tensors, metadata)
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`
  let fh: FileHandle
  try {
    fh = await open(tmp, 'wx')
  } catch (err) {
    throw new LumiereError('FILE_UNWRITABLE', `cannot write ${path}: ${(err as Error).message}`, { cause: err })
  }
  try {
    try {
      await writeFully(fh, header)
      for (const [, t] of order) await writeFully(fh, t.data)
      await fh.datasync()
    } finally {
      await fh.close()
    }
    await rename(tmp, path)
  } catch (err) {
    await unlink(tmp).catch(() => {})
    if (err instanceof LumiereError) throw err
    throw new LumiereError('FILE_UNWRITABLE', `cannot write ${path}: ${(err as Error).message}`, { cause: err })
  }
}

async function writeFully (fh: FileHandle, data: Uint8Array): Promise<void> {
  const CHUNK = 64 * 1024 * 1024
  let at = 0
  while (at < data.byteLength) {
    const { bytesWritten } = await fh.write(data, at, Math.min(CHUNK, data.byteLength - at))
    at += bytesWritten
  }
}
