import t from 'tap'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Tokenizer } from '@huggingface/tokenizers'
import { LumiereError } from '../src/errors.ts'
import { GraphBuilder } from '../src/onnx/builder.ts'
import { encodeModel, saveModel } from '../src/onnx/model-io.ts'
import type { ModelProto } from '../src/onnx/proto.ts'
import { f32, view } from '../src/tensor/tensor.ts'
import type { Tensor } from '../src/tensor/tensor.ts'
import { BUILTIN_VOCAB_SIZE, EOS_ID, PAD_ID, UNK_ID, builtinTokenizerJson, builtinVocabulary } from '../src/text/builtin-tokenizer.ts'
import { TEXT_ENCODER_FILE, TOKENIZER_FILE, TextEncoder, inspectTextEncoder, writeBuiltinTextEncoder } from '../src/text/encode.ts'
import { buildTextEncoder } from '../src/text/text-encoder.ts'

const dir = mkdtempSync(join(tmpdir(), 'lumiere-text-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

const D = 32
const L = 16
const pkg = join(dir, 'pkg')
writeBuiltinTextEncoder(pkg, { dim: D, length: L, seed: 7 })

async function rejects (p: Promise<unknown>): Promise<LumiereError> {
  try { await p } catch (err) {
    if (err instanceof LumiereError) return err
    throw new Error(`not a LumiereError: ${String(err)}`)
  }
  throw new Error('did not throw')
}

function floats (x: Tensor): Float32Array {
  return view(x) as Float32Array
}

/** Row j of prompt i of an [N, L, D] tensor. */
function row (x: Tensor, i: number, j: number): Float32Array {
  const [, l, d] = x.shape
  return floats(x).subarray((i * l + j) * d, (i * l + j + 1) * d)
}

t.test('built-in tokenizer.json loads in @huggingface/tokenizers and gives the expected ids', async t => {
  const json = builtinTokenizerJson()
  t.equal(JSON.stringify(json), JSON.stringify(builtinTokenizerJson()), 'deterministic')
  const written = JSON.parse(readFileSync(join(pkg, TOKENIZER_FILE), 'utf8'))
  t.same(written, json, 'the written file holds the same config')
  const tok = new Tokenizer(written, {})
  const vocab = builtinVocabulary()
  t.equal(vocab.length, BUILTIN_VOCAB_SIZE)
  t.equal(BUILTIN_VOCAB_SIZE, 1122)
  t.same([vocab[PAD_ID], vocab[EOS_ID], vocab[UNK_ID]], ['<pad>', '</s>', '<unk>'])
  t.same([PAD_ID, EOS_ID, UNK_ID], [0, 1, 2])
  t.equal(new Set(vocab).size, vocab.length, 'no token twice')
  t.same([...tok.get_vocab()].filter(([token, id]) => vocab[id] !== token), [], 'the library sees the same vocabulary')

  // Hand-checked against the lists in builtin-tokenizer.ts: a..z = 3..28,
  // digits 0..9 = 29..38, punctuation from 39 ('!' 39, "'" 45, ',' 50,
  // '.' 52), ##a..##z = 71..96, suffixes ##es 97, ##ed 98, ##ing 99,
  // ##ly 100, ..., ##en 113, then words from 114 ('the').
  const cases: Array<[string, number[], string[]]> = [
    ['A cat runs.', [3, 291, 744, 52, 1], ['a', 'cat', 'runs', '.', '</s>']],
    ['A Corgi surfing a WAVE at sunset, cinematic!', [3, 339, 908, 3, 496, 122, 472, 50, 696, 39, 1],
      ['a', 'corgi', 'surfing', 'a', 'wave', 'at', 'sunset', ',', 'cinematic', '!', '</s>']],
    ['Two dogs jumped quickly over the fence!', [1102, 289, 746, 98, 660, 100, 129, 114, 8, 113, 73, 75, 39, 1],
      ['two', 'dogs', 'jump', '##ed', 'quick', '##ly', 'over', 'the', 'f', '##en', '##c', '##e', '!', '</s>']],
    ["the robot's red hat", [114, 266, 45, 21, 595, 579, 1], ['the', 'robot', "'", 's', 'red', 'hat', '</s>']],
    // Accents stripped, digits one by one, unknown word by pieces.
    ['Café zebras 2024', [396, 345, 89, 31, 29, 31, 33, 1], ['cafe', 'zebra', '##s', '2', '0', '2', '4', '</s>']],
    ['xylophone', [26, 95, 82, 85, 86, 78, 85, 84, 75, 1], ['x', '##y', '##l', '##o', '##p', '##h', '##o', '##n', '##e', '</s>']],
    // Characters outside the vocabulary: the word becomes <unk>.
    ['a 🐱 cat', [3, 2, 291, 1], ['a', '<unk>', 'cat', '</s>']],
    ['日本 city', [2, 389, 1], ['<unk>', 'city', '</s>']],
    ['', [1], ['</s>']],
    ['  \t\n ', [1], ['</s>']]
  ]
  for (const [text, ids, tokens] of cases) {
    const e = tok.encode(text)
    t.same(e.ids, ids, `ids of ${JSON.stringify(text)}`)
    t.same(e.tokens, tokens, `tokens of ${JSON.stringify(text)}`)
  }
  t.equal(tok.decode(tok.encode('Two dogs jumped quickly over the fence!').ids, { skip_special_tokens: true }), 'two dogs jumped quickly over the fence!', 'decodes back')
})

t.test('encode: [N, L, D], deterministic, padding exactly zero', async t => {
  const enc = await TextEncoder.load(pkg)
  t.teardown(() => enc.close())
  t.equal(enc.length, L)
  t.equal(enc.dim, D)
  t.equal(enc.padId, PAD_ID)
  const prompts = ['A corgi surfing a wave at sunset', 'a red car driving through a city at night', '']
  const a = await enc.encode(prompts, { length: L })
  t.equal(a.embeddings.dtype, 'F32')
  t.same(a.embeddings.shape, [3, L, D])
  t.same(a.tokens, [[3, 339, 908, 3, 496, 122, 472, 1], [3, 595, 349, 786, 133, 3, 389, 122, 476, 1], [1]])
  t.same(a.truncated, [false, false, false])

  const bad: string[] = []
  for (let i = 0; i < prompts.length; i++) {
    for (let j = 0; j < L; j++) {
      const r = row(a.embeddings, i, j)
      if (j < a.tokens[i].length) {
        if (!(r.some(v => v !== 0) && r.every(Number.isFinite))) bad.push(`prompt ${i} token row ${j} is zero or not finite`)
      } else if (!r.every(v => Object.is(v, 0))) {
        bad.push(`prompt ${i} padded row ${j} is not exactly +0`)
      }
    }
  }
  t.same(bad, [], 'token rows finite and non-zero, padded rows exactly +0')

  // Same prompt → same bits: again, alone, in another batch, after a reload.
  const again = await enc.encode(prompts)
  t.ok(Buffer.from(again.embeddings.data).equals(a.embeddings.data), 'bit-identical on a second call')
  const alone = await enc.encode([prompts[1]])
  t.ok(Buffer.from(alone.embeddings.data).equals(a.embeddings.data.subarray(L * D * 4, 2 * L * D * 4)), 'independent of the batch')
  const enc2 = await TextEncoder.load(pkg, { padId: 5 })
  t.teardown(() => enc2.close())
  const other = await enc2.encode(prompts)
  t.ok(Buffer.from(other.embeddings.data).equals(a.embeddings.data), 'a reload gives the same bits, and pad ids never leak into tokens')

  // Different prompts differ (same length: only the words differ).
  const cat = await enc.encode(['a cat', 'a dog'])
  t.notSame(Array.from(row(cat.embeddings, 0, 1)), Array.from(row(cat.embeddings, 1, 1)))
  t.notSame(Array.from(row(cat.embeddings, 0, 0)), Array.from(row(cat.embeddings, 1, 0)), 'attention mixes context: "a" differs too')

  // The same options write the same files.
  const pkg2 = join(dir, 'pkg2')
  writeBuiltinTextEncoder(pkg2, { dim: D, length: L, seed: 7 })
  for (const f of [TOKENIZER_FILE, TEXT_ENCODER_FILE]) t.ok(readFileSync(join(pkg2, f)).equals(readFileSync(join(pkg, f))), `${f} byte-identical`)
  const pkg3 = join(dir, 'pkg3')
  writeBuiltinTextEncoder(pkg3, { dim: D, length: L, seed: 8 })
  t.notOk(readFileSync(join(pkg3, TEXT_ENCODER_FILE)).equals(readFileSync(join(pkg, TEXT_ENCODER_FILE))), 'another seed, other weights')
})

t.test('long prompts are truncated to L keeping </s>', async t => {
  const enc = await TextEncoder.load(pkg)
  t.teardown(() => enc.close())
  const words = Array.from({ length: 40 }, (_, i) => ['dog', 'cat', 'red', 'xylophone'][i % 4]).join(' ')
  const exact = 'a b c d e f g h i j k l m n o' // 15 tokens + </s> = 16 = L
  const r = await enc.encode([words, exact, 'a cat'])
  t.same(r.truncated, [true, false, false])
  t.equal(r.tokens[0].length, L)
  t.equal(r.tokens[0][L - 1], EOS_ID, 'ends with </s>')
  const content = new Tokenizer(builtinTokenizerJson(), {}).encode(words, { add_special_tokens: false }).ids
  t.same(r.tokens[0].slice(0, L - 1), content.slice(0, L - 1), 'keeps the start of the prompt')
  t.equal(r.tokens[1].length, L, 'a prompt of exactly L tokens is not truncated')
  t.ok(row(r.embeddings, 0, L - 1).some(v => v !== 0), 'no padding in a truncated prompt')
  t.same(enc.tokenize([words]).truncated, [true], 'tokenize alone reports it too')
  t.equal((await rejects(enc.encode(['a'], { length: L + 1 }))).code, 'BAD_ARGUMENT', 'a static L is the only length')
})

/**
 * A stand-in for a PyTorch/optimum export: input_ids + attention_mask with
 * symbolic dims, last_hidden_state = E[ids] + 0.5·mask (padded rows not
 * zeroed by the graph), pooler_output second.
 */
function torchLikeEncoder (options: { dim?: number, ids?: string, mask?: string | null, idsType?: 'I64' | 'I32', batch?: number | string, firstOutputRank2?: boolean, declareOutput?: boolean } = {}): ModelProto {
  const d = options.dim ?? 8
  const g = new GraphBuilder('torch_like_text_encoder')
  const ids = g.input(options.ids ?? 'input_ids', options.idsType ?? 'I64', [options.batch ?? 'batch', 'sequence'])
  const table = new Float32Array(BUILTIN_VOCAB_SIZE * d)
  for (let v = 0; v < BUILTIN_VOCAB_SIZE; v++) for (let k = 0; k < d; k++) table[v * d + k] = (v % 7) * 0.25 + k * 0.125
  const emb = g.init('embeddings.word_embeddings.weight', table, [BUILTIN_VOCAB_SIZE, d])
  let h = g.op('Gather', [emb, ids], { axis: 0 })
  if (options.mask !== null) {
    const mask = g.input(options.mask ?? 'attention_mask', 'I64', [options.batch ?? 'batch', 'sequence'])
    const m = g.op('Unsqueeze', [g.op('Cast', [mask], { to: 1 }), g.i64('axes', [-1])])
    h = g.op('Add', [h, g.op('Mul', [m, g.init('half', f32([], [0.5]))])])
  }
  const pooled = g.op('ReduceMean', [h], { axes: [1], keepdims: 0 })
  const hidden = g.op('Identity', [h], {}, 'last_hidden_state')
  if (options.firstOutputRank2 === true) {
    g.output(g.op('Identity', [pooled], {}, 'pooler_output'), 'F32', [options.batch ?? 'batch', d])
  } else if (options.declareOutput === false) {
    g.output(g.op('Identity', [pooled], {}, 'pooler_output'))
  } else {
    g.output(hidden, 'F32', [options.batch ?? 'batch', 'sequence', d])
    g.output(g.op('Identity', [pooled], {}, 'pooler_output'), 'F32', [options.batch ?? 'batch', d])
  }
  return g.model({ opset: 17 })
}

t.test('an exported encoder (input_ids/attention_mask) loads through the generic path', async t => {
  const model = torchLikeEncoder()
  t.same(inspectTextEncoder(model), {
    ids: { name: 'input_ids', dtype: 'I64' },
    mask: { name: 'attention_mask', dtype: 'I64' },
    output: { name: 'last_hidden_state', dtype: 'F32' },
    batch: undefined,
    length: undefined,
    dim: 8
  })
  const enc = await TextEncoder.load({ tokenizerJson: builtinTokenizerJson(), encoderOnnx: encodeModel(model) })
  t.teardown(() => enc.close())
  t.equal(enc.length, undefined, 'symbolic length')
  t.equal((await rejects(enc.encode(['a cat']))).code, 'BAD_ARGUMENT', 'length is required for a symbolic L')
  const r = await enc.encode(['a cat', 'a red car'], { length: 6 })
  t.same(r.embeddings.shape, [2, 6, 8])
  t.same(r.tokens, [[3, 291, 1], [3, 595, 349, 1]])
  for (let i = 0; i < 2; i++) {
    for (let j = 0; j < 6; j++) {
      const id = r.tokens[i][j]
      const want = id == null ? Array(8).fill(0) : Array.from({ length: 8 }, (_, k) => (id % 7) * 0.25 + k * 0.125 + 0.5)
      t.same(Array.from(row(r.embeddings, i, j)), want, `prompt ${i} row ${j}`)
    }
  }

  // zeroPadding: false keeps what the encoder returned at padded rows (E[pad]).
  const raw = await TextEncoder.load({ tokenizerJson: builtinTokenizerJson(), encoderOnnx: model }, { zeroPadding: false })
  t.teardown(() => raw.close())
  const rr = await raw.encode(['a cat'], { length: 6 })
  t.same(Array.from(row(rr.embeddings, 0, 5)), Array.from({ length: 8 }, (_, k) => k * 0.125))

  // Also: a file path, int32 ids named tokens, no mask, and a static batch of 1.
  const path = join(dir, 'int32.onnx')
  saveModel(torchLikeEncoder({ ids: 'tokens', idsType: 'I32', mask: null, batch: 1 }), path)
  const small = await TextEncoder.load({ tokenizerJson: join(pkg, TOKENIZER_FILE), encoderOnnx: path })
  t.teardown(() => small.close())
  t.same(small.signature.ids, { name: 'tokens', dtype: 'I32' })
  t.equal(small.signature.batch, 1)
  const s = await small.encode(['a cat', ''], { length: 4 })
  t.same(s.embeddings.shape, [2, 4, 8], 'a static batch of 1 runs prompts one by one')
  t.same(Array.from(row(s.embeddings, 1, 0)), Array.from({ length: 8 }, (_, k) => (1 % 7) * 0.25 + k * 0.125), '</s> row')
})

t.test('bad encoders and files give clear errors', async t => {
  const tokenizerJson = builtinTokenizerJson()
  const rank2 = await rejects(TextEncoder.load({ tokenizerJson, encoderOnnx: torchLikeEncoder({ firstOutputRank2: true }) }))
  t.equal(rank2.code, 'BAD_ONNX')
  t.match(rank2.message, /first output 'pooler_output' has rank 2/)
  t.match(rank2.message, /found inputs 'input_ids' I64\[batch, sequence\], 'attention_mask' I64\[batch, sequence\]/)

  // Undeclared output shape: caught when it runs.
  const late = await TextEncoder.load({ tokenizerJson, encoderOnnx: torchLikeEncoder({ declareOutput: false }) })
  t.teardown(() => late.close())
  const lateErr = await rejects(late.encode(['a cat'], { length: 4 }))
  t.equal(lateErr.code, 'BAD_ONNX')
  t.match(lateErr.message, /'pooler_output' is F32\[1, 8\], expected \[N, L, D\] = \[1, 4, D\]/)

  const g = new GraphBuilder('image_encoder')
  const x = g.input('pixel_values', 'F32', [1, 3, 8, 8])
  g.output(g.op('Identity', [x]), 'F32', [1, 3, 8, 8])
  const image = await rejects(TextEncoder.load({ tokenizerJson, encoderOnnx: g.model() }))
  t.equal(image.code, 'BAD_ONNX')
  t.match(image.message, /no token ids input/)
  t.match(image.message, /'pixel_values' F32\[1, 3, 8, 8\]/)

  const extra = await rejects(TextEncoder.load({ tokenizerJson, encoderOnnx: torchLikeEncoder({ mask: 'encoder_hidden_states' }) }))
  t.equal(extra.code, 'BAD_ONNX')
  t.match(extra.message, /cannot feed input 'encoder_hidden_states'/)

  const tooFew = await rejects(TextEncoder.load({ tokenizerJson, encoderOnnx: buildTextEncoder({ vocabSize: 100, dim: 16, length: 8 }) }))
  t.equal(tooFew.code, 'BAD_ONNX', 'an encoder with fewer embeddings than the tokenizer has ids')
  t.match(tooFew.message, /embeds 100 token ids/)

  t.equal((await rejects(TextEncoder.load(join(dir, 'missing')))).code, 'FILE_NOT_FOUND')
  t.equal((await rejects(TextEncoder.load({ tokenizerJson: { model: { type: 'Nope' } }, encoderOnnx: torchLikeEncoder() }))).code, 'BAD_ARGUMENT', 'a tokenizer.json the library cannot load')
  t.equal((await rejects(TextEncoder.load({ tokenizerJson: join(dir, 'nope.json'), encoderOnnx: torchLikeEncoder() }))).code, 'FILE_NOT_FOUND')
  t.throws(() => buildTextEncoder({ vocabSize: 10, dim: 30, length: 4, heads: 4 }), { code: 'BAD_ARGUMENT' }, 'heads must divide dim')
})
