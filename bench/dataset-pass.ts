/**
 * Dataset-pass benchmark: the shared `features` pass over the 10k Fashion-MNIST test images with
 * the default model, and exact kNN of 1 000 queries against 60 000 training rows, on one backend
 * (wasm by default; the trained default model in reports/fashion-mnist/model, or a seeded stand-in
 * CNN of the same shapes if it is missing). Prints images/s (queries/s for kNN), the process's
 * peak RSS and the wasm heap after each stage, and the load average.
 *
 *   npx tsx bench/dataset-pass.ts --train            # the 10k test + 60k training pass; kNN on the real features
 *   npx tsx bench/dataset-pass.ts                    # test split only; kNN on random features of the model's feature size
 *   npx tsx bench/dataset-pass.ts --synthetic        # random 28×28 images instead of Fashion-MNIST (same shapes)
 *   npx tsx bench/dataset-pass.ts --knn-only --dim 128   # no model needed: kNN on random features
 *   npx tsx bench/dataset-pass.ts --backend cpu --model reports/fashion-mnist/model
 *
 * kNN cost depends only on the sizes (queries, rows, dim, k), not on the values, which is why
 * random features are a fair stand-in when the training pass is skipped; the output says which.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { initBackend } from '../pipelines/backend';
import { openDataset } from '../pipelines/data/index';
import type { FeaturesData } from '../pipelines/engines/examples';
import { exactKnn, memoryBlocks, type Metric } from '../pipelines/engines/linalg';
import { loadModel, type LoadedModel } from '../pipelines/model/load';
import { Rng } from '../pipelines/rng';
import { ResultWriter } from '../pipelines/technique';
import features, { featuresPath, readRows, rowBlocks } from '../pipelines/techniques/features';
import type { BackendRequest, Dataset, Preprocessing, Split } from '../pipelines/types';
import { saveModel, tmpDir } from '../test/fixtures/models';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const flag = (name: string) => argv.includes(`--${name}`);
const option = (name: string, fallback: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] ? argv[i + 1] : fallback;
};
const backendName = option('backend', 'wasm') as BackendRequest;
const modelDir = path.resolve(root, option('model', 'reports/fashion-mnist/model'));
const queries = Number(option('queries', '1000'));
const trainRows = Number(option('rows', '60000'));
const k = Number(option('k', '8'));
const metric = option('metric', 'cosine') as Metric;

const peakMb = () => Math.round(process.resourceUsage().maxRSS / 1024);
/** wasm memory only grows: its size now is the stage's peak. */
const wasmHeap = () => {
  const heap = (tf.backend() as unknown as { wasm?: { HEAPU8: Uint8Array } }).wasm?.HEAPU8;
  return heap ? `, wasm heap ${Math.round(heap.length / 2 ** 20)} MB` : '';
};
const line = (what: string, seconds: number, count: number, unit: string) =>
  console.log(`${what.padEnd(44)} ${seconds.toFixed(2).padStart(8)} s  ${(count / seconds).toFixed(0).padStart(8)} ${unit}/s  peak RSS ${peakMb()} MB${wasmHeap()}  load ${os.loadavg().map((v) => v.toFixed(2)).join(' ')}`);

const backend = await initBackend(backendName);
console.log(`${new Date().toISOString()}; backend ${backend.name} (${backend.adapter}); ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}; node ${process.version}; load ${os.loadavg().map((v) => v.toFixed(2)).join(' ')}`);

let knnQueries: Float32Array | undefined;
let knnRef: (() => AsyncIterable<{ start: number; count: number; values: Float32Array }>) | undefined;
let dim = Number(option('dim', '0'));
let source = 'random features';

/**
 * When the default model is missing: a seeded, untrained CNN of the same kind (forward cost does
 * not depend on the weight values). The output names which model was timed.
 */
async function standIn(): Promise<LoadedModel> {
  const init = (seed: number) => tfl.initializers.heNormal({ seed });
  const m = tfl.sequential();
  m.add(tfl.layers.conv2d({ inputShape: [28, 28, 1], filters: 32, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init(1) }));
  m.add(tfl.layers.maxPooling2d({ poolSize: 2 }));
  m.add(tfl.layers.conv2d({ filters: 64, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init(2) }));
  m.add(tfl.layers.maxPooling2d({ poolSize: 2 }));
  m.add(tfl.layers.conv2d({ filters: 64, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init(3) }));
  m.add(tfl.layers.globalAveragePooling2d({}));
  m.add(tfl.layers.dense({ units: 10, kernelInitializer: init(4) }));
  m.add(tfl.layers.activation({ activation: 'softmax' }));
  const dir = tmpDir('convlens-bench-model-');
  await saveModel(m, dir);
  m.dispose();
  return loadModel(dir);
}

