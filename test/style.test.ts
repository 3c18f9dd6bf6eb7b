// Stylized generation (DESIGN §1): W = α·W_style + (1 − α)·W_orig on the
// spatial weights only. Pure checks of src/model/style.ts and the CLI.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { modelCommand } from '../coordinator/cli/model-command.ts'
import { buildModelPackage } from '../src/model/builtin.ts'
import { getPreset } from '../src/model/presets.ts'
import { buildStunet } from '../src/model/stunet.ts'
import { SPATIAL_PREFIX, TEMPORAL_PREFIX, blendInitializers, checkAlpha, checkStyle, loadStyle, styleSubset, styleTemplate } from '../src/model/style.ts'
import { ELEM } from '../src/onnx/proto.ts'
import type { ModelProto, TensorProto } from '../src/onnx/proto.ts'
import { tensorBytes, tensorToProto } from '../src/onnx/tensor-proto.ts'
import { float16ToFloat32, float32ToFloat16 } from '../src/tensor/float16.ts'
import { readSafetensors, writeSafetensors } from '../src/tensor/safetensors.ts'
import type { Tensor } from '../src/tensor/tensor.ts'

const config = getPreset('tiny')
const base = buildStunet(config, { weights: 'seeded', seed: 1, inflationInit: 'random' })
const other = buildStunet(config, { weights: 'seeded', seed: 2, inflationInit: 'random' })
const style = styleTemplate(other)

function inits (m: ModelProto): Map<string, TensorProto> {
  return new Map((m.graph?.initializer ?? []).map((x) => [x.name ?? '', x]))
}

function bytesOf (m: ModelProto): Map<string, Buffer> {
  return new Map([...inits(m)].map(([n, x]) => [n, Buffer.from(tensorBytes(x))]))
}

function f32 (b: Uint8Array): Float32Array {
  return new Float32Array(Uint8Array.from(b).buffer)
}

/** Names whose bytes differ between two maps (want: name → bytes). */
function differing (names: Iterable<string>, got: Map<string, Buffer>, want: (name: string) => Buffer): string[] {
  return [...names].filter((n) => Buffer.compare(got.get(n)!, want(n)) !== 0)
}

const baseBytes = bytesOf(base)
const otherBytes = bytesOf(other)
const spatial = [...baseBytes.keys()].filter((n) => n.startsWith(SPATIAL_PREFIX))
const temporal = [...baseBytes.keys()].filter((n) => n.startsWith(TEMPORAL_PREFIX))

t.test('the template is every spatial weight, nothing temporal', async (t) => {
  t.ok(spatial.length > 50 && temporal.length > 10, `${spatial.length} spatial, ${temporal.length} temporal weights`)
  t.same(Object.keys(styleTemplate(base)).sort(), [...spatial].sort())
  t.same(spatial.filter((n) => Buffer.compare(Buffer.from(style[n].data), otherBytes.get(n)!) !== 0), [], 'template tensors are the model\'s weights')
  t.notOk(Object.keys(style).some((n) => n.startsWith(TEMPORAL_PREFIX)))
})

t.test('α = 0 leaves every weight bit-identical', async (t) => {
  const out = bytesOf(blendInitializers(base, style, 0))
  t.same(differing(baseBytes.keys(), out, (n) => baseBytes.get(n)!), [])
})

t.test('α = 1 gives exactly the style\'s spatial weights; temporal weights keep theirs', async (t) => {
  const out = bytesOf(blendInitializers(base, style, 1))
  t.same(differing(spatial, out, (n) => otherBytes.get(n)!), [], 'spatial = style')
  t.ok(differing(spatial, baseBytes, (n) => otherBytes.get(n)!).length > 50, 'the two seeds really differ')
  t.same(differing(temporal, out, (n) => baseBytes.get(n)!), [], 'temporal unchanged')
})

