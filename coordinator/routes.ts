import { LumiereError } from '../src/errors.ts'
import type { Destination, StageRoute } from '../peer/jobs.ts'

/** One extracted stage placed on a peer. */
export interface PlacedStage {
  index: number
  hash: string
  peer: string
  addrs: string[]
  inputs: string[]
  outputs: string[]
  /** Memory estimate (parameters + peak activations), bytes, passed to the peer in job.setup. */
  estimatedBytes?: number
}

export interface Routes {
  /** What each peer is told in job.setup, by peer id. */
  byPeer: Map<string, StageRoute[]>
  /** Graph inputs the coordinator pushes to each stage, by stage index. */
  feeds: Map<number, string[]>
}

/**
 * Wires stages together: every stage output goes straight to each stage
 * that reads it (once per stage, however many of its nodes read it) and to
 * the coordinator when it is a graph output. Pure; no I/O.
 */
export function routeStages (stages: PlacedStage[], graphInputs: string[], graphOutputs: string[]): Routes {
  const producer = new Map<string, PlacedStage>()
  for (const s of stages) for (const name of s.outputs) producer.set(name, s)
  const feeds = new Map<number, string[]>()
  for (const s of stages) {
    const fromCoordinator = s.inputs.filter((name) => graphInputs.includes(name))
    for (const name of s.inputs) {
      if (!graphInputs.includes(name) && !producer.has(name)) {
        throw new LumiereError('INTERNAL', `stage ${s.index} reads '${name}', which no stage produces and is no graph input`)
      }
    }
    if (fromCoordinator.length > 0) feeds.set(s.index, fromCoordinator)
  }
  for (const name of graphOutputs) {
    if (!producer.has(name) && !graphInputs.includes(name)) throw new LumiereError('INTERNAL', `no stage produces graph output '${name}'`)
  }
  const byPeer = new Map<string, StageRoute[]>()
  for (const s of stages) {
    const outputs = s.outputs.map((name) => {
      const to: Destination[] = stages
        .filter((t) => t !== s && t.inputs.includes(name))
        .map((t) => ({ peer: t.peer, addrs: t.addrs, stage: t.index }))
      if (graphOutputs.includes(name)) to.push({ coordinator: true })
      return { name, to }
    }).filter((o) => o.to.length > 0)
    const list = byPeer.get(s.peer) ?? []
    list.push({ index: s.index, hash: s.hash, inputs: s.inputs, outputs, ...(s.estimatedBytes != null ? { estimatedBytes: s.estimatedBytes } : {}) })
    byPeer.set(s.peer, list)
  }
  return { byPeer, feeds }
}
