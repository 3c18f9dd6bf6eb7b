// The lumiere serve dashboard. All live data comes from one Server-Sent
// Events stream (/api/events): a snapshot on connect, then job, progress,
// plan and peers events. Details of a job (its timeline) are fetched once
// from /api/jobs/:id when it is first shown.
import { $, fill, h } from './dom.js'
import { renderPlan, planSummary } from './plan.js'
import { renderTimeline } from './timeline.js'
import { PHASES, bytes, clock, peerColor, percent, seconds, shortId, speed, stageWord } from './format.js'

const state = {
  peers: [],
  jobs: new Map(), // id → job (list view, plus timeline once known)
  order: [], // ids, newest first
  plan: null, // { jobId, plan }
  models: [],
  defaults: null,
  selected: null, // job id pinned by the user; null follows the running/newest job
  timelineRange: 'all', // 'all' | 'base'
  connected: false
}

// ------------------------------------------------------------ live data

function connect () {
  const events = new EventSource('/api/events')
  events.addEventListener('open', () => { setConnected(true) })
  events.addEventListener('error', () => { setConnected(false) })
  events.addEventListener('snapshot', (e) => {
    const snap = JSON.parse(e.data)
    state.peers = snap.peers
    state.plan = snap.plan ?? null
    state.models = snap.models
    state.jobs.clear()
    state.order = []
    for (const job of [...snap.jobs].reverse()) upsert(job)
    if (snap.current != null) upsert(snap.current)
    if (state.defaults == null) applyDefaults(snap.defaults, snap.models)
    setConnected(true)
    renderAll()
  })
  events.addEventListener('job', (e) => {
    const job = JSON.parse(e.data)
    upsert(job)
    if (job.plan != null && (state.plan == null || job.state === 'running')) state.plan = { jobId: job.id, plan: job.plan }
    schedule('job', 'jobs', 'peers')
  })
  events.addEventListener('progress', (e) => {
    const p = JSON.parse(e.data)
    const job = state.jobs.get(p.id)
    if (job == null) return
    Object.assign(job, { state: p.state, phase: p.phase, step: p.step, steps: p.steps, progress: Math.max(job.progress ?? 0, p.progress) })
    if (p.segment != null && job.timeline != null) {
      const list = p.stepPhase === 'ssr' ? job.timeline.ssr : job.timeline.base
      if (list.at(-1)?.step !== p.segment.step) list.push(p.segment)
      if (p.stepPhase === 'base') {
        job.timeline.utilisation = p.utilisation
        if (job.timeline.deployMs == null) job.timeline.deployMs = p.segment.t0
      }
    }
    schedule('job', 'timeline')
  })
  events.addEventListener('plan', (e) => {
    const { jobId, plan } = JSON.parse(e.data)
    const job = state.jobs.get(jobId)
    if (job != null) job.plan = plan
    state.plan = { jobId, plan }
    schedule('plan', 'peers', 'timeline')
  })
  events.addEventListener('peers', (e) => {
    state.peers = JSON.parse(e.data)
    schedule('peers', 'header')
  })
}

function upsert (job) {
  const old = state.jobs.get(job.id)
  const merged = { ...old, ...job }
  if (job.timeline == null && old?.timeline != null) merged.timeline = old.timeline
  if (old != null && job.state === 'running' && (old.progress ?? 0) > (job.progress ?? 0)) merged.progress = old.progress
  state.jobs.set(job.id, merged)
  if (old == null) state.order.unshift(job.id)
}

function setConnected (ok) {
  state.connected = ok
  const el = $('#conn')
  el.className = `pill ${ok ? 'pill-ok' : 'pill-wait'}`
  el.dataset.state = ok ? 'live' : 'reconnecting'
  $('#conn-text').textContent = ok ? 'Live' : 'Reconnecting'
}

// ------------------------------------------------------------ rendering

const pending = new Set()
let frame = 0
function schedule (...parts) {
  for (const p of parts) pending.add(p)
  if (frame === 0) frame = requestAnimationFrame(flush)
}
function flush () {
  frame = 0
  const parts = [...pending]
  pending.clear()
  for (const p of parts) RENDER[p]()
}
function renderAll () {
  schedule(...Object.keys(RENDER))
}

