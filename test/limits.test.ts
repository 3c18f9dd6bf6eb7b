// Resource limits of a peer: the --memory budget (reported, planned around,
// enforced on job.setup), upload size bounded by it, and the per-connection
// bound on open rpc streams.
import t from 'tap'
import { multiaddr } from '@multiformats/multiaddr'
import { Coordinator } from '../coordinator/coordinator.ts'
import { deploy } from '../coordinator/deploy.ts'
import { startLocalMesh } from '../coordinator/local-mesh.ts'
import { MemoryBudget, inspectStage, parseByteSize } from '../peer/limits.ts'
import { stageHash } from '../peer/stage-cache.ts'
import { RPC_PROTOCOL } from '../protocol/ids.ts'
import { DEFAULT_MAX_INBOUND_STREAMS, rpcCall } from '../protocol/rpc.ts'
import { GraphBuilder } from '../src/onnx/builder.ts'
import { buildDagProbed } from '../src/onnx/graph.ts'
import { encodeModel } from '../src/onnx/model-io.ts'
import { runModel } from '../src/onnx/run.ts'
import { randomTensor } from './fixtures/graphs.ts'
import { mulberry32 } from '../src/util/prng.ts'
import { maxAbs, maxAbsDiff } from './fixtures/stages.ts'
import type { Stream } from '@libp2p/interface'
import type { ModelProto } from '../src/onnx/proto.ts'

const KiB = 1024
const MiB = 1024 * KiB

/** x[1,256] → MatMul [256,h] → Relu → MatMul [h,256]: 2·256·h·4 bytes of weights. */
function mlp (h: number, seed: number): ModelProto {
  const rand = mulberry32(seed)
  const g = new GraphBuilder('mlp')
  const x = g.input('x', 'F32', [1, 256])
  const a = g.op('Relu', [g.op('MatMul', [x, g.init('w1', randomTensor([256, h], rand, 0.05))])])
  g.output(g.op('MatMul', [a, g.init('w2', randomTensor([h, 256], rand, 0.05))], {}, 'y'))
  return g.model()
}

t.test('byte sizes and the budget arithmetic', async (t) => {
  t.equal(parseByteSize('4G'), 4 * 1024 ** 3)
  t.equal(parseByteSize('512M'), 512 * MiB)
  t.equal(parseByteSize('1.5GiB'), 1.5 * 1024 ** 3)
  t.equal(parseByteSize('64k'), 64 * KiB)
  t.equal(parseByteSize('1048576'), MiB)
  for (const bad of ['', '0', '-1G', '4X', 'G', '1e3']) t.throws(() => parseByteSize(bad), { code: 'BAD_ARGUMENT' }, `'${bad}' refused`)

  const b = new MemoryBudget(10 * MiB)
  const inUse = new Set<string>()
  const release = b.reserve([{ index: 0, key: 'a', paramBytes: 4 * MiB }], inUse)
  t.throws(() => b.reserve([{ index: 0, key: 'b', paramBytes: 1 * MiB, estimatedBytes: 7 * MiB }], inUse), { code: 'OUT_OF_MEMORY', message: /stage 1 needs 7\.0 MiB .*estimate.* 10\.0 MiB with 4\.0 MiB already taken/ }, 'a concurrent setup cannot take the reserved bytes')
  t.doesNotThrow(() => b.reserve([{ index: 0, key: 'a', paramBytes: 4 * MiB }, { index: 1, key: 'a', paramBytes: 4 * MiB }], inUse)(), 'a shared session counts once')
  release()
  inUse.add('a')
  t.equal(b.committed(inUse), 4 * MiB, 'an open job keeps its session counted')
  t.throws(() => b.reserve([{ index: 2, key: 'c', paramBytes: 7 * MiB }], inUse), { code: 'OUT_OF_MEMORY' })
  inUse.clear()
  t.equal(b.committed(inUse), 0, 'closed jobs free their bytes')

  const g = mlp(64, 1)
  t.equal(inspectStage(encodeModel(g), 'g').paramBytes, 2 * 256 * 64 * 4, 'parameters counted from the initializers')
  t.throws(() => inspectStage(new TextEncoder().encode('not onnx at all'), 'junk'), { code: 'BAD_ONNX' })
})

