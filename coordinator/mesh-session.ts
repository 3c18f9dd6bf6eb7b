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

/**
 * Runs `work` with a coordinator connected to the mesh: K local peer
 * processes started for it (and stopped after), or the given running peers.
 */
export async function withMesh<T> (options: MeshOptions, work: (mesh: MeshSession) => Promise<T>): Promise<T> {
  if ((options.peers == null) === (options.local == null)) throw new LumiereError('BAD_ARGUMENT', 'give either --local K or --peers ADDR[,ADDR…]')
  let local: LocalMesh | undefined
  const coordinator = await Coordinator.start({ access: options.access })
  try {
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
    const peers = await coordinator.connect(addrs, { signal: options.signal })
    return await work({ coordinator, peers })
  } finally {
    await coordinator.stop()
    await local?.stop()
  }
}

/** The address of a local peer for the chosen transport. */
function pickAddr (addrs: string[], transport: TransportName): string {
  const want = transport === 'tcp' ? '/tcp/' : '/webrtc-direct/'
  const addr = addrs.find((a) => a.includes(want))
  if (addr == null) throw new LumiereError('INTERNAL', `local peer has no ${transport} address: ${addrs.join(' ')}`)
  return addr
}
