// Hedging slow SSR windows: with one peer slowed 20× (--throttle 20), a
// Scatter that also sends long-running windows to an idle peer finishes
// sooner than one that waits for the slow peer, with identical results.
import t from 'tap'
import { Coordinator } from '../coordinator/coordinator.ts'
import { startLocalMesh } from '../coordinator/local-mesh.ts'
import { Scatter } from '../coordinator/scatter.ts'
import { gaussian } from '../src/diffusion/rng.ts'
import { buildSsr } from '../src/model/ssr.ts'
import { getSsrPreset } from '../src/model/ssr-presets.ts'
import { buildDag } from '../src/onnx/graph.ts'
import type { Tensor } from '../src/tensor/tensor.ts'

// The tiny SSR at a quarter of its frame size and half its window: ~0.1 s a window.
const config = { ...getSsrPreset('tiny'), height: 64, width: 64, window: 4 }
const model = buildSsr(config, { weights: 'seeded', seed: 3, inflationInit: 'random' })
const dag = buildDag(model, { dims: { batch: 1 } })
const f32 = (data: Float32Array, shape: number[]): Tensor => ({ dtype: 'F32', shape, data: new Uint8Array(data.buffer) })
const text = f32(gaussian(1, 'text', config.textLength * config.textDim), [1, config.textLength, config.textDim])
const tasks = Array.from({ length: Number(process.env.N ?? 8) }, (_, i) => ({
  x: f32(gaussian(i, 'x', 6 * config.window * config.height * config.width), [1, 6, config.window, config.height, config.width]),
  logsnr: f32(Float32Array.of(0), [1]),
  aug: f32(Float32Array.of(3), [1]),
  text
}))
const same = (a: Array<Record<string, Tensor>>, b: Array<Record<string, Tensor>>): boolean =>
  a.length === b.length && a.every((r, i) => Buffer.from(r.v.data).equals(Buffer.from(b[i].v.data)))

t.test('hedging beats waiting for a peer slowed 20×, with identical results', async (t) => {
  const mesh = await startLocalMesh(3, { extraArgs: (i) => i === 2 ? ['--throttle', '20', '--threads', '1'] : ['--threads', '1'] })
  const coordinator = await Coordinator.start()
  t.teardown(async () => { await coordinator.stop(); await mesh.stop() })
  const peers = await coordinator.connect(mesh.peers.map((p) => p.addrs[0]))
  const plain = await Scatter.open(coordinator, model, dag, peers, { taskTimeoutMs: 60_000 })
  const hedged = await Scatter.open(coordinator, model, dag, peers, { taskTimeoutMs: 60_000, hedge: true })
  t.teardown(async () => { await plain.close(); await hedged.close() })
  await plain.run(tasks.slice(0, 3)) // warm every peer's session
  await hedged.run(tasks.slice(0, 3))

  let started = performance.now()
  const a = await plain.run(tasks)
  const plainMs = performance.now() - started
  const slow = peers[2].id
  started = performance.now()
  const before = hedged.counts()[slow]
  const b = await hedged.run(tasks)
  const hedgedMs = performance.now() - started
  t.comment(`without hedging ${plainMs.toFixed(0)} ms, with ${hedgedMs.toFixed(0)} ms; hedges ${JSON.stringify(hedged.hedgeStats())}; slow peer's windows used: ${hedged.counts()[slow] - before}`)
  t.ok(same(a, b), 'hedged and plain results are bit-identical')
  t.ok(hedged.hedgeStats().sent >= 1, 'a window that ran long was hedged')
  t.ok(hedgedMs < 0.6 * plainMs, 'hedging finished the job in well under the time of waiting for the slow peer')
})
