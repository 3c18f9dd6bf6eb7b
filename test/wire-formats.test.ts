// float16 and bfloat16 on the wire of a real 2-stage pipeline: every tensor
// that travels (inputs, the stage boundary, outputs) is rounded, and the
// result stays within the error the format states, per model output.
import t from 'tap'
import { Coordinator } from '../coordinator/coordinator.ts'
import { deploy } from '../coordinator/deploy.ts'
import { startLocalMesh } from '../coordinator/local-mesh.ts'
import { buildDagProbed } from '../src/onnx/graph.ts'
import { runModel } from '../src/onnx/run.ts'
import { BF16_MAX_RELATIVE_ERROR, F16_MAX_RELATIVE_ERROR } from '../src/tensor/float16.ts'
import { FIXTURES, FIXTURE_DIMS, randomInputs } from './fixtures/graphs.ts'
import { maxAbs, maxAbsDiff } from './fixtures/stages.ts'

/**
 * Three roundings of at most u each (inputs, the boundary, the outputs),
 * carried through a few layers whose weights are O(1): the error stays
 * within a small multiple of u of the output's range. Measured 0.4–1.1 u on
 * these models with either format; 4u leaves room for the layers' growth.
 */
const BOUND = 4

const mesh = await startLocalMesh(2)
const coordinator = await Coordinator.start()
t.teardown(async () => { await coordinator.stop(); await mesh.stop() })
const peers = await coordinator.connect(mesh.peers.map((p) => p.addrs[0]))

for (const [wire, u] of [['f16', F16_MAX_RELATIVE_ERROR], ['bf16', BF16_MAX_RELATIVE_ERROR]] as const) {
  t.test(`--wire ${wire}: within ${BOUND}·u = ${(BOUND * u).toExponential(1)} of each output's range`, async (t) => {
    for (const [name, make] of Object.entries(FIXTURES)) {
      const model = make()
      const inputs = randomInputs(model, 5, FIXTURE_DIMS[name])
      const reference = await runModel(model, inputs)
      const dag = await buildDagProbed(model, { inputs, dims: FIXTURE_DIMS[name] })
      const { plan, pipeline } = await deploy(coordinator, model, dag, peers, 2, undefined, wire, { measureLinks: false })
      try {
        t.equal(plan.stages.length, 2, `${name}: 2 stages`)
        const out = await pipeline.run(inputs, { timeoutMs: 60_000 })
        for (const [o, ref] of Object.entries(reference)) {
          t.equal(out[o].dtype, ref.dtype, `${name} ${o}: widened back to ${ref.dtype}`)
          const err = maxAbsDiff(out[o], ref) / maxAbs(ref)
          t.ok(err > 0, `${name} ${o}: rounded (error ${err.toExponential(2)} of the range, ${(err / u).toFixed(2)}·u)`)
          t.ok(err <= BOUND * u, `${name} ${o}: within ${BOUND}·u`)
        }
      } finally {
        await pipeline.close()
      }
    }
  })
}
