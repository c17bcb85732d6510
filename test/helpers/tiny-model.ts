/**
 * A tiny seeded CNN written with raw tfjs-core ops: conv3x3(8)+relu → maxpool2 →
 * conv3x3(16)+relu → dense(10). Weights are plain constants (not variables), so tf.grad
 * with respect to the input needs only input-gradient kernels (Conv2DBackpropInput,
 * MaxPoolGrad), which every backend has; wasm lacks Conv2DBackpropFilter.
 */
import * as tf from '@tensorflow/tfjs-core';

export const TINY_INPUT: [number, number, number] = [28, 28, 1];
export const TINY_CLASSES = 10;

export interface TinyWeights {
  conv1: Float32Array; // [3, 3, 1, 8]
  conv1b: Float32Array; // [8]
  conv2: Float32Array; // [3, 3, 8, 16]
  conv2b: Float32Array; // [16]
  dense: Float32Array; // [14 * 14 * 16, 10]
  denseb: Float32Array; // [10]
}

/** Deterministic PRNG (mulberry32), independent of any backend. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function normals(n: number, std: number, next: () => number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    // Box–Muller; 1 - u keeps log() away from 0.
    const u = 1 - next();
    const v = next();
    out[i] = std * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  return out;
}

/** He-scaled weights, so activations stay O(1) and relative errors are meaningful. */
export function tinyWeights(seed = 1234): TinyWeights {
  const next = rng(seed);
  const flat = 14 * 14 * 16;
  return {
    conv1: normals(3 * 3 * 1 * 8, Math.sqrt(2 / 9), next),
    conv1b: normals(8, 0.1, next),
    conv2: normals(3 * 3 * 8 * 16, Math.sqrt(2 / 72), next),
    conv2b: normals(16, 0.1, next),
    dense: normals(flat * TINY_CLASSES, Math.sqrt(1 / flat), next),
    denseb: normals(TINY_CLASSES, 0.1, next),
  };
}

/** A batch of inputs in [0, 1), NHWC. */
export function tinyInput(batch = 4, seed = 99): Float32Array {
  const next = rng(seed);
  const out = new Float32Array(batch * 28 * 28);
  for (let i = 0; i < out.length; i++) out[i] = next();
  return out;
}

export interface TinyModel {
  predict(x: tf.Tensor4D): tf.Tensor2D;
  dispose(): void;
}

/** Uploads the weights to the active backend and returns the forward function. */
export function tinyModel(w: TinyWeights): TinyModel {
  const t = {
    conv1: tf.tensor4d(w.conv1, [3, 3, 1, 8]),
    conv1b: tf.tensor1d(w.conv1b),
    conv2: tf.tensor4d(w.conv2, [3, 3, 8, 16]),
    conv2b: tf.tensor1d(w.conv2b),
    dense: tf.tensor2d(w.dense, [14 * 14 * 16, TINY_CLASSES]),
    denseb: tf.tensor1d(w.denseb),
  };
  return {
    predict: (x) =>
      tf.tidy(() => {
        let h = tf.relu(tf.add(tf.conv2d(x, t.conv1, 1, 'same'), t.conv1b) as tf.Tensor4D);
        h = tf.maxPool(h, 2, 2, 'valid');
        h = tf.relu(tf.add(tf.conv2d(h, t.conv2, 1, 'same'), t.conv2b) as tf.Tensor4D);
        const flat = tf.reshape(h, [x.shape[0], 14 * 14 * 16]);
        return tf.add(tf.matMul(flat, t.dense), t.denseb);
      }),
    dispose: () => Object.values(t).forEach((v) => v.dispose()),
  };
}
