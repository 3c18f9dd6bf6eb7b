// The pipeline plan as a route: one lane per peer (plus the coordinator's),
// one column per stage in route order, arrows for the activations between
// consecutive stages labelled with their bytes per forward pass. A folded
// plan (peer j holds stage j and its mirror) shows as a V down and back up
// the peer lanes. A replicated plan (copies of the whole model, each pass on
// one of them) shows its copies side by side in one column.
import { s } from './dom.js'
import { bytes, flops, peerColor, shortId, stageWord } from './format.js'

const LABEL_W = 150
const MIN_COL_W = 168
const MAX_COL_W = 320
const BOX_W = 128
const BOX_H = 60
const LANE_H = 84
const TOP = 12

/**
 * @param plan  PlanSummary from the server
 * @param peers peers in table order (for lane order and colours)
 * @param fit   width to fill, px (columns widen up to MAX_COL_W)
 */
export function renderPlan (plan, peers, fit = 0) {
  const order = peers.map((p) => p.id)
  const lanePeers = [...new Set(plan.stages.map((st) => st.peer))].sort((a, b) => rank(order, a) - rank(order, b))
  const laneOf = (peer) => 1 + lanePeers.indexOf(peer)
  const colorOf = (peer) => peerColor(rank(order, peer))
  const copies = plan.placement === 'replicated'
  // Columns of stage indices: the route in order, or all copies in one.
  const columns = copies ? [plan.stages.map((st) => st.index)] : plan.route.map((index) => [index])
  const shown = columns.flat()
  const cols = columns.length + 2
  const COL_W = Math.max(MIN_COL_W, Math.min(MAX_COL_W, Math.floor((fit - LABEL_W) / cols)))
  const width = LABEL_W + cols * COL_W
  const height = TOP * 2 + (lanePeers.length + 1) * LANE_H
  const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', 'aria-label': `pipeline plan: ${plan.stages.length} stages on ${lanePeers.length} peers` })
  svg.append(defs())

  // Lanes.
  const lanes = [{ name: 'Coordinator', sub: 'inputs · outputs', color: '#475569' }, ...lanePeers.map((p) => ({ name: `Peer ${rank(order, p) + 1}`, sub: shortId(p), color: colorOf(p), id: p }))]
  lanes.forEach((lane, i) => {
    const y = TOP + i * LANE_H
    svg.append(
      s('rect', { x: 0, y: y + 4, width, height: LANE_H - 8, rx: 10, fill: i === 0 ? '#f8fafc' : '#fbfcfe', stroke: '#eef2f7' }),
      s('rect', { x: 14, y: y + LANE_H / 2 - 16, width: 4, height: 32, rx: 2, fill: lane.color }),
      s('text', { x: 28, y: y + LANE_H / 2 - 3, 'font-size': 13, 'font-weight': 650, fill: '#0f172a' }, lane.name),
      s('text', { x: 28, y: y + LANE_H / 2 + 14, 'font-size': 11, fill: '#64748b', class: 'mono' }, lane.sub)
    )
    if (lane.id != null) svg.lastChild.append(s('title', {}, lane.id))
  })

  const center = (col, lane) => ({ x: LABEL_W + col * COL_W + COL_W / 2, y: TOP + lane * LANE_H + LANE_H / 2 })
  const stageByIndex = new Map(plan.stages.map((st) => [st.index, st]))
  const pos = new Map()
  columns.forEach((column, i) => { for (const index of column) pos.set(index, center(i + 1, laneOf(stageByIndex.get(index).peer))) })
  const inPos = center(0, 0)
  const outPos = center(cols - 1, 0)
  const at = (ref) => ref === 'input' ? inPos : ref === 'output' ? outPos : pos.get(ref)

  // Arrows first (under the boxes): route hops solid, other boundaries (skips, inputs to later stages) dashed.
  const chains = copies ? shown.map((index) => ['input', index, 'output']) : [['input', ...plan.route, 'output']]
  const hop = new Set(chains.flatMap((chain) => chain.slice(1).map((to, i) => `${chain[i]}>${to}`)))
  const byPair = new Map()
  // A copy's boundaries are those of copy 1 (the plan lists one pass).
  const boundaries = copies ? shown.flatMap((index) => plan.boundaries.map((b) => ({ ...b, from: b.from === 'input' ? 'input' : index, to: b.to === 'output' ? 'output' : index }))) : plan.boundaries
  for (const b of boundaries) {
    const key = `${b.from}>${b.to}`
    const prev = byPair.get(key) ?? { from: b.from, to: b.to, bytes: 0, values: 0, local: true }
    byPair.set(key, { ...prev, bytes: prev.bytes + b.bytes, values: prev.values + b.values, local: prev.local && b.local })
  }
  for (const key of hop) {
    const [from, to] = key.split('>').map((x) => x === 'input' || x === 'output' ? x : Number(x))
    if (!byPair.has(key)) byPair.set(key, { from, to, bytes: 0, values: 0, local: false })
  }
  const arrows = s('g', {})
  const labels = s('g', {})
  for (const [key, b] of byPair) {
    const a = at(b.from)
    const z = at(b.to)
    if (a == null || z == null) continue
    const main = hop.has(key)
    const x1 = a.x + BOX_W / 2
    const x2 = z.x - BOX_W / 2 - 6
    let d
    if (main) {
      const mx = (x1 + x2) / 2
      d = `M ${x1} ${a.y} C ${mx} ${a.y}, ${mx} ${z.y}, ${x2} ${z.y}`
    } else {
      const lift = 34 + Math.abs(z.x - a.x) / 8
      d = `M ${a.x + 16} ${a.y - BOX_H / 2} C ${a.x + 40} ${a.y - BOX_H / 2 - lift}, ${z.x - 40} ${z.y - BOX_H / 2 - lift}, ${z.x - 16} ${z.y - BOX_H / 2 - 6}`
    }
    const stroke = b.local ? '#94a3b8' : main ? '#334155' : '#94a3b8'
    arrows.append(s('path', { d, fill: 'none', stroke, 'stroke-width': main ? 2 : 1.4, 'stroke-dasharray': main ? null : '5 4', 'marker-end': `url(#${main ? 'arrow' : 'arrow-light'})` },
      s('title', {}, `${b.from === 'input' ? 'coordinator' : `stage ${b.from + 1}`} → ${b.to === 'output' ? 'coordinator' : `stage ${b.to + 1}`}: ${b.values} value(s), ${bytes(b.bytes)} per forward pass${b.local ? ' (same peer, not on the wire)' : ''}`)))
    if (main && b.bytes > 0) {
      const lx = (x1 + x2) / 2
      const ly = (a.y + z.y) / 2 - (a.y === z.y ? 9 : 0)
      labels.append(s('text', { x: lx, y: ly, 'text-anchor': 'middle', 'font-size': 11, 'font-weight': 600, fill: '#334155', class: 'halo' }, b.local ? `${bytes(b.bytes)} local` : bytes(b.bytes)))
    }
  }
  svg.append(arrows)

  // Coordinator endpoints.
  for (const [p, title, sub] of [[inPos, 'Inputs', 'x_t · logSNR · text'], [outPos, 'Output', 'v̂ prediction']]) {
    svg.append(s('g', {},
      s('rect', { x: p.x - BOX_W / 2, y: p.y - BOX_H / 2 + 8, width: BOX_W, height: BOX_H - 16, rx: 22, fill: '#fff', stroke: '#94a3b8', 'stroke-width': 1.5 }),
      s('text', { x: p.x, y: p.y - 1, 'text-anchor': 'middle', 'font-size': 12, 'font-weight': 650, fill: '#334155' }, title),
      s('text', { x: p.x, y: p.y + 13, 'text-anchor': 'middle', 'font-size': 10, fill: '#64748b' }, sub)))
  }

  // Stage boxes.
  shown.forEach((index) => {
    const st = stageByIndex.get(index)
    const p = pos.get(index)
    const color = colorOf(st.peer)
    svg.append(s('g', { class: 'stage', 'data-stage': index },
      s('title', {}, `stage ${index + 1} on ${st.peer}\n${st.nodes} nodes · ${flops(st.flops)} · ${bytes(st.paramBytes)} parameters · peak activations ${bytes(st.peakActivationBytes)}`),
      s('rect', { x: p.x - BOX_W / 2, y: p.y - BOX_H / 2, width: BOX_W, height: BOX_H, rx: 9, fill: '#fff', stroke: color, 'stroke-width': 2, filter: 'url(#shadow)' }),
      s('rect', { x: p.x - BOX_W / 2, y: p.y - BOX_H / 2, width: 6, height: BOX_H, rx: 3, fill: color }),
      s('text', { x: p.x - BOX_W / 2 + 16, y: p.y - 9, 'font-size': 13, 'font-weight': 700, fill: '#0f172a' }, `${stageWord(plan)} ${index + 1}`),
      s('text', { x: p.x - BOX_W / 2 + 16, y: p.y + 7, 'font-size': 11, fill: '#475569' }, flops(st.flops)),
      s('text', { x: p.x - BOX_W / 2 + 16, y: p.y + 21, 'font-size': 11, fill: '#64748b' }, `${bytes(st.paramBytes)} params`)))
  })
  svg.append(labels)
  return svg
}

