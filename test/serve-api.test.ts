// `lumiere serve` HTTP API end to end, in process, over 2 local peers: a job
// runs to done and its MP4 is served (with ranges); peers are listed with
// health; a queued and a running job are cancelled (the running one stops
// at once, and the queue goes on); bad requests get 4xx JSON errors; the
// event stream delivers job, plan and per-step progress events.
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as wait } from 'node:timers/promises'
import t from 'tap'
import type { Test } from 'tap'
import { startServer } from '../coordinator/serve/server.ts'

process.env.LUMIERE_CACHE ??= await mkdtemp(join(tmpdir(), 'lumiere-cache-'))

const dataDir = await mkdtemp(join(tmpdir(), 'lumiere-serve-test-'))
t.teardown(async () => rm(dataDir, { recursive: true, force: true }))
const server = await startServer({ port: 0, local: 2, pingIntervalMs: 500, dataDir })
t.teardown(async () => server.close())
const api = (path: string): string => `${server.url}${path}`
// 4 samples: 8 passes a step, so the planner leaves a peer idle only if it
// measures 8x slower than the other (with one sample, 2x: the speed figures
// peers take while the other processes start can differ that much).
const small = { prompt: 'a red ball bouncing on the beach', model: 'tiny', steps: 2, ssr: false, samples: 4 }

interface Job { id: string, state: string, progress: number, phase: string | null, step: number, steps: number, createdAt: string, startedAt?: string, finishedAt?: string, error?: { code: string, message: string }, plan?: { stages: Array<{ peer: string }>, route: number[] }, timeline?: { base: Array<{ busy: number[] }> }, result?: { urls: string[] } }

async function post (body: unknown, headers: Record<string, string> = { 'content-type': 'application/json' }): Promise<Response> {
  return fetch(api('/api/jobs'), { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) })
}

async function submit (body: unknown): Promise<Job> {
  const res = await post(body)
  if (res.status !== 201) throw new Error(`submit: HTTP ${res.status} ${await res.text()}`)
  return await res.json() as Job
}

async function getJob (id: string): Promise<Job> {
  return await (await fetch(api(`/api/jobs/${id}`))).json() as Job
}

async function until (id: string, ok: (j: Job) => boolean, timeoutMs = 60_000): Promise<Job> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const job = await getJob(id)
    if (ok(job)) return job
    if (Date.now() > deadline) throw new Error(`job ${id} still ${job.state} (step ${job.step}) after ${timeoutMs} ms`)
    await wait(50)
  }
}

/** Reads the event stream in the background; events are collected as { event, data }. */
function listen (): { events: Array<{ event: string, data: any }>, stop: () => void } {
  const events: Array<{ event: string, data: any }> = []
  const controller = new AbortController()
  void (async () => {
    const res = await fetch(api('/api/events'), { signal: controller.signal })
    const decoder = new TextDecoder()
    let buffer = ''
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true })
      let end
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end)
        buffer = buffer.slice(end + 2)
        const event = /^event: (.*)$/m.exec(block)?.[1]
        const data = /^data: (.*)$/m.exec(block)?.[1]
        if (event != null && data != null) events.push({ event, data: JSON.parse(data) })
      }
    }
  })().catch(() => {})
  return { events, stop: () => { controller.abort() } }
}

async function expectError (t: Test, res: Response, status: number, code: string, about?: RegExp): Promise<void> {
  t.equal(res.status, status, `HTTP ${status}`)
  t.match(res.headers.get('content-type') ?? '', /^application\/json/, 'a JSON error')
  const body = await res.json() as { error: { code: string, message: string } }
  t.equal(body.error?.code, code, `code ${code}`)
  t.type(body.error?.message, 'string')
  if (about != null) t.match(body.error.message, about, `message: ${body.error.message}`)
}

