/**
 * Temporal windows of the SSR stage (DESIGN.md §1 "SSR", §2 "SSR over the
 * mesh"): the spatial super-resolution model only fits short clips, so the
 * full clip of T frames is cut into windows of L frames with stride S
 * (overlap L − S), each predicted on its own and fused with MultiDiffusion
 * (multidiffusion.ts).
 *
 * The rule: windows start at 0, S, 2S, … as long as the window fits
 * (start + L ≤ T); when the last of these does not reach the end (S does not
 * divide T − L) one more, end-aligned window [T − L, T) is added, so no tail
 * frame is ever dropped. Every window has exactly L frames; windows come in
 * increasing start order; every frame is in at least one window.
 */
import { LumiereError } from '../errors.ts'

/** A window of frames [start, end), end exclusive. */
export interface FrameWindow {
  start: number
  end: number
}

export interface WindowPlan {
  /** The windows in increasing start order, all of length L. */
  windows: FrameWindow[]
  /** Frames computed per model pass over the clip / T (≥ 1; 1 = no overlap). */
  redundancy: number
}

function bad (message: string): LumiereError {
  return new LumiereError('BAD_ARGUMENT', message)
}

/** Plans the windows of a clip of `frames` frames: length `length`, stride `stride` (see the rule above). */
export function planWindows (frames: number, length: number, stride: number): WindowPlan {
  if (!Number.isSafeInteger(frames) || frames < 1) throw bad(`SSR windows: the clip must have a whole number ≥ 1 of frames, got ${frames}`)
  if (!Number.isSafeInteger(length) || length < 1) throw bad(`SSR windows: the window length must be a whole number ≥ 1 of frames, got ${length}`)
  if (!Number.isSafeInteger(stride) || stride < 1) throw bad(`SSR windows: the window stride must be a whole number ≥ 1 of frames, got ${stride}`)
  if (length > frames) throw bad(`SSR windows: window length ${length} is longer than the clip (${frames} frames): use a window length ≤ ${frames}`)
  if (stride > length) throw bad(`SSR windows: stride ${stride} is longer than the window length ${length}, which would skip frames: use a stride ≤ ${length}`)
  const windows: FrameWindow[] = []
  let start = 0
  for (; start + length <= frames; start += stride) windows.push({ start, end: start + length })
  const last = windows[windows.length - 1]
  if (last.end < frames) windows.push({ start: frames - length, end: frames })
  return { windows, redundancy: (windows.length * length) / frames }
}

/** Checks one window: integer bounds with 0 ≤ start < end ≤ frames. */
export function checkWindow (w: FrameWindow, frames: number, what = 'SSR window', index?: number): void {
  if (!Number.isSafeInteger(w?.start) || !Number.isSafeInteger(w?.end) || w.start < 0 || w.end > frames || w.start >= w.end) {
    throw bad(`${what}: window ${index ?? ''}${index == null ? '' : ' '}[${String(w?.start)}, ${String(w?.end)}) is not a non-empty range of whole frames inside [0, ${frames})`)
  }
}

/** Checks a window list against a clip of `frames` frames: integer bounds, 0 ≤ start < end ≤ frames, every frame covered. */
export function checkWindows (windows: readonly FrameWindow[], frames: number, what = 'SSR windows'): void {
  if (!Number.isSafeInteger(frames) || frames < 1) throw bad(`${what}: the clip must have a whole number ≥ 1 of frames, got ${frames}`)
  if (!Array.isArray(windows) || windows.length === 0) throw bad(`${what}: need at least one window (plan them with planWindows)`)
  const covered = new Uint8Array(frames)
  for (const [i, w] of windows.entries()) {
    checkWindow(w, frames, what, i)
    covered.fill(1, w.start, w.end)
  }
  const gap = covered.indexOf(0)
  if (gap >= 0) throw bad(`${what}: frame ${gap} is in no window: plan the windows with planWindows, which always covers the tail`)
}
