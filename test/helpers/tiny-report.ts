/**
 * A tiny but real report for technique tests: a seeded CNN (16×16×1, three conv stages, GAP +
 * dense logits + a separate softmax, ReLUs fused in the conv layers like the default model),
 * saved and loaded through the real loader, and an in-memory three-class dataset of synthetic
 * patterns (horizontal bars, vertical bars, a centred blob) that the model learns in seconds.
 *
 *   const { model, dataset } = await tinyReport();
 *   const { data, files } = await runTechnique(myTechnique, { model, dataset });
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import '@tensorflow/tfjs-backend-cpu';
import sharp from 'sharp';
import { afterAll, beforeAll } from 'vitest';
import type { z } from 'zod';
import { loadModel, type LoadedModel } from '../../pipelines/model/load';
import { Rng, seedFrom } from '../../pipelines/rng';
import { ResultWriter, type Technique } from '../../pipelines/technique';
import type { BackendInfo, Batch, Dataset, Split } from '../../pipelines/types';
import { saveModel, tmpDir } from '../fixtures/models';

export const TINY_SIZE = 16;
export const TINY_CLASSES = ['horizontal', 'vertical', 'blob'];

/** Pixel pattern of class k with seeded noise, uint8 16×16. */
function pattern(k: number, rng: Rng): Uint8Array {
  const s = TINY_SIZE;
  const px = new Uint8Array(s * s);
  const phase = rng.int(4);
  const cy = 5 + rng.int(6);
  const cx = 5 + rng.int(6);
  for (let y = 0; y < s; y++) {
    for (let x = 0; x < s; x++) {
      let v = 0;
      if (k === 0) v = (y + phase) % 4 < 2 ? 1 : 0;
      else if (k === 1) v = (x + phase) % 4 < 2 ? 1 : 0;
      else v = (y - cy) ** 2 + (x - cx) ** 2 < 10 ? 1 : 0;
      px[y * s + x] = Math.max(0, Math.min(255, Math.round(200 * v + 40 * rng.next())));
    }
  }
  return px;
}

export class TinyDataset implements Dataset {
  id: string;
  name = 'tiny-patterns';
  source = 'synthetic (test fixture)';
  classNames = [...TINY_CLASSES];
  imageShape: [number, number, number] = [TINY_SIZE, TINY_SIZE, 1];
  preprocessing = { size: [TINY_SIZE, TINY_SIZE] as [number, number], channels: 1 as const, fit: 'fill' as const, normalize: { kind: 'range' as const, min: 0, max: 1 } };
  splitSizes: Record<Split, number>;
  classCounts: Record<Split, number[]>;
  skipped = [];
  private data: Record<Split, { pixels: Uint8Array[]; labels: number[] }>;

  constructor(perClass: Record<Split, number> = { train: 20, test: 8 }, seed = 7) {
    const rng = new Rng(seed);
    this.data = { train: { pixels: [], labels: [] }, test: { pixels: [], labels: [] } };
    for (const split of ['train', 'test'] as Split[]) {
      for (let i = 0; i < perClass[split] * 3; i++) {
        const k = i % 3;
        this.data[split].pixels.push(pattern(k, rng));
        this.data[split].labels.push(k);
      }
    }
    this.splitSizes = { train: perClass.train * 3, test: perClass.test * 3 };
    this.classCounts = { train: [perClass.train, perClass.train, perClass.train], test: [perClass.test, perClass.test, perClass.test] };
    this.id = `tiny-${seed}-${perClass.train}-${perClass.test}`;
  }

  async *batches(split: Split, batchSize: number, opts: { indices?: ArrayLike<number> } = {}): AsyncGenerator<Batch> {
    const all = opts.indices ? Array.from(opts.indices) : this.data[split].labels.map((_, i) => i);
    const px = TINY_SIZE * TINY_SIZE;
    for (let start = 0; start < all.length; start += batchSize) {
      const idx = all.slice(start, start + batchSize);
      const pixels = new Uint8Array(idx.length * px);
      idx.forEach((i, b) => pixels.set(this.data[split].pixels[i], b * px));
      const images = Float32Array.from(pixels, (v) => v / 255);
      yield { images, pixels, labels: Int32Array.from(idx, (i) => this.data[split].labels[i]), indices: Int32Array.from(idx), size: idx.length };
    }
  }

  describeImage(split: Split, index: number) {
    return { id: `${split}-${index}`, label: this.data[split].labels[index] };
  }
}

function buildTinyModel(seed: number): tfl.Sequential {
  const init = (k: number) => tfl.initializers.glorotUniform({ seed: seed * 100 + k });
  const m = tfl.sequential({ name: 'tiny_report_model' });
  m.add(tfl.layers.conv2d({ inputShape: [TINY_SIZE, TINY_SIZE, 1], filters: 4, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init(1), name: 'c1' }));
  m.add(tfl.layers.maxPooling2d({ poolSize: 2, name: 'p1' }));
  m.add(tfl.layers.conv2d({ filters: 8, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init(2), name: 'c2' }));
  m.add(tfl.layers.maxPooling2d({ poolSize: 2, name: 'p2' }));
  m.add(tfl.layers.conv2d({ filters: 8, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init(3), name: 'c3' }));
  m.add(tfl.layers.globalAveragePooling2d({ name: 'gap' }));
  m.add(tfl.layers.dense({ units: 3, kernelInitializer: init(4), name: 'logits' }));
  m.add(tfl.layers.activation({ activation: 'softmax', name: 'probs' }));
  return m;
}

