import { createHash } from 'node:crypto'
import { access, mkdir, readFile, rename, writeFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { LumiereError } from '../src/errors.ts'
import { decodeSafetensors } from '../src/tensor/safetensors.ts'
import type { Tensor } from '../src/tensor/tensor.ts'

const HASH = /^[0-9a-f]{64}$/

/** Content address of a stage graph: sha256 of its ONNX bytes, hex. */
export function stageHash (bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

/** Content address of a style (one stage's style tensors): sha256 of its safetensors bytes, hex. */
export const styleHash = stageHash

/** Element types a style tensor may have (the float types of blendable weights). */
const STYLE_DTYPES: ReadonlySet<string> = new Set(['F32', 'F16', 'BF16'])

async function exists (path: string): Promise<boolean> {
  try {
    await access(path)
    return true
  } catch {
    return false
  }
}

/**
 * Stage graphs on disk by content hash, so a graph crosses the wire once per
 * peer however many jobs use it. Writes go to a temp name and are renamed,
 * so a crash never leaves a truncated graph under a valid hash.
 *
 * Styles (a stage's style tensors, DESIGN §1) live in the same folder as
 * `<hash>.safetensors`, their own namespace keyed by the sha256 of those
 * bytes.
 */
export class StageCache {
  private readonly dir: string

  constructor (dir: string) {
    this.dir = dir
  }

  /** Whether a graph is cached, without reading it (a stage graph can be hundreds of MiB). */
  async has (hash: string): Promise<boolean> {
    return HASH.test(hash) && await exists(join(this.dir, `${hash}.onnx`))
  }

  async get (hash: string): Promise<Uint8Array | undefined> {
    if (!HASH.test(hash)) return undefined
    try {
      return await readFile(join(this.dir, `${hash}.onnx`))
    } catch {
      return undefined
    }
  }

  async put (hash: string, bytes: Uint8Array): Promise<void> {
    if (!HASH.test(hash)) throw new LumiereError('BAD_ARGUMENT', `stage hash must be 64 hex digits, got '${hash.slice(0, 80)}'`)
    if (stageHash(bytes) !== hash) throw new LumiereError('BAD_ARGUMENT', `stage bytes do not hash to ${hash}`)
    await this.write(`${hash}.onnx`, bytes)
  }

  async hasStyle (hash: string): Promise<boolean> {
    return HASH.test(hash) && await exists(this.stylePath(hash))
  }

  /** A cached style's tensors (views of the file's bytes), or undefined when not cached. */
  async getStyle (hash: string): Promise<Record<string, Tensor> | undefined> {
    if (!HASH.test(hash)) return undefined
    let bytes: Uint8Array
    try {
      bytes = await readFile(this.stylePath(hash))
    } catch {
      return undefined
    }
    return decodeSafetensors(bytes).tensors
  }

  /**
   * Stores a style's safetensors bytes after checking they hash to `hash`,
   * parse, and hold float tensors only (BAD_ARGUMENT / BAD_SAFETENSORS).
   * Whether they fit a stage is checked when a job uses them.
   */
  async putStyle (hash: string, bytes: Uint8Array): Promise<void> {
    if (!HASH.test(hash)) throw new LumiereError('BAD_ARGUMENT', `style hash must be 64 hex digits, got '${hash.slice(0, 80)}'`)
    if (styleHash(bytes) !== hash) throw new LumiereError('BAD_ARGUMENT', `style bytes do not hash to ${hash}`)
    const { tensors } = decodeSafetensors(bytes)
    for (const [name, t] of Object.entries(tensors)) {
      if (!STYLE_DTYPES.has(t.dtype)) throw new LumiereError('BAD_ARGUMENT', `style tensor '${name.slice(0, 200)}' is ${t.dtype}; style weights are float (F32, F16 or BF16)`)
    }
    await this.write(`${hash}.safetensors`, bytes)
  }

  private stylePath (hash: string): string {
    return join(this.dir, `${hash}.safetensors`)
  }

  private async write (file: string, bytes: Uint8Array): Promise<void> {
    await mkdir(this.dir, { recursive: true })
    const tmp = join(this.dir, `${file}.${process.pid}.${Date.now()}.${Math.random().toString(36).slice(2)}.tmp`)
    await writeFile(tmp, bytes)
    await rename(tmp, join(this.dir, file))
  }

  async count (): Promise<number> {
    try {
      return (await readdir(this.dir)).filter((f) => f.endsWith('.onnx')).length
    } catch {
      return 0
    }
  }
}
