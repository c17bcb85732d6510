import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  affineMatrix, alphaNorm, applyTransforms, channelMean, drawTransform, featureMatch, gram, gramMatch,
  optimizeImage, standardTransforms, totalVariation, type Forward, type OptimizeOptions,
} from '../pipelines/engines/optimize-image';
import { buildRandomNet } from '../pipelines/engines/perceptual';
import { Rng } from '../pipelines/rng';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

/** A fixed tiny conv net from raw ops: enough for objective and memory tests. */
function tinyForward(): { forward: Forward; dispose: () => void } {
  const rng = new Rng(1);
  const k = tf.tensor4d(Array.from({ length: 3 * 3 * 3 * 4 }, () => rng.normal() * 0.3), [3, 3, 3, 4]);
  const forward: Forward = (x) => ({ conv: tf.relu(tf.conv2d(x, k, 1, 'same')) });
  return { forward, dispose: () => k.dispose() };
}

function base(forward: Forward, over: Partial<OptimizeOptions> = {}): OptimizeOptions {
  return {
    batch: 2, height: 12, width: 12, channels: 3,
    param: { kind: 'fourier', decorrelate: true, sd: 0.01, decayPower: 1 },
    transforms: standardTransforms(12),
    terms: [channelMean('conv', [0, 2]), totalVariation(0.1)],
    forward, steps: 5, lr: 0.05, rng: new Rng(5), ...over,
  };
}

