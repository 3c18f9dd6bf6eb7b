import t from 'tap'
import * as ort from 'onnxruntime-node'
import { buildDag, unresolvedValues } from '../src/onnx/graph.ts'
import { encodeModel } from '../src/onnx/model-io.ts'
import { ELEM, attrInts, tensorDims } from '../src/onnx/proto.ts'
import type { ModelProto } from '../src/onnx/proto.ts'
import { toOrt } from '../src/onnx/ort-tensor.ts'
import { runModel } from '../src/onnx/run.ts'
import { sessionOptions } from '../src/onnx/session-options.ts'
import { f32, view } from '../src/tensor/tensor.ts'
import type { Tensor } from '../src/tensor/tensor.ts'
import { getPreset } from '../src/model/presets.ts'
import { SSR_IN_CHANNELS, SSR_IO, buildSsr, describeSsrLevels, ssrInputSize, ssrLevelOutputs, ssrParameterCount, ssrParameterCounts } from '../src/model/ssr.ts'
import type { SsrConfig } from '../src/model/ssr-config.ts'
import { getSsrPreset, ssrPresetNames } from '../src/model/ssr-presets.ts'
import { mulberry32 } from '../src/util/prng.ts'
import { errorOf, maxDiff } from './fixtures/compare.ts'

const tiny = getSsrPreset('tiny')

/** Seeded inputs for a config at batch n; x is [n, 6, frames, H, W] (frames defaults to the window). */
function inputs (config: SsrConfig, n: number, seed: number, frames = config.window): Record<string, Tensor> {
  const rand = mulberry32(seed)
  const uni = (count: number): number[] => Array.from({ length: count }, () => rand() * 2 - 1)
  return {
    [SSR_IO.video]: f32([n, SSR_IN_CHANNELS, frames, config.height, config.width], uni(n * SSR_IN_CHANNELS * frames * config.height * config.width)),
    [SSR_IO.logsnr]: f32([n], uni(n).map(v => v * 10)),
    [SSR_IO.aug]: f32([n], uni(n).map(v => v * 5)),
    [SSR_IO.text]: f32([n, config.textLength, config.textDim], uni(n * config.textLength * config.textDim))
  }
}

/** Frames [from, from + count) of a video tensor [N, C, T, H, W], as a new tensor. */
function frames (x: Tensor, from: number, count: number): Tensor {
  const [N, C, T, H, W] = x.shape
  const data = view(x) as Float32Array
  const plane = H * W
  const out = new Float32Array(N * C * count * plane)
  for (let b = 0; b < N; b++) {
    for (let c = 0; c < C; c++) {
      const src = ((b * C + c) * T + from) * plane
      out.set(data.subarray(src, src + count * plane), (b * C + c) * count * plane)
    }
  }
  return f32([N, C, count, H, W], out)
}

/** Frame t of v [N, C, T, H, W] as a flat array (all n and channels). */
function frameOf (v: Tensor, tt: number): Float32Array {
  return view(frames(v, tt, 1)) as Float32Array
}


t.test('presets validate, match the base presets, report their sizes', async t => {
  t.same(ssrPresetNames, ['tiny', 'small', 'paper'])
  for (const name of ssrPresetNames) {
    const config = getSsrPreset(name)
    const base = getPreset(name)
    t.equal(config.textDim, base.textDim, `${name}: textDim equals the base preset's`)
    t.equal(config.textLength, base.textLength, `${name}: textLength equals the base preset's`)
    t.same(ssrInputSize(config), { height: base.height, width: base.width }, `${name}: the SSR upsamples the base model's frames`)
    const counts = ssrParameterCounts(config)
    t.equal(counts.spatial + counts.temporal, counts.total)
    t.ok(counts.temporal > 0 && counts.spatial > 0)
    t.comment(`${name}: ×${config.scale} ${base.height}×${base.width} → ${config.height}×${config.width}, windows of ${config.window} frames; ${counts.total.toLocaleString('en')} parameters (${counts.spatial.toLocaleString('en')} spatial, ${counts.temporal.toLocaleString('en')} temporal); levels ${describeSsrLevels(config).map(s => `[${s.join('×')}]`).join(' ')}`)
  }
  t.same(describeSsrLevels(getSsrPreset('paper')).map(s => s[1]), [16, 16, 16, 16, 16], 'paper: time is never resampled')
  t.ok(getSsrPreset('tiny') !== getSsrPreset('tiny'), 'getSsrPreset returns a copy')
  const err = errorOf(() => getSsrPreset('huge'))
  t.equal(err.code, 'BAD_ARGUMENT')
  t.match(err.message, /unknown SSR preset 'huge': use one of tiny, small, paper/)
})

