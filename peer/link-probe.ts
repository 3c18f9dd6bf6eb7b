/**
 * Link probes: how fast this peer reaches another one, measured on the path
 * the pipeline's activations take (a direct libp2p connection, a fresh
 * stream per message, the tensor frame code of run.push).
 *
 * The coordinator asks peer A (`link.probe` { to: B, addrs, bytes }, an rpc
 * job request: with --trust only trusted coordinators may ask, since it
 * makes A dial and send). A then
 *   1. pings B over rpc: one ping to open the connection, then PINGS timed
 *      ones; latency = half the fastest round trip (a message pays it once,
 *      one way);
 *   2. sends `bytes` to B as one tensor frame on LINK_PROBE_PROTOCOL, SENDS
 *      times, each timed until B acknowledges having read it all; bandwidth
 *      = bytes / (the fastest time − one round trip).
 *
 * B's end (handleLinkSink) is not an rpc request because a peer with --trust
 * refuses every rpc job request from other peers, and A is one. It takes
 * probes from any node that can connect (--psk and --allow still apply):
 * it reads at most MAX_PROBE_BYTES and drops them, which costs no more than
 * what any connected node can already push into a yamux window.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { LumiereError } from '../src/errors.ts'
import { LINK_PROBE_PROTOCOL } from '../protocol/ids.ts'
import { MAX_PROBE_BYTES } from '../protocol/messages.ts'
import { rpcCall } from '../protocol/rpc.ts'
import { StreamReader, packMessage, readPrefixed, sendPrefixed, streamError, unpackMessage } from '../protocol/stream-io.ts'
import { readTensorFrame, writeTensorFrame } from '../protocol/tensor-frame.ts'
import type { RpcHandler, RpcTarget } from '../protocol/rpc.ts'
import type { EgressThrottle } from './egress-throttle.ts'
import type { ResponseBody } from '../protocol/messages.ts'
import type { MeshNode } from '../src/mesh/node.ts'
import type { Tensor } from '../src/tensor/tensor.ts'
import type { Multiaddr } from '@multiformats/multiaddr'

/** Timed pings after the one that opens the connection. */
const PINGS = 5
/** Timed sends of the payload; the fastest counts (a loaded host only ever slows one down). */
const SENDS = 2
const PING_TIMEOUT_MS = 10_000
/** Time the receiving end allows one probe to arrive. */
const SINK_TIMEOUT_MS = 60_000
/** Probe streams one connection may have open at once on the receiving end. */
const SINK_STREAMS_PER_CONNECTION = 2
/** Largest acknowledgement accepted. */
const MAX_ACK_BYTES = 4096

export interface ProbeOptions {
  signal?: AbortSignal
  /** Testing only: this peer's simulated slow uplink (egress-throttle.ts). */
  egress?: EgressThrottle
}

/** Where to dial `to`: its addresses, each checked to name `to` (or made to), else the peer id alone. */
function probeTarget (to: string, addrs: string[]): RpcTarget {
  if (addrs.length === 0) return peerIdFromString(to)
  return addrs.map((addr): Multiaddr => {
    let ma: Multiaddr
    try {
      ma = multiaddr(addr)
    } catch {
      throw new LumiereError('BAD_ARGUMENT', `link probe: '${addr.slice(0, 200)}' is not a multiaddr`)
    }
    const id = ma.getComponents().findLast((c) => c.name === 'p2p')?.value
    if (id == null) return ma.encapsulate(`/p2p/${to}`)
    if (id !== to) throw new LumiereError('BAD_ARGUMENT', `link probe: address ${addr.slice(0, 200)} is not one of peer ${to}`)
    return ma
  })
}

