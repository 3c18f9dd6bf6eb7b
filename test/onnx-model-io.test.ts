import t from 'tap'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as ort from 'onnxruntime-node'
import { LumiereError } from '../src/errors.ts'
import { buildDag } from '../src/onnx/graph.ts'
import { extractStage } from '../src/onnx/extract.ts'
import { cloneModel, decodeModel, encodeModel, hasExternalData, inlineExternalData, loadModel, saveModel } from '../src/onnx/model-io.ts'
import { toOrt, fromOrt } from '../src/onnx/ort-tensor.ts'
import { onnx } from '../src/onnx/proto.ts'
import { runModel } from '../src/onnx/run.ts'
import { sessionOptions } from '../src/onnx/session-options.ts'
import { EXTERNAL, externalRef, isExternal, tensorBytes } from '../src/onnx/tensor-proto.ts'
import { FIXTURES, FIXTURE_DIMS, convSkipNet, randomInputs } from './fixtures/graphs.ts'
import { maxAbsDiff } from './fixtures/stages.ts'

const dir = mkdtempSync(join(tmpdir(), 'lumiere-onnx-io-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

function code (fn: () => unknown): string | undefined {
  try { fn() } catch (err) { return err instanceof LumiereError ? err.code : `not a LumiereError: ${String(err)}` }
  return undefined
}

t.test('encode/decode round trip keeps every byte and runs the same', async t => {
  for (const [name, make] of Object.entries(FIXTURES)) {
    const model = make()
    const bytes = encodeModel(model)
    const decoded = decodeModel(bytes)
    t.same(encodeModel(decoded), bytes, `${name}: re-encoding a decoded model gives the same bytes`)
    t.equal(decoded.graph?.node?.length, model.graph?.node?.length, `${name}: node count`)
    t.equal(encodeModel(cloneModel(decoded)).byteLength, bytes.byteLength, `${name}: a clone encodes the same`)
    const feeds = randomInputs(model, 3, FIXTURE_DIMS[name])
    const a = await runModel(model, feeds)
    const b = await runModel(decoded, feeds)
    for (const k of Object.keys(a)) t.equal(maxAbsDiff(a[k], b[k]), 0, `${name}: output ${k} identical`)
  }
})

t.test('saveModel/loadModel through a file', async t => {
  const model = convSkipNet()
  const path = join(dir, 'plain', 'net.onnx')
  saveModel(model, path)
  const loaded = loadModel(path)
  t.same(encodeModel(loaded), encodeModel(model))
  t.notOk(hasExternalData(loaded))
})

t.test('errors say what went wrong with a stable code', async t => {
  t.equal(code(() => loadModel(join(dir, 'nope.onnx'))), 'FILE_NOT_FOUND')
  t.equal(code(() => loadModel(dir)), 'FILE_NOT_FOUND', 'a folder is not a model')
  const junk = join(dir, 'junk.onnx')
  writeFileSync(junk, Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02, 0x03]))
  t.equal(code(() => loadModel(junk)), 'BAD_ONNX', 'corrupt bytes')
  writeFileSync(junk, 'this is a text file, not a model\n')
  t.equal(code(() => loadModel(junk)), 'BAD_ONNX', 'text')
  t.equal(code(() => decodeModel(onnx.ModelProto.encode({ irVersion: 8, producerName: 'x' }).finish())), 'BAD_ONNX', 'a model without a graph')
  const truncated = encodeModel(convSkipNet()).slice(0, 1000)
  t.equal(code(() => decodeModel(truncated)), 'BAD_ONNX', 'truncated')
  try {
    decodeModel(truncated)
  } catch (err) {
    t.match((err as Error).message, /not a valid ONNX model.*: check/, 'message says what to do')
  }
  t.equal(code(() => saveModel(convSkipNet(), '/dev/null/x.onnx')), 'FILE_UNWRITABLE')
})

