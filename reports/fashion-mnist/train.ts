/**
 * Trains the default report's CNN on Fashion-MNIST (npm run train:fashion-mnist) on the wasm
 * backend, using convlens' wasm gradient kernels, and saves model.json + one weights shard
 * into ./model. Fully seeded: initialisers carry seeds and the per-epoch shuffle is our own
 * (tfjs' fit() shuffles with Math.random), fed batch by batch through trainOnBatch.
 *
 * Input: 28×28×1 grey, pixels scaled to [0, 1] (report.config.ts: preprocessing range [0, 1]).
 * Output: class probabilities from a separate Activation('softmax') layer named 'probs' after a
 * linear Dense named 'logits', so techniques can take logits from 'logits'.
 *
 * Env overrides (for sizing runs only): EPOCHS, TRAIN_LIMIT (first n shuffled training images),
 * NO_SAVE=1.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { mkdir, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadFashionMnistSource, type FashionMnistSplit } from '../../pipelines/data/fashion-mnist-source';
import { registerWasmKernels } from '../../pipelines/kernels/index';
import { Rng } from '../../pipelines/rng';

const SEED = 20240611;
const EPOCHS = Number(process.env.EPOCHS ?? 5);
/** BatchNormalization after each ReLU conv (costs ~25% more per step on wasm, converges faster). */
const WITH_BN = (process.env.WITH_BN ?? '1') === '1';
const BATCH = 64;
const LR = 2e-3;
const HERE = path.dirname(fileURLToPath(import.meta.url));
const OUT_DIR = process.env.MODEL_DIR ?? path.join(HERE, 'model');
const SIDE = 28;
const PER = SIDE * SIDE;

function buildModel(): tfl.LayersModel {
  let seed = SEED;
  const init = () => tfl.initializers.heNormal({ seed: seed++ });
  const conv = (filters: number, name: string, inputShape?: number[]) =>
    tfl.layers.conv2d({
      name, filters, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init(),
      ...(inputShape ? { inputShape } : {}),
    });
  // BatchNormalization's gradient tiles mean/variance to the activation shape, which costs
  // ~20% of a step on wasm; hence optional.
  const bn = (name: string) => (WITH_BN ? [tfl.layers.batchNormalization({ name })] : []);
  const m = tfl.sequential({ name: 'fashion_mnist_cnn' });
  // Stage 1 (28×28)
  for (const l of [conv(16, 'conv1', [SIDE, SIDE, 1]), ...bn('bn1'), tfl.layers.maxPooling2d({ name: 'pool1', poolSize: 2 })]) m.add(l);
  // Stage 2 (14×14)
  for (const l of [conv(32, 'conv2'), ...bn('bn2'), tfl.layers.maxPooling2d({ name: 'pool2', poolSize: 2 })]) m.add(l);
  // Stage 3 (7×7)
  for (const l of [conv(64, 'conv3'), ...bn('bn3'), conv(64, 'conv4'), ...bn('bn4')]) m.add(l);
  // CAM-friendly head.
  m.add(tfl.layers.globalAveragePooling2d({ name: 'gap' }));
  m.add(tfl.layers.dense({
    name: 'logits', units: 10, kernelInitializer: tfl.initializers.glorotUniform({ seed: seed++ }),
  }));
  m.add(tfl.layers.activation({ name: 'probs', activation: 'softmax' }));
  return m;
}

function batchTensors(split: FashionMnistSplit, idx: ArrayLike<number>, from: number, to: number): [tf.Tensor4D, tf.Tensor2D] {
  const n = to - from;
  const xs = new Float32Array(n * PER);
  const ys = new Float32Array(n * 10);
  for (let k = 0; k < n; k++) {
    const i = idx[from + k]!;
    const src = i * PER;
    for (let p = 0; p < PER; p++) xs[k * PER + p] = split.pixels[src + p]! / 255;
    ys[k * 10 + split.labels[i]!] = 1;
  }
  return [tf.tensor4d(xs, [n, SIDE, SIDE, 1]), tf.tensor2d(ys, [n, 10])];
}

function accuracy(model: tfl.LayersModel, split: FashionMnistSplit): number {
  const all = Array.from({ length: split.count }, (_, i) => i);
  let correct = 0;
  for (let from = 0; from < split.count; from += 500) {
    const to = Math.min(split.count, from + 500);
    const [x, y] = batchTensors(split, all, from, to);
    const pred = tf.tidy(() => tf.argMax(model.predict(x) as tf.Tensor, 1).dataSync());
    x.dispose();
    y.dispose();
    for (let k = 0; k < to - from; k++) if (pred[k] === split.labels[from + k]) correct++;
  }
  return correct / split.count;
}

