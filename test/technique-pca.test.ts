import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { PCA } from 'ml-pca';
import { describe, expect, it } from 'vitest';
import type { FeaturesData } from '../pipelines/engines/examples';
import type { LoadedModel } from '../pipelines/model/load';
import { Rng } from '../pipelines/rng';
import features, { readRows } from '../pipelines/techniques/features';
import pca, { type PcaData } from '../pipelines/techniques/pca';
import { runTechnique, useTinyReport, type TinyDataset } from './helpers/tiny-report';

/** A features result made by hand: `values` (rows × dim) as the test split's features file. */
function fakeFeatures(values: Float32Array, dim: number): { deps: { features: FeaturesData }; depDirs: { features: string } } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'convlens-pca-features-'));
  fs.writeFileSync(path.join(dir, 'test-features.f32'), new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
  const n = values.length / dim;
  const labels = Array.from({ length: n }, (_, i) => i % 3);
  const data: FeaturesData = {
    layer: 'fake', dim, classes: 3,
    splits: { test: { count: n, labels, predicted: labels, confidence: labels.map(() => 1), featuresFile: 'test-features.f32', logitsFile: 'none' } },
  };
  return { deps: { features: data }, depDirs: { features: dir } };
}

let model: LoadedModel;
let dataset: TinyDataset;
useTinyReport((r) => ({ model, dataset } = r));

describe('pca against ml-pca', () => {
  it('explained variance to 1e-4 relative, axes up to sign, projection', async () => {
    // low rank plus noise, like CNN features: 12 latent factors with decaying scales, mixed into 24-d, offset mean
    const rng = new Rng(5);
    const n = 600, dim = 24, latent = 12;
    const mix = Array.from({ length: latent * dim }, () => rng.normal());
    const values = new Float32Array(n * dim);
    for (let i = 0; i < n; i++) {
      const z = Array.from({ length: latent }, (_, j) => rng.normal() * 3 * Math.exp(-j / 3));
      for (let d = 0; d < dim; d++) {
        let v = 5 + d * 0.1 + 0.1 * rng.normal();
        for (let j = 0; j < latent; j++) v += z[j] * mix[j * dim + d];
        values[i * dim + d] = v;
      }
    }
    const before = tf.memory().numTensors;
    const { data, dir, files } = await runTechnique(pca, { model, dataset, ...fakeFeatures(values, dim), params: { blockRows: 64 } });
    expect(tf.memory().numTensors).toBe(before);
    expect(files).toEqual(['components.f32', 'components.json', 'mean.f32', 'mean.json']);
    const d = data as PcaData;

    const rows = Array.from({ length: n }, (_, i) => Array.from(values.subarray(i * dim, (i + 1) * dim), Number));
    const ref = new PCA(rows, { method: 'SVD', center: true, scale: false });
    const refRatio = ref.getExplainedVariance();
    const refVar = ref.getEigenvalues();
    expect(d.explainedVarianceRatio).toHaveLength(10);
    for (let c = 0; c < 10; c++) {
      expect(Math.abs(d.explainedVarianceRatio[c] - refRatio[c]) / refRatio[c]).toBeLessThan(1e-4);
      expect(Math.abs(d.variance[c] - refVar[c]) / refVar[c]).toBeLessThan(1e-4);
    }
    const V = ref.getEigenvectors();
    const components = await readRows(path.join(dir, d.componentsFile), dim, 0, 10);
    for (let c = 0; c < 4; c++) {
      const refAxis = V.getColumn(c);
      const axis = components.subarray(c * dim, (c + 1) * dim);
      let dot = 0;
      for (let j = 0; j < dim; j++) dot += refAxis[j] * axis[j];
      expect(Math.abs(dot)).toBeGreaterThan(1 - 1e-5);
    }
    // projection = ml-pca's scores on the first two components, up to each axis' sign
    const scores = ref.predict(rows, { nComponents: 2 });
    for (const [c, coord] of [d.points.x, d.points.y].entries()) {
      const sign = Math.sign(scores.get(0, c) * coord[0]);
      for (let i = 0; i < n; i += 37) expect(coord[i]).toBeCloseTo(sign * scores.get(i, c), 3);
    }
    expect(d.arrows[0].to).toEqual([Math.sqrt(d.variance[0]), 0]);
    expect(d.arrows[1].to).toEqual([0, Math.sqrt(d.variance[1])]);
  });
});

describe('pca: analytic and tiny-report cases', () => {
  it('points on a line: one component explains everything, along the line', async () => {
    const dim = 5;
    const u = [1, 2, 0, -2, 4].map((v) => v / 5);
    const n = 50;
    const values = new Float32Array(n * dim);
    for (let i = 0; i < n; i++) for (let j = 0; j < dim; j++) values[i * dim + j] = 3 + (i - 20) * 0.5 * u[j];
    const { data, dir } = await runTechnique(pca, { model, dataset, ...fakeFeatures(values, dim) });
    const d = data as PcaData;
    expect(d.explainedVarianceRatio).toHaveLength(5); // fewer dimensions than 10 components
    expect(d.explainedVarianceRatio[0]).toBeCloseTo(1, 6);
    for (const r of d.explainedVarianceRatio.slice(1)) expect(r).toBeLessThan(1e-6);
    // variance of t·0.5 for t = -20..29: 0.25 · var(t) with var(t) = n(n+1)/12
    expect(d.variance[0]).toBeCloseTo(0.25 * (n * (n + 1)) / 12, 3);
    const axis = await readRows(path.join(dir, d.componentsFile), dim, 0, 1);
    // sign rule: the largest-magnitude entry is positive, so the axis is +u
    for (let j = 0; j < dim; j++) expect(axis[j]).toBeCloseTo(u[j], 5);
    for (let i = 0; i < n; i++) {
      expect(d.points.x[i]).toBeCloseTo((i - 20) * 0.5 - 4.5 * 0.5, 4); // centred: mean of t is 4.5
      expect(Math.abs(d.points.y[i])).toBeLessThan(1e-3);
    }
  });

  it('runs on the tiny report features', async () => {
    const feat = await runTechnique(features, { model, dataset, params: { maxTrain: 0 } });
    const before = tf.memory().numTensors;
    const { data, files } = await runTechnique(pca, { model, dataset, deps: { features: feat.data }, depDirs: { features: feat.dir } });
    expect(tf.memory().numTensors).toBe(before);
    const d = data as PcaData;
    expect(d.dim).toBe(8);
    expect(d.count).toBe(24);
    expect(d.points.x).toHaveLength(24);
    expect(d.points.label).toEqual((feat.data as FeaturesData).splits.test.labels);
    expect(d.explainedVarianceRatio).toHaveLength(8);
    expect(d.cumulativeRatio[7]).toBeCloseTo(1, 5);
    for (let c = 1; c < 8; c++) expect(d.variance[c]).toBeLessThanOrEqual(d.variance[c - 1]);
    expect(files).toContain('components.f32');
  });
});
