// Measured links (coordinator/links.ts, peer/link-probe.ts): peers probe
// each other on loopback, deployments plan with the numbers, and a peer
// with a slow uplink (--egress-throttle) is kept off the big boundaries.
import t from 'tap'
import { multiaddr } from '@multiformats/multiaddr'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { Coordinator } from '../coordinator/coordinator.ts'
import { deploy } from '../coordinator/deploy.ts'
import { linkTable, measureLinks } from '../coordinator/links.ts'
import { startLocalMesh } from '../coordinator/local-mesh.ts'
import { transferSeconds } from '../coordinator/plan.ts'
import { ENVELOPE_VERSION, LINK_PROBE_PROTOCOL, RPC_PROTOCOL } from '../protocol/ids.ts'
import { MAX_PROBE_BYTES } from '../protocol/messages.ts'
import { rpcCall } from '../protocol/rpc.ts'
import { StreamReader, packMessage, readPrefixed, sendPrefixed, unpackMessage } from '../protocol/stream-io.ts'
import { readIdentity, writeIdentity } from '../src/mesh/access.ts'
import { GraphBuilder } from '../src/onnx/builder.ts'
import { buildDagProbed } from '../src/onnx/graph.ts'
import { runModel } from '../src/onnx/run.ts'
import { convSkipNet, randomInputs } from './fixtures/graphs.ts'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import type { PeerInfo } from '../coordinator/coordinator.ts'
import type { LinkMatrix, ProbeEvent } from '../coordinator/links.ts'
import type { Plan } from '../coordinator/plan.ts'
import type { Tensor } from '../src/tensor/tensor.ts'

const PROBE_BYTES = 1024 * 1024

function plausible (t: Test, links: LinkMatrix, peers: PeerInfo[]): void {
  for (const from of peers) {
    for (const to of peers) {
      if (from === to) continue
      const link = links[from.id]?.[to.id]
      t.ok(link != null && link.bandwidth > 1e5 && link.bandwidth < 1e12 && link.latency > 0 && link.latency < 1,
        `${from.id.slice(-4)} → ${to.id.slice(-4)}: ${link == null ? 'missing' : `${(link.bandwidth / 1e6).toFixed(1)} MB/s, ${(link.latency * 1e3).toFixed(2)} ms`}`)
    }
  }
}

function same (a: Record<string, Tensor>, b: Record<string, Tensor>): boolean {
  return Object.keys(b).every((name) => Buffer.from(a[name].data).equals(Buffer.from(b[name].data)))
}