const RENDER = { header: renderHeader, job: renderJob, peers: renderPeers, plan: renderPlanCard, timeline: renderTimelineCard, jobs: renderJobs }

/** The job the job card shows: the pinned one, else the running one, else the newest. */
function shownJob () {
  if (state.selected != null && state.jobs.has(state.selected)) return state.jobs.get(state.selected)
  const running = state.order.map((id) => state.jobs.get(id)).find((j) => j.state === 'running')
  return running ?? state.jobs.get(state.order[0])
}

function renderHeader () {
  const healthy = state.peers.filter((p) => p.health.ok).length
  $('#peer-count').textContent = `${state.peers.length} peer${state.peers.length === 1 ? '' : 's'} · ${healthy} healthy`
  const queued = state.order.filter((id) => state.jobs.get(id).state === 'queued').length
  const running = state.order.some((id) => state.jobs.get(id).state === 'running')
  $('#queue-count').textContent = running ? `1 running · ${queued} queued` : queued > 0 ? `${queued} queued` : 'queue empty'
}

let shownVideo = null
function renderJob () {
  renderHeader()
  const job = shownJob()
  const badge = $('#job-state')
  const cancel = $('#cancel')
  const bar = $('#progress')
  if (job == null) return
  if (job.timeline == null) void loadDetail(job.id)
  $('#job-title').textContent = state.selected != null ? 'Selected job' : job.state === 'running' ? 'Running job' : 'Latest job'
  const prompt = $('#job-prompt')
  prompt.textContent = job.params.prompt
  prompt.classList.remove('muted')
  $('#job-id').textContent = `job ${job.id} · ${job.params.model} · ${job.params.steps} steps · guidance ${job.params.guidance} · seed ${job.params.seed}${job.params.samples > 1 ? ` · ${job.params.samples} samples` : ''}`
  badge.hidden = false
  badge.className = `badge ${job.state}`
  badge.textContent = job.state
  cancel.hidden = !(job.state === 'queued' || job.state === 'running')
  cancel.dataset.job = job.id
  const pct = Math.round((job.progress ?? 0) * 100)
  $('#progress-fill').style.width = `${pct}%`
  bar.setAttribute('aria-valuenow', String(pct))
  bar.dataset.state = job.state
  $('#progress-value').textContent = `${pct}%`
  $('#job-phase').textContent = phaseText(job)
  const elapsed = job.startedAt == null ? null : (job.finishedAt != null ? Date.parse(job.finishedAt) : Date.now()) - Date.parse(job.startedAt)
  fill($('#job-stats'),
    stat('Elapsed', elapsed == null ? '–' : seconds(elapsed)),
    stat('Step', job.state === 'queued' ? '–' : `${job.step} / ${job.steps}`),
    stat('s / step', job.result != null ? job.result.secondsPerStep.toFixed(2) : '–'),
    stat('Output', job.result != null ? `${job.result.width}×${job.result.height} · ${job.result.frames} f` : '–'))
  const util = job.timeline?.utilisation ?? job.result?.utilisation ?? []
  const stages = job.plan?.stages ?? []
  fill($('#stage-util'), util.map((u, i) => {
    const peer = stages[i]?.peer
    const color = peerColor(Math.max(0, state.peers.findIndex((p) => p.id === peer)))
    return h('div', { class: 'util-row' },
      h('span', {}, `${stageWord(job.plan)} ${i + 1} `, h('span', { class: 'muted mono' }, shortId(peer ?? ''))),
      h('div', { class: 'util-bar' }, h('i', { style: { width: percent(u), background: color } })),
      h('span', { class: 'num' }, percent(u)))
  }))
  const err = $('#job-error')
  err.hidden = job.error == null
  err.textContent = job.error == null ? '' : `${job.error.code}: ${job.error.message}`
  // Video: the shown job's result once it is done.
  const video = $('#result-video')
  const url = job.state === 'done' ? job.result?.urls?.[0] : null
  if (url != null && shownVideo !== url) {
    shownVideo = url
    video.src = url
    video.hidden = false
    $('#video-empty').hidden = true
    video.play().catch(() => {})
  } else if (url == null && shownVideo != null) {
    shownVideo = null
    video.removeAttribute('src')
    video.load()
    video.hidden = true
    $('#video-empty').hidden = false
  }
  const r = job.state === 'done' ? job.result : null
  $('#video-meta').textContent = r == null ? '' : `${r.frames} frames · ${r.width}×${r.height} · ${r.fps} fps · ${r.seconds.toFixed(1)} s total`
}

