/**
 * Prompt → text embeddings [N, L, D] for the video model's cross-attention:
 * a HuggingFace tokenizer.json (tokenized by @huggingface/tokenizers) and an
 * ONNX text encoder run in-process with onnxruntime (one session, kept open
 * until `close()`; meant for the coordinator, once per prompt).
 *
 * Tokens, padding, truncation:
 * - A prompt becomes the tokenizer's ids with its special tokens (the
 *   built-in one appends </s>), then padding up to L with the pad id
 *   (tokenizer.json `padding.pad_id`, else the id of <pad>/[PAD]/<|pad|>/
 *   <|endoftext|>, else 0) and a mask of 1 for tokens, 0 for padding.
 * - **Truncation rule**: a prompt longer than L tokens keeps its first
 *   L − k content tokens, where k is the number of special tokens the
 *   tokenizer adds (k = 1 for the built-in: </s>), and then the special
 *   tokens, so the sequence still ends with </s>. `truncated[i]` is true
 *   for such a prompt, so the CLI can warn that the end was dropped.
 * - The empty prompt "" is the unconditional prompt of classifier-free
 *   guidance: only the special tokens (built-in: </s> then padding).
 * - Special-token text typed in a prompt ("</s>", "<pad>") is matched as
 *   that special token, as HuggingFace tokenizers do; the mask still marks
 *   it as a token.
 * - Padded rows of the embeddings are exactly zero: the built-in encoder
 *   zeroes them itself; for other encoders `encode` zeroes them (option
 *   `zeroPadding: false` keeps what the encoder returned, e.g. for a
 *   CLIP-style model trained to read its padding positions).
 *
 * Accepted encoder signatures (`inspectTextEncoder`), for the built-in
 * graph and for any ONNX export (PyTorch, optimum, ...):
 * - token ids: an input named `input_ids`, `tokens` or `token_ids`
 *   (int64 or int32, [N, L]); or, if the graph has exactly one input, that
 *   input whatever its name, if it is int64/int32.
 * - optional padding mask: `attention_mask` or `mask` (int64, int32,
 *   float32 or bool, [N, L]; fed 1 for tokens, 0 for padding).
 * - optional `position_ids` (fed 0..L−1) and `token_type_ids` (fed 0).
 * - output: the first graph output, float32 (or float16, converted),
 *   [N, L, D]. Further outputs (pooled embeddings, ...) are ignored.
 * - static dims are honoured: a static L is the only length it takes; a
 *   static batch of 1 runs prompts one at a time.
 * Anything else is a LumiereError BAD_ONNX naming the inputs/outputs found.
 */
