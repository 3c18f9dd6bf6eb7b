import { homedir } from 'node:os'
import { join } from 'node:path'

/** Root of everything lumiere caches on this machine (stage graphs, built models). */
export function cacheRoot (): string {
  if (process.env.LUMIERE_CACHE != null) return process.env.LUMIERE_CACHE
  return join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'lumiere')
}

export function stageCacheDir (): string {
  return join(cacheRoot(), 'stages')
}
