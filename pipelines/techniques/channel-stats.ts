/**
 * `channel-stats` (internal): the shared streamed pass over the test split that `activations`
 * and `max-patches` read. One forward pass per batch captures every conv/pool layer; per layer
 * and channel it keeps
 * - how often the channel is zero everywhere on an image (dead units),
 * - its mean activation,
 * - the k images on which the channel's spatial maximum is largest, with where that maximum is.
 * Only [batch, channels] reductions leave the backend, and the top-k lives in one bounded
 * min-heap per channel, so memory does not grow with the dataset.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { ConvlensError } from '../errors';
import type { GraphExecutor, GraphNode } from '../model/graph';
import { defineTechnique } from '../technique';

/** A channel counts as dead when it is zero everywhere on at least this fraction of images. */
export const DEAD_THRESHOLD = 0.99;

const CONV = new Set(['Conv2D', 'DepthwiseConv2D', 'SeparableConv2D']);
const POOL = new Set(['MaxPooling2D', 'AveragePooling2D']);

export const isConvNode = (n: GraphNode): boolean => CONV.has(n.className) && n.role !== 'preact';

/**
 * The conv and pooling nodes whose output is an image grid, in topological order. A conv layer
 * with a fused activation is represented by its activation node (what the next layer reads),
 * never by its `/preact` half.
 */
export function spatialLayers(executor: GraphExecutor): GraphNode[] {
  return executor.nodes.filter((n) => (isConvNode(n) || (POOL.has(n.className) && n.role === 'layer')) && n.outputShape.length === 3);
}

/** One top-k entry: [image index in the test split, y, x, value] of the channel's maximum on that image. */
export type TopEntry = [number, number, number, number];

export interface ChannelStatsLayer {
  name: string;
  className: string;
  /** [h, w, channels] of the layer output. */
  shape: [number, number, number];
  /** per channel: fraction of images on which the channel is exactly zero at every position. */
  zeroFraction: number[];
  /** per channel: mean activation over all images and positions. */
  mean: number[];
  /** channels with zeroFraction ≥ DEAD_THRESHOLD. */
  dead: number[];
  /** dead.length / channels. */
  deadFraction: number;
  /** per channel, best first: the k images with the largest spatial maximum (one entry per image). */
  top: TopEntry[][];
}

export interface ChannelStatsData {
  split: 'test';
  images: number;
  k: number;
  deadThreshold: number;
  layers: ChannelStatsLayer[];
}

/** `a` ranks above `b`: larger value; on ties the earlier image (stable across batch sizes). */
const better = (a: TopEntry, b: TopEntry): boolean => a[3] > b[3] || (a[3] === b[3] && a[0] < b[0]);

/**
 * Keeps the k best entries seen so far. The root is the worst kept entry, so each offer costs
 * O(1) when it loses (the common case) and O(log k) when it wins.
 */
export class TopK {
  private readonly heap: TopEntry[] = [];
  constructor(readonly k: number) {}

  offer(e: TopEntry): void {
    const h = this.heap;
    if (h.length < this.k) {
      h.push(e);
      let i = h.length - 1;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (!better(h[p], h[i])) break; // parent is already worse: heap order holds
        [h[p], h[i]] = [h[i], h[p]];
        i = p;
      }
      return;
    }
    if (this.k === 0 || !better(e, h[0])) return;
    h[0] = e;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let worst = i;
      if (l < h.length && better(h[worst], h[l])) worst = l;
      if (r < h.length && better(h[worst], h[r])) worst = r;
      if (worst === i) break;
      [h[worst], h[i]] = [h[i], h[worst]];
      i = worst;
    }
  }

  /** Kept entries, best first. */
  sorted(): TopEntry[] {
    return [...this.heap].sort((a, b) => (better(a, b) ? -1 : better(b, a) ? 1 : 0));
  }
}

const round6 = (v: number): number => Number(v.toPrecision(6));

const params = z.object({
  k: z.number().int().min(1).max(100).default(9).describe('images kept per channel for max-activating patches'),
  batchSize: z.number().int().min(1).max(4096).default(64).describe('images per forward pass'),
  layers: z.array(z.string()).optional().describe('nodes to summarise; default: every conv and pooling layer'),
});