/** Measures the link from this node to peer `to` (see the file comment). */
export async function measureLink (node: MeshNode, to: string, addrs: string[], bytes: number, options: ProbeOptions = {}): Promise<ResponseBody<'link.probe'>> {
  const { signal, egress } = options
  if (!Number.isInteger(bytes) || bytes < 1 || bytes > MAX_PROBE_BYTES) throw new LumiereError('TOO_LARGE', `a link probe sends 1..${MAX_PROBE_BYTES} bytes, not ${bytes}; ask for fewer`)
  if (to === node.peerId.toString()) throw new LumiereError('BAD_ARGUMENT', 'a peer cannot probe the link to itself')
  const target = probeTarget(to, addrs)
  let rtt = Infinity
  for (let i = 0; i <= PINGS; i++) {
    const start = performance.now()
    await rpcCall(node, target, 'ping', {}, { signal, timeoutMs: PING_TIMEOUT_MS })
    if (i > 0) rtt = Math.min(rtt, (performance.now() - start) / 1000)
  }
  const payload: Tensor = { dtype: 'U8', shape: [bytes], data: new Uint8Array(bytes) }
  let seconds = Infinity
  for (let i = 0; i < SENDS; i++) {
    const start = performance.now()
    await egress?.hold(bytes, signal)
    await sendProbe(node, target, payload, signal)
    seconds = Math.min(seconds, (performance.now() - start) / 1000)
  }
  // Noise can make the round trip look as long as the whole send; never claim more than twice the raw rate.
  return { bandwidth: bytes / Math.max(seconds - rtt, seconds / 2), latency: rtt / 2 }
}

/** One tensor frame to the receiving end, resolved when it acknowledges having read it. */
async function sendProbe (node: MeshNode, target: RpcTarget, payload: Tensor, signal?: AbortSignal): Promise<void> {
  const where = `link probe to ${Array.isArray(target) ? String(target[0]) : String(target)}`
  let stream
  try {
    stream = await node.dialProtocol(target, LINK_PROBE_PROTOCOL, { signal })
  } catch (err) {
    signal?.throwIfAborted()
    if (err instanceof Error && err.name === 'UnsupportedProtocolError') throw new LumiereError('PROTOCOL', `${where}: the peer does not take link probes (an older version?)`, { cause: err })
    throw new LumiereError('PEER_UNREACHABLE', `${where}: cannot dial: ${(err as Error)?.message ?? String(err)}`, { cause: err })
  }
  const s = stream
  const reader = new StreamReader(s)
  try {
    const writing = (async () => {
      await writeTensorFrame(s, 'probe', payload, { signal })
      await s.close({ signal })
    })()
    const written = writing.then(() => undefined, (err: unknown) => err)
    const ack = unpackMessage(await readPrefixed(reader, MAX_ACK_BYTES, 'link probe acknowledgement', signal), 'link probe acknowledgement') as { bytes?: unknown }
    if (ack?.bytes !== payload.data.byteLength) throw new LumiereError('PROTOCOL', `${where}: the peer acknowledged ${String(ack?.bytes)} bytes of ${payload.data.byteLength}`)
    const writeError = await written
    if (writeError != null) throw writeError
  } catch (err) {
    const typed = streamError(err, where)
    if (s.status === 'open') s.abort(typed)
    throw typed
  } finally {
    reader.release()
  }
}

/** Serves the receiving end of link probes on `node` (see the file comment). */
export async function handleLinkSink (node: MeshNode): Promise<void> {
  await node.handle(LINK_PROBE_PROTOCOL, async (stream) => {
    const reader = new StreamReader(stream)
    const signal = AbortSignal.timeout(SINK_TIMEOUT_MS)
    try {
      const { tensor } = await readTensorFrame(reader, { maxBytes: MAX_PROBE_BYTES, signal })
      await sendPrefixed(stream, packMessage({ bytes: tensor.data.byteLength }), signal)
      await stream.close({ signal })
    } catch (err) {
      if (stream.status === 'open') stream.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      reader.release()
    }
  }, { maxInboundStreams: SINK_STREAMS_PER_CONNECTION })
}

/**
 * The `link.probe` rpc handler: one probe at a time on this peer (two at once
 * would each measure half the link); another one meanwhile is BUSY.
 */
export function linkProbeHandler (node: MeshNode, options: Omit<ProbeOptions, 'signal'> = {}): RpcHandler<'link.probe'> {
  let probing = false
  return async ({ body, signal }) => {
    if (probing) throw new LumiereError('BUSY', 'this peer is probing another link; probes run one at a time, retry when it is done')
    probing = true
    try {
      return { body: await measureLink(node, body.to, body.addrs, body.bytes, { ...options, signal }) }
    } finally {
      probing = false
    }
  }
}
