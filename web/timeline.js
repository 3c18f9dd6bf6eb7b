// Per-stage pipeline timeline: one lane per stage (coloured by its peer),
// time across. Each base-model step is a cell whose filled part is the share
// of the step the stage computed; the hatched rest is idle — the pipeline's
// bubbles and transfer time. Deploy (stages sent to peers) and the SSR phase
// (windows scattered over all peers) are drawn as their own bands.
import { s } from './dom.js'
import { peerColor, percent, shortId, stageWord } from './format.js'

const LABEL_W = 150
const UTIL_W = 64
const LANE_H = 34
const GAP = 8
const AXIS_H = 26

/**
 * @param job   a job with timeline (and plan once known)
 * @param peers peers in table order (for colours)
 * @param opts  { width: px to fill, range: 'all' | 'base' }
 */
export function renderTimeline (job, peers, { width = 1200, range = 'all' } = {}) {
  const WIDTH = Math.max(640, width)
  const tl = job.timeline
  const order = peers.map((p) => p.id)
  const stages = job.plan?.stages ?? (tl.utilisation ?? []).map((_, index) => ({ index, peer: '' }))
  const lanes = stages.map((st) => ({ label: `${stageWord(job.plan)} ${st.index + 1}`, sub: shortId(st.peer), color: peerColor(Math.max(0, order.indexOf(st.peer))), index: st.index }))
  const hasSsr = tl.ssr.length > 0 && range !== 'base'
  const rows = lanes.length + (hasSsr ? 1 : 0)
  const end = Math.max(1, hasSsr ? tl.ssr.at(-1)?.t1 ?? 0 : 0, tl.base.at(-1)?.t1 ?? 0, tl.deployMs ?? 0)
  const plotW = WIDTH - LABEL_W - UTIL_W
  const x = (t) => LABEL_W + (t / end) * plotW
  const height = rows * (LANE_H + GAP) + AXIS_H + 4
  const svg = s('svg', { viewBox: `0 0 ${WIDTH} ${height}`, width: WIDTH, height, role: 'img', 'aria-label': 'pipeline timeline' })
  svg.append(s('defs', {},
    s('pattern', { id: 'idle', width: 6, height: 6, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)' },
      s('rect', { width: 6, height: 6, fill: '#f8fafc' }),
      s('rect', { width: 2, height: 6, fill: '#e2e8f0' }))))

  // Grid + axis.
  const tick = niceStep(end / 8)
  const axisY = rows * (LANE_H + GAP) + 2
  for (let t = 0; t <= end + 1e-9; t += tick) {
    svg.append(
      s('line', { x1: x(t), x2: x(t), y1: 0, y2: axisY, stroke: '#eef2f7' }),
      s('text', { x: x(t), y: axisY + 16, 'text-anchor': t === 0 ? 'start' : 'middle', 'font-size': 11, fill: '#64748b' }, formatTick(t, tick)))
  }
  svg.append(s('text', { x: WIDTH - UTIL_W / 2, y: axisY + 16, 'text-anchor': 'middle', 'font-size': 11, fill: '#64748b' }, 'busy'))

  lanes.forEach((lane, i) => {
    const y = i * (LANE_H + GAP)
    svg.append(
      s('rect', { x: 12, y: y + 6, width: 4, height: LANE_H - 12, rx: 2, fill: lane.color }),
      s('text', { x: 24, y: y + 15, 'font-size': 12, 'font-weight': 650, fill: '#0f172a' }, lane.label),
      s('text', { x: 24, y: y + 28, 'font-size': 10, fill: '#64748b', class: 'mono' }, lane.sub),
      s('rect', { x: LABEL_W, y, width: plotW, height: LANE_H, fill: '#fbfcfe', stroke: '#eef2f7' }))
    if (tl.deployMs != null && tl.deployMs > 0) {
      svg.append(s('rect', { x: x(0), y, width: x(tl.deployMs) - x(0), height: LANE_H, fill: '#e2e8f0' }, s('title', {}, `deploying stages: ${Math.round(tl.deployMs)} ms`)))
    }
    const cells = s('g', { class: 'lane', 'data-stage': lane.index })
    for (const seg of tl.base) {
      const x0 = x(seg.t0)
      const w = Math.max(0.5, x(seg.t1) - x0)
      const busy = seg.busy[lane.index] ?? 0
      cells.append(
        s('rect', { x: x0, y, width: w, height: LANE_H, fill: 'url(#idle)' }),
        s('rect', { x: x0, y, width: Math.max(0, w * busy), height: LANE_H, fill: lane.color, opacity: 0.9 },
          s('title', {}, `step ${seg.step}: stage ${lane.index + 1} computed ${percent(busy)} of ${Math.round(seg.t1 - seg.t0)} ms`)),
        s('line', { x1: x0 + w, x2: x0 + w, y1: y, y2: y + LANE_H, stroke: '#fff', 'stroke-width': 1.5 }))
    }
    svg.append(cells)
    const util = tl.utilisation?.[lane.index]
    svg.append(s('text', { x: WIDTH - UTIL_W / 2, y: y + LANE_H / 2 + 4, 'text-anchor': 'middle', 'font-size': 12, 'font-weight': 700, fill: '#0f172a' }, util == null ? '–' : percent(util)))
  })

  if (hasSsr) {
    const y = lanes.length * (LANE_H + GAP)
    svg.append(
      s('rect', { x: 12, y: y + 6, width: 4, height: LANE_H - 12, rx: 2, fill: '#8b5cf6' }),
      s('text', { x: 24, y: y + 15, 'font-size': 12, 'font-weight': 650, fill: '#0f172a' }, 'SSR'),
      s('text', { x: 24, y: y + 28, 'font-size': 10, fill: '#64748b' }, 'windows, all peers'),
      s('rect', { x: LABEL_W, y, width: plotW, height: LANE_H, fill: '#fbfcfe', stroke: '#eef2f7' }))
    for (const seg of tl.ssr) {
      const x0 = x(seg.t0)
      const w = Math.max(0.5, x(seg.t1) - x0)
      svg.append(
        s('rect', { x: x0, y, width: w, height: LANE_H, fill: '#a78bfa' }, s('title', {}, `SSR step ${seg.step}: ${Math.round(seg.t1 - seg.t0)} ms`)),
        s('line', { x1: x0 + w, x2: x0 + w, y1: y, y2: y + LANE_H, stroke: '#fff', 'stroke-width': 1.5 }))
    }
  }
  return svg
}

function niceStep (raw) {
  const p = 10 ** Math.floor(Math.log10(Math.max(raw, 1e-3)))
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p
  return 10 * p
}

function formatTick (ms, step) {
  if (step >= 1000) return `${(ms / 1000).toFixed(0)} s`
  return `${(ms / 1000).toFixed(step >= 100 ? 1 : 2)} s`
}
