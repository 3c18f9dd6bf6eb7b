import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { decodeSafetensors, encodeSafetensors, readSafetensors, writeSafetensors } from '../src/tensor/safetensors.ts'
import { DTYPES, byteLength, f32, view } from '../src/tensor/tensor.ts'
import type { Tensor } from '../src/tensor/tensor.ts'

const u8 = (xs: number[]): Uint8Array => Uint8Array.from(xs)
const f32le = (xs: number[]): number[] => [...new Uint8Array(Float32Array.from(xs).buffer)]

/** Builds a file by hand: 8-byte LE length, header text, data bytes. */
function handMade (header: string, data: number[] = []): Uint8Array {
  const h = Buffer.from(header, 'utf8')
  const out = new Uint8Array(8 + h.byteLength + data.length)
  new DataView(out.buffer).setBigUint64(0, BigInt(h.byteLength), true)
  out.set(h, 8)
  out.set(data, 8 + h.byteLength)
  return out
}

function expectBad (tt: Test, bytes: Uint8Array, pattern: RegExp, code = 'BAD_SAFETENSORS'): void {
  tt.throws(() => decodeSafetensors(bytes), { name: 'LumiereError', code, message: pattern }, String(pattern))
}

t.test('reference fixtures: the exact bytes the reference serializer writes', async (tt) => {
  // From huggingface/safetensors tensor.rs tests (test_serialization): F32 [1,2,3] = 0..5 named "attn.0".
  const expected = u8([
    64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100,
    116, 121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34,
    58, 91, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102, 115,
    101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 0, 0, 0, 0, 0, 0, 128, 63,
    0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64
  ])
  tt.same([...encodeSafetensors({ 'attn.0': f32([1, 2, 3], [0, 1, 2, 3, 4, 5]) })], [...expected])
  const back = decodeSafetensors(expected)
  tt.same(back.tensors['attn.0'].shape, [1, 2, 3])
  tt.same([...view(back.tensors['attn.0'])], [0, 1, 2, 3, 4, 5])

  // test_serialization_forced_alignement: header padded with spaces to a multiple of 8.
  const aligned = u8([
    72, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 48, 34, 58, 123, 34, 100, 116,
    121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34, 58,
    91, 49, 44, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102,
    115, 101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 32, 32, 32, 32, 32,
    32, 32, 0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0,
    160, 64
  ])
  tt.same([...encodeSafetensors({ attn0: f32([1, 1, 2, 3], [0, 1, 2, 3, 4, 5]) })], [...aligned])

  // test_empty, with and without metadata.
  tt.same([...encodeSafetensors({})], [8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32])
  const withMeta = u8([
    40, 0, 0, 0, 0, 0, 0, 0, 123, 34, 95, 95, 109, 101, 116, 97, 100, 97, 116, 97, 95,
    95, 34, 58, 123, 34, 102, 114, 97, 109, 101, 119, 111, 114, 107, 34, 58, 34, 112,
    116, 34, 125, 125, 32, 32, 32, 32, 32
  ])
  tt.same([...encodeSafetensors({}, { framework: 'pt' })], [...withMeta])
  tt.same(decodeSafetensors(withMeta).metadata, { framework: 'pt' })

  // The reference docs' I32 example: an unpadded 60-byte header is valid too.
  const docs = handMade('{"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}}', new Array(16).fill(0))
  tt.equal(docs[0], 60)
  const d = decodeSafetensors(docs)
  tt.same(d.tensors.test.dtype, 'I32')
  tt.same([...view(d.tensors.test)], [0, 0, 0, 0])
})

