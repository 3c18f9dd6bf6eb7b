import t from 'tap'
import { partition } from '../coordinator/partition.ts'
import { GraphBuilder } from '../src/onnx/builder.ts'
import { extractStage } from '../src/onnx/extract.ts'
import { buildDag, unresolvedValues } from '../src/onnx/graph.ts'
import { encodeModel } from '../src/onnx/model-io.ts'
import { ELEM, tensorDims } from '../src/onnx/proto.ts'
import type { ModelProto } from '../src/onnx/proto.ts'
import { runModel } from '../src/onnx/run.ts'
import { f32, view } from '../src/tensor/tensor.ts'
import type { Tensor } from '../src/tensor/tensor.ts'
import { temporalDown, temporalUp } from '../src/model/blocks.ts'
import { Scope } from '../src/model/layers.ts'
import { Params } from '../src/model/params.ts'
import { getPreset, presetNames } from '../src/model/presets.ts'
import { STUNET_IO, buildStunet, describeLevels, levelOutputs, parameterCount, parameterCounts } from '../src/model/stunet.ts'
import type { StunetConfig } from '../src/model/stunet-config.ts'
import { mulberry32 } from '../src/util/prng.ts'
import { maxAbsDiff, runChain } from './fixtures/stages.ts'
import { errorOf, maxDiff } from './fixtures/compare.ts'

const tiny = getPreset('tiny')

/** Seeded inputs for a config at batch n; `frame` (if given) builds x frame by frame. */
function inputs (config: StunetConfig, n: number, seed: number, frame?: (rand: () => number) => number[]): Record<string, Tensor> {
  const rand = mulberry32(seed)
  const uni = (count: number): number[] => Array.from({ length: count }, () => rand() * 2 - 1)
  const { inChannels: C, frames: T, height: H, width: W } = config
  let x: number[]
  if (frame == null) {
    x = uni(n * C * T * H * W)
  } else {
    // [N, C, T, H, W] with the same H·W image for every t of each (n, c).
    const img = frame(rand)
    x = []
    for (let b = 0; b < n; b++) for (let c = 0; c < C; c++) for (let tt = 0; tt < T; tt++) x.push(...img.slice(((b * C) + c) * H * W, ((b * C) + c + 1) * H * W))
  }
  return {
    [STUNET_IO.video]: f32([n, C, T, H, W], x),
    [STUNET_IO.logsnr]: f32([n], uni(n).map(v => v * 10)),
    [STUNET_IO.text]: f32([n, config.textLength, config.textDim], uni(n * config.textLength * config.textDim))
  }
}

/** Frame t of v [N, 3, T, H, W] as a flat array (all n and channels). */
function frameOf (v: Tensor, tt: number): number[] {
  const [N, C, T, H, W] = v.shape
  const data = view(v) as Float32Array
  const out: number[] = []
  for (let b = 0; b < N; b++) for (let c = 0; c < C; c++) out.push(...data.subarray(((b * C + c) * T + tt) * H * W, ((b * C + c) * T + tt + 1) * H * W))
  return out
}


t.test('presets validate and report their sizes', async t => {
  t.same(presetNames, ['tiny', 'small', 'paper'])
  for (const name of presetNames) {
    const config = getPreset(name)
    const counts = parameterCounts(config)
    t.equal(counts.spatial + counts.temporal, counts.total)
    t.ok(counts.temporal > 0 && counts.spatial > 0)
    t.comment(`${name}: ${counts.total.toLocaleString('en')} parameters (${counts.spatial.toLocaleString('en')} spatial, ${counts.temporal.toLocaleString('en')} temporal); levels ${describeLevels(config).map(s => `[${s.join('×')}]`).join(' ')}`)
  }
  t.ok(parameterCount(tiny) <= 1_000_000, 'tiny has at most 1 M parameters')
  const paper = describeLevels(getPreset('paper'))
  t.same(paper.map(s => s[1]), [80, 40, 20, 10, 5], 'paper: time halves four times')
  t.same(paper.map(s => s[2]), [128, 64, 32, 16, 8])
  t.ok(getPreset('tiny') !== getPreset('tiny'), 'getPreset returns a copy')
  const err = errorOf(() => getPreset('huge'))
  t.equal(err.code, 'BAD_ARGUMENT')
  t.match(err.message, /unknown STUNet preset 'huge': use one of tiny, small, paper/)
})

