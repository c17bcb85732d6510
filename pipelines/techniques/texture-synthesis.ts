/**
 * `texture-synthesis` (Gatys et al. 2015): from noise, match the Gram matrices (channel
 * co-activation statistics, positions summed out) of several layers of a perceptual network
 * computed on a source texture. Default network: random filters at several scales
 * (Ustyuzhaninov et al. 2017), reproducible and downloaded from nowhere.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { gram, gramMatch, imageTile, optimizeImage, readImage, roundLosses } from '../engines/optimize-image';
import { openPerceptual, perceptualParam, resolveImage } from '../engines/perceptual';
import { defineTechnique } from '../technique';

export interface TextureEntry {
  /** the file named in params (as given). */
  source: string;
  /** PNG of the source as the network saw it (resized). */
  sourcePng: string;
  /** PNG of the synthesised texture. */
  result: string;
  raw: string;
  /** loss per step (Σ over layers of relative Gram error), then on the final image. */
  losses: number[];
  /** relative Gram error per layer on the final image. */
  finalPerLayer: Record<string, number>;
  seconds: number;
}

export interface TextureData {
  network: string;
  layers: string[];
  size: number;
  steps: number;
  lr: number;
  textures: TextureEntry[];
}

const params = z.object({
  textures: z.array(z.string()).min(1).default(['images/gravel.png', 'images/brick.png', 'images/grass.png', 'images/scream.png'])
    .describe('source images, relative to the report folder, else among the built-in images (assets/images/LICENSES.md)'),
  size: z.number().int().min(16).max(512).default(128).describe('side of the source and synthesised images, px (a model perceptual net uses its own input size)'),
  steps: z.number().int().min(0).max(4096).default(300).describe('Adam steps (Gatys et al. used 2 000 L-BFGS iterations)'),
  lr: z.number().positive().default(0.05).describe('Adam learning rate'),
  param: z.enum(['fourier', 'pixel']).default('fourier').describe('image parameterisation (both with decorrelated colour)'),
  layers: z.array(z.string()).optional().describe('Gram layers; default: every level of the random net, or the model net\'s styleLayers'),
  perceptualModel: perceptualParam,
});

export default defineTechnique({
  id: 'texture-synthesis',
  title: 'Texture synthesis',
  summary: 'New images with the same feature statistics (Gram matrices) as a source texture, synthesised from noise through a perceptual network.',
  family: 'optimization',
  version: 1,
  params,
  quick: { steps: 3, size: 80, textures: ['images/gravel.png'] },
  async run(ctx): Promise<TextureData> {
    const p = ctx.params;
    const net = await openPerceptual(p.perceptualModel, ctx.report.dir);
    try {
      const size = net.inputSize ? net.inputSize[0] : p.size;
      const width = net.inputSize ? net.inputSize[1] : p.size;
      if (size !== width) throw new Error(`texture-synthesis: the perceptual model's input must be square, it is ${size}×${width}`);
      const layers = p.layers ?? net.defaultStyleLayers;
      const shape: [number, number, number, number] = [1, size, size, 3];
      const textures: TextureEntry[] = [];
      for (const [i, file] of p.textures.entries()) {
        const src = await readImage(resolveImage(file, ctx.report.dir), size, 3);
        const targets = tf.tidy(() => {
          const acts = net.forward(tf.tensor4d(src, shape), layers);
          return layers.map((l) => gram(acts[l] as tf.Tensor4D));
        });
        try {
          const terms = layers.map((l, j) => gramMatch(l, targets[j]));
          const r = optimizeImage({
            batch: 1, height: size, width: size, channels: 3,
            // Lucid's Fourier + decorrelated colour: gradients from the coarse (pooled) levels
            // otherwise land in flat 2^l-px blocks and leave a blocky image
            param: { kind: p.param, decorrelate: true, sd: p.param === 'fourier' ? 0.05 : 0.5, decayPower: 1 }, transforms: null,
            terms, forward: net.forward, steps: p.steps, lr: p.lr, rng: ctx.rng,
          });
          const base = `texture-${i}`;
          const s = imageTile(src, shape, 0);
          const t = imageTile(r.images, r.shape, 0);
          textures.push({
            source: file,
            sourcePng: await ctx.out.png(`${base}-source.png`, s.pixels, s.width, s.height, s.channels),
            result: await ctx.out.png(`${base}.png`, t.pixels, t.width, t.height, t.channels),
            raw: await ctx.out.float32(base, r.images, r.shape),
            losses: roundLosses(r.losses),
            finalPerLayer: Object.fromEntries(layers.map((l) => [l, Number(r.finalTerms[`Gram match @ ${l}`].toPrecision(5))])),
            seconds: r.seconds,
          });
          ctx.log(`${file}: ${p.steps} steps in ${r.seconds.toFixed(1)} s`);
        } finally {
          tf.dispose(targets);
        }
        ctx.progress(i + 1, p.textures.length);
      }
      return { network: net.id, layers, size, steps: p.steps, lr: p.lr, textures };
    } finally {
      net.dispose();
    }
  },
});
