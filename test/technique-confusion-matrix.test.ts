import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { describe, expect, it } from 'vitest';
import type { FeaturesData } from '../pipelines/engines/examples';
import type { LoadedModel } from '../pipelines/model/load';
import confusionMatrix, { confusion, type ConfusionData } from '../pipelines/techniques/confusion-matrix';
import features from '../pipelines/techniques/features';
import { runTechnique, useTinyReport, type TinyDataset } from './helpers/tiny-report';

function made(labels: number[], predicted: number[], classes: number): FeaturesData {
  const n = labels.length;
  return {
    layer: 'x', dim: 1, classes,
    splits: { test: { count: n, labels, predicted, confidence: labels.map(() => 1), featuresFile: 'f', logitsFile: 'l' } },
  };
}

describe('confusion matrix by hand', () => {
  //            index: 0  1  2  3  4  5  6  7  8  9
  const labels = [0, 0, 0, 1, 1, 1, 1, 2, 2, 0];
  const predicted = [0, 1, 1, 1, 1, 2, 0, 2, 1, 0];
  const d = confusion(made(labels, predicted, 4));

  it('counts, rates, support and accuracy', () => {
    expect(d.counts).toEqual([
      [2, 2, 0, 0],
      [1, 2, 1, 0],
      [0, 1, 1, 0],
      [0, 0, 0, 0],
    ]);
    expect(d.support).toEqual([4, 4, 2, 0]);
    expect(d.predictedCounts).toEqual([3, 5, 2, 0]);
    expect(d.rates[0]).toEqual([0.5, 0.5, 0, 0]);
    expect(d.rates[1]).toEqual([0.25, 0.5, 0.25, 0]);
    expect(d.rates[3]).toEqual([0, 0, 0, 0]); // no test images of class 3
    expect(d.correct).toBe(5);
    expect(d.accuracy).toBe(0.5);
    expect(d.perClassAccuracy).toEqual([0.5, 0.5, 0.5, null]);
    expect(d.precision).toEqual([2 / 3, 2 / 5, 0.5, null]);
  });

  it('cells list the image indices', () => {
    expect(d.cells[0][0]).toEqual([0, 9]);
    expect(d.cells[0][1]).toEqual([1, 2]);
    expect(d.cells[1][0]).toEqual([6]);
    expect(d.cells[1][2]).toEqual([5]);
    expect(d.cells[2][1]).toEqual([8]);
    expect(d.cells[3][3]).toEqual([]);
  });

  it('most confused pairs: by count, then rate, then order', () => {
    expect(d.topConfusions).toEqual([
      { true: 0, predicted: 1, count: 2, rate: 0.5 },
      { true: 2, predicted: 1, count: 1, rate: 0.5 },
      { true: 1, predicted: 0, count: 1, rate: 0.25 },
      { true: 1, predicted: 2, count: 1, rate: 0.25 },
    ]);
    expect(confusion(made(labels, predicted, 4), 2).topConfusions).toHaveLength(2);
  });

  it('rejects labels outside the classes', () => {
    expect(() => confusion(made([0, 5], [0, 0], 3))).toThrow(/outside 0..2/);
  });
});

describe('confusion-matrix on the tiny report', () => {
  let model: LoadedModel;
  let dataset: TinyDataset;
  useTinyReport((r) => ({ model, dataset } = r));

  it('runs on the features result and agrees with it', async () => {
    const feat = await runTechnique(features, { model, dataset, params: { maxTrain: 0 } });
    const before = tf.memory().numTensors;
    const { data, files } = await runTechnique(confusionMatrix, { model, dataset, deps: { features: feat.data }, depDirs: { features: feat.dir } });
    expect(tf.memory().numTensors).toBe(before);
    expect(files).toEqual([]);
    const d = data as ConfusionData;
    const f = feat.data as FeaturesData;
    expect(d.count).toBe(24);
    expect(d.support).toEqual([8, 8, 8]);
    expect(d.counts.flat().reduce((a, b) => a + b, 0)).toBe(24);
    expect(d.accuracy).toBe(f.splits.test.labels.filter((y, i) => y === f.splits.test.predicted[i]).length / 24);
    for (let t = 0; t < 3; t++) for (let p = 0; p < 3; p++) for (const i of d.cells[t][p]) expect([f.splits.test.labels[i], f.splits.test.predicted[i]]).toEqual([t, p]);
  });
});