t.test('hand-made file: several dtypes, metadata, arbitrary offset order, zero-copy views', async (tt) => {
  const data = [
    ...f32le([1.5, -2]), // a: F32 [2] at 0..8
    0x00, 0x3c, 0x00, 0xc0, // b: F16 [2] = 1, -2 at 8..12
    1, 0, 1 // c: BOOL [3] at 12..15
  ]
  // Tensors listed out of offset order; spaces after the JSON are allowed.
  const header = '{"c":{"dtype":"BOOL","shape":[3],"data_offsets":[12,15]},"__metadata__":{"k":"v"},' +
    '"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F16","shape":[2],"data_offsets":[8,12]}}   '
  const bytes = handMade(header, data)
  const { tensors, metadata } = decodeSafetensors(bytes)
  tt.same(metadata, { k: 'v' })
  tt.same(Object.keys(tensors).sort(), ['a', 'b', 'c'])
  tt.same([...view(tensors.a)], [1.5, -2])
  tt.same([...view(tensors.b)], [0x3c00, 0xc000])
  tt.same([...tensors.c.data], [1, 0, 1])
  tt.equal(tensors.a.data.buffer, bytes.buffer, 'a view, not a copy')
  tt.equal(tensors.c.data.byteOffset, bytes.byteOffset + 8 + Buffer.byteLength(header) + 12)
})

t.test('round trip of every dtype, including empty and scalar tensors; data aligned', async (tt) => {
  const tensors: Record<string, Tensor> = {}
  DTYPES.forEach((dtype, i) => {
    const shape = [3, i + 1, 5]
    const data = new Uint8Array(byteLength(dtype, shape)).map((_, j) => (j * 7 + i) & 0xff)
    tensors[`t_${dtype}`] = { dtype, shape, data }
  })
  tensors.empty = { dtype: 'F32', shape: [0, 4], data: new Uint8Array(0) }
  tensors.scalar = { dtype: 'I64', shape: [], data: new Uint8Array(8).fill(9) }
  tensors['__proto__'] = { dtype: 'U8', shape: [1], data: u8([42]) }
  const bytes = encodeSafetensors(tensors, { note: 'hello', ünï: 'ok' })
  const back = decodeSafetensors(bytes)
  tt.same(back.metadata, { note: 'hello', ünï: 'ok' })
  tt.same(Object.keys(back.tensors).sort(), Object.keys(tensors).sort())
  for (const [name, t0] of Object.entries(tensors)) {
    const t1 = back.tensors[name]
    tt.equal(t1.dtype, t0.dtype, name)
    tt.same(t1.shape, t0.shape, name)
    tt.same([...t1.data], [...t0.data], name)
    const size = { F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, U8: 1, BOOL: 1 }[t1.dtype]
    tt.equal(t1.data.byteOffset % size, 0, `${name} aligned`)
  }
  tt.equal(Object.getPrototypeOf(back.tensors), Object.prototype, '"__proto__" is a plain key')
})

t.test('rejects malformed files with BAD_SAFETENSORS naming the problem', async (tt) => {
  const ok = (dtype: string, shape: number[], offs: [number, number]): string => JSON.stringify({ dtype, shape, data_offsets: offs })
  expectBad(tt, u8([1, 2, 3]), /shorter than the 8-byte/)
  const huge = new Uint8Array(16)
  new DataView(huge.buffer).setBigUint64(0, 2n ** 40n, true)
  expectBad(tt, huge, /exceeds the 100000000-byte limit/)
  const past = new Uint8Array(16)
  new DataView(past.buffer).setBigUint64(0, 100n, true)
  expectBad(tt, past, /runs past the end/)
  expectBad(tt, handMade('{"a":'), /not valid JSON/)
  expectBad(tt, handMade('[1,2]'), /not a JSON object/)
  const badUtf8 = handMade('{}')
  badUtf8[9] = 0xff
  expectBad(tt, badUtf8, /UTF-8|JSON/)
  expectBad(tt, handMade(`{"w":${ok('F64', [1], [0, 8])}}`, new Array(8).fill(0)), /tensor 'w'.*unsupported dtype F64/)
  expectBad(tt, handMade(`{"w":${ok('F32', [2], [0, 4])}}`, new Array(4).fill(0)), /tensor 'w'.*needs 8 bytes/)
  expectBad(tt, handMade(`{"w":${ok('F32', [-1], [0, 0])}}`), /tensor 'w'.*bad dimension/)
  expectBad(tt, handMade(`{"w":${ok('F32', [1.5], [0, 4])}}`, new Array(4).fill(0)), /tensor 'w'.*bad dimension/)
  expectBad(tt, handMade(`{"w":${ok('F32', [2 ** 40, 2 ** 40], [0, 4])}}`, new Array(4).fill(0)), /tensor 'w'.*overflows/)
  expectBad(tt, handMade(`{"w":${ok('F32', [1], [0, 4])}}`, new Array(2).fill(0)), /tensor 'w'.*run past/)
  expectBad(tt, handMade(`{"w":${ok('F32', [1], [4, 0])}}`, new Array(4).fill(0)), /tensor 'w'.*end before/)
  expectBad(tt, handMade(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}}`, new Array(4).fill(0)), /tensor 'w'.*two non-negative integers/)
  expectBad(tt, handMade(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}}`, new Array(4).fill(0)), /tensor 'w'.*unexpected field 'x'/)
  expectBad(tt, handMade(`{"a":${ok('F32', [2], [0, 8])},"b":${ok('F32', [1], [4, 8])}}`, new Array(8).fill(0)), /tensor 'b'.*overlap/)
  expectBad(tt, handMade(`{"a":${ok('F32', [1], [0, 4])},"b":${ok('F32', [1], [8, 12])}}`, new Array(12).fill(0)), /tensor 'b'.*hole/)
  expectBad(tt, handMade(`{"a":${ok('F32', [1], [0, 4])}}`, new Array(8).fill(0)), /cover 4 bytes but the data section has 8/)
  expectBad(tt, handMade('{"__metadata__":{"k":1}}'), /__metadata__ entry 'k' is not a string/)
  expectBad(tt, handMade('{"w":3}'), /tensor 'w': entry is not an object/)
})

