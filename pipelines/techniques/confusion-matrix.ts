/**
 * `confusion-matrix`: over the test split, how often each true class is predicted as each class.
 * Pure bookkeeping over the shared `features` pass (labels and predictions); no tensors.
 */
import { z } from 'zod';
import type { FeaturesData } from '../engines/examples';
import { defineTechnique } from '../technique';

const params = z.object({
  topPairs: z.number().int().min(1).max(1000).default(10).describe('how many of the most confused (true, predicted) pairs to list'),
});

export interface ConfusedPair {
  true: number;
  predicted: number;
  count: number;
  /** count / number of test images of the true class */
  rate: number;
}

export interface ConfusionData {
  split: 'test';
  classes: number;
  /** number of test images */
  count: number;
  correct: number;
  accuracy: number;
  /** counts[t][p]: test images of true class t predicted as p */
  counts: number[][];
  /** rates[t][p] = counts[t][p] / support[t] (rows sum to 1; a class with no test images has a row of 0) */
  rates: number[][];
  /** test images per true class (row sums) */
  support: number[];
  /** test images per predicted class (column sums) */
  predictedCounts: number[];
  /** per class: counts[k][k] / support[k] (recall); null when the class has no test images */
  perClassAccuracy: (number | null)[];
  /** per class: counts[k][k] / predictedCounts[k]; null when nothing was predicted as k */
  precision: (number | null)[];
  /** off-diagonal cells with count > 0, most images first (ties: higher rate, then row/column order) */
  topConfusions: ConfusedPair[];
  /** cells[t][p]: test-split indices of the images in that cell, ascending */
  cells: number[][][];
}

/** The confusion matrix of `labels` vs `predicted` (separate from `run` so that tests can call it directly). */
export function confusion(features: Pick<FeaturesData, 'classes' | 'splits'>, topPairs = 10): ConfusionData {
  const K = features.classes;
  const { labels, predicted } = features.splits.test;
  const cells: number[][][] = Array.from({ length: K }, () => Array.from({ length: K }, () => [] as number[]));
  for (let i = 0; i < labels.length; i++) {
    const t = labels[i];
    const p = predicted[i];
    if (!(t >= 0 && t < K && p >= 0 && p < K)) throw new Error(`confusion-matrix: image ${i} has label ${t} / prediction ${p} outside 0..${K - 1}`);
    cells[t][p].push(i);
  }
  const counts = cells.map((row) => row.map((c) => c.length));
  const support = counts.map((row) => row.reduce((a, b) => a + b, 0));
  const predictedCounts = Array.from({ length: K }, (_, p) => counts.reduce((a, row) => a + row[p], 0));
  const rates = counts.map((row, t) => row.map((c) => (support[t] ? c / support[t] : 0)));
  const correct = counts.reduce((a, row, k) => a + row[k], 0);
  const pairs: ConfusedPair[] = [];
  for (let t = 0; t < K; t++) {
    for (let p = 0; p < K; p++) if (t !== p && counts[t][p] > 0) pairs.push({ true: t, predicted: p, count: counts[t][p], rate: rates[t][p] });
  }
  // stable sort keeps row/column order among full ties
  pairs.sort((a, b) => b.count - a.count || b.rate - a.rate);
  return {
    split: 'test',
    classes: K,
    count: labels.length,
    correct,
    accuracy: labels.length ? correct / labels.length : 0,
    counts,
    rates,
    support,
    predictedCounts,
    perClassAccuracy: counts.map((row, k) => (support[k] ? row[k] / support[k] : null)),
    precision: counts.map((row, k) => (predictedCounts[k] ? row[k] / predictedCounts[k] : null)),
    topConfusions: pairs.slice(0, topPairs),
    cells,
  };
}

export default defineTechnique({
  id: 'confusion-matrix',
  title: 'Confusion matrix',
  summary: 'Which classes the model mistakes for which, on the test split, with links to the images in every cell.',
  family: 'dataset',
  version: 1,
  needs: ['features'],
  params,
  async run(ctx): Promise<ConfusionData> {
    const features = ctx.deps.features as FeaturesData;
    const data = confusion(features, ctx.params.topPairs);
    ctx.log(`accuracy ${(100 * data.accuracy).toFixed(2)}% on ${data.count} test images`);
    return data;
  },
});