function phaseText (job) {
  switch (job.state) {
    case 'queued': return 'Waiting in the queue'
    case 'done': return `Done in ${seconds(Date.parse(job.finishedAt) - Date.parse(job.startedAt))}`
    case 'failed': return 'Failed'
    case 'cancelled': return 'Cancelled'
    default: {
      const name = PHASES[job.phase] ?? 'Running'
      return job.phase === 'base' || job.phase === 'ssr' ? `${name} · step ${job.step} of ${job.steps}` : name
    }
  }
}

function stat (label, value) {
  return h('div', {}, h('dt', {}, label), h('dd', {}, value))
}

function renderPeers () {
  renderHeader()
  const body = $('#peers-table tbody')
  const held = new Map()
  for (const st of state.plan?.plan.stages ?? []) held.set(st.peer, [...(held.get(st.peer) ?? []), st.index])
  if (state.peers.length === 0) { fill(body, h('tr', { class: 'empty' }, h('td', { colspan: 8 }, 'No peers.'))); return }
  fill(body, state.peers.map((p, i) => {
    const stages = held.get(p.id) ?? p.stages ?? []
    const hl = p.health
    return h('tr', { 'data-peer': p.id },
      h('td', {}, h('div', { class: 'peer-cell' }, h('span', { class: 'peer-dot', style: { background: peerColor(i) } }),
        h('div', {}, h('div', { class: 'mono', title: p.id }, shortId(p.id)), h('div', { class: 'muted small mono', title: p.addrs.join('\n') }, shortAddr(p.addrs[0] ?? ''))))),
      h('td', {}, h('span', { class: 'chip' }, p.transport)),
      h('td', {}, p.executionProviders.map((ep) => h('span', { class: 'chip' }, ep.toUpperCase()))),
      h('td', { class: 'num' }, bytes(p.memoryBytes)),
      h('td', { class: 'num' }, p.cpus ?? '–'),
      h('td', { class: 'num' }, speed(p.speed)),
      h('td', {}, stages.length === 0 ? h('span', { class: 'muted' }, '–') : stages.map((s) => h('span', { class: 'chip' }, `${stageWord(state.plan?.plan).toLowerCase()} ${s + 1}`))),
      h('td', {}, h('span', { class: `health${hl.ok ? '' : ' bad'}`, title: hl.error ?? `last seen ${clock(hl.lastSeen)}` },
        hl.ok ? (hl.rttMs == null ? 'ok' : `${hl.rttMs.toFixed(1)} ms`) : `down (${hl.failures})`)))
  }))
}

function shortAddr (addr) {
  const i = addr.indexOf('/p2p/')
  return i < 0 ? addr : addr.slice(0, i)
}

function renderPlanCard () {
  const el = $('#plan')
  const job = shownJob()
  const plan = job?.plan ?? state.plan?.plan
  if (plan == null) { fill(el, h('p', { class: 'placeholder' }, 'The plan appears when a job deploys its stages.')); $('#plan-summary').textContent = ''; return }
  fill(el, renderPlan(plan, state.peers, el.clientWidth))
  $('#plan-summary').textContent = planSummary(plan)
}

function renderTimelineCard () {
  const el = $('#timeline')
  const job = shownJob()
  if (job?.timeline == null || (job.timeline.base.length === 0 && job.timeline.ssr.length === 0)) {
    fill(el, h('p', { class: 'placeholder' }, job?.state === 'running' ? 'Waiting for the first step…' : 'The timeline fills in as a job runs.'))
    return
  }
  fill(el, renderTimeline(job, state.peers, { width: el.clientWidth, range: state.timelineRange }))
  for (const b of document.querySelectorAll('#timeline-range button')) b.setAttribute('aria-pressed', String(b.dataset.range === state.timelineRange))
}