t.test('encode rejects invalid tensors', async (tt) => {
  tt.throws(() => encodeSafetensors({ w: { dtype: 'F32', shape: [2], data: new Uint8Array(4) } }), { code: 'BAD_ARGUMENT', message: /'w'.*needs 8 bytes/ })
  tt.throws(() => encodeSafetensors({ w: { dtype: 'F64' as 'F32', shape: [1], data: new Uint8Array(8) } }), { code: 'BAD_ARGUMENT', message: /'w'.*unsupported dtype/ })
  tt.throws(() => encodeSafetensors({ __metadata__: f32([1], [1]) }), { code: 'BAD_ARGUMENT' })
})

t.test('files: atomic write, read back, FILE_NOT_FOUND, FILE_UNWRITABLE', async (tt) => {
  const dir = await mkdtemp(join(tmpdir(), 'lumiere-st-'))
  tt.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const path = join(dir, 'w.safetensors')
  const tensors = { x: f32([2, 2], [1, 2, 3, 4]), m: { dtype: 'U8' as const, shape: [3], data: u8([1, 2, 3]) } }
  await writeSafetensors(path, tensors, { who: 'test' })
  tt.same([...await readFile(path)], [...encodeSafetensors(tensors, { who: 'test' })], 'file = encoded bytes')
  const back = await readSafetensors(path)
  tt.same([...view(back.tensors.x)], [1, 2, 3, 4])
  tt.same(back.metadata, { who: 'test' })

  // Overwrite in place: the old file stays whole until the rename.
  await writeSafetensors(path, { y: f32([1], [7]) })
  tt.same(Object.keys((await readSafetensors(path)).tensors), ['y'])
  tt.same((await readdir(dir)).sort(), ['w.safetensors'], 'no temp files left behind')

  await tt.rejects(readSafetensors(join(dir, 'missing.safetensors')), { code: 'FILE_NOT_FOUND' })
  await tt.rejects(writeSafetensors(join(dir, 'no', 'such', 'dir.safetensors'), tensors), { code: 'FILE_UNWRITABLE' })
  await writeFile(join(dir, 'bad.safetensors'), u8([1, 2, 3]))
  await tt.rejects(readSafetensors(join(dir, 'bad.safetensors')), { code: 'BAD_SAFETENSORS', message: /bad\.safetensors/ })

  if (process.getuid?.() !== 0) {
    const ro = join(dir, 'ro')
    await mkdir(ro)
    await chmod(ro, 0o500)
    await tt.rejects(writeSafetensors(join(ro, 'x.safetensors'), tensors), { code: 'FILE_UNWRITABLE' })
    await chmod(ro, 0o700)
  }
})
