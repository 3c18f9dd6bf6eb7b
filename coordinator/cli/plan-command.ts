import { existsSync, statSync } from 'node:fs'
import { Command, InvalidArgumentError, Option } from 'commander'
import { LumiereError } from '../../src/errors.ts'
import { buildDag, buildDagProbed } from '../../src/onnx/graph.ts'
import { loadModel } from '../../src/onnx/model-io.ts'
import { loadPackage } from '../../src/model/package.ts'
import { getPreset, presetNames } from '../../src/model/presets.ts'
import { buildStunet } from '../../src/model/stunet.ts'
import { graphInputs } from '../check-inputs.ts'
import { Coordinator } from '../coordinator.ts'
import { peerCapacity } from '../deploy.ts'
import { formatLinks, measureLinks, withLinks } from '../links.ts'
import type { LinkMatrix } from '../links.ts'
import { DEFAULT_BALANCE, partitionAll } from '../partition.ts'
import { formatBytes, formatComparison, formatPlan, formatTime } from '../plan-format.ts'
import { parsePeersSpec, simulate } from '../simulate.ts'
import { pipelineStepSeconds, replicatedPlan, replicatedStepSeconds, singlePeerPlan } from '../replication.ts'
import { collect, list, nonNegativeNumber, positiveInt } from './options.ts'
import type { Placement } from '../partition.ts'
import type { LinkSpeed, PeerCapacity, Plan } from '../plan.ts'
import type { Simulation } from '../simulate.ts'
import type { ModelProto } from '../../src/onnx/proto.ts'
import type { Dag } from '../../src/onnx/dag.ts'
import { accessOptions } from './shared-options.ts'
import { loadAccess } from '../../src/mesh/access.ts'
import type { AccessFlags } from '../../src/mesh/access.ts'

