/**
 * `texture-synthesis` (Gatys et al. 2015): from noise, match the Gram matrices (channel
 * co-activation statistics, positions summed out) of several layers of a perceptual network
 * computed on a source texture. Two networks side by side by default, on the same sources: random
 * filters at several scales (Ustyuzhaninov et al. 2017; reproducible, downloaded from nowhere) and
 * the ImageNet-initialised MobileNetV2 backbone shipped in nsfwjs. How close the random net comes
 * is itself the lesson.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { gram, gramMatch, imageTile, optimizeImage, readImage, roundLosses } from '../engines/optimize-image';
import { openPerceptual, perceptualNet, perceptualParam, resolveImage, type PerceptualParam } from '../engines/perceptual';
import { Rng, seedFrom } from '../rng';
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

/** One network's syntheses of every source. */
export interface TextureRun {
  network: string;
  kind: 'random' | 'mobilenet-v2' | 'model';
  /** where the network's weights come from and what of it was used (shown on the page). */
  attribution: string;
  layers: string[];
  size: number;
  textures: TextureEntry[];
}

export interface TextureData {
  steps: number;
  lr: number;
  /** perceptualModel first, then compareWith (same sources, same seed, same settings). */
  runs: TextureRun[];
}

const params = z.object({
  textures: z.array(z.string()).min(1).default(['images/gravel.png', 'images/brick.png', 'images/grass.png', 'images/scream.png'])
    .describe('source images, relative to the report folder, else among the built-in images (assets/images/LICENSES.md)'),
  size: z.number().int().min(16).max(512).default(128).describe('side of the source and synthesised images, px (a model perceptual net uses its own input size)'),
  steps: z.number().int().min(0).max(4096).default(300).describe('Adam steps (Gatys et al. used 2 000 L-BFGS iterations)'),
  lr: z.number().positive().default(0.05).describe('Adam learning rate'),
  param: z.enum(['fourier', 'pixel']).default('fourier').describe('image parameterisation (both with decorrelated colour)'),
  layers: z.array(z.string()).optional().describe('Gram layers of perceptualModel; default: every level of the random net, the MobileNetV2 backbone\'s five expansion ReLUs (1/2 … 1/16 scale), or the model net\'s styleLayers'),
  perceptualModel: perceptualParam,
  compareWith: perceptualNet.nullable().default({ kind: 'mobilenet-v2' })
    .describe('a second network run on the same textures with the same settings and shown side by side (its own default layers); null: none'),
});

export default defineTechnique({
  id: 'texture-synthesis',
  title: 'Texture synthesis',
  summary: 'New images with the same feature statistics (Gram matrices) as a source texture, synthesised from noise through a perceptual network.',
  family: 'optimization',
  version: 3,
  params,
  // one network in the preview: the MobileNetV2 backbone's gradient costs seconds per step on the cpu backend (test/perceptual.test.ts covers it)
  quick: { steps: 3, size: 80, textures: ['images/gravel.png'], compareWith: null },
  async run(ctx): Promise<TextureData> {
    const p = ctx.params;
    const nets: { spec: PerceptualParam; layers?: string[] }[] = [{ spec: p.perceptualModel, layers: p.layers }];
    if (p.compareWith) nets.push({ spec: p.compareWith });
    const runs: TextureRun[] = [];
    for (const [n, { spec, layers: wanted }] of nets.entries()) {
      const net = await openPerceptual(spec, ctx.report.dir);
      try {
        const size = net.inputSize ? net.inputSize[0] : p.size;
        const width = net.inputSize ? net.inputSize[1] : p.size;
        if (size !== width) throw new Error(`texture-synthesis: the perceptual model's input must be square, it is ${size}×${width}`);
        const layers = wanted ?? net.defaultStyleLayers;
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
            const r = await optimizeImage({
              batch: 1, height: size, width: size, channels: 3,
              // Lucid's Fourier + decorrelated colour: gradients from the coarse (pooled) levels
              // otherwise land in flat 2^l-px blocks and leave a blocky image
              param: { kind: p.param, decorrelate: true, sd: p.param === 'fourier' ? 0.05 : 0.5, decayPower: 1 }, transforms: null,
              terms, forward: net.forward, steps: p.steps, lr: p.lr, rng: new Rng(seedFrom(`${ctx.rng.seed}:texture:${i}`)), // same start noise for every network
            });
            const base = `texture-${n}-${i}`;
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
            ctx.log(`${net.kind} ${file}: ${p.steps} steps in ${r.seconds.toFixed(1)} s`);
          } finally {
            tf.dispose(targets);
          }
          ctx.progress(n * p.textures.length + i + 1, nets.length * p.textures.length);
        }
        runs.push({ network: net.id, kind: net.kind, attribution: net.attribution, layers, size, textures });
      } finally {
        net.dispose();
      }
    }
    return { steps: p.steps, lr: p.lr, runs };
  },
});
