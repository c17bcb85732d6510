/**
 * `tsne`: Barnes-Hut t-SNE (engines/tsne.ts; exact neighbours by backend matrix products, gradient
 * on worker threads) of every test image's feature vector, no sampling cap, plus the t-SNE image
 * grid: a seeded, class-stratified sample of g² test images whose layout positions are snapped
 * one-to-one onto a g×g grid by linear assignment (minimum total squared move), so images that sit near each other in the layout stay near in the grid.
 */
import { z } from 'zod';
import type { FeaturesData } from '../engines/examples';
import { snapToGrid } from '../engines/assignment';
import { effectivePerplexity, tsneAsync } from '../engines/tsne';
import { boxDownscale, imageGrid, type Channels } from '../images';
import type { Rng } from '../rng';
import { defineTechnique } from '../technique';
import { featuresPath, readRows } from './features';

const params = z.object({
  perplexity: z.number().min(2).max(100).default(30).describe('effective number of neighbours each point keeps in the input affinities (k = 3·perplexity exact neighbours)'),
  iterations: z.number().int().min(250).max(10000).default(1000).describe('gradient-descent iterations (the first 250 with early exaggeration 12)'),
  theta: z.number().min(0).max(0.7).default(0.5).describe('Barnes-Hut accuracy: a quadtree cell is summarised when its side < θ × its distance (0 = exact, O(N²))'),
  gridSize: z.number().int().min(2).max(50).default(32).describe('side g of the image grid: g² sampled test images (fewer if the split is smaller)'),
  thumbSize: z.number().int().min(8).max(128).default(32).describe('largest side of a grid thumbnail in pixels (larger images are box-downscaled by an integer factor)'),
});

export interface TsneData {
  layer: string;
  dim: number;
  count: number;
  perplexity: number;
  /** perplexity actually used: capped just below the neighbour count for tiny splits. */
  effectivePerplexity: number;
  iterations: number;
  theta: number;
  /** layout coordinates of every test image, in index order (t-SNE units, rounded). */
  x: number[];
  y: number[];
  labels: number[];
  predicted: number[];
  /** float32 N×2 file of the unrounded layout. */
  embeddingFile: string;
  grid: TsneGrid;
}

export interface TsneGrid {
  file: string;
  cols: number;
  rows: number;
  /** pixel size of one cell (thumbnail) and the gap between cells in the PNG. */
  cellWidth: number;
  cellHeight: number;
  gap: number;
  width: number;
  height: number;
  /** cell (row-major, row 0 at the top) → test image index, -1 for an empty cell. */
  cells: number[];
}

const round = (v: number) => Math.round(v * 1000) / 1000;
const GAP = 1;

/**
 * Up to `want` indices, per class in proportion to its size (largest remainder), chosen at
 * random within the class; returned ascending.
 */
export function stratifiedSample(labels: ArrayLike<number>, want: number, rng: Rng): number[] {
  const n = labels.length;
  if (want >= n) return Array.from({ length: n }, (_, i) => i);
  const byClass = new Map<number, number[]>();
  for (let i = 0; i < n; i++) {
    const k = labels[i];
    if (!byClass.has(k)) byClass.set(k, []);
    byClass.get(k)!.push(i);
  }
  const classes = [...byClass.keys()].sort((a, b) => a - b);
  const exact = classes.map((k) => (byClass.get(k)!.length * want) / n);
  const take = exact.map(Math.floor);
  let left = want - take.reduce((a, b) => a + b, 0);
  const byRemainder = classes.map((_, c) => c).sort((a, b) => exact[b] - take[b] - (exact[a] - take[a]) || a - b);
  for (const c of byRemainder) {
    if (left === 0) break;
    take[c]++;
    left--;
  }
  const out: number[] = [];
  classes.forEach((k, c) => out.push(...rng.shuffle([...byClass.get(k)!]).slice(0, take[c])));
  return out.sort((a, b) => a - b);
}

