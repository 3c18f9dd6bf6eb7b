// Access control (src/mesh/access.ts): keygen, the pre-shared key on TCP, the
// peer-id allowlist on TCP and WebRTC-direct, and --trust on peers.
import { mkdtemp, readFile, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import './fixtures/exit-when-done.ts'
import { multiaddr } from '@multiformats/multiaddr'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { Coordinator } from '../coordinator/coordinator.ts'
import { deploy } from '../coordinator/deploy.ts'
import { inferOnMesh } from '../coordinator/infer.ts'
import { spawnPeer, startLocalMesh } from '../coordinator/local-mesh.ts'
import { stageHash } from '../peer/stage-cache.ts'
import { handleRpc, rpcCall } from '../protocol/rpc.ts'
import { checkTrust, readAllowlist, readIdentity, readSwarmKey, writeIdentity, writeSwarmKey } from '../src/mesh/access.ts'
import { createMeshNode, loopbackListen } from '../src/mesh/node.ts'
import { encodeModel, saveModel } from '../src/onnx/model-io.ts'
import { buildDagProbed } from '../src/onnx/graph.ts'
import { runModel } from '../src/onnx/run.ts'
import { runCli } from './fixtures/cli.ts'
import { convSkipNet, randomInputs } from './fixtures/graphs.ts'
import { maxAbs, maxAbsDiff } from './fixtures/stages.ts'
import type { MeshNode, TransportName } from '../src/mesh/node.ts'

const dir = await mkdtemp(join(tmpdir(), 'lumiere-access-'))
const newPeerId = async (): Promise<string> => peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()

// A WebRTC-direct dial that the remote refuses after its handshake sometimes
// leaves the DIALER's native node-datachannel peer connection alive after
// node.stop() (node-datachannel#366; the refusing side leaks nothing: 150
// refused dials leave a gated peer's threads and fds as they were), which would
// keep this test process from exiting. Close what is left once all tests ran.
t.teardown(async () => {
  const ndc = await import('node-datachannel').catch(() => null) as { cleanup?: () => void } | null
  ndc?.cleanup?.()
})

t.test('keygen writes a 0600 swarm key or identity and never overwrites', async (t) => {
  const key = join(dir, 'cli.key')
  const id = join(dir, 'cli.identity')
  const [made, ident] = await Promise.all([runCli(['keygen', '--out', key]), runCli(['keygen', '--identity', '--out', id])])
  t.equal(made.code, 0, made.stderr)
  t.equal((await stat(key)).mode & 0o777, 0o600, 'mode 0600')
  t.match(await readFile(key, 'utf8'), /^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}$/, 'the @libp2p/pnet swarm key format')
  await readSwarmKey(key)
  const before = await readFile(key)
  await t.rejects(writeSwarmKey(key), { code: 'FILE_UNWRITABLE', message: /already exists/ })
  await t.rejects(writeIdentity(key), { code: 'FILE_UNWRITABLE', message: /already exists/ })
  t.same(await readFile(key), before, 'the existing key is untouched')

  t.equal(ident.code, 0, ident.stderr)
  t.equal((await stat(id)).mode & 0o777, 0o600, 'identity mode 0600')
  t.equal(peerIdFromString(ident.stdout.trim()).toString(), ident.stdout.trim(), 'prints the peer id')
  t.equal(peerIdFromPrivateKey(await readIdentity(id)).toString(), ident.stdout.trim(), 'the file holds that identity')

  await t.rejects(readSwarmKey(id), { code: 'BAD_ARGUMENT', message: /not a libp2p swarm key/ })
  await t.rejects(readSwarmKey(join(dir, 'missing')), { code: 'FILE_NOT_FOUND' })
})

t.test('--allow / --allow-file parsing', async (t) => {
  const a = await newPeerId()
  const file = join(dir, 'allow.txt')
  await (await import('node:fs/promises')).writeFile(file, `# the coordinator\n${a}\n\n`)
  t.same([...(await readAllowlist(undefined, file)) ?? []], [a])
  t.equal(await readAllowlist(undefined, undefined), undefined, 'no flag: anyone')
  await t.rejects(readAllowlist(['nope'], undefined), { code: 'BAD_ARGUMENT', message: /'nope' is not a peer id/ })
  t.throws(() => { checkTrust({ trusted: new Set([a]) }, 'job.setup', 'someone', undefined) }, { code: 'UNTRUSTED' })
  t.doesNotThrow(() => { checkTrust({ trusted: new Set([a]) }, 'capabilities', 'someone', undefined) })
  t.doesNotThrow(() => { checkTrust({}, 'job.setup', 'someone', undefined) }, 'no --trust: any coordinator')
})

