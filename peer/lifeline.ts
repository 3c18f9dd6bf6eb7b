/**
 * A peer started by a coordinator's `--local` mesh gets its stdin as a
 * lifeline: when the coordinator dies (even by kill -9) the pipe closes and
 * the peer stops, so no orphan daemons outlive the job.
 */
export const EXIT_WITH_PARENT = 'LUMIERE_EXIT_WITH_PARENT'

export function onParentExit (stop: () => void): void {
  if (process.env[EXIT_WITH_PARENT] !== '1') return
  process.stdin.on('close', stop).resume()
  // Watching the pipe must not keep the process alive once the peer has stopped.
  if ('unref' in process.stdin && typeof process.stdin.unref === 'function') process.stdin.unref()
}
