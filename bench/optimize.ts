/**
 * Steps per second of the optimisation engine, per technique: on the report's model
 * (reports/fashion-mnist/model, once trained) and on each perceptual network (the random
 * multi-scale net and the MobileNetV2 backbone from nsfwjs) at several sizes.
 *
 *   npx tsx bench/optimize.ts [backend=wasm] [steps=20]
 *   env: BENCH_NETS=random,mobilenet-v2  BENCH_SIZES=128,224  BENCH_CASES=model,texture,style
 *
 * Each case runs `steps` steps after a 2-step warm-up; prints one JSON line per case, with the
 * 1-minute load average before and after (the machine may be shared).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../pipelines/backend';
import { loadModel } from '../pipelines/model/load';
import { Rng } from '../pipelines/rng';
import {
  channelMean, classLogit, convStageLayers, featureMatch, gram, gramMatch, l2Decay, modelForward, optimizeImage,
  spreadChannels, standardTransforms, totalVariation, alphaNorm, type OptimizeOptions,
} from '../pipelines/engines/optimize-image';
import { buildRandomNet, loadMobileNetV2Backbone, type PerceptualNet } from '../pipelines/engines/perceptual';
import { findLayers } from '../pipelines/techniques/features';
import type { BackendRequest } from '../pipelines/types';

const backend = (process.argv[2] ?? 'wasm') as BackendRequest;
const steps = Number(process.argv[3] ?? 20);
const info = await initBackend(backend);

const list = (v: string | undefined, d: string) => (v ?? d).split(',').filter(Boolean);
const nets = list(process.env.BENCH_NETS, 'random,mobilenet-v2');
const sizes = list(process.env.BENCH_SIZES, '128,224').map(Number);
const cases = list(process.env.BENCH_CASES, 'model,texture,style');

async function time(name: string, o: Omit<OptimizeOptions, 'steps' | 'rng'>): Promise<void> {
  await optimizeImage({ ...o, steps: 2, rng: new Rng(1) });
  const load0 = os.loadavg()[0];
  const r = await optimizeImage({ ...o, steps, rng: new Rng(1) });
  console.log(JSON.stringify({
    case: name, backend: info.adapter, batch: o.batch, size: o.height, steps, seconds: +r.seconds.toFixed(2),
    stepsPerSecond: +(steps / r.seconds).toFixed(3), load1: [+load0.toFixed(2), +os.loadavg()[0].toFixed(2)],
  }));
}

const modelDir = path.resolve('reports/fashion-mnist/model');
if (!cases.includes('model')) {
  // skipped on request
} else if (fs.existsSync(path.join(modelDir, 'model.json'))) {
  const model = await loadModel(modelDir);
  const [h, w, c] = model.inputShape;
  const pre = { size: [h, w] as [number, number], channels: c as 1, fit: 'fill' as const, normalize: { kind: 'range' as const, min: 0, max: 1 } };
  const forward = modelForward(model, pre);
  const stage = convStageLayers(model.executor);
  const last = stage[stage.length - 1];
  const k = model.executor.node(last).outputShape.at(-1)!;
  const base = { height: h, width: w, channels: c, forward, lr: 0.05 };
  await time('activation-maximization (priors, 8 channels, last stage)', {
    ...base, batch: 8, param: { kind: 'fourier', decorrelate: true, sd: 0.01, decayPower: 1 }, transforms: standardTransforms(h),
    terms: [channelMean(last, spreadChannels(k, 8)), totalVariation(0.05)],
  });
  const logits = findLayers(model.executor).logits;
  const nc = model.executor.node(logits).outputShape.at(-1)!;
  await time('class-model (all classes)', {
    ...base, batch: nc, param: { kind: 'pixel', decorrelate: false, sd: 0.01, decayPower: 1 },
    transforms: { pad: 2, jitter: 3, scales: [], angles: [], jitter2: 0 }, terms: [classLogit(logits, Array.from({ length: nc }, (_, i) => i)), l2Decay(1)],
  });
  const target = tf.tidy(() => forward(tf.randomUniform([4, h, w, c]) as tf.Tensor4D, [last])[last]);
  await time('feature-inversion (4 images, last stage)', {
    ...base, batch: 4, param: { kind: 'pixel', decorrelate: false, sd: 0.5, decayPower: 1 }, transforms: null,
    terms: [featureMatch(last, target), alphaNorm(6, 1), totalVariation(0.5)],
  });
  target.dispose();
  model.dispose();
} else {
  console.log(JSON.stringify({ skipped: 'report model', reason: `${modelDir}/model.json not found (train it first)` }));
}

// the techniques' own settings (texture-synthesis.ts, style-transfer.ts): same terms, same parameterisation
for (const which of nets) {
  const net: PerceptualNet = which === 'random' ? buildRandomNet() : await loadMobileNetV2Backbone();
  for (const size of sizes) {
    const x = tf.randomUniform([1, size, size, 3], 0, 1, 'float32', 7) as tf.Tensor4D;
    const styleLayers = net.defaultStyleLayers;
    const grams = tf.tidy(() => { const a = net.forward(x, styleLayers); return styleLayers.map((l) => gram(a[l] as tf.Tensor4D)); });
    const content = tf.tidy(() => net.forward(x, [net.defaultContentLayer])[net.defaultContentLayer]);
    const style = styleLayers.map((l, i) => gramMatch(l, grams[i]));
    const common = { batch: 1, height: size, width: size, channels: 3, forward: net.forward, transforms: null };
    if (cases.includes('texture')) await time(`texture-synthesis (${which}, ${size} px)`, {
      ...common, lr: 0.05, param: { kind: 'fourier', decorrelate: true, sd: 0.05, decayPower: 1 }, terms: style,
    });
    // style-transfer's defaults: Fourier from faint noise, style weight 0.25, no TV
    if (cases.includes('style')) await time(`style-transfer (${which}, ${size} px)`, {
      ...common, lr: 0.05, param: { kind: 'fourier', decorrelate: true, sd: 0.05, decayPower: 1 },
      terms: [featureMatch(net.defaultContentLayer, content), ...styleLayers.map((l, i) => gramMatch(l, grams[i], 0.25))],
    });
    tf.dispose([x, content, ...grams]);
  }
  net.dispose();
}
