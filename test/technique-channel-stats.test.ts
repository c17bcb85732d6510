import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { describe, expect, it } from 'vitest';
import type { LoadedModel } from '../pipelines/model/load';
import { Rng } from '../pipelines/rng';
import channelStats, { DEAD_THRESHOLD, spatialLayers, TopK, type ChannelStatsData, type TopEntry } from '../pipelines/techniques/channel-stats';
import { runTechnique, useTinyReport, TINY_SIZE, type TinyDataset } from './helpers/tiny-report';

let model: LoadedModel;
let dataset: TinyDataset;

useTinyReport((r) => ({ model, dataset } = r));

/** Reference ranking: value descending, then image index ascending. */
const fullSort = (xs: TopEntry[]) => [...xs].sort((a, b) => b[3] - a[3] || a[0] - b[0]);

describe('TopK', () => {
  it('keeps the same k entries as a full sort, ties included', () => {
    const rng = new Rng(11);
    for (const k of [1, 3, 9, 50]) {
      const all: TopEntry[] = Array.from({ length: 200 }, (_, i) => [i, rng.int(5), rng.int(5), rng.int(40) / 4]);
      const top = new TopK(k);
      for (const e of all) top.offer(e);
      expect(top.sorted()).toEqual(fullSort(all).slice(0, k));
    }
  });
});

describe('channel-stats', () => {
  it('captures every conv/pool layer as its post-activation node', () => {
    expect(spatialLayers(model.executor).map((n) => n.name)).toEqual(['c1', 'p1', 'c2', 'p2', 'c3']);
  });

  it('streams the test split: zero fractions, means and top-k match a full in-memory computation', async () => {
    const before = tf.memory().numTensors;
    // batch 5 does not divide 24 images: top-k must not depend on batching
    const { data, files } = await runTechnique(channelStats, { model, dataset, params: { k: 4, batchSize: 5 } });
    expect(tf.memory().numTensors).toBe(before);
    expect(files).toEqual([]);
    const d = data as ChannelStatsData;
    expect(d.images).toBe(24);
    expect(d.deadThreshold).toBe(DEAD_THRESHOLD);
    expect(d.layers.map((l) => l.name)).toEqual(['c1', 'p1', 'c2', 'p2', 'c3']);

    // reference: all activations of all 24 images at once, sorted in full
    const batch = (await dataset.batches('test', 1000).next()).value!;
    const n = batch.size;
    const names = d.layers.map((l) => l.name);
    const acts = tf.tidy(() => {
      const x = tf.tensor4d(batch.images, [n, TINY_SIZE, TINY_SIZE, 1]);
      return names.map((name) => model.executor.run(x, { capture: names }).captured[name]);
    });
    for (const [l, layer] of d.layers.entries()) {
      const a = acts[l] as tf.Tensor4D;
      const [, h, w, c] = a.shape;
      expect(layer.shape).toEqual([h, w, c]);
      const v = await a.data();
      for (let ch = 0; ch < c; ch++) {
        const perImage: TopEntry[] = [];
        let zeros = 0;
        let sum = 0;
        for (let i = 0; i < n; i++) {
          let best: TopEntry = [i, 0, 0, -Infinity];
          let allZero = true;
          for (let y = 0; y < h; y++) {
            for (let x = 0; x < w; x++) {
              const val = v[((i * h + y) * w + x) * c + ch];
              sum += val;
              if (val !== 0) allZero = false;
              if (val > best[3]) best = [i, y, x, val]; // first maximum in row-major order
            }
          }
          if (allZero) zeros++;
          perImage.push(best);
        }
        expect(layer.zeroFraction[ch]).toBeCloseTo(zeros / n, 5);
        expect(layer.mean[ch]).toBeCloseTo(sum / (n * h * w), 4);
        const want = fullSort(perImage).slice(0, 4);
        const got = layer.top[ch];
        expect(got.map((e) => e[0])).toEqual(want.map((e) => e[0]));
        expect(got.map((e) => [e[1], e[2]])).toEqual(want.map((e) => [e[1], e[2]]));
        got.forEach((e, j) => expect(e[3]).toBeCloseTo(want[j][3], 4));
      }
      expect(layer.dead).toEqual(layer.zeroFraction.flatMap((f, ch) => (f >= DEAD_THRESHOLD ? [ch] : [])));
      expect(layer.deadFraction).toBeCloseTo(layer.dead.length / c, 6);
    }
    tf.dispose(acts);
  });

  it('rejects a layer that is not an image grid', async () => {
    await expect(runTechnique(channelStats, { model, dataset, params: { layers: ['gap'] } })).rejects.toThrow(/not an image grid/);
  });
});
