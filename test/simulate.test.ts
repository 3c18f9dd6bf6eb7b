// The pipeline simulator (coordinator/simulate.ts): closed forms on
// hand-made plans, wire bytes, the peer spec grammar, and `lumiere plan
// --simulate`.
import t from 'tap'
import { partitionAll } from '../coordinator/partition.ts'
import { parsePlan, planBottleneck } from '../coordinator/plan.ts'
import { parsePeersSpec, simulate } from '../coordinator/simulate.ts'
import { LumiereError } from '../src/errors.ts'
import { buildDag } from '../src/onnx/graph.ts'
import { getPreset } from '../src/model/presets.ts'
import { buildStunet } from '../src/model/stunet.ts'
import { planCommand } from '../coordinator/cli/plan-command.ts'
import type { Boundary, PeerCapacity, Plan } from '../coordinator/plan.ts'

/** A plan by hand: stages (peer, flops) and edges [from, to, bytes]. */
function handPlan (stages: Array<[string, number]>, edges: Array<[number | 'input', number | 'output', number]>): Plan {
  const boundaries: Boundary[] = edges.map(([from, to, bytes]) => {
    const b: Boundary = { from, to, names: [`${String(from)}>${String(to)}`], bytes }
    if (typeof from === 'number' && typeof to === 'number' && stages[from][0] === stages[to][0]) b.local = true
    return b
  })
  const plan: Plan = {
    stages: stages.map(([peer, flops], index) => ({ index, peer, nodes: [index], flops, paramBytes: 0, peakActivationBytes: 0, inputs: [], outputs: [], estSeconds: flops })),
    route: stages.map((_, i) => i),
    boundaries,
    totals: { flops: stages.reduce((a, s) => a + s[1], 0), paramBytes: 0, wireBytes: boundaries.filter(b => b.local !== true).reduce((a, b) => a + b.bytes, 0) }
  }
  return parsePlan(plan)
}

/** A chain of K stages on K peers, c FLOP each (1 FLOP/s), `bytes` between stages, 0-byte input and output. */
function chain (K: number, c: number, bytes: number): Plan {
  const edges: Array<[number | 'input', number | 'output', number]> = [['input', 0, 0]]
  for (let k = 0; k + 1 < K; k++) edges.push([k, k + 1, bytes])
  edges.push([K - 1, 'output', 0])
  return handPlan(Array.from({ length: K }, (_, k) => [`p${k}`, c]), edges)
}

const unitPeers = (n: number): PeerCapacity[] => Array.from({ length: n }, (_, i) => ({ id: `p${i}`, memoryBytes: 1e12, speed: 1 }))
const close = (a: number, b: number): boolean => Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b))

t.test('closed forms', async tt => {
  // One stage of t seconds: M t.
  for (let M = 1; M <= 4; M++) tt.equal(simulate(chain(1, 3, 0), unitPeers(1), { microBatches: M }).secondsPerStep, 3 * M, `1 stage, M=${M}: M t`)
  // K equal stages of t/K, no transfer: (M + K - 1) t / K.
  const t0 = 12
  for (const K of [2, 3, 4]) {
    for (let M = 1; M <= 5; M++) {
      const s = simulate(chain(K, t0 / K, 1000), unitPeers(K), { microBatches: M })
      tt.ok(close(s.secondsPerStep, (M + K - 1) * t0 / K), `K=${K} M=${M}: ${s.secondsPerStep} = (M + K - 1) t / K`)
    }
  }
  // K stages of c with transfers of x = bytes / bandwidth (+ latency L):
  // K c + (K - 1)(x + L) + (M - 1) max(c, x).
  for (const [c, bytes, L] of [[2, 100, 0], [2, 300, 0], [2, 100, 0.25], [1, 500, 0.5]]) {
    const K = 3
    const x = bytes / 100
    for (let M = 1; M <= 4; M++) {
      const s = simulate(chain(K, c, bytes), unitPeers(K), { microBatches: M, defaultLink: { bandwidth: 100, latency: L } })
      const want = K * c + (K - 1) * (x + L) + (M - 1) * Math.max(c, x)
      tt.ok(close(s.secondsPerStep, want), `c=${c} x=${x} L=${L} M=${M}: ${s.secondsPerStep} = ${want}`)
    }
  }
  // Folded on two peers (p0 → p1 → p0), c each, no transfer: c max(2M, M + 2).
  const folded = handPlan([['p0', 1], ['p1', 1], ['p0', 1]], [['input', 0, 0], [0, 1, 10], [0, 2, 10], [1, 2, 10], [2, 'output', 0]])
  for (let M = 1; M <= 5; M++) tt.equal(simulate(folded, unitPeers(2), { microBatches: M }).secondsPerStep, Math.max(2 * M, M + 2), `folded K=2 M=${M}`)
})

