/**
 * Atomic output for files we write (videos, tensors, packages): everything is written under a hidden
 * temporary name in the destination's own folder (so the final rename stays
 * on one file system) and renamed into place only once complete. A failure
 * or an abort removes the temporary, so no half-written file is ever left
 * under the requested name. (A process killed outright may leave a
 * `.name.*.tmp` behind, never a truncated `name`.)
 */
import { randomBytes } from 'node:crypto'
import { mkdir, open, rename, rm } from 'node:fs/promises'
import { basename, dirname, join, resolve } from 'node:path'
import { LumiereError } from '../errors.ts'

/** A LumiereError FILE_UNWRITABLE for a failed write of `target`, saying what to do. */
export function unwritable (target: string, err: unknown): LumiereError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  const dir = dirname(resolve(target))
  let why: string
  switch (code) {
    case 'ENOENT': why = `folder ${dir} does not exist; create it first (mkdir -p ${dir}) or choose another output path`; break
    case 'ENOTDIR': why = `part of ${dir} is a file, not a folder; choose another output path`; break
    case 'EACCES':
    case 'EPERM': why = `permission denied in ${dir}; choose an output path in a folder you can write to`; break
    case 'EROFS': why = `${dir} is on a read-only file system; choose another output path`; break
    case 'ENOSPC':
    case 'EDQUOT': why = `no space left in ${dir}; free some space or write elsewhere`; break
    case 'EISDIR': why = `${target} is a folder; give a file name (or end the path with / for a folder of PNG frames)`; break
    case 'ENAMETOOLONG': why = 'the path is too long; choose a shorter one'; break
    default: why = err instanceof Error ? err.message : String(err)
  }
  return new LumiereError('FILE_UNWRITABLE', `cannot write ${target}: ${why}`, { cause: err })
}

export function aborted (signal: AbortSignal | undefined): LumiereError {
  const reason: unknown = signal?.reason
  const detail = reason instanceof Error ? `: ${reason.message}` : ''
  return new LumiereError('ABORTED', `write aborted${detail}`, { cause: reason })
}

export function throwIfAborted (signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw aborted(signal)
}

function tempName (target: string, suffix: string): string {
  return join(dirname(target), `.${basename(target)}.${process.pid}-${randomBytes(4).toString('hex')}${suffix}`)
}

/** Creates an empty temporary file next to `target` (this is also the writability check). */
export async function createTempFile (target: string): Promise<string> {
  const tmp = tempName(target, '.tmp')
  try {
    const fh = await open(tmp, 'wx')
    await fh.close()
  } catch (err) {
    throw unwritable(target, err)
  }
  return tmp
}

/** Creates an empty temporary folder inside `parent` (next to `target` when parent is its folder). */
export async function createTempDir (target: string, parent = dirname(target)): Promise<string> {
  try {
    // mkdir (not mkdtemp, which makes 0700) so the final folder gets the usual umask permissions.
    const tmp = join(parent, `.${basename(target)}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`)
    await mkdir(tmp)
    return tmp
  } catch (err) {
    throw unwritable(target, err)
  }
}

/** Best-effort removal of a temporary file or folder. */
export async function discard (tmp: string): Promise<void> {
  await rm(tmp, { recursive: true, force: true }).catch(() => {})
}

/** Renames a finished temporary into place; on failure removes it and throws FILE_UNWRITABLE. */
export async function commit (tmp: string, target: string): Promise<void> {
  try {
    await rename(tmp, target)
  } catch (err) {
    await discard(tmp)
    throw unwritable(target, err)
  }
}

/**
 * Creates a temporary file next to `target` first (so an unwritable path
 * fails before any encoding work), lets `fill` write it, then renames it into
 * place. Any failure removes the temporary and rethrows (non-Lumiere errors
 * as FILE_UNWRITABLE).
 */
export async function withTempFile (target: string, fill: (tmp: string) => Promise<void>): Promise<void> {
  const tmp = await createTempFile(target)
  try {
    await fill(tmp)
  } catch (err) {
    await discard(tmp)
    throw err instanceof LumiereError ? err : unwritable(target, err)
  }
  await commit(tmp, target)
}

/** Writes bytes to a file and flushes them to disk. */
export async function writeAndSync (path: string, bytes: Uint8Array): Promise<void> {
  const fh = await open(path, 'w')
  try {
    await fh.writeFile(bytes)
    await fh.sync()
  } finally {
    await fh.close()
  }
}

/**
 * Fails now with FILE_UNWRITABLE if `target` could not be written later, by
 * creating and removing a temporary beside it: long work checks its outputs
 * before it starts, so a bad path never throws the work away.
 */
export async function assertWritable (target: string): Promise<void> {
  await discard(await createTempFile(target))
}