t.test('peers', async (t) => {
  const res = await fetch(api('/api/peers'))
  t.equal(res.status, 200)
  const { peers } = await res.json() as { peers: Array<Record<string, any>> }
  t.equal(peers.length, 2, '2 peers')
  for (const p of peers) {
    t.match(p, { id: String, addrs: Array, transport: 'tcp', executionProviders: ['cpu'], memoryBytes: Number, speed: Number, stages: Array, health: { ok: true, rttMs: Number, failures: 0 } }, `peer ${p.id}`)
    t.match(p.addrs[0], /\/p2p\//, 'its address names it')
  }
})

t.test('a job runs to done; its MP4 is served; events report it', async (t) => {
  const stream = listen()
  t.teardown(stream.stop)
  await wait(200)
  const started = Date.now()
  const res = await post(small)
  t.equal(res.status, 201, '201 Created')
  const created = await res.json() as Job
  t.match(created.id, /^[0-9a-f]{16}$/, 'an id')
  t.equal(res.headers.get('location'), `/api/jobs/${created.id}`, 'Location header')
  t.ok(['queued', 'running'].includes(created.state), `state ${created.state}`)

  const job = await until(created.id, (j) => j.state === 'done' || j.state === 'failed')
  t.equal(job.state, 'done', `done in ${Date.now() - started} ms ${job.error?.message ?? ''}`)
  t.equal(job.progress, 1, 'progress 1')
  t.equal(job.steps, 2)
  t.ok(job.createdAt <= (job.startedAt ?? '') && (job.startedAt ?? '') <= (job.finishedAt ?? ''), 'createdAt ≤ startedAt ≤ finishedAt')
  t.equal(job.plan?.stages.length, 2, 'the plan has 2 stages')
  t.same(new Set(job.plan?.stages.map((s) => s.peer)), new Set(server.peers().map((p) => p.id)), 'one on each peer')
  t.equal(job.timeline?.base.length, 2, 'a timeline segment per step')
  t.ok(job.timeline?.base.every((s) => s.busy.length === 2 && s.busy.every((b) => b >= 0 && b <= 1)), 'busy shares per stage in [0, 1]')

  const video = await fetch(api(`/api/jobs/${job.id}/result`))
  t.equal(video.status, 200)
  t.equal(video.headers.get('content-type'), 'video/mp4')
  const bytes = Buffer.from(await video.arrayBuffer())
  t.ok(bytes.length > 1000, `${bytes.length} bytes`)
  t.equal(bytes.subarray(4, 8).toString('latin1'), 'ftyp', 'an MP4 (ftyp box first)')
  t.equal(job.result?.urls[0], `/api/jobs/${job.id}/result`, 'the job links its result')
  t.ok((await readdir(dataDir)).includes(`${job.id}-0.mp4`), 'the video is kept in the data folder')
  const part = await fetch(api(`/api/jobs/${job.id}/result`), { headers: { range: 'bytes=4-7' } })
  t.equal(part.status, 206, 'a byte range is 206')
  t.equal(part.headers.get('content-range'), `bytes 4-7/${bytes.length}`)
  t.equal(Buffer.from(await part.arrayBuffer()).toString('latin1'), 'ftyp', 'the range\'s bytes')
  await expectError(t, await fetch(api(`/api/jobs/${job.id}/result?sample=${small.samples}`)), 404, 'NOT_FOUND', /sample/)
  await expectError(t, await fetch(api(`/api/jobs/${job.id}`), { method: 'DELETE' }), 409, 'ALREADY_FINISHED')

  const peers = await (await fetch(api('/api/peers'))).json() as { peers: Array<{ stages: number[] }> }
  t.same(peers.peers.map((p) => p.stages.length).sort(), [1, 1], 'each peer holds one stage of the current plan')

  await wait(700) // a ping round
  stream.stop()
  const mine = stream.events.filter((e) => e.data?.id === job.id || e.data?.jobId === job.id)
  t.equal(stream.events[0]?.event, 'snapshot', 'the stream opens with a snapshot')
  t.same(mine.filter((e) => e.event === 'job').map((e) => e.data.state), ['queued', 'running', 'done'], 'job events: queued, running, done')
  const progress = mine.filter((e) => e.event === 'progress' && e.data.segment != null)
  t.same(progress.map((e) => e.data.step), [1, 2], 'a progress event per step')
  t.ok(progress.every((e) => e.data.utilisation.length === 2 && e.data.progress > 0 && e.data.progress < 1), 'with per-stage utilisation and a fraction')
  t.ok(mine.some((e) => e.event === 'plan' && e.data.plan.stages.length === 2), 'a plan event')
  t.ok(stream.events.some((e) => e.event === 'peers' && e.data.length === 2 && e.data.every((p: any) => p.health.ok)), 'peer health events')
})

t.test('cancel a queued and a running job', async (t) => {
  const long = await submit({ ...small, steps: 500 })
  const running = await until(long.id, (j) => j.state === 'running' && j.step >= 1)
  t.equal(running.phase, 'base')
  await expectError(t, await fetch(api(`/api/jobs/${long.id}/result`)), 409, 'NOT_READY', /running/)

  const queued = await submit(small)
  t.equal(queued.state, 'queued', 'the next job waits its turn')
  const dq = await fetch(api(`/api/jobs/${queued.id}`), { method: 'DELETE' })
  t.equal(dq.status, 200)
  t.equal((await dq.json() as Job).state, 'cancelled', 'the queued job is cancelled')
  t.equal((await getJob(queued.id)).state, 'cancelled', 'and stays so')

  const before = Date.now()
  const dr = await fetch(api(`/api/jobs/${long.id}`), { method: 'DELETE' })
  const took = Date.now() - before
  t.equal(dr.status, 200)
  const cancelled = await dr.json() as Job
  t.equal(cancelled.state, 'cancelled', 'the running job is cancelled')
  t.ok(took < 5000, `and stopped within ${took} ms`)
  t.ok(cancelled.finishedAt != null, 'it has finished')
  t.ok(cancelled.step < 500, `after ${cancelled.step} of 500 steps`)
  await expectError(t, await fetch(api(`/api/jobs/${long.id}/result`)), 409, 'NOT_READY', /cancelled/)
  t.notOk((await readdir(dataDir)).some((f) => f.startsWith(long.id)), 'a cancelled job leaves no files')
  t.equal((await fetch(api(`/api/jobs/${long.id}`), { method: 'DELETE' })).status, 200, 'cancelling again is harmless')

  // The queue goes on with the next job, after the cancelled one.
  const next = await submit(small)
  const done = await until(next.id, (j) => j.state === 'done' || j.state === 'failed')
  t.equal(done.state, 'done', 'the next job runs to done')
  t.ok((done.startedAt ?? '') >= (cancelled.finishedAt ?? ''), 'after the cancelled one stopped')
})

t.test('bad requests get 4xx JSON errors', async (t) => {
  await expectError(t, await post({ steps: 2 }), 400, 'BAD_REQUEST', /prompt/)
  await expectError(t, await post({ prompt: '   ' }), 400, 'BAD_REQUEST', /prompt/)
  await expectError(t, await post({ prompt: 42 }), 400, 'BAD_REQUEST', /prompt/)
  await expectError(t, await post({ prompt: 'x', steps: '2' }), 400, 'BAD_REQUEST', /steps/)
  await expectError(t, await post({ prompt: 'x', steps: 0 }), 400, 'BAD_REQUEST', /steps/)
  await expectError(t, await post({ prompt: 'x', steps: 2.5 }), 400, 'BAD_REQUEST', /steps/)
  await expectError(t, await post({ prompt: 'x', ssr: 'no' }), 400, 'BAD_REQUEST', /ssr/)
  await expectError(t, await post({ prompt: 'x', guidance: -1 }), 400, 'BAD_REQUEST', /guidance/)
  await expectError(t, await post({ prompt: 'x', model: '/etc' }), 400, 'BAD_REQUEST', /model.*tiny/)
  await expectError(t, await post({ prompt: 'x', stepz: 2 }), 400, 'BAD_REQUEST', /unknown field stepz/)
  await expectError(t, await post([1, 2]), 400, 'BAD_REQUEST')
  await expectError(t, await post('{"prompt": "x",'), 400, 'BAD_JSON')
  await expectError(t, await post(''), 400, 'BAD_JSON')
  await expectError(t, await post(JSON.stringify(small), { 'content-type': 'text/plain' }), 415, 'UNSUPPORTED_MEDIA_TYPE')
  await expectError(t, await post({ prompt: 'x'.repeat(70_000) }), 413, 'TOO_LARGE')
  await expectError(t, await fetch(api('/api/jobs/0123456789abcdef')), 404, 'NOT_FOUND')
  await expectError(t, await fetch(api('/api/jobs/0123456789abcdef/result')), 404, 'NOT_FOUND')
  await expectError(t, await fetch(api('/api/jobs/0123456789abcdef'), { method: 'DELETE' }), 404, 'NOT_FOUND')
  await expectError(t, await fetch(api('/api/nothing')), 404, 'NOT_FOUND')
  await expectError(t, await fetch(api('/nothing.html')), 404, 'NOT_FOUND')
  const put = await fetch(api('/api/jobs'), { method: 'PUT' })
  t.equal(put.headers.get('allow'), 'GET, HEAD, POST', 'Allow lists the methods')
  await expectError(t, put, 405, 'METHOD_NOT_ALLOWED')
  await expectError(t, await fetch(api('/api/peers'), { method: 'DELETE' }), 405, 'METHOD_NOT_ALLOWED')
  // fetch may not set Host; a page on another name reaching a loopback server (DNS rebinding) is refused.
  const rebound = await new Promise<{ status: number, body: string }>((resolve, reject) => {
    request(api('/api/peers'), { headers: { host: 'evil.example' } }, (res) => {
      let body = ''
      res.on('data', (d: Buffer) => { body += d.toString() })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body }) })
    }).on('error', reject).end()
  })
  t.equal(rebound.status, 403, 'another Host is refused')
  t.equal(JSON.parse(rebound.body).error.code, 'FORBIDDEN')
  const list = await (await fetch(api('/api/jobs'))).json() as { jobs: Job[] }
  t.equal(list.jobs.length, 4, 'no bad request made a job')
})

t.test('the dashboard is served', async (t) => {
  const page = await fetch(api('/'))
  t.equal(page.status, 200)
  t.match(page.headers.get('content-type'), /^text\/html/)
  t.match(page.headers.get('content-security-policy'), /default-src 'self'/, 'no outside sources allowed')
  const html = await page.text()
  t.notMatch(html, /https?:\/\//, 'no outside URLs in the page')
  for (const asset of ['/app.js', '/style.css', '/plan.js', '/timeline.js']) {
    const res = await fetch(api(asset))
    t.equal(res.status, 200, asset)
  }
})
