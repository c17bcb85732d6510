import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FeaturesData } from '../pipelines/engines/examples';
import { applyColormap } from '../pipelines/images';
import type { LoadedModel } from '../pipelines/model/load';
import activations, { layerScale, percentileOf, type ActivationsData } from '../pipelines/techniques/activations';
import channelStats, { type ChannelStatsData } from '../pipelines/techniques/channel-stats';
import { runTechnique, tinyReport, TINY_SIZE, type TinyDataset } from './helpers/tiny-report';

let model: LoadedModel;
let dataset: TinyDataset;
let stats: ChannelStatsData;

/** Hand-made predictions: all right except test image 4 (a class-1 image called class 0). */
function handFeatures(): FeaturesData {
  const labels = Array.from({ length: 24 }, (_, i) => i % 3);
  const predicted = labels.map((y, i) => (i === 4 ? 0 : y));
  return {
    layer: 'gap', dim: 8, classes: 3,
    splits: { test: { count: 24, labels, predicted, confidence: labels.map(() => 0.9), featuresFile: 'x.f32', logitsFile: 'y.f32' } },
  };
}

async function rgbAt(file: string, x: number, y: number): Promise<number[]> {
  const { data, info } = await sharp(file).raw().toBuffer({ resolveWithObject: true });
  const i = (y * info.width + x) * info.channels;
  return Array.from(data.subarray(i, i + 3));
}

beforeAll(async () => {
  await tf.setBackend('cpu');
  ({ model, dataset } = await tinyReport());
  stats = (await runTechnique(channelStats, { model, dataset })).data as ChannelStatsData;
});
afterAll(() => model?.dispose());

describe('layer scale', () => {
  it('is symmetric rdbu for signed layers and viridis from 0 otherwise; percentile by nearest rank', () => {
    expect(layerScale(-2, 1)).toMatchObject({ map: 'rdbu', min: -2, max: 2 });
    expect(layerScale(0, 3)).toMatchObject({ map: 'viridis', min: 0, max: 3 });
    expect(layerScale(0, 3, 1.5)).toMatchObject({ max: 1.5, valueMax: 3 });
    expect(percentileOf(Float32Array.from([5, 1, 4, 2, 3]), 100)).toBe(5);
    expect(percentileOf(Float32Array.from([5, 1, 4, 2, 3]), 60)).toBe(3);
  });
});

describe('activations', () => {
  it('draws every channel of every conv/pool layer for one right and one wrong image per class', async () => {
    const before = tf.memory().numTensors;
    const { data, dir, files } = await runTechnique(activations, { model, dataset, deps: { features: handFeatures(), 'channel-stats': stats } });
    expect(tf.memory().numTensors).toBe(before);
    const d = data as ActivationsData;
    for (const f of files) expect(fs.existsSync(path.join(dir, f))).toBe(true);
    expect(d.images.map((im) => [im.index, im.label, im.correct])).toEqual([[0, 0, true], [1, 1, true], [4, 1, false], [2, 2, true]]);
    expect(d.layers.map((l) => l.name)).toEqual(['c1', 'p1', 'c2', 'p2', 'c3']);
    for (const [l, layer] of d.layers.entries()) {
      expect(layer.scale.map).toBe('viridis'); // ReLU and pooled ReLU outputs are ≥ 0
      expect(layer.deadFraction).toBe(stats.layers[l].deadFraction);
      expect(files).toContain(layer.legend.file);
    }
    // c1: 16×16×4, upscale 2 → 32 px cells, 2 columns, 2 px gap
    const c1 = d.layers[0];
    expect(c1).toMatchObject({ shape: [16, 16, 4], upscale: 2, columns: 2, channelsShown: 4, cell: [32, 32] });
    const img = d.images[2];
    expect(img.layers[0]).toMatchObject({ layer: 'c1', width: 66, height: 66, deadFraction: c1.deadFraction });

    // independent check: the executor's c1 output on the four chosen images sets the scale,
    // and image 4's pixels in the grid are that output through the same colour map
    const batch = (await dataset.batches('test', 10, { indices: [0, 1, 4, 2] }).next()).value!;
    const act = tf.tidy(() => model.executor.run(tf.tensor4d(batch.images, [4, TINY_SIZE, TINY_SIZE, 1]), { upTo: 'c1' }).output);
    const v = await act.data();
    act.dispose();
    expect(c1.scale.max).toBeCloseTo(Math.max(...v), 5);
    const file = path.join(dir, img.layers[0].file);
    for (const [ch, y, x] of [[0, 3, 5], [1, 8, 8], [2, 15, 0], [3, 0, 15]]) {
      const value = v[((2 * 16 + y) * 16 + x) * 4 + ch];
      const want = Array.from(applyColormap(Float32Array.of(value), 'viridis', c1.scale));
      const gx = (ch % 2) * 34 + x * 2 + 1;
      const gy = Math.floor(ch / 2) * 34 + y * 2 + 1;
      expect(await rgbAt(file, gx, gy)).toEqual(want);
    }
    // top channels: the image's per-channel spatial means, computed on the backend, sorted
    const means = tf.tidy(() => tf.mean(tf.tensor4d(v, [4, 16, 16, 4]), [1, 2]));
    const m = Array.from((await means.data()).subarray(2 * 4, 3 * 4));
    means.dispose();
    const want = m.map((mean, channel) => ({ channel, mean })).sort((a, b) => b.mean - a.mean || a.channel - b.channel);
    expect(img.layers[0].top.map((t) => t.channel)).toEqual(want.map((t) => t.channel)); // 4 channels < default 5
    img.layers[0].top.forEach((t, k) => expect(t.mean).toBeCloseTo(want[k].mean, 5));
    expect(d.images.every((im) => im.layers.every((l) => l.top.length === Math.min(5, d.layers.find((x) => x.name === l.layer)!.shape[2])))).toBe(true);
    // the input image, upscaled 7× (16 px → 112 px)
    expect(img.input).toMatchObject({ width: 112, height: 112 });
  });

  it('uses a symmetric signed scale for pre-activation values and honours explicit images', async () => {
    const before = tf.memory().numTensors;
    const { data } = await runTechnique(activations, { model, dataset, params: { images: [5, 3, 5], layers: ['c1/preact'], percentile: 99 }, deps: { 'channel-stats': stats } });
    expect(tf.memory().numTensors).toBe(before);
    const d = data as ActivationsData;
    expect(d.images.map((im) => [im.index, im.label, im.predicted, im.correct])).toEqual([[5, 2, null, null], [3, 0, null, null]]);
    const [layer] = d.layers;
    expect(layer.scale.map).toBe('rdbu');
    expect(layer.scale.min).toBe(-layer.scale.max);
    expect(layer.scale.max).toBeLessThanOrEqual(Math.max(-layer.scale.valueMin, layer.scale.valueMax));
    expect(layer.deadFraction).toBeNull(); // channel-stats does not cover preact nodes
  });

  it('rejects indices outside the test split', async () => {
    await expect(runTechnique(activations, { model, dataset, params: { images: [99] } })).rejects.toThrow(/outside the test split/);
  });
});
