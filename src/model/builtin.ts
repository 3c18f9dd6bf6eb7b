import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { LumiereError } from '../errors.ts'
import { saveModel } from '../onnx/model-io.ts'
import { cacheRoot } from '../paths.ts'
import { TEXT_ENCODER_FILE, TOKENIZER_FILE, writeBuiltinTextEncoder } from '../text/encode.ts'
import { loadPackage, writePackage } from './package.ts'
import { getPreset, presetNames } from './presets.ts'
import { buildSsr } from './ssr.ts'
import { getSsrPreset } from './ssr-presets.ts'
import { buildStunet } from './stunet.ts'
import { validateStunetConfig } from './stunet-config.ts'
import type { Manifest, ModelPackage } from './package.ts'

/** Bump when the builders change what a preset produces, so caches rebuild. */
export const BUILTIN_VERSION = 3

const BASE_FILE = 'base.onnx'
const SSR_FILE = 'ssr.onnx'
/** Low-res conditioning noise: σ² = sigmoid(−3) ≈ 0.05, enough to hide base-model artefacts. */
const AUG_LOGSNR = 3
/** The paper's rate; the small presets play at half that to last longer. */
const FPS: Record<string, number> = { tiny: 8, small: 8, paper: 16 }
/** Built-in weights are fixed: a preset means the same model on every machine. */
const WEIGHT_SEED = 1

export interface BuildOptions {
  /** Frames to build for (default: the preset's); must be divisible by 2^(levels − 1). */
  frames?: number
  /** The 7-channel variant ⟨noisy video, masked condition video, mask⟩ for image-to-video, inpainting and cinemagraphs. */
  conditional?: boolean
}

/**
 * Builds a preset as a model package: the STUNet base graph (seeded weights,
 * or shapes only for `paper`), the built-in tokenizer and text encoder, and
 * the manifest.
 */
export async function buildModelPackage (preset: string, dir: string, options: BuildOptions = {}): Promise<void> {
  const config = validateStunetConfig({ ...getPreset(preset), ...(options.frames != null ? { frames: options.frames } : {}), inChannels: options.conditional === true ? 7 : 3 })
  const shapeOnly = preset === 'paper'
  const ssr = getSsrPreset(preset)
  const manifest: Manifest = {
    format: 'lumiere-model/1',
    name: options.conditional === true ? `${preset}-conditional` : preset,
    shapeOnly,
    base: { graph: BASE_FILE, frames: config.frames, height: config.height, width: config.width, inChannels: config.inChannels, conditional: config.inChannels === 7, levels: config.levels },
    text: { tokenizer: TOKENIZER_FILE, encoder: TEXT_ENCODER_FILE, length: config.textLength, dim: config.textDim },
    ssr: { graph: SSR_FILE, height: ssr.height, width: ssr.width, scale: ssr.scale, window: ssr.window, stride: ssr.window / 2, augLogsnr: AUG_LOGSNR },
    fps: FPS[preset] ?? 8,
    prediction: 'v',
    schedule: { kind: 'cosine', logsnrMin: -20, logsnrMax: 20 }
  }
  await writePackage(dir, manifest, async (tmp) => {
    saveModel(buildStunet(config, { weights: shapeOnly ? 'none' : 'seeded', seed: WEIGHT_SEED }), join(tmp, BASE_FILE))
    saveModel(buildSsr(ssr, { weights: shapeOnly ? 'none' : 'seeded', seed: WEIGHT_SEED }), join(tmp, SSR_FILE))
    await writeBuiltinTextEncoder(tmp, { dim: config.textDim, length: config.textLength, seed: WEIGHT_SEED })
  })
}

/**
 * A model by name or folder: a package folder is loaded as it is; a preset
 * name is built into the cache on first use (per frame count) and reused.
 */
export async function resolveModel (model: string, options: BuildOptions = {}): Promise<ModelPackage> {
  if (existsSync(model)) {
    const pkg = await loadPackage(model)
    if (options.frames != null && options.frames !== pkg.manifest.base.frames) {
      throw new LumiereError('BAD_ARGUMENT', `model ${model} generates exactly ${pkg.manifest.base.frames} frames; drop --frames or rebuild it with 'lumiere model build --frames ${options.frames}'`)
    }
    if (options.conditional === true && pkg.manifest.base.inChannels !== 7) {
      throw new LumiereError('BAD_ARGUMENT', `model ${model} is not conditional (it takes ${pkg.manifest.base.inChannels} input channels, not 7); build one with 'lumiere model build --conditional'`)
    }
    return pkg
  }
  if (!(presetNames as readonly string[]).includes(model)) {
    throw new LumiereError('BAD_ARGUMENT', `unknown model '${model}': not a package folder, and not a preset (${presetNames.join(', ')})`)
  }
  const frames = options.frames ?? getPreset(model).frames
  const dir = join(cacheRoot(), 'models', `${model}${options.conditional === true ? '-conditional' : ''}-f${frames}-v${BUILTIN_VERSION}`)
  if (!existsSync(join(dir, 'lumiere.json'))) await buildModelPackage(model, dir, options)
  return loadPackage(dir)
}
