/**
 * `knn`: exact k nearest training images of chosen test images in the feature space of the shared
 * `features` pass, shown as image strips, plus how often the neighbours of every test image share
 * its label (per class). Exact search: blocked matrix products on the backend (engines/linalg.ts).
 */
import { z } from 'zod';
import { chooseExamples, type FeaturesData } from '../engines/examples';
import { exactKnn, type KnnResult } from '../engines/linalg';
import { ConvlensError } from '../errors';
import { imageGrid, type Channels } from '../images';
import { defineTechnique } from '../technique';
import type { Dataset, Split } from '../types';
import { featuresPath, readRows, rowBlocks } from './features';

const params = z.object({
  k: z.number().int().min(1).max(100).default(8).describe('neighbours per query'),
  metric: z.enum(['cosine', 'euclidean']).default('cosine')
    .describe('cosine (default) compares which features fire, ignoring overall activation strength; euclidean also compares magnitudes'),
  queries: z.array(z.number().int().min(0)).optional()
    .describe('test-split indices to show; default: per class the first correctly and the first wrongly classified test image'),
  agreement: z.boolean().default(true).describe('also search the neighbours of every test image for the per-class label agreement'),
  blockRows: z.number().int().min(16).max(65536).default(4096).describe('training rows per matrix product'),
  queryRows: z.number().int().min(1).max(65536).default(2048).describe('test rows per matrix product in the agreement pass'),
});

export interface KnnQuery {
  index: number;
  label: number;
  predicted: number;
  correct: boolean;
  neighbours: { indices: number[]; labels: number[]; distances: number[] };
  /** PNG file: the query, then its neighbours, nearest first. */
  strip: string;
}

export interface KnnAgreement {
  /** number of test images searched */
  count: number;
  /** mean over the test images of class c of the fraction of their k neighbours labelled c; null without images */
  perClass: (number | null)[];
  overall: number;
  /** majority vote of the k neighbours (ties: the nearer class) equals the label, per class and overall */
  votePerClass: (number | null)[];
  voteAccuracy: number;
}

export interface KnnData {
  k: number;
  metric: 'cosine' | 'euclidean';
  layer: string;
  dim: number;
  /** training rows searched */
  trainCount: number;
  /** pixel size of one thumbnail in the strips (after nearest-neighbour upscaling) */
  thumb: [number, number];
  queries: KnnQuery[];
  agreement?: KnnAgreement;
}

/** Per class agreement of neighbour labels with query labels (separate from `run` for tests). */
export function neighbourAgreement(knn: Pick<KnnResult, 'k' | 'indices'>, queryLabels: ArrayLike<number>, trainLabels: ArrayLike<number>, classes: number): KnnAgreement {
  const { k, indices } = knn;
  const n = queryLabels.length;
  const share = new Float64Array(classes);
  const votes = new Float64Array(classes);
  const seen = new Float64Array(classes);
  let shareAll = 0;
  let votesAll = 0;
  const tally = new Float64Array(classes);
  for (let q = 0; q < n; q++) {
    const y = queryLabels[q];
    tally.fill(0);
    let found = 0;
    let same = 0;
    let firstBest = -1;
    for (let j = 0; j < k; j++) {
      const i = indices[q * k + j];
      if (i < 0) continue;
      found++;
      const l = trainLabels[i];
      if (l === y) same++;
      tally[l]++;
    }
    // vote: most neighbours; among tied classes the one whose first neighbour is nearest
    let bestCount = -1;
    for (let j = 0; j < k; j++) {
      const i = indices[q * k + j];
      if (i < 0) continue;
      const l = trainLabels[i];
      if (tally[l] > bestCount) {
        bestCount = tally[l];
        firstBest = l;
      }
    }
    const frac = found ? same / found : 0;
    seen[y]++;
    share[y] += frac;
    shareAll += frac;
    if (firstBest === y) {
      votes[y]++;
      votesAll++;
    }
  }
  return {
    count: n,
    perClass: Array.from(share, (s, c) => (seen[c] ? s / seen[c] : null)),
    overall: n ? shareAll / n : 0,
    votePerClass: Array.from(votes, (v, c) => (seen[c] ? v / seen[c] : null)),
    voteAccuracy: n ? votesAll / n : 0,
  };
}

/** uint8 pixels of the given images of a split, by index. */
async function pixelsOf(dataset: Dataset, split: Split, indices: number[]): Promise<Map<number, Uint8Array>> {
  const out = new Map<number, Uint8Array>();
  const unique = [...new Set(indices)];
  for await (const b of dataset.batches(split, 256, { indices: unique })) {
    const px = b.pixels.length / b.size;
    for (let i = 0; i < b.size; i++) out.set(b.indices[i], b.pixels.slice(i * px, (i + 1) * px));
  }
  return out;
}