function renderJobs () {
  const body = $('#jobs-table tbody')
  if (state.order.length === 0) { fill(body, h('tr', { class: 'empty' }, h('td', { colspan: 7 }, 'No jobs yet.'))); return }
  const shown = shownJob()
  fill(body, state.order.slice(0, 50).map((id) => {
    const j = state.jobs.get(id)
    const dur = j.startedAt == null ? '–' : seconds((j.finishedAt != null ? Date.parse(j.finishedAt) : Date.now()) - Date.parse(j.startedAt))
    return h('tr', { class: `selectable${shown?.id === id ? ' selected' : ''}`, 'data-job': id, onclick: () => { select(id) } },
      h('td', { class: 'muted' }, clock(j.createdAt)),
      h('td', { class: 'prompt-cell', title: j.params.prompt }, j.params.prompt),
      h('td', { class: 'num' }, j.params.steps),
      h('td', { class: 'num' }, j.params.seed),
      h('td', {}, h('span', { class: `badge ${j.state}` }, j.state)),
      h('td', { class: 'num' }, dur),
      h('td', { class: 'num' }, j.state === 'done' && j.result != null ? h('a', { href: j.result.urls[0], download: `lumiere-${id}.mp4`, onclick: (e) => { e.stopPropagation() } }, 'MP4') : ''))
  }))
}

function select (id) {
  const latest = state.order[0]
  state.selected = id === latest && state.jobs.get(id)?.state !== 'queued' ? null : id
  renderAll()
}

async function loadDetail (id) {
  const job = state.jobs.get(id)
  if (job == null || job.loading) return
  job.loading = true
  try {
    const res = await fetch(`/api/jobs/${encodeURIComponent(id)}`)
    if (!res.ok) return
    const detail = await res.json()
    const cur = state.jobs.get(id)
    if (cur == null) return
    // Progress events may have arrived meanwhile; keep the longer timeline.
    if (cur.timeline == null || detail.timeline.base.length + detail.timeline.ssr.length >= cur.timeline.base.length + cur.timeline.ssr.length) cur.timeline = detail.timeline
    if (cur.plan == null && detail.plan != null) cur.plan = detail.plan
    renderAll()
  } finally {
    job.loading = false
  }
}

// ------------------------------------------------------------ form

function applyDefaults (defaults, models) {
  state.defaults = defaults
  $('#steps').value = String(defaults.steps)
  $('#guidance').value = String(defaults.guidance)
  $('#samples').value = String(defaults.samples)
  fill($('#model'), models.map((m) => h('option', { value: m, selected: m === defaults.model }, m)))
}

async function submit (event) {
  event.preventDefault()
  const error = $('#form-error')
  error.hidden = true
  const num = (id) => { const v = $(id).value.trim(); return v === '' ? undefined : Number(v) }
  const body = {
    prompt: $('#prompt').value,
    negative: $('#negative').value || undefined,
    steps: num('#steps'),
    guidance: num('#guidance'),
    seed: num('#seed'),
    samples: num('#samples'),
    model: $('#model').value || undefined,
    ssr: $('#ssr').checked
  }
  const button = $('#submit')
  button.disabled = true
  try {
    const res = await fetch('/api/jobs', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    const out = await res.json()
    if (!res.ok) throw new Error(out.error?.message ?? `HTTP ${res.status}`)
    out.timeline ??= { base: [], ssr: [], utilisation: [] }
    upsert(out)
    state.selected = null
    renderAll()
  } catch (err) {
    error.textContent = err.message
    error.hidden = false
  } finally {
    button.disabled = false
  }
}

async function cancel () {
  const id = $('#cancel').dataset.job
  if (id == null) return
  $('#cancel').disabled = true
  try {
    await fetch(`/api/jobs/${encodeURIComponent(id)}`, { method: 'DELETE' })
  } finally {
    $('#cancel').disabled = false
  }
}

$('#job-form').addEventListener('submit', (e) => { void submit(e) })
$('#cancel').addEventListener('click', () => { void cancel() })
for (const b of document.querySelectorAll('#timeline-range button')) {
  b.addEventListener('click', () => { state.timelineRange = b.dataset.range; schedule('timeline') })
}
let resized = 0
window.addEventListener('resize', () => { clearTimeout(resized); resized = setTimeout(() => { schedule('plan', 'timeline') }, 100) })
// Running clocks tick even between events.
setInterval(() => { if (shownJob()?.state === 'running') schedule('job', 'jobs') }, 1000)
connect()