t.test('external data: save, load lazily, run, extract', async t => {
  const model = convSkipNet()
  const feeds = randomInputs(model, 5)
  const want = await runModel(model, feeds)
  const folder = join(dir, 'ext')
  const path = join(folder, 'net.onnx')
  saveModel(model, path, { externalData: { location: 'net.onnx.data', threshold: 256 } })

  // The file on disk references the side file relatively, as ONNX expects.
  const raw = decodeModel(readFileSync(path))
  const external = (raw.graph?.initializer ?? []).filter(isExternal)
  const inline = (raw.graph?.initializer ?? []).filter(x => !isExternal(x))
  const big = (model.graph?.initializer ?? []).filter(x => tensorBytes(x).byteLength >= 256)
  t.equal(external.length, big.length, `the ${big.length} initializers of 256 bytes or more went to the side file`)
  t.ok(inline.length > 0, 'small initializers stayed inline')
  t.ok(external.every(x => externalRef(x).location === 'net.onnx.data'), 'relative location')
  t.ok(statSync(path).size < 4096, `model file is small (${statSync(path).size} bytes)`)
  t.ok(statSync(join(folder, 'net.onnx.data')).size > 20000, 'weights are in the side file')

  // ORT's own loader reads our external data (format check).
  const session = await ort.InferenceSession.create(path, sessionOptions())
  const got = await session.run({ x: toOrt(feeds.x) })
  await session.release()
  for (const k of Object.keys(want)) t.equal(maxAbsDiff(fromOrt(got[k]), want[k]), 0, `ORT from the file: ${k} identical`)

  // Lazy load: the bytes stay on disk, locations become absolute.
  const lazy = loadModel(path)
  t.ok(hasExternalData(lazy), 'lazy load keeps external references')
  const ext = (lazy.graph?.initializer ?? []).find(isExternal)!
  t.equal(externalRef(ext).location, join(folder, 'net.onnx.data'))
  t.same(tensorBytes(ext), tensorBytes((model.graph?.initializer ?? []).find(x => x.name === ext.name)!), 'lazily read bytes equal the original')

  const full = await runModel(inlineExternalData(cloneModel(lazy)), feeds)
  for (const k of Object.keys(want)) t.equal(maxAbsDiff(full[k], want[k]), 0, `loaded with external data: ${k} identical`)
  const eager = loadModel(path, { externalData: 'inline' })
  t.notOk(hasExternalData(eager), 'inline load reads everything')

  // A stage of the lazy model carries exactly the weights it uses, inline.
  const dag = buildDag(lazy)
  const stage = extractStage(lazy, dag, [0, 1])
  t.notOk(hasExternalData(stage.model), 'stage has no external references')
  t.same((stage.model.graph?.initializer ?? []).map(x => x.name).sort(), dag.nodes[0].inputs.filter(n => dag.initializers.has(n)).sort())
  const out = await runModel(stage.model, { x: feeds.x })
  t.same(Object.keys(out), stage.outputs)

  // Saving a lazy model inline materialises the bytes.
  const copy = join(dir, 'copy', 'net.onnx')
  saveModel(lazy, copy)
  t.notOk(hasExternalData(loadModel(copy)))
  t.same(encodeModel(loadModel(copy)).byteLength, encodeModel(model).byteLength)

  // Laziness: a damaged side file only fails when its bytes are read.
  truncateSync(join(folder, 'net.onnx.data'), 100)
  const damaged = loadModel(path)
  t.ok(hasExternalData(damaged), 'loads without reading the weights')
  t.equal(code(() => inlineExternalData(damaged)), 'BAD_ONNX', 'reading a truncated side file fails')
})

t.test('external data may not point outside the model folder', async t => {
  const model = convSkipNet()
  const w = model.graph!.initializer![0]
  const evil: typeof w = { ...w, rawData: new Uint8Array(0), dataLocation: EXTERNAL, externalData: [{ key: 'location', value: '../../etc/passwd' }] }
  model.graph!.initializer![0] = evil
  mkdirSync(join(dir, 'evil'))
  const path = join(dir, 'evil', 'net.onnx')
  writeFileSync(path, encodeModel(model))
  t.equal(code(() => loadModel(path)), 'BAD_ONNX')
  t.equal(code(() => tensorBytes(evil)), 'BAD_ONNX', 'an unresolved relative location is refused')
})
