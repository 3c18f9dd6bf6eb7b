import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { dirname, isAbsolute, join, relative, resolve } from 'node:path'
import { z } from 'zod'
import { LumiereError } from '../errors.ts'
import { describeIssues } from '../../protocol/messages.ts'

export const MANIFEST_FILE = 'lumiere.json'
export const MANIFEST_FORMAT = 'lumiere-model/1'

/** A file inside the package folder, by relative path. */
const packageFile = z.string().min(1).max(512)
const positive = z.int().min(1)

const manifestSchema = z.strictObject({
  format: z.literal(MANIFEST_FORMAT),
  name: z.string().min(1).max(128),
  /** True for graphs built with shapes only (no weights): planning and simulation, never generation. */
  shapeOnly: z.boolean().default(false),
  base: z.strictObject({
    graph: packageFile,
    frames: positive,
    height: positive,
    width: positive,
    /** 3: noisy video only; 7: noisy video, masked condition video, mask. */
    inChannels: z.union([z.literal(3), z.literal(7)]),
    /** Takes a condition video and mask (image-to-video, inpainting, cinemagraphs): exactly when inChannels is 7. */
    conditional: z.boolean().default(false),
    /** Temporal levels: frames must be divisible by 2^(levels − 1). */
    levels: positive
  }).refine((b) => b.conditional === (b.inChannels === 7), { message: 'conditional must be true exactly when inChannels is 7', path: ['conditional'] }),
  text: z.strictObject({
    tokenizer: packageFile,
    encoder: packageFile,
    length: positive,
    dim: positive
  }),
  /** Spatial super-resolution, run on overlapping temporal windows fused by MultiDiffusion. */
  ssr: z.strictObject({
    graph: packageFile,
    /** Output size; the input is the base size, scale times smaller. */
    height: positive,
    width: positive,
    scale: z.int().min(2),
    /** Frames per window (the graph's fixed time length) and the default stride between windows. */
    window: positive,
    stride: positive,
    /** Log-SNR of the noise added to the upsampled low-res conditioning. */
    augLogsnr: z.number()
  }).optional(),
  fps: z.number().positive().max(240),
  prediction: z.enum(['v', 'eps']),
  schedule: z.strictObject({
    kind: z.literal('cosine'),
    logsnrMin: z.number(),
    logsnrMax: z.number()
  })
})

export type Manifest = z.infer<typeof manifestSchema>

/** A model package on disk: its folder and validated manifest, with file paths resolved. */
export interface ModelPackage {
  dir: string
  manifest: Manifest
  path: (file: string) => string
}

/** Checks a manifest value; every problem is one BAD_ARGUMENT line naming the field. */
export function parseManifest (value: unknown, where = MANIFEST_FILE): Manifest {
  const r = manifestSchema.safeParse(value)
  if (!r.success) throw new LumiereError('BAD_ARGUMENT', `${where} is not a valid model manifest: ${describeIssues(r.error)}`)
  return r.data
}

export async function loadPackage (dir: string): Promise<ModelPackage> {
  const file = join(dir, MANIFEST_FILE)
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch {
    throw new LumiereError('FILE_NOT_FOUND', `no model package at ${dir}: ${MANIFEST_FILE} is missing (build one with 'lumiere model build --preset tiny --out DIR')`)
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err) {
    throw new LumiereError('BAD_ARGUMENT', `${file} is not JSON: ${(err as Error).message}`)
  }
  const manifest = parseManifest(json, file)
  const path = (name: string): string => {
    const full = resolve(dir, name)
    const rel = relative(resolve(dir), full)
    if (rel.startsWith('..') || isAbsolute(rel)) throw new LumiereError('BAD_ARGUMENT', `${file} names '${name}', which is outside the package folder`)
    return full
  }
  for (const name of [manifest.base.graph, manifest.text.tokenizer, manifest.text.encoder, ...(manifest.ssr != null ? [manifest.ssr.graph] : [])]) {
    if (!existsSync(path(name))) throw new LumiereError('FILE_NOT_FOUND', `${file} names '${name}', which is missing from ${dir}`)
  }
  return { dir, manifest, path }
}

/**
 * Writes a package atomically: `fill` writes its files into a temporary
 * folder beside `dir`, which is then renamed into place, so a crash never
 * leaves a half-built package under the final name. An existing package at
 * `dir` is replaced; any other non-empty folder is refused, never deleted.
 */
export async function writePackage (dir: string, manifest: Manifest, fill: (tmp: string) => Promise<void>): Promise<void> {
  parseManifest(manifest)
  if (existsSync(dir) && !existsSync(join(dir, MANIFEST_FILE)) && (await readdir(dir).catch(() => ['?'])).length > 0) {
    throw new LumiereError('FILE_UNWRITABLE', `${dir} exists and is not a model package; choose another --out (nothing was written)`)
  }
  const parent = dirname(resolve(dir))
  try {
    await mkdir(parent, { recursive: true })
  } catch (err) {
    throw new LumiereError('FILE_UNWRITABLE', `cannot create ${parent}: ${(err as Error).message}`)
  }
  const tmp = await mkdtemp(join(parent, '.lumiere-pkg-'))
  try {
    await fill(tmp)
    await writeFile(join(tmp, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n')
    if (existsSync(dir)) await rm(dir, { recursive: true, force: true })
    await rename(tmp, dir)
  } catch (err) {
    await rm(tmp, { recursive: true, force: true })
    if (err instanceof LumiereError) throw err
    throw new LumiereError('FILE_UNWRITABLE', `cannot write the model package to ${dir}: ${(err as Error).message}`)
  }
}
