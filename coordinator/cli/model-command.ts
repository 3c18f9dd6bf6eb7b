import { Command, Option } from 'commander'
import { buildModelPackage, resolveModel } from '../../src/model/builtin.ts'
import { getPreset, presetNames } from '../../src/model/presets.ts'
import { parameterCount } from '../../src/model/stunet.ts'
import { writeStyleTemplate } from '../../src/model/style.ts'
import { loadModel } from '../../src/onnx/model-io.ts'
import { LumiereError } from '../../src/errors.ts'
import { positiveInt } from './options.ts'

export function modelCommand (): Command {
  const model = new Command('model').description('build and inspect model packages')
  model.command('build')
    .description('build a built-in preset as a model package folder (paper: shapes only, for planning)')
    .addOption(new Option('--preset <name>', 'preset to build').choices([...presetNames]).makeOptionMandatory())
    .requiredOption('--out <dir>', 'package folder to write (an existing package there is replaced)')
    .option('--frames <n>', 'frames to build for (default: the preset\'s)', positiveInt('--frames'))
    .option('--conditional', 'the 7-channel variant ⟨noisy video, masked condition, mask⟩ for image-to-video, inpainting and cinemagraphs')
    .action(async (opts: { preset: string, out: string, frames?: number, conditional?: boolean }) => {
      await buildModelPackage(opts.preset, opts.out, { frames: opts.frames, conditional: opts.conditional })
      const params = parameterCount({ ...getPreset(opts.preset), ...(opts.frames != null ? { frames: opts.frames } : {}), inChannels: opts.conditional === true ? 7 : 3 })
      console.log(`wrote ${opts.preset}${opts.conditional === true ? ' (conditional)' : ''} to ${opts.out} (${(params / 1e6).toFixed(2)} M base parameters${opts.preset === 'paper' ? ', shapes only' : ''})`)
    })
  model.command('style-template')
    .description('write the weights a style replaces (the spatial, image-model weights of the base model) as a safetensors file: fine-tune or fill them in, then generate with --style FILE --style-alpha α')
    .requiredOption('--model <dir|preset>', 'model package folder or built-in preset')
    .requiredOption('--out <file>', 'safetensors file to write')
    .option('--conditional', 'built-in presets: the conditional (7-channel) base model of image-to-video and inpainting')
    .action(async (opts: { model: string, out: string, conditional?: boolean }) => {
      const pkg = await resolveModel(opts.model, { conditional: opts.conditional })
      if (pkg.manifest.shapeOnly) throw new LumiereError('BAD_ARGUMENT', `model ${opts.model} holds shapes only (no weights), so it has no style template; use a model with weights`)
      const { tensors, parameters } = await writeStyleTemplate(loadModel(pkg.path(pkg.manifest.base.graph)), opts.out, { model: pkg.manifest.name })
      console.log(`wrote ${tensors} spatial weights (${(parameters / 1e6).toFixed(2)} M parameters) of ${pkg.manifest.name} to ${opts.out}`)
    })
  return model
}
