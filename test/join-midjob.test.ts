// Peers joining mid-job (Coordinator.admit): the base pipeline re-plans onto
// the bigger pool at a step boundary and the joined peer holds a stage from
// then on; the SSR scatter gives it windows. Completed steps are not
// recomputed, and the results equal undisturbed runs bit for bit.
import t from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Coordinator } from '../coordinator/coordinator.ts'
import { generate } from '../coordinator/generate.ts'
import { spawnPeer, startLocalMesh } from '../coordinator/local-mesh.ts'
import { Scatter } from '../coordinator/scatter.ts'
import { upscaleClips } from '../coordinator/upscale.ts'
import { loopbackListen } from '../src/mesh/node.ts'
import { smallSsr } from './fixtures/small-ssr.ts'
import type { GenerateOptions, ReplanNotice } from '../coordinator/generate.ts'
import type { PeerInfo } from '../coordinator/coordinator.ts'
import type { PoolChange } from '../coordinator/liveness.ts'

// Two samples: 4 passes per step, which the planner spreads over copies of the model (coordinator/replication.ts), on the joiner too once it is in.
const job: GenerateOptions = { prompt: 'a kite over a hill', model: 'tiny', steps: 12, guidance: 2, seed: 11, samples: 2, ssr: false, timeoutMs: 60_000 }

// Two peers run the job from the start (slowed 2×, so that the job outlasts the join).
const mesh = await startLocalMesh(2, { extraArgs: () => ['--throttle', '2'] })
// The third is started now, so the test does not race its start-up, but it is
// connected and admitted only after step 2: to the job, a peer that joins.
const dir = await mkdtemp(join(tmpdir(), 'lumiere-join-'))
const joiner = await spawnPeer(['--listen', loopbackListen('tcp'), '--addr-file', join(dir, 'joiner.addrs'), '--threads', '1'])
const joinerId = joiner.addrs[0].split('/p2p/')[1]
t.teardown(async () => { await joiner.stop(); await mesh.stop(); await rm(dir, { recursive: true, force: true }) })

t.test('base model: a peer admitted after step 2 holds part of the plan from a later step; the video equals the undisturbed run', async (t) => {
  const reference = await generate({ ...job, local: 1 })
  // The job's coordinator, ours, so that the test can admit the peer into the running job.
  const coordinator = await Coordinator.start()
  t.teardown(async () => { await coordinator.stop() })
  let admitted: Promise<PeerInfo> | undefined
  let admittedAfter = -1
  const notices: ReplanNotice[] = []
  const result = await generate({
    ...job,
    peers: mesh.peers.map((p) => p.addrs[0]),
    coordinator,
    onReplan: (n) => { notices.push(n) },
    onStep: ({ step }) => {
      if (step !== 2 || admitted != null) return
      admittedAfter = step
      admitted = coordinator.connect([joiner.addrs[0]]).then(([info]) => { coordinator.admit(info); return info })
    }
  })
  t.equal((await admitted)?.id, joinerId, 'admitted')
  t.equal(notices.length, 1, `one re-plan (${notices.map((n) => n.message).join('; ')})`)
  const [n] = notices
  t.same(n?.joined, [joinerId], 'for the joined peer')
  t.ok(n != null && n.step > admittedAfter && n.step < job.steps, `used from step ${(n?.step ?? 0) + 1} of ${job.steps}, after the ${admittedAfter} done when it was admitted`)
  const held = new Set(result.plan.stages.map((s) => s.peer)).size
  const onto = result.plan.placement === 'replicated' ? `${held} peer\\(s\\), each with a copy of the model,` : `${held} peer\\(s\\) in ${result.plan.stages.length} stage\\(s\\)`
  t.match(n?.message, new RegExp(`^peer ${joinerId} joined; re-planned onto ${onto} from step ${(n?.step ?? 0) + 1}$`), 'the line the CLI prints')
  // The planner prices the pool with the joiner (2× faster than the throttled two) and may leave a slow peer out.
  t.ok(result.plan.stages.some((s) => s.peer === joinerId), `the joined peer holds a stage or copy (${result.plan.placement ?? 'contiguous'}, ${result.plan.stages.length} on ${held} peers)`)
  t.equal(result.utilisation.length, result.plan.stages.length, 'a busy figure per stage or copy')
  t.ok(result.utilisation.every((u) => u > 0), `every stage computed since the re-plan, the joined peer's too (${result.utilisation.map((u) => u.toFixed(2)).join('/')})`)
  t.ok(Buffer.from(result.video.data).equals(Buffer.from(reference.video.data)), 'the video equals the undisturbed run bit for bit')
})

t.test('SSR scatter: a peer admitted after the first step takes windows; the fused result equals the single-process loop', async (t) => {
  const { model, dag, options, reference: local } = smallSsr(4)
  const reference = await local()

  const coordinator = await Coordinator.start()
  t.teardown(async () => { await coordinator.stop() })
  const peers = await coordinator.connect(mesh.peers.map((p) => p.addrs[0]))
  const changes: PoolChange[] = []
  const scatter = await Scatter.open(coordinator, model, dag, peers, { taskTimeoutMs: 60_000, onReplan: (c) => { changes.push(c) } })
  t.teardown(async () => { await scatter.close() })
  let step = 0
  const [clip] = await upscaleClips(options(async (tasks) => {
    if (step++ === 1) coordinator.admit((await coordinator.connect([joiner.addrs[0]]))[0])
    return scatter.run(tasks)
  }))
  t.same(changes.map((c) => c.joined), [[joinerId]], 'the joined peer was added')
  t.equal(changes[0]?.peers, 3, 'three peers take windows')
  t.ok((scatter.counts()[joinerId] ?? 0) > 0, `it computed windows (${JSON.stringify(scatter.counts())})`)
  t.ok(Buffer.from(clip.buffer).equals(Buffer.from(reference.buffer)), 'the fused result equals the single-process loop bit for bit')
})
