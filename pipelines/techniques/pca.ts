/**
 * `pca`: principal component analysis of the test split's feature vectors. The covariance matrix
 * is built on the backend in row blocks, eigendecomposed in JS (it is only dim × dim), and every
 * test point is projected onto the first two components for a scatter plot with axis arrows.
 */
import { z } from 'zod';
import type { FeaturesData } from '../engines/examples';
import { columnMeans, covariance, project, symmetricEigen } from '../engines/linalg';
import { defineTechnique } from '../technique';
import { featuresPath, rowBlocks } from './features';

const params = z.object({
  components: z.number().int().min(2).max(100).default(10).describe('components whose explained variance is reported'),
  blockRows: z.number().int().min(16).max(65536).default(4096).describe('feature rows per covariance block'),
});

export interface PcaData {
  layer: string;
  dim: number;
  /** test images used (all of them) */
  count: number;
  /** sum of all eigenvalues = total variance of the features */
  totalVariance: number;
  /** variance along each of the first components (eigenvalues of the covariance, descending) */
  variance: number[];
  /** variance / totalVariance, per component */
  explainedVarianceRatio: number[];
  cumulativeRatio: number[];
  /** the 2-D projection of every test image onto components 1 and 2, in index order */
  points: { x: number[]; y: number[]; label: number[]; predicted: number[] };
  /**
   * Principal-axis arrows in the 2-D plot: from the mean (the origin) along each component's unit
   * vector, scaled by the standard deviation sqrt(variance) along it.
   */
  arrows: { component: number; from: [number, number]; to: [number, number]; length: number }[];
  /** float32 files: the mean vector (dim) and the first components (rows of length dim) */
  meanFile: string;
  componentsFile: string;
}

/** Rounds to 6 significant digits: plenty for a plot, and 10k points stay a small result.json. */
const round = (v: number) => (v === 0 ? 0 : Number(v.toPrecision(6)));

export default defineTechnique({
  id: 'pca',
  title: 'PCA of the features',
  summary: 'The directions of largest variance of the feature vectors, and every test image projected onto the first two.',
  family: 'dataset',
  version: 1,
  needs: ['features'],
  params,
  async run(ctx): Promise<PcaData> {
    const features = ctx.deps.features as FeaturesData;
    const { test } = features.splits;
    const dim = features.dim;
    const file = featuresPath(ctx.depDirs.features, test);
    const blocks = () => rowBlocks(file, dim, test.count, ctx.params.blockRows);
    const total = 3 * test.count;
    ctx.progress(0, total);
    const { mean } = await columnMeans(blocks(), dim);
    ctx.progress(test.count, total);
    const cov = await covariance(blocks(), dim, mean, test.count, (r) => ctx.progress(test.count + r, total));
    const { values, vectors } = symmetricEigen(cov, dim);
    const eig = values.map((v) => Math.max(0, v)); // round-off can make a zero eigenvalue slightly negative
    const totalVariance = eig.reduce((a, b) => a + b, 0);
    const n = Math.min(ctx.params.components, dim);
    const variance = eig.slice(0, n);
    const ratio = variance.map((v) => (totalVariance > 0 ? v / totalVariance : 0));
    const cumulative = ratio.map((_, i) => ratio.slice(0, i + 1).reduce((a, b) => a + b, 0));

    const axes = [vectors[0], vectors[1] ?? new Float64Array(dim)];
    const xy = await project(blocks(), dim, mean, axes, test.count);
    ctx.progress(total, total);

    const comps = new Float32Array(n * dim);
    for (let c = 0; c < n; c++) comps.set(vectors[c], c * dim);
    await ctx.out.float32('mean', Float32Array.from(mean), [dim]);
    await ctx.out.float32('components', comps, [n, dim]);
    ctx.log(`first two components explain ${(100 * (cumulative[1] ?? cumulative[0])).toFixed(1)}% of the variance`);

    const sd = (c: number) => Math.sqrt(variance[c] ?? 0);
    return {
      layer: features.layer,
      dim,
      count: test.count,
      totalVariance,
      variance,
      explainedVarianceRatio: ratio,
      cumulativeRatio: cumulative,
      points: {
        x: Array.from({ length: test.count }, (_, i) => round(xy[2 * i])),
        y: Array.from({ length: test.count }, (_, i) => round(xy[2 * i + 1])),
        label: test.labels,
        predicted: test.predicted,
      },
      arrows: [
        { component: 1, from: [0, 0], to: [sd(0), 0], length: sd(0) },
        { component: 2, from: [0, 0], to: [0, sd(1)], length: sd(1) },
      ],
      meanFile: 'mean.f32',
      componentsFile: 'components.f32',
    };
  },
});
