/**
 * `smoothgrad` (Smilkov et al. 2017): the input gradient averaged over noisy copies of the image,
 * which removes much of the pixel-level noise of plain saliency maps.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { absMax, commonParams, inputGradient, inputRange, runAttribution, timesInput } from '../engines/attribution';
import type { GraphExecutor } from '../model/graph';
import { defineTechnique } from '../technique';

/**
 * Activations (floats, summed over every layer) one gradient call may hold. All noisy copies of a
 * batch in one call is fastest on small models, but a 224-px VGG16 holds ~15 M floats per image and
 * 25 copies × a batch aborted wasm (its heap stops at 4 GB); beyond this budget the copies go in chunks.
 */
const ACTIVATION_BUDGET = 2 ** 27;

/** Noisy copies per gradient call for a batch of B images, within the activation budget. */
export function samplesPerCall(executor: GraphExecutor, B: number, S: number): number {
  const perImage = executor.nodes.reduce((sum, n) => sum + n.outputShape.reduce((a, d) => a * Math.max(1, d), 1), 0);
  return Math.max(1, Math.min(S, Math.floor(ACTIVATION_BUDGET / (perImage * B))));
}

export default defineTechnique({
  id: 'smoothgrad',
  title: 'SmoothGrad',
  summary: 'Saliency averaged over many noisy copies of the image: sharper, less speckled maps of what the class score depends on.',
  family: 'attribution',
  version: 1,
  needs: ['features'],
  params: z.object({
    ...commonParams,
    batchSize: commonParams.batchSize.default(4),
    noise: z.number().min(0).max(1).default(0.15).describe('noise standard deviation as a fraction of the input value range'),
    samples: z.number().int().min(1).max(500).default(25).describe('noisy copies averaged per image'),
    samplesPerCall: z.number().int().min(1).optional().describe('noisy copies per gradient call; default: as many as fit a fixed activation-memory budget (all of them on small models)'),
  }),
  async run(ctx) {
    const range = inputRange(ctx.dataset);
    const sigma = ctx.params.noise * (range.max - range.min);
    const S = ctx.params.samples;
    const data = await runAttribution(ctx, {
      technique: 'smoothgrad',
      kinds: [
        { name: 'gradient', title: '|mean noisy gradient| (max over channels)', signed: false },
        { name: 'gradient-x-input', title: 'mean noisy gradient × input (sum over channels)', signed: true },
      ],
      compute: (x, targets) => {
        const [B, H, W, C] = x.shape;
        // noise from the seeded rng, so a rebuild reproduces the same maps
        const noise = new Float32Array(S * B * H * W * C);
        if (sigma > 0) for (let i = 0; i < noise.length; i++) noise[i] = sigma * ctx.rng.normal();
        // sum the copies' gradients chunk by chunk (one chunk, i.e. one call, on small models)
        const k = Math.min(S, ctx.params.samplesPerCall ?? samplesPerCall(ctx.model.executor, B, S));
        let sum: tf.Tensor4D | undefined;
        for (let s0 = 0; s0 < S; s0 += k) {
          const n = Math.min(k, S - s0);
          const next = tf.tidy(() => {
            const chunk = tf.tensor4d(noise.subarray(s0 * B * H * W * C, (s0 + n) * B * H * W * C), [n * B, H, W, C]);
            const noisy = tf.add(tf.tile(x, [n, 1, 1, 1]), chunk) as tf.Tensor4D;
            const grads = inputGradient(ctx.model.executor, noisy, Array.from({ length: n }, () => targets).flat());
            const part = tf.sum(tf.reshape(grads, [n, B, H, W, C]), 0) as tf.Tensor4D;
            return sum ? tf.add(sum, part) as tf.Tensor4D : part;
          });
          sum?.dispose();
          sum = next;
        }
        const g = tf.div(sum!, S) as tf.Tensor4D;
        return { maps: { gradient: absMax(g), 'gradient-x-input': timesInput(g, x) } };
      },
      notes: [`noise σ = ${ctx.params.noise} × input range (${range.min} to ${range.max}) = ${sigma}; ${S} samples per image; gradients averaged before taking |·| or multiplying by the (noise-free) input`],
    });
    return { ...data, sigma, samples: S };
  },
});