describe('optimizeImage', () => {
  it('decreases the loss within 5 steps (pixel and Fourier, with and without transforms)', async () => {
    const net = tinyForward();
    for (const kind of ['pixel', 'fourier'] as const) {
      for (const transforms of [null, standardTransforms(12)]) {
        // compare untransformed values: the per-step loss under random transforms is noisy
        const r0 = await optimizeImage(base(net.forward, { steps: 0, param: { kind, decorrelate: true, sd: 0.01, decayPower: 1 }, transforms }));
        const r5 = await optimizeImage(base(net.forward, { steps: 5, param: { kind, decorrelate: true, sd: 0.01, decayPower: 1 }, transforms }));
        expect(r5.losses.at(-1)!).toBeLessThan(r0.losses.at(-1)!);
        expect(r5.losses).toHaveLength(6);
      }
    }
    net.dispose();
  });

  it('keeps the tensor count flat over 100 steps', async () => {
    const net = tinyForward();
    const before = tf.memory().numTensors;
    await optimizeImage(base(net.forward, { steps: 1 }));
    const afterOne = tf.memory().numTensors;
    await optimizeImage(base(net.forward, { steps: 100, blur: { every: 4, sigma: 0.5 }, param: { kind: 'pixel', decorrelate: false, sd: 0.01, decayPower: 1 } }));
    expect(tf.memory().numTensors).toBe(afterOne);
    expect(afterOne).toBe(before);
    net.dispose();
  });

  it('disposes everything when a step throws', async () => {
    const before = tf.memory().numTensors;
    const net = tinyForward();
    const before2 = tf.memory().numTensors;
    // fails on the 3rd call: inside the gradient tape, after the probe pass succeeded
    let calls = 0;
    const bad: Forward = (x, l) => { if (++calls === 3) throw new Error('boom'); return net.forward(x, l); };
    await expect(optimizeImage(base(bad))).rejects.toThrow('boom');
    expect(tf.memory().numTensors).toBe(before2);
    // and at once (in the probe pass)
    await expect(optimizeImage(base(() => { throw new Error('boom'); }))).rejects.toThrow('boom');
    net.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('is seeded: same seed → same image, other seed → other image', async () => {
    const net = tinyForward();
    const a = await optimizeImage(base(net.forward, { rng: new Rng(9) }));
    const b = await optimizeImage(base(net.forward, { rng: new Rng(9) }));
    const c = await optimizeImage(base(net.forward, { rng: new Rng(10) }));
    expect(Array.from(a.images)).toEqual(Array.from(b.images));
    expect(Array.from(a.images)).not.toEqual(Array.from(c.images));
    net.dispose();
  });

  it('records the same loss curve whether the losses are read every step or in batches', async () => {
    const net = tinyForward();
    const seen: [number, number][] = [];
    // 7 steps with reads every 3: two full batches and a remainder
    const batched = await optimizeImage(base(net.forward, { steps: 7, lossReadEvery: 3, onStep: (s, l) => seen.push([s, l]) }));
    const eager = await optimizeImage(base(net.forward, { steps: 7, lossReadEvery: 1, rng: new Rng(5) }));
    expect(batched.losses).toEqual(eager.losses);
    expect(Array.from(batched.images)).toEqual(Array.from(eager.images));
    expect(batched.losses).toHaveLength(8);
    // every step reported once, in order, with the recorded value
    expect(seen).toEqual(batched.losses.slice(0, 7).map((l, i) => [i, l]));
    net.dispose();
  });

  it('starts from a given image with the pixel parameterisation', async () => {
    const net = tinyForward();
    const init = Float32Array.from({ length: 12 * 12 * 3 }, (_, i) => (i % 7) / 7);
    const r = await optimizeImage(base(net.forward, { batch: 1, steps: 0, init, transforms: null, param: { kind: 'pixel', decorrelate: false, sd: 0, decayPower: 1 } }));
    for (let i = 0; i < init.length; i++) expect(r.images[i]).toBeCloseTo(Math.min(0.999, Math.max(0.001, init[i])), 4);
    net.dispose();
  });
});

describe('transforms', () => {
  it('seeded draws are reproducible', () => {
    const t = standardTransforms(28);
    const a = [0, 1, 2, 3].map(() => drawTransform(t, new Rng(4)));
    expect(a[0]).toEqual(a[1]);
    expect(drawTransform(t, new Rng(4))).not.toEqual(drawTransform(t, new Rng(5)));
  });

  it('identity affine matrix copies the image; output has the input size', () => {
    const m = affineMatrix(3, 3, 3, 3, 1, 0, [0, 0]);
    for (let i = 0; i < 9; i++) for (let j = 0; j < 9; j++) expect(m[i * 9 + j]).toBeCloseTo(i === j ? 1 : 0, 6);
    const x = tf.randomUniform([2, 10, 10, 3]) as tf.Tensor4D;
    const y = applyTransforms(x, standardTransforms(10), { dy: 1, dx: 0, scale: 1.1, angle: 7, dy2: 1, dx2: -1 });
    expect(y.shape).toEqual([2, 10, 10, 3]);
    // gradient flows through pad, slice and the resampling
    const g = tf.grad((v: tf.Tensor) => tf.sum(applyTransforms(v as tf.Tensor4D, standardTransforms(10), { dy: 1, dx: 1, scale: 0.9, angle: -5, dy2: 0, dx2: 0 })))(x);
    expect(tf.sum(g).dataSync()[0]).toBeGreaterThan(0);
    tf.dispose([x, y, g]);
  });

  it('90° rotation of a 2×2 image moves pixels as expected', () => {
    // out(p) samples in(R·p): with angle 90°, out[0][0] = in[1][0]... check against a hand result
    const x = tf.tensor4d([1, 2, 3, 4], [1, 2, 2, 1]);
    const t = { pad: 0, jitter: 0, scales: [], angles: [], jitter2: 0 };
    const y = applyTransforms(x, t, { dy: 0, dx: 0, scale: 1, angle: 90, dy2: 0, dx2: 0 });
    // (oy, ox) − c = (−.5, −.5) → (y, x) = c + (−.5·0 − 1·(−.5)·... ) computed: [[3,1],[4,2]] or [[2,4],[1,3]]
    const v = Array.from(y.dataSync()).map((a) => Math.round(a));
    expect([[3, 1, 4, 2], [2, 4, 1, 3]]).toContainEqual(v);
    tf.dispose([x, y]);
  });
});

describe('objective terms', () => {
  it('Gram matrix by hand', () => {
    // one image, 2×1 positions, 2 channels: F = [[1, 2], [3, 4]] → FᵀF / 2 = [[5, 7], [7, 10]]
    const a = tf.tensor4d([1, 2, 3, 4], [1, 2, 1, 2]);
    const g = gram(a);
    expect(Array.from(g.dataSync())).toEqual([5, 7, 7, 10]);
    const t = gramMatch('l', tf.tensor3d([5, 7, 7, 10], [1, 2, 2]));
    expect(t.value({ l: a }, a as tf.Tensor4D).dataSync()[0]).toBeCloseTo(0, 6);
    tf.dispose([a, g]);
  });

  it('Gram matrix gradient (its own, F·(dG + dGᵀ)/N) equals the gradient through plain matMuls, batch 2', () => {
    const rng = new Rng(5);
    const a = tf.tensor4d(Float32Array.from({ length: 2 * 3 * 4 * 5 }, () => rng.normal()), [2, 3, 4, 5]);
    const w = tf.tensor3d(Float32Array.from({ length: 2 * 5 * 5 }, () => rng.normal()), [2, 5, 5]); // not symmetric
    const plainGram = (x: tf.Tensor4D) => {
      const f = tf.reshape(x, [2, 12, 5]) as tf.Tensor3D;
      return tf.div(tf.matMul(tf.transpose(f, [0, 2, 1]), f), 12);
    };
    const before = tf.memory().numTensors;
    const [ours, plain] = tf.tidy(() => [
      tf.grad((x: tf.Tensor) => tf.sum(tf.mul(gram(x as tf.Tensor4D), w)))(a).dataSync(),
      tf.grad((x: tf.Tensor) => tf.sum(tf.mul(plainGram(x as tf.Tensor4D), w)))(a).dataSync(),
    ]);
    expect(tf.memory().numTensors).toBe(before);
    let err = 0;
    for (let i = 0; i < plain!.length; i++) err = Math.max(err, Math.abs(ours![i]! - plain![i]!));
    expect(err).toBeLessThan(1e-5);
    expect(Array.from(tf.tidy(() => gram(a).dataSync()))).toEqual(Array.from(tf.tidy(() => plainGram(a).dataSync())));
    tf.dispose([a, w]);
  });

  it('feature match is the normalised squared error; TV and α-norm by hand', () => {
    const target = tf.tensor4d([1, 1, 1, 1], [1, 2, 2, 1]);
    const y = tf.tensor4d([1, 1, 1, 3], [1, 2, 2, 1]);
    expect(featureMatch('l', target).value({ l: y }, y).dataSync()[0]).toBeCloseTo(4 / 4, 5);
    // TV: vertical diffs [0, 2] mean 2, horizontal [0, 2] mean 2 → 4
    expect(totalVariation(1).value({}, y).dataSync()[0]).toBeCloseTo(4, 5);
    // α = 2 around 0.5: (0.25·3 + 6.25) / 4
    expect(alphaNorm(2, 1).value({}, y).dataSync()[0]).toBeCloseTo((0.25 * 3 + 6.25) / 4, 5);
    tf.dispose([target, y]);
  });
});

describe('random perceptual network', () => {
  it('is seeded and its texture loss decreases within 5 steps', async () => {
    const a = buildRandomNet({ seed: 3, filters: 8, levels: 3 });
    const b = buildRandomNet({ seed: 3, filters: 8, levels: 3 });
    const x = tf.randomUniform([1, 32, 32, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
    const fa = tf.tidy(() => Array.from(a.forward(x, [a.layers[0]])[a.layers[0]].dataSync()));
    const fb = tf.tidy(() => Array.from(b.forward(x, [b.layers[0]])[b.layers[0]].dataSync()));
    expect(fa).toEqual(fb);
    const targets = tf.tidy(() => {
      const acts = a.forward(x, a.layers);
      return a.layers.map((l) => gram(acts[l] as tf.Tensor4D));
    });
    const opts: OptimizeOptions = {
      batch: 1, height: 32, width: 32, channels: 3,
      param: { kind: 'pixel', decorrelate: true, sd: 0.1, decayPower: 1 }, transforms: null,
      terms: a.layers.map((l, i) => gramMatch(l, targets[i])), forward: a.forward, steps: 5, lr: 0.05, rng: new Rng(2),
    };
    const r = await optimizeImage(opts);
    expect(r.losses.at(-1)!).toBeLessThan(r.losses[0]);
    tf.dispose([x, ...targets]);
    a.dispose();
    b.dispose();
  });
});
