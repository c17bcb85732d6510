/**
 * `activation-maximization` (Erhan et al. 2009; Olah et al. 2017): for chosen channels of the
 * conv stages, the image that maximises the channel's mean activation, found by gradient ascent
 * from seeded noise — once with Lucid's image priors and once without, side by side.
 */
import { z } from 'zod';
import { imageGrid } from '../images';
import {
  channelMean, convStageLayers, imageTile, modelForward, optimizeImage, perImage, roundLosses, spreadChannels,
  standardTransforms, totalVariation, type Parameterization, type Term, type Transforms,
} from '../engines/optimize-image';
import * as tf from '@tensorflow/tfjs-core';
import { defineTechnique } from '../technique';

export interface AmVariant {
  id: 'priors' | 'plain';
  title: string;
  param: Parameterization;
  transforms: Transforms | null;
  tvWeight: number;
}

export interface AmRun {
  /** PNG: one tile per channel, in `channels` order, upscaled. */
  grid: string;
  /** raw images, float32 NHWC in [0, 1]. */
  raw: string;
  /** total loss of the batch per step (−Σ channel means + priors), then on the final untransformed image. */
  losses: number[];
  /** the channel's mean activation on its final image (no transforms), per channel. */
  activation: number[];
  seconds: number;
  secondsPerImage: number;
}

export interface AmLayer {
  layer: string;
  channels: number[];
  channelCount: number;
  /** by variant id. */
  runs: Record<string, AmRun>;
}

export interface AmData {
  steps: number;
  lr: number;
  size: [number, number];
  upscale: number;
  variants: AmVariant[];
  layers: AmLayer[];
}

const params = z.object({
  layers: z.array(z.string()).optional().describe('layers to visualise; default: the last conv layer of every conv stage (before each pooling)'),
  channels: z.number().int().min(1).max(64).default(8).describe('channels per layer, spread evenly over the layer'),
  steps: z.number().int().min(0).max(4096).default(256).describe('Adam steps (Lucid: 512 at 128 px; 256 suffice for 28-px images, see the loss curves)'),
  lr: z.number().positive().default(0.05).describe('Adam learning rate (Lucid: 0.05)'),
  tvWeight: z.number().min(0).default(0.05).describe('total-variation weight of the "with priors" variant'),
  upscale: z.number().int().min(1).max(16).default(4).describe('nearest-neighbour upscaling of the PNG tiles'),
});

export default defineTechnique({
  id: 'activation-maximization',
  title: 'Activation maximisation',
  summary: 'For chosen channels of each conv stage, the image that excites the channel most, found by gradient ascent from noise, with and without image priors.',
  family: 'optimization',
  version: 1,
  params,
  quick: { steps: 8, channels: 2 },
  async run(ctx): Promise<AmData> {
    const { model, params: p, dataset } = ctx;
    const [h, w, c] = model.inputShape;
    const ex = model.executor;
    const layers = p.layers ?? convStageLayers(ex);
    if (!layers.length) throw new Error('activation-maximization: the model has no conv layer before a pooling layer; name layers in params.layers');
    const forward = modelForward(model, dataset.preprocessing);
    const variants: AmVariant[] = [
      {
        id: 'priors', title: 'with priors: Fourier 1/f parameterisation, decorrelated colour, pad/jitter/scale/rotate, total variation',
        param: { kind: 'fourier', decorrelate: true, sd: 0.01, decayPower: 1 }, transforms: standardTransforms(Math.max(h, w)), tvWeight: p.tvWeight,
      },
      { id: 'plain', title: 'without priors: raw pixels, no transforms, no regulariser', param: { kind: 'pixel', decorrelate: false, sd: 0.01, decayPower: 1 }, transforms: null, tvWeight: 0 },
    ];
    const out: AmLayer[] = [];
    const total = layers.length * variants.length;
    let done = 0;
    for (const layer of layers) {
      const node = ex.node(layer);
      const k = node.outputShape[node.outputShape.length - 1];
      const channels = spreadChannels(k, p.channels);
      const runs: Record<string, AmRun> = {};
      for (const v of variants) {
        const terms: Term[] = [channelMean(node.name, channels)];
        if (v.tvWeight > 0) terms.push(totalVariation(v.tvWeight));
        const r = await optimizeImage({
          batch: channels.length, height: h, width: w, channels: c, param: v.param, transforms: v.transforms,
          terms, forward, steps: p.steps, lr: p.lr, rng: ctx.rng,
        });
        const activation = await perImage(forward, r.images, r.shape, [node.name], (acts) => {
          const a = acts[node.name];
          const means = a.rank === 4 ? tf.mean(a, [1, 2]) : a;
          return tf.sum(tf.mul(means, tf.oneHot(tf.tensor1d(channels, 'int32'), k)), 1);
        });
        const tiles = channels.map((_, i) => imageTile(r.images, r.shape, i));
        const grid = imageGrid(tiles, tiles.length, { upscale: p.upscale, gap: 2 });
        const base = `${safe(node.name)}-${v.id}`;
        runs[v.id] = {
          grid: await ctx.out.png(`${base}.png`, grid.pixels, grid.width, grid.height, grid.channels),
          raw: await ctx.out.float32(base, r.images, r.shape),
          losses: roundLosses(r.losses),
          activation: roundLosses(activation),
          seconds: r.seconds,
          secondsPerImage: r.seconds / channels.length,
        };
        ctx.log(`${node.name} ${v.id}: ${channels.length} channels, ${p.steps} steps in ${r.seconds.toFixed(1)} s`);
        ctx.progress(++done, total);
      }
      out.push({ layer: node.name, channels, channelCount: k, runs });
    }
    return { steps: p.steps, lr: p.lr, size: [h, w], upscale: p.upscale, variants, layers: out };
  },
});

/** layer names may hold '/' (e.g. a preact node): keep file names flat. */
export function safe(name: string): string {
  return name.replace(/[^A-Za-z0-9_.-]+/g, '_');
}