t.test('pre-shared key: a live peer with --psk refuses TCP without the same key', async (t) => {
  const k1 = join(dir, 'k1.key')
  const k2 = join(dir, 'k2.key')
  await writeSwarmKey(k1)
  await writeSwarmKey(k2)
  const peer = await spawnPeer(['--listen', loopbackListen('tcp'), '--addr-file', join(dir, 'psk.addrs'), '--cache', join(dir, 'psk-cache'), '--threads', '1', '--psk', k1])
  t.teardown(peer.stop)
  const addr = peer.addrs[0]

  const tryWith = async (access: Parameters<typeof Coordinator.start>[0]): Promise<unknown> => {
    const coordinator = await Coordinator.start(access)
    try {
      return await coordinator.connect([addr], { timeoutMs: 10_000 })
    } finally {
      await coordinator.stop()
    }
  }
  const started = performance.now()
  await t.rejects(tryWith({}), { code: 'PEER_UNREACHABLE', message: /--psk/ }, 'no key: PEER_UNREACHABLE naming --psk')
  await t.rejects(tryWith({ access: { psk: await readSwarmKey(k2) } }), { code: 'PEER_UNREACHABLE', message: /pre-shared key/ }, 'another key: PEER_UNREACHABLE, the key mismatch named')
  t.ok(performance.now() - started < 5_000, `both refusals were immediate (${(performance.now() - started).toFixed(0)} ms), not timeouts`)
  const [info] = await tryWith({ access: { psk: await readSwarmKey(k1) } }) as Array<{ id: string }>
  t.equal(addr.endsWith(info.id), true, 'the same key: connected')

  // The CLI flags of a coordinator command (plan --peers) reach its node too.
  const bad = await runCli(['plan', '--model', 'tiny', '--peers', addr, '--psk', k2])
  t.equal(bad.code, 1, 'plan --peers with another --psk fails')
  t.match(bad.stderr, /error \[PEER_UNREACHABLE\]: .*pre-shared key/)
})

t.test('allowlist: unlisted peers cannot connect over TCP nor WebRTC-direct', async (t) => {
  const listed = await createMeshNode()
  const unlisted = await createMeshNode()
  const server = await createMeshNode({
    listen: [loopbackListen('tcp'), loopbackListen('webrtc')],
    access: { allow: new Set([listed.peerId.toString()]) }
  })
  t.teardown(async () => { await Promise.all([listed.stop(), unlisted.stop(), server.stop()]) })
  await handleRpc(server, { ping: async () => ({ body: { time: Date.now() } }) })
  const addrOf = (node: MeshNode, transport: TransportName) => node.getMultiaddrs().find((a) => a.toString().includes(transport === 'tcp' ? '/tcp/' : '/webrtc-direct'))!

  for (const transport of ['tcp', 'webrtc'] as const) {
    const addr = addrOf(server, transport)
    await t.rejects(rpcCall(unlisted, addr, 'ping', {}, { timeoutMs: 10_000 }), { code: 'PEER_UNREACHABLE' }, `${transport}: an unlisted peer is refused`)
    t.equal(server.getConnections(unlisted.peerId).length, 0, `${transport}: the server holds no connection from it`)
    const { body } = await rpcCall(listed, addr, 'ping', {}, { timeoutMs: 10_000 })
    t.ok(body.time > 0, `${transport}: a listed peer connects`)
    await listed.hangUp(server.peerId)
  }

  // Outbound too: a gated node does not dial peers it does not list.
  const open = await createMeshNode({ listen: [loopbackListen('tcp'), loopbackListen('webrtc')] })
  t.teardown(async () => { await open.stop() })
  await handleRpc(open, { ping: async () => ({ body: { time: Date.now() } }) })
  for (const transport of ['tcp', 'webrtc'] as const) {
    await t.rejects(rpcCall(server, addrOf(open, transport), 'ping', {}, { timeoutMs: 10_000 }), { code: 'PEER_UNREACHABLE' }, `${transport}: no dial to an unlisted peer`)
  }
})