interface PlanFlags {
  model: string
  stages?: number
  peers?: string[]
  peersSpec?: string
  placement: Placement
  balance: number
  simulate?: boolean
  microBatches: number
  dim?: string[]
  json?: boolean
  measureLinks: boolean
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

/**
 * The model to plan: an .onnx file, a model package folder (its base
 * graph), or a built-in preset name. A preset's base graph is built in
 * memory with shapes only (weights do not change a plan; the paper preset
 * has none anyway), so planning never writes the package cache.
 */
async function loadPlanModel (name: string): Promise<{ model: ModelProto, shapeOnly: boolean }> {
  if (existsSync(name)) {
    if (!statSync(name).isDirectory()) return { model: loadModel(name), shapeOnly: false }
    const pkg = await loadPackage(name)
    return { model: loadModel(pkg.path(pkg.manifest.base.graph)), shapeOnly: pkg.manifest.shapeOnly }
  }
  if ((presetNames as readonly string[]).includes(name)) return { model: buildStunet(getPreset(name), { weights: 'none' }), shapeOnly: true }
  throw new LumiereError('BAD_ARGUMENT', `unknown model '${name}': not an .onnx file, a model package folder, or a preset (${presetNames.join(', ')})`)
}

export function planCommand (): Command {
  return accessOptions(new Command('plan')
    .description('show how a model would be cut into stages (contiguous and folded side by side): nodes, FLOPs, parameters and bytes on the wire; with --simulate, predicted seconds per denoising step')
    .requiredOption('--model <model>', 'an ONNX file, a model package folder, or a preset (tiny, small, paper)')
    .option('--stages <k>', 'number of peers to plan for (K contiguous stages, or up to 2K − 1 folded ones); default: every peer of --peers/--peers-spec', positiveInt('--stages'))
    .addOption(new Option('--peers <addr,...|spec>', 'plan for these running peers (their free memory and measured speed), or for hypothetical ones given as a spec (as --peers-spec; a multiaddr starts with /); default: K equal peers of 1 TFLOP/s').argParser(list))
    .option('--peers-spec <spec>', 'plan for hypothetical peers: COUNTxFLOPS[@BITS[/LATENCY]][:MEMORY], comma-separated groups, e.g. 8x300T@1G or 32x80T@100M/2ms:80GiB (FLOP/s; link in bit/s)')
    .addOption(new Option('--placement <p>', 'which plan is chosen (both are shown)').choices(['auto', 'contiguous', 'folded']).default('auto'))
    .option('--balance <x>', 'relative slack on the best bottleneck of either placement within which fewer wire bytes win; the contiguous and the folded plan are both held to it', nonNegativeNumber('--balance'), DEFAULT_BALANCE)
    .option('--simulate', 'predict seconds per denoising step for both plans (coordinator/simulate.ts)')
    .option('--micro-batches <m>', 'forward passes per denoising step in the wire and simulation figures', positiveInt('--micro-batches'), 2)
    .option('--dim <name=N>', 'value of a symbolic input dimension, repeatable (unbound ones are 1, e.g. --dim batch=2)', collect)
    .option('--json', 'print both plans (and simulations) as one JSON object')
    .option('--no-measure-links', 'with --peers: plan without probing the links between the peers (bandwidth, latency)'))
    .action(async (opts: PlanFlags & AccessFlags) => {
      if (opts.peers != null && opts.peersSpec != null) throw new LumiereError('BAD_ARGUMENT', 'give --peers (running peers) or --peers-spec (hypothetical ones), not both')
      // No multiaddr: a spec such as 8x300T@1G (the list parser split its groups at the commas).
      if (opts.peers?.every((a) => !a.startsWith('/')) === true) opts = { ...opts, peersSpec: opts.peers.join(','), peers: undefined }
      const { model, shapeOnly } = await loadPlanModel(opts.model)
      const dims = parseDims(opts.dim ?? [])
      for (const input of graphInputs(model)) for (const d of input.dims) if (typeof d === 'string') dims[d] ??= 1
      // A shape-only graph cannot be probed (no weights to run): static shapes only.
      const dag = shapeOnly ? buildDag(model, { dims }) : await buildDagProbed(model, { dims })
      let peers: PeerCapacity[]
      let coordinatorLink: LinkSpeed | null = null
      let nominal = false
      let links: { text: string, matrix: LinkMatrix } | undefined
      if (opts.peers != null) {
        const coordinator = await Coordinator.start({ access: await loadAccess(opts) })
        try {
          const infos = await coordinator.connect(opts.peers)
          if (opts.measureLinks && infos.length > 1) {
            const matrix = await measureLinks(coordinator, infos)
            links = { text: formatLinks(infos, matrix), matrix }
          }
          peers = infos.map((p) => withLinks(peerCapacity(p), links?.matrix ?? {}))
        } finally {
          await coordinator.stop()
        }
      } else if (opts.peersSpec != null) {
        const spec = parsePeersSpec(opts.peersSpec)
        peers = spec.peers
        coordinatorLink = spec.coordinatorLink
      } else {
        if (opts.stages == null) throw new LumiereError('BAD_ARGUMENT', 'give --stages K (or --peers / --peers-spec to plan for every one of them)')
        nominal = true
        peers = Array.from({ length: opts.stages }, (_, i) => ({ id: `peer-${i + 1}`, memoryBytes: Number.MAX_SAFE_INTEGER, speed: NOMINAL_FLOPS }))
      }
      const stages = opts.stages ?? peers.length
      const result = partitionAll(dag, peers, { stages, balance: opts.balance, placement: opts.placement === 'contiguous' ? 'auto' : opts.placement })
      const chosen = opts.placement === 'contiguous' ? result.contiguous : result.chosen
      if (chosen === null) throw new LumiereError('PLAN_IMPOSSIBLE', 'no contiguous plan fits the peers\' memory; try --placement folded or auto')
      const M = opts.microBatches
      const sim = (plan: Plan | null): Simulation | undefined =>
        opts.simulate === true && plan !== null ? simulate(plan, peers, { microBatches: M, coordinatorLink: coordinatorLink ?? undefined }) : undefined
      // The reference a pipeline must beat: the whole model on the best single peer (null when none fits).
      const onePeer = opts.simulate === true && stages > 1 ? singlePeerPlan(dag, peers) : null
      const simulations = { contiguous: sim(result.contiguous), folded: sim(result.folded), ...(onePeer !== null ? { onePeer: sim(onePeer) } : {}) }
      const chosenLabel = chosen === result.contiguous ? 'contiguous' : chosen.placement === 'folded' ? 'folded' : 'folded (= contiguous)'
      // What generate weighs against the pipeline: copies of the whole model, priced by the cost model (replication.ts).
      const copies = stages > 1 ? replicatedPlan(dag, peers, M) : null
      const perStep = copies === null ? null : { copies: replicatedStepSeconds(copies.stages.map((s) => s.estSeconds), M), pipeline: pipelineStepSeconds(chosen, M) }
      if (opts.json === true) {
        console.log(JSON.stringify({
          placement: opts.placement,
          chosen: chosenLabel,
          microBatches: M,
          ...(links != null ? { links: links.matrix } : {}),
          contiguous: result.contiguous,
          folded: result.folded,
          ...(onePeer !== null ? { onePeer } : {}),
          ...(copies !== null ? { replicated: copies, stepSeconds: perStep } : {}),
          ...(opts.simulate === true ? { simulation: simulations } : {})
        }))
        return
      }
      if (links != null) console.log(`${links.text}\n`)
      console.log(formatComparison([
        { label: 'contiguous', plan: result.contiguous, simulation: simulations.contiguous },
        { label: result.folded?.placement === 'contiguous' ? 'folded (= contiguous)' : 'folded', plan: result.folded, simulation: simulations.folded },
        ...(onePeer !== null ? [{ label: 'one peer', plan: onePeer, simulation: simulations.onePeer }] : [])
      ], M))
      const pipelined = [simulations.contiguous, simulations.folded].flatMap(x => x === undefined ? [] : [x.secondsPerStep])
      if (simulations.onePeer !== undefined && pipelined.length > 0 && simulations.onePeer.secondsPerStep < Math.min(...pipelined)) {
        console.log(`note: one peer alone is faster (${formatTime(simulations.onePeer.secondsPerStep)} per step): on these links the activations take longer to send than to compute; --stages K plans for fewer peers`)
      }
      console.log(`chosen (--placement ${opts.placement}): ${chosenLabel}`)
      if (copies !== null && perStep !== null) {
        console.log(`copies of the whole model on ${copies.stages.length} peers: ${formatTime(perStep.copies)} per step of M = ${M} by the cost model, vs ${formatTime(perStep.pipeline)} for the ${chosenLabel} pipeline, with ${formatBytes(copies.totals.wireBytes * M)} on the wire (generate without --stages runs the fastest of copies, a pipeline and the fastest peer alone)`)
      }
      for (const [label, plan] of [['contiguous', result.contiguous], ['folded', result.folded]] as const) {
        if (plan === null) continue
        console.log(`\n== ${label} plan ==`)
        console.log(formatPlan(plan, dag))
      }
      if (nominal) console.log(`\n(times assume ${stages} equal peers of ${NOMINAL_FLOPS / 1e12} TFLOP/s with unlimited memory and unknown links; --peers plans for real ones, --peers-spec for hypothetical ones)`)
    })
}
