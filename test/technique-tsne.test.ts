import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gaussianMixture } from '../bench/tsne';
import type { FeaturesData } from '../pipelines/engines/examples';
import type { LoadedModel } from '../pipelines/model/load';
import { Rng } from '../pipelines/rng';
import tsneTechnique, { stratifiedSample, type TsneData } from '../pipelines/techniques/tsne';
import { runTechnique, tinyReport, TinyDataset, TINY_SIZE } from './helpers/tiny-report';

/** A features result made by hand: a Gaussian mixture whose cluster is the image's label. */
function fakeFeatures(labels: number[], dim: number, seed: number): { deps: { features: FeaturesData }; depDirs: { features: string } } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'convlens-tsne-features-'));
  const n = labels.length;
  const mix = gaussianMixture(n, dim, 3, seed); // row i is in cluster i % 3 = the tiny dataset's label
  fs.writeFileSync(path.join(dir, 'test-features.f32'), new Uint8Array(mix.data.buffer));
  const data: FeaturesData = {
    layer: 'fake', dim, classes: 3,
    splits: { test: { count: n, labels, predicted: labels, confidence: labels.map(() => 1), featuresFile: 'test-features.f32', logitsFile: 'none' } },
  };
  return { deps: { features: data }, depDirs: { features: dir } };
}

let model: LoadedModel;
beforeAll(async () => {
  await tf.setBackend('cpu');
  ({ model } = await tinyReport({ trained: false }));
});
afterAll(() => model?.dispose());

describe('tsne technique', () => {
  // 300 test images (100 per class): more than a 12 × 12 grid holds, so the grid is a sample
  const dataset = new TinyDataset({ train: 1, test: 100 });
  const labels = Array.from({ length: 300 }, (_, i) => i % 3);

  it('lays out every test image and snaps a stratified sample onto the grid', async () => {
    const before = tf.memory().numTensors;
    const { data, dir, files } = await runTechnique(tsneTechnique, {
      model, dataset, ...fakeFeatures(labels, 16, 4), params: { gridSize: 12, iterations: 300 }, seed: 77,
    });
    expect(tf.memory().numTensors).toBe(before);
    expect(files).toEqual(['embedding.f32', 'embedding.json', 'tsne-grid.png']);
    const d = data as TsneData;
    expect(d.count).toBe(300);
    expect(d.x).toHaveLength(300);
    expect(d.y).toHaveLength(300);
    expect(d.labels).toEqual(labels);
    expect(d.x.every(Number.isFinite) && d.y.every(Number.isFinite)).toBe(true);

    // the grid: 144 distinct images, 48 per class, every cell filled
    const g = d.grid;
    expect([g.cols, g.rows]).toEqual([12, 12]);
    expect(g.cells).toHaveLength(144);
    expect(new Set(g.cells).size).toBe(144);
    expect(g.cells.every((i) => i >= 0 && i < 300)).toBe(true);
    for (let k = 0; k < 3; k++) expect(g.cells.filter((i) => labels[i] === k)).toHaveLength(48);
    const meta = await sharp(path.join(dir, g.file)).metadata();
    expect([meta.width, meta.height]).toEqual([g.width, g.height]);
    expect(g.width).toBe(12 * TINY_SIZE + 11 * g.gap);

    // each cell holds its image's pixels
    const raw = await sharp(path.join(dir, g.file)).raw().toBuffer({ resolveWithObject: true });
    const cell = 17;
    const index = g.cells[cell];
    const px = (await dataset.batches('test', 1, { indices: [index] }).next()).value!.pixels;
    const x0 = (cell % g.cols) * (g.cellWidth + g.gap);
    const y0 = Math.floor(cell / g.cols) * (g.cellHeight + g.gap);
    const ch = raw.info.channels;
    for (let y = 0; y < TINY_SIZE; y++) for (let x = 0; x < TINY_SIZE; x++) {
      expect(raw.data[((y0 + y) * raw.info.width + x0 + x) * ch]).toBe(px[y * TINY_SIZE + x]);
    }

    // the clusters separate: most of each image's 5 nearest layout neighbours share its label
    let same = 0;
    for (let i = 0; i < 300; i++) {
      const nn = labels.map((_, j) => j).filter((j) => j !== i)
        .sort((a, b) => (d.x[a] - d.x[i]) ** 2 + (d.y[a] - d.y[i]) ** 2 - ((d.x[b] - d.x[i]) ** 2 + (d.y[b] - d.y[i]) ** 2)).slice(0, 5);
      same += nn.filter((j) => labels[j] === labels[i]).length;
    }
    expect(same / 1500).toBeGreaterThan(0.9); // 16-d clusters overlap a little: not 1.0 even in feature space
  });

  it('is deterministic for a seed', async () => {
    const run = () => runTechnique(tsneTechnique, { model, dataset, ...fakeFeatures(labels, 16, 4), params: { gridSize: 8, iterations: 250 }, seed: 5 });
    const a = (await run()).data as TsneData;
    const b = (await run()).data as TsneData;
    expect(a).toEqual(b);
  });

  it('handles a split smaller than the grid (tiny dataset, 24 images)', async () => {
    const small = new TinyDataset();
    const l = Array.from({ length: 24 }, (_, i) => i % 3);
    const { data } = await runTechnique(tsneTechnique, { model, dataset: small, ...fakeFeatures(l, 8, 2), params: { iterations: 250 } });
    const d = data as TsneData;
    expect([d.grid.cols, d.grid.rows]).toEqual([5, 5]);
    expect(d.grid.cells.filter((i) => i >= 0).sort((a, b) => a - b)).toEqual(l.map((_, i) => i));
    expect(d.effectivePerplexity).toBeLessThan(23);
  });

  it('params default as documented', () => {
    expect(tsneTechnique.params.parse({})).toEqual({ perplexity: 30, iterations: 1000, theta: 0.5, gridSize: 32, thumbSize: 32 });
  });
});

describe('stratifiedSample', () => {
  it('keeps class proportions (largest remainder) and is seeded', () => {
    const labels = [...Array(50).fill(0), ...Array(30).fill(1), ...Array(20).fill(2)];
    const s = stratifiedSample(labels, 11, new Rng(1));
    expect(s).toHaveLength(11);
    expect(new Set(s).size).toBe(11);
    const counts = [0, 1, 2].map((k) => s.filter((i) => labels[i] === k).length);
    expect(counts).toEqual([6, 3, 2]); // 5.5, 3.3, 2.2 → 5+3+2, one left → class 0 (largest remainder)
    expect(stratifiedSample(labels, 11, new Rng(1))).toEqual(s);
    expect(stratifiedSample(labels, 500, new Rng(1))).toHaveLength(100);
  });
});
