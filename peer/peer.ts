import { writeFile, rename } from 'node:fs/promises'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { LumiereError } from '../src/errors.ts'
import { createMeshNode } from '../src/mesh/node.ts'
import { MAX_MESSAGE_LENGTH } from '../protocol/messages.ts'
import { handleRpc, rpcCall } from '../protocol/rpc.ts'
import { detectProviders, measureCapabilities } from './capabilities.ts'
import { Executor } from './executor.ts'
import { JobTable } from './jobs.ts'
import { StageCache } from './stage-cache.ts'
import type { Capabilities } from './capabilities.ts'
import type { Destination } from './jobs.ts'
import type { MeshNode } from '../src/mesh/node.ts'
import type { Tensor } from '../src/tensor/tensor.ts'
import type { Logger } from '../src/log.ts'

export interface PeerOptions {
  listen: string[]
  cacheDir: string
  addrFile?: string
  providers?: string[]
  threads?: number
  throttle?: number
  log: Logger
}

export interface RunningPeer {
  node: MeshNode
  capabilities: Capabilities
  stop: () => Promise<void>
}

/** Deadline for handing one stage's outputs to the next peer. */
const DELIVER_TIMEOUT_MS = 120_000

/**
 * The peer daemon: a libp2p node that caches stage graphs by hash, runs them
 * in an ORT worker thread and forwards outputs to the next stage's peer.
 */
export async function startPeer (options: PeerOptions): Promise<RunningPeer> {
  const cache = new StageCache(options.cacheDir)
  const providers = await detectProviders(options.providers)
  const executor = new Executor({ providers, threads: options.threads, throttle: options.throttle })
  const node = await createMeshNode({ listen: options.listen })
  const capabilities = await measureCapabilities(executor, providers, node.peerId.toString())
  const loaded = new Set<string>()

  const jobs = new JobTable(executor, {
    loadStage: async (hash) => {
      if (loaded.has(hash)) return
      const bytes = await cache.get(hash)
      if (bytes == null) throw new LumiereError('STAGE_UNKNOWN', `stage ${hash} is not cached on this peer; send it with stage.put first`)
      await executor.load(hash, bytes)
      loaded.add(hash)
    },
    deliver: async (job, dest: Destination, runId, tensors: Record<string, Tensor>) => {
      const target = 'coordinator' in dest ? peerIdFromString(job.coordinator) : dest.addrs.map((a) => multiaddr(a))
      const stage = 'coordinator' in dest ? -1 : dest.stage
      await rpcCall(node, target, 'run.push', { jobId: job.id, runId, stage }, { tensors, timeoutMs: DELIVER_TIMEOUT_MS })
    },
    report: async (job, runId, stage, err) => {
      await rpcCall(node, peerIdFromString(job.coordinator), 'run.failed', { jobId: job.id, runId, stage, code: err.code, message: err.message.slice(0, MAX_MESSAGE_LENGTH) }, { timeoutMs: 10_000 })
    }
  }, options.log)

  await handleRpc(node, {
    ping: async () => ({ body: { time: Date.now() } }),
    capabilities: async () => ({ body: { ...capabilities, cachedStages: await cache.count() } }),
    'stage.has': async ({ body }) => ({ body: { present: await cache.has(body.hash) } }),
    'stage.put': async ({ body, tensors }) => {
      await cache.put(body.hash, tensors.model.data)
      return { body: { ok: true } }
    },
    'job.setup': async ({ body }) => {
      await jobs.setup(body.jobId, body.coordinator, body.stages, body.wire)
      return { body: { ok: true } }
    },
    'run.push': async ({ body, tensors }) => {
      jobs.push(body.jobId, body.runId, body.stage, tensors)
      return { body: { ok: true } }
    },
    'job.stats': async ({ body }) => ({ body: { stages: jobs.stats(body.jobId) } }),
    'job.close': async ({ body }) => {
      await jobs.close(body.jobId)
      return { body: { ok: true } }
    }
  })

  if (options.addrFile != null) {
    // Written whole, then renamed: a watcher never reads half a file.
    const tmp = `${options.addrFile}.tmp`
    await writeFile(tmp, node.getMultiaddrs().map(String).join('\n') + '\n')
    await rename(tmp, options.addrFile)
  }

  return {
    node,
    capabilities,
    stop: async () => {
      await node.stop()
      await executor.close()
    }
  }
}
