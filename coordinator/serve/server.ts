/**
 * `lumiere serve`: a long-running coordinator. One long-lived set of peers
 * (K started on loopback, given running ones, and/or the ones that find it by
 * mDNS or join it, admitted as they come) serves a queue of text-to-video
 * jobs submitted over HTTP, every job on the server's one coordinator; a
 * dashboard at `/` shows peers, the plan, progress and a per-stage timeline,
 * fed by Server-Sent Events.
 *
 * Routes (JSON unless said; errors are `{ error: { code, message } }`):
 *   GET    /                        the dashboard (web/)
 *   GET    /api/jobs                jobs, newest first
 *   POST   /api/jobs                submit { prompt, negative?, model?, steps?, guidance?, seed?, samples?, frames?, ssr?, sampler? } → 201 job
 *   GET    /api/jobs/:id            the job: state, progress, phase, step, steps, plan, timeline, result
 *   DELETE /api/jobs/:id            cancel (queued: removed; running: aborted, answered once stopped) → 200 job
 *   GET    /api/jobs/:id/result     the MP4 (?sample=b for sample b); 409 until done
 *   GET    /api/peers               peers: id, addrs, transport, source (local, peers, mdns, join), capabilities, stages held, health
 *   GET    /api/events              Server-Sent Events: snapshot, job, progress, plan, peers
 */
import { createServer } from 'node:http'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { LumiereError } from '../../src/errors.ts'
import { resolveModel } from '../../src/model/builtin.ts'
import { presetNames } from '../../src/model/presets.ts'
import { sampleOf } from '../../src/video/frames.ts'
import { writeVideo } from '../../src/video/write-video.ts'
import { generate } from '../generate.ts'
import { checkMeshSources, openMesh } from '../mesh-session.ts'
import { HttpError, loadStatic, readJson, sendError, sendFile, sendJson, sendStatic } from './http.ts'
import { JobQueue, QueueFullError } from './jobs.ts'
import { PeerMonitor } from './peers.ts'
import { stagesByPeer } from './plan-summary.ts'
import { describeZodError, jobRequestSchema, withDefaults } from './schema.ts'
import { EventHub } from './sse.ts'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { JobResult, JobRunner } from './jobs.ts'
import type { MonitoredPeer } from './peers.ts'
import type { JobDefaults } from './schema.ts'
import type { MeshOptions } from '../mesh-session.ts'
import type { Logger } from '../../src/log.ts'
import type { TransportName } from '../../src/mesh/node.ts'
import type { WireFormat } from '../../src/tensor/wire.ts'

const WEB_DIR = fileURLToPath(new URL('../../web/', import.meta.url))

/**
 * Where the server's peers come from (mesh-session.ts): `local` peers started
 * for its lifetime, or running `peers`, and/or the peers that find it
 * (`discover` N: jobs wait for N of them; `listen` takes join requests).
 */
export interface ServeOptions extends Pick<MeshOptions, 'local' | 'peers' | 'discover' | 'discoverTimeoutMs' | 'listen' | 'relay' | 'onListening' | 'access'> {
  /** 0 picks a free port. */
  port: number
  host?: string
  transport?: TransportName
  /** Default model for jobs that name none (a preset or a package folder). */
  model?: string
  /** Where results are written (default: a temporary folder removed on close). */
  dataDir?: string
  /** Defaults for jobs that leave them out. */
  steps?: number
  guidance?: number
  samples?: number
  pingIntervalMs?: number
  /** Deadline for each forward pass over the mesh. */
  timeoutMs?: number
  wire?: WireFormat
  maxQueued?: number
  maxFinished?: number
  log?: Logger
  /** Extra `lumiere peer` arguments for local peer i (tests, demos: --throttle). */
  localPeerArgs?: (i: number) => string[]
}

export interface LumiereServer {
  url: string
  port: number
  host: string
  dataDir: string
  peers: () => MonitoredPeer[]
  close: () => Promise<void>
}

