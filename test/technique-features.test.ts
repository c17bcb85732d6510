import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { describe, expect, it } from 'vitest';
import type { FeaturesData } from '../pipelines/engines/examples';
import type { LoadedModel } from '../pipelines/model/load';
import features, { findLayers, readRows } from '../pipelines/techniques/features';
import { runTechnique, useTinyReport, TINY_SIZE, type TinyDataset } from './helpers/tiny-report';

let model: LoadedModel;
let dataset: TinyDataset;

useTinyReport((r) => ({ model, dataset } = r));

describe('features', () => {
  it('finds the logits (last Dense) and its input as the default feature layer', () => {
    expect(findLayers(model.executor)).toEqual({ logits: 'logits', features: 'gap' });
  });

  it('streams features and logits of both splits to files and records predictions', async () => {
    const before = tf.memory().numTensors;
    // batch 7 does not divide the split sizes: the last, short batch must be handled
    const { data, dir, files } = await runTechnique(features, { model, dataset, params: { batchSize: 7 } });
    expect(tf.memory().numTensors).toBe(before);
    const d = data as FeaturesData & { logitsLayer: string };
    expect(d.layer).toBe('gap');
    expect(d.logitsLayer).toBe('logits');
    expect(d.dim).toBe(8);
    expect(d.classes).toBe(3);
    expect(files).toEqual(['test-features.f32', 'test-features.json', 'test-logits.f32', 'test-logits.json', 'train-features.f32', 'train-features.json', 'train-logits.f32', 'train-logits.json']);
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'test-features.json'), 'utf8')).shape).toEqual([24, 8]);

    // independent check: tfjs-layers' own predict (softmax output) and the executor at 'gap'
    for (const split of ['test', 'train'] as const) {
      const s = d.splits[split]!;
      const n = dataset.splitSizes[split];
      expect(s.count).toBe(n);
      expect(fs.statSync(path.join(dir, s.featuresFile)).size).toBe(n * 8 * 4);
      expect(fs.statSync(path.join(dir, s.logitsFile)).size).toBe(n * 3 * 4);
      const batch = (await dataset.batches(split, 1000).next()).value!;
      expect(s.labels).toEqual(Array.from(batch.labels));
      const [probs, gap] = tf.tidy(() => {
        const x = tf.tensor4d(batch.images, [n, TINY_SIZE, TINY_SIZE, 1]);
        return [model.layersModel.predict(x) as tf.Tensor, model.executor.run(x, { upTo: 'gap' }).output];
      });
      const p = (await probs.array()) as number[][];
      const g = await gap.data();
      tf.dispose([probs, gap]);
      for (let i = 0; i < n; i++) {
        const best = p[i].indexOf(Math.max(...p[i]));
        expect(s.predicted[i]).toBe(best);
        expect(s.confidence[i]).toBeCloseTo(p[i][best], 5);
      }
      const stored = await readRows(path.join(dir, s.featuresFile), 8, 0, n);
      for (let i = 0; i < g.length; i++) expect(stored[i]).toBeCloseTo(g[i], 5);
    }
    // the tiny model learns its patterns: most test images are right
    const acc = d.splits.test.labels.filter((y, i) => y === d.splits.test.predicted[i]).length / 24;
    expect(acc).toBeGreaterThan(0.8);
  });

  it('caps the training split with maxTrain and accepts a named layer', async () => {
    const { data, dir } = await runTechnique(features, { model, dataset, params: { maxTrain: 10, layer: 'c3' } });
    const d = data as FeaturesData;
    expect(d.dim).toBe(4 * 4 * 8);
    expect(d.splits.train!.count).toBe(10);
    expect(d.splits.train!.labels).toEqual([0, 1, 2, 0, 1, 2, 0, 1, 2, 0]);
    expect(fs.statSync(path.join(dir, d.splits.train!.featuresFile)).size).toBe(10 * 128 * 4);
    const none = (await runTechnique(features, { model, dataset, params: { maxTrain: 0 } })).data as FeaturesData;
    expect(none.splits.train).toBeUndefined();
  });

  it('rejects an unknown layer with a ConvlensError that suggests names', async () => {
    await expect(runTechnique(features, { model, dataset, params: { layer: 'gapp' } })).rejects.toThrow(/unknown layer name 'gapp'.*did you mean 'gap'/);
  });
});
