import t from 'tap'
import { cinemagraph, imageToVideo, inpainting, maskedCondition, maskFrames, modelInput, noCondition } from '../src/media/conditions.ts'

const T = 4
const H = 2
const W = 3
const N = H * W

/** A [3, H, W] image with distinct non-zero values. */
const image = { data: Float32Array.from({ length: 3 * N }, (_, i) => 0.1 + i / 40), shape: [3, H, W] }
/** A [3, T, H, W] video with distinct non-zero values. */
const video = { data: Float32Array.from({ length: 3 * T * N }, (_, i) => -0.9 + i / 50), shape: [3, T, H, W] }
/** A [1, H, W] mask: 0 (generate) in the middle column, 1 (known) elsewhere. */
const mask = { data: Float32Array.from([1, 0, 1, 1, 0, 1]), shape: [1, H, W] }

const img = (c: number, i: number): number => image.data[c * N + i]
const vid = (c: number, f: number, i: number): number => video.data[(c * T + f) * N + i]
const at = (a: { data: Float32Array }, c: number, f: number, i: number): number => a.data[(c * T + f) * N + i]

t.test('image-to-video: C = image on frame 0 then blank (0); M = 1 on frame 0, 0 elsewhere', async t => {
  const { condition, mask: m } = imageToVideo(image, T)
  t.same(condition.shape, [3, T, H, W])
  t.same(m.shape, [1, T, H, W])
  for (let c = 0; c < 3; c++) for (let f = 0; f < T; f++) for (let i = 0; i < N; i++) {
    if (at(condition, c, f, i) !== (f === 0 ? img(c, i) : 0)) t.fail(`C[${c},${f},${i}]`)
  }
  for (let f = 0; f < T; f++) for (let i = 0; i < N; i++) if (m.data[f * N + i] !== (f === 0 ? 1 : 0)) t.fail(`M[${f},${i}]`)
  t.pass('matches the table')
  t.same(Array.from(maskedCondition(condition, m).data), Array.from(condition.data), 'C is already masked')
})

t.test('inpainting: C = video·M; M = mask on every frame (0 inside the region, 1 outside)', async t => {
  const { condition, mask: m } = inpainting(video, mask)
  t.same(m.shape, [1, T, H, W])
  for (let f = 0; f < T; f++) t.same(Array.from(m.data.subarray(f * N, (f + 1) * N)), Array.from(mask.data), `frame ${f} mask`)
  for (let c = 0; c < 3; c++) for (let f = 0; f < T; f++) for (let i = 0; i < N; i++) {
    const want = mask.data[i] === 1 ? vid(c, f, i) : 0
    if (at(condition, c, f, i) !== want) t.fail(`C[${c},${f},${i}] = ${at(condition, c, f, i)}, want ${want}`)
  }
  t.pass('known pixels are the video, the region to fill is 0')
  // A video mask [1, T, H, W] is used frame by frame; a [1, 3, T, H, W] batch of one is accepted.
  const moving = { data: Float32Array.from({ length: T * N }, (_, k) => (k % N) === (Math.floor(k / N) % N) ? 0 : 1), shape: [1, T, H, W] }
  const r = inpainting({ data: video.data, shape: [1, 3, T, H, W] }, moving)
  t.same(Array.from(r.mask.data), Array.from(moving.data))
  t.equal(r.condition.data[0], 0, 'frame 0 pixel 0 is in the region')
  t.equal(r.condition.data[1], vid(0, 0, 1))
  t.throws(() => inpainting(video, { data: new Float32Array(4), shape: [1, 2, 2] }), { code: 'INPUT_MISMATCH' })
  t.throws(() => inpainting(video, { data: new Float32Array(2 * N), shape: [1, 2, H, W] }), { code: 'INPUT_MISMATCH' })
  t.throws(() => inpainting(video, { data: Float32Array.from([1, 0, 2, 1, 0, 1]), shape: [1, H, W] }), { code: 'BAD_ARGUMENT' }, 'mask values outside [0, 1]')
})

t.test('cinemagraph: C = image on every frame, masked; M = frame 0 all 1, later frames the mask', async t => {
  const { condition, mask: m } = cinemagraph(image, mask, T)
  for (let f = 0; f < T; f++) for (let i = 0; i < N; i++) {
    const want = f === 0 ? 1 : mask.data[i]
    if (m.data[f * N + i] !== want) t.fail(`M[${f},${i}]`)
  }
  for (let c = 0; c < 3; c++) for (let f = 0; f < T; f++) for (let i = 0; i < N; i++) {
    const want = f === 0 || mask.data[i] === 1 ? img(c, i) : 0
    if (at(condition, c, f, i) !== want) t.fail(`C[${c},${f},${i}]`)
  }
  t.pass('frame 0 is the whole image; later frames keep it outside the region')
  t.same(Array.from(mask.data), [1, 0, 1, 1, 0, 1], 'the caller\'s mask is not modified')
})

t.test('maskedCondition and the 7-channel model input', async t => {
  const { condition, mask: m } = inpainting(video, mask)
  const noisy = { data: Float32Array.from({ length: 3 * T * N }, (_, i) => Math.cos(i)), shape: [3, T, H, W] }
  const x7 = modelInput(noisy, video, m) // C is masked inside
  t.same(x7.shape, [1, 7, T, H, W])
  const n = T * N
  t.same(Array.from(x7.data.subarray(0, 3 * n)), Array.from(noisy.data), 'channels 0–2: noisy video')
  t.same(Array.from(x7.data.subarray(3 * n, 6 * n)), Array.from(condition.data), 'channels 3–5: C·M')
  t.same(Array.from(x7.data.subarray(6 * n)), Array.from(m.data), 'channel 6: M')
  t.same(Array.from(modelInput(noisy, condition, mask).data), Array.from(x7.data), 'masked C and a [1, H, W] mask give the same input')
  const mc = maskedCondition(video, mask)
  t.same(Array.from(mc.data), Array.from(condition.data))
  t.same(maskFrames(mask, { T: 2, H, W }).shape, [1, 2, H, W])
  t.throws(() => modelInput({ data: new Float32Array(3 * N), shape: [3, 1, H, W] }, video, m), { code: 'INPUT_MISMATCH' })
  const none = noCondition(T, H, W)
  t.ok(none.condition.data.every(v => v === 0) && none.mask.data.every(v => v === 0), 'text-to-video: C = 0, M = 0')
  t.throws(() => imageToVideo({ data: new Float32Array(N), shape: [1, H, W] }, T), { code: 'BAD_ARGUMENT' })
  t.throws(() => imageToVideo(image, 0), { code: 'BAD_ARGUMENT' })
})
