// Liveness: heartbeats tell a stopped peer (SIGSTOP: its TCP connection stays
// open) from a slow one, a peer whose forward pass passes its deadline is
// dropped although it answers heartbeats, and peers close the jobs of a
// coordinator that stopped heartbeating. Every job still ends bit-identical
// to an undisturbed run.
import t from 'tap'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { Coordinator } from '../coordinator/coordinator.ts'
import { deploy } from '../coordinator/deploy.ts'
import { generate } from '../coordinator/generate.ts'
import { Heartbeat, stuckStage } from '../coordinator/liveness.ts'
import { startLocalMesh } from '../coordinator/local-mesh.ts'
import { ResilientPipeline } from '../coordinator/resilient-pipeline.ts'
import { Scatter } from '../coordinator/scatter.ts'
import { upscaleClips } from '../coordinator/upscale.ts'
import { rpcCall } from '../protocol/rpc.ts'
import { gaussian } from '../src/diffusion/rng.ts'
import { getPreset } from '../src/model/presets.ts'
import { buildStunet } from '../src/model/stunet.ts'
import { buildDag } from '../src/onnx/graph.ts'
import { runModel } from '../src/onnx/run.ts'
import { chaosRun } from './fixtures/chaos.ts'
import { smallSsr } from './fixtures/small-ssr.ts'
import type { GenerateOptions } from '../coordinator/generate.ts'
import type { PoolChange } from '../coordinator/liveness.ts'
import type { Tensor } from '../src/tensor/tensor.ts'
import type { Dag } from '../src/onnx/dag.ts'
import type { ModelProto } from '../src/onnx/proto.ts'

/** Short heartbeats, so a stopped peer is found within ~2 s; tolerant enough for a loaded machine. */
const liveness = { intervalMs: 250, timeoutMs: 1_000, misses: 3 }
const f32 = (shape: number[], stream: string): Tensor => ({ dtype: 'F32', shape, data: new Uint8Array(gaussian(1, stream, shape.reduce((a, b) => a * b, 1)).buffer) })
const same = (a: Tensor | Float32Array, b: Tensor | Float32Array): boolean => Buffer.from('data' in a ? a.data : new Uint8Array(a.buffer)).equals(Buffer.from('data' in b ? b.data : new Uint8Array(b.buffer)))

t.test('stuckStage: the first stage that finished fewest runs', async (t) => {
  t.equal(stuckStage(new Map([[0, 4], [1, 3], [2, 3]])), 1, 'passes left stage 0 and wait at stage 1')
  t.equal(stuckStage(new Map([[2, 1], [0, 2], [1, 2]])), 2, 'in stage order whatever the map order')
  t.equal(stuckStage(new Map([[0, 2], [1, 2], [2, 2]])), 0, 'no stage ahead: the first one holds the pass')
  t.equal(stuckStage(new Map()), undefined)
})

// Peer 2 is slowed 20000× (`--throttle`: it sleeps after each run, still answering heartbeats): a tiny
// stage's few ms become minutes, far past the deadline however fast or loaded the machine is.
const mesh = await startLocalMesh(3, { extraArgs: (i) => i === 2 ? ['--throttle', '20000'] : [] })
const coordinator = await Coordinator.start()
t.teardown(async () => { await coordinator.stop(); await mesh.stop() })
const peers = await coordinator.connect(mesh.peers.map((p) => p.addrs[0]))

/** The tiny STUNet, one pass's seeded inputs, and that pass run in one session: the reference. */
async function tinyPass (): Promise<{ model: ModelProto, dag: Dag, inputs: Record<string, Tensor>, reference: Record<string, Tensor> }> {
  const config = getPreset('tiny')
  const model = buildStunet(config, { weights: 'seeded', inflationInit: 'random' })
  const inputs = { x: f32([1, 3, config.frames, config.height, config.width], 'x'), logsnr: f32([1], 'logsnr'), text: f32([1, config.textLength, config.textDim], 'text') }
  return { model, dag: buildDag(model, { dims: { batch: 1 } }), inputs, reference: await runModel(model, inputs) }
}

t.test('a peer whose pass passes its deadline is dropped though it answers heartbeats; the pass equals one session', async (t) => {
  const { model, dag, inputs, reference } = await tinyPass()
  // Claimed as fast as the others, so the planner gives the slow peer a full stage.
  const equal = peers.map((p) => ({ ...p, capabilities: { ...p.capabilities, speed: peers[0].capabilities.speed } }))
  const changes: PoolChange[] = []
  const pipeline = new ResilientPipeline(coordinator, model, dag, equal, { liveness, onReplan: (c) => { changes.push(c) } })
  t.teardown(async () => { await pipeline.close() })
  const plan = await pipeline.plan()
  t.equal(plan.stages.length, 3, 'one stage per peer, the slow one included')
  const deadlineMs = 4_000
  const started = performance.now()
  const out = await pipeline.run(inputs, { timeoutMs: deadlineMs })
  const seconds = (performance.now() - started) / 1000
  t.same(changes.map((c) => c.lost), [[peers[2].id]], 'the slow peer, and only it, was dropped')
  t.match(changes[0]?.why, /deadline/, `for its deadline (${changes[0]?.why})`)
  t.equal(changes[0]?.stages, 2, 're-planned onto the 2 others')
  t.ok(seconds < 2.5 * deadlineMs / 1000, `done in ${seconds.toFixed(1)} s: one deadline and a redo, not the slow stage's 20000× its compute`)
  t.ok(same(out.v, reference.v), 'bit-identical to one session')
})

