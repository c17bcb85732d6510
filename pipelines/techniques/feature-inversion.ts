/**
 * `feature-inversion` (Mahendran & Vedaldi 2015): from noise, find an image whose activations
 * at one layer match those of a real image, under an α-norm and a total-variation prior. Done
 * at the end of every conv stage (and at the logits), so the page shows what each depth keeps.
 * Images: the first test image of evenly spaced classes (no dependency on other results).
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { imageGrid } from '../images';
import {
  alphaNorm, convStageLayers, featureMatch, imageTile, modelForward, optimizeImage, perImage, roundLosses, totalVariation,
} from '../engines/optimize-image';
import { defineTechnique } from '../technique';
import { findLayers } from './features';

export interface InversionLayer {
  layer: string;
  /** PNG: one tile per image, in `images` order. */
  grid: string;
  raw: string;
  /** ‖a(y) − a(x)‖² / ‖a(x)‖² of each reconstruction. */
  relativeError: number[];
  /** batch loss per step, then on the final image. */
  losses: number[];
  seconds: number;
  secondsPerImage: number;
}

export interface InversionData {
  steps: number;
  lr: number;
  alpha: number;
  alphaWeight: number;
  tvWeight: number;
  size: [number, number];
  upscale: number;
  images: { split: 'test'; index: number; label: number }[];
  /** the originals, one tile per image. */
  originals: string;
  layers: InversionLayer[];
}

const params = z.object({
  layers: z.array(z.string()).optional().describe('layers to invert; default: the end of every conv stage, then the logits'),
  images: z.number().int().min(1).max(20).default(4).describe('how many test images: the first of evenly spaced classes'),
  steps: z.number().int().min(0).max(4096).default(300).describe('Adam steps'),
  lr: z.number().positive().default(0.05).describe('Adam learning rate'),
  alpha: z.number().min(1).default(6).describe('exponent α of the α-norm prior (Mahendran & Vedaldi: 6)'),
  alphaWeight: z.number().min(0).default(1).describe('weight of the α-norm mean(|y − ½|^α)'),
  tvWeight: z.number().min(0).default(0.5).describe('weight of the total variation mean((∇y)²) (β = 2)'),
  upscale: z.number().int().min(1).max(16).default(4).describe('nearest-neighbour upscaling of the PNG tiles'),
});

export default defineTechnique({
  id: 'feature-inversion',
  title: 'Feature inversion',
  summary: 'Images reconstructed from the activations of one layer (Mahendran & Vedaldi): how much of the input each depth still holds.',
  family: 'optimization',
  version: 1,
  params,
  quick: { steps: 8, images: 2 },
  async run(ctx): Promise<InversionData> {
    const { model, params: p, dataset } = ctx;
    const [h, w, c] = model.inputShape;
    const ex = model.executor;
    const layers = p.layers ?? [...convStageLayers(ex), findLayers(ex).logits];
    const forward = modelForward(model, dataset.preprocessing);
    const chosen = await firstOfClasses(dataset, p.images);
    const n = chosen.length;
    const shape: [number, number, number, number] = [n, h, w, c];
    const originals = new Float32Array(n * h * w * c);
    // pixels in [0, 1] (before normalisation): the engine's image space
    chosen.forEach((ch, i) => originals.set(Float32Array.from(ch.pixels, (v) => v / 255), i * h * w * c));
    const grid0 = imageGrid(chosen.map((_, i) => imageTile(originals, shape, i)), n, { upscale: p.upscale, gap: 2 });
    const out: InversionLayer[] = [];
    for (const [li, layer] of layers.entries()) {
      const name = ex.node(layer).name;
      const target = tf.tidy(() => forward(tf.tensor4d(originals, shape), [name])[name]);
      try {
        const terms = [featureMatch(name, target)];
        if (p.alphaWeight > 0) terms.push(alphaNorm(p.alpha, p.alphaWeight));
        if (p.tvWeight > 0) terms.push(totalVariation(p.tvWeight));
        const r = await optimizeImage({
          batch: n, height: h, width: w, channels: c, param: { kind: 'pixel', decorrelate: c === 3, sd: 0.5, decayPower: 1 },
          transforms: null, terms, forward, steps: p.steps, lr: p.lr, rng: ctx.rng,
        });
        const rel = await perImage(forward, r.images, r.shape, [name], (a) => {
          const axes = a[name].shape.map((_, i) => i).slice(1);
          return tf.div(tf.sum(tf.square(tf.sub(a[name], target)), axes), tf.add(tf.sum(tf.square(target), axes), 1e-8));
        });
        const grid = imageGrid(chosen.map((_, i) => imageTile(r.images, r.shape, i)), n, { upscale: p.upscale, gap: 2 });
        const base = name.replace(/[^A-Za-z0-9_.-]+/g, '_');
        out.push({
          layer: name,
          grid: await ctx.out.png(`${base}.png`, grid.pixels, grid.width, grid.height, grid.channels),
          raw: await ctx.out.float32(base, r.images, r.shape),
          relativeError: roundLosses(rel),
          losses: roundLosses(r.losses),
          seconds: r.seconds,
          secondsPerImage: r.seconds / n,
        });
      } finally {
        target.dispose();
      }
      ctx.progress(li + 1, layers.length);
    }
    return {
      steps: p.steps, lr: p.lr, alpha: p.alpha, alphaWeight: p.alphaWeight, tvWeight: p.tvWeight, size: [h, w], upscale: p.upscale,
      images: chosen.map((ch) => ({ split: 'test' as const, index: ch.index, label: ch.label })),
      originals: await ctx.out.png('originals.png', grid0.pixels, grid0.width, grid0.height, grid0.channels),
      layers: out,
    };
  },
});

/** The first test image of `count` evenly spaced classes, streamed (stops as soon as all are found). */
async function firstOfClasses(dataset: import('../types').Dataset, count: number) {
  const k = dataset.classNames.length;
  const want = [...new Set(Array.from({ length: Math.min(count, k) }, (_, i) => Math.floor((i * k) / Math.min(count, k))))];
  const found = new Map<number, { index: number; label: number; pixels: Uint8Array }>();
  const px = dataset.imageShape[0] * dataset.imageShape[1] * dataset.imageShape[2];
  for await (const b of dataset.batches('test', 256)) {
    for (let i = 0; i < b.size; i++) {
      const label = b.labels[i];
      if (want.includes(label) && !found.has(label)) found.set(label, { index: b.indices[i], label, pixels: b.pixels.slice(i * px, (i + 1) * px) });
    }
    if (found.size === want.length) break;
  }
  return want.filter((l) => found.has(l)).map((l) => found.get(l)!);
}
