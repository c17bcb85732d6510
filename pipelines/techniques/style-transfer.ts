/**
 * `style-transfer` (Gatys et al. 2016): match the content image's activations at one deeper
 * layer (content) and the Gram matrices of a style image at several layers. By default the
 * image is parameterised as Lucid does (Fourier coefficients, decorrelated colour) and starts
 * from faint noise; `param: 'pixel'` starts from the content image's pixels as the paper does.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { featureMatch, gram, gramMatch, imageTile, optimizeImage, readImage, roundLosses, totalVariation, type Term } from '../engines/optimize-image';
import { openPerceptual, perceptualNet, resolveImage } from '../engines/perceptual';
import { defineTechnique } from '../technique';

export interface StyleEntry {
  content: string;
  style: string;
  contentPng: string;
  stylePng: string;
  result: string;
  raw: string;
  /** weighted total loss per step, then on the final image. */
  losses: number[];
  /** unweighted final term values: content relative error, per-layer relative Gram errors, TV. */
  finalTerms: Record<string, number>;
  seconds: number;
}

export interface StyleData {
  network: string;
  kind: 'random' | 'mobilenet-v2' | 'model';
  /** where the network's weights come from and what of it was used (shown on the page). */
  attribution: string;
  contentLayer: string;
  styleLayers: string[];
  contentWeight: number;
  styleWeight: number;
  tvWeight: number;
  /** image parameterisation; 'fourier' starts from noise, 'pixel' from the content image. */
  param: 'fourier' | 'pixel';
  size: number;
  steps: number;
  lr: number;
  pairs: StyleEntry[];
}

const params = z.object({
  pairs: z.array(z.object({ content: z.string(), style: z.string() })).min(1)
    .default([
      { content: 'images/chelsea.png', style: 'images/scream.png' },
      { content: 'images/astronaut.png', style: 'images/scream.png' },
      { content: 'images/coffee.png', style: 'images/scream.png' },
    ])
    .describe('content/style image pairs, relative to the report folder, else among the built-in images (assets/images/LICENSES.md)'),
  size: z.number().int().min(16).max(512).default(128).describe('image side, px (a model perceptual net uses its own input size)'),
  steps: z.number().int().min(0).max(4096).default(300).describe('Adam steps'),
  lr: z.number().positive().default(0.05).describe('Adam learning rate'),
  param: z.enum(['fourier', 'pixel']).default('fourier')
    .describe('fourier: Fourier coefficients with decorrelated colour, from faint noise (Lucid); pixel: pixels, from the content image (Gatys et al.)'),
  contentWeight: z.number().min(0).default(1).describe('weight of the content term ‖a(y) − a(c)‖² / ‖a(c)‖²'),
  styleWeight: z.number().min(0).default(0.25).describe('weight of each style layer\'s relative Gram error'),
  tvWeight: z.number().min(0).default(0).describe('total-variation weight (the random net with param: pixel needs about 2 against colour noise)'),
  contentLayer: z.string().optional().describe('default: the network\'s content layer (MobileNetV2 block_6_expand_relu, 1/8 scale; random net level2)'),
  styleLayers: z.array(z.string()).optional().describe('default: the network\'s style layers (MobileNetV2: five expansion ReLU6 layers, 1/2 to 1/16 scale; random net: every level)'),
  perceptualModel: perceptualNet.default({ kind: 'mobilenet-v2' }),
});

export default defineTechnique({
  id: 'style-transfer',
  title: 'Neural style transfer',
  summary: 'The content of one image painted with the feature statistics of another: content matched at a deep layer, style (Gram matrices) at several.',
  family: 'optimization',
  version: 3,
  params,
  quick: { steps: 3, size: 80, pairs: [{ content: 'images/chelsea.png', style: 'images/scream.png' }] },
  async run(ctx): Promise<StyleData> {
    const p = ctx.params;
    const net = await openPerceptual(p.perceptualModel, ctx.report.dir);
    try {
      const size = net.inputSize ? net.inputSize[0] : p.size;
      if (net.inputSize && net.inputSize[0] !== net.inputSize[1]) throw new Error('style-transfer: the perceptual model\'s input must be square');
      const contentLayer = p.contentLayer ?? net.defaultContentLayer;
      const styleLayers = p.styleLayers ?? net.defaultStyleLayers;
      const shape: [number, number, number, number] = [1, size, size, 3];
      const pairs: StyleEntry[] = [];
      for (const [i, pair] of p.pairs.entries()) {
        const content = await readImage(resolveImage(pair.content, ctx.report.dir), size, 3);
        const style = await readImage(resolveImage(pair.style, ctx.report.dir), size, 3);
        const targets = tf.tidy(() => {
          const c = net.forward(tf.tensor4d(content, shape), [contentLayer])[contentLayer];
          const s = net.forward(tf.tensor4d(style, shape), styleLayers);
          return [c, ...styleLayers.map((l) => gram(s[l] as tf.Tensor4D))];
        });
        try {
          const terms: Term[] = [featureMatch(contentLayer, targets[0], p.contentWeight)];
          styleLayers.forEach((l, j) => terms.push(gramMatch(l, targets[j + 1], p.styleWeight)));
          if (p.tvWeight > 0) terms.push(totalVariation(p.tvWeight));
          const r = await optimizeImage({
            batch: 1, height: size, width: size, channels: 3,
            // fourier: the same start as texture synthesis (faint noise, sd 0.05); pixel: the content image, exactly
            param: p.param === 'fourier' ? { kind: 'fourier', decorrelate: true, sd: 0.05, decayPower: 1 } : { kind: 'pixel', decorrelate: false, sd: 0, decayPower: 1 },
            init: p.param === 'pixel' ? content : undefined,
            transforms: null, terms, forward: net.forward, steps: p.steps, lr: p.lr, rng: ctx.rng,
          });
          const tile = (v: Float32Array) => imageTile(v, shape, 0);
          const [c, s, t] = [tile(content), tile(style), tile(r.images)];
          const base = `pair-${i}`;
          pairs.push({
            ...pair,
            contentPng: await ctx.out.png(`${base}-content.png`, c.pixels, c.width, c.height, c.channels),
            stylePng: await ctx.out.png(`${base}-style.png`, s.pixels, s.width, s.height, s.channels),
            result: await ctx.out.png(`${base}.png`, t.pixels, t.width, t.height, t.channels),
            raw: await ctx.out.float32(base, r.images, r.shape),
            losses: roundLosses(r.losses),
            finalTerms: Object.fromEntries(Object.entries(r.finalTerms).map(([k, v]) => [k, Number(v.toPrecision(5))])),
            seconds: r.seconds,
          });
          ctx.log(`${pair.content} × ${pair.style}: ${p.steps} steps in ${r.seconds.toFixed(1)} s`);
        } finally {
          tf.dispose(targets);
        }
        ctx.progress(i + 1, p.pairs.length);
      }
      return {
        network: net.id, kind: net.kind, attribution: net.attribution, contentLayer, styleLayers, contentWeight: p.contentWeight, styleWeight: p.styleWeight, tvWeight: p.tvWeight,
        param: p.param, size, steps: p.steps, lr: p.lr, pairs,
      };
    } finally {
      net.dispose();
    }
  },
});
