/**
 * SSR scatter benchmark: windows per second through Scatter over P = 1 and
 * P = 2 local peer processes, measured in one run, and the parallel
 * efficiency (P=2 rate / (2 × P=1 rate)). Every peer runs ORT with one
 * thread, so P peers use P of this machine's cores: the figure shows how
 * well data-parallel windows scale with peers, not ORT's own threading.
 *
 *   node bench/ssr.ts [--preset tiny] [--windows 24] [--json]
 */
import { Coordinator } from '../coordinator/coordinator.ts'
import { startLocalMesh } from '../coordinator/local-mesh.ts'
import { Scatter } from '../coordinator/scatter.ts'
import { gaussian } from '../src/diffusion/rng.ts'
import { buildSsr } from '../src/model/ssr.ts'
import { getSsrPreset } from '../src/model/ssr-presets.ts'
import { buildDag } from '../src/onnx/graph.ts'
import type { Tensor } from '../src/tensor/tensor.ts'
import { benchArgs, numberFlag } from './args.ts'

const usage = 'node bench/ssr.ts [--preset tiny] [--windows 24] [--json]'
const values = benchArgs({ preset: { type: 'string', default: 'tiny' }, windows: { type: 'string', default: '24' }, json: { type: 'boolean', default: false } }, usage)
const count = numberFlag(values, 'windows', usage)
const config = getSsrPreset(values.preset ?? 'tiny')
const model = buildSsr(config, { weights: 'seeded', seed: 1 })
const dag = buildDag(model, { dims: { batch: 1 } })
const f32 = (data: Float32Array, shape: number[]): Tensor => ({ dtype: 'F32', shape, data: new Uint8Array(data.buffer) })
const tasks = Array.from({ length: count }, (_, i) => ({
  x: f32(gaussian(i, 'bench-x', 6 * config.window * config.height * config.width), [1, 6, config.window, config.height, config.width]),
  logsnr: f32(Float32Array.of(0), [1]),
  aug: f32(Float32Array.of(3), [1]),
  text: f32(gaussian(0, 'bench-text', config.textLength * config.textDim), [1, config.textLength, config.textDim])
}))

const mesh = await startLocalMesh(2, { extraArgs: () => ['--threads', '1'] })
const coordinator = await Coordinator.start()
const rates: Record<number, number> = {}
try {
  const peers = await coordinator.connect(mesh.peers.map((p) => p.addrs[0]))
  for (const p of [1, 2]) {
    const scatter = await Scatter.open(coordinator, model, dag, peers.slice(0, p))
    try {
      await scatter.run(tasks.slice(0, 2 * p)) // warm the sessions
      const started = performance.now()
      await scatter.run(tasks)
      rates[p] = count / ((performance.now() - started) / 1000)
      if (values.json !== true) console.log(`P=${p}: ${rates[p].toFixed(2)} windows/s (${values.preset}, ${config.window}×${config.height}×${config.width} windows)`)
    } finally {
      await scatter.close()
    }
  }
} finally {
  await coordinator.stop()
  await mesh.stop()
}
const efficiency = rates[2] / (2 * rates[1])
if (values.json === true) console.log(JSON.stringify({ preset: values.preset, windowsPerSecond: rates, parallelEfficiency: efficiency }))
else console.log(`parallel efficiency at P=2: ${efficiency.toFixed(2)}`)
