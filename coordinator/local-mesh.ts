import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as wait } from 'node:timers/promises'
import { LumiereError } from '../src/errors.ts'
import { loopbackListen } from '../src/mesh/node.ts'
import { EXIT_WITH_PARENT } from '../peer/lifeline.ts'
import { writeIdentity } from '../src/mesh/access.ts'
import type { ChildProcess } from 'node:child_process'
import type { TransportName } from '../src/mesh/node.ts'

const CLI = fileURLToPath(new URL('./cli/main.ts', import.meta.url))

export interface LocalPeer {
  process: ChildProcess
  addrs: string[]
  /** The last 8 KiB the peer wrote to stderr (its logs). */
  stderr: () => string
  stop: () => Promise<void>
}

export interface LocalMesh {
  peers: LocalPeer[]
  stop: () => Promise<void>
}

/** Access settings for local peers (src/mesh/access.ts). */
export interface LocalMeshAccess {
  /** Swarm key bytes: written to the mesh's temp folder (0600) and given to every peer as --psk. */
  psk?: Uint8Array
  /**
   * Peer ids the local peers may connect with (--allow), e.g. the
   * coordinator's. Each peer then gets a fresh identity made here, and the
   * ids of all local peers are added to every peer's list.
   */
  allow?: string[]
  /** Coordinators the local peers take jobs from (--trust). */
  trust?: string[]
}

export interface LocalMeshOptions {
  /** Pre-shared key, allowlist and trust for the peers. */
  access?: LocalMeshAccess
  transport?: TransportName
  cacheDir?: string
  /** Extra `lumiere peer` arguments for peer i (tests: --throttle). */
  extraArgs?: (i: number) => string[]
  env?: NodeJS.ProcessEnv
  startTimeoutMs?: number
  signal?: AbortSignal
}

/**
 * Starts K `lumiere peer` processes on loopback and waits until each has
 * written its address file. `stop` ends them (SIGTERM, then SIGKILL).
 */
export async function startLocalMesh (k: number, options: LocalMeshOptions = {}): Promise<LocalMesh> {
  if (!Number.isInteger(k) || k < 1) throw new LumiereError('BAD_ARGUMENT', `--local needs a whole number of peers ≥ 1, got ${k}`)
  const dir = await mkdtemp(join(tmpdir(), 'lumiere-mesh-'))
  // K peers share this machine's cores; more threads would only contend.
  const threads = Math.max(1, Math.floor(availableParallelism() / k))
  const accessArgs = await localAccessArgs(k, dir, options.access).catch(async (err: unknown) => {
    await rm(dir, { recursive: true, force: true })
    throw err
  })
  const started = await Promise.allSettled(Array.from({ length: k }, async (_, i) => spawnPeer([
    '--listen', loopbackListen(options.transport ?? 'tcp'), '--addr-file', join(dir, `peer-${i}.addrs`), '--threads', String(threads),
    ...(options.cacheDir != null ? ['--cache', options.cacheDir] : []), ...accessArgs(i), ...(options.extraArgs?.(i) ?? [])
  ], options)))
  const peers = started.flatMap((r) => r.status === 'fulfilled' ? [r.value] : [])
  const stop = async (): Promise<void> => {
    await Promise.all(peers.map(async (p) => p.stop()))
    await rm(dir, { recursive: true, force: true })
  }
  const failed = started.find((r) => r.status === 'rejected')
  if (failed != null) {
    await stop()
    throw failed.reason
  }
  return { peers, stop }
}

/** The access arguments of local peer i: --psk (a key file in `dir`), --identity/--allow, --trust. */
async function localAccessArgs (k: number, dir: string, access: LocalMeshAccess = {}): Promise<(i: number) => string[]> {
  const common: string[] = []
  if (access.psk != null) {
    const file = join(dir, 'swarm.key')
    await writeFile(file, access.psk, { mode: 0o600 })
    common.push('--psk', file)
  }
  if (access.trust != null) common.push('--trust', access.trust.join(','))
  if (access.allow == null) return () => common
  const identities = Array.from({ length: k }, (_, i) => join(dir, `peer-${i}.key`))
  const ids = await Promise.all(identities.map(async (file) => writeIdentity(file)))
  const allow = [...new Set([...access.allow, ...ids])].join(',')
  return (i) => [...common, '--identity', identities[i], '--allow', allow]
}

/** Starts one `lumiere peer` process with the given arguments (which must include --addr-file). */
export async function spawnPeer (args: string[], options: Pick<LocalMeshOptions, 'env' | 'startTimeoutMs' | 'signal'> = {}): Promise<LocalPeer> {
  const addrFile = args[args.indexOf('--addr-file') + 1]
  // stdin is a lifeline: when this process dies, the pipe closes and the peer stops (no orphans).
  const child = spawn(process.execPath, [CLI, 'peer', '--quiet', ...args], { stdio: ['pipe', 'ignore', 'pipe'], env: { ...(options.env ?? process.env), [EXIT_WITH_PARENT]: '1' } })
  let log = ''
  child.stderr?.on('data', (d: Buffer) => { log = (log + d.toString()).slice(-8192) })
  const peer = { process: child, addrs: [], stderr: () => log, stop: async () => stopChild(child) }
  try {
    return { ...peer, addrs: await waitForAddrs(child, addrFile, peer.stderr, options.startTimeoutMs ?? 30_000, options.signal) }
  } catch (err) {
    await peer.stop()
    throw err
  }
}

async function waitForAddrs (child: ChildProcess, file: string, stderr: () => string, timeoutMs: number, signal?: AbortSignal): Promise<string[]> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (child.exitCode != null) throw new LumiereError('PEER_UNREACHABLE', `a local peer exited with code ${child.exitCode} before listening: ${stderr().trim().split('\n').pop() ?? ''}`)
    signal?.throwIfAborted()
    const text = await readFile(file, 'utf8').catch(() => '')
    const addrs = text.split('\n').filter((l) => l.length > 0)
    if (addrs.length > 0) return addrs
    await wait(50)
  }
  throw new LumiereError('DEADLINE_EXCEEDED', `a local peer did not start listening within ${timeoutMs / 1000} s`)
}

async function stopChild (child: ChildProcess): Promise<void> {
  if (child.exitCode != null || child.signalCode != null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000)
  await exited
  clearTimeout(timer)
}
