// Number and name formatting shared by the dashboard's views.

export const PALETTE = ['#4f46e5', '#0d9488', '#d97706', '#db2777', '#2563eb', '#65a30d', '#9333ea', '#dc2626']

export function peerColor (index) {
  return PALETTE[((index % PALETTE.length) + PALETTE.length) % PALETTE.length]
}

/** What a plan's stages are called: copies of the whole model in a replicated plan, else stages. */
export function stageWord (plan) {
  return plan?.placement === 'replicated' ? 'Copy' : 'Stage'
}

export function shortId (id) {
  if (typeof id !== 'string') return ''
  return id.length > 14 ? `${id.slice(0, 6)}…${id.slice(-6)}` : id
}

export function bytes (n) {
  if (!Number.isFinite(n)) return '–'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++ }
  return `${n >= 100 || i === 0 ? n.toFixed(0) : n.toFixed(1)} ${units[i]}`
}

export function flops (n) {
  if (!Number.isFinite(n)) return '–'
  if (n >= 1e12) return `${(n / 1e12).toFixed(2)} TFLOP`
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GFLOP`
  return `${(n / 1e6).toFixed(1)} MFLOP`
}

/** Peers report speed in GFLOP/s (a timed MatMul). */
export function speed (gflops) {
  if (!Number.isFinite(gflops)) return '–'
  return `${gflops >= 100 ? gflops.toFixed(0) : gflops.toFixed(1)} GFLOP/s`
}

export function seconds (ms) {
  if (!Number.isFinite(ms)) return '–'
  if (ms < 1000) return `${Math.round(ms)} ms`
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`
  const m = Math.floor(ms / 60_000)
  return `${m} min ${Math.round((ms - m * 60_000) / 1000)} s`
}

export function percent (x) {
  return `${Math.round((x ?? 0) * 100)}%`
}

export function clock (iso) {
  if (iso == null) return ''
  const d = new Date(iso)
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' })
}

export const PHASES = {
  starting: 'Deploying stages',
  base: 'Base model',
  ssr: 'Super-resolution',
  encoding: 'Encoding MP4'
}
