import { createHash } from 'node:crypto'
import { mkdir, readFile, rename, writeFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { LumiereError } from '../src/errors.ts'

const HASH = /^[0-9a-f]{64}$/

/** Content address of a stage graph: sha256 of its ONNX bytes, hex. */
export function stageHash (bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

/**
 * Stage graphs on disk by content hash, so a graph crosses the wire once per
 * peer however many jobs use it. Writes go to a temp name and are renamed,
 * so a crash never leaves a truncated graph under a valid hash.
 */
export class StageCache {
  private readonly dir: string

  constructor (dir: string) {
    this.dir = dir
  }

  async has (hash: string): Promise<boolean> {
    return (await this.get(hash)) != null
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
    await mkdir(this.dir, { recursive: true })
    const tmp = join(this.dir, `${hash}.${process.pid}.${Date.now()}.tmp`)
    await writeFile(tmp, bytes)
    await rename(tmp, join(this.dir, `${hash}.onnx`))
  }

  async count (): Promise<number> {
    try {
      return (await readdir(this.dir)).filter((f) => f.endsWith('.onnx')).length
    } catch {
      return 0
    }
  }
}
