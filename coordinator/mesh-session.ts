import { LumiereError } from '../src/errors.ts'
import { Coordinator } from './coordinator.ts'
import { startLocalMesh } from './local-mesh.ts'
import type { PeerInfo } from './coordinator.ts'
import type { LocalMesh } from './local-mesh.ts'
import type { TransportName } from '../src/mesh/node.ts'
import type { AccessConfig } from '../src/mesh/access.ts'

export interface MeshOptions {
  /** Multiaddrs of running peers. */
  peers?: string[]
  /** Start this many peer processes on loopback instead. */
  local?: number
  /**
   * Wait for this many peers that find the coordinator on their own: mDNS
   * answers on the LAN, and join requests when it listens (`listen`). More
   * that come later are admitted into running jobs (Coordinator.admit).
   */
  discover?: number
  /** How long to wait for the `discover` peers (default 60 s). */
  discoverTimeoutMs?: number
  /** Multiaddrs the coordinator listens on, for peers that join it (`lumiere peer --join`). */
  listen?: string[]
  /** Run a circuit relay for joining peers behind NAT (needs `listen`). */
  relay?: boolean
  /** Called with the coordinator's full addresses once it listens (the CLI prints them, for --join). */
  onListening?: (addrs: string[]) => void
  /**
   * Run on this coordinator, and leave it running, instead of starting one:
   * `lumiere serve` runs every job on its long-lived coordinator.
   */
  coordinator?: Coordinator
  transport?: TransportName
  signal?: AbortSignal
  /** Extra `lumiere peer` arguments for local peer i (tests, demos: --throttle). */
  localPeerArgs?: (i: number) => string[]
  /**
   * The coordinator's pre-shared key, peer allowlist and identity (access.ts).
   * Local peers get the same key, take jobs only from this coordinator
   * (--trust), and with an allowlist are let in by the coordinator (and
   * allow it and each other).
   */
  access?: AccessConfig
}

export interface MeshSession {
  coordinator: Coordinator
  peers: PeerInfo[]
}

/** A coordinator with its given peers connected; `close` stops what it started. */
export interface OpenMesh extends MeshSession {
  close: () => Promise<void>
}

export const DEFAULT_DISCOVER_TIMEOUT_MS = 60_000

/**
 * Runs `work` with a coordinator connected to the mesh: K local peer
 * processes started for it (and stopped after), the given running peers,
 * and/or the peers that find it (`discover`). `opening`: a mesh already
 * being opened with these options (openMesh), so that its start-up
 * overlapped the caller's own preparation.
 */
export async function withMesh<T> (options: MeshOptions, work: (mesh: MeshSession) => Promise<T>, opening?: Promise<OpenMesh>): Promise<T> {
  const mesh = await (opening ?? openMesh(options))
  try {
    return await work({ coordinator: mesh.coordinator, peers: await meshPeers(mesh, options) })
  } finally {
    await mesh.close()
  }
}

/**
 * Starts the coordinator (unless given one) and connects the peers named by
 * `local` or `peers`; discovered peers keep arriving on its `discovery`.
 */
export async function openMesh (options: MeshOptions): Promise<OpenMesh> {
  checkMeshSources(options)
  const own = options.coordinator == null
  const coordinator = options.coordinator ?? await Coordinator.start({ access: options.access, listen: options.listen, relay: options.relay, mdns: options.discover != null })
  let local: LocalMesh | undefined
  const close = async (): Promise<void> => {
    if (own) await coordinator.stop()
    await local?.stop()
  }
  try {
    if (own && (options.listen?.length ?? 0) > 0) options.onListening?.(coordinator.addrs())
    if (options.local != null) {
      const self = coordinator.node.peerId.toString()
      const access = { psk: options.access?.psk, trust: [self], ...(coordinator.allow != null ? { allow: [self] } : {}) }
      local = await startLocalMesh(options.local, { transport: options.transport, signal: options.signal, extraArgs: options.localPeerArgs, access })
      for (const p of local.peers) for (const a of p.addrs) {
        const id = a.split('/p2p/')[1]
        if (id != null) coordinator.allow?.add(id)
      }
    }
    const addrs = local != null ? local.peers.map((p) => pickAddr(p.addrs, options.transport ?? 'tcp')) : (options.peers ?? [])
    return { coordinator, peers: await coordinator.connect(addrs, { signal: options.signal }), close }
  } catch (err) {
    await close()
    throw err
  }
}

/** Checks that the options name where the peers come from, in a combination that makes sense (BAD_ARGUMENT). */
export function checkMeshSources (options: Pick<MeshOptions, 'local' | 'peers' | 'discover'>): void {
  if (options.local != null && (options.peers != null || options.discover != null)) throw new LumiereError('BAD_ARGUMENT', '--local starts its own peers: give it alone, or --peers ADDR[,ADDR…] and/or --discover N without it')
  if (options.local == null && options.peers == null && options.discover == null) throw new LumiereError('BAD_ARGUMENT', 'give --local K, --peers ADDR[,ADDR…] or --discover N')
}

/** The mesh's peers for a job: the connected ones, and with `discover`, the discovered ones once there are that many. */
async function meshPeers (mesh: OpenMesh, options: MeshOptions): Promise<PeerInfo[]> {
  const discovery = mesh.coordinator.discovery
  if (options.discover == null) return mesh.peers
  if (discovery == null) throw new LumiereError('INTERNAL', 'the coordinator was started without discovery')
  const found = await discovery.waitFor(options.discover, { signal: options.signal, timeoutMs: options.discoverTimeoutMs ?? DEFAULT_DISCOVER_TIMEOUT_MS })
  const ids = new Set(mesh.peers.map((p) => p.id))
  return [...mesh.peers, ...found.filter((p) => !ids.has(p.id))]
}

/** The address of a local peer for the chosen transport. */
function pickAddr (addrs: string[], transport: TransportName): string {
  const want = transport === 'tcp' ? '/tcp/' : '/webrtc-direct/'
  const addr = addrs.find((a) => a.includes(want))
  if (addr == null) throw new LumiereError('INTERNAL', `local peer has no ${transport} address: ${addrs.join(' ')}`)
  return addr
}
