import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as wait } from 'node:timers/promises'
import { LumiereError } from '../src/errors.ts'
import { loopbackListen } from '../src/mesh/node.ts'
import type { ChildProcess } from 'node:child_process'
import type { TransportName } from '../src/mesh/node.ts'

const CLI = fileURLToPath(new URL('./cli/main.ts', import.meta.url))

export interface LocalPeer {
  process: ChildProcess
  addrs: string[]
}

export interface LocalMesh {
  peers: LocalPeer[]
  stop: () => Promise<void>
}

export interface LocalMeshOptions {
  transport?: TransportName
  cacheDir?: string
  /** Extra `lumiere peer` arguments for peer i (tests: --throttle, --faulty). */
  extraArgs?: (i: number) => string[]
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
  const transport = options.transport ?? 'tcp'
  // K peers share this machine's cores; more threads would only contend.
  const threads = Math.max(1, Math.floor(availableParallelism() / k))
  const children: ChildProcess[] = []
  const stop = async (): Promise<void> => {
    await Promise.all(children.map(stopChild))
    await rm(dir, { recursive: true, force: true })
  }
  try {
    const peers = await Promise.all(Array.from({ length: k }, async (_, i) => {
      const addrFile = join(dir, `peer-${i}.addrs`)
      const args = [CLI, 'peer', '--listen', loopbackListen(transport), '--addr-file', addrFile, '--quiet', '--threads', String(threads),
        ...(options.cacheDir != null ? ['--cache', options.cacheDir] : []), ...(options.extraArgs?.(i) ?? [])]
      const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] })
      children.push(child)
      let stderr = ''
      child.stderr?.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-2000) })
      const addrs = await waitForAddrs(child, addrFile, () => stderr, options.startTimeoutMs ?? 30_000, options.signal)
      return { process: child, addrs }
    }))
    return { peers, stop }
  } catch (err) {
    await stop()
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