export default defineTechnique({
  id: 'knn',
  title: 'Nearest neighbours',
  summary: 'The training images closest to a test image in the network’s feature space, and how often neighbours share a label.',
  family: 'dataset',
  version: 1,
  needs: ['features'],
  params,
  async run(ctx): Promise<KnnData> {
    const { k, metric, blockRows } = ctx.params;
    const features = ctx.deps.features as FeaturesData;
    const dir = ctx.depDirs.features;
    const { test, train } = features.splits;
    if (!train || train.count === 0) {
      throw new ConvlensError('knn searches the training split, but the features pass has no training images.', {
        field: 'techniques.features.maxTrain', fix: 'use a dataset with a training split and do not set maxTrain to 0.',
      });
    }
    const dim = features.dim;
    const trainFile = featuresPath(dir, train);
    const testFile = featuresPath(dir, test);
    const trainBlocks = () => rowBlocks(trainFile, dim, train.count, blockRows);

    // the shown queries
    const chosen = ctx.params.queries ?? chooseExamples(features, { correct: 1, wrong: 1 }).map((e) => e.index);
    for (const i of chosen) {
      if (i >= test.count) throw new ConvlensError(`query index ${i} is outside the test split (${test.count} images).`, { field: 'techniques.knn.queries' });
    }
    const qv = new Float32Array(chosen.length * dim);
    for (let q = 0; q < chosen.length; q++) qv.set(await readRows(testFile, dim, chosen[q], 1), q * dim);
    const agreementRows = ctx.params.agreement ? test.count : 0;
    const totalWork = train.count * (1 + Math.ceil(agreementRows / ctx.params.queryRows));
    let workDone = 0;
    const step = (rowsDone: number, base: number) => ctx.progress(base + rowsDone, totalWork);
    const shown = await exactKnn(qv, dim, trainBlocks(), { k, metric, onBlock: (r) => step(r, 0) });
    workDone = train.count;

    // strips: query, then neighbours
    const [h, w, c] = ctx.dataset.imageShape;
    const upscale = Math.max(1, Math.min(4, Math.ceil(64 / Math.max(h, w))));
    const queryPx = await pixelsOf(ctx.dataset, 'test', chosen);
    const neighbourPx = await pixelsOf(ctx.dataset, 'train', Array.from(shown.indices).filter((i) => i >= 0));
    const queries: KnnQuery[] = [];
    for (let q = 0; q < chosen.length; q++) {
      const index = chosen[q];
      const nIdx = Array.from(shown.indices.subarray(q * k, (q + 1) * k)).filter((i) => i >= 0);
      const tiles = [queryPx.get(index)!, ...nIdx.map((i) => neighbourPx.get(i)!)].map((pixels) => ({ pixels, width: w, height: h, channels: c as Channels }));
      const grid = imageGrid(tiles, tiles.length, { gap: 3 * upscale, upscale, background: 255 });
      const strip = await ctx.out.png(`strips/test-${index}.png`, grid.pixels, grid.width, grid.height, grid.channels);
      queries.push({
        index,
        label: test.labels[index],
        predicted: test.predicted[index],
        correct: test.labels[index] === test.predicted[index],
        neighbours: {
          indices: nIdx,
          labels: nIdx.map((i) => train.labels[i]),
          distances: Array.from(shown.distances.subarray(q * k, q * k + nIdx.length), (d) => Math.round(d * 1e6) / 1e6),
        },
        strip,
      });
    }

    // agreement over every test image: the same search, test rows in chunks
    let agreement: KnnAgreement | undefined;
    if (agreementRows) {
      const indices = new Int32Array(test.count * k);
      for await (const chunk of rowBlocks(testFile, dim, test.count, ctx.params.queryRows)) {
        const base = workDone;
        const r = await exactKnn(chunk.values, dim, trainBlocks(), { k, metric, onBlock: (d) => step(d, base) });
        indices.set(r.indices, chunk.start * k);
        workDone += train.count;
      }
      agreement = neighbourAgreement({ k, indices }, test.labels, train.labels, features.classes);
      ctx.log(`neighbour-label agreement ${(100 * agreement.overall).toFixed(1)}%, ${k}-NN vote accuracy ${(100 * agreement.voteAccuracy).toFixed(1)}%`);
    }
    return { k, metric, layer: features.layer, dim, trainCount: train.count, thumb: [h * upscale, w * upscale], queries, agreement };
  },
});