export default defineTechnique({
  id: 'tsne',
  title: 't-SNE of the features',
  summary: 'A 2-D map of every test image in which images the network represents alike sit close together, and a grid of thumbnails laid out by that map.',
  family: 'dataset',
  version: 1,
  needs: ['features'],
  params,
  // previews: just the early-exaggeration phase and a smaller grid
  quick: { iterations: 250, gridSize: 16 },
  async run(ctx): Promise<TsneData> {
    const features = ctx.deps.features as FeaturesData;
    const { test } = features.splits;
    const { dim } = features;
    const n = test.count;
    const p = ctx.params;
    if (n < 2) throw new Error(`t-SNE needs at least 2 test images, got ${n}`);
    const values = await readRows(featuresPath(ctx.depDirs.features, test), dim, 0, n);
    const total = p.iterations + 1;
    ctx.progress(0, total);
    const t0 = Date.now();
    let threads = 1;
    // exact neighbours on the backend, gradient on every core (the layout does not depend on the thread count)
    const layout = await tsneAsync(values, n, dim, {
      perplexity: p.perplexity, iterations: p.iterations, theta: p.theta, seed: ctx.seed,
      onProgress: (it) => ctx.progress(it, total), onThreads: (t) => { threads = t; }, onLog: ctx.log,
    });
    ctx.log(`t-SNE of ${n} × ${dim} features in ${((Date.now() - t0) / 1000).toFixed(1)} s (${threads} thread${threads > 1 ? 's' : ''})`);
    const embeddingFile = await ctx.out.float32('embedding', layout, [n, 2]);

    // The grid: a stratified sample, snapped to cells.
    const cols = Math.min(p.gridSize, Math.ceil(Math.sqrt(n)));
    const chosen = stratifiedSample(test.labels, Math.min(n, cols * cols), ctx.rng);
    const rows = Math.ceil(chosen.length / cols);
    const pts = new Float64Array(chosen.length * 2);
    // y negated: snapToGrid puts small y at the top, the scatter plot draws y upwards
    chosen.forEach((i, t) => { pts[2 * t] = layout[2 * i]; pts[2 * t + 1] = -layout[2 * i + 1]; });
    const cellOf = snapToGrid(pts, chosen.length, cols, rows);
    const cells = new Array<number>(cols * rows).fill(-1);
    chosen.forEach((i, t) => { cells[cellOf[t]] = i; });

    const [h, w, c] = ctx.dataset.imageShape;
    const f = Math.max(1, Math.ceil(Math.max(h, w) / p.thumbSize));
    const thumbs = new Map<number, Uint8Array>();
    let tw = w, th = h;
    for await (const batch of ctx.dataset.batches('test', 256, { indices: chosen })) {
      const size = h * w * c;
      for (let b = 0; b < batch.size; b++) {
        const t = boxDownscale(batch.pixels.subarray(b * size, (b + 1) * size), w, h, c, f);
        tw = t.width;
        th = t.height;
        thumbs.set(batch.indices[b], t.pixels);
      }
    }
    const blank = new Uint8Array(tw * th * c).fill(255);
    const tiles = cells.map((i) => ({ pixels: i >= 0 ? thumbs.get(i)! : blank, width: tw, height: th, channels: c as Channels }));
    const img = imageGrid(tiles, cols, { gap: GAP, background: 255 });
    const file = await ctx.out.png('tsne-grid.png', img.pixels, img.width, img.height, img.channels);
    ctx.progress(total, total);

    return {
      layer: features.layer, dim, count: n,
      perplexity: p.perplexity, effectivePerplexity: n > 1 ? Math.round(effectivePerplexity(n, p.perplexity) * 1000) / 1000 : 0,
      iterations: p.iterations, theta: p.theta,
      x: Array.from(layout.filter((_, t) => t % 2 === 0), round),
      y: Array.from(layout.filter((_, t) => t % 2 === 1), round),
      labels: [...test.labels], predicted: [...test.predicted],
      embeddingFile,
      grid: { file, cols, rows, cellWidth: tw, cellHeight: th, gap: GAP, width: img.width, height: img.height, cells },
    };
  },
});