t.test('--memory: reported, planned around and enforced on live peers', async (t) => {
  // Peer 0 offers 1 MiB, peer 1 64 MiB.
  const mesh = await startLocalMesh(2, { extraArgs: (i) => ['--memory', i === 0 ? '1M' : '64M', '--threads', '1'] })
  const coordinator = await Coordinator.start()
  t.teardown(async () => { await coordinator.stop(); await mesh.stop() })
  const [small, big] = await coordinator.connect(mesh.peers.map((p) => p.addrs[0]))
  t.equal(small.capabilities.memoryBytes, MiB, 'the budget is the memory a peer reports')
  t.ok(small.capabilities.freeMemoryBytes <= MiB && small.capabilities.freeMemoryBytes > 0, `free memory within the budget (${small.capabilities.freeMemoryBytes})`)
  t.ok(big.capabilities.freeMemoryBytes <= 64 * MiB)

  // 1.5 MiB of weights: as one stage it fits only the big peer.
  const model = mlp(768, 2)
  const inputs = { x: randomTensor([1, 256], mulberry32(3)) }
  const reference = await runModel(model, inputs)
  const dag = await buildDagProbed(model, { inputs })
  const check = (out: Record<string, { data: Uint8Array }>, what: string): void => {
    t.ok(maxAbsDiff(out.y as never, reference.y) <= 1e-5 * maxAbs(reference.y), `${what}: correct output`)
  }
  {
    const { plan, pipeline } = await deploy(coordinator, model, dag, [small, big], 1)
    try {
      t.same(plan.stages.map((s) => s.peer), [big.id], 'one stage: the tiny peer gets none')
      check(await pipeline.run(inputs, { timeoutMs: 60_000 }), 'K=1')
    } finally {
      await pipeline.close()
    }
  }
  {
    // Two stages of ~768 KiB each: the planner may use the tiny peer, and the peer accepts what the planner fits.
    const { plan, pipeline } = await deploy(coordinator, model, dag, [small, big], 2)
    try {
      const onSmall = plan.stages.filter((s) => s.peer === small.id)
      t.ok(onSmall.every((s) => s.paramBytes + s.peakActivationBytes <= MiB), 'what the tiny peer got fits its budget')
      check(await pipeline.run(inputs, { timeoutMs: 60_000 }), 'K=2')
    } finally {
      await pipeline.close()
    }
  }
  await t.rejects(deploy(coordinator, model, dag, [small], 1), { code: 'PLAN_IMPOSSIBLE', message: /needs .* but peer .* offers 1\.00 MiB|more than the largest peer/ }, 'nothing fits: PLAN_IMPOSSIBLE naming the memory')

  // Direct requests to the tiny peer.
  const target = multiaddr(small.addrs[0])
  const put = async (m: ModelProto): Promise<string> => {
    const bytes = encodeModel(m)
    const hash = stageHash(bytes)
    await rpcCall(coordinator.node, target, 'stage.put', { hash }, { tensors: { model: { dtype: 'U8', shape: [bytes.byteLength], data: bytes } } })
    return hash
  }
  const oversize = encodeModel(mlp(1100, 4))
  await t.rejects(rpcCall(coordinator.node, target, 'stage.put', { hash: stageHash(oversize) }, { tensors: { model: { dtype: 'U8', shape: [oversize.byteLength], data: oversize } } }),
    { code: 'TOO_LARGE' }, 'a graph larger than the budget is not even uploaded')
  const g1 = await put(mlp(384, 5)) // 768 KiB of weights
  const g2 = await put(mlp(256, 6)) // 512 KiB
  const self = coordinator.node.peerId.toString()
  const setup = (jobId: string, hash: string, estimatedBytes?: number) => rpcCall(coordinator.node, target, 'job.setup', {
    jobId, coordinator: self, stages: [{ index: 0, hash, inputs: ['x'], outputs: [{ name: 'y', to: [{ coordinator: true }] }], ...(estimatedBytes != null ? { estimatedBytes } : {}) }]
  })
  await t.rejects(setup('est', g1, 4 * MiB), { code: 'OUT_OF_MEMORY', message: /stage 1 needs 4\.0 MiB/ }, 'an estimate over the budget is refused')
  await setup('j1', g1)
  const [during] = await coordinator.connect([small.addrs[0]])
  t.ok(during.capabilities.freeMemoryBytes <= MiB - 768 * KiB, `an open job lowers the reported free memory (${during.capabilities.freeMemoryBytes})`)
  await t.rejects(setup('j2', g2), { code: 'OUT_OF_MEMORY', message: /768\.0 KiB already taken/ }, 'a second job over the budget is refused')
  await rpcCall(coordinator.node, target, 'job.close', { jobId: 'j1' })
  await setup('j2', g2)
  await rpcCall(coordinator.node, target, 'job.close', { jobId: 'j2' })
})

t.test('rpc streams per connection are bounded on a live peer', async (t) => {
  const mesh = await startLocalMesh(1, { extraArgs: () => ['--threads', '1'] })
  const coordinator = await Coordinator.start()
  t.teardown(async () => { await coordinator.stop(); await mesh.stop() })
  const addr = multiaddr(mesh.peers[0].addrs[0])
  await rpcCall(coordinator.node, addr, 'ping', {})
  // Streams that never send their envelope stay open on the peer until its envelope timeout.
  const extra = 16
  const streams: Stream[] = []
  const opened = await Promise.allSettled(Array.from({ length: DEFAULT_MAX_INBOUND_STREAMS + extra }, async () => {
    const s = await coordinator.node.dialProtocol(addr, RPC_PROTOCOL, { maxOutboundStreams: 1024 })
    streams.push(s)
    return s
  }))
  await new Promise((resolve) => setTimeout(resolve, 500))
  const reset = streams.filter((s) => s.status !== 'open').length + opened.filter((r) => r.status === 'rejected').length
  t.ok(reset >= extra, `${reset} of ${DEFAULT_MAX_INBOUND_STREAMS + extra} streams were refused (limit ${DEFAULT_MAX_INBOUND_STREAMS})`)
  for (const s of streams) s.abort(new Error('test done'))
  await new Promise((resolve) => setTimeout(resolve, 200))
  const { body } = await rpcCall(coordinator.node, addr, 'ping', {}, { timeoutMs: 5_000 })
  t.ok(body.time > 0, 'the peer serves new requests once they are gone')
})
