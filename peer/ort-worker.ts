/**
 * Runs ORT sessions off the event loop: `session.run()` blocks its thread for
 * the whole run, so a peer that ran it on the main thread would stop
 * answering pings and streams while it computes.
 */
import { parentPort } from 'node:worker_threads'
import * as ort from 'onnxruntime-node'
import { toLumiereError } from '../src/errors.ts'
import { blendInitializers } from '../src/model/style.ts'
import { decodeModel, encodeModel } from '../src/onnx/model-io.ts'
import { sessionOptions } from '../src/onnx/session-options.ts'
import { fromOrt, toOrt } from '../src/onnx/ort-tensor.ts'
import type { Tensor } from '../src/tensor/tensor.ts'
import type { WorkerReply, WorkerRequest } from './worker-messages.ts'

if (parentPort == null) throw new Error('ort-worker must run in a worker thread')
const port = parentPort
const sessions = new Map<string, ort.InferenceSession>()

async function handle (req: WorkerRequest): Promise<WorkerReply> {
  switch (req.op) {
    case 'load': {
      if (!sessions.has(req.key)) {
        const options = { ...sessionOptions(req.threads), executionProviders: req.providers }
        // Blending here keeps the (model-sized) work off the peer's event loop.
        const model = req.style == null ? req.model : encodeModel(blendInitializers(decodeModel(req.model, `stage ${req.key}`), req.style.tensors, req.style.alpha, 'this stage'))
        sessions.set(req.key, await ort.InferenceSession.create(model, options))
      }
      return { id: req.id, ok: true }
    }
    case 'run': {
      const session = sessions.get(req.key)
      if (session == null) return { id: req.id, ok: false, code: 'STAGE_UNKNOWN', message: `stage ${req.key} is not loaded` }
      const feeds: Record<string, ort.Tensor> = {}
      for (const [name, t] of Object.entries(req.feeds)) feeds[name] = toOrt(t)
      const started = performance.now()
      const result = await session.run(feeds, req.outputs)
      const ms = performance.now() - started
      const outputs: Record<string, Tensor> = {}
      for (const name of req.outputs) outputs[name] = fromOrt(result[name])
      return { id: req.id, ok: true, outputs, ms }
    }
    case 'release': {
      await sessions.get(req.key)?.release()
      sessions.delete(req.key)
      return { id: req.id, ok: true }
    }
  }
}

function transferList (outputs: Record<string, Tensor> | undefined): ArrayBuffer[] {
  const buffers = new Set<ArrayBuffer>()
  for (const t of Object.values(outputs ?? {})) buffers.add(t.data.buffer as ArrayBuffer)
  return [...buffers]
}

/**
 * Requests are handled one at a time: concurrent runs would only share the
 * intra-op threads, and a run's `ms` must be its own compute time, not time
 * spent queued behind another (the busy figures and the simulator's
 * calibration are built from it).
 */
let queue: Promise<unknown> = Promise.resolve()

port.on('message', (req: WorkerRequest) => {
  const done = queue.then(async () => handle(req))
  queue = done.catch(() => {})
  done.then(
    (reply) => { port.postMessage(reply, reply.ok ? transferList(reply.outputs) : []) },
    (err: unknown) => {
      const e = toLumiereError(err, 'STAGE_FAILED')
      port.postMessage({ id: req.id, ok: false, code: e.code, message: e.message } satisfies WorkerReply)
    }
  )
})
