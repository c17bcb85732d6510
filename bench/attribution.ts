/**
 * Images per second of each attribution method's core computation (the maps only: no PNGs, no
 * faithfulness curves), next to the forward pass of the same model in the same run, so that the
 * ratio method / forward is comparable across machines and loads.
 *
 *   npm run bench attribution                                  # default model, wasm, batch 8
 *   npx tsx bench/attribution.ts --model vgg16                 # VGG16-shaped 224 px (slow on CPUs)
 *   npx tsx bench/attribution.ts --backend webgpu --model vgg16 --batch 32
 *   options: --backend wasm|cpu|webgpu  --model default|vgg16  --batch N  --reps N (≥ 3, median)
 *            --methods forward,saliency,grad-cam,…  (default: all for the default model; forward,
 *            saliency, grad-cam for vgg16)
 *
 * Every time is the median of `reps` runs after one warm-up run; maps are read back with await
 * (webgpu under Node has no synchronous readback), so every method runs on every backend.
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../pipelines/backend';
import {
  camHead, camMaps, convLayers, deconvnetProject, gradCamMaps, gradCamPlusPlusMaps, inputGradient, lastSpatialLayer, strongestUnits, type Item,
} from '../pipelines/engines/attribution';
import { occlusionMaps } from '../pipelines/techniques/occlusion';
import { samplesPerCall } from '../pipelines/techniques/smoothgrad';
import type { BackendName } from '../pipelines/types';
import { defaultModel, vgg16Shaped, type BenchModel } from './models';

const { values: args } = parseArgs({
  options: {
    backend: { type: 'string', default: 'wasm' },
    model: { type: 'string', default: 'default' },
    batch: { type: 'string', default: '8' },
    reps: { type: 'string', default: '3' },
    methods: { type: 'string' },
  },
});
const backend = args.backend as BackendName;
const batch = Number(args.batch);
const reps = Math.max(3, Number(args.reps));
if (!['wasm', 'cpu', 'webgpu'].includes(backend) || !['default', 'vgg16'].includes(args.model!) || !(batch >= 1)) {
  console.error('usage: bench/attribution.ts [--backend wasm|cpu|webgpu] [--model default|vgg16] [--batch N] [--reps N] [--methods a,b]');
  process.exit(2);
}

const load = () => os.loadavg().map((v) => v.toFixed(2)).join(' ');
const info = await initBackend(backend);
const bench: BenchModel = args.model === 'vgg16' ? await vgg16Shaped() : await defaultModel();
const { model } = bench;
const ex = model.executor;
const [H, W, C] = model.inputShape;
const K = ex.node(ex.nodes.find((n) => n.name === 'logits')?.name ?? ex.outputName).outputShape.at(-1)!;

// deterministic pseudo-random pixels in [0, 1)
const pixels = (n: number) => new Float32Array(n * H * W * C).map((_, i) => Math.abs(Math.sin(i * 12.9898) * 43758.5453) % 1);
const xs = tf.tensor4d(pixels(batch), [batch, H, W, C]);
const targets = Array.from({ length: batch }, (_, i) => i % K);
const layer = lastSpatialLayer(ex);
const deconvLayer = convLayers(ex).at(-1)!;
const head = camHead(model);
const SG = 25; // SmoothGrad samples per image (the technique's default)

interface Method {
  name: string;
  /** images explained per call */
  images: number;
  /** builds the maps (inside a tidy); undefined = timed by `direct` instead */
  maps?: (x: tf.Tensor4D) => tf.Tensor[];
  /** a method that batches and reads on its own (occlusion): timed as a whole */
  direct?: () => Promise<void>;
  /** why it is not run here */
  skip?: string;
}

const sgInput = tf.tidy(() => tf.slice(xs, 0, Math.min(batch, 2)) as tf.Tensor4D);
const items: Item[] = Array.from({ length: Math.min(batch, 2) }, (_, i) => ({
  example: { split: 'test', index: i, label: 0, predicted: 0, correct: true }, id: `b-${i}`, target: i % K, role: 'predicted',
  image: pixels(1), pixels: new Uint8Array(H * W * C),
}));
const occSize = Math.ceil(H / 7);
const occStride = Math.ceil(occSize / 2);