import { readFileSync, mkdirSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import * as ort from 'onnxruntime-node'
import { Tokenizer } from '@huggingface/tokenizers'
import { LumiereError } from '../errors.ts'
import { decodeModel, encodeModel, loadModel, saveModel } from '../onnx/model-io.ts'
import { fromOrt, toOrt } from '../onnx/ort-tensor.ts'
import { ELEM, elemToDType, typeInfo } from '../onnx/proto.ts'
import type { ModelProto } from '../onnx/proto.ts'
import { sessionOptions } from '../onnx/session-options.ts'
import { float16ToFloat32 } from '../tensor/float16.ts'
import { view } from '../tensor/tensor.ts'
import type { DType, Tensor } from '../tensor/tensor.ts'
import { BUILTIN_VOCAB_SIZE, builtinTokenizerJson } from './builtin-tokenizer.ts'
import type { TokenizerJson } from './builtin-tokenizer.ts'
import { TEXT_ENCODER_META_KEY, buildTextEncoder, resolveTextEncoderConfig } from './text-encoder.ts'
import type { TextEncoderConfig } from './text-encoder.ts'

/** File names inside a model package folder. */
export const TOKENIZER_FILE = 'tokenizer.json'
export const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json'
export const TEXT_ENCODER_FILE = 'text-encoder.onnx'

const IDS_NAMES = ['input_ids', 'tokens', 'token_ids']
const MASK_NAMES = ['attention_mask', 'mask']
const POSITION_NAMES = ['position_ids']
const TYPE_NAMES = ['token_type_ids']
const PAD_NAMES = ['<pad>', '[PAD]', '<|pad|>', '<|endoftext|>']

type FeedDType = 'I64' | 'I32' | 'F32' | 'BOOL'

/** How to feed an encoder graph and read its embeddings. */
export interface EncoderSignature {
  ids: { name: string, dtype: 'I64' | 'I32' }
  mask?: { name: string, dtype: FeedDType }
  positions?: { name: string, dtype: 'I64' | 'I32' }
  tokenTypes?: { name: string, dtype: 'I64' | 'I32' }
  /** The first graph output. */
  output: { name: string, dtype: 'F32' | 'F16' }
  /** Static dims, when the graph fixes them. */
  batch?: number
  length?: number
  dim?: number
  /** Embedding rows of the built-in encoder (from its metadata), if it is one. */
  vocabSize?: number
}

export interface TextEncoderFiles {
  /** Path of a tokenizer.json, or its parsed contents. */
  tokenizerJson: string | TokenizerJson
  /** Path of an .onnx file (external data next to it is fine), its bytes, or a ModelProto. */
  encoderOnnx: string | Uint8Array | ModelProto
  /** Optional tokenizer_config.json (path or parsed); few tokenizers need it. */
  tokenizerConfig?: string | Record<string, unknown>
}

export interface TextEncoderLoadOptions {
  /** ORT intra-op threads (default 1). */
  threads?: number
  /** Pad id override (default: from the tokenizer, see the module comment). */
  padId?: number
  /** Zero padded rows of the embeddings (default true). */
  zeroPadding?: boolean
}

export interface EncodeOptions {
  /** Sequence length L; default the encoder's static L (required when the graph's L is symbolic). */
  length?: number
}

export interface Tokenized {
  /** Ids of each prompt, special tokens included, padding excluded (length ≤ L). */
  tokens: number[][]
  /** True where the prompt was cut to fit L (see the truncation rule). */
  truncated: boolean[]
  length: number
}

export interface EncodeResult extends Tokenized {
  /** F32 [N, L, D]; row j of prompt i is zero for j ≥ tokens[i].length (unless zeroPadding is off). */
  embeddings: Tensor
}

/**
 * Reads an encoder graph's signature (see the module comment); BAD_ONNX
 * naming what was found when it is not a text encoder we can feed.
 */
export function inspectTextEncoder (model: ModelProto, what = 'text encoder'): EncoderSignature {
  const graph = model.graph ?? {}
  const inits = new Set((graph.initializer ?? []).map(t => t.name))
  const inputs = (graph.input ?? []).filter(i => !inits.has(i.name)).map(i => ({ name: i.name ?? '', ...typeInfo(i.type) }))
  const outputs = (graph.output ?? []).map(o => ({ name: o.name ?? '', ...typeInfo(o.type) }))
  const describe = (v: { name: string, elemType: number, dims: Array<number | string> | null }): string =>
    `'${v.name}' ${elemName(v.elemType)}${v.dims == null ? '' : `[${v.dims.map(d => typeof d === 'string' && d.startsWith('?') ? '?' : d).join(', ')}]`}`
  const found = `inputs ${inputs.map(describe).join(', ') || '(none)'}; outputs ${outputs.map(describe).join(', ') || '(none)'}`
  const accepted = 'accepted: token ids named input_ids|tokens|token_ids (int64/int32 [N, L]), optional attention_mask|mask (int64/int32/float/bool [N, L]), optional position_ids, token_type_ids; first output float [N, L, D]'
  const bad = (why: string): LumiereError => new LumiereError('BAD_ONNX', `${what}: ${why}; found ${found}; ${accepted}`)

  const used = new Set<string>()
  const pick = (names: string[]): typeof inputs[number] | undefined => {
    const v = inputs.find(i => names.includes(i.name))
    if (v != null) used.add(v.name)
    return v
  }
  let ids = pick(IDS_NAMES)
  if (ids == null && inputs.length === 1 && intDType(inputs[0].elemType) != null) {
    ids = inputs[0]
    used.add(ids.name)
  }
  if (ids == null) throw bad('no token ids input')
  const mask = pick(MASK_NAMES)
  const positions = pick(POSITION_NAMES)
  const tokenTypes = pick(TYPE_NAMES)
  const extra = inputs.filter(i => !used.has(i.name))
  if (extra.length > 0) throw bad(`cannot feed input${extra.length > 1 ? 's' : ''} ${extra.map(e => `'${e.name}'`).join(', ')}`)

  const idsType = intDType(ids.elemType)
  if (idsType == null) throw bad(`token ids input '${ids.name}' is ${elemName(ids.elemType)}, not int64/int32`)
  for (const v of [ids, mask, positions, tokenTypes]) {
    if (v?.dims != null && v.dims.length !== 2) throw bad(`input '${v.name}' has rank ${v.dims.length}, not 2 ([N, L])`)
  }
  let maskType: FeedDType | undefined
  if (mask != null) {
    const t = elemToDType(mask.elemType)
    if (t !== 'I64' && t !== 'I32' && t !== 'F32' && t !== 'BOOL') throw bad(`mask input '${mask.name}' is ${elemName(mask.elemType)}`)
    maskType = t
  }
  const auxType = (v: typeof inputs[number] | undefined): 'I64' | 'I32' | undefined => {
    if (v == null) return undefined
    const t = intDType(v.elemType)
    if (t == null) throw bad(`input '${v.name}' is ${elemName(v.elemType)}, not int64/int32`)
    return t
  }
  const positionsType = auxType(positions)
  const tokenTypesType = auxType(tokenTypes)

  const out = outputs[0]
  if (out == null) throw bad('no outputs')
  const outType = out.elemType === ELEM.FLOAT ? 'F32' : out.elemType === ELEM.FLOAT16 ? 'F16' : out.elemType === 0 ? 'F32' : undefined
  if (outType == null) throw bad(`first output '${out.name}' is ${elemName(out.elemType)}, not float32/float16`)
  if (out.dims != null && out.dims.length !== 3) throw bad(`first output '${out.name}' has rank ${out.dims.length}, not 3 ([N, L, D])`)

  const sig: EncoderSignature = { ids: { name: ids.name, dtype: idsType }, output: { name: out.name, dtype: outType } }
  if (mask != null && maskType != null) sig.mask = { name: mask.name, dtype: maskType }
  if (positions != null && positionsType != null) sig.positions = { name: positions.name, dtype: positionsType }
  if (tokenTypes != null && tokenTypesType != null) sig.tokenTypes = { name: tokenTypes.name, dtype: tokenTypesType }
  const staticDim = (d: number | string | undefined): number | undefined => typeof d === 'number' && d > 0 ? d : undefined
  sig.batch = staticDim(ids.dims?.[0])
  sig.length = staticDim(ids.dims?.[1])
  sig.dim = staticDim(out.dims?.[2])
  const meta = model.metadataProps?.find(p => p.key === TEXT_ENCODER_META_KEY)?.value
  if (meta != null) {
    try {
      const v = (JSON.parse(meta) as { vocabSize?: unknown }).vocabSize
      if (typeof v === 'number') sig.vocabSize = v
    } catch { /* not ours after all */ }
  }
  return sig
}

/** A prompt encoder: tokenizer + ONNX text encoder. Call `close()` when done. */
export class TextEncoder {
  readonly signature: EncoderSignature
  readonly padId: number
  private readonly tokenizer: Tokenizer
  private readonly session: ort.InferenceSession
  private readonly zeroPadding: boolean
  private closed = false

  private constructor (tokenizer: Tokenizer, session: ort.InferenceSession, signature: EncoderSignature, padId: number, zeroPadding: boolean) {
    this.tokenizer = tokenizer
    this.session = session
    this.signature = signature
    this.padId = padId
    this.zeroPadding = zeroPadding
  }

  /**
   * Loads a model package folder (tokenizer.json + text-encoder.onnx, and
   * tokenizer_config.json when present) or explicit files. FILE_NOT_FOUND
   * for missing files, BAD_ARGUMENT for a tokenizer.json the library cannot
   * load, BAD_ONNX for an encoder it cannot use.
   */
  static async load (source: string | TextEncoderFiles, options: TextEncoderLoadOptions = {}): Promise<TextEncoder> {
    let files: TextEncoderFiles
    if (typeof source === 'string') {
      let isDir = false
      try { isDir = statSync(source).isDirectory() } catch { /* reported below */ }
      if (!isDir) throw new LumiereError('FILE_NOT_FOUND', `text encoder folder ${source} not found: give a model package folder holding ${TOKENIZER_FILE} and ${TEXT_ENCODER_FILE}`)
      files = { tokenizerJson: join(source, TOKENIZER_FILE), encoderOnnx: join(source, TEXT_ENCODER_FILE) }
      const config = join(source, TOKENIZER_CONFIG_FILE)
      if (isFile(config)) files.tokenizerConfig = config
    } else {
      files = source
    }

    const json = typeof files.tokenizerJson === 'string' ? readJson(files.tokenizerJson, 'tokenizer') : files.tokenizerJson
    const config = files.tokenizerConfig == null ? {} : typeof files.tokenizerConfig === 'string' ? readJson(files.tokenizerConfig, 'tokenizer config') : files.tokenizerConfig
    const tokenizerWhat = typeof files.tokenizerJson === 'string' ? `tokenizer ${files.tokenizerJson}` : 'tokenizer'
    let tokenizer: Tokenizer
    try {
      tokenizer = new Tokenizer(json, config)
    } catch (err) {
      throw new LumiereError('BAD_ARGUMENT', `${tokenizerWhat} cannot be loaded by @huggingface/tokenizers (${(err as Error).message}): give a HuggingFace tokenizer.json`, { cause: err })
    }

    const enc = files.encoderOnnx
    const what = typeof enc === 'string' ? `text encoder ${enc}` : 'text encoder'
    const model = typeof enc === 'string' ? loadModel(enc) : enc instanceof Uint8Array ? decodeModel(enc, what) : enc
    const signature = inspectTextEncoder(model, what)

    const vocab = tokenizer.get_vocab(true)
    let maxId = -1
    for (const id of vocab.values()) if (id > maxId) maxId = id
    if (signature.vocabSize != null && maxId >= signature.vocabSize) {
      throw new LumiereError('BAD_ONNX', `${what} embeds ${signature.vocabSize} token ids but ${tokenizerWhat} has ids up to ${maxId}: rebuild the encoder with vocabSize ≥ ${maxId + 1}`)
    }
    const padId = options.padId ?? findPadId(json, tokenizer)

    let session: ort.InferenceSession
    try {
      const opts = sessionOptions(options.threads ?? 1)
      session = typeof enc === 'string' ? await ort.InferenceSession.create(enc, opts) : await ort.InferenceSession.create(enc instanceof Uint8Array ? enc : encodeModel(enc), opts)
    } catch (err) {
      throw new LumiereError('BAD_ONNX', `${what} cannot be loaded by onnxruntime (${(err as Error).message}): check the export (opset, operators)`, { cause: err })
    }
    return new TextEncoder(tokenizer, session, signature, padId, options.zeroPadding ?? true)
  }

  /** The encoder's static sequence length L, if its graph fixes one. */
  get length (): number | undefined { return this.signature.length }
  /** The embedding width D, if the graph declares it. */
  get dim (): number | undefined { return this.signature.dim }

  /** Tokenizes, pads and truncates without running the encoder (see the truncation rule). */
  tokenize (prompts: string[], options: EncodeOptions = {}): Tokenized {
    if (!Array.isArray(prompts) || prompts.some(p => typeof p !== 'string')) {
      throw new LumiereError('BAD_ARGUMENT', 'prompts must be an array of strings (use "" for the unconditional prompt)')
    }
    const L = this.resolveLength(options.length)
    const tokens: number[][] = []
    const truncated: boolean[] = []
    for (const prompt of prompts) {
      const full = this.tokenizer.encode(prompt, { add_special_tokens: true }).ids
      if (full.length <= L) {
        tokens.push(full)
        truncated.push(false)
        continue
      }
      const content = this.tokenizer.encode(prompt, { add_special_tokens: false }).ids
      const specials = full.length - content.length
      if (specials >= L) {
        throw new LumiereError('BAD_ARGUMENT', `length ${L} leaves no room for prompt tokens: the tokenizer adds ${specials} special tokens`)
      }
      const at = indexOfRun(full, content)
      tokens.push(at < 0
        // A post-processor that does not wrap the content: keep the start and the last token.
        ? [...full.slice(0, L - 1), full[full.length - 1]]
        : [...full.slice(0, at), ...content.slice(0, L - specials), ...full.slice(at + content.length)])
      truncated.push(true)
    }
    return { tokens, truncated, length: L }
  }

  /** Encodes prompts into embeddings F32 [N, L, D] (see the module comment for the rules). */
  async encode (prompts: string[], options: EncodeOptions = {}): Promise<EncodeResult> {
    if (this.closed) throw new LumiereError('BAD_ARGUMENT', 'text encoder is closed')
    const { tokens, truncated, length: L } = this.tokenize(prompts, options)
    const N = tokens.length
    if (N === 0) throw new LumiereError('BAD_ARGUMENT', 'no prompts to encode')
    const batch = this.signature.batch
    if (batch != null && batch !== 1 && batch !== N) {
      throw new LumiereError('BAD_ARGUMENT', `text encoder takes exactly ${batch} prompts at once (static batch), got ${N}`)
    }
    const chunks = batch === 1 ? tokens.map(t => [t]) : [tokens]
    const parts: Float32Array[] = []
    let D = -1
    for (const chunk of chunks) {
      const out = await this.run(chunk, L)
      if (D < 0) D = out.dim
      parts.push(out.data)
    }
    const data = new Float32Array(N * L * D)
    let offset = 0
    for (const p of parts) { data.set(p, offset); offset += p.length }
    if (this.zeroPadding) {
      for (let i = 0; i < N; i++) data.fill(0, (i * L + tokens[i].length) * D, (i + 1) * L * D)
    }
    return { embeddings: { dtype: 'F32', shape: [N, L, D], data: new Uint8Array(data.buffer) }, tokens, truncated, length: L }
  }

  /** Releases the ORT session. */
  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.session.release()
  }

  private resolveLength (length: number | undefined): number {
    const fixed = this.signature.length
    if (length != null && (!Number.isSafeInteger(length) || length < 1)) throw new LumiereError('BAD_ARGUMENT', `length must be a positive integer, got ${length}`)
    if (fixed != null && length != null && length !== fixed) {
      throw new LumiereError('BAD_ARGUMENT', `text encoder takes sequences of exactly ${fixed} tokens, asked for ${length}: omit length or rebuild the encoder`)
    }
    const L = length ?? fixed
    if (L == null) throw new LumiereError('BAD_ARGUMENT', 'text encoder takes any sequence length: pass { length } (e.g. the video model\'s context length)')
    return L
  }

  private async run (tokens: number[][], L: number): Promise<{ data: Float32Array, dim: number }> {
    const n = tokens.length
    const sig = this.signature
    const ids = new Array<number>(n * L).fill(this.padId)
    const mask = new Array<number>(n * L).fill(0)
    tokens.forEach((row, i) => row.forEach((id, j) => { ids[i * L + j] = id; mask[i * L + j] = 1 }))
    const feeds: Record<string, ort.Tensor> = { [sig.ids.name]: toOrt(intTensor(sig.ids.dtype, [n, L], ids)) }
    if (sig.mask != null) feeds[sig.mask.name] = toOrt(intTensor(sig.mask.dtype, [n, L], mask))
    if (sig.positions != null) feeds[sig.positions.name] = toOrt(intTensor(sig.positions.dtype, [n, L], Array.from({ length: n * L }, (_, k) => k % L)))
    if (sig.tokenTypes != null) feeds[sig.tokenTypes.name] = toOrt(intTensor(sig.tokenTypes.dtype, [n, L], new Array<number>(n * L).fill(0)))
    let result: ort.InferenceSession.OnnxValueMapType
    try {
      result = await this.session.run(feeds, [sig.output.name])
    } catch (err) {
      throw new LumiereError('BAD_ONNX', `text encoder failed on ids [${n}, ${L}] (${(err as Error).message}): check the encoder's vocabulary matches the tokenizer and it takes this length`, { cause: err })
    }
    const out = fromOrt(result[sig.output.name] as ort.Tensor)
    const [on, ol, od] = out.shape
    if (out.shape.length !== 3 || on !== n || ol !== L || !(od > 0)) {
      throw new LumiereError('BAD_ONNX', `text encoder output '${sig.output.name}' is ${out.dtype}[${out.shape.join(', ')}], expected [N, L, D] = [${n}, ${L}, D]`)
    }
    let data: Float32Array
    if (out.dtype === 'F32') data = Float32Array.from(view(out) as Float32Array)
    else if (out.dtype === 'F16') data = float16ToFloat32(view(out) as Uint16Array)
    else throw new LumiereError('BAD_ONNX', `text encoder output '${sig.output.name}' is ${out.dtype}, not float32/float16`)
    return { data, dim: od }
  }
}