t.test('bytes on the wire and local boundaries', async tt => {
  // 0 → 2 is local (same peer): free however slow the links are.
  const plan = handPlan([['p0', 1], ['p1', 1], ['p0', 1]], [['input', 0, 7], [0, 1, 100], [0, 2, 1e9], [1, 2, 100], [2, 'output', 5]])
  tt.equal(plan.totals.wireBytes, 7 + 100 + 100 + 5, 'the local boundary is not on the wire')
  const link = { bandwidth: 100, latency: 0 }
  for (const M of [1, 2, 3]) {
    const s = simulate(plan, unitPeers(2), { microBatches: M, defaultLink: link })
    tt.equal(s.wireBytesPerStep, plan.totals.wireBytes * M, `M=${M}: wire = plan totals x M`)
    tt.equal(s.peers.reduce((a, p) => a + p.sentBytes, 0) + 7 * M, plan.totals.wireBytes * M, 'what peers put on the wire + the coordinator\'s inputs')
  }
  const one = simulate(plan, unitPeers(2), { microBatches: 1, defaultLink: link })
  // in 0.07, run 1, send 1 s, run 1, send 1 s, run 1, out 0.05.
  tt.ok(close(one.secondsPerStep, 0.07 + 1 + 1 + 1 + 1 + 1 + 0.05), `critical path: ${one.secondsPerStep}`)
})

t.test('a peer sends one message at a time', async tt => {
  // Stage 0 (no compute) sends 100 B to two peers over 100 B/s links: the second waits.
  const plan = handPlan([['p0', 0], ['p1', 0], ['p2', 0]], [['input', 0, 0], [0, 1, 100], [0, 2, 100], [1, 'output', 0], [2, 'output', 0]])
  const s = simulate(plan, unitPeers(3), { microBatches: 1, defaultLink: { bandwidth: 100, latency: 0 } })
  tt.equal(s.secondsPerStep, 2, 'two messages of 1 s in a row on p0\'s uplink')
  tt.equal(s.busiestLinkSeconds, 2)
  // Measured links win over the default.
  const fast: PeerCapacity[] = unitPeers(3).map(p => p.id === 'p0' ? { ...p, links: { p1: { bandwidth: 1e6, latency: 0 }, p2: { bandwidth: 1e6, latency: 0 } } } : p)
  tt.ok(simulate(plan, fast, { microBatches: 1, defaultLink: { bandwidth: 100, latency: 0 } }).secondsPerStep < 0.001, 'measured links are used')
})

t.test('bad arguments', async tt => {
  const plan = chain(2, 1, 1)
  for (const [what, fn] of [
    ['micro-batches', () => simulate(plan, unitPeers(2), { microBatches: 0 })],
    ['unknown peer', () => simulate(plan, unitPeers(1))],
    ['bad link', () => simulate(plan, unitPeers(2), { defaultLink: { bandwidth: 0, latency: 0 } })]
  ] as const) {
    try {
      fn()
      tt.fail(`${what}: expected BAD_ARGUMENT`)
    } catch (err) {
      tt.equal((err as LumiereError).code, 'BAD_ARGUMENT', `${what}: ${(err as Error).message}`)
    }
  }
})

t.test('peer spec grammar', async tt => {
  const a = parsePeersSpec('8x300T@1G')
  tt.equal(a.peers.length, 8)
  tt.same(a.peers.map(p => p.id), ['p1', 'p2', 'p3', 'p4', 'p5', 'p6', 'p7', 'p8'])
  tt.equal(a.peers[0].speed, 3e14)
  tt.equal(a.peers[0].memoryBytes, Number.MAX_SAFE_INTEGER, 'memory unlimited by default')
  tt.same(a.peers[0].links?.p2, { bandwidth: 1.25e8, latency: 0 }, '1 Gb/s = 125 MB/s')
  tt.equal(Object.keys(a.peers[0].links ?? {}).length, 7)
  tt.same(a.coordinatorLink, { bandwidth: 1.25e8, latency: 0 })
  const b = parsePeersSpec('32x80T@100M')
  tt.equal(b.peers.length, 32)
  tt.equal(b.peers[5].links?.p1.bandwidth, 1.25e7)
  const c = parsePeersSpec('2x1.5T@10Gbps/0.5ms:80GiB, 1x100G@100M/2ms:16GB')
  tt.same(c.peers.map(p => [p.speed, p.memoryBytes]), [[1.5e12, 80 * 2 ** 30], [1.5e12, 80 * 2 ** 30], [1e11, 16e9]])
  tt.same(c.peers[0].links?.p2, { bandwidth: 1.25e9, latency: 0.0005 })
  tt.same(c.peers[0].links?.p3, { bandwidth: 1.25e7, latency: 0.002 }, 'between groups: the slower link, the larger latency')
  tt.same(parsePeersSpec('3x1T').peers.map(p => p.links), [undefined, undefined, undefined], 'no @: unknown links')
  for (const bad of ['', 'x300T', '8x', '8x300Q@1G', '8x300T@', '0x1T', '8x300T@1G/5', '8x300T:80XB', '2000x1T']) {
    try {
      parsePeersSpec(bad)
      tt.fail(`'${bad}': expected BAD_ARGUMENT`)
    } catch (err) {
      tt.equal((err as LumiereError).code, 'BAD_ARGUMENT', `'${bad}' refused`)
    }
  }
})

