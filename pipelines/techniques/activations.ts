/**
 * `activations` (dataset): what every conv/pool channel outputs on a few chosen test images.
 * Each layer gets ONE colour scale shared by all its channels and all chosen images, so a bright
 * tile means the same value everywhere on the page; the scale is 'rdbu' (symmetric around 0)
 * when the layer has negative values and 'viridis' from 0 otherwise. Beside each layer the page
 * reports how many of its channels are dead over the whole test split (from `channel-stats`).
 *
 * Two passes over the (few) chosen images: the first finds each layer's range, the second draws.
 * Nothing of the size of all activations is kept.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { chooseExamples, type FeaturesData } from '../engines/examples';
import { ConvlensError } from '../errors';
import { applyColormap, colorbarPng, imageGrid, type ColormapName, type RasterImage } from '../images';
import type { GraphNode } from '../model/graph';
import { defineTechnique } from '../technique';
import { lastNeeded, spatialLayers, type ChannelStatsData } from './channel-stats';

export interface ImageFile { file: string; width: number; height: number }

export interface LayerScale {
  map: Extract<ColormapName, 'rdbu' | 'viridis'>;
  /** the range drawn (for rdbu symmetric); values outside are clamped to the ends. */
  min: number;
  max: number;
  /** the layer's actual extremes over the chosen images. */
  valueMin: number;
  valueMax: number;
}

export interface ActivationLayer {
  name: string;
  className: string;
  /** [h, w, channels] */
  shape: [number, number, number];
  scale: LayerScale;
  legend: ImageFile;
  /** fraction of the layer's channels dead over the test split (null without channel-stats). */
  deadFraction: number | null;
  deadChannels: number[] | null;
  /** channels drawn: 0 … channelsShown − 1. Channel c sits at row ⌊c / columns⌋, column c mod columns. */
  channelsShown: number;
  columns: number;
  upscale: number;
  /** pixel size of one channel's tile and of the gap between tiles in the grid PNG. */
  cell: [number, number];
  gap: number;
}

export interface ActivationImage {
  index: number;
  /** dataset.describeImage id (file name or synthetic id). */
  id: string;
  label: number;
  /** null when there are no predictions (explicit `images` without the features pass). */
  predicted: number | null;
  correct: boolean | null;
  input: ImageFile;
  layers: (ImageFile & { layer: string; scale: LayerScale; deadFraction: number | null; top: TopChannel[] })[];
}

/** A channel that responds strongly to one image: its mean activation over positions. */
export interface TopChannel { channel: number; mean: number }

export interface ActivationsData {
  split: 'test';
  percentile: number;
  deadThreshold: number | null;
  layers: ActivationLayer[];
  images: ActivationImage[];
}

const params = z.object({
  images: z.array(z.number().int().min(0)).optional().describe('test-split indices to show; default: per class the first correctly and the first wrongly classified image'),
  correct: z.number().int().min(0).max(10).default(1).describe('default choice: correctly classified images per class'),
  wrong: z.number().int().min(0).max(10).default(1).describe('default choice: misclassified images per class'),
  layers: z.array(z.string()).optional().describe('layers to show; default: every conv and pooling layer'),
  percentile: z.number().gt(50).max(100).default(100).describe('top of each layer scale: this percentile of |value| over the chosen images (100 = the maximum; lower clamps rare spikes)'),
  maxChannels: z.number().int().min(1).optional().describe('draw at most this many channels per layer; default: all'),
  topChannels: z.number().int().min(0).max(64).default(5).describe('per image and layer, list this many channels with the highest mean activation (linked from the image page)'),
  batchSize: z.number().int().min(1).max(256).default(16).describe('images per forward pass'),
});

/** q-th percentile (0..100) by nearest rank of a sample (sorted in place). */
export function percentileOf(sample: Float32Array, q: number): number {
  if (sample.length === 0) return 0;
  sample.sort();
  const rank = Math.min(sample.length - 1, Math.max(0, Math.ceil((q / 100) * sample.length) - 1));
  return sample[rank];
}

/**
 * The layer's scale from its extremes and (for percentile < 100) the q-th percentile of the
 * relevant magnitudes: |v| for signed layers, v for non-negative ones.
 */
export function layerScale(valueMin: number, valueMax: number, top?: number): LayerScale {
  if (valueMin < 0) {
    const m = top ?? Math.max(-valueMin, valueMax);
    return { map: 'rdbu', min: -m, max: m, valueMin, valueMax };
  }
  return { map: 'viridis', min: 0, max: top ?? valueMax, valueMin, valueMax };
}