t.test('α = 0.5 gives exact float32 midpoints', async (t) => {
  const out = bytesOf(blendInitializers(base, style, 0.5))
  let bad = 0
  for (const name of spatial) {
    const a = f32(baseBytes.get(name)!)
    const b = f32(otherBytes.get(name)!)
    const got = f32(out.get(name)!)
    for (let i = 0; i < a.length; i++) if (Object.is(got[i], Math.fround(0.5 * a[i] + 0.5 * b[i])) === false) bad++
  }
  t.equal(bad, 0, 'every element is fround(0.5·a + 0.5·b)')
  t.same(differing(temporal, out, (n) => baseBytes.get(n)!), [], 'temporal unchanged')
})

t.test('blending does not modify the input model', async (t) => {
  blendInitializers(base, style, 0.7)
  blendInitializers(base, style, 1)
  t.same(differing(baseBytes.keys(), bytesOf(base), (n) => baseBytes.get(n)!), [])
})

t.test('a style may cover a subset of the spatial weights', async (t) => {
  const covered = spatial.slice(0, 3)
  const subset = Object.fromEntries(covered.map((n) => [n, style[n]]))
  t.doesNotThrow(() => { checkStyle(base, subset) })
  const out = bytesOf(blendInitializers(base, subset, 1))
  t.same(differing(baseBytes.keys(), out, (n) => covered.includes(n) ? otherBytes.get(n)! : baseBytes.get(n)!), [], 'covered weights blend, the rest keep theirs')
  const stage: ModelProto = { ...base, graph: { ...base.graph, initializer: [...inits(base).values()].filter((x) => x.name === covered[1] || x.name === temporal[0]) } }
  t.same(Object.keys(styleSubset(stage, style)), [covered[1]], 'styleSubset keeps the tensors a graph holds')
})

t.test('mistakes are BAD_ARGUMENT naming the tensor', async (t) => {
  const w = style[spatial[0]]
  t.throws(() => { checkStyle(base, { 'spatial.nope': w }) }, { code: 'BAD_ARGUMENT', message: /'spatial\.nope' is not a weight of the model/ })
  const tname = temporal[0]
  const tw = base.graph!.initializer!.find((x) => x.name === tname)!
  t.throws(() => { checkStyle(base, { [tname]: { dtype: 'F32', shape: (tw.dims ?? []).map(Number), data: tensorBytes(tw) } }) }, { code: 'BAD_ARGUMENT', message: new RegExp(`'${tname.replaceAll('.', '\\.')}' is a temporal weight`) })
  t.throws(() => { checkStyle(base, { [spatial[0]]: { ...w, shape: [w.data.byteLength / 4] } }) }, { code: 'BAD_ARGUMENT', message: new RegExp(`'${spatial[0].replaceAll('.', '\\.')}' is F32\\[\\d+\\] but`) })
  t.throws(() => { checkStyle(base, { [spatial[0]]: { ...w, dtype: 'F16', data: w.data.subarray(0, w.data.byteLength / 2) } }) }, { code: 'BAD_ARGUMENT', message: /is F16\[/ })
  t.throws(() => { checkStyle(base, { [spatial[0]]: { ...w, data: w.data.subarray(4) } }) }, { code: 'BAD_ARGUMENT' })
  t.throws(() => blendInitializers(base, { 'spatial.nope': w }, 0), { code: 'BAD_ARGUMENT' }, 'even α = 0 checks the style')
  for (const alpha of [-0.1, 1.5, Number.NaN, Infinity]) {
    t.throws(() => blendInitializers(base, style, alpha), { code: 'BAD_ARGUMENT', message: /alpha must be a number in \[0, 1\]/ }, `α = ${alpha}`)
  }
  t.equal(checkAlpha(0), 0)
  t.equal(checkAlpha(1), 1)
})

/** A one-initializer model: `spatial.w` (and `temporal.t`) → Identity → y. */
function tinyModel (w: TensorProto): ModelProto {
  return {
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'g',
      node: [{ opType: 'Identity', input: [w.name ?? ''], output: ['y'] }],
      initializer: [w],
      output: [{ name: 'y' }]
    }
  }
}