t.test('bad configs are BAD_ARGUMENT with the number and the reason', async t => {
  const cases: Array<[Partial<SsrConfig>, RegExp]> = [
    [{ height: 130 }, /SSR config: height = 130 must be divisible by 2\^\(levels-1\) = 4: each of the 2 spatial downsamplings halves it \(130 → 65 → 32\.50\); use a multiple of 4, e.g. 128 or 132/],
    [{ width: 136, scale: 16 }, /width = 136 must be divisible by scale = 16: the low-resolution input is width\/scale = 8\.50 pixels; use a multiple of 16, e.g. 128 or 144/],
    [{ height: 20, scale: 3 }, /height = 20 must be divisible by scale = 3.*use a multiple of 12, e.g. 12 or 24/],
    [{ scale: 1 }, /scale must be at least 2/],
    [{ scale: 0 }, /scale must be a positive integer, got 0/],
    [{ window: 0 }, /window must be a positive integer, got 0/],
    [{ window: 2.5 }, /window must be a positive integer, got 2\.5/],
    [{ channels: [8, 16] }, /channels must list one width per level \(3 levels\)/],
    [{ channels: [8, 18, 32] }, /channels\[1\] = 18 must be divisible by groups = 4/],
    [{ heads: 3 }, /channels\[2\] = 32 must be divisible by heads = 3: it is in attentionLevels/],
    [{ attentionLevels: [3] }, /attentionLevels lists 3, which is not a level \(0\.\.2\)/],
    [{ attentionLevels: [2, 2] }, /attentionLevels lists a level twice/],
    [{ levels: 0 }, /levels must be a positive integer, got 0/],
    [{ resBlocks: 1.5 }, /resBlocks must be a positive integer, got 1\.5/],
    [{ textDim: -1 }, /textDim must be a positive integer, got -1/]
  ]
  for (const [patch, message] of cases) {
    const err = errorOf(() => buildSsr({ ...tiny, ...patch }, { weights: 'none' }))
    t.equal(err.code, 'BAD_ARGUMENT', JSON.stringify(patch))
    t.match(err.message, message)
  }
  // Heads only matter where there is attention: no temporal attention in the SSR.
  t.doesNotThrow(() => buildSsr({ ...tiny, heads: 3, attentionLevels: [] }, { weights: 'none' }))
  t.equal(errorOf(() => buildSsr(tiny, { weights: 'lots' as 'none' })).code, 'BAD_ARGUMENT')
  t.equal(errorOf(() => buildSsr(tiny, { weights: 'seeded', seed: 0.5 })).code, 'BAD_ARGUMENT')
  t.equal(errorOf(() => buildSsr(tiny, { weights: 'seeded', inflationInit: 'ones' as 'zero' })).code, 'BAD_ARGUMENT')
})