/** The k channels with the highest mean over positions of one image's [h, w, c] activation (ties: lower channel first). */
export function topChannels(values: Float32Array, shape: [number, number, number], k: number): TopChannel[] {
  const [h, w, c] = shape;
  const sums = new Float64Array(c);
  for (let p = 0; p < h * w; p++) for (let ch = 0; ch < c; ch++) sums[ch] += values[p * c + ch];
  return Array.from(sums, (s, channel) => ({ channel, mean: s / (h * w) }))
    .sort((a, b) => b.mean - a.mean || a.channel - b.channel)
    .slice(0, k);
}

/** Every channel of one image's [h, w, c] activation as a tile grid on the layer's scale. */
export function channelGrid(values: Float32Array, shape: [number, number, number], scale: LayerScale, opts: { channels: number; columns: number; upscale: number; gap: number }): RasterImage {
  const [h, w, c] = shape;
  const tiles: RasterImage[] = [];
  const plane = new Float32Array(h * w);
  for (let ch = 0; ch < opts.channels; ch++) {
    for (let p = 0; p < h * w; p++) plane[p] = values[p * c + ch];
    tiles.push({ pixels: applyColormap(plane, scale.map, scale), width: w, height: h, channels: 3 });
  }
  return imageGrid(tiles, opts.columns, { upscale: opts.upscale, gap: opts.gap, background: [128, 128, 128] });
}

const SAMPLE_PER_IMAGE = 20_000;
const safe = (name: string): string => name.replace(/[^A-Za-z0-9_.-]/g, '_');