t.test('probes, the link matrix, its cache, and plans made with it (peers with --trust)', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'lumiere-links-'))
  const key = join(dir, 'coordinator.identity')
  const trustedId = await writeIdentity(key)
  const mesh = await startLocalMesh(3, { access: { trust: [trustedId] } })
  const coordinator = await Coordinator.start({ access: { privateKey: await readIdentity(key) } })
  const stranger = await Coordinator.start()
  t.teardown(async () => { await Promise.all([coordinator.stop(), stranger.stop()]); await mesh.stop() })
  const peers = await coordinator.connect(mesh.peers.map((p) => p.addrs[0]))
  const table = linkTable(coordinator)

  const model = convSkipNet()
  const inputs = randomInputs(model, 5)
  const reference = await runModel(model, inputs)
  const dag = await buildDagProbed(model, { inputs })

  const first = await deploy(coordinator, model, dag, peers.slice(0, 2), 2, undefined, undefined, { probeBytes: PROBE_BYTES })
  t.teardown(async () => { await first.pipeline.close() })
  t.equal(table.probes, 2, 'two peers: both directions probed')
  plausible(t, first.links, peers.slice(0, 2))
  // The plan's transfer figure is exactly what the measured link predicts for its boundary.
  const plan: Plan = first.plan
  const [s0, s1] = plan.stages
  const link = first.links[s0.peer][s1.peer]
  const bytes = s1.inputs.filter((x) => x.from === 0).reduce((n, x) => n + x.bytes, 0)
  t.ok(bytes > 0 && Math.abs((s1.transferSeconds ?? 0) - transferSeconds(link, bytes)) < 1e-12, `stage 2 receives ${bytes} B over the measured link: ${s1.transferSeconds} s`)
  t.ok(same(await first.pipeline.run(inputs, { timeoutMs: 60_000 }), reference), 'the pipeline equals one session, bit for bit')

  const again = await deploy(coordinator, model, dag, peers.slice(0, 2), 2, undefined, undefined, { probeBytes: PROBE_BYTES })
  await again.pipeline.close()
  t.equal(table.probes, 2, 'a second deployment probes nothing')
  t.same(again.links, first.links, 'and plans with the same links')

  const grown = await deploy(coordinator, model, dag, peers, 3, undefined, undefined, { probeBytes: PROBE_BYTES })
  t.teardown(async () => { await grown.pipeline.close() })
  t.equal(table.probes, 6, 'a third peer: only its 4 links are probed')
  plausible(t, grown.links, peers)
  t.ok(same(await grown.pipeline.run(inputs, { timeoutMs: 60_000 }), reference), 'K = 3 equals one session, bit for bit')

  const off = await deploy(coordinator, model, dag, peers, 3, undefined, undefined, { measureLinks: false })
  await off.pipeline.close()
  t.same(off.links, {}, 'measureLinks: false plans without links')
  t.notOk(off.plan.stages.some((s) => (s.transferSeconds ?? 0) > 0), 'and charges no transfer time')

  // A peer that cannot be reached: both probes fail, the links stay unknown, nothing is retried.
  const ghostId = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
  const ghost: PeerInfo = { ...peers[0], id: ghostId, addrs: [`/ip4/127.0.0.1/tcp/9/p2p/${ghostId}`] }
  const events: ProbeEvent[] = []
  const withGhost = await measureLinks(coordinator, [peers[0], ghost], { probeBytes: PROBE_BYTES, onProbe: (e) => { events.push(e) } })
  t.same(events.map((e) => e.error?.code), ['PEER_UNREACHABLE', 'PEER_UNREACHABLE'], 'both directions fail as unreachable')
  t.same(withGhost, {}, 'and are left out of the matrix')
  await measureLinks(coordinator, [peers[0], ghost], { onProbe: (e) => { events.push(e) } })
  t.equal(events.length, 2, 'a failed pair is not probed again')

  // The requests themselves, from the network.
  const [a, b] = peers
  const at = multiaddr(a.addrs[0])
  await t.rejects(rpcCall(coordinator.node, at, 'link.probe', { to: b.id, addrs: b.addrs, bytes: MAX_PROBE_BYTES + 1 }), { code: 'BAD_ARGUMENT', message: /body\.bytes: Too big/ }, 'an oversized probe is not even sent')
  const raw = await coordinator.node.dialProtocol(at, RPC_PROTOCOL)
  const rawReader = new StreamReader(raw)
  await sendPrefixed(raw, packMessage({ v: ENVELOPE_VERSION, id: 'big', type: 'link.probe', deadline: Date.now() + 10_000, tensors: 0, body: { to: b.id, addrs: b.addrs, bytes: 2 ** 40 } }))
  t.match(unpackMessage(await readPrefixed(rawReader, 65536, 'response', AbortSignal.timeout(10_000)), 'response'), { ok: false, error: { code: 'PROTOCOL', message: /body\.bytes: Too big/ } }, 'a peer refuses an absurd probe size from the network')
  rawReader.release()
  await t.rejects(rpcCall(coordinator.node, at, 'link.probe', { to: a.id, addrs: a.addrs, bytes: 1 }), { code: 'BAD_ARGUMENT', message: /itself/ }, 'a peer does not probe itself')
  await t.rejects(rpcCall(coordinator.node, at, 'link.probe', { to: b.id, addrs: a.addrs, bytes: 1 }), { code: 'BAD_ARGUMENT', message: /not one of peer/ }, 'addresses must be those of the peer probed')
  await t.rejects(rpcCall(stranger.node, at, 'link.probe', { to: b.id, addrs: b.addrs, bytes: 1 }, { timeoutMs: 10_000 }), { code: 'UNTRUSTED' }, 'an untrusted coordinator cannot make a peer probe')
  const direct = await rpcCall(coordinator.node, at, 'link.probe', { to: b.id, addrs: [], bytes: 4096 })
  t.ok(direct.body.bandwidth > 0 && direct.body.latency > 0, 'no addresses: the peer dials by id over the connection it has')

  // The receiving end refuses a frame over the cap before reading it.
  const sink = await stranger.node.dialProtocol(multiaddr(b.addrs[0]), LINK_PROBE_PROTOCOL)
  const reader = new StreamReader(sink)
  const size = MAX_PROBE_BYTES + 1
  await sendPrefixed(sink, packMessage({ name: 'probe', dtype: 'U8', shape: [size], byteLength: size }))
  await t.rejects(readPrefixed(reader, 4096, 'ack', AbortSignal.timeout(10_000)), { code: 'PEER_LOST' }, 'an oversized probe frame is reset, unread and unacknowledged')
  reader.release()
})

