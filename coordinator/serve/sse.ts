/**
 * Server-Sent Events: a hub that writes named JSON events to every connected
 * client. A client that stops reading (more than MAX_BUFFERED bytes queued
 * in its socket) is dropped rather than buffered without bound; browsers'
 * EventSource reconnects by itself and gets a fresh snapshot.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'

const MAX_BUFFERED = 4 * 1024 * 1024
const HEARTBEAT_MS = 15_000

export class EventHub {
  private readonly clients = new Set<ServerResponse>()
  private readonly heartbeat: NodeJS.Timeout
  private nextId = 1

  constructor () {
    // A comment line now and then keeps proxies and idle timers from closing the stream.
    this.heartbeat = setInterval(() => { for (const res of this.clients) this.write(res, ': keep-alive\n\n') }, HEARTBEAT_MS)
    this.heartbeat.unref()
  }

  get size (): number {
    return this.clients.size
  }

  /** Takes over the response as an event stream; `first` events go to this client only, before any broadcast. */
  open (req: IncomingMessage, res: ServerResponse, first: Array<{ event: string, data: unknown }> = []): void {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no'
    })
    res.socket?.setNoDelay(true)
    res.write('retry: 2000\n\n')
    for (const e of first) this.write(res, this.format(e.event, e.data))
    this.clients.add(res)
    const drop = (): void => { this.clients.delete(res) }
    req.on('close', drop)
    res.on('close', drop)
    res.on('error', drop)
  }

  send (event: string, data: unknown): void {
    if (this.clients.size === 0) return
    const text = this.format(event, data)
    for (const res of this.clients) this.write(res, text)
  }

  /** Ends every stream (server shutdown). */
  close (): void {
    clearInterval(this.heartbeat)
    for (const res of this.clients) res.end()
    this.clients.clear()
  }

  private format (event: string, data: unknown): string {
    return `id: ${this.nextId++}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`
  }

  private write (res: ServerResponse, text: string): void {
    if (res.writableEnded || res.destroyed) { this.clients.delete(res); return }
    if (res.writableLength > MAX_BUFFERED) {
      this.clients.delete(res)
      res.destroy()
      return
    }
    res.write(text)
  }
}
