import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import '@tensorflow/tfjs-backend-cpu';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { colormapTable } from '../pipelines/images';
import { loadModel, type LoadedModel } from '../pipelines/model/load';
import { Rng } from '../pipelines/rng';
import filters, { smoothness, SMOOTH_THRESHOLD, type FiltersData, type KernelShape } from '../pipelines/techniques/filters';
import { saveModel, tmpDir } from './fixtures/models';
import { runTechnique, tinyReport, TinyDataset } from './helpers/tiny-report';

let tiny: LoadedModel;
let dataset: TinyDataset;

beforeAll(async () => {
  await tf.setBackend('cpu');
  ({ model: tiny, dataset } = await tinyReport());
});
afterAll(() => tiny?.dispose());

/** Kernel [kh, kw, 1, 1] from rows of values. */
function kernel2d(rows: number[][]): [Float32Array, KernelShape] {
  return [Float32Array.from(rows.flat()), [rows.length, rows[0].length, 1, 1]];
}

async function pixel(file: string, x: number, y: number): Promise<number[]> {
  const { data, info } = await sharp(file).raw().toBuffer({ resolveWithObject: true });
  const i = (y * info.width + x) * info.channels;
  return Array.from(data.subarray(i, i + Math.min(3, info.channels)));
}

const lutColour = (i: number) => Array.from(colormapTable('rdbu').subarray(i * 3, i * 3 + 3));

/** A conv model whose kernels we set by hand; conv layers only, the executor's output is the last. */
async function handModel(inChannels: number, first: Float32Array, second: Float32Array): Promise<LoadedModel> {
  const m = tfl.sequential();
  m.add(tfl.layers.conv2d({ inputShape: [6, 6, inChannels], filters: 2, kernelSize: 3, padding: 'same', useBias: false, name: 'k1' }));
  m.add(tfl.layers.conv2d({ filters: 3, kernelSize: 3, padding: 'same', useBias: false, name: 'k2' }));
  m.setWeights([tf.tensor4d(first, [3, 3, inChannels, 2]), tf.tensor4d(second, [3, 3, 2, 3])]);
  const dir = await saveModel(m, tmpDir('convlens-filters-'));
  m.dispose();
  return loadModel(dir);
}

describe('smoothness score', () => {
  it('is 0 for constant kernels, large for a checkerboard and ≈ 2 for iid noise', () => {
    expect(smoothness(...kernel2d([[3, 3, 3], [3, 3, 3], [3, 3, 3]]))).toBe(0);
    // constant within each kernel but different across kernels: still perfectly smooth
    expect(smoothness(Float32Array.from({ length: 18 }, (_, i) => i % 2), [3, 3, 1, 2])).toBe(0);
    // ±1 checkerboard: every neighbour pair differs by 2 → 4 / variance(≈1)
    const checker = kernel2d([[1, -1, 1, -1], [-1, 1, -1, 1], [1, -1, 1, -1], [-1, 1, -1, 1]]);
    expect(smoothness(...checker)).toBeCloseTo(4, 6);
    expect(smoothness(...checker)!).toBeGreaterThan(SMOOTH_THRESHOLD);
    const rng = new Rng(5);
    const shape: KernelShape = [5, 5, 16, 16];
    const noise = Float32Array.from({ length: 5 * 5 * 16 * 16 }, () => rng.normal());
    expect(Math.abs(smoothness(noise, shape)! - 2)).toBeLessThan(0.1);
    // a ramp is smooth
    expect(smoothness(...kernel2d([[0, 1, 2], [1, 2, 3], [2, 3, 4]]))!).toBeLessThan(SMOOTH_THRESHOLD);
    // 1×1 kernels have no neighbours
    expect(smoothness(new Float32Array([1, 2]), [1, 1, 1, 2])).toBeNull();
  });
});

