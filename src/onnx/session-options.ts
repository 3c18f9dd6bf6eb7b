/**
 * The one set of ORT session options used by peers, probes and reference
 * runs, so a stage run on a peer computes exactly what the whole graph would.
 *
 * Bit-exactness, measured on the test fixtures (ORT 1.30 CPU, chaining
 * 1-4 stage models vs one session on the whole graph, 1 and 2 threads):
 * - 'disabled' and 'basic' (constant folding, redundant-node removal):
 *   identical bits for every cut and thread count.
 * - 'extended' (MatMul+Add, GELU/LayerNorm fusions) and 'all' (plus NCHWc
 *   layout transforms): differ in the last bits (~2e-8) whenever a cut
 *   separates nodes the whole graph would fuse.
 * So peers and reference runs use 'basic'.
 *
 * Memory pattern planning is off. With it on, ORT's second run of a session
 * allocates one fresh block for the whole planned activation peak and faults
 * every page of it in: on the small preset a 1-thread session's first three
 * runs took 2.3, 3.2 and 2.1 s (2.2, 2.1, 2.1 s with it off; 2 threads 1.25,
 * 1.34, 1.19 against 1.33, 1.20, 1.22), the same steady state and the same
 * bits (the pattern only decides where buffers live). Every peer pays this on
 * its first job, so it is a start-up cost of the mesh.
 */
import type * as ort from 'onnxruntime-node'

export function sessionOptions (threads = 1): ort.InferenceSession.SessionOptions {
  return {
    graphOptimizationLevel: 'basic',
    intraOpNumThreads: Math.max(1, Math.floor(threads)),
    interOpNumThreads: 1,
    executionMode: 'sequential',
    enableMemPattern: false,
    // Warnings about unused initializers and the like are noise for us.
    logSeverityLevel: 3
  }
}