export type BuiltinTextEncoderOptions = Omit<TextEncoderConfig, 'vocabSize'>

export interface WrittenTextEncoder {
  tokenizerPath: string
  encoderPath: string
  /** The resolved encoder config (vocabSize = the built-in vocabulary's size). */
  config: Required<TextEncoderConfig>
}

/**
 * Writes the built-in tokenizer (`tokenizer.json`) and encoder
 * (`text-encoder.onnx`) into a model package folder, created if needed.
 * Deterministic: the same options write the same bytes.
 */
export function writeBuiltinTextEncoder (dir: string, options: BuiltinTextEncoderOptions): WrittenTextEncoder {
  const config = resolveTextEncoderConfig({ ...options, vocabSize: BUILTIN_VOCAB_SIZE })
  const tokenizerPath = join(dir, TOKENIZER_FILE)
  const encoderPath = join(dir, TEXT_ENCODER_FILE)
  try {
    mkdirSync(dir, { recursive: true })
    writeFileSync(tokenizerPath, JSON.stringify(builtinTokenizerJson(), null, 2) + '\n')
  } catch (err) {
    throw new LumiereError('FILE_UNWRITABLE', `cannot write ${tokenizerPath} (${(err as Error).message}): check the folder is writable`, { cause: err })
  }
  saveModel(buildTextEncoder(config), encoderPath)
  return { tokenizerPath, encoderPath, config }
}

