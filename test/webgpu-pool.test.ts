/**
 * webgpu's MaxPoolGrad (kernels/webgpu-pool.ts) = cpu's, ties included: ReLU'd noise has whole
 * windows of zeros, and values rounded to 1/4 tie between non-zero values too.
 */
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { initBackend } from '../pipelines/backend';
import { isConvlensError } from '../pipelines/errors';
import { seededImages } from './fixtures/models';

const CASES: [[number, number], [number, number], 'valid' | 'same'][] = [
  [[2, 2], [2, 2], 'valid'], [[3, 3], [2, 2], 'same'], [[3, 2], [1, 2], 'valid'], [[2, 2], [2, 2], 'same'], [[3, 3], [3, 3], 'valid'],
];

async function grads(): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (const round of [false, true]) for (const [k, s, p] of CASES) {
    const g = tf.tidy(() => {
      let x = tf.relu(seededImages([2, 7, 9, 3], 3, -1));
      if (round) x = tf.div(tf.round(tf.mul(x, 4)), 4);
      const dy = tf.add(seededImages([2, 7, 9, 3], 4), 0.5);
      // weights per output so that every routed value is distinguishable
      return tf.grad((v: tf.Tensor) => {
        const y = tf.maxPool(v as tf.Tensor4D, k, s, p);
        return tf.sum(tf.mul(y, tf.slice(dy, [0, 0, 0, 0], y.shape)));
      })(x);
    });
    out.push((await g.data()) as Float32Array);
    g.dispose();
  }
  return out;
}

describe('webgpu MaxPoolGrad', () => {
  it('routes ties to the first maximum, like cpu', async (ctx) => {
    await initBackend('cpu');
    const ref = await grads();
    try {
      await initBackend('webgpu');
    } catch (e) {
      if (!process.env.CI && isConvlensError(e) && /no adapter/.test(e.message)) ctx.skip(`no WebGPU adapter here (${e.message})`);
      throw e;
    }
    const before = tf.memory().numTensors;
    const got = await grads();
    expect(tf.memory().numTensors).toBe(before);
    ref.forEach((r, i) => {
      const g = got[i];
      let d = 0;
      for (let j = 0; j < r.length; j++) d = Math.max(d, Math.abs(g[j] - r[j]));
      expect(d, `case ${i}`).toBeLessThanOrEqual(1e-6);
    });
  }, 120_000);
});
