import { LumiereError } from '../src/errors.ts'
import { cinemagraph, imageToVideo, inpainting, noCondition } from '../src/media/conditions.ts'
import { readImage } from '../src/media/read-image.ts'
import { readMask } from '../src/media/read-mask.ts'
import { readVideo } from '../src/media/read-video.ts'
import type { KnownRegion } from '../src/diffusion/known-region.ts'
import type { Conditioning } from '../src/media/conditions.ts'

/** What the user gave besides the prompt. */
export interface ApplicationInputs {
  image?: string
  video?: string
  mask?: string
  cinemagraph?: boolean
  /** SDEdit: noise the input video to this level in [0, 1], denoise from there. */
  strength?: number
}

export type Application = 'text-to-video' | 'image-to-video' | 'inpainting' | 'cinemagraph' | 'video-to-video'

/**
 * Which application a set of inputs asks for (DESIGN §1's table), refusing
 * combinations that mean nothing:
 * - `--image` → image-to-video; `--image --mask --cinemagraph` → cinemagraph;
 * - `--video --mask` → inpainting; `--video --strength s` → video-to-video (SDEdit);
 * - nothing → text-to-video.
 */
export function chooseApplication (inputs: ApplicationInputs): Application {
  const { image, video, mask, strength } = inputs
  const cine = inputs.cinemagraph === true
  if (image != null && video != null) throw new LumiereError('BAD_ARGUMENT', 'give --image or --video, not both')
  if (strength != null && (video == null || mask != null)) throw new LumiereError('BAD_ARGUMENT', '--strength is for video-to-video: give it with --video and without --mask')
  if (strength != null && !(strength >= 0 && strength <= 1)) throw new LumiereError('BAD_ARGUMENT', `--strength must be in [0, 1], got ${strength}`)
  if (cine && (image == null || mask == null)) throw new LumiereError('BAD_ARGUMENT', '--cinemagraph needs --image and --mask (white = the region to animate)')
  if (image != null) {
    if (cine) return 'cinemagraph'
    if (mask != null) throw new LumiereError('BAD_ARGUMENT', '--image with --mask makes a cinemagraph: add --cinemagraph (or drop --mask for image-to-video)')
    return 'image-to-video'
  }
  if (video != null) {
    if (mask != null) return 'inpainting'
    if (strength != null) return 'video-to-video'
    throw new LumiereError('BAD_ARGUMENT', '--video needs --mask (inpainting) or --strength (video-to-video)')
  }
  if (mask != null) throw new LumiereError('BAD_ARGUMENT', '--mask needs --video (inpainting) or --image --cinemagraph')
  return 'text-to-video'
}

/** The applications that feed a condition video and mask to a 7-channel model. */
export function isConditional (app: Application): boolean {
  return app === 'image-to-video' || app === 'inpainting' || app === 'cinemagraph'
}

/** Reads and fits the user's media for one clip size, as condition and mask. */
export async function loadConditioning (app: Application, inputs: ApplicationInputs, size: { frames: number, height: number, width: number }, signal?: AbortSignal): Promise<Conditioning> {
  const { frames, height, width } = size
  switch (app) {
    case 'image-to-video':
      return imageToVideo(await readImage(inputs.image ?? '', { width, height, signal }), frames)
    case 'inpainting':
      return inpainting(await readVideo(inputs.video ?? '', { width, height, frames, signal }), await readMask(inputs.mask ?? '', { width, height, frames, signal }))
    case 'cinemagraph':
      return cinemagraph(await readImage(inputs.image ?? '', { width, height, signal }), await readMask(inputs.mask ?? '', { width, height, signal }), frames)
    default:
      return noCondition(frames, height, width)
  }
}

/** The input video of video-to-video, fitted to the clip. */
export async function loadInitVideo (inputs: ApplicationInputs, size: { frames: number, height: number, width: number }, signal?: AbortSignal): Promise<Float32Array> {
  return (await readVideo(inputs.video ?? '', { ...size, signal })).data
}

/** A conditioning as the known region the sampler keeps. */
export function knownRegion (c: Conditioning): KnownRegion {
  return { condition: c.condition.data, mask: c.mask.data, channels: 3 }
}