t.test('paper on the spec meshes: simulation agrees with the plans', async tt => {
  const dag = buildDag(buildStunet(getPreset('paper'), { weights: 'none' }), { dims: { batch: 1 } })
  for (const text of ['8x300T@1G', '4x20T@10G']) {
    const spec = parsePeersSpec(text)
    const r = partitionAll(dag, spec.peers, { stages: spec.peers.length, placement: 'auto' })
    for (const [label, plan] of [['contiguous', r.contiguous], ['folded', r.folded]] as const) {
      if (plan === null) continue
      const s = simulate(plan, spec.peers, { microBatches: 2, coordinatorLink: spec.coordinatorLink ?? undefined })
      tt.equal(s.wireBytesPerStep, plan.totals.wireBytes * 2)
      tt.ok(s.secondsPerStep >= Math.max(...s.peers.map(p => p.busySeconds)) - 1e-9, `${text} ${label}: a step lasts at least the busiest peer's compute`)
      tt.ok(s.secondsPerStep >= s.busiestLinkSeconds - 1e-9, `${text} ${label}: and the busiest link's transfers`)
      tt.comment(`paper ${text} ${label}: ${plan.stages.length} stages, wire ${(plan.totals.wireBytes / 1e6).toFixed(1)} MB/pass, bottleneck ${planBottleneck(plan).toFixed(3)} s, simulated ${s.secondsPerStep.toFixed(3)} s/step (M=2)`)
    }
  }
})

/** Runs `lumiere plan ARGS` in this process, returning what it printed. */
async function planCli (args: string[]): Promise<string> {
  const lines: string[] = []
  const log = console.log
  console.log = (...xs: unknown[]) => { lines.push(xs.map(String).join(' ')) }
  try {
    await planCommand().exitOverride().parseAsync(args, { from: 'user' })
  } finally {
    console.log = log
  }
  return lines.join('\n')
}

t.test('lumiere plan --simulate --peers-spec', async tt => {
  const out = JSON.parse(await planCli(['--model', 'tiny', '--simulate', '--peers-spec', '3x1T@1G', '--micro-batches', '3', '--json'])) as {
    chosen: string, microBatches: number, contiguous: unknown, folded: unknown, onePeer: unknown,
    simulation: { contiguous: { secondsPerStep: number, wireBytesPerStep: number }, folded: { secondsPerStep: number }, onePeer: { wireBytesPerStep: number } }
  }
  tt.equal(out.microBatches, 3)
  const c = parsePlan(out.contiguous)
  parsePlan(out.folded)
  tt.equal(c.stages.length, 3, '--stages defaults to the spec\'s peer count')
  tt.equal(out.simulation.contiguous.wireBytesPerStep, c.totals.wireBytes * 3)
  tt.ok(out.simulation.folded.secondsPerStep > 0)
  tt.ok(['contiguous', 'folded', 'folded (= contiguous)'].includes(out.chosen))
  // The reference a pipeline must beat: the whole model on one peer.
  tt.equal(parsePlan(out.onePeer).stages.length, 1, 'one-peer reference plan')
  tt.equal(out.simulation.onePeer.wireBytesPerStep, parsePlan(out.onePeer).totals.wireBytes * 3)
  const text = await planCli(['--model', 'tiny', '--stages', '2', '--simulate', '--peers-spec', '2x1T@1G'])
  tt.match(text, /placement\s+stages\s+peers\s+bottleneck\s+wire\/pass\s+wire\/step \(M=2\)\s+s\/step \(sim\.\)/)
  tt.match(text, /\ncontiguous\s+2\s+2\s/)
  tt.match(text, /\nfolded/)
  tt.match(text, /\none peer\s+1\s+1\s/)
  tt.match(text, /== contiguous plan ==/)
  // On slow links the paper preset runs faster on one peer than pipelined, and the table says so.
  const slow = await planCli(['--model', 'paper', '--simulate', '--peers-spec', '4x300T@1G'])
  tt.match(slow, /\none peer\s+1\s+1\s/)
  tt.match(slow, /note: one peer alone is faster/)
  tt.match(text, /chosen \(--placement auto\): (contiguous|folded)/)
  await tt.rejects(planCli(['--model', 'tiny', '--peers-spec', '2x']), { code: 'BAD_ARGUMENT' })
  // --peers without a multiaddr is a spec (the spelling), and plans the same.
  tt.equal(await planCli(['--model', 'tiny', '--simulate', '--peers', '3x1T@1G', '--micro-batches', '3', '--json']), JSON.stringify(out), '--peers SPEC = --peers-spec SPEC')
  tt.equal(await planCli(['--model', 'tiny', '--stages', '2', '--peers', '1x1T@1G,1x2T@1G']), await planCli(['--model', 'tiny', '--stages', '2', '--peers-spec', '1x1T@1G,1x2T@1G']), 'groups split at commas are joined again')
  await tt.rejects(planCli(['--model', 'tiny', '--peers', '2x']), { code: 'BAD_ARGUMENT', message: /bad peer spec '2x'/ })
  await tt.rejects(planCli(['--model', 'nosuchmodel', '--stages', '2']), { code: 'BAD_ARGUMENT' })
})
