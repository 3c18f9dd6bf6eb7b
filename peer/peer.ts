import { writeFile, rename } from 'node:fs/promises'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { LumiereError } from '../src/errors.ts'
import { createMeshNode } from '../src/mesh/node.ts'
import { MAX_MESSAGE_LENGTH } from '../protocol/messages.ts'
import { DEFAULT_MAX_INBOUND_STREAMS, DEFAULT_MAX_TENSOR_BYTES, handleRpc, rpcCall } from '../protocol/rpc.ts'
import { checkTrust } from '../src/mesh/access.ts'
import { startJoining } from '../src/mesh/join.ts'
import { announceOnLan } from '../src/mesh/mdns.ts'
import { RELAY_LISTEN, dialRelayedWebrtc, isRelayedWebrtc } from '../src/mesh/relay.ts'
import type { Multiaddr } from '@multiformats/multiaddr'
import { MemoryBudget, inspectStage } from './limits.ts'
import type { StageCost } from './limits.ts'
import type { MeshAccess } from '../src/mesh/access.ts'
import type { PrivateKey } from '@libp2p/interface'
import { SpeedFigure, describePeer, detectProviders } from './capabilities.ts'
import { Executor } from './executor.ts'
import { EgressThrottle } from './egress-throttle.ts'
import { handleLinkSink, linkProbeHandler } from './link-probe.ts'
import { JobTable, sessionKey } from './jobs.ts'
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
  /** Test and demo option: perturb a stage run's outputs with this probability (a lying peer; jobs.ts). */
  faulty?: number
  log: Logger
  /** Pre-shared key and peer-id allowlist of the node (access.ts). */
  access?: MeshAccess
  /** Answer mDNS queries on the LAN, so coordinators with --discover find this peer (--mdns). */
  mdns?: boolean
  /**
   * Join the coordinator at this address and keep joining it (--join;
   * src/mesh/join.ts). The peer also listens through relays (RELAY_LISTEN),
   * for when the coordinator cannot dial it back.
   */
  join?: Multiaddr
  /** Stable identity (--identity); default a fresh one per start. */
  privateKey?: PrivateKey
  /** Coordinators whose jobs this peer takes (--trust); undefined = any. */
  trust?: ReadonlySet<string>
  /** Memory budget, bytes (--memory): reported as free memory and enforced on job.setup. */
  memoryBytes?: number
  /** Testing only (--egress-throttle): bytes/s this peer's tensor messages leave at (egress-throttle.ts). */
  egressThrottle?: number
}

export interface RunningPeer {
  node: MeshNode
  /** As at start; a capabilities request answers the figures of its moment. */
  capabilities: Capabilities
  stop: () => Promise<void>
}

/** Deadline for handing one stage's outputs to the next peer. */
const DELIVER_TIMEOUT_MS = 120_000
/** How often leases of jobs (heartbeats, peer/jobs.ts) are checked for expiry. */
const LEASE_SWEEP_MS = 1_000

/**
 * Blended (stylized) sessions kept loaded while no open job uses them, most
 * recent first: a second job with the same (stage, style, α) reuses its
 * session, while sweeping α does not pile up copies of the model.
 */
const IDLE_STYLED_SESSIONS = 2

/**
 * The peer daemon: a libp2p node that caches stage graphs by hash, runs them
 * in an ORT worker thread and forwards outputs to the next stage's peer.
 */
