// The speed figure a peer reports: re-measured only when idle and not too
// often, keeping the best, and measured for real in an ORT executor.
import t from 'tap'
import { SpeedFigure, measureSpeed } from '../peer/capabilities.ts'
import { Executor } from '../peer/executor.ts'

function scripted (figures: Array<number | Error>): { measure: () => Promise<number>, calls: () => number } {
  let n = 0
  return {
    measure: async () => {
      const f = figures[n++]
      if (f instanceof Error) throw f
      return f
    },
    calls: () => n
  }
}

t.test('keeps the best of its measures', async (t) => {
  const s = scripted([3, 2])
  const figure = new SpeedFigure(s.measure, () => true, 1, 0)
  t.equal(figure.value, 1, 'value measures nothing')
  t.equal(s.calls(), 0)
  t.equal(await figure.get(), 3, 'a faster re-measure raises it')
  t.equal(await figure.get(), 3, 'a slower one does not lower it')
  t.equal(s.calls(), 2)
  t.equal(figure.value, 3)
})

t.test('measures only while idle, at most once an interval, once for concurrent asks', async (t) => {
  let idle = false
  const s = scripted([5, 7])
  const figure = new SpeedFigure(s.measure, () => idle, 1, 0)
  t.equal(await figure.get(), 1, 'busy: the figure as it was')
  t.equal(s.calls(), 0, 'and nothing measured')
  idle = true
  t.same(await Promise.all([figure.get(), figure.get(), figure.get()]), [5, 5, 5], 'concurrent asks share one measure')
  t.equal(s.calls(), 1)
  const slow = new SpeedFigure(s.measure, () => true, 1, 60_000)
  t.equal(await slow.get(), 7, 'the first ask measures again')
  t.equal(await slow.get(), 7, 'the next, within the interval, does not')
  t.equal(s.calls(), 2)
})

t.test('a failed re-measure leaves the figure', async (t) => {
  const s = scripted([new Error('executor closed'), 4])
  const figure = new SpeedFigure(s.measure, () => true, 2, 0)
  t.equal(await figure.get(), 2, 'kept')
  t.equal(await figure.get(), 4, 'and the next measure counts')
})

t.test('measureSpeed times a real MatMul, again and again', async (t) => {
  const executor = new Executor({ threads: 1 })
  t.teardown(async () => { await executor.close() })
  const first = await measureSpeed(executor)
  const second = await measureSpeed(executor)
  t.ok(first > 0.05 && first < 1e5, `a plausible GFLOP/s figure (${first.toFixed(1)})`)
  t.ok(second > 0.05 && second < 1e5, `the graph stays loaded for the next (${second.toFixed(1)})`)
  t.ok(executor.idle, 'idle after')
})