/** fs IOHandler: model.json + weights.bin, the layout tfjs' loadLayersModel('file://…') expects. */
function fsSaver(dir: string): tf.io.IOHandler {
  return {
    async save(art: tf.io.ModelArtifacts): Promise<tf.io.SaveResult> {
      await mkdir(dir, { recursive: true });
      const weights = art.weightData as ArrayBuffer;
      const json = {
        format: 'layers-model',
        generatedBy: `TensorFlow.js tfjs-layers v${tfl.version_layers}`,
        convertedBy: null,
        modelTopology: art.modelTopology,
        weightsManifest: [{ paths: ['weights.bin'], weights: art.weightSpecs }],
      };
      await writeFile(path.join(dir, 'model.json'), JSON.stringify(json));
      await writeFile(path.join(dir, 'weights.bin'), Buffer.from(weights));
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON', weightDataBytes: weights.byteLength } };
    },
  };
}

async function main(): Promise<void> {
  const require = createRequire(import.meta.url);
  setWasmPaths(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm')) + '/');
  if (!(await tf.setBackend('wasm'))) throw new Error('could not start the wasm backend');
  registerWasmKernels();

  const src = await loadFashionMnistSource();
  console.log(`data: ${src.train.count} train / ${src.test.count} test images`);
  const model = buildModel();
  const optimizer = tf.train.adam(LR);
  model.compile({ optimizer, loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
  model.summary(undefined, undefined, (s: string) => console.log(s));

  const rng = new Rng(SEED);
  const order = Array.from({ length: src.train.count }, (_, i) => i);
  const limit = Math.min(src.train.count, Number(process.env.TRAIN_LIMIT ?? src.train.count));
  const stepsPerEpoch = Math.ceil(limit / BATCH);
  const t0 = performance.now();
  let testAcc = 0;
  for (let epoch = 0; epoch < EPOCHS; epoch++) {
    // Cosine decay to 5% of the base rate over the run (set per epoch).
    const lr = LR * (0.05 + 0.95 * 0.5 * (1 + Math.cos((Math.PI * epoch) / EPOCHS)));
    (optimizer as unknown as { learningRate: number }).learningRate = lr;
    rng.shuffle(order);
    const te = performance.now();
    let lossSum = 0;
    let accSum = 0;
    for (let s = 0; s < stepsPerEpoch; s++) {
      const from = s * BATCH;
      const to = Math.min(limit, from + BATCH);
      const [x, y] = batchTensors(src.train, order, from, to);
      const [loss, acc] = (await model.trainOnBatch(x, y)) as number[];
      x.dispose();
      y.dispose();
      lossSum += loss! * (to - from);
      accSum += acc! * (to - from);
      if (s % 200 === 0 && s > 0) {
        process.stdout.write(`  epoch ${epoch + 1} step ${s}/${stepsPerEpoch} loss ${(lossSum / to).toFixed(4)} ${((performance.now() - te) / 1000).toFixed(0)} s\n`);
      }
    }
    const trainSec = (performance.now() - te) / 1000;
    testAcc = accuracy(model, src.test);
    console.log(
      `epoch ${epoch + 1}/${EPOCHS} lr ${lr.toExponential(2)} loss ${(lossSum / limit).toFixed(4)} ` +
      `train acc ${(accSum / limit).toFixed(4)} test acc ${testAcc.toFixed(4)} ` +
      `epoch ${trainSec.toFixed(1)} s total ${((performance.now() - t0) / 1000).toFixed(1)} s tensors ${tf.memory().numTensors}`,
    );
  }
  const seconds = (performance.now() - t0) / 1000;
  const params = model.countParams();
  console.log(`final test accuracy ${(testAcc * 100).toFixed(2)} % after ${EPOCHS} epochs, ${seconds.toFixed(0)} s, ${params} params, seed ${SEED}`);
  if (process.env.NO_SAVE !== '1') {
    await model.save(fsSaver(OUT_DIR));
    await writeFile(
      path.join(OUT_DIR, 'training-result.json'),
      JSON.stringify({ testAccuracy: testAcc, epochs: EPOCHS, batchNorm: WITH_BN, seconds: Math.round(seconds), params, seed: SEED, batch: BATCH, split: src.digest }, null, 2) + '\n',
    );
    console.log(`saved to ${OUT_DIR}`);
  }
}

await main();
