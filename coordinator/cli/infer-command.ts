import { Command, Option } from 'commander'
import { readSafetensors, writeSafetensors } from '../../src/tensor/safetensors.ts'
import { inferOnMesh } from '../infer.ts'
import { list, positiveInt, positiveNumber } from './options.ts'
import type { TransportName } from '../../src/mesh/node.ts'
import { accessOptions, discoveryMeshOptions, discoveryOptions } from './shared-options.ts'
import type { DiscoveryFlags } from './shared-options.ts'
import { loadAccess } from '../../src/mesh/access.ts'
import type { AccessFlags } from '../../src/mesh/access.ts'

interface InferFlags {
  model: string
  input: string
  out: string
  local?: number
  peers?: string[]
  stages?: number
  transport: TransportName
  timeout: number
  json?: boolean
}

export function inferCommand (): Command {
  return accessOptions(discoveryOptions(new Command('infer')
    .description('run an ONNX model once, cut into stages over the mesh; writes the graph outputs by name')
    .requiredOption('--model <file.onnx>', 'ONNX model (external data beside it is read too)')
    .requiredOption('--input <file.safetensors>', 'graph inputs, one tensor per input name')
    .requiredOption('--out <file.safetensors>', 'where to write the graph outputs')
    .addOption(new Option('--local <k>', 'start K peer processes on loopback and use them').argParser(positiveInt('--local')).conflicts('peers'))
    .addOption(new Option('--peers <addr,...>', 'full multiaddrs (with /p2p/ id) of running peers').argParser(list))
    .option('--stages <k>', 'stages to cut the model into (default: one per peer)', positiveInt('--stages'))
    .addOption(new Option('--transport <name>', 'transport for --local peers').choices(['tcp', 'webrtc']).default('tcp'))
    .option('--timeout <seconds>', 'deadline for the whole run', positiveNumber('--timeout'), 600)
    .option('--json', 'print a JSON summary instead of text')))
    .action(async (opts: InferFlags & AccessFlags & DiscoveryFlags) => {
      const inputs = await readSafetensors(opts.input)
      const started = performance.now()
      const { outputs, plan } = await inferOnMesh(opts.model, inputs.tensors, {
        local: opts.local,
        peers: opts.peers,
        ...discoveryMeshOptions(opts),
        stages: opts.stages,
        transport: opts.transport,
        timeoutMs: opts.timeout * 1000,
        access: await loadAccess(opts)
      })
      await writeSafetensors(opts.out, outputs)
      const summary = {
        out: opts.out,
        outputs: Object.fromEntries(Object.entries(outputs).map(([n, t]) => [n, { dtype: t.dtype, shape: t.shape }])),
        stages: plan.stages.length,
        wireBytes: plan.totals.wireBytes,
        seconds: Number(((performance.now() - started) / 1000).toFixed(3))
      }
      if (opts.json === true) console.log(JSON.stringify(summary))
      else console.log(`wrote ${Object.keys(outputs).join(', ')} to ${opts.out} (${plan.stages.length} stages, ${summary.seconds} s)`)
    })
}