t.test('copies of the model: the copy whose pass passes its deadline is dropped, and the pass is redone on the other', async (t) => {
  const { model, dag, inputs, reference } = await tinyPass()
  // A fast peer and the slow one, claimed equal: two passes per step go one to each copy.
  const pair = [peers[1], peers[2]].map((p) => ({ ...p, capabilities: { ...p.capabilities, speed: peers[0].capabilities.speed } }))
  const changes: PoolChange[] = []
  const pipeline = new ResilientPipeline(coordinator, model, dag, pair, { liveness, microBatches: 2, onReplan: (c) => { changes.push(c) } })
  t.teardown(async () => { await pipeline.close() })
  const plan = await pipeline.plan()
  t.equal(plan.placement, 'replicated', 'a copy on each peer')
  const outs = await Promise.all([0, 1].map(async () => pipeline.run(inputs, { timeoutMs: 4_000 })))
  t.same(changes.map((c) => c.lost), [[peers[2].id]], 'the slow copy, and only it, was dropped')
  t.match(changes[0]?.why, /deadline/, `for its deadline (${changes[0]?.why})`)
  t.ok(outs.every((o) => same(o.v, reference.v)), 'both passes bit-identical to one session')
})

t.test('SSR windows: a stopped peer is found by its heartbeats and its windows go elsewhere', async (t) => {
  const { model, dag, options, reference: local } = smallSsr(3)
  const reference = await local()

  const victim = mesh.peers[1].process
  const changes: PoolChange[] = []
  const scatter = await Scatter.open(coordinator, model, dag, peers.slice(0, 2), { taskTimeoutMs: 60_000, liveness, onReplan: (c) => { changes.push(c) } })
  t.teardown(async () => { victim.kill('SIGCONT'); await scatter.close() })
  let step = 0
  let stoppedAt = 0
  const [clip] = await upscaleClips(options(async (tasks) => {
    // Stopped as the second step's windows go out: some are in flight on it.
    if (step++ === 1) setTimeout(() => { stoppedAt = performance.now(); victim.kill('SIGSTOP') }, 1)
    return scatter.run(tasks)
  }))
  const seconds = (performance.now() - stoppedAt) / 1000
  victim.kill('SIGCONT')
  t.same(changes.map((c) => c.lost), [[peers[1].id]], 'the stopped peer was dropped')
  t.match(changes[0]?.why, /heartbeats/, `by its heartbeats (${changes[0]?.why})`)
  t.ok(seconds < 30, `finished ${seconds.toFixed(1)} s after the stop, far before the 60 s task deadline`)
  t.ok(same(clip, reference), 'the fused result equals the single-process loop bit for bit')
})

t.test('a peer closes the jobs of a coordinator that stopped heartbeating, and only those', async (t) => {
  const model = buildStunet(getPreset('tiny'), { weights: 'seeded', inflationInit: 'random' })
  const dag = buildDag(model, { dims: { batch: 1 } })
  const peer = peers[0]
  const [leased, unleased] = await Promise.all([0, 1].map(async () => (await deploy(coordinator, model, dag, [peer], 1)).pipeline))
  t.teardown(async () => { await Promise.all([leased.close(), unleased.close()]) })
  const stats = async (jobId: string): Promise<unknown> => rpcCall(coordinator.node, peerIdFromString(peer.id), 'job.stats', { jobId }, { timeoutMs: 5_000 })
  const beats = new Heartbeat(coordinator.node, { intervalMs: 200, leaseMs: 1_000, jobs: () => [leased.jobId], onDown: () => {} })
  beats.watch(peer.id)
  await new Promise((resolve) => setTimeout(resolve, 1_500))
  await t.resolves(stats(leased.jobId), 'open while the heartbeats renew its lease')
  beats.close()
  // Another coordinator's heartbeat naming the job does not keep it.
  const stranger = await Coordinator.start()
  t.teardown(async () => { await stranger.stop() })
  await rpcCall(stranger.node, multiaddr(mesh.peers[0].addrs[0]), 'ping', { lease: { jobs: [leased.jobId], ttlMs: 60_000 } }, { timeoutMs: 5_000 })
  // The lease (1 s) runs out, and the peer sweeps each second.
  await new Promise((resolve) => setTimeout(resolve, 3_000))
  await t.rejects(stats(leased.jobId), { code: 'STAGE_UNKNOWN' }, 'closed once its lease ran out')
  await t.resolves(stats(unleased.jobId), 'a job never leased stays until job.close')
})

t.test('base pipeline: SIGSTOP a peer mid-job; heartbeats drop it and the job equals the undisturbed run', async (t) => {
  // --stages 3: the pipeline (left free, the planner would copy the model onto two of the three peers).
  const job: GenerateOptions = { prompt: 'a kite over a hill', model: 'tiny', steps: 10, guidance: 2, seed: 11, samples: 1, ssr: false, timeoutMs: 60_000, liveness, stages: 3 }
  const reference = Buffer.from((await generate({ ...job, local: 1 })).video.data)
  const run = await chaosRun(job, reference, { mode: 'stop' })
  t.ok(run.disrupted, `peer ${run.victim + 1} stopped after step ${run.afterStep} (+${run.delayMs} ms), while the job ran`)
  t.equal(run.error, undefined, 'the job finished')
  t.ok(run.warnings.some((w) => w.startsWith(`lost peer ${run.victimId} (missed`)), `dropped for its heartbeats (${run.warnings.join('; ')})`)
  t.ok((run.recoverySeconds ?? Infinity) < 30, `finished ${run.recoverySeconds?.toFixed(1)} s after the stop, far before the 60 s pass deadline`)
  t.ok(run.equal, 'output equals the undisturbed run bit for bit')
})
