// Any ONNX model, cut into K = 1..4 stages, run across real peer processes
// over TCP and WebRTC-direct, equals one ORT session on the whole graph.
import t from 'tap'
import { Coordinator } from '../coordinator/coordinator.ts'
import { deploy } from '../coordinator/deploy.ts'
import { startLocalMesh } from '../coordinator/local-mesh.ts'
import { buildDagProbed } from '../src/onnx/graph.ts'
import { runModel } from '../src/onnx/run.ts'
import { FIXTURES, FIXTURE_DIMS, randomInputs } from './fixtures/graphs.ts'
import { maxAbs, maxAbsDiff } from './fixtures/stages.ts'
import './fixtures/exit-when-done.ts'

for (const transport of ['tcp', 'webrtc'] as const) {
  t.test(`infer over ${transport}`, async (t) => {
    const mesh = await startLocalMesh(4, { transport })
    const coordinator = await Coordinator.start()
    t.teardown(async () => { await coordinator.stop(); await mesh.stop() })
    const want = transport === 'tcp' ? '/tcp/' : '/webrtc-direct/'
    const peers = await coordinator.connect(mesh.peers.map((p) => p.addrs.find((a) => a.includes(want)) ?? ''))

    for (const [name, make] of Object.entries(FIXTURES)) {
      const model = make()
      const inputs = randomInputs(model, 7, FIXTURE_DIMS[name])
      const reference = await runModel(model, inputs)
      const dag = await buildDagProbed(model, { inputs, dims: FIXTURE_DIMS[name] })
      for (let k = 1; k <= 4; k++) {
        const { plan, pipeline } = await deploy(coordinator, model, dag, peers, k)
        try {
          t.equal(new Set(plan.stages.map((s) => s.peer)).size, k, `${name} K=${k}: ${k} distinct peers`)
          const first = await pipeline.run(inputs, { timeoutMs: 60_000 })
          const again = await pipeline.run(inputs, { timeoutMs: 60_000 })
          for (const out of Object.keys(reference)) {
            const tol = 1e-5 * maxAbs(reference[out])
            t.ok(maxAbsDiff(first[out], reference[out]) <= tol, `${name} K=${k} ${out} matches one session (≤ ${tol.toExponential(1)})`)
            t.same(Buffer.from(again[out].data), Buffer.from(first[out].data), `${name} K=${k} ${out} repeated run is bit-identical`)
          }
        } finally {
          await pipeline.close()
        }
      }
    }
  })
}
