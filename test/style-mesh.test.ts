// Stylized generation over the mesh (DESIGN §1): the peers blend the style
// into their stages' spatial weights. Outputs equal one in-process session
// on the blended model bit for bit; each peer gets the style once, by hash,
// and keeps one blended session per (stage, style, α). Plans are made
// without measured links: on loopback their noise can leave a stage without
// spatial weights, and these checks count blended sessions per stage.
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { Coordinator } from '../coordinator/coordinator.ts'
import { buildStages, deploy, peerCapacity } from '../coordinator/deploy.ts'
import { graphInputs, graphOutputs } from '../coordinator/check-inputs.ts'
import { partition } from '../coordinator/partition.ts'
import { Pipeline } from '../coordinator/pipeline.ts'
import { startLocalMesh } from '../coordinator/local-mesh.ts'
import { Executor } from '../peer/executor.ts'
import { startPeer } from '../peer/peer.ts'
import { styleHash } from '../peer/stage-cache.ts'
import { rpcCall } from '../protocol/rpc.ts'
import { createLogger } from '../src/log.ts'
import { loopbackListen } from '../src/mesh/node.ts'
import { getPreset } from '../src/model/presets.ts'
import { buildStunet } from '../src/model/stunet.ts'
import { SPATIAL_PREFIX, blendInitializers, styleTemplate } from '../src/model/style.ts'
import { buildDagProbed } from '../src/onnx/graph.ts'
import { cloneModel } from '../src/onnx/model-io.ts'
import type { ModelProto } from '../src/onnx/proto.ts'
import { runModel } from '../src/onnx/run.ts'
import { decodeSafetensors, encodeSafetensors } from '../src/tensor/safetensors.ts'
import type { Tensor } from '../src/tensor/tensor.ts'
import { randomInputs } from './fixtures/graphs.ts'
import { multiaddr } from '@multiformats/multiaddr'

const config = getPreset('tiny')
const base = buildStunet(config, { weights: 'seeded', seed: 1, inflationInit: 'random' })
const other = buildStunet(config, { weights: 'seeded', seed: 2, inflationInit: 'random' })
const style = styleTemplate(other)
const inputs = randomInputs(base, 5, { batch: 1 })

/** The base model with seed 2's spatial weights (its own temporal weights): what α = 1 must compute. */
function styledReference (): ModelProto {
  const m = cloneModel(base)
  const theirs = new Map((other.graph?.initializer ?? []).map((x) => [x.name, x]))
  m.graph!.initializer = m.graph!.initializer!.map((x) => (x.name ?? '').startsWith(SPATIAL_PREFIX) ? theirs.get(x.name)! : x)
  return m
}

function same (a: Record<string, Tensor>, b: Record<string, Tensor>): boolean {
  return Object.keys(b).length > 0 && Object.keys(b).every((k) => a[k] != null && Buffer.compare(Buffer.from(a[k].data), Buffer.from(b[k].data)) === 0)
}

/** name → (size, mtime, inode) of every file in a folder. */
async function snapshot (dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  for (const f of (await readdir(dir)).sort()) {
    const s = await stat(join(dir, f))
    out[f] = `${s.size}/${s.mtimeMs}/${s.ino}`
  }
  return out
}

