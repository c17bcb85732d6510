import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gaussianMixture, labelPurity } from '../bench/tsne';
import type { FeaturesData } from '../pipelines/engines/examples';
import type { LoadedModel } from '../pipelines/model/load';
import umapTechnique, { type UmapData } from '../pipelines/techniques/umap';
import { runTechnique, tinyReport, type TinyDataset } from './helpers/tiny-report';

/** Features of a labelled Gaussian mixture (n × dim, 10 clusters; label = cluster). */
function mixtureFeatures(n: number, dim: number): { deps: { features: FeaturesData }; depDirs: { features: string }; labels: number[] } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'convlens-umap-features-'));
  const mix = gaussianMixture(n, dim, 10, 21);
  fs.writeFileSync(path.join(dir, 'f.f32'), new Uint8Array(mix.data.buffer));
  const labels = Array.from(mix.labels);
  const data: FeaturesData = {
    layer: 'fake', dim, classes: 10,
    splits: { test: { count: n, labels, predicted: labels, confidence: labels.map(() => 1), featuresFile: 'f.f32', logitsFile: 'none' } },
  };
  return { deps: { features: data }, depDirs: { features: dir }, labels };
}

let model: LoadedModel;
let dataset: TinyDataset;
beforeAll(async () => {
  await tf.setBackend('cpu');
  ({ model, dataset } = await tinyReport({ trained: false }));
});
afterAll(() => model?.dispose());

describe('umap technique on a Gaussian mixture (600 × 32, 10 clusters)', () => {
  const { labels, ...feat } = mixtureFeatures(600, 32);

  it('separates the clusters: 10 nearest 2-D neighbours share the label (> 0.9)', async () => {
    const before = tf.memory().numTensors;
    const { data, files } = await runTechnique(umapTechnique, { model, dataset, ...feat, seed: 3 });
    expect(tf.memory().numTensors).toBe(before);
    expect(files).toEqual(['embedding.f32', 'embedding.json']);
    const d = data as UmapData;
    expect(d.count).toBe(600);
    expect(d.labels).toEqual(labels);
    expect([d.nNeighbors, d.minDist]).toEqual([15, 0.1]);
    const xy = new Float32Array(1200);
    d.x.forEach((v, i) => { xy[2 * i] = v; xy[2 * i + 1] = d.y[i]; });
    expect(xy.every(Number.isFinite)).toBe(true);
    expect(labelPurity(xy, labels, 600, 10, labels.map((_, i) => i))).toBeGreaterThan(0.9);
  });

  it('is deterministic for a seed, and the seed matters', async () => {
    const run = (seed: number) => runTechnique(umapTechnique, { model, dataset, ...feat, seed, params: { nEpochs: 50 } });
    const a = (await run(9)).data as UmapData;
    const b = (await run(9)).data as UmapData;
    const c = (await run(10)).data as UmapData;
    expect(a).toEqual(b);
    expect(a.x).not.toEqual(c.x);
  });

  it('params default as documented', () => {
    expect(umapTechnique.params.parse({})).toEqual({ nNeighbors: 15, minDist: 0.1 });
  });
});
