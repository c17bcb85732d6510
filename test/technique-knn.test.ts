import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FeaturesData } from '../pipelines/engines/examples';
import { exactKnn, memoryBlocks, type Metric } from '../pipelines/engines/linalg';
import type { LoadedModel } from '../pipelines/model/load';
import { Rng } from '../pipelines/rng';
import features from '../pipelines/techniques/features';
import knn, { neighbourAgreement, type KnnData } from '../pipelines/techniques/knn';
import { runTechnique, tinyReport, type TinyDataset } from './helpers/tiny-report';

function randomMatrix(rows: number, dim: number, rng: Rng): Float32Array {
  return Float32Array.from({ length: rows * dim }, () => rng.normal());
}

/** Pairwise float64 distances, sorted: the reference the blocked search must reproduce. */
function bruteForce(q: Float32Array, r: Float32Array, dim: number, metric: Metric): { index: number; d: number }[][] {
  const m = q.length / dim;
  const n = r.length / dim;
  const out = [];
  for (let a = 0; a < m; a++) {
    const row = [];
    for (let b = 0; b < n; b++) {
      let dot = 0, qa = 0, rb = 0, sq = 0;
      for (let j = 0; j < dim; j++) {
        const x = q[a * dim + j];
        const y = r[b * dim + j];
        dot += x * y; qa += x * x; rb += y * y; sq += (x - y) ** 2;
      }
      row.push({ index: b, d: metric === 'euclidean' ? Math.sqrt(sq) : 1 - dot / Math.sqrt(qa * rb) });
    }
    out.push(row.sort((u, v) => u.d - v.d));
  }
  return out;
}

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('exactKnn against brute force', () => {
  const dim = 16;
  const rng = new Rng(11);
  const q = randomMatrix(40, dim, rng);
  const r = randomMatrix(333, dim, rng);
  for (const metric of ['cosine', 'euclidean'] as const) {
    for (const blockRows of [50, 5, 1000]) {
      it(`${metric}, blocks of ${blockRows}`, async () => {
        const k = 8;
        const before = tf.memory().numTensors;
        const got = await exactKnn(q, dim, memoryBlocks(r, dim, blockRows), { k, metric });
        expect(tf.memory().numTensors).toBe(before);
        const want = bruteForce(q, r, dim, metric);
        for (let a = 0; a < 40; a++) {
          // precondition: the k+1 nearest distances are distinct, so the order is well defined
          for (let j = 0; j < k; j++) expect(want[a][j + 1].d - want[a][j].d).toBeGreaterThan(1e-5);
          expect(Array.from(got.indices.subarray(a * k, a * k + k))).toEqual(want[a].slice(0, k).map((x) => x.index));
          for (let j = 0; j < k; j++) expect(got.distances[a * k + j]).toBeCloseTo(want[a][j].d, 4);
        }
      });
    }
  }

  it('pads with -1 when there are fewer than k reference rows', async () => {
    const got = await exactKnn(q.subarray(0, dim), dim, memoryBlocks(r.subarray(0, 3 * dim), dim, 2), { k: 5, metric: 'euclidean' });
    expect(Array.from(got.indices).slice(3)).toEqual([-1, -1]);
    expect(new Set(Array.from(got.indices).slice(0, 3))).toEqual(new Set([0, 1, 2]));
  });
});

describe('neighbour-label agreement by hand', () => {
  it('per class share of same-label neighbours and majority vote', () => {
    const trainLabels = [0, 0, 1, 1, 2];
    // k = 3; query labels 0, 0, 1, 2
    const indices = Int32Array.from([
      0, 1, 2, // label 0: neighbours 0,0,1 → 2/3 agree, vote 0 ✓
      2, 3, 0, // label 0: neighbours 1,1,0 → 1/3, vote 1 ✗
      4, 2, 0, // label 1: neighbours 2,1,0 → 1/3, all tied: nearest (2) wins ✗
      4, -1, -1, // label 2: one neighbour found, label 2 → 1, vote 2 ✓
    ]);
    const a = neighbourAgreement({ k: 3, indices }, [0, 0, 1, 2], trainLabels, 4);
    expect(a.count).toBe(4);
    expect(a.perClass[0]).toBeCloseTo(0.5, 12);
    expect(a.perClass[1]).toBeCloseTo(1 / 3, 12);
    expect(a.perClass[2]).toBe(1);
    expect(a.perClass[3]).toBeNull();
    expect(a.overall).toBeCloseTo((2 / 3 + 1 / 3 + 1 / 3 + 1) / 4, 12);
    expect(a.votePerClass).toEqual([0.5, 0, 1, null]);
    expect(a.voteAccuracy).toBe(0.5);
  });
});

describe('knn on the tiny report', () => {
  let model: LoadedModel;
  let dataset: TinyDataset;
  beforeAll(async () => {
    ({ model, dataset } = await tinyReport());
  });
  afterAll(() => model?.dispose());

  it('shows strips of the chosen queries and measures agreement over the whole test split', async () => {
    const feat = await runTechnique(features, { model, dataset });
    const before = tf.memory().numTensors;
    const { data, dir, files } = await runTechnique(knn, {
      model, dataset, deps: { features: feat.data }, depDirs: { features: feat.dir }, params: { k: 4, blockRows: 16, queryRows: 10 },
    });
    expect(tf.memory().numTensors).toBe(before);
    const d = data as KnnData;
    const f = feat.data as FeaturesData;
    expect(d.k).toBe(4);
    expect(d.metric).toBe('cosine');
    expect(d.trainCount).toBe(60);
    expect(d.queries.length).toBeGreaterThanOrEqual(3);
    expect(files).toEqual(d.queries.map((q) => q.strip).sort());
    for (const q of d.queries) {
      expect(fs.existsSync(path.join(dir, q.strip))).toBe(true);
      expect(q.neighbours.indices).toHaveLength(4);
      expect(q.neighbours.labels).toEqual(q.neighbours.indices.map((i) => f.splits.train!.labels[i]));
      expect([...q.neighbours.distances].sort((a, b) => a - b)).toEqual(q.neighbours.distances);
    }
    // strip: 5 tiles of 16 px upscaled ×4 = 64 px, 12 px gaps
    const png = fs.readFileSync(path.join(dir, d.queries[0].strip));
    expect([png.readUInt32BE(16), png.readUInt32BE(20)]).toEqual([5 * 64 + 4 * 12, 64]);
    const a = d.agreement!;
    expect(a.count).toBe(24);
    expect(a.perClass).toHaveLength(3);
    // the tiny model separates its three patterns: neighbours mostly agree
    expect(a.overall).toBeGreaterThan(0.7);
  });

  it('needs a training split', async () => {
    const feat = await runTechnique(features, { model, dataset, params: { maxTrain: 0 } });
    await expect(runTechnique(knn, { model, dataset, deps: { features: feat.data }, depDirs: { features: feat.dir } })).rejects.toThrow(/no training images/);
  });
});