t.test('peers blend the style: α = 0, 1, 0.5 equal in-process sessions bit for bit; style and graphs cross once', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'lumiere-style-mesh-'))
  const caches = [join(root, 'peer-0'), join(root, 'peer-1')]
  // Separate caches (one per peer) and one ORT thread, as runModel uses.
  const mesh = await startLocalMesh(2, { extraArgs: (i) => ['--cache', caches[i], '--threads', '1'] })
  const coordinator = await Coordinator.start()
  t.teardown(async () => { await coordinator.stop(); await mesh.stop(); await rm(root, { recursive: true, force: true }) })
  const peers = await coordinator.connect(mesh.peers.map((p) => p.addrs.find((a) => a.includes('/tcp/')) ?? ''))
  const dag = await buildDagProbed(base, { dims: { batch: 1 } })

  const original = await runModel(base, inputs)
  const references: Array<[number, Record<string, Tensor>]> = [
    [0, original],
    [1, await runModel(styledReference(), inputs)],
    [0.5, await runModel(blendInitializers(base, style, 0.5), inputs)]
  ]
  t.notOk(same(references[1][1], original), 'the style changes the output')
  t.notOk(same(references[2][1], original) || same(references[2][1], references[1][1]), 'α = 0.5 is neither endpoint')

  let before: Array<Record<string, string>> = []
  for (const [i, [alpha, want]] of references.entries()) {
    const { plan, pipeline } = await deploy(coordinator, base, dag, peers, 2, undefined, undefined, { style: { tensors: style, alpha }, measureLinks: false })
    try {
      t.equal(new Set(plan.stages.map((s) => s.peer)).size, 2, `α = ${alpha}: 2 stages on 2 peers`)
      const got = await pipeline.run(inputs, { timeoutMs: 120_000 })
      t.ok(same(got, want), `α = ${alpha}: output bit-identical to runModel of the ${alpha === 0 ? 'original' : alpha === 1 ? 'style-weighted' : 'blended'} model`)
      if (i === 0) {
        t.equal(pipeline.uploaded.graphs.length, 2, 'first deployment uploads both stage graphs')
        t.equal(pipeline.uploaded.styles.length, 2, 'and each stage\'s style, once per peer')
        t.equal(new Set(pipeline.uploaded.styles.map((u) => u.peer)).size, 2, 'one style upload to each peer')
        before = await Promise.all(caches.map(snapshot))
        for (const s of before) {
          t.equal(Object.keys(s).filter((f) => f.endsWith('.onnx')).length, 1, 'one stage graph in the peer cache')
          t.equal(Object.keys(s).filter((f) => f.endsWith('.safetensors')).length, 1, 'one style in the peer cache')
        }
      } else {
        t.same(pipeline.uploaded, { graphs: [], styles: [] }, `α = ${alpha}: nothing uploaded again`)
      }
    } finally {
      await pipeline.close()
    }
  }
  t.same(await Promise.all(caches.map(snapshot)), before, 'peer caches untouched after the first deployment')

  const { pipeline } = await deploy(coordinator, base, dag, peers, 2, undefined, undefined, { measureLinks: false })
  try {
    t.ok(same(await pipeline.run(inputs, { timeoutMs: 120_000 }), original), 'unstyled deployment still runs the original weights')
  } finally {
    await pipeline.close()
  }

  // Peer-side validation: a style that does not fit the stage is a typed error reply.
  const plan = partition(dag, peers.map(peerCapacity), { stages: 2 })
  const graph = { inputs: graphInputs(base).map((x) => x.name), outputs: graphOutputs(base) }
  const cases: Array<[string, (name: string) => Record<string, Tensor>, RegExp]> = [
    ['unknown name', (name) => ({ 'spatial.bogus': style[name] }), /'spatial\.bogus' is not a weight of this stage/],
    ['wrong shape', (name) => ({ [name]: { ...style[name], shape: [style[name].data.byteLength / 4] } }), /is F32\[\d+\] but the weight of this stage is F32\[/]
  ]
  for (const [what, make, pattern] of cases) {
    const stages = buildStages(base, dag, plan, peers, { style: { tensors: style, alpha: 0.5 } })
    const target = stages.find((s) => s.style != null)!
    const name = Object.entries(decodeSafetensors(target.style!.bytes).tensors).find(([, x]) => x.shape.length > 1)![0]
    const bytes = encodeSafetensors(make(name))
    target.style = { hash: styleHash(bytes), alpha: 0.5, bytes }
    await t.rejects(Pipeline.open(coordinator.node, coordinator.inbox, stages, graph), { code: 'BAD_ARGUMENT', message: pattern }, `peer refuses a style with a ${what}`)
  }
  const ints = encodeSafetensors({ 'spatial.x': { dtype: 'I64', shape: [1], data: new Uint8Array(8) } })
  await t.rejects(rpcCall(coordinator.node, multiaddr(peers[0].addrs[0]), 'stage.put', { hash: styleHash(ints), kind: 'style' }, { tensors: { model: { dtype: 'U8', shape: [ints.byteLength], data: ints } }, timeoutMs: 10_000 }), { code: 'BAD_ARGUMENT', message: /style weights are float/ }, 'peer refuses integer style tensors')
  const garbage = new Uint8Array([1, 2, 3])
  await t.rejects(rpcCall(coordinator.node, multiaddr(peers[0].addrs[0]), 'stage.put', { hash: styleHash(garbage), kind: 'style' }, { tensors: { model: { dtype: 'U8', shape: [3], data: garbage } }, timeoutMs: 10_000 }), { code: 'BAD_SAFETENSORS' }, 'peer refuses bytes that are not safetensors')
})

t.test('one blended session per (stage, style, α), reused by later jobs; idle ones beyond two are released', async (t) => {
  const loads: string[] = []
  const load = Executor.prototype.load
  Executor.prototype.load = async function (this: Executor, key, model, options) {
    loads.push(key)
    return load.call(this, key, model, options)
  }
  const root = await mkdtemp(join(tmpdir(), 'lumiere-style-reuse-'))
  const log = createLogger('peer', true)
  const running = await Promise.all([0, 1].map(async (i) => startPeer({ listen: [loopbackListen('tcp')], cacheDir: join(root, `peer-${i}`), providers: ['cpu'], threads: 1, log })))
  const coordinator = await Coordinator.start()
  t.teardown(async () => {
    Executor.prototype.load = load
    await coordinator.stop()
    await Promise.all(running.map(async (p) => p.stop()))
    await rm(root, { recursive: true, force: true })
  })
  const peers = await coordinator.connect(running.map((p) => p.node.getMultiaddrs().map(String).find((a) => a.includes('/tcp/')) ?? ''))
  const dag = await buildDagProbed(base, { dims: { batch: 1 } })

  const styledLoads = (alpha: number): number => loads.filter((k) => k.endsWith(`/${alpha}`)).length
  const job = async (alpha: number): Promise<void> => {
    const { pipeline } = await deploy(coordinator, base, dag, peers, 2, undefined, undefined, { style: { tensors: style, alpha }, measureLinks: false })
    await pipeline.close()
  }
  await job(0.5)
  t.equal(styledLoads(0.5), 2, 'α = 0.5: one blended session per stage')
  await job(0.5)
  t.equal(styledLoads(0.5), 2, 'a second job with the same α reuses them')
  await job(0.75)
  await job(0.5)
  t.equal(styledLoads(0.75), 2, 'α = 0.75: its own sessions')
  t.equal(styledLoads(0.5), 2, 'two idle styles stay loaded')
  await job(0.6)
  await job(0.7)
  await job(0.5)
  t.equal(styledLoads(0.5), 4, 'after two newer styles, α = 0.5 was released and is blended again')
  t.notOk(loads.some((k) => /^[0-9a-f]{64}$/.test(k)), 'the unblended graphs are never loaded for styled jobs')
})