t.test('tiny: shapes at every level, ORT output shape, conditioning inputs matter', async t => {
  const model = buildSsr(tiny, { weights: 'seeded', seed: 1 })
  t.same(model.graph!.input!.map(i => i.name), [SSR_IO.video, SSR_IO.logsnr, SSR_IO.aug, SSR_IO.text])
  t.same(model.graph!.output!.map(o => o.name), [SSR_IO.output])
  const symbolic = buildDag(model)
  const bound = buildDag(model, { dims: { batch: 2 } })
  const outs = ssrLevelOutputs(tiny)
  t.same(outs.map(o => o.name), ['down0/out', 'down1/out', 'mid/out', 'up1/out', 'up0/out'])
  t.same(outs.map(o => o.shape), [[8, 8, 128, 128], [16, 8, 64, 64], [32, 8, 32, 32], [16, 8, 64, 64], [8, 8, 128, 128]])
  for (const o of outs) {
    t.same(symbolic.values.get(o.name)?.dims, ['batch', ...o.shape], `${o.name} static dims`)
    t.same(bound.values.get(o.name)?.shape, [2, ...o.shape], `${o.name} with batch 2`)
  }
  t.same(symbolic.values.get(SSR_IO.video)?.dims, ['batch', 6, 8, 128, 128])
  t.same(symbolic.values.get(SSR_IO.output)?.dims, ['batch', 3, 8, 128, 128])
  t.same(unresolvedValues(bound), [], 'static inference knows every shape: no probe run needed')

  const feeds = inputs(tiny, 1, 5)
  const { v } = await runModel(model, feeds)
  t.same(v.shape, [1, 3, tiny.window, tiny.height, tiny.width], 'v is [1, 3, L, H, W]')
  const values = view(v) as Float32Array
  t.ok(values.every(Number.isFinite), 'finite output')
  const rms = Math.sqrt(values.reduce((a, b) => a + b * b, 0) / values.length)
  t.ok(rms > 0.05 && rms < 5, `activations stay O(1) (rms ${rms.toFixed(3)})`)

  for (const name of [SSR_IO.logsnr, SSR_IO.aug, SSR_IO.text] as const) {
    const changed = { ...feeds, [name]: f32(feeds[name].shape, (view(feeds[name]) as Float32Array).map(x => x + 1)) }
    const { v: w } = await runModel(model, changed)
    t.ok(maxDiff(view(v) as Float32Array, view(w) as Float32Array) > 1e-4, `the output depends on ${name}`)
  }
})

t.test('no temporal resampling, no temporal attention: every 5-D value keeps L frames', async t => {
  // An odd window (a halving would give 2 or 3) and the tiny preset itself.
  const configs: SsrConfig[] = [tiny, { ...tiny, window: 5, levels: 4, channels: [8, 8, 16, 16], attentionLevels: [1, 3] }]
  for (const config of configs) {
    const model = buildSsr(config, { weights: 'none', inflationInit: 'random' })
    const dag = buildDag(model, { dims: { batch: 1 } })
    const L = config.window
    // GroupNorm's internals are [N, G, C/G, T, H·W] (and their statistics): time on axis 3.
    const grouped = /\/(group|mean|center|square|var|var_eps|std|normalize)$/
    // The timestep embedding per channel, [N, C, 1, 1, 1], broadcasts over time and space.
    const perChannel = /\/temb\/expand$/
    let checked = 0
    const wrong: string[] = []
    for (const value of dag.values.values()) {
      if (value.kind === 'initializer' || value.shape?.length !== 5) continue
      const producer = value.producer >= 0 ? dag.nodes[value.producer].name : ''
      const axis = grouped.test(producer) ? 3 : 2
      if (perChannel.test(producer) && value.shape.slice(2).every(d => d === 1)) continue
      if (value.shape[axis] !== L) wrong.push(`${value.name} ${JSON.stringify(value.shape)}`)
      checked++
    }
    t.same(wrong, [], `window ${L}: every 5-D value has ${L} frames on its time axis`)
    t.ok(checked > 100, `window ${L}: ${checked} 5-D values checked`)
    t.same(unresolvedValues(dag), [], 'every shape known')
    const nodes = model.graph!.node!
    t.notOk(nodes.some(n => n.opType === 'ConvTranspose'), 'no transposed (temporal up-sampling) convolution')
    t.ok(nodes.filter(n => n.opType === 'Conv').every(n => (attrInts(n, 'strides') ?? [1])[0] === 1), 'every convolution has time stride 1')
    t.notOk(nodes.some(n => n.opType === 'LayerNormalization' || /tattn|tdown|tup/.test(n.name ?? '')), 'no temporal attention, no temporal resampling blocks')
    const temporalKernels = nodes.filter(n => n.opType === 'Conv' && (attrInts(n, 'kernel_shape') ?? [1])[0] > 1)
    t.ok(temporalKernels.length === 2 * config.levels - 1 && temporalKernels.every(n => /\/inflate\/temporal_conv$/.test(n.name ?? '')),
      `exactly one temporal conv per inflation block, one block per level pass (${temporalKernels.length})`)
    const names = model.graph!.initializer!.map(i => i.name!)
    t.ok(names.every(n => n.startsWith('spatial.') || n.startsWith('temporal.')), 'every weight is spatial. or temporal.')
    t.ok(names.filter(n => n.startsWith('temporal.')).every(n => n.includes('.inflate.')), 'temporal = the inflation blocks')
    t.notOk(names.some(n => n.startsWith('spatial.') && n.includes('.inflate.')))
  }
})

