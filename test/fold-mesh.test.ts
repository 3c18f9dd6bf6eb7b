// A folded plan (each encoder level on the same peer as its mirror decoder
// level, so U-Net skips stay local) runs on real peers and equals one session.
import t from 'tap'
import { Coordinator } from '../coordinator/coordinator.ts'
import { deploy } from '../coordinator/deploy.ts'
import { startLocalMesh } from '../coordinator/local-mesh.ts'
import { getPreset } from '../src/model/presets.ts'
import { buildStunet } from '../src/model/stunet.ts'
import { buildDag } from '../src/onnx/graph.ts'
import { runModel } from '../src/onnx/run.ts'
import { gaussian } from '../src/diffusion/rng.ts'
import type { Tensor } from '../src/tensor/tensor.ts'

t.test('folded placement over 2 peers equals one ORT session', async (t) => {
  const config = getPreset('tiny')
  const model = buildStunet(config, { weights: 'seeded', inflationInit: 'random' })
  const dag = buildDag(model, { dims: { batch: 1 } })
  const f32 = (shape: number[], stream: string): Tensor => ({ dtype: 'F32', shape, data: new Uint8Array(gaussian(1, stream, shape.reduce((a, b) => a * b, 1)).buffer) })
  const inputs = { x: f32([1, 3, config.frames, config.height, config.width], 'x'), logsnr: f32([1], 'logsnr'), text: f32([1, config.textLength, config.textDim], 'text') }
  const reference = await runModel(model, inputs)

  const mesh = await startLocalMesh(2)
  const coordinator = await Coordinator.start()
  t.teardown(async () => { await coordinator.stop(); await mesh.stop() })
  const connected = await coordinator.connect(mesh.peers.map((p) => p.addrs[0]))
  // One speed for both: the fold's win below is a fact about bytes, not about how two loaded processes measured at start.
  const peers = connected.map((p) => ({ ...p, capabilities: { ...p.capabilities, speed: connected[0].capabilities.speed } }))
  // Compute only (no measured links): on loopback each boundary's ~1 ms latency would favour fewer of them.
  const { plan, pipeline } = await deploy(coordinator, model, dag, peers, 2, undefined, undefined, { placement: 'folded', balance: 0.5, measureLinks: false })
  t.teardown(async () => { await pipeline.close() })
  // With 50 % slack for balance a fold wins for tiny: fewer bytes than any balanced contiguous cut.
  t.ok(plan.stages.length > 2, `${plan.stages.length} stages on 2 peers`)
  t.equal(new Set(plan.stages.map((s) => s.peer)).size, 2, 'two peers, one holding two stages')
  const [a, b] = await Promise.all([pipeline.run(inputs, { timeoutMs: 60_000 }), pipeline.run(inputs, { timeoutMs: 60_000 })])
  t.ok(Buffer.from(a.v.data).equals(Buffer.from(reference.v.data)), 'bit-identical to one session')
  t.ok(Buffer.from(b.v.data).equals(Buffer.from(reference.v.data)), 'a concurrent micro-batch too')
})