export default defineTechnique({
  id: 'channel-stats',
  title: 'Channel statistics (shared dataset pass)',
  summary: 'Per conv/pool channel over the test split: how often it is silent, its mean, and the images that excite it most.',
  family: 'dataset',
  version: 1,
  internal: true,
  params,
  async run(ctx): Promise<ChannelStatsData> {
    const { executor } = ctx.model;
    const nodes = ctx.params.layers ? ctx.params.layers.map((n) => executor.node(n)) : spatialLayers(executor);
    for (const n of nodes) {
      if (n.outputShape.length !== 3) {
        throw new ConvlensError(`layer '${n.name}' has output shape [${n.outputShape}], not an image grid [h, w, channels].`, {
          field: 'techniques.channel-stats.layers', fix: `choose conv or pooling layers, e.g. ${spatialLayers(executor).map((l) => `'${l.name}'`).join(', ')}.`,
        });
      }
    }
    if (nodes.length === 0) {
      throw new ConvlensError('the model has no conv or pooling layer to summarise.', { field: 'model', fix: 'convlens explains convolutional networks; check the model folder.' });
    }
    const names = nodes.map((n) => n.name);
    const [h, w, c] = ctx.dataset.imageShape;
    const total = ctx.dataset.splitSizes.test;
    const k = ctx.params.k;
    const acc = nodes.map((n) => {
      const ch = n.outputShape[2];
      return { zeros: new Float64Array(ch), sums: new Float64Array(ch), heaps: Array.from({ length: ch }, () => new TopK(k)) };
    });
    let seen = 0;
    for await (const batch of ctx.dataset.batches('test', ctx.params.batchSize)) {
      const n = batch.size;
      // per layer, [n, C] each: max, flat argmax position, min (zero test: max = min = 0) and sum.
      // One transpose puts positions last, so the four reductions run along the last axis
      // (the cpu backend transposes for every reduction over another axis).
      const reduced = tf.tidy(() => {
        const x = tf.tensor4d(batch.images, [n, h, w, c]);
        const { captured } = executor.run(x, { capture: names, upTo: lastNeeded(executor, names) });
        return names.flatMap((name) => {
          const a = captured[name] as tf.Tensor4D;
          const [, lh, lw, lc] = a.shape;
          const t = tf.transpose(tf.reshape(a, [n, lh * lw, lc]), [0, 2, 1]);
          return [tf.max(t, 2), tf.argMax(t, 2), tf.min(t, 2), tf.sum(t, 2)];
        });
      });
      const values = await Promise.all(reduced.map((t) => t.data()));
      tf.dispose(reduced);
      nodes.forEach((node, l) => {
        const [, lw, lc] = node.outputShape;
        const [mx, arg, mn, sum] = values.slice(4 * l, 4 * l + 4);
        const { zeros, sums, heaps } = acc[l];
        for (let i = 0; i < n; i++) {
          const index = batch.indices[i];
          for (let ch = 0; ch < lc; ch++) {
            const j = i * lc + ch;
            if (mx[j] === 0 && mn[j] === 0) zeros[ch]++;
            sums[ch] += sum[j];
            const pos = arg[j];
            heaps[ch].offer([index, Math.floor(pos / lw), pos % lw, mx[j]]);
          }
        }
      });
      seen += n;
      ctx.progress(seen, total);
    }
    if (seen === 0) throw new ConvlensError('the test split is empty, so there is nothing to summarise.', { field: 'dataset' });

    const layers: ChannelStatsLayer[] = nodes.map((node, l) => {
      const [lh, lw, lc] = node.outputShape;
      const { zeros, sums, heaps } = acc[l];
      const zeroFraction = Array.from(zeros, (z0) => round6(z0 / seen));
      const dead = zeroFraction.flatMap((f, ch) => (zeros[ch] / seen >= DEAD_THRESHOLD ? [ch] : []));
      return {
        name: node.name,
        className: node.className,
        shape: [lh, lw, lc],
        zeroFraction,
        mean: Array.from(sums, (s) => round6(s / (seen * lh * lw))),
        dead,
        deadFraction: round6(dead.length / lc),
        top: heaps.map((hp) => hp.sorted().map(([i, y, x, v]) => [i, y, x, round6(v)] as TopEntry)),
      };
    });
    ctx.log(`${seen} test images, ${layers.length} layers, ${layers.reduce((s, l) => s + l.dead.length, 0)} dead channels`);
    return { split: 'test', images: seen, k, deadThreshold: DEAD_THRESHOLD, layers };
  },
});

/** The last of `names` in topological order: the pass can stop there instead of running the classifier head. */
export function lastNeeded(executor: GraphExecutor, names: string[]): string {
  const wanted = new Set(names);
  let last = names[0];
  for (const n of executor.nodes) if (wanted.has(n.name)) last = n.name;
  return last;
}