export default defineTechnique({
  id: 'activations',
  title: 'Layer activations',
  summary: 'Every channel of every conv and pooling layer on chosen test images, one colour scale per layer, with the share of dead channels.',
  family: 'dataset',
  version: 2,
  needs: ['features', 'channel-stats'],
  params,
  async run(ctx): Promise<ActivationsData> {
    const { executor } = ctx.model;
    const p = ctx.params;
    const features = ctx.deps.features as FeaturesData | undefined;
    const stats = ctx.deps['channel-stats'] as ChannelStatsData | undefined;

    // which images
    let chosen: { index: number; label: number; predicted: number | null }[];
    if (p.images) {
      const n = ctx.dataset.splitSizes.test;
      for (const i of p.images) {
        if (i >= n) throw new ConvlensError(`image index ${i} is outside the test split (${n} images).`, { field: 'techniques.activations.images', fix: `use indices 0 … ${n - 1}.` });
      }
      chosen = [...new Set(p.images)].map((index) => ({ index, label: ctx.dataset.describeImage('test', index).label, predicted: features?.splits.test.predicted[index] ?? null }));
    } else {
      if (!features) throw new Error('activations: the features result is missing (it is listed in needs)');
      chosen = chooseExamples(features, { correct: p.correct, wrong: p.wrong }).map((e) => ({ index: e.index, label: e.label, predicted: e.predicted }));
    }
    if (chosen.length === 0) throw new ConvlensError('no images to show.', { field: 'techniques.activations', fix: 'set `images`, or raise `correct` / `wrong`.' });

    // which layers
    const nodes: GraphNode[] = p.layers ? p.layers.map((n) => executor.node(n)) : spatialLayers(executor);
    for (const n of nodes) {
      if (n.outputShape.length !== 3) {
        throw new ConvlensError(`layer '${n.name}' has output shape [${n.outputShape}], not an image grid.`, {
          field: 'techniques.activations.layers', fix: `choose from: ${spatialLayers(executor).map((l) => `'${l.name}'`).join(', ')}.`,
        });
      }
    }
    const names = nodes.map((n) => n.name);
    const upTo = lastNeeded(executor, names);
    const [h, w, c] = ctx.dataset.imageShape;
    const indices = Int32Array.from(chosen.map((e) => e.index));
    const forward = (batch: { images: Float32Array; size: number }) =>
      tf.tidy(() => {
        const x = tf.tensor4d(batch.images, [batch.size, h, w, c]);
        const { captured } = executor.run(x, { capture: names, upTo });
        return names.map((n) => captured[n]);
      });

    // pass 1: extremes per layer, and a strided sample of magnitudes for a percentile top
    const lo = names.map(() => Infinity);
    const hi = names.map(() => -Infinity);
    const samples: number[][] = names.map(() => []);
    for await (const batch of ctx.dataset.batches('test', p.batchSize, { indices })) {
      const acts = forward(batch);
      for (const [l, a] of acts.entries()) {
        const v = (await a.data()) as Float32Array;
        let mn = Infinity;
        let mx = -Infinity;
        for (const x of v) {
          if (x < mn) mn = x;
          if (x > mx) mx = x;
        }
        lo[l] = Math.min(lo[l], mn);
        hi[l] = Math.max(hi[l], mx);
        if (p.percentile < 100) {
          const stride = Math.max(1, Math.floor(v.length / (SAMPLE_PER_IMAGE * batch.size)));
          for (let i = 0; i < v.length; i += stride) samples[l].push(v[i]);
        }
      }
      tf.dispose(acts);
    }
    const scales = names.map((_, l) => {
      if (p.percentile >= 100) return layerScale(lo[l], hi[l]);
      const signed = lo[l] < 0;
      const top = percentileOf(Float32Array.from(samples[l], (v) => (signed ? Math.abs(v) : v)), p.percentile);
      return layerScale(lo[l], hi[l], top);
    });

    const layers: ActivationLayer[] = [];
    for (const [l, node] of nodes.entries()) {
      const [lh, lw, lc] = node.outputShape as [number, number, number];
      const upscale = Math.max(1, Math.ceil(32 / Math.max(lh, lw)));
      const channelsShown = Math.min(lc, p.maxChannels ?? lc);
      const stat = stats?.layers.find((s) => s.name === node.name);
      const legendFile = `legend-${l}-${safe(node.name)}.png`;
      await ctx.out.file(legendFile, await colorbarPng(scales[l].map, scales[l], { width: 200, height: 30, label: `${node.name} activation` }));
      layers.push({
        name: node.name, className: node.className, shape: [lh, lw, lc], scale: scales[l],
        legend: { file: legendFile, width: 200, height: 30 },
        deadFraction: stat ? stat.deadFraction : null, deadChannels: stat ? stat.dead : null,
        channelsShown, columns: Math.ceil(Math.sqrt(channelsShown)), upscale, cell: [lh * upscale, lw * upscale], gap: 2,
      });
    }

    // pass 2: draw
    const images: ActivationImage[] = [];
    const inputUp = Math.max(1, Math.round(112 / Math.max(h, w)));
    let done = 0;
    for await (const batch of ctx.dataset.batches('test', p.batchSize, { indices })) {
      const acts = forward(batch);
      const values = await Promise.all(acts.map((a) => a.data() as Promise<Float32Array>));
      tf.dispose(acts);
      for (let i = 0; i < batch.size; i++) {
        const index = batch.indices[i];
        const e = chosen.find((q) => q.index === index)!;
        const dir = `image-${index}`;
        const px = batch.pixels.subarray(i * h * w * c, (i + 1) * h * w * c);
        const input = imageGrid([{ pixels: px, width: w, height: h, channels: c as 1 | 3 }], 1, { upscale: inputUp });
        await ctx.out.png(`${dir}/input.png`, input.pixels, input.width, input.height, input.channels);
        const entry: ActivationImage = {
          index, id: ctx.dataset.describeImage('test', index).id, label: e.label, predicted: e.predicted,
          correct: e.predicted === null ? null : e.predicted === e.label,
          input: { file: `${dir}/input.png`, width: input.width, height: input.height }, layers: [],
        };
        for (const [l, layer] of layers.entries()) {
          const size = layer.shape[0] * layer.shape[1] * layer.shape[2];
          const own = values[l].subarray(i * size, (i + 1) * size);
          const grid = channelGrid(own, layer.shape, layer.scale, { channels: layer.channelsShown, columns: layer.columns, upscale: layer.upscale, gap: layer.gap });
          const file = `${dir}/${l}-${safe(layer.name)}.png`;
          await ctx.out.png(file, grid.pixels, grid.width, grid.height, grid.channels);
          entry.layers.push({ layer: layer.name, file, width: grid.width, height: grid.height, scale: layer.scale, deadFraction: layer.deadFraction, top: topChannels(own, layer.shape, p.topChannels) });
        }
        images.push(entry);
        ctx.progress(++done, chosen.length);
      }
    }
    // the order the images were asked for (the dataset may stream them in another order)
    images.sort((a, b) => chosen.findIndex((q) => q.index === a.index) - chosen.findIndex((q) => q.index === b.index));
    return { split: 'test', percentile: p.percentile, deadThreshold: stats?.deadThreshold ?? null, layers, images };
  },
});
