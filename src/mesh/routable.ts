import { isLoopback } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'

/**
 * The addresses of a node worth giving another host: every one that is not
 * loopback (a relay circuit counts by its relay's address), or all of them
 * when there is no other, as on a single-host mesh. Another host dialling a
 * loopback address reaches itself, not the node.
 */
export function routableAddrs (addrs: string[]): string[] {
  const outside = addrs.filter((a) => !isLoopback(multiaddr(a)))
  return outside.length > 0 ? outside : addrs
}
