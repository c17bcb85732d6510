/**
 * BatchNormalization folded into the linear Conv2D / DepthwiseConv2D that feeds it
 * (GraphExecutor.foldBatchNorm, pipelines/model/graph.ts): same logits and input gradients as
 * the unfolded graph on cpu and wasm, conv nodes still capture their pre-BN value, perturbations
 * and ReLU gradient rules unchanged, folded weights freed with the model.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { initBackend } from '../pipelines/backend';
import { isConvlensError } from '../pipelines/errors';
import { loadModel, type LoadedModel } from '../pipelines/model/load';
import type { GraphExecutor, ReluRule } from '../pipelines/model/graph';
import { Rng } from '../pipelines/rng';
import { saveModel, seededImages, setSeededWeights, tmpDir } from './fixtures/models';
import { maxRelErr } from './helpers/compare';

const TOLERANCE = 1e-5;
const CLASS = 2;

/**
 * MobileNet-style blocks: conv(bias) → BN → ReLU6, depthwise ×2 → BN → ReLU, dilated depthwise
 * (bias) → BN → Activation(relu6), 1×1 conv → BN (linear, MobileNetV2's projection) into an Add;
 * and two pairs that must not fold: a conv with a second consumer, and conv(relu) → BN.
 */
function foldModel(seed = 3): tfl.LayersModel {
  const input = tfl.input({ shape: [12, 12, 3], name: 'image' });
  const ap = <T>(layer: { apply(x: T): unknown }, x: T) => layer.apply(x) as tfl.SymbolicTensor;
  const c1 = ap(tfl.layers.conv2d({ filters: 8, kernelSize: 3, strides: 2, padding: 'same', name: 'c1' }), input);
  const c1r = ap(tfl.layers.reLU({ maxValue: 6, name: 'c1_relu' }), ap(tfl.layers.batchNormalization({ name: 'c1_bn' }), c1));
  const dw = ap(tfl.layers.depthwiseConv2d({ kernelSize: 3, depthMultiplier: 2, padding: 'same', useBias: false, name: 'dw' }), c1r);
  const dwr = ap(tfl.layers.reLU({ name: 'dw_relu' }), ap(tfl.layers.batchNormalization({ name: 'dw_bn' }), dw));
  const dw2 = ap(tfl.layers.depthwiseConv2d({ kernelSize: 3, dilationRate: 2, padding: 'same', name: 'dw2' }), dwr);
  const dw2r = ap(tfl.layers.activation({ activation: 'relu6', name: 'dw2_relu' }), ap(tfl.layers.batchNormalization({ name: 'dw2_bn' }), dw2));
  const pw = ap(tfl.layers.conv2d({ filters: 8, kernelSize: 1, useBias: false, name: 'pw' }), dw2r);
  const pwBn = ap(tfl.layers.batchNormalization({ name: 'pw_bn' }), pw);
  const side = ap(tfl.layers.conv2d({ filters: 8, kernelSize: 1, name: 'side' }), c1r);
  const sideBn = ap(tfl.layers.batchNormalization({ name: 'side_bn' }), side);
  const add = tfl.layers.add({ name: 'add' }).apply([pwBn, sideBn, side]) as tfl.SymbolicTensor;
  const post = ap(tfl.layers.conv2d({ filters: 6, kernelSize: 3, padding: 'same', activation: 'relu', name: 'post' }), add);
  const postBn = ap(tfl.layers.batchNormalization({ name: 'post_bn' }), post);
  const gap = ap(tfl.layers.globalAveragePooling2d({ name: 'gap' }), postBn);
  const logits = ap(tfl.layers.dense({ units: 5, name: 'logits' }), gap);
  const probs = ap(tfl.layers.activation({ activation: 'softmax', name: 'probs' }), logits);
  const model = tfl.model({ inputs: input, outputs: probs, name: 'fold_fixture' });
  setSeededWeights(model, seed);
  // BN statistics far from identity: variances 0.05–4, means ±2, scales of both signs
  const rng = new Rng(seed + 100);
  for (const layer of model.layers.filter((l) => l.getClassName() === 'BatchNormalization')) {
    const n = layer.getWeights()[0].shape[0]!;
    const vec = (f: () => number) => tf.tensor1d(Array.from({ length: n }, f));
    const [gamma, beta, mean, variance] = [vec(() => (rng.next() < 0.2 ? -1 : 1) * (0.3 + 1.5 * rng.next())), vec(() => rng.next() - 0.5), vec(() => 4 * rng.next() - 2), vec(() => 0.05 + 4 * rng.next())];
    layer.setWeights([gamma, beta, mean, variance]);
    tf.dispose([gamma, beta, mean, variance]);
  }
  return model;
}

