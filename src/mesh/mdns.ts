/**
 * mDNS on the LAN (@libp2p/mdns), run beside a mesh node rather than inside
 * it: peers started with --mdns answer queries with their addresses; a
 * discovering coordinator asks every few seconds and hears every answer.
 *
 * Beside, not inside, for two reasons. Inside libp2p a discovered peer is
 * reported once, when it is new to the peer store, so a peer that was not
 * ready to answer `capabilities` the first time, or came back after a
 * restart, would never be tried again. And a peer answers only once its rpc
 * handlers are up (startPeer starts announcing last).
 */
import { mdns } from '@libp2p/mdns'
import type { MulticastDNSComponents } from '@libp2p/mdns'
import type { PeerInfo } from '@libp2p/interface'
import type { MeshNode } from './node.ts'

/**
 * Our own service name rather than libp2p's `_p2p._udp.local`: the LAN's
 * other libp2p nodes (IPFS and the like) neither answer us nor get answers.
 */
export const MDNS_SERVICE_TAG = '_lumiere._udp.local'

/** How often a discovering coordinator asks: a peer started later is found within this. */
export const MDNS_QUERY_INTERVAL_MS = 2_000

/** @libp2p/mdns always asks too; an announcing peer has no use for the answers, so it asks rarely. */
const ANNOUNCER_QUERY_INTERVAL_MS = 10 * 60_000

export interface LanDiscovery {
  stop: () => Promise<void>
}

/** Answers mDNS queries with the node's private and loopback addresses (mDNS never announces public ones). */
export async function announceOnLan (node: MeshNode): Promise<LanDiscovery> {
  return start(node, { broadcast: true, interval: ANNOUNCER_QUERY_INTERVAL_MS })
}

/**
 * Asks the LAN for announcing peers every `intervalMs` and calls `onPeer`
 * with every answer (the same peer again and again; the caller dedups).
 * Answers nothing itself.
 */
export async function queryLan (node: MeshNode, onPeer: (peer: PeerInfo) => void, intervalMs = MDNS_QUERY_INTERVAL_MS): Promise<LanDiscovery> {
  return start(node, { broadcast: false, interval: intervalMs }, onPeer)
}

async function start (node: MeshNode, init: { broadcast: boolean, interval: number }, onPeer?: (peer: PeerInfo) => void): Promise<LanDiscovery> {
  // The two components @libp2p/mdns uses: the addresses it announces (read at each query) and a logger.
  const components = {
    addressManager: { getAddresses: () => node.getMultiaddrs() } as unknown as MulticastDNSComponents['addressManager'],
    logger: node.logger
  }
  const discovery = mdns({ serviceTag: MDNS_SERVICE_TAG, ...init })(components) as ReturnType<ReturnType<typeof mdns>> & { start: () => Promise<void>, stop: () => Promise<void> }
  if (onPeer != null) {
    discovery.addEventListener('peer', (evt) => {
      if (!evt.detail.id.equals(node.peerId)) onPeer(evt.detail)
    })
  }
  await discovery.start()
  return { stop: async () => { await discovery.stop() } }
}