t.test('bad configs are BAD_ARGUMENT with the number and the reason', async t => {
  const cases: Array<[Partial<StunetConfig>, RegExp]> = [
    [{ frames: 18 }, /frames = 18 must be divisible by 2\^\(levels-1\) = 4: each of the 2 downsamplings halves it \(18 → 9 → 4\.50\); use a multiple of 4, e.g. 16 or 20/],
    [{ height: 30 }, /height = 30 must be divisible by 2\^\(levels-1\) = 4.*30 → 15 → 7\.50/],
    [{ channels: [16, 32] }, /channels must list one width per level \(3 levels\)/],
    [{ channels: [16, 30, 64] }, /channels\[1\] = 30 must be divisible by groups = 8/],
    [{ heads: 5 }, /channels\[1\] = 32 must be divisible by heads = 5: it is in attentionLevels/],
    [{ heads: 3, channels: [24, 40, 64], attentionLevels: [] }, /channels\[2\] = 64 must be divisible by heads = 3: the coarsest level has temporal self-attention/],
    [{ attentionLevels: [3] }, /attentionLevels lists 3, which is not a level \(0\.\.2\)/],
    [{ inChannels: 5 as 3 }, /inChannels must be 3 .* or 7/],
    [{ levels: 0 }, /levels must be a positive integer, got 0/],
    [{ resBlocks: 1.5 }, /resBlocks must be a positive integer, got 1\.5/]
  ]
  for (const [patch, message] of cases) {
    const err = errorOf(() => buildStunet({ ...tiny, ...patch }, { weights: 'none' }))
    t.equal(err.code, 'BAD_ARGUMENT', JSON.stringify(patch))
    t.match(err.message, message)
  }
  t.equal(errorOf(() => buildStunet(tiny, { weights: 'lots' as 'none' })).code, 'BAD_ARGUMENT')
  t.equal(errorOf(() => buildStunet(tiny, { weights: 'seeded', seed: 0.5 })).code, 'BAD_ARGUMENT')
})

t.test('tiny: shapes at every level, ORT output shape, speed', async t => {
  const model = buildStunet(tiny, { weights: 'seeded', seed: 1 })
  const symbolic = buildDag(model)
  const bound = buildDag(model, { dims: { batch: 2 } })
  const outs = levelOutputs(tiny)
  t.same(outs.map(o => o.name), ['down0/out', 'down1/out', 'mid/out', 'up1/out', 'up0/out'])
  t.same(outs.map(o => o.shape), [[16, 16, 32, 32], [32, 8, 16, 16], [64, 4, 8, 8], [32, 8, 16, 16], [16, 16, 32, 32]])
  for (const o of outs) {
    t.same(symbolic.values.get(o.name)?.dims, ['batch', ...o.shape], `${o.name} static dims`)
    t.same(bound.values.get(o.name)?.shape, [2, ...o.shape], `${o.name} with batch 2`)
  }
  t.same(symbolic.values.get(STUNET_IO.output)?.dims, ['batch', 3, 16, 32, 32])
  t.same(unresolvedValues(bound), [], 'static inference knows every shape: no probe run needed')

  const feeds = inputs(tiny, 1, 5)
  const started = performance.now()
  const { v } = await runModel(model, feeds)
  const seconds = (performance.now() - started) / 1000
  t.comment(`tiny, batch 1: one ORT run (session included) ${seconds.toFixed(3)} s`)
  t.ok(seconds < 3, 'tiny runs well under a few seconds')
  t.same(v.shape, [1, 3, 16, 32, 32])
  const values = view(v) as Float32Array
  t.ok(values.every(Number.isFinite), 'finite output')
  const rms = Math.sqrt(values.reduce((a, b) => a + b * b, 0) / values.length)
  t.ok(rms > 0.05 && rms < 5, `activations stay O(1) (rms ${rms.toFixed(3)})`)
})

t.test('edge configs: one level (no resampling), 7 input channels, no cross-attention', async t => {
  const configs: StunetConfig[] = [
    { ...tiny, levels: 1, channels: [8], frames: 3, height: 5, width: 4, inChannels: 7, attentionLevels: [0], heads: 2, groups: 4 },
    { ...tiny, levels: 2, channels: [8, 8], frames: 2, height: 2, width: 2, attentionLevels: [], heads: 1, groups: 1, resBlocks: 2 }
  ]
  for (const config of configs) {
    const { v } = await runModel(buildStunet(config, { weights: 'seeded', inflationInit: 'random' }), inputs(config, 2, 1))
    t.same(v.shape, [2, 3, config.frames, config.height, config.width], `levels ${config.levels}, inChannels ${config.inChannels}`)
    t.ok((view(v) as Float32Array).every(Number.isFinite))
  }
})