t.test('zero-init inflation: every output frame depends on its own input frame only', async t => {
  const L = tiny.window
  const feeds = inputs(tiny, 1, 13)
  const px = Float32Array.from(view(feeds.x) as Float32Array)
  const plane = tiny.height * tiny.width
  // Frame 0 of all 6 channels: the noisy high-res frame and the low-res condition.
  for (let c = 0; c < SSR_IN_CHANNELS; c++) for (let i = 0; i < plane; i++) px[(c * L) * plane + i] += 0.5
  const perturbed = { ...feeds, x: f32(feeds.x.shape, px) }
  const changes = async (inflationInit: 'zero' | 'random'): Promise<number[]> => {
    const model = buildSsr(tiny, { weights: 'seeded', seed: 3, inflationInit })
    const a = await runModel(model, feeds)
    const b = await runModel(model, perturbed)
    return Array.from({ length: L }, (_, f) => maxDiff(frameOf(a.v, f), frameOf(b.v, f)))
  }
  const zero = await changes('zero')
  t.ok(zero[0] > 1e-3, `zero init: frame 0 responds to its own input (${zero[0].toExponential(2)})`)
  t.same(zero.slice(1), Array(L - 1).fill(0), 'zero init: frames 1..L-1 are bit-exactly unchanged')
  const live = await changes('random')
  t.comment(`random init: |Δ frame f| = ${live.map(d => d.toExponential(1)).join(' ')}`)
  t.ok(live[0] > 1e-3 && live[1] > 1e-5, 'random init: frame 1 depends on frame 0')
  // Each inflation block has one (3,1,1) conv; the longest path crosses
  // 2·levels − 1 blocks, so a frame reaches at most that many frames away.
  const reach = 2 * tiny.levels - 1
  t.same(live.slice(reach + 1), Array(L - reach - 1).fill(0), `random init: temporal receptive field is ±${reach} frames`)
})

t.test('zero init: overlapping windows agree bit-exactly on shared frames', async t => {
  const model = buildSsr(tiny, { weights: 'seeded', seed: 4 })
  const clip = inputs(tiny, 1, 21, 12)
  const run = async (from: number): Promise<Tensor> => (await runModel(model, { ...clip, x: frames(clip.x, from, tiny.window) })).v
  const a = await run(0) // frames 0..7
  const b = await run(4) // frames 4..11
  for (let f = 4; f < 8; f++) t.equal(maxDiff(frameOf(a, f), frameOf(b, f - 4)), 0, `clip frame ${f}`)
})

t.test('seeded weights: deterministic, seed-dependent, zero-init projections', async t => {
  const a = encodeModel(buildSsr(tiny, { weights: 'seeded', seed: 7 }))
  const b = encodeModel(buildSsr(tiny, { weights: 'seeded', seed: 7 }))
  t.ok(Buffer.from(a).equals(Buffer.from(b)), 'same seed → identical bytes')
  const w = (m: ModelProto, name: string): Buffer => Buffer.from(m.graph!.initializer!.find(x => x.name === name)!.rawData!)
  const m7 = buildSsr(tiny, { weights: 'seeded', seed: 7 })
  const m8 = buildSsr(tiny, { weights: 'seeded', seed: 8 })
  t.notOk(w(m7, 'spatial.in.conv.weight').equals(w(m8, 'spatial.in.conv.weight')), 'different seed → different weights')
  t.notOk(w(m7, 'spatial.aug_emb.fc1.weight').equals(w(m7, 'spatial.temb.fc1.weight')), 'aug has its own embedding')
  const zeros = (m: ModelProto, name: string): boolean => new Float32Array(new Uint8Array(w(m, name)).buffer).every(x => x === 0)
  const projections = m7.graph!.initializer!.map(x => x.name!).filter(n => /\.inflate\.proj\.weight$/.test(n))
  t.equal(projections.length, 2 * tiny.levels - 1, 'one inflation block per level pass')
  t.ok(projections.every(n => zeros(m7, n)), 'inflation projections start at zero')
  const live = buildSsr(tiny, { weights: 'seeded', seed: 7, inflationInit: 'random' })
  t.notOk(projections.some(n => zeros(live, n)), "inflationInit 'random' makes them live")
  t.same(m7.metadataProps?.find(p => p.key === 'lumiere.ssr.weights')?.value, 'seeded:7:zero')
  t.same(JSON.parse(m7.metadataProps?.find(p => p.key === 'lumiere.ssr.config')?.value ?? 'null'), tiny)
})

