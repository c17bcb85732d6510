/**
 * `umap`: UMAP (McInnes et al. 2018, via PAIR's `umap-js`) of every test image's feature vector,
 * shown beside t-SNE. All of umap-js's randomness (NN-descent, initialisation, negative
 * sampling) goes through its `random` option, fed by the technique's seeded Rng.
 */
import { UMAP } from 'umap-js';
import { z } from 'zod';
import type { FeaturesData } from '../engines/examples';
import { defineTechnique } from '../technique';
import { featuresPath, readRows } from './features';

const params = z.object({
  nNeighbors: z.number().int().min(2).max(200).default(15).describe('size of the local neighbourhood the fuzzy graph is built from (capped at N − 1)'),
  minDist: z.number().min(0).max(1).default(0.1).describe('how tightly points may pack in the layout'),
  nEpochs: z.number().int().min(10).max(2000).optional().describe("optimisation epochs (default: umap-js's choice, 500 below 2 000 points down to 200 at 10 000)"),
});

export interface UmapData {
  layer: string;
  dim: number;
  count: number;
  nNeighbors: number;
  minDist: number;
  epochs: number;
  /** layout coordinates of every test image, in index order (rounded). */
  x: number[];
  y: number[];
  labels: number[];
  predicted: number[];
  /** float32 N×2 file of the unrounded layout. */
  embeddingFile: string;
}

const round = (v: number) => Math.round(v * 1000) / 1000;

export default defineTechnique({
  id: 'umap',
  title: 'UMAP of the features',
  summary: 'A 2-D map of every test image from a fuzzy nearest-neighbour graph of its features, a faster companion to t-SNE.',
  family: 'dataset',
  version: 1,
  needs: ['features'],
  params,
  quick: { nEpochs: 50 },
  async run(ctx): Promise<UmapData> {
    const features = ctx.deps.features as FeaturesData;
    const { test } = features.splits;
    const { dim } = features;
    const n = test.count;
    if (n < 3) throw new Error(`UMAP needs at least 3 test images, got ${n}`);
    const values = await readRows(featuresPath(ctx.depDirs.features, test), dim, 0, n);
    const rows = Array.from({ length: n }, (_, i) => Array.from(values.subarray(i * dim, (i + 1) * dim)));
    const nNeighbors = Math.min(ctx.params.nNeighbors, n - 1);
    const umap = new UMAP({
      nComponents: 2, nNeighbors, minDist: ctx.params.minDist, nEpochs: ctx.params.nEpochs,
      random: () => ctx.rng.next(),
    });
    const t0 = Date.now();
    const epochs = umap.initializeFit(rows);
    ctx.progress(0, epochs);
    for (let e = 0; e < epochs; e++) {
      umap.step();
      if ((e + 1) % 10 === 0 || e + 1 === epochs) ctx.progress(e + 1, epochs);
    }
    const emb = umap.getEmbedding();
    ctx.log(`UMAP of ${n} × ${dim} features, ${epochs} epochs, in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const flat = new Float32Array(n * 2);
    emb.forEach((p, i) => { flat[2 * i] = p[0]; flat[2 * i + 1] = p[1]; });
    const embeddingFile = await ctx.out.float32('embedding', flat, [n, 2]);
    return {
      layer: features.layer, dim, count: n, nNeighbors, minDist: ctx.params.minDist, epochs,
      x: emb.map((p) => round(p[0])), y: emb.map((p) => round(p[1])),
      labels: [...test.labels], predicted: [...test.predicted],
      embeddingFile,
    };
  },
});