t.test('seeded weights: deterministic, seed-dependent, spatial/temporal by name', async t => {
  const a = encodeModel(buildStunet(tiny, { weights: 'seeded', seed: 7 }))
  const b = encodeModel(buildStunet(tiny, { weights: 'seeded', seed: 7 }))
  t.ok(Buffer.from(a).equals(Buffer.from(b)), 'same seed → identical bytes')
  const w = (m: ModelProto, name: string): Buffer => Buffer.from(m.graph!.initializer!.find(x => x.name === name)!.rawData!)
  const m7 = buildStunet(tiny, { weights: 'seeded', seed: 7 })
  const m8 = buildStunet(tiny, { weights: 'seeded', seed: 8 })
  t.notOk(w(m7, 'spatial.in.conv.weight').equals(w(m8, 'spatial.in.conv.weight')), 'different seed → different weights')
  // Structural initialisations do not depend on the seed.
  t.ok(w(m7, 'temporal.down0.tdown.conv.weight').equals(w(m8, 'temporal.down0.tdown.conv.weight')))

  const names = m7.graph!.initializer!.map(x => x.name!)
  t.ok(names.every(n => n.startsWith('spatial.') || n.startsWith('temporal.')), 'every weight is spatial. or temporal.')
  const temporal = names.filter(n => n.startsWith('temporal.'))
  t.ok(temporal.every(n => /\.(inflate|tdown|tup|tattn)\./.test(n)), 'temporal = inflation blocks and temporal resampling')
  t.notOk(names.some(n => n.startsWith('spatial.') && /\.(inflate|tdown|tup|tattn)\./.test(n)))
  const zeros = (m: ModelProto, name: string): boolean => new Float32Array(new Uint8Array(w(m, name)).buffer).every(x => x === 0)
  t.ok(zeros(m7, 'temporal.down0.inflate.proj.weight') && zeros(m7, 'temporal.mid.tattn.proj.weight'), 'inflation projections start at zero')
  const live = buildStunet(tiny, { weights: 'seeded', seed: 7, inflationInit: 'random' })
  t.notOk(zeros(live, 'temporal.down0.inflate.proj.weight') || zeros(live, 'temporal.mid.tattn.proj.weight'), "inflationInit 'random' makes them live")
  t.ok(m7.graph!.node!.some(n => n.name === 'down1/res0/conv1'), 'nodes are named by block')
})

t.test('zero-init inflation: identical frames in, identical frames out', async t => {
  const model = buildStunet(tiny, { weights: 'seeded', seed: 3 })
  const { inChannels: C, height: H, width: W, frames: T } = tiny
  const feeds = inputs(tiny, 2, 11, rand => Array.from({ length: 2 * C * H * W }, () => rand() * 2 - 1))
  const { v } = await runModel(model, feeds)
  const first = frameOf(v, 0)
  let worst = 0
  for (let tt = 1; tt < T; tt++) worst = Math.max(worst, maxDiff(first, frameOf(v, tt)))
  t.comment(`max |frame t - frame 0| = ${worst}`)
  t.ok(worst <= 1e-6, 'every output frame equals frame 0')
  t.ok(first.some(x => Math.abs(x) > 1e-3), 'and the output is not trivially zero')
})

t.test('temporal paths: frame 0 reaches frame T-1 only through live inflation blocks', async t => {
  const T = tiny.frames
  const feeds = inputs(tiny, 1, 13)
  const perturbed = { ...feeds, x: f32(feeds.x.shape, view(feeds.x) as Float32Array) }
  const px = view(perturbed.x) as Float32Array
  const plane = tiny.height * tiny.width
  for (let c = 0; c < tiny.inChannels; c++) for (let i = 0; i < plane; i++) px[(c * T) * plane + i] += 0.5
  const lastFrameChange = async (inflationInit: 'zero' | 'random'): Promise<number> => {
    const model = buildStunet(tiny, { weights: 'seeded', seed: 3, inflationInit })
    const a = await runModel(model, feeds)
    const b = await runModel(model, perturbed)
    t.ok(maxDiff(frameOf(a.v, 0), frameOf(b.v, 0)) > 1e-3, `${inflationInit}: frame 0 responds to its own input`)
    return maxDiff(frameOf(a.v, T - 1), frameOf(b.v, T - 1))
  }
  // Zero init: frame T-1 sees frames T-2..T-1 at level 0 and, through
  // nearest-neighbour resampling, frames 12..15 at coarser levels: never frame 0.
  t.equal(await lastFrameChange('zero'), 0, 'zero init: frame T-1 ignores frame 0')
  const live = await lastFrameChange('random')
  t.comment(`random init: |Δ frame T-1| = ${live}`)
  t.ok(live > 1e-4, 'random init: frame T-1 depends on frame 0')
})

