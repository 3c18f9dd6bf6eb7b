import t from 'tap'
import { checkWindows, planWindows } from '../src/ssr/windows.ts'

const ranges = (frames: number, length: number, stride: number): Array<[number, number]> =>
  planWindows(frames, length, stride).windows.map(w => [w.start, w.end])

t.test('window plans', async (tt) => {
  tt.same(ranges(16, 8, 4), [[0, 8], [4, 12], [8, 16]], 'T=16 L=8 S=4: stride divides T − L')
  tt.equal(planWindows(16, 8, 4).redundancy, 1.5)
  tt.same(ranges(16, 8, 8), [[0, 8], [8, 16]], 'T=16 L=8 S=8: no overlap')
  tt.equal(planWindows(16, 8, 8).redundancy, 1)
  tt.same(ranges(18, 8, 4), [[0, 8], [4, 12], [8, 16], [10, 18]], 'T=18 L=8 S=4: end-aligned tail added')
  tt.equal(planWindows(18, 8, 4).redundancy, 32 / 18)
  tt.same(ranges(8, 8, 4), [[0, 8]], 'T=8 L=8 S=4: one window')
  tt.equal(planWindows(8, 8, 4).redundancy, 1)
  tt.same(ranges(18, 8, 8), [[0, 8], [8, 16], [10, 18]], 'non-overlapping stride still gets the tail')
  tt.same(ranges(80, 16, 16), [[0, 16], [16, 32], [32, 48], [48, 64], [64, 80]], 'paper-sized clip, L | T')
  tt.same(ranges(5, 1, 1), [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5]], 'L = 1')
  tt.same(ranges(1, 1, 1), [[0, 1]], 'one frame')
  tt.same(ranges(10, 4, 3), [[0, 4], [3, 7], [6, 10]], 'S = 3 dividing T − L')
  tt.same(ranges(11, 4, 3), [[0, 4], [3, 7], [6, 10], [7, 11]], 'S = 3 not dividing T − L')
})

t.test('every plan covers every frame with windows of length L, in order', async (tt) => {
  let plans = 0
  for (let T = 1; T <= 40; T++) {
    for (let L = 1; L <= T; L++) {
      for (let S = 1; S <= L; S++) {
        const { windows, redundancy } = planWindows(T, L, S)
        checkWindows(windows, T)
        if (!windows.every(w => w.end - w.start === L)) tt.fail(`T=${T} L=${L} S=${S}: a window is not L long`)
        if (windows[0].start !== 0 || windows[windows.length - 1].end !== T) tt.fail(`T=${T} L=${L} S=${S}: does not span the clip`)
        for (let i = 1; i < windows.length; i++) {
          if (windows[i].start <= windows[i - 1].start) tt.fail(`T=${T} L=${L} S=${S}: starts not increasing`)
          if (windows[i].start - windows[i - 1].start > S) tt.fail(`T=${T} L=${L} S=${S}: a gap wider than the stride`)
        }
        // exactly ceil((T − L)/S) + 1 windows
        if (windows.length !== Math.ceil((T - L) / S) + 1) tt.fail(`T=${T} L=${L} S=${S}: ${windows.length} windows`)
        if (redundancy !== windows.length * L / T) tt.fail('redundancy')
        plans++
      }
    }
  }
  tt.pass(`${plans} plans checked`)
})

t.test('refusals say what to change', async (tt) => {
  tt.throws(() => planWindows(8, 9, 4), { code: 'BAD_ARGUMENT', message: /window length 9 is longer than the clip \(8 frames\): use a window length ≤ 8/ })
  tt.throws(() => planWindows(16, 8, 9), { code: 'BAD_ARGUMENT', message: /stride 9 is longer than the window length 8.*use a stride ≤ 8/ })
  tt.throws(() => planWindows(16, 8, 0), { code: 'BAD_ARGUMENT', message: /stride must be a whole number ≥ 1/ })
  tt.throws(() => planWindows(16, 8, -1), { code: 'BAD_ARGUMENT' })
  tt.throws(() => planWindows(16, 8, 2.5), { code: 'BAD_ARGUMENT', message: /stride/ })
  tt.throws(() => planWindows(16, 7.5, 2), { code: 'BAD_ARGUMENT', message: /length/ })
  tt.throws(() => planWindows(16.5, 8, 2), { code: 'BAD_ARGUMENT', message: /frames/ })
  tt.throws(() => planWindows(0, 1, 1), { code: 'BAD_ARGUMENT' })
  tt.throws(() => planWindows(16, 0, 1), { code: 'BAD_ARGUMENT' })
  tt.throws(() => planWindows(NaN, 8, 4), { code: 'BAD_ARGUMENT' })
  tt.throws(() => checkWindows([{ start: 0, end: 4 }, { start: 5, end: 8 }], 8), { code: 'BAD_ARGUMENT', message: /frame 4 is in no window/ })
  tt.throws(() => checkWindows([{ start: 0, end: 9 }], 8), { code: 'BAD_ARGUMENT' })
  tt.throws(() => checkWindows([], 8), { code: 'BAD_ARGUMENT' })
})