export function planSummary (plan) {
  const peers = new Set(plan.stages.map((st) => st.peer)).size
  const held = plan.placement === 'replicated' ? `the whole model copied on ${peers} peers, each pass on one` : `${plan.stages.length} stages on ${peers} peer${peers === 1 ? '' : 's'}`
  return `${plan.placement} placement · ${held} · ${flops(plan.totals.flops)} and ${bytes(plan.totals.wireBytes)} on the wire per forward pass`
}

function rank (order, id) {
  const i = order.indexOf(id)
  return i < 0 ? order.length + id.length : i
}

function defs () {
  return s('defs', {},
    s('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 8, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
      s('path', { d: 'M 0 0 L 10 5 L 0 10 z', fill: '#334155' })),
    s('marker', { id: 'arrow-light', viewBox: '0 0 10 10', refX: 8, refY: 5, markerWidth: 6, markerHeight: 6, orient: 'auto-start-reverse' },
      s('path', { d: 'M 0 0 L 10 5 L 0 10 z', fill: '#94a3b8' })),
    s('filter', { id: 'shadow', x: '-10%', y: '-10%', width: '120%', height: '140%' },
      s('feDropShadow', { dx: 0, dy: 1, stdDeviation: 1.5, 'flood-color': '#0f172a', 'flood-opacity': 0.12 })))
}
