/**
 * Small node:http helpers for `lumiere serve`: JSON answers and errors
 * (`{ error: { code, message } }`), bounded JSON bodies, static files held in
 * memory, and files with single byte-range support (what <video> asks for).
 */
import { createReadStream } from 'node:fs'
import { readdir, readFile, stat } from 'node:fs/promises'
import { extname, join } from 'node:path'
import type { IncomingMessage, ServerResponse } from 'node:http'

export const MAX_BODY_BYTES = 64 * 1024

export class HttpError extends Error {
  readonly status: number
  readonly code: string
  readonly headers: Record<string, string>

  constructor (status: number, code: string, message: string, headers: Record<string, string> = {}) {
    super(message)
    this.status = status
    this.code = code
    this.headers = headers
  }
}

export function sendJson (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body)
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers
  })
  res.end(text)
}

export function sendError (res: ServerResponse, err: HttpError): void {
  sendJson(res, err.status, { error: { code: err.code, message: err.message } }, err.headers)
}

/** Reads a JSON request body: 415 unless it says application/json, 413 over MAX_BODY_BYTES, 400 when it does not parse. */
export async function readJson (req: IncomingMessage): Promise<unknown> {
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase()
  if (type !== 'application/json') throw new HttpError(415, 'UNSUPPORTED_MEDIA_TYPE', `send the job as JSON with content-type: application/json (got ${type === '' ? 'none' : type})`)
  const declared = Number(req.headers['content-length'] ?? 0)
  if (declared > MAX_BODY_BYTES) throw new HttpError(413, 'TOO_LARGE', `the body is over ${MAX_BODY_BYTES} bytes`)
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > MAX_BODY_BYTES) throw new HttpError(413, 'TOO_LARGE', `the body is over ${MAX_BODY_BYTES} bytes`)
    chunks.push(chunk)
  }
  const text = Buffer.concat(chunks).toString('utf8')
  try {
    return JSON.parse(text)
  } catch (err) {
    throw new HttpError(400, 'BAD_JSON', `the body is not valid JSON: ${err instanceof Error ? err.message : String(err)}`)
  }
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json; charset=utf-8'
}

export interface StaticFile {
  body: Buffer
  type: string
}

/** Every file of a folder (not recursive) by URL path: `/name`, and `/` for index.html. Nothing else can be served. */
export async function loadStatic (dir: string): Promise<Map<string, StaticFile>> {
  const files = new Map<string, StaticFile>()
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const type = TYPES[extname(entry.name).toLowerCase()]
    if (!entry.isFile() || type == null) continue
    const file = { body: await readFile(join(dir, entry.name)), type }
    files.set(`/${entry.name}`, file)
    if (entry.name === 'index.html') files.set('/', file)
  }
  return files
}

/** Everything the dashboard may load comes from this origin; it makes no outside requests. */
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"

export function sendStatic (res: ServerResponse, file: StaticFile): void {
  res.writeHead(200, {
    'content-type': file.type,
    'content-length': file.body.length,
    'cache-control': 'no-cache',
    'content-security-policy': CSP,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer'
  })
  res.end(file.body)
}

/** Sends a file, honouring one `Range: bytes=a-b` (206) as video elements ask; 416 for a range past the end. */
export async function sendFile (req: IncomingMessage, res: ServerResponse, path: string, type: string, headers: Record<string, string> = {}): Promise<void> {
  const { size } = await stat(path)
  const common = { 'content-type': type, 'accept-ranges': 'bytes', 'x-content-type-options': 'nosniff', ...headers }
  const range = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? '')
  let start = 0
  let end = size - 1
  if (range != null && (range[1] !== '' || range[2] !== '')) {
    if (range[1] === '') {
      start = Math.max(0, size - Number(range[2]))
    } else {
      start = Number(range[1])
      if (range[2] !== '') end = Math.min(end, Number(range[2]))
    }
    if (start >= size || start > end) {
      res.writeHead(416, { ...common, 'content-range': `bytes */${size}` })
      res.end()
      return
    }
    res.writeHead(206, { ...common, 'content-range': `bytes ${start}-${end}/${size}`, 'content-length': end - start + 1 })
  } else {
    res.writeHead(200, { ...common, 'content-length': size })
  }
  if (req.method === 'HEAD' || size === 0) { res.end(); return }
  await new Promise<void>((resolve, reject) => {
    const stream = createReadStream(path, { start, end })
    stream.on('error', reject)
    res.on('close', () => { stream.destroy(); resolve() })
    stream.pipe(res)
  })
}
