/**
 * `class-model` (Simonyan et al. 2014): per class, the image that maximises the class logit
 * (pre-softmax), with L2 decay, jitter and a blur every few steps — the priors that make
 * neighbouring pixels correlate (Yosinski et al. 2015's regularised variant).
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { imageGrid } from '../images';
import { classLogit, imageTile, l2Decay, modelForward, optimizeImage, perImage, roundLosses } from '../engines/optimize-image';
import { defineTechnique } from '../technique';
import { findLayers } from './features';

export interface ClassModelData {
  logitsLayer: string;
  steps: number;
  lr: number;
  l2: number;
  blur: { every: number; sigma: number };
  jitter: number;
  size: [number, number];
  upscale: number;
  /** one tile per class, class order. */
  grid: string;
  raw: string;
  classes: {
    index: number;
    /** the class logit and softmax probability of the final image. */
    logit: number;
    probability: number;
  }[];
  /** batch loss per step (−Σ logits + L2), then on the final untransformed image. */
  losses: number[];
  seconds: number;
  secondsPerImage: number;
}

const params = z.object({
  steps: z.number().int().min(0).max(4096).default(200).describe('Adam steps'),
  lr: z.number().positive().default(0.05).describe('Adam learning rate'),
  l2: z.number().min(0).default(1).describe('weight λ of the L2 decay λ·mean((x − ½)²) (Simonyan et al.: λ‖I‖²)'),
  blurEvery: z.number().int().min(0).default(4).describe('blur the image every this many steps (0: never)'),
  blurSigma: z.number().positive().default(0.5).describe('σ of the 3×3 Gaussian blur, px'),
  jitter: z.number().int().min(0).default(2).describe('random shift per step, px (pad + crop)'),
  upscale: z.number().int().min(1).max(16).default(4).describe('nearest-neighbour upscaling of the PNG tiles'),
});

export default defineTechnique({
  id: 'class-model',
  title: 'Class model visualisation',
  summary: 'One image per class that maximises the class score (pre-softmax logit), with L2 decay, blur and jitter so neighbouring pixels correlate.',
  family: 'optimization',
  version: 1,
  params,
  quick: { steps: 8 },
  async run(ctx): Promise<ClassModelData> {
    const { model, params: p, dataset } = ctx;
    const [h, w, c] = model.inputShape;
    const ex = model.executor;
    const logitsLayer = findLayers(ex).logits;
    const k = ex.node(logitsLayer).outputShape.at(-1)!;
    const classes = Array.from({ length: k }, (_, i) => i);
    const forward = modelForward(model, dataset.preprocessing);
    const terms = [classLogit(logitsLayer, classes)];
    if (p.l2 > 0) terms.push(l2Decay(p.l2));
    const r = await optimizeImage({
      batch: k, height: h, width: w, channels: c,
      param: { kind: 'pixel', decorrelate: false, sd: 0.01, decayPower: 1 },
      transforms: p.jitter > 0 ? { pad: p.jitter, jitter: p.jitter + 1, scales: [], angles: [], jitter2: 0 } : null,
      terms, forward, steps: p.steps, lr: p.lr, rng: ctx.rng,
      blur: p.blurEvery > 0 ? { every: p.blurEvery, sigma: p.blurSigma } : undefined,
      onStep: (s) => ctx.progress(s + 1, p.steps),
    });
    const oneHot = () => tf.oneHot(tf.tensor1d(classes, 'int32'), k);
    const logits = await perImage(forward, r.images, r.shape, [logitsLayer], (a) => tf.sum(tf.mul(tf.reshape(a[logitsLayer], [k, k]), oneHot()), 1));
    const probs = await perImage(forward, r.images, r.shape, [logitsLayer], (a) => tf.sum(tf.mul(tf.softmax(tf.reshape(a[logitsLayer], [k, k])), oneHot()), 1));
    const tiles = classes.map((i) => imageTile(r.images, r.shape, i));
    const grid = imageGrid(tiles, Math.min(k, 10), { upscale: p.upscale, gap: 2 });
    return {
      logitsLayer, steps: p.steps, lr: p.lr, l2: p.l2, blur: { every: p.blurEvery, sigma: p.blurSigma }, jitter: p.jitter,
      size: [h, w], upscale: p.upscale,
      grid: await ctx.out.png('classes.png', grid.pixels, grid.width, grid.height, grid.channels),
      raw: await ctx.out.float32('classes', r.images, r.shape),
      classes: classes.map((i) => ({ index: i, logit: Number(logits[i].toPrecision(5)), probability: Number(probs[i].toPrecision(5)) })),
      losses: roundLosses(r.losses),
      seconds: r.seconds,
      secondsPerImage: r.seconds / k,
    };
  },
});