export async function startServer (options: ServeOptions): Promise<LumiereServer> {
  checkMeshSources(options)
  const host = options.host ?? '127.0.0.1'
  const model = options.model ?? 'tiny'
  const defaults: JobDefaults = { model, steps: options.steps ?? 16, guidance: options.guidance ?? 3, samples: options.samples ?? 1 }
  const models = [...new Set([model, ...presetNames.filter((p) => p !== 'paper')])]
  const schema = jobRequestSchema(models)
  const log = options.log

  const ownData = options.dataDir == null
  const dataDir = ownData ? await mkdtemp(join(tmpdir(), 'lumiere-serve-')) : resolve(options.dataDir as string)
  if (!ownData) await mkdir(dataDir, { recursive: true })
  const cleanups: Array<() => Promise<void>> = []
  if (ownData) cleanups.push(async () => rm(dataDir, { recursive: true, force: true }))

  const hub = new EventHub()
  let handler: ((req: IncomingMessage, res: ServerResponse) => Promise<void>) | undefined
  let closeHttp = async (): Promise<void> => { hub.close() }
  const cleanup = async (): Promise<void> => {
    await closeHttp()
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => {})
  }
  try {
    // Listen first: a port in use fails at once, before any peer starts.
    const loopback = isLoopback(host)
    const server = createServer((req, res) => {
      // A server on loopback answers only to loopback names, so a web page elsewhere cannot reach it by DNS rebinding.
      if (loopback && !isLoopbackHostHeader(req.headers.host)) {
        sendError(res, new HttpError(403, 'FORBIDDEN', `host ${req.headers.host ?? '(none)'} is not this server; use ${host}`))
        return
      }
      if (handler == null) {
        sendError(res, new HttpError(503, 'STARTING', 'the server is still starting its peers; try again in a moment', { 'retry-after': '2' }))
        return
      }
      handler(req, res).catch((err: unknown) => {
        if (res.headersSent) { res.destroy(); return }
        if (err instanceof HttpError) { sendError(res, err); return }
        const e = err instanceof LumiereError ? err : new LumiereError('INTERNAL', err instanceof Error ? err.message : String(err))
        log?.error({ err: e.message, url: req.url }, 'request failed')
        sendError(res, new HttpError(500, e.code, e.message))
      })
    })
    server.keepAliveTimeout = 5_000
    await new Promise<void>((resolve, reject) => {
      const failed = (err: NodeJS.ErrnoException): void => {
        if (err.code === 'EADDRINUSE') reject(new LumiereError('BAD_ARGUMENT', `port ${options.port} on ${host} is in use; pick another with --port (0 picks a free one)`))
        else if (err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND') reject(new LumiereError('BAD_ARGUMENT', `cannot listen on ${host}: no such local address`))
        else if (err.code === 'EACCES') reject(new LumiereError('BAD_ARGUMENT', `not allowed to listen on port ${options.port}; use a port ≥ 1024`))
        else reject(err)
      }
      server.once('error', failed)
      server.listen(options.port, host, () => { server.off('error', failed); resolve() })
    })
    // Closing: event streams end, the HTTP server stops, then jobs, peers and files (cleanups in reverse).
    closeHttp = async () => {
      hub.close()
      await new Promise<void>((resolve) => {
        server.close(() => { resolve() })
        server.closeAllConnections()
      })
    }

    const staticFiles = await loadStatic(WEB_DIR).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err
      // An install without web/ (an image that copied only the code) still serves the API.
      log?.warn({ dir: WEB_DIR }, 'dashboard files are missing; serving the API only')
      return new Map<string, never>()
    })
    const mesh = await openMesh({
      local: options.local,
      peers: options.peers,
      transport: options.transport,
      localPeerArgs: options.localPeerArgs,
      access: options.access,
      listen: options.listen,
      relay: options.relay,
      onListening: options.onListening,
      // Discovery runs for the server's lifetime; jobs do the waiting.
      ...(options.discover != null ? { discover: options.discover } : {})
    })
    cleanups.push(async () => mesh.close())
    const coordinator = mesh.coordinator
    // Every job runs on the server's coordinator: with the peers it was given, and all it has admitted.
    const staticAddrs = mesh.peers.map((p) => p.addrs[0])
    let ready = false
    const monitor = await PeerMonitor.start(coordinator, mesh.peers, options.local != null ? 'local' : 'peers', {
      intervalMs: options.pingIntervalMs,
      onUpdate: () => { if (ready) hub.send('peers', peersView()) }
    })
    cleanups.push(async () => monitor.stop())

    const run: JobRunner = async (job, hooks) => {
      const p = job.params
      const pkg = await resolveModel(p.model, { frames: p.frames })
      const ssr = p.ssr ?? pkg.manifest.ssr != null
      hooks.onStart({ ssr })
      log?.info({ job: job.id, prompt: p.prompt, steps: p.steps, ssr }, 'job started')
      const result = await generate({
        prompt: p.prompt,
        negative: p.negative,
        model: p.model,
        frames: p.frames,
        steps: p.steps,
        guidance: p.guidance,
        seed: p.seed,
        samples: p.samples,
        sampler: p.sampler,
        ssr,
        coordinator,
        peers: staticAddrs,
        // With discovery, the peers admitted so far join the job; --discover N makes it wait for N.
        ...(coordinator.discovery != null ? { discover: options.discover ?? 0, discoverTimeoutMs: options.discoverTimeoutMs } : {}),
        timeoutMs: options.timeoutMs,
        wire: options.wire,
        signal: hooks.signal,
        onStep: hooks.onStep,
        onWarning: hooks.onWarning
      })
      hooks.onPhase('encoding')
      const files: string[] = []
      try {
        for (let b = 0; b < result.video.shape[0]; b++) {
          const file = join(dataDir, `${job.id}-${b}.mp4`)
          await writeVideo(file, sampleOf(result.video, b), { fps: result.fps, signal: hooks.signal })
          files.push(file)
        }
      } catch (err) {
        await discard({ files } as unknown as JobResult)
        throw err
      }
      const [, , frames, height, width] = result.video.shape
      return { files, fps: result.fps, frames, width, height, seconds: result.seconds, secondsPerStep: result.secondsPerStep, utilisation: result.utilisation, plan: result.plan }
    }
    const discard = async (result: JobResult): Promise<void> => {
      await Promise.all(result.files.map(async (f) => rm(f, { force: true })))
    }
    const queue = new JobQueue({
      run,
      discard,
      maxQueued: options.maxQueued,
      maxFinished: options.maxFinished,
      emit: (event, data) => {
        hub.send(event, data)
        if (event === 'job') {
          const j = data as { id: string, state: string, error?: { message: string } }
          if (j.state !== 'queued' && j.state !== 'running') log?.info({ job: j.id, state: j.state, error: j.error?.message }, `job ${j.state}`)
        }
      }
    })
    cleanups.push(async () => queue.close())

    function peersView (): unknown[] {
      const held = stagesByPeer(queue.currentPlan()?.plan)
      return monitor.peers.map((p) => ({
        id: p.id,
        addrs: p.addrs,
        transport: p.transport,
        source: p.source,
        executionProviders: p.capabilities.executionProviders,
        memoryBytes: p.capabilities.memoryBytes,
        freeMemoryBytes: p.capabilities.freeMemoryBytes,
        cpus: p.capabilities.cpus,
        speed: p.capabilities.speed,
        version: p.capabilities.version,
        stages: held.get(p.id) ?? [],
        health: p.health
      }))
    }

    const snapshot = (): unknown => ({ jobs: queue.list().slice(0, 50), current: queue.current(), plan: queue.currentPlan(), peers: peersView(), models, defaults })

    const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
      const url = new URL(req.url ?? '/', 'http://localhost')
      const path = url.pathname
      const method = req.method ?? 'GET'
      const allow = (methods: string[]): void => {
        if (!methods.includes(method)) throw new HttpError(405, 'METHOD_NOT_ALLOWED', `${method} is not allowed on ${path}; use ${methods.join(', ')}`, { allow: methods.join(', ') })
      }
      if (!path.startsWith('/api/')) {
        const file = staticFiles.get(path)
        if (file == null) throw new HttpError(404, 'NOT_FOUND', staticFiles.size === 0 ? `the dashboard files (web/) are not installed here; the API is under /api/` : `no such page: ${path}`)
        allow(['GET', 'HEAD'])
        sendStatic(res, file)
        return
      }
      if (path === '/api/jobs') {
        allow(['GET', 'HEAD', 'POST'])
        if (method !== 'POST') { sendJson(res, 200, { jobs: queue.list() }); return }
        const body = await readJson(req)
        const parsed = schema.safeParse(body)
        if (!parsed.success) throw new HttpError(400, 'BAD_REQUEST', describeZodError(parsed.error))
        let job
        try {
          job = queue.submit(withDefaults(parsed.data, defaults))
        } catch (err) {
          if (err instanceof QueueFullError) throw new HttpError(503, 'QUEUE_FULL', err.message, { 'retry-after': '10' })
          if (err instanceof LumiereError && err.code === 'ABORTED') throw new HttpError(503, 'SHUTTING_DOWN', err.message)
          throw err
        }
        log?.info({ job: job.id }, 'job queued')
        sendJson(res, 201, job, { location: `/api/jobs/${job.id}` })
        return
      }
      if (path === '/api/peers') {
        allow(['GET', 'HEAD'])
        sendJson(res, 200, { peers: peersView() })
        return
      }
      if (path === '/api/events') {
        allow(['GET'])
        hub.open(req, res, [{ event: 'snapshot', data: snapshot() }])
        return
      }
      const m = /^\/api\/jobs\/([^/]+)(\/result)?$/.exec(path)
      if (m != null) {
        let id: string
        try {
          id = decodeURIComponent(m[1])
        } catch {
          throw new HttpError(404, 'NOT_FOUND', `no job ${m[1]}`)
        }
        if (m[2] != null) {
          allow(['GET', 'HEAD'])
          const sample = url.searchParams.get('sample') ?? '0'
          if (!/^\d{1,3}$/.test(sample)) throw new HttpError(400, 'BAD_REQUEST', `sample must be a whole number ≥ 0, got '${sample}'`)
          const found = queue.resultFile(id, Number(sample))
          if (found == null) throw new HttpError(404, 'NOT_FOUND', `no job ${id}`)
          if (found.state !== 'done') throw new HttpError(409, 'NOT_READY', `job ${id} is ${found.state}; its video exists once it is done`)
          if (found.file == null) throw new HttpError(404, 'NOT_FOUND', `job ${id} has ${found.samples} sample(s); there is no sample ${sample}`)
          await sendFile(req, res, found.file, 'video/mp4', { 'cache-control': 'private, max-age=3600', 'content-disposition': `inline; filename="lumiere-${id}${sample === '0' ? '' : `-${sample}`}.mp4"` })
          return
        }
        allow(['GET', 'HEAD', 'DELETE'])
        if (method === 'DELETE') {
          const out = await queue.cancel(id)
          if (out == null) throw new HttpError(404, 'NOT_FOUND', `no job ${id}`)
          if (out === 'finished') throw new HttpError(409, 'ALREADY_FINISHED', `job ${id} has already finished; there is nothing to cancel`)
          sendJson(res, 200, out)
          return
        }
        const job = queue.get(id)
        if (job == null) throw new HttpError(404, 'NOT_FOUND', `no job ${id}`)
        sendJson(res, 200, job)
        return
      }
      throw new HttpError(404, 'NOT_FOUND', `no such route: ${path}`)
    }

    handler = handle
    ready = true
    const port = (server.address() as AddressInfo).port
    if (!loopback) log?.warn({ host }, 'listening beyond loopback: anyone who can reach this port can submit and cancel jobs (there is no authentication)')
    const shown = host.includes(':') ? `[${host}]` : host
    let closing: Promise<void> | undefined
    return {
      url: `http://${shown}:${port}`,
      port,
      host,
      dataDir,
      peers: () => monitor.peers,
      close: async () => { closing ??= cleanup(); await closing }
    }
  } catch (err) {
    await cleanup()
    throw err
  }
}

function isLoopback (host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host)
}

function isLoopbackHostHeader (header: string | undefined): boolean {
  if (header == null) return true
  const name = header.startsWith('[') ? header.slice(1, header.indexOf(']')) : header.replace(/:\d+$/, '')
  return isLoopback(name.toLowerCase())
}