t.test('--trust: jobs only from trusted coordinators; their jobs run peer to peer', async (t) => {
  const trustedKey = join(dir, 'coordinator.identity')
  const trustedId = await writeIdentity(trustedKey)
  const mesh = await startLocalMesh(2, { access: { trust: [trustedId] }, extraArgs: () => ['--threads', '1'] })
  const trusted = await Coordinator.start({ access: { privateKey: await readIdentity(trustedKey) } })
  const stranger = await Coordinator.start()
  t.teardown(async () => { await Promise.all([trusted.stop(), stranger.stop()]); await mesh.stop() })
  const addrs = mesh.peers.map((p) => p.addrs[0])
  const target = peerIdFromString(addrs[0].split('/p2p/')[1])

  // Open requests still work for anyone.
  const [info] = await stranger.connect([addrs[0]])
  t.ok(info.capabilities.speed > 0, 'capabilities are open')
  await rpcCall(stranger.node, target, 'ping', {}, { timeoutMs: 5_000 })

  const model = convSkipNet()
  const bytes = encodeModel(model)
  const hash = stageHash(bytes)
  const stage = { index: 0, hash, inputs: ['x'], outputs: [] }
  const refused = { code: 'UNTRUSTED', message: /trust/ }
  await t.rejects(rpcCall(stranger.node, target, 'stage.has', { hash }), refused, 'stage.has refused')
  await t.rejects(rpcCall(stranger.node, target, 'stage.put', { hash }, { tensors: { model: { dtype: 'U8', shape: [bytes.byteLength], data: bytes } } }), refused, 'stage.put refused')
  await t.rejects(rpcCall(stranger.node, target, 'job.setup', { jobId: 'j1', coordinator: stranger.node.peerId.toString(), stages: [stage] }), refused, 'job.setup refused')
  await t.rejects(rpcCall(stranger.node, target, 'run.push', { jobId: 'j1', runId: 'r', stage: 0 }), refused, 'run.push refused')
  await t.rejects(rpcCall(stranger.node, target, 'job.stats', { jobId: 'j1' }), refused, 'job.stats refused')
  await t.rejects(rpcCall(stranger.node, target, 'job.close', { jobId: 'j1' }), refused, 'job.close refused')

  // The trusted coordinator's 2-stage job: peer 1 pushes activations to peer 2 itself.
  const peers = await trusted.connect(addrs)
  const inputs = randomInputs(model, 3)
  const reference = await runModel(model, inputs)
  const dag = await buildDagProbed(model, { inputs })
  const { plan, pipeline } = await deploy(trusted, model, dag, peers, 2)
  t.teardown(async () => { await pipeline.close() })
  t.equal(new Set(plan.stages.map((s) => s.peer)).size, 2, 'two peers')
  const out = await pipeline.run(inputs, { timeoutMs: 60_000 })
  for (const name of Object.keys(reference)) t.ok(maxAbsDiff(out[name], reference[name]) <= 1e-5 * maxAbs(reference[name]), `${name} correct`)

  // A stranger cannot push into that job, and a trusted coordinator cannot hand a job's results to a stranger.
  const second = multiaddr(addrs.find((a) => a.endsWith(plan.stages[1].peer)) ?? '')
  await t.rejects(rpcCall(stranger.node, second, 'run.push', { jobId: pipeline.jobId, runId: 'x', stage: 1 }, { timeoutMs: 5_000 }), { code: 'UNTRUSTED', message: /neither a trusted coordinator/ })
  await t.rejects(rpcCall(trusted.node, target, 'job.setup', { jobId: 'j2', coordinator: stranger.node.peerId.toString(), stages: [stage] }), { code: 'UNTRUSTED', message: /names coordinator/ })
})

t.test('infer --local with --psk and --allow: local peers get the key, identities and lists', async (t) => {
  const key = join(dir, 'local.key')
  await writeSwarmKey(key)
  const model = convSkipNet()
  const modelPath = join(dir, 'net.onnx')
  saveModel(model, modelPath)
  const inputs = randomInputs(model, 5)
  const reference = await runModel(model, inputs)
  const someone = await newPeerId()
  const access = { psk: await readSwarmKey(key), pskFile: key, allow: new Set([someone]) }
  const { outputs } = await inferOnMesh(modelPath, inputs, { local: 2, access, timeoutMs: 60_000 })
  for (const name of Object.keys(reference)) t.ok(maxAbsDiff(outputs[name], reference[name]) <= 1e-5 * maxAbs(reference[name]), `${name} correct over a private local mesh`)
  t.equal(access.allow.size, 3, 'the coordinator let its 2 local peers in')
})