t.test('paper preset with weights none: no weight bytes, plannable', async t => {
  const config = getSsrPreset('paper')
  const model = buildSsr(config, { weights: 'none' })
  const inits = model.graph!.initializer!
  const rawBytes = inits.reduce((sum, x) => sum + (x.rawData?.byteLength ?? 0) + (x.floatData?.length ?? 0) * 4, 0)
  t.equal(rawBytes, 0, 'initializers hold no bytes')
  t.ok(inits.every(x => x.dataType === ELEM.FLOAT && tensorDims(x).length > 0), 'but declare their type and dims')
  const params = inits.reduce((sum, x) => sum + tensorDims(x).reduce((a, b) => a * b, 1), 0)
  t.equal(params, ssrParameterCount(config))
  const dag = buildDag(model, { dims: { batch: 1 } })
  t.equal([...dag.initializers.values()].reduce((a, b) => a + b.bytes, 0), params * 4, 'the DAG sizes weights from dims')
  for (const o of ssrLevelOutputs(config)) t.same(dag.values.get(o.name)?.shape, [1, ...o.shape], o.name)
  t.same(dag.values.get(SSR_IO.output)?.shape, [1, 3, 16, 1024, 1024])
  const flops = dag.nodes.reduce((a, n) => a + n.flops, 0)
  t.comment(`paper SSR: ${params.toLocaleString('en')} parameters (${(params * 4 / 2 ** 30).toFixed(2)} GiB as F32), ${model.graph!.node!.length} nodes, encoded ${encodeModel(model).byteLength} bytes, ${(flops / 1e12).toFixed(1)} TFLOP per 16-frame window`)
})

/** Seconds of one session.run of a built model, session created once; best of `runs` after a warm-up. */
async function secondsPerWindow (model: ModelProto, config: SsrConfig, threads: number, runs: number): Promise<number> {
  const session = await ort.InferenceSession.create(encodeModel(model), sessionOptions(threads))
  try {
    const feeds: Record<string, ort.Tensor> = {}
    for (const [name, x] of Object.entries(inputs(config, 1, 1))) feeds[name] = toOrt(x)
    if (runs > 1) await session.run(feeds)
    let best = Infinity
    for (let i = 0; i < runs; i++) {
      const started = performance.now()
      await session.run(feeds)
      best = Math.min(best, (performance.now() - started) / 1000)
    }
    return best
  } finally {
    await session.release()
  }
}

t.test('seconds per window (batch 1), 1 and 2 threads', async t => {
  const tinyModel = buildSsr(tiny, { weights: 'seeded' })
  for (const threads of [1, 2]) {
    const s = await secondsPerWindow(tinyModel, tiny, threads, 3)
    t.comment(`tiny SSR (${tiny.height}², ${tiny.window} frames): ${s.toFixed(3)} s per window, ${threads} thread(s)`)
    t.ok(s < 2, `tiny: well under a few seconds per window (${s.toFixed(3)} s, ${threads} thread(s))`)
  }
  const small = getSsrPreset('small')
  const smallModel = buildSsr(small, { weights: 'seeded' })
  for (const threads of [1, 2]) {
    const s = await secondsPerWindow(smallModel, small, threads, 1)
    t.comment(`small SSR (${small.height}², ${small.window} frames): ${s.toFixed(2)} s per window, ${threads} thread(s), cold run`)
    t.ok(s > 0)
  }
})