const all: Method[] = [
  { name: 'forward', images: batch, maps: (x) => [ex.run(x).output] },
  { name: 'saliency', images: batch, maps: (x) => [inputGradient(ex, x, targets)] },
  { name: 'guided-backprop', images: batch, maps: (x) => [inputGradient(ex, x, targets, 'guided')] },
  { name: 'deconvnet-rule', images: batch, maps: (x) => [inputGradient(ex, x, targets, 'deconvnet')] },
  {
    name: 'deconvnet-explicit', images: batch,
    maps: (x) => {
      const { units, values } = strongestUnits(ex, x, deconvLayer);
      return [deconvnetProject(model, x, deconvLayer, units, values)];
    },
  },
  {
    // SmoothGrad costs SG gradients per image; timed on ≤ 2 images × 25 samples
    name: `smoothgrad`, images: sgInput.shape[0],
    maps: () => {
      // in chunks of copies, as the technique does (all at once on small models)
      const b = sgInput.shape[0];
      const k = samplesPerCall(ex, b, SG);
      const out: tf.Tensor[] = [];
      for (let s0 = 0; s0 < SG; s0 += k) {
        const n = Math.min(k, SG - s0) * b;
        const noisy = tf.add(tf.tile(sgInput, [n / b, 1, 1, 1]), tf.randomNormal([n, H, W, C], 0, 0.15, 'float32', 1 + s0)) as tf.Tensor4D;
        out.push(inputGradient(ex, noisy, Array.from({ length: n }, (_, i) => targets[i % b])));
      }
      return out;
    },
  },
  head.ok
    ? { name: 'cam', images: batch, maps: (x) => [camMaps(ex.run(x, { upTo: head.feature }).output, head.weights, targets)] }
    : { name: 'cam', images: batch, skip: `not applicable: ${head.reason}` },
  { name: 'grad-cam', images: batch, maps: (x) => [gradCamMaps(ex, x, layer, targets)] },
  { name: 'grad-cam++', images: batch, maps: (x) => [gradCamPlusPlusMaps(ex, x, layer, targets)] },
  {
    name: 'guided-grad-cam', images: batch,
    maps: (x) => [tf.mul(tf.sum(inputGradient(ex, x, targets, 'guided'), 3), tf.squeeze(tf.image.resizeBilinear(tf.expandDims(gradCamMaps(ex, x, layer, targets), 3) as tf.Tensor4D, [H, W], false, true), [3]))],
  },
  {
    name: 'occlusion', images: items.length,
    direct: async () => { await occlusionMaps(ex, items, [H, W, C], occSize, occStride, new Array(C).fill(0.5)); },
  },
];
const wanted = args.methods?.split(',') ?? (args.model === 'vgg16' ? ['forward', 'saliency', 'grad-cam'] : all.map((m) => m.name));
const unknown = wanted.filter((w) => !all.some((m) => m.name === w));
if (unknown.length) {
  console.error(`unknown method(s) ${unknown.join(', ')}; known: ${all.map((m) => m.name).join(', ')}`);
  process.exit(2);
}

async function once(m: Method): Promise<number> {
  const t0 = performance.now();
  if (m.direct) {
    await m.direct();
  } else {
    const outs = tf.tidy(() => m.maps!(xs));
    for (const t of outs) await t.data(); // waits for the device too (webgpu)
    tf.dispose(outs);
  }
  return performance.now() - t0;
}

/** Median and fastest of `reps` timed calls; under contention the fastest is the better estimate. */
async function timeIt(m: Method): Promise<{ median: number; best: number }> {
  await once(m); // warm-up: shader / kernel set-up, weight uploads
  const ms: number[] = [];
  for (let r = 0; r < reps; r++) ms.push(await once(m));
  ms.sort((a, b) => a - b);
  return { median: ms[Math.floor(ms.length / 2)], best: ms[0] };
}

console.log(`model: ${bench.description}`);
console.log(`backend ${info.name} (${info.adapter}), batch ${batch}, median of ${reps} after 1 warm-up; ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}`);
console.log(`Grad-CAM / CAM layer '${layer}', deconvnet layer '${deconvLayer}', SmoothGrad ${SG} samples, occlusion ${occSize}px stride ${occStride}`);
console.log(`load average at start: ${load()}`);
console.log('\n| method | images/call | ms/call (median) | images/s (median) | images/s (best) | time/image vs forward (median) |\n|---|---:|---:|---:|---:|---:|');
let forwardPerImage: number | undefined;
const before = tf.memory().numTensors;
for (const m of all.filter((a) => wanted.includes(a.name))) {
  if (m.skip) {
    console.log(`| ${m.name} | – | – | skipped: ${m.skip} | | |`);
    continue;
  }
  const { median, best } = await timeIt(m);
  const perImage = median / m.images;
  if (m.name === 'forward') forwardPerImage = perImage;
  const ratio = forwardPerImage ? `${(perImage / forwardPerImage).toFixed(1)}×` : '';
  console.log(`| ${m.name} | ${m.images} | ${median.toFixed(1)} | ${(1000 / perImage).toFixed(1)} | ${((1000 * m.images) / best).toFixed(1)} | ${ratio} |`);
}
console.log(`\nload average at end: ${load()}`);
if (tf.memory().numTensors !== before) console.log(`warning: ${tf.memory().numTensors - before} tensors leaked during the run`);
tf.dispose([xs, sgInput]);
model.dispose();