t.test('temporal down then up is nearest-neighbour: [a,b,c,d] → [a,c] → [a,a,c,c]', async t => {
  const g = new GraphBuilder('resample')
  const ctx = { g, params: new Params(g, 'seeded', 1), groups: 1, consts: new Map<string, string>() }
  const x = g.input('x', 'F32', [1, 2, 4, 1, 2])
  const down = temporalDown(new Scope(ctx, 'down'), { v: x, c: 2, t: 4, h: 1, w: 2 })
  const up = temporalUp(new Scope(ctx, 'up'), down)
  g.output(down.v, 'F32', [1, 2, 2, 1, 2])
  g.output(up.v, 'F32', [1, 2, 4, 1, 2])
  // Channel c, frame f, pixel p holds 100c + 10f + p: frames a, b, c, d = 0, 1, 2, 3.
  const values: number[] = []
  for (let c = 0; c < 2; c++) for (let f = 0; f < 4; f++) for (let p = 0; p < 2; p++) values.push(100 * c + 10 * f + p)
  const out = await runModel(g.model(), { x: f32([1, 2, 4, 1, 2], values) })
  const frames = (tt: Tensor, c: number): number[] => {
    const d = Array.from(view(tt) as Float32Array)
    const T = tt.shape[2]
    return Array.from({ length: T }, (_, f) => (d[(c * T + f) * 2] - 100 * c) / 10)
  }
  for (let c = 0; c < 2; c++) {
    t.same(frames(out[down.v], c), [0, 2], `channel ${c}: down keeps frames a, c`)
    t.same(frames(out[up.v], c), [0, 0, 2, 2], `channel ${c}: up repeats each frame`)
  }
  t.same(Array.from(view(out[up.v]) as Float32Array).filter((_, i) => i % 2 === 1).map(v => v % 10), Array(8).fill(1), 'pixels stay in place')
})

t.test('paper preset with weights none: no weight bytes, plannable', async t => {
  const config = getPreset('paper')
  const model = buildStunet(config, { weights: 'none' })
  const inits = model.graph!.initializer!
  const rawBytes = inits.reduce((sum, x) => sum + (x.rawData?.byteLength ?? 0) + (x.floatData?.length ?? 0) * 4, 0)
  t.equal(rawBytes, 0, 'initializers hold no bytes')
  t.ok(inits.every(x => x.dataType === ELEM.FLOAT && tensorDims(x).length > 0), 'but declare their type and dims')
  const params = inits.reduce((sum, x) => sum + tensorDims(x).reduce((a, b) => a * b, 1), 0)
  t.equal(params, parameterCount(config))
  t.comment(`paper: ${params.toLocaleString('en')} parameters (${(params * 4 / 2 ** 30).toFixed(2)} GiB as F32), ${model.graph!.node!.length} nodes, encoded ${encodeModel(model).byteLength} bytes`)

  const dag = buildDag(model, { dims: { batch: 2 } })
  t.equal([...dag.initializers.values()].reduce((a, b) => a + b.bytes, 0), params * 4, 'the DAG sizes weights from dims')
  for (const o of levelOutputs(config)) t.same(dag.values.get(o.name)?.shape, [2, ...o.shape], o.name)
  const peers = Array.from({ length: 4 }, (_, i) => ({ id: `p${i}`, memoryBytes: 1e13, speed: 1e12 }))
  const plan = partition(dag, peers, { stages: 4 })
  t.equal(plan.stages.length, 4)
  // Stage models cut from it stay data-less too (what a planner ships to a simulator).
  for (const s of plan.stages) {
    const stage = extractStage(model, dag, s.nodes)
    t.same([...stage.inputs].sort(), s.inputs.map(i => i.name).sort(), `stage ${s.index + 1} receives what the plan says`)
    t.equal(stage.model.graph!.initializer!.reduce((sum, x) => sum + (x.rawData?.byteLength ?? 0), 0), 0)
  }
  t.comment(`paper, batch 2, 4 stages: ${plan.stages.map(s => `${(s.flops / 1e12).toFixed(1)} TFLOP`).join(' | ')}; wire ${(plan.totals.wireBytes / 1e9).toFixed(2)} GB per pass`)
})

t.test('tiny cut into 2 and 3 stages equals the whole graph bit-exactly', async t => {
  const model = buildStunet(tiny, { weights: 'seeded', seed: 9, inflationInit: 'random' })
  const feeds = inputs(tiny, 2, 17)
  const whole = await runModel(model, feeds)
  const dag = buildDag(model, { dims: { batch: 2 } })
  for (const k of [2, 3]) {
    const peers = Array.from({ length: k }, (_, i) => ({ id: `p${i}`, memoryBytes: 1e12, speed: 1e9 }))
    const plan = partition(dag, peers, { stages: k })
    const stages = plan.stages.map(s => extractStage(model, dag, s.nodes))
    const chained = await runChain(stages, feeds)
    t.equal(maxAbsDiff(chained[STUNET_IO.output], whole[STUNET_IO.output]), 0, `${k} stages: bit-exact`)
    t.comment(`${k} stages: ${plan.stages.map(s => `${s.nodes.length} nodes`).join(', ')}; boundaries ${plan.stages.slice(1).map(s => s.inputs.map(i => i.name).join(' ')).join(' / ')}`)
  }
})