describe('filters', () => {
  it('draws hand-set grey kernels on one symmetric rdbu scale, deeper layers per input channel', async () => {
    // first layer, kernel 0: values -1..1 row-major; kernel 1: all 0.5
    const first = new Float32Array(18);
    for (let t = 0; t < 9; t++) {
      first[t * 2] = (t - 4) / 4;
      first[t * 2 + 1] = 0.5;
    }
    const second = Float32Array.from({ length: 54 }, (_, i) => (i === 0 ? 2 : 0));
    const model = await handModel(1, first, second);
    try {
      const before = tf.memory().numTensors;
      const { data, dir, files } = await runTechnique(filters, { model, dataset });
      expect(tf.memory().numTensors).toBe(before);
      const d = data as FiltersData;
      for (const f of files) expect(fs.existsSync(path.join(dir, f))).toBe(true);
      const [l1, l2] = d.layers;
      expect(l1).toMatchObject({ name: 'k1', mode: 'grey', kernelShape: [3, 3, 1, 2], scale: { map: 'rdbu', min: -1, max: 1 } });
      expect(l1.kernels!.map((k) => [k.channel, k.width, k.height])).toEqual([[0, 48, 48], [1, 48, 48]]);
      expect(l1.kernels![1].smoothness).toBe(0);
      // upscale 16: tap (y, x) fills a 16×16 block. -1 → first LUT entry, 0 → middle, 1 → last
      const k0 = path.join(dir, l1.kernels![0].file);
      expect(await pixel(k0, 0, 0)).toEqual(lutColour(0));
      expect(await pixel(k0, 15, 15)).toEqual(lutColour(0));
      expect(await pixel(k0, 16 + 5, 16 + 5)).toEqual(lutColour(128));
      expect(await pixel(k0, 47, 47)).toEqual(lutColour(256));
      // 0.5 on the same scale (3/4 of the way) → LUT entry 192, in the other kernel
      expect(await pixel(path.join(dir, l1.kernels![1].file), 20, 30)).toEqual(lutColour(192));

      expect(l2).toMatchObject({ name: 'k2', mode: 'per-input-channel', scale: { min: -2, max: 2 } });
      expect(l2.grid).toMatchObject({ rows: 3, columns: 2, upscale: 8, outChannels: [0, 1, 2], inChannels: [0, 1] });
      // cells of 24 px with gaps of 2: 2 columns → 50 px, 3 rows → 76 px
      expect([l2.grid.width, l2.grid.height]).toEqual([50, 76]);
      const g = path.join(dir, l2.grid.file);
      expect(await pixel(g, 0, 0)).toEqual(lutColour(256)); // w[0,0,in 0,out 0] = 2 = max
      expect(await pixel(g, 8, 0)).toEqual(lutColour(128)); // its neighbour tap is 0
      expect(await pixel(g, 24, 0)).toEqual([90, 90, 90]); // the gap
      expect(await pixel(g, 26, 0)).toEqual(lutColour(128)); // in 1, out 0
      expect(fs.statSync(path.join(dir, l2.weightsFile)).size).toBe(54 * 4);
    } finally {
      model.dispose();
    }
  });

  it('draws 3-channel first-layer kernels as RGB with zero at mid-grey', async () => {
    const first = new Float32Array(3 * 3 * 3 * 2);
    // kernel 0, tap (0,0): red +1, green -1, blue 0
    first[0] = 1;
    first[2] = -1;
    const model = await handModel(3, first, new Float32Array(54));
    try {
      const { data, dir } = await runTechnique(filters, { model, dataset, params: { layers: ['k1'], upscale: 4 } });
      const [l1] = (data as FiltersData).layers;
      expect(l1).toMatchObject({ mode: 'rgb', scale: { map: 'rgb-linear', min: -1, max: 1 } });
      expect(await pixel(path.join(dir, l1.kernels![0].file), 0, 0)).toEqual([255, 0, 128]);
      expect(await pixel(path.join(dir, l1.kernels![0].file), 4, 0)).toEqual([128, 128, 128]);
      // the second layer's kernel is all zeros: score 0, not NaN
      const all = (await runTechnique(filters, { model, dataset })).data as FiltersData;
      expect(all.layers[1].smoothness).toBe(0);
    } finally {
      model.dispose();
    }
  });

  it('runs on the tiny trained report with a score and verdict per layer', async () => {
    const before = tf.memory().numTensors;
    const { data, dir, files } = await runTechnique(filters, { model: tiny, dataset, params: { maxOut: 4, maxIn: 3 } });
    expect(tf.memory().numTensors).toBe(before);
    const d = data as FiltersData;
    expect(d.layers.map((l) => [l.name, l.mode])).toEqual([['c1', 'grey'], ['c2', 'per-input-channel'], ['c3', 'per-input-channel']]);
    expect(d.layers[1].grid).toMatchObject({ rows: 4, columns: 3 });
    for (const l of d.layers) {
      expect(l.smoothness).toBeGreaterThan(0);
      expect(l.verdict).toBe(l.smoothness! < d.smoothThreshold ? 'smooth' : 'noisy');
      expect(files).toContain(l.legend.file);
      expect(files).toContain(l.grid.file);
    }
    for (const f of files) expect(fs.existsSync(path.join(dir, f))).toBe(true);
    await expect(runTechnique(filters, { model: tiny, dataset, params: { layers: ['p1'] } })).rejects.toThrow(/not a Conv2D layer.*'c1', 'c2', 'c3'/);
  });
});