export async function startPeer (options: PeerOptions): Promise<RunningPeer> {
  const cache = new StageCache(options.cacheDir)
  const providers = await detectProviders(options.providers)
  const egress = options.egressThrottle != null ? new EgressThrottle(options.egressThrottle) : undefined
  const executor = new Executor({ providers, threads: options.threads, throttle: options.throttle })
  const listen = options.join != null ? [...new Set([...options.listen, ...RELAY_LISTEN])] : options.listen
  const node = await createMeshNode({ listen, ...(options.privateKey != null ? { privateKey: options.privateKey } : {}), ...(options.access != null ? { access: options.access } : {}) })
  const speed = await SpeedFigure.start(executor)
  const peerId = node.peerId.toString()
  const capabilities = describePeer(peerId, providers, speed.value, await cache.count())
  const loaded = new Set<string>()
  /** Loads under way, by executor key: concurrent setups share one. */
  const loading = new Map<string, Promise<void>>()
  /** Styled session keys, least recently set up first. */
  const styled: string[] = []
  /** Releases under way, by executor key: a reload of that key waits for them. */
  const releasing = new Map<string, Promise<void>>()
  /** job.setup calls in progress: eviction waits for a moment with none. */
  let settingUp = 0
  const budget = options.memoryBytes != null ? new MemoryBudget(options.memoryBytes) : undefined
  /** Parameter bytes of stage graphs, by hash (counted when they arrive, or when first set up after a restart). */
  const paramBytes = new Map<string, number>()
  const stageParams = async (hash: string): Promise<number> => {
    let n = paramBytes.get(hash)
    if (n == null) {
      const bytes = await cache.get(hash)
      if (bytes == null) throw new LumiereError('STAGE_UNKNOWN', `stage ${hash} is not cached on this peer; send it with stage.put first`)
      n = inspectStage(bytes, `stage ${hash}`).paramBytes
      paramBytes.set(hash, n)
    }
    return n
  }

  const load = async (hash: string, style?: { hash: string, alpha: number }): Promise<void> => {
    const key = sessionKey(hash, style)
    if (loaded.has(key)) return
    await releasing.get(key)
    const bytes = await cache.get(hash)
    if (bytes == null) throw new LumiereError('STAGE_UNKNOWN', `stage ${hash} is not cached on this peer; send it with stage.put first`)
    if (style == null) {
      await executor.load(key, bytes)
    } else {
      const tensors = await cache.getStyle(style.hash)
      if (tensors == null) throw new LumiereError('STAGE_UNKNOWN', `style ${style.hash} is not cached on this peer; send it with stage.put (kind 'style') first`)
      await executor.load(key, bytes, { style: { tensors, alpha: style.alpha } })
    }
    loaded.add(key)
  }

  /**
   * Releases the styled sessions beyond IDLE_STYLED_SESSIONS that no open job
   * uses. Decided synchronously, so no setup interleaves with the choice.
   */
  const evictStyled = async (): Promise<void> => {
    if (settingUp > 0) return
    const inUse = jobs.keysInUse()
    const victims: string[] = []
    let idle = 0
    for (let i = styled.length - 1; i >= 0; i--) {
      const key = styled[i]
      if (inUse.has(key) || loading.has(key) || ++idle <= IDLE_STYLED_SESSIONS) continue
      styled.splice(i, 1)
      loaded.delete(key)
      victims.push(key)
    }
    await Promise.all(victims.map(async (key) => {
      const done = executor.release(key).catch(() => {}).finally(() => { releasing.delete(key) })
      releasing.set(key, done)
      await done
    }))
  }

  /**
   * With --memory: releases sessions no open job uses (oldest first) while
   * they would hold the peer over its budget, so finished jobs do not pile up
   * loaded models. Like evictStyled, only at a moment with no setup under way.
   */
  const evictOverBudget = async (): Promise<void> => {
    if (budget == null || settingUp > 0) return
    const inUse = jobs.keysInUse()
    const idle = [...loaded].filter((key) => !inUse.has(key) && !loading.has(key))
    let total = budget.committed(inUse) + idle.reduce((sum, key) => sum + budget.cost(key), 0)
    const victims: string[] = []
    for (const key of idle) {
      if (total <= budget.budget) break
      total -= budget.cost(key)
      loaded.delete(key)
      if (styled.includes(key)) styled.splice(styled.indexOf(key), 1)
      victims.push(key)
    }
    await Promise.all(victims.map(async (key) => {
      const done = executor.release(key).catch(() => {}).finally(() => { releasing.delete(key) })
      releasing.set(key, done)
      await done
    }))
  }

  const jobs = new JobTable(executor, {
    loadStage: async (hash, style) => {
      const key = sessionKey(hash, style)
      if (style != null) {
        const at = styled.indexOf(key)
        if (at >= 0) styled.splice(at, 1)
        styled.push(key)
      }
      let pending = loading.get(key)
      if (pending == null) {
        pending = load(hash, style).finally(() => { loading.delete(key) })
        loading.set(key, pending)
      }
      try {
        await pending
      } catch (err) {
        if (!loaded.has(key) && styled.includes(key)) styled.splice(styled.indexOf(key), 1)
        throw err
      }
    },
    deliver: async (job, dest: Destination, runId, tensors: Record<string, Tensor>) => {
      if (!('coordinator' in dest) && dest.peer === node.peerId.toString()) {
        // A folded plan's second stage on this same peer: hand over in memory. Copies, because
        // the receiving stage moves its inputs into the ORT worker and these may also be in flight elsewhere.
        jobs.push(job.id, runId, dest.stage, Object.fromEntries(Object.entries(tensors).map(([n, t]) => [n, { ...t, data: t.data.slice() }])))
        return
      }
      const target = 'coordinator' in dest ? peerIdFromString(job.coordinator) : dest.addrs.map((a) => multiaddr(a))
      const stage = 'coordinator' in dest ? -1 : dest.stage
      // A peer behind NAT: open its WebRTC connection first (relay.ts says why with a retry); the push then uses it.
      if (Array.isArray(target) && target.some((a) => isRelayedWebrtc(a.toString()))) await dialRelayedWebrtc(node, target)
      await egress?.hold(Object.values(tensors).reduce((n, t) => n + t.data.byteLength, 0))
      await rpcCall(node, target, 'run.push', { jobId: job.id, runId, stage }, { tensors, timeoutMs: DELIVER_TIMEOUT_MS })
    },
    report: async (job, runId, stage, err) => {
      await rpcCall(node, peerIdFromString(job.coordinator), 'run.failed', { jobId: job.id, runId, stage, code: err.code, message: err.message.slice(0, MAX_MESSAGE_LENGTH) }, { timeoutMs: 10_000 })
    }
  }, options.log, { faulty: options.faulty })
  // Jobs whose coordinator stopped heartbeating are closed as job.close would close them.
  const leases = setInterval(() => { if (jobs.expire().length > 0) void evictStyled().then(evictOverBudget) }, LEASE_SWEEP_MS)
  leases.unref()

  await handleRpc(node, {
    ping: async ({ body, from }) => {
      if (body.lease != null) jobs.renew(from.toString(), body.lease.jobs, body.lease.ttlMs)
      return { body: { time: Date.now() } }
    },
    capabilities: async () => ({
      body: {
        ...describePeer(peerId, providers, await speed.get(), await cache.count()),
        ...(budget != null ? { memoryBytes: budget.total(), freeMemoryBytes: budget.free(jobs.keysInUse()) } : {})
      }
    }),
    'stage.has': async ({ body }) => ({ body: { present: body.kind === 'style' ? await cache.hasStyle(body.hash) : await cache.has(body.hash) } }),
    'stage.put': async ({ body, tensors }) => {
      if (body.kind === 'style') await cache.putStyle(body.hash, tensors.model.data)
      else {
        // Not ONNX, or weights outside the graph: refused before it is stored.
        const { paramBytes: n } = inspectStage(tensors.model.data, `stage ${body.hash.slice(0, 80)}`)
        await cache.put(body.hash, tensors.model.data)
        paramBytes.set(body.hash, n)
      }
      return { body: { ok: true } }
    },
    'job.setup': async ({ body }) => {
      let release = (): void => {}
      if (budget != null) {
        const costs: StageCost[] = []
        for (const s of body.stages) costs.push({ index: s.index, key: sessionKey(s.hash, s.style), paramBytes: await stageParams(s.hash), estimatedBytes: s.estimatedBytes })
        release = budget.reserve(costs, jobs.keysInUse())
      }
      settingUp++
      try {
        await jobs.setup(body.jobId, body.coordinator, body.stages, body.wire, body.peers)
      } finally {
        settingUp--
        release()
      }
      return { body: { ok: true } }
    },
    'run.push': async ({ body, tensors }) => {
      jobs.push(body.jobId, body.runId, body.stage, tensors)
      return { body: { ok: true } }
    },
    'job.stats': async ({ body }) => ({ body: { stages: jobs.stats(body.jobId) } }),
    'job.close': async ({ body }) => {
      await jobs.close(body.jobId)
      await evictStyled()
      await evictOverBudget()
      return { body: { ok: true } }
    },
    'link.probe': linkProbeHandler(node, { egress })
  }, {
    // Bounded per connection (excess streams are reset) and in upload size; explicit, so a peer never relies on a default changing.
    maxInboundStreams: DEFAULT_MAX_INBOUND_STREAMS,
    maxTensorBytes: Math.min(DEFAULT_MAX_TENSOR_BYTES, options.memoryBytes ?? Infinity),
    authorize: ({ type, body, from }) => {
      if (options.trust == null) return
      const jobId = (body as { jobId?: unknown }).jobId
      checkTrust({ trusted: options.trust }, type, from.toString(), typeof jobId === 'string' ? jobs.membership(jobId) : undefined, body)
    }
  })

  await handleLinkSink(node)

  if (options.addrFile != null) {
    // Written whole, then renamed: a watcher never reads half a file.
    const tmp = `${options.addrFile}.tmp`
    await writeFile(tmp, node.getMultiaddrs().map(String).join('\n') + '\n')
    await rename(tmp, options.addrFile)
  }

  // Announced and joined last: whoever finds this peer can use it at once.
  const lan = options.mdns === true ? await announceOnLan(node) : undefined
  const joining = options.join != null ? startJoining(node, options.join, { log: options.log, trust: options.trust }) : undefined

  return {
    node,
    capabilities,
    stop: async () => {
      await joining?.stop()
      await lan?.stop()
      clearInterval(leases)
      await node.stop()
      await executor.close()
    }
  }
}
