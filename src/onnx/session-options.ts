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
 */
import type * as ort from 'onnxruntime-node'

export function sessionOptions (threads = 1): ort.InferenceSession.SessionOptions {
  return {
    graphOptimizationLevel: 'basic',
    intraOpNumThreads: Math.max(1, Math.floor(threads)),
    interOpNumThreads: 1,
    executionMode: 'sequential',
    // Warnings about unused initializers and the like are noise for us.
    logSeverityLevel: 3
  }
}
