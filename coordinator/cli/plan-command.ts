import { Command, InvalidArgumentError, Option } from 'commander'
import { buildDagProbed } from '../../src/onnx/graph.ts'
import { loadModel } from '../../src/onnx/model-io.ts'
import { graphInputs } from '../check-inputs.ts'
import { Coordinator } from '../coordinator.ts'
import { peerCapacity } from '../deploy.ts'
import { partition } from '../partition.ts'
import { formatPlan } from '../plan-format.ts'
import { collect, list, positiveInt } from './options.ts'
import type { PeerCapacity } from '../plan.ts'

interface PlanFlags {
  model: string
  stages: number
  peers?: string[]
  dim?: string[]
  json?: boolean
}

/** Speed assumed for each peer when planning without real ones. */
const NOMINAL_FLOPS = 1e12

/** Parses `name=value` symbolic dim bindings. */
function parseDims (pairs: string[]): Record<string, number> {
  const dims: Record<string, number> = {}
  for (const pair of pairs) {
    const [name, value] = pair.split('=')
    const n = Number(value)
    if (name == null || name === '' || !Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`--dim wants name=N with N ≥ 1, got '${pair}'`)
    dims[name] = n
  }
  return dims
}

export function planCommand (): Command {
  return new Command('plan')
    .description('show how a model would be cut into stages: nodes, FLOPs, parameters and bytes crossing each boundary')
    .requiredOption('--model <file.onnx>', 'ONNX model')
    .requiredOption('--stages <k>', 'number of stages', positiveInt('--stages'))
    .addOption(new Option('--peers <addr,...>', 'plan for these running peers (their free memory and measured speed); default: K equal peers of 1 TFLOP/s').argParser(list))
    .option('--dim <name=N>', 'value of a symbolic input dimension, repeatable (unbound ones are 1)', collect)
    .option('--json', 'print the plan as JSON')
    .action(async (opts: PlanFlags) => {
      const model = loadModel(opts.model)
      const dims = parseDims(opts.dim ?? [])
      for (const input of graphInputs(model)) for (const d of input.dims) if (typeof d === 'string') dims[d] ??= 1
      const dag = await buildDagProbed(model, { dims })
      let peers: PeerCapacity[]
      if (opts.peers != null) {
        const coordinator = await Coordinator.start()
        try {
          peers = (await coordinator.connect(opts.peers)).map(peerCapacity)
        } finally {
          await coordinator.stop()
        }
      } else {
        peers = Array.from({ length: opts.stages }, (_, i) => ({ id: `peer-${i + 1}`, memoryBytes: Number.MAX_SAFE_INTEGER, speed: NOMINAL_FLOPS }))
      }
      const plan = partition(dag, peers, { stages: opts.stages })
      if (opts.json === true) {
        console.log(JSON.stringify(plan))
      } else {
        console.log(formatPlan(plan, dag))
        if (opts.peers == null) console.log(`(times assume ${opts.stages} equal peers of ${NOMINAL_FLOPS / 1e12} TFLOP/s with unlimited memory; --peers plans for real ones)`)
      }
    })
}