/** x (1 MiB) → Relu → Neg → ReduceMean (4 B) → Sigmoid: two big boundaries, then small ones. */
function bigThenSmall (): ReturnType<GraphBuilder['model']> {
  const n = 256 * 1024
  const g = new GraphBuilder('bigThenSmall')
  const x = g.input('x', 'F32', [1, n])
  const big = g.op('Neg', [g.op('Relu', [x])])
  g.output(g.op('Sigmoid', [g.op('ReduceMean', [big], { axes: [1], keepdims: 1 })], {}, 'out'), 'F32', [1, 1])
  return g.model({ opset: 17 })
}

t.test('a throttled uplink measures slow and carries only the smallest boundary', async (t) => {
  const throttle = 4e6
  // Peer 0 is fast; peers 1 and 2 send at most 4 MB/s. With K = 3 one of them must send to another peer.
  const mesh = await startLocalMesh(3, { extraArgs: (i) => i > 0 ? ['--egress-throttle', String(throttle)] : [] })
  const coordinator = await Coordinator.start()
  t.teardown(async () => { await coordinator.stop(); await mesh.stop() })
  const peers = await coordinator.connect(mesh.peers.map((p) => p.addrs[0]))
  const [fast, ...slow] = peers

  const model = bigThenSmall()
  const inputs = randomInputs(model, 9)
  const reference = await runModel(model, inputs)
  const dag = await buildDagProbed(model, { inputs })
  // Throttled peers listed first: only the links can move them off the front.
  const { plan, pipeline, links } = await deploy(coordinator, model, dag, [...slow, fast], 3, undefined, undefined, { probeBytes: PROBE_BYTES })
  t.teardown(async () => { await pipeline.close() })

  plausible(t, links, peers)
  let slowest = 0
  for (const s of slow) {
    for (const to of peers) {
      if (to === s) continue
      const bw = links[s.id][to.id].bandwidth
      slowest = Math.max(slowest, bw)
      t.ok(bw <= throttle * 1.05, `throttled ${s.id.slice(-4)} → ${to.id.slice(-4)}: ${(bw / 1e6).toFixed(2)} MB/s ≤ ${throttle / 1e6} MB/s`)
    }
  }
  for (const to of slow) {
    const bw = links[fast.id][to.id].bandwidth
    t.ok(bw > 3 * slowest, `fast ${fast.id.slice(-4)} → ${to.id.slice(-4)}: ${(bw / 1e6).toFixed(1)} MB/s, > 3× any throttled link`)
  }

  t.equal(plan.stages[0].peer, fast.id, 'the fast peer takes the first stage and sends the 1 MiB boundary')
  const peerOf = (s: number | 'input' | 'output'): string | undefined => typeof s === 'number' ? plan.stages[s].peer : undefined
  const sent = plan.boundaries.filter((bd) => typeof bd.from === 'number' && typeof bd.to === 'number' && bd.local !== true && slow.some((p) => p.id === peerOf(bd.from)))
  t.ok(sent.length >= 1, 'a throttled peer does send to another peer')
  for (const bd of sent) t.equal(bd.bytes, 4, `throttled ${peerOf(bd.from)?.slice(-4)} sends only ${bd.names.join(', ')} (${bd.bytes} B)`)
  t.ok(same(await pipeline.run(inputs, { timeoutMs: 60_000 }), reference), 'the pipeline equals one session, bit for bit')
})