function isFile (path: string): boolean {
  try { return statSync(path).isFile() } catch { return false }
}

function readJson (path: string, what: string): Record<string, unknown> {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new LumiereError('FILE_NOT_FOUND', `${what} file ${path} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): check the path`, { cause: err })
  }
  try {
    const value: unknown = JSON.parse(text)
    if (value == null || typeof value !== 'object' || Array.isArray(value)) throw new Error('not a JSON object')
    return value as Record<string, unknown>
  } catch (err) {
    throw new LumiereError('BAD_ARGUMENT', `${what} file ${path} is not valid JSON (${(err as Error).message}): give a HuggingFace ${what === 'tokenizer' ? TOKENIZER_FILE : TOKENIZER_CONFIG_FILE}`, { cause: err })
  }
}

function findPadId (json: Record<string, unknown>, tokenizer: Tokenizer): number {
  const padding = json.padding as { pad_id?: unknown } | null | undefined
  if (padding != null && typeof padding.pad_id === 'number') return padding.pad_id
  for (const name of PAD_NAMES) {
    const id = tokenizer.token_to_id(name)
    if (id != null) return id
  }
  return 0
}

/** Start of `run` inside `seq`, or -1 (an empty run is at 0). */
function indexOfRun (seq: number[], run: number[]): number {
  outer: for (let i = 0; i + run.length <= seq.length; i++) {
    for (let j = 0; j < run.length; j++) if (seq[i + j] !== run[j]) continue outer
    return i
  }
  return -1
}

function intDType (elemType: number): 'I64' | 'I32' | undefined {
  return elemType === ELEM.INT64 ? 'I64' : elemType === ELEM.INT32 ? 'I32' : undefined
}

function elemName (elemType: number): string {
  const d = elemToDType(elemType)
  return elemType === 0 ? 'untyped' : d === 'OTHER' ? `elem type ${elemType}` : d
}

function intTensor (dtype: FeedDType, shape: number[], values: number[]): Tensor {
  let data: Uint8Array
  switch (dtype) {
    case 'I64': data = new Uint8Array(BigInt64Array.from(values, v => BigInt(v)).buffer); break
    case 'I32': data = new Uint8Array(Int32Array.from(values).buffer); break
    case 'F32': data = new Uint8Array(Float32Array.from(values).buffer); break
    case 'BOOL': data = Uint8Array.from(values, v => v !== 0 ? 1 : 0); break
  }
  return { dtype: dtype satisfies DType, shape, data }
}