const cacheDir = path.join(os.tmpdir(), 'convlens-tiny-report');

/**
 * The tiny model (trained for a few epochs on the cpu backend unless `trained: false`) and
 * dataset. The trained weights are cached in the OS temp folder between test files.
 */
export async function tinyReport(opts: { trained?: boolean; seed?: number } = {}): Promise<{ model: LoadedModel; dataset: TinyDataset }> {
  const seed = opts.seed ?? 3;
  const trained = opts.trained ?? true;
  await tf.ready(); // the caller picks the backend; cpu is registered by the import above
  const dataset = new TinyDataset();
  const dir = path.join(cacheDir, `${trained ? 'trained' : 'init'}-${seed}`);
  if (!fs.existsSync(path.join(dir, 'model.json'))) {
    const m = buildTinyModel(seed);
    if (trained) {
      const xs: Float32Array[] = [];
      const ys: number[] = [];
      for await (const b of dataset.batches('train', 1000)) {
        xs.push(b.images);
        ys.push(...b.labels);
      }
      const x = tf.tensor4d(xs[0], [ys.length, TINY_SIZE, TINY_SIZE, 1]);
      const y = tf.oneHot(tf.tensor1d(ys, 'int32'), 3);
      m.compile({ optimizer: tf.train.adam(0.02), loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
      await m.fit(x, y, { epochs: 25, batchSize: 20, shuffle: false, verbose: 0 });
      tf.dispose([x, y]);
    }
    const staging = tmpDir('convlens-tiny-');
    await saveModel(m, staging);
    m.dispose();
    fs.mkdirSync(path.dirname(dir), { recursive: true });
    try {
      fs.renameSync(staging, dir); // atomic: parallel test files may race here
    } catch {
      fs.rmSync(staging, { recursive: true, force: true });
    }
  }
  return { model: await loadModel(dir), dataset };
}

/**
 * Per test file: switch to the cpu backend and load the tiny report before the tests, dispose the
 * model after them. `set` receives the report (e.g. `(r) => ({ model, dataset } = r)`).
 */
export function useTinyReport(set: (report: { model: LoadedModel; dataset: TinyDataset }) => void): void {
  let loaded: LoadedModel | undefined;
  beforeAll(async () => {
    await tf.setBackend('cpu');
    const report = await tinyReport();
    loaded = report.model;
    set(report);
  });
  afterAll(() => loaded?.dispose());
}

const testBackend: BackendInfo = { name: 'cpu', adapter: 'test', hardware: false, versions: {} };

/** Runs one technique the way the runner does, into a temp folder; returns its data and files. */
export async function runTechnique<S extends z.ZodType>(
  technique: Technique<S>,
  ctx: { model: LoadedModel; dataset: Dataset; params?: z.input<S>; deps?: Record<string, unknown>; depDirs?: Record<string, string>; seed?: number },
): Promise<{ data: unknown; dir: string; files: string[] }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `convlens-${technique.id}-`));
  const out = new ResultWriter(dir);
  const params = technique.params.parse(ctx.params ?? {});
  const seed = ctx.seed ?? seedFrom(technique.id);
  const data = await technique.run({
    params, model: ctx.model, dataset: ctx.dataset, deps: ctx.deps ?? {}, depDirs: ctx.depDirs ?? {}, out,
    rng: new Rng(seed), seed, backend: testBackend,
    report: { id: 'tiny', dir, configFile: 'reports/tiny/report.config.ts' },
    log: () => {}, progress: () => {},
  });
  // What the cache does: result.json must survive a JSON round trip.
  JSON.parse(JSON.stringify(data ?? null));
  return { data, dir, files: [...out.written].sort() };
}

/**
 * A project folder as a user has it: `<root>/package.json` and `reports/tiny/` with the tiny trained
 * model and its images as PNG class folders (`data/<split>/<k>-<name>/<index>.png`). The caller
 * writes `reports/tiny/report.config.ts`.
 */
export async function writeTinyProject(prefix: string): Promise<{ root: string; reportDir: string }> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  fs.writeFileSync(path.join(root, 'package.json'), '{ "type": "module" }');
  const reportDir = path.join(root, 'reports', 'tiny');
  const { model, dataset } = await tinyReport();
  fs.cpSync(model.dir, path.join(reportDir, 'model'), { recursive: true });
  model.dispose();
  for (const split of ['train', 'test'] as const) {
    for await (const b of dataset.batches(split, 100)) {
      for (let i = 0; i < b.size; i++) {
        const dir = path.join(reportDir, 'data', split, `${b.labels[i]}-${dataset.classNames[b.labels[i]]}`);
        fs.mkdirSync(dir, { recursive: true });
        const px = Buffer.from(b.pixels.subarray(i * TINY_SIZE * TINY_SIZE, (i + 1) * TINY_SIZE * TINY_SIZE));
        await sharp(px, { raw: { width: TINY_SIZE, height: TINY_SIZE, channels: 1 } }).png().toFile(path.join(dir, `${b.indices[i]}.png`));
      }
    }
  }
  return { root, reportDir };
}
