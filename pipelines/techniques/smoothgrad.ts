/**
 * `smoothgrad` (Smilkov et al. 2017): the input gradient averaged over noisy copies of the image,
 * which removes much of the pixel-level noise of plain saliency maps.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { absMax, commonParams, inputGradient, inputRange, runAttribution, timesInput } from '../engines/attribution';
import { defineTechnique } from '../technique';

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
        const noisy = tf.add(tf.tile(x, [S, 1, 1, 1]), tf.tensor4d(noise, [S * B, H, W, C])) as tf.Tensor4D;
        const all = inputGradient(ctx.model.executor, noisy, Array.from({ length: S }, () => targets).flat());
        const g = tf.mean(tf.reshape(all, [S, B, H, W, C]), 0);
        return { maps: { gradient: absMax(g), 'gradient-x-input': timesInput(g, x) } };
      },
      notes: [`noise σ = ${ctx.params.noise} × input range (${range.min} to ${range.max}) = ${sigma}; ${S} samples per image; gradients averaged before taking |·| or multiplying by the (noise-free) input`],
    });
    return { ...data, sigma, samples: S };
  },
});
