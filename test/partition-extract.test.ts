import t from 'tap'
import { partition } from '../coordinator/partition.ts'
import { buildDagProbed } from '../src/onnx/graph.ts'
import { planStage } from '../src/onnx/extract.ts'
import { FIXTURES, FIXTURE_DIMS } from './fixtures/graphs.ts'

// The plan's stage inputs and outputs (what the planner counts on the wire)
// are exactly what extraction gives each stage, on exporter-style graphs
// (duplicable shape chains, folded Shape, a Loop reading outer-scope values).
for (const [name, make] of Object.entries(FIXTURES)) {
  t.test(`${name}: plan boundaries match extraction`, async tt => {
    const model = make()
    const dag = await buildDagProbed(model, { dims: FIXTURE_DIMS[name] })
    for (let k = 1; k <= 4; k++) {
      const peers = Array.from({ length: k }, (_, i) => ({ id: `p${i}`, memoryBytes: 1e12, speed: 1e9 }))
      const plan = partition(dag, peers, { stages: k })
      tt.equal(plan.stages.length, k)
      for (const s of plan.stages) {
        const extracted = planStage(dag, s.nodes)
        tt.same(s.inputs.map(x => x.name).sort(), [...extracted.inputs].sort(), `K=${k} stage ${s.index + 1} inputs`)
        tt.same(s.outputs.map(x => x.name).sort(), [...extracted.outputs].sort(), `K=${k} stage ${s.index + 1} outputs`)
      }
    }
  })
}