let model: LoadedModel;
let ex: GraphExecutor;
let x: tf.Tensor4D;

beforeAll(async () => {
  await initBackend('cpu');
  const dir = tmpDir('convlens-fold-bn-');
  const m = foldModel();
  await saveModel(m, dir);
  m.dispose();
  model = await loadModel(dir);
  ex = model.executor;
  x = seededImages([3, 12, 12, 3], 5);
});

afterAll(() => {
  x.dispose();
  model.dispose();
});

/** Runs `f` with folding on or off, restoring the default. */
function withFold<T>(on: boolean, f: () => T): T {
  const before = ex.foldBatchNorm;
  ex.foldBatchNorm = on;
  try {
    return f();
  } finally {
    ex.foldBatchNorm = before;
  }
}

/** Reads and frees `t` (asynchronously: webgpu under Node has no synchronous readback). */
async function data(t: tf.Tensor): Promise<Float32Array> {
  const d = (await t.data()) as Float32Array;
  t.dispose();
  return d;
}
const logitsOf = (on: boolean) => data(withFold(on, () => tf.tidy(() => ex.run(x, { upTo: 'logits' }).output)));
const gradOf = (on: boolean, rule: ReluRule = 'plain') =>
  data(withFold(on, () => tf.tidy(() => tf.grad((v: tf.Tensor) => tf.sum(tf.slice(ex.run(v as tf.Tensor4D, { upTo: 'logits', reluRule: rule }).output as tf.Tensor2D, [0, CLASS], [-1, 1])))(x))));

describe('BatchNorm folding: which pairs', () => {
  it('folds linear conv / depthwise → BN, not a conv with two consumers nor conv(relu) → BN', () => {
    expect(ex.foldBatchNorm).toBe(true);
    expect(ex.batchNormFolds).toEqual([
      { conv: 'c1', batchNorm: 'c1_bn' },
      { conv: 'dw', batchNorm: 'dw_bn' },
      { conv: 'dw2', batchNorm: 'dw2_bn' },
      { conv: 'pw', batchNorm: 'pw_bn' },
    ]);
    // the node list (names, roles, shapes) does not change: techniques see the Keras layers
    expect(ex.nodes.map((n) => n.name)).toEqual(expect.arrayContaining(['c1', 'c1_bn', 'c1_relu', 'dw', 'dw_bn', 'pw', 'pw_bn', 'side', 'side_bn', 'post/preact', 'post', 'post_bn']));
  });
});

describe('BatchNorm folding: what runs', () => {
  it('a folded pair runs one fused conv + bias and no FusedBatchNorm, with or without a gradient tape, and never a filter gradient', async () => {
    await initBackend('cpu');
    const kernels = async (on: boolean, grad: boolean) => {
      const info = await withFold(on, () => tf.profile(() => tf.tidy(() => grad
        ? tf.grad((v: tf.Tensor) => tf.sum(ex.run(v as tf.Tensor4D, { upTo: 'logits' }).output))(x)
        : ex.run(x, { upTo: 'logits' }).output)));
      tf.dispose(info.result as tf.Tensor);
      const count = (...names: string[]) => info.kernels.filter((k) => names.includes(k.name)).length;
      return {
        bn: count('FusedBatchNorm'), conv: count('Conv2D', 'DepthwiseConv2dNative'), fused: count('FusedConv2D', 'FusedDepthwiseConv2D'),
        filterGrads: count('Conv2DBackpropFilter', 'DepthwiseConv2dNativeBackpropFilter'),
      };
    };
    // 6 BN layers, 4 folded; 6 convs, 4 with a bias (c1, dw2, side, post): conv + bias is one fused kernel
    expect(await kernels(false, false)).toEqual({ bn: 6, conv: 2, fused: 4, filterGrads: 0 });
    expect(await kernels(true, false)).toEqual({ bn: 2, conv: 0, fused: 6, filterGrads: 0 });
    // under a tape too, with an x-only gradient: tfjs's own fused-conv gradient would also run a
    // filter backprop per conv
    for (const fold of [false, true]) {
      const taped = await kernels(fold, true);
      expect(taped.bn).toBe(fold ? 2 : 6);
      expect(taped.fused).toBe(fold ? 6 : 4);
      expect(taped.filterGrads).toBe(0);
    }
  });
});

