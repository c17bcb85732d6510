/**
 * Images per second of each attribution method's core computation (maps only: no PNGs, no
 * faithfulness) on the default model, `reports/fashion-mnist/model` (or CONVLENS_BENCH_MODEL);
 * until that is trained, a seeded random CNN of the same shape stands in and the output says so.
 *
 *   npm run bench attribution                 # wasm
 *   CONVLENS_BENCH_BACKEND=cpu npm run bench attribution
 */
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { initBackend } from '../pipelines/backend';
import {
  camHead, camMaps, deconvnetProject, gradCamMaps, gradCamPlusPlusMaps, inputGradient, lastSpatialLayer, strongestUnits, convLayers,
  type Item,
} from '../pipelines/engines/attribution';
import { loadModel, type LoadedModel } from '../pipelines/model/load';
import { occlusionMaps } from '../pipelines/techniques/occlusion';
import type { BackendName } from '../pipelines/types';
import { saveModel, tmpDir } from '../test/fixtures/models';

const backend = (process.env.CONVLENS_BENCH_BACKEND ?? 'wasm') as BackendName;
const batch = Number(process.env.CONVLENS_BENCH_BATCH ?? 32);

async function standIn(): Promise<LoadedModel> {
  const init = (k: number) => tfl.initializers.glorotUniform({ seed: k });
  const m = tfl.sequential();
  m.add(tfl.layers.conv2d({ inputShape: [28, 28, 1], filters: 32, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init(1) }));
  m.add(tfl.layers.maxPooling2d({ poolSize: 2 }));
  m.add(tfl.layers.conv2d({ filters: 64, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init(2) }));
  m.add(tfl.layers.maxPooling2d({ poolSize: 2 }));
  m.add(tfl.layers.conv2d({ filters: 64, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init(3) }));
  m.add(tfl.layers.globalAveragePooling2d({}));
  m.add(tfl.layers.dense({ units: 10, kernelInitializer: init(4), name: 'logits' }));
  m.add(tfl.layers.activation({ activation: 'softmax' }));
  const dir = tmpDir('convlens-bench-');
  await saveModel(m, dir);
  m.dispose();
  return loadModel(dir);
}

function time(label: string, images: number, fn: () => void, reps = 3): void {
  fn(); // warm-up: kernels, weights upload
  const ms: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    fn();
    ms.push(performance.now() - t0);
  }
  ms.sort((a, b) => a - b);
  const med = ms[Math.floor(ms.length / 2)];
  console.log(`| ${label.padEnd(34)} | ${String(images).padStart(6)} | ${(med / images).toFixed(2).padStart(8)} | ${((images / med) * 1000).toFixed(0).padStart(8)} |`);
}

await initBackend(backend);
const modelDir = process.env.CONVLENS_BENCH_MODEL ?? path.resolve('reports/fashion-mnist/model');
const trained = fs.existsSync(path.join(modelDir, 'model.json'));
const model = trained ? await loadModel(modelDir) : await standIn();
const ex = model.executor;
const [H, W, C] = model.inputShape;
console.log(`backend ${tf.getBackend()}, model ${trained ? modelDir : 'seeded random stand-in (28×28×1, 3 conv + GAP + dense; the default model is not trained yet)'}, batch ${batch}`);
// deterministic pseudo-random pixels in [0, 1)
const inputs = (n: number) => new Float32Array(n * H * W * C).map((_, i) => Math.abs(Math.sin(i * 12.9898) * 43758.5453) % 1);
const xs = inputs(batch);
const x4 = inputs(4);
const targets = Array.from({ length: batch }, (_, i) => i % 10);
const layer = lastSpatialLayer(ex);
const head = camHead(model);
const run = (f: (x: tf.Tensor4D) => tf.Tensor | tf.Tensor[]) => () =>
  tf.tidy(() => {
    const out = f(tf.tensor4d(xs, [batch, H, W, C]));
    for (const t of Array.isArray(out) ? out : [out]) t.dataSync();
  });

console.log('| method | images | ms/image | images/s |\n|---|---:|---:|---:|');
time('forward (logits)', batch, run((x) => ex.run(x).output));
time('saliency', batch, run((x) => inputGradient(ex, x, targets)));
time('guided backprop', batch, run((x) => inputGradient(ex, x, targets, 'guided')));
time('deconvnet (gradient rule)', batch, run((x) => inputGradient(ex, x, targets, 'deconvnet')));
const deconvLayer = convLayers(ex).at(-1)!;
time('deconvnet (explicit, strongest unit)', batch, run((x) => {
  const { units, values } = strongestUnits(ex, x, deconvLayer);
  return deconvnetProject(model, x, deconvLayer, units, values);
}));
time('smoothgrad (25 samples)', 4, () => tf.tidy(() => {
  const x = tf.tensor4d(x4, [4, H, W, C]);
  const noisy = tf.add(tf.tile(x, [25, 1, 1, 1]), tf.randomNormal([100, H, W, C], 0, 0.15, 'float32', 1)) as tf.Tensor4D;
  inputGradient(ex, noisy, Array.from({ length: 100 }, (_, i) => i % 10)).dataSync();
}));
if (head.ok) time('cam', batch, run((x) => camMaps(ex.run(x, { upTo: head.feature }).output, head.weights, targets)));
time(`grad-cam (${layer})`, batch, run((x) => gradCamMaps(ex, x, layer, targets)));
time(`grad-cam++ (${layer})`, batch, run((x) => gradCamPlusPlusMaps(ex, x, layer, targets)));
const items: Item[] = Array.from({ length: 4 }, (_, i) => ({
  example: { split: 'test', index: i, label: 0, predicted: 0, correct: true }, id: `b-${i}`, target: i % 10, role: 'predicted',
  image: x4.subarray(i * H * W * C, (i + 1) * H * W * C), pixels: new Uint8Array(H * W * C),
}));
const size = Math.ceil(H / 7);
time(`occlusion (${size}px, stride ${Math.ceil(size / 2)})`, 4, () => void occlusionMaps(ex, items, [H, W, C], size, Math.ceil(size / 2), new Array(C).fill(0.5)));
model.dispose();
