import { Command, Option } from 'commander'
import { buildModelPackage } from '../../src/model/builtin.ts'
import { getPreset, presetNames } from '../../src/model/presets.ts'
import { parameterCount } from '../../src/model/stunet.ts'
import { positiveInt } from './options.ts'

export function modelCommand (): Command {
  const model = new Command('model').description('build and inspect model packages')
  model.command('build')
    .description('build a built-in preset as a model package folder (paper: shapes only, for planning)')
    .addOption(new Option('--preset <name>', 'preset to build').choices([...presetNames]).makeOptionMandatory())
    .requiredOption('--out <dir>', 'package folder to write (an existing package there is replaced)')
    .option('--frames <n>', 'frames to build for (default: the preset\'s)', positiveInt('--frames'))
    .action(async (opts: { preset: string, out: string, frames?: number }) => {
      await buildModelPackage(opts.preset, opts.out, { frames: opts.frames })
      const params = parameterCount({ ...getPreset(opts.preset), ...(opts.frames != null ? { frames: opts.frames } : {}) })
      console.log(`wrote ${opts.preset} to ${opts.out} (${(params / 1e6).toFixed(2)} M parameters${opts.preset === 'paper' ? ', shapes only' : ''})`)
    })
  return model
}