describe.each(['cpu', 'wasm', 'webgpu'] as const)('BatchNorm folding on %s', (backend) => {
  let skip = '';
  beforeAll(async () => {
    try {
      await initBackend(backend);
    } catch (e) {
      // as in webgpu-techniques.test.ts: only a developer machine without any Vulkan driver may skip
      if (backend === 'webgpu' && !process.env.CI && isConvlensError(e) && /no adapter/.test(e.message)) skip = e.message;
      else throw e;
    }
  });
  beforeEach((ctx) => {
    if (skip) ctx.skip(`no WebGPU adapter here (${skip})`);
  });

  // (not against model.predict: tfjs-layers ignores the depthwise dilation, see model-graph.test.ts)
  it('logits and probabilities: folded = unfolded within 1e-5 relative', async () => {
    const folded = await logitsOf(true);
    const unfolded = await logitsOf(false);
    expect(maxRelErr(folded, unfolded)).toBeLessThan(TOLERANCE);
    const probs = (on: boolean) => data(withFold(on, () => tf.tidy(() => ex.run(x).output)));
    expect(maxRelErr(await probs(true), await probs(false))).toBeLessThan(TOLERANCE);
  });

  it('input gradients (plain, guided, deconvnet): folded = unfolded within 1e-5 relative', async () => {
    const byRule = new Map<ReluRule, Float32Array>();
    for (const rule of ['plain', 'guided', 'deconvnet'] as const) {
      const folded = await gradOf(true, rule);
      const unfolded = await gradOf(false, rule);
      expect(Math.max(...unfolded.map(Math.abs))).toBeGreaterThan(1e-3);
      expect(maxRelErr(folded, unfolded), rule).toBeLessThan(TOLERANCE);
      byRule.set(rule, folded);
    }
    // the ReLU nodes after the folded BNs keep their custom gradients
    expect(maxRelErr(byRule.get('guided')!, byRule.get('plain')!)).toBeGreaterThan(1e-3);
    expect(maxRelErr(byRule.get('deconvnet')!, byRule.get('plain')!)).toBeGreaterThan(1e-3);
    expect(maxRelErr(byRule.get('deconvnet')!, byRule.get('guided')!)).toBeGreaterThan(1e-3);
  });

  it('a captured conv node (or upTo it) returns the pre-BN value; the BN node the same as unfolded', async () => {
    const names = ['c1', 'dw', 'dw2', 'pw', 'c1_bn', 'dw_bn', 'pw_bn'];
    const read = async (m: Record<string, tf.Tensor>) => Object.fromEntries(await Promise.all(Object.entries(m).map(async ([k, t]) => [k, await data(t)] as const)));
    const reference = await read(withFold(false, () => tf.tidy(() => ex.run(x, { capture: names }).captured)));
    const folded = await read(tf.tidy(() => ex.run(x, { capture: names }).captured));
    for (const n of names) expect(maxRelErr(folded[n], reference[n]), n).toBeLessThan(TOLERANCE);
    // one conv captured (or the run stopped at it) while every other pair of the net is folded
    const dwAlone = await data(tf.tidy(() => ex.run(x, { capture: ['dw'], upTo: 'logits' }).captured.dw));
    const upToPw = await data(tf.tidy(() => ex.run(x, { upTo: 'pw' }).output));
    expect(maxRelErr(dwAlone, reference.dw)).toBeLessThan(TOLERANCE);
    expect(maxRelErr(upToPw, reference.pw)).toBeLessThan(TOLERANCE);
    // the pre-BN value matches a hand-made conv and really differs from the BN output
    const c1 = await data(tf.tidy(() => {
      const [k, b] = model.layersModel.getLayer('c1').getWeights();
      return tf.add(tf.conv2d(x, k as tf.Tensor4D, 2, 'same'), b);
    }));
    expect(maxRelErr(reference.c1, c1)).toBeLessThan(TOLERANCE);
    expect(maxRelErr(reference.c1_bn, reference.c1)).toBeGreaterThan(0.1);
  });

  it('gradient at a conv node (perturbed, so that pair runs unfolded) and at a BN node match unfolded', async () => {
    for (const node of ['dw', 'dw_bn', 'pw']) {
      const zeros = tf.zeros([x.shape[0], ...ex.node(node).outputShape]);
      const g = (on: boolean) => data(withFold(on, () => tf.tidy(() =>
        tf.grad((p: tf.Tensor) => tf.sum(tf.slice(ex.run(x, { upTo: 'logits', perturb: { [node]: p } }).output as tf.Tensor2D, [0, CLASS], [-1, 1])))(zeros))));
      const folded = await g(true);
      const unfolded = await g(false);
      expect(Math.max(...unfolded.map(Math.abs))).toBeGreaterThan(1e-4);
      expect(maxRelErr(folded, unfolded), node).toBeLessThan(TOLERANCE);
      zeros.dispose();
    }
  });

  it('leaks no tensors, forward or backward, folded or not', async () => {
    await logitsOf(true);
    await gradOf(true);
    const before = tf.memory().numTensors;
    for (const on of [true, false]) {
      await logitsOf(on);
      await gradOf(on, 'guided');
      withFold(on, () => tf.tidy(() => { ex.run(x, { capture: ['c1', 'pw_bn'], recordSwitches: true }); }));
    }
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('BatchNorm folding: lifetime', () => {
  it('refolds when a layer weight is reassigned (outside a gradient tape), unfolded inside one', async () => {
    await initBackend('cpu');
    const dir = tmpDir('convlens-fold-bn-w-');
    const m = foldModel(7);
    await saveModel(m, dir);
    m.dispose();
    // its own input: the shared one may live on webgpu by now (no synchronous readback to cpu)
    const x = seededImages([2, 12, 12, 3], 6);
    const before = tf.memory().numTensors;
    const loaded = await loadModel(dir);
    const e = loaded.executor;
    const score = (on: boolean, grad: boolean) => {
      e.foldBatchNorm = on;
      const t = tf.tidy(() => grad
        ? tf.grad((v: tf.Tensor) => tf.sum(e.run(v as tf.Tensor4D, { upTo: 'logits' }).output))(x)
        : e.run(x, { upTo: 'logits' }).output);
      e.foldBatchNorm = true;
      const d = t.dataSync() as Float32Array; // cpu: synchronous readback is fine
      t.dispose();
      return d;
    };
    const old = score(true, false);
    const bn = loaded.layersModel.getLayer('pw_bn');
    const w = bn.getWeights();
    const gamma = tf.mul(w[0], -2);
    bn.setWeights([gamma, ...w.slice(1)]);
    gamma.dispose();
    // inside the tape first (falls back to the unfolded pair), then a forward pass (refolds)
    const gradAfter = score(true, true);
    expect(maxRelErr(gradAfter, score(false, true))).toBeLessThan(TOLERANCE);
    const after = score(true, false);
    expect(maxRelErr(after, score(false, false))).toBeLessThan(TOLERANCE);
    expect(maxRelErr(after, old)).toBeGreaterThan(0.01);
    expect(maxRelErr(score(true, true), gradAfter)).toBeLessThan(TOLERANCE);
    loaded.dispose();
    // the folded weights (and the refolded ones) go with the model
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
  });
});