t.test('endpoints copy bytes: −0 and NaN survive α = 0, NaN in W_orig vanishes at α = 1', async (t) => {
  const orig = new Float32Array([-0, Number.NaN, 1, -2])
  const sty = new Float32Array([5, 6, -0, 8])
  const model = tinyModel(tensorToProto('spatial.w', { dtype: 'F32', shape: [4], data: new Uint8Array(orig.buffer) }))
  const s = { 'spatial.w': { dtype: 'F32' as const, shape: [4], data: new Uint8Array(sty.buffer) } }
  const at = (alpha: number): Buffer => Buffer.from(tensorBytes(blendInitializers(model, s, alpha).graph!.initializer![0]))
  t.equal(Buffer.compare(at(0), Buffer.from(orig.buffer)), 0)
  t.equal(Buffer.compare(at(1), Buffer.from(sty.buffer)), 0)
  const half = f32(at(0.5))
  t.ok(Object.is(half[0], 2.5) && Number.isNaN(half[1]) && Object.is(half[2], 0.5) && Object.is(half[3], 3))
})

t.test('F16 weights blend in float32 and round to F16', async (t) => {
  const a = float32ToFloat16(new Float32Array([0.1, -3, 1000, 0.5]))
  const b = float32ToFloat16(new Float32Array([0.3, 7, -1000, 0.25]))
  const model = tinyModel({ name: 'spatial.h', dataType: ELEM.FLOAT16, dims: [4], rawData: new Uint8Array(a.buffer) })
  const s: Record<string, Tensor> = { 'spatial.h': { dtype: 'F16', shape: [4], data: new Uint8Array(b.buffer) } }
  t.same(Object.keys(styleTemplate(model)), ['spatial.h'])
  const got = new Uint16Array(Uint8Array.from(tensorBytes(blendInitializers(model, s, 0.5).graph!.initializer![0])).buffer)
  const fa = float16ToFloat32(a)
  const fb = float16ToFloat32(b)
  const want = float32ToFloat16(Float32Array.from(fa, (x, i) => 0.5 * x + 0.5 * fb[i]))
  t.same([...got], [...want])
})

t.test('loadStyle reads and checks a style file; the CLI writes the template', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'lumiere-style-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const good = join(dir, 'good.safetensors')
  await writeSafetensors(good, { [spatial[0]]: style[spatial[0]] })
  const loaded = await loadStyle(good, base)
  t.same(Object.keys(loaded), [spatial[0]])
  t.equal(Buffer.compare(Buffer.from(loaded[spatial[0]].data), otherBytes.get(spatial[0])!), 0)

  const wrong = join(dir, 'wrong.safetensors')
  await writeSafetensors(wrong, { 'spatial.elsewhere': style[spatial[0]] })
  await t.rejects(loadStyle(wrong, base), { code: 'BAD_ARGUMENT', message: /wrong\.safetensors: style tensor 'spatial\.elsewhere'/ })
  const empty = join(dir, 'empty.safetensors')
  await writeSafetensors(empty, {})
  await t.rejects(loadStyle(empty, base), { code: 'BAD_ARGUMENT', message: /holds no tensors/ })
  await t.rejects(loadStyle(join(dir, 'missing.safetensors'), base), { code: 'FILE_NOT_FOUND' })

  const pkg = join(dir, 'pkg')
  await buildModelPackage('tiny', pkg)
  const out = join(dir, 'template.safetensors')
  const log = console.log
  console.log = () => {}
  try {
    await modelCommand().parseAsync(['style-template', '--model', pkg, '--out', out], { from: 'user' })
  } finally {
    console.log = log
  }
  const file = await readSafetensors(out)
  t.equal(file.metadata.format, 'lumiere-style/1')
  const builtin = styleTemplate(buildStunet(config, { weights: 'seeded', seed: 1 }))
  t.same(Object.keys(file.tensors).sort(), Object.keys(builtin).sort())
  t.same(Object.keys(builtin).filter((n) => Buffer.compare(Buffer.from(file.tensors[n].data), Buffer.from(builtin[n].data)) !== 0), [], 'the file holds the built-in weights')
})