/** Random 28×28 grey images with Fashion-MNIST's split sizes, made batch by batch (seeded per batch). */
function syntheticDataset(preprocessing: Preprocessing): Dataset {
  const sizes: Record<Split, number> = { test: 10_000, train: 60_000 };
  return {
    id: 'synthetic', name: 'synthetic 28×28', source: 'bench', classNames: Array.from({ length: 10 }, (_, k) => `c${k}`),
    imageShape: [28, 28, 1], preprocessing, splitSizes: sizes,
    classCounts: { test: Array(10).fill(1000), train: Array(10).fill(6000) }, skipped: [],
    async *batches(split, batchSize, opts) {
      const all = opts?.indices ? Array.from(opts.indices) : Array.from({ length: sizes[split] }, (_, i) => i);
      for (let start = 0; start < all.length; start += batchSize) {
        const idx = all.slice(start, start + batchSize);
        const rng = new Rng(start + 1);
        const pixels = Uint8Array.from({ length: idx.length * 784 }, () => rng.int(256));
        yield { images: Float32Array.from(pixels, (v) => v / 255), pixels, labels: Int32Array.from(idx, (i) => i % 10), indices: Int32Array.from(idx), size: idx.length };
      }
    },
    describeImage: (_split, index) => ({ id: String(index), label: index % 10 }),
  };
}

if (!flag('knn-only')) {
  const trained = fs.existsSync(path.join(modelDir, 'model.json'));
  const model = trained ? await loadModel(modelDir) : await standIn();
  console.log(`model: ${trained ? `${modelDir} (trained)` : `seeded untrained stand-in (conv32-pool-conv64-pool-conv64-GAP-dense10; no model.json in ${modelDir})`}`);
  const preprocessing = { size: [28, 28] as [number, number], channels: 1 as const, fit: 'fill' as const, normalize: { kind: 'range' as const, min: 0, max: 1 } };
  let dataset: Dataset;
  if (flag('synthetic')) {
    dataset = syntheticDataset(preprocessing);
    console.log('dataset: synthetic, 10 000 test + 60 000 train random 28×28 images (compute does not depend on pixel values)');
  } else {
    try {
      dataset = await openDataset({ type: 'fashion-mnist' }, { configFile: 'bench', baseDir: root, preprocessing });
    } catch (e) {
      console.error(`Fashion-MNIST did not open (${(e as Error).message}); --synthetic times the same shapes on random images`);
      process.exit(1);
    }
    console.log(`dataset: ${dataset.name}`);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'convlens-bench-features-'));
  const params = features.params.parse({ maxTrain: flag('train') ? undefined : 0 });
  const tensors = tf.memory().numTensors;
  const t0 = performance.now();
  const data = (await features.run({
    params, model, dataset, deps: {}, depDirs: {}, out: new ResultWriter(dir), rng: new Rng(1), seed: 1, backend,
    report: { id: 'bench', dir: root, configFile: 'bench' }, log: () => {}, progress: () => {},
  })) as FeaturesData;
  const seconds = (performance.now() - t0) / 1000;
  const images = data.splits.test.count + (data.splits.train?.count ?? 0);
  line(`features pass, ${images} images (${data.dim}-d at ${data.layer})`, seconds, images, 'images');
  if (tf.memory().numTensors !== tensors) console.log(`  warning: ${tf.memory().numTensors - tensors} tensors left allocated`);
  dim = data.dim;
  if (data.splits.train) {
    const train = data.splits.train;
    const q = Math.min(queries, data.splits.test.count);
    knnQueries = await readRows(featuresPath(dir, data.splits.test), dim, 0, q);
    knnRef = () => rowBlocks(featuresPath(dir, train), dim, train.count, 4096);
    source = `real features, ${train.count} training rows`;
  }
  model.dispose();
}

if (!knnQueries) {
  if (!dim) {
    console.error('kNN on random features needs --dim <D> (or a model to take it from)');
    process.exit(1);
  }
  const rng = new Rng(7);
  // non-negative like post-ReLU features
  const rand = (n: number) => Float32Array.from({ length: n }, () => Math.max(0, rng.normal()));
  knnQueries = rand(queries * dim);
  const ref = rand(trainRows * dim);
  knnRef = () => memoryBlocks(ref, dim, 4096);
  source = `random features, ${trainRows} rows`;
}
const m = knnQueries.length / dim;
const t1 = performance.now();
const r = await exactKnn(knnQueries, dim, knnRef!(), { k, metric });
const seconds = (performance.now() - t1) / 1000;
line(`exact ${k}-NN (${metric}), ${m} queries, ${dim}-d`, seconds, m, 'queries');
console.log(`  (${source}; first query's neighbours: ${Array.from(r.indices.subarray(0, k)).join(' ')})`);
