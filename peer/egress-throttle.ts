import { setTimeout as sleep } from 'node:timers/promises'
import { LumiereError } from '../src/errors.ts'

/**
 * Testing only (`lumiere peer --egress-throttle`): a peer whose uplink is
 * this slow, without traffic shaping (netem is absent here). Every tensor
 * message the peer sends (stage outputs, link probes) is held until a link
 * of `bytesPerSecond`, busy with the messages before it, would have carried
 * it, then goes at wire speed. Small control messages (rpc envelopes,
 * pings) are not held, so latency stays what it is.
 */
export class EgressThrottle {
  private readonly bytesPerSecond: number
  /** performance.now() at which the simulated link is free again. */
  private freeAt = 0

  constructor (bytesPerSecond: number) {
    if (!(bytesPerSecond > 0) || !Number.isFinite(bytesPerSecond)) throw new LumiereError('BAD_ARGUMENT', `--egress-throttle must be a positive number of bytes per second, got ${bytesPerSecond}`)
    this.bytesPerSecond = bytesPerSecond
  }

  /** Resolves when a message of `bytes` may leave. */
  async hold (bytes: number, signal?: AbortSignal): Promise<void> {
    const now = performance.now()
    this.freeAt = Math.max(now, this.freeAt) + (bytes / this.bytesPerSecond) * 1000
    const wait = this.freeAt - now
    if (wait > 0) await sleep(wait, undefined, signal != null ? { signal } : {})
  }
}
