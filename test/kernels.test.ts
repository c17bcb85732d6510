/**
 * The wasm gradient kernels (pipelines/kernels) against the cpu backend's kernels, on random
 * shapes, strides, paddings, dilations and batch > 1; plus finite differences, the all-negative
 * maxPool window, tfjs-layers training on wasm, and tensor-count stability.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../pipelines/backend';
import { conv2dInputGrad, depthwiseInputGrad, derivedFilterCount, registerWasmKernels, useFilterCache, wasmConv2dFilterGrad } from '../pipelines/kernels/index';
import { useSimdKernels } from '../pipelines/kernels/simd';
import { phaseInterleaveListInto } from '../pipelines/kernels/conv-grads';
import { Rng } from '../pipelines/rng';

type Pad = 'same' | 'valid' | tf.backend_util.ExplicitPadding;
type S4 = [number, number, number, number];

const rng = new Rng(7);
const randInt = (lo: number, hi: number) => lo + rng.int(hi - lo + 1);
function randArray(n: number): Float32Array {
  return Float32Array.from({ length: n }, () => rng.normal());
}

/** Largest relative error seen, printed at the end (for the record). */
let worst = 0;

/** ||a − b||₂ / ||b||₂ */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const e = relErrOf(a, b);
  worst = Math.max(worst, e);
  return e;
}

function relErrOf(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1e-30));
}

/** Runs `f` on a backend with fresh tensors made from the given arrays and returns its values. */
async function on(backend: 'cpu' | 'wasm', f: () => tf.Tensor): Promise<Float32Array> {
  await initBackend(backend);
  const t = f();
  const v = t.dataSync() as Float32Array;
  t.dispose();
  return v;
}

function kernel(name: string, inputs: Record<string, [Float32Array, number[]]>, attrs: tf.NamedAttrMap): () => tf.Tensor {
  return () =>
    tf.tidy(() => {
      const ins: tf.NamedTensorMap = {};
      for (const [k, [v, s]] of Object.entries(inputs)) ins[k] = tf.tensor(v, s);
      return tf.engine().runKernel(name, ins, attrs) as tf.Tensor;
    });
}

const PADS: Pad[] = ['same', 'valid', [[0, 0], [1, 0], [2, 1], [0, 0]]];

interface Case { n: number; h: number; w: number; ci: number; co: number; kh: number; kw: number; s: number; pad: Pad }
function cases(): Case[] {
  const out: Case[] = [];
  for (const s of [1, 2]) {
    for (const pad of PADS) {
      out.push({ n: randInt(2, 3), h: randInt(5, 9), w: randInt(5, 9), ci: randInt(1, 4), co: randInt(1, 5), kh: randInt(1, 3), kw: randInt(2, 3), s, pad });
    }
  }
  return out;
}

function outShape(c: Case, dil = 1, depthwise = false): S4 {
  const info = tf.backend_util.computeConv2DInfo([c.n, c.h, c.w, c.ci], [c.kh, c.kw, c.ci, c.co], c.s, dil, c.pad, undefined, depthwise);
  return [c.n, info.outHeight, info.outWidth, info.outChannels];
}

/** Zero-stuffed [kh',kw',…] copy of a [kh,kw,…] filter: a conv with dilation d equals a plain conv with it. */
function stuff(f: Float32Array, kh: number, kw: number, inner: number, d: number): [Float32Array, number, number] {
  const khd = (kh - 1) * d + 1;
  const kwd = (kw - 1) * d + 1;
  const out = new Float32Array(khd * kwd * inner);
  for (let a = 0; a < kh; a++) for (let b = 0; b < kw; b++) for (let k = 0; k < inner; k++) {
    out[(a * d * kwd + b * d) * inner + k] = f[(a * kw + b) * inner + k]!;
  }
  return [out, khd, kwd];
}

/** Inverse of stuff(): the taps of a stuffed-filter gradient that belong to the real filter. */
function unstuff(g: Float32Array, kh: number, kw: number, inner: number, d: number): Float32Array {
  const kwd = (kw - 1) * d + 1;
  const out = new Float32Array(kh * kw * inner);
  for (let a = 0; a < kh; a++) for (let b = 0; b < kw; b++) for (let k = 0; k < inner; k++) {
    out[(a * kw + b) * inner + k] = g[(a * d * kwd + b * d) * inner + k]!;
  }
  return out;
}

const padName = (p: Pad) => (typeof p === 'string' ? p : 'explicit');

beforeAll(async () => {
  await initBackend('cpu');
  await initBackend('wasm');
  registerWasmKernels(); // idempotent: a second call must not re-register or throw
});
afterAll(() => {
  console.log(`kernels.test: largest relative error vs reference ${worst.toExponential(2)}`);
});

describe('wasm gradient kernels match the cpu backend', () => {
  it('Conv2DBackpropFilter and Conv2DBackpropInput (strides 1, 2; same, valid, explicit)', async () => {
    for (const c of cases()) {
      const xs: S4 = [c.n, c.h, c.w, c.ci];
      const fs: S4 = [c.kh, c.kw, c.ci, c.co];
      const ys = outShape(c);
      const x = randArray(xs.reduce((a, b) => a * b));
      const f = randArray(fs.reduce((a, b) => a * b));
      const dy = randArray(ys.reduce((a, b) => a * b));
      const common = { strides: c.s, pad: c.pad, dataFormat: 'NHWC' };
      const kf = kernel('Conv2DBackpropFilter', { x: [x, xs], dy: [dy, ys] }, { ...common, filterShape: fs } as unknown as tf.NamedAttrMap);
      const ki = kernel('Conv2DBackpropInput', { dy: [dy, ys], filter: [f, fs] }, { ...common, inputShape: xs } as unknown as tf.NamedAttrMap);
      const label = `${JSON.stringify(xs)} k${c.kh}x${c.kw} co${c.co} s${c.s} ${padName(c.pad)}`;
      expect(relErr(await on('wasm', kf), await on('cpu', kf)), `filter ${label}`).toBeLessThan(1e-5);
      expect(relErr(await on('wasm', ki), await on('cpu', ki)), `input ${label}`).toBeLessThan(1e-5);
    }
  });

  it('Conv2DBackpropInput with one input channel (the depthwise + channel-sum path) at dilations 1 and 2', async () => {
    for (const d of [1, 2]) {
      for (const pad of PADS) {
        const c: Case = { n: 2, h: randInt(7, 9), w: randInt(7, 9), ci: 1, co: randInt(1, 17), kh: 3, kw: randInt(2, 3), s: 1, pad };
        const xs: S4 = [c.n, c.h, c.w, 1];
        const f = randArray(c.kh * c.kw * c.co);
        const [fd, khd, kwd] = stuff(f, c.kh, c.kw, c.co, d);
        const ys = outShape(c, d);
        const dy = randArray(ys.reduce((a, b) => a * b));
        // reference: cpu's kernel with the zero-stuffed filter (dilation d = a plain conv with it)
        const ref = await on('cpu', () => tf.engine().runKernel('Conv2DBackpropInput', { dy: tf.tensor4d(dy, ys), filter: tf.tensor4d(fd, [khd, kwd, 1, c.co]) }, { inputShape: xs, strides: 1, pad, dataFormat: 'NHWC' } as unknown as tf.NamedAttrMap) as tf.Tensor);
        const got = await on('wasm', () => conv2dInputGrad(tf.tensor4d(dy, ys), tf.tensor4d(f, [c.kh, c.kw, 1, c.co]), xs, 1, pad, d));
        expect(relErr(got, ref), `ci 1 co ${c.co} k3x${c.kw} dilation ${d} ${padName(pad)}`).toBeLessThan(1e-5);
      }
    }
  });

  it('conv2d gradients with dilation 2 (against the cpu gradient of the zero-stuffed filter)', async () => {
    for (const pad of PADS) {
      const c: Case = { n: 2, h: randInt(7, 9), w: randInt(7, 9), ci: randInt(1, 3), co: randInt(2, 4), kh: 3, kw: 2, s: 1, pad };
      const d = 2;
      const xs: S4 = [c.n, c.h, c.w, c.ci];
      const fs: S4 = [c.kh, c.kw, c.ci, c.co];
      const ys = outShape(c, d);
      const x = randArray(xs.reduce((a, b) => a * b));
      const f = randArray(fs.reduce((a, b) => a * b));
      const dy = randArray(ys.reduce((a, b) => a * b));
      // Zero-stuffed filter: a dilated conv equals a plain conv with it.
      const khd = (c.kh - 1) * d + 1;
      const kwd = (c.kw - 1) * d + 1;
      const fd = new Float32Array(khd * kwd * c.ci * c.co);
      for (let a = 0; a < c.kh; a++) for (let b = 0; b < c.kw; b++) for (let k = 0; k < c.ci * c.co; k++) {
        fd[((a * d) * kwd + b * d) * c.ci * c.co + k] = f[(a * c.kw + b) * c.ci * c.co + k]!;
      }
      await initBackend('cpu');
      const [refDx, refDf] = tf.tidy(() => {
        const g = tf.grads((xx: tf.Tensor, ff: tf.Tensor) =>
          tf.sum(tf.mul(tf.conv2d(xx as tf.Tensor4D, ff as tf.Tensor4D, 1, pad), tf.tensor(dy, ys))));
        const [gx, gf] = g([tf.tensor(x, xs), tf.tensor(fd, [khd, kwd, c.ci, c.co])]);
        const gfv = gf!.dataSync();
        const sub = new Float32Array(f.length);
        for (let a = 0; a < c.kh; a++) for (let b = 0; b < c.kw; b++) for (let k = 0; k < c.ci * c.co; k++) {
          sub[(a * c.kw + b) * c.ci * c.co + k] = gfv[((a * d) * kwd + b * d) * c.ci * c.co + k]!;
        }
        return [gx!.dataSync() as Float32Array, sub];
      });
      await initBackend('wasm');
      const [dx, df] = tf.tidy(() => {
        const info = tf.backend_util.computeConv2DInfo(xs, fs, 1, d, pad);
        const gx = conv2dInputGrad(tf.tensor4d(dy, ys), tf.tensor4d(f, fs), xs, 1, pad, d);
        const gf = wasmConv2dFilterGrad(tf.tensor4d(x, xs), tf.tensor4d(dy, ys), info, tf.backend() as never);
        return [gx.dataSync() as Float32Array, gf.dataSync() as Float32Array];
      });
      expect(relErr(dx, refDx), `dx dilation 2 ${padName(pad)}`).toBeLessThan(1e-5);
      expect(relErr(df, refDf), `df dilation 2 ${padName(pad)}`).toBeLessThan(1e-5);
    }
  });

  it('DepthwiseConv2dNativeBackpropFilter / Input (strides, paddings, dilations, channel multiplier)', async () => {
    for (const dil of [1, 2]) {
      for (const c of cases()) {
        if (dil > 1 && c.s > 1) continue; // depthwise needs strides or dilations to be 1
        const cm = randInt(1, 2);
        const xs: S4 = [c.n, c.h + 2, c.w + 2, c.ci];
        const fs: S4 = [c.kh, c.kw, c.ci, cm];
        const cc = { ...c, h: c.h + 2, w: c.w + 2, co: cm };
        const ys = outShape(cc, dil, true);
        const x = randArray(xs.reduce((a, b) => a * b));
        const f = randArray(fs.reduce((a, b) => a * b));
        const dy = randArray(ys.reduce((a, b) => a * b));
        const common = { strides: c.s, pad: c.pad, dilations: dil };
        const kf = kernel('DepthwiseConv2dNativeBackpropFilter', { x: [x, xs], dy: [dy, ys] }, { ...common, filterShape: fs } as unknown as tf.NamedAttrMap);
        const ki = kernel('DepthwiseConv2dNativeBackpropInput', { dy: [dy, ys], filter: [f, fs] }, { ...common, inputShape: xs } as unknown as tf.NamedAttrMap);
        // The cpu depthwise backprop kernels ignore dilations (tfjs-core never asks for them), so
        // the reference for dilation 2 is the cpu gradient of the zero-stuffed filter.
        const [fd, khd, kwd] = stuff(f, c.kh, c.kw, c.ci * cm, dil);
        const fsd: S4 = [khd, kwd, c.ci, cm];
        const rf = kernel('DepthwiseConv2dNativeBackpropFilter', { x: [x, xs], dy: [dy, ys] }, { ...common, dilations: 1, filterShape: fsd } as unknown as tf.NamedAttrMap);
        const ri = kernel('DepthwiseConv2dNativeBackpropInput', { dy: [dy, ys], filter: [fd, fsd] }, { ...common, dilations: 1, inputShape: xs } as unknown as tf.NamedAttrMap);
        const refF = unstuff(await on('cpu', rf), c.kh, c.kw, c.ci * cm, dil);
        const refI = await on('cpu', ri);
        const label = `${JSON.stringify(xs)} k${c.kh}x${c.kw} cm${cm} s${c.s} d${dil} ${padName(c.pad)}`;
        expect(relErr(await on('wasm', kf), refF), `filter ${label}`).toBeLessThan(1e-5);
        expect(relErr(await on('wasm', ki), refI), `input ${label}`).toBeLessThan(1e-5);
      }
    }
  });

  it('MaxPoolGrad on random data (mixed signs) and on all-negative windows', async () => {
    for (const [size, s, pad] of [[2, 2, 'valid'], [3, 2, 'same'], [3, 1, 'same'], [2, 1, 'valid']] as const) {
      const xs: S4 = [2, randInt(5, 8), randInt(5, 8), 3];
      const x = randArray(xs.reduce((a, b) => a * b));
      const grad = (xv: Float32Array) => () =>
        tf.tidy(() => {
          const info = tf.backend_util.computePool2DInfo(xs, size, s, 1, pad);
          const r = tf.tensor(randArrayFixed(xs, size, s, pad), [xs[0], info.outHeight, info.outWidth, xs[3]]);
          return tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.maxPool(t as tf.Tensor4D, size, s, pad), r)))(tf.tensor(xv, xs));
        });
      expect(relErr(await on('wasm', grad(x)), await on('cpu', grad(x))), `maxPool ${size} s${s} ${pad}`).toBeLessThan(1e-6);
      const neg = x.map((v) => -Math.abs(v) - 0.01);
      expect(relErr(await on('wasm', grad(neg)), await on('cpu', grad(neg))), `all-negative maxPool ${size} s${s} ${pad}`).toBeLessThan(1e-6);
    }
    // The SIMD pass (4 channels at a time + a scalar tail) against the JS walk (bit for bit) and
    // cpu: channel counts around the lane width, ties (first maximum wins), padding, overlap, −Inf.
    for (const [size, s, pad] of [[2, 2, 'valid'], [3, 2, 'same'], [3, 1, 'same'], [2, 1, 'valid'], [3, 3, 'same']] as const) {
      for (const c of [1, 4, 6, 9]) {
        const xs: S4 = [2, randInt(5, 8), randInt(5, 8), c];
        const info = tf.backend_util.computePool2DInfo(xs, size, s, 1, pad);
        const ys: S4 = [xs[0], info.outHeight, info.outWidth, c];
        const x = randArray(xs.reduce((a, b) => a * b)).map((v, i) => (i % 17 === 0 ? -Infinity : Math.round(v * 2) / 2)); // ties
        const dy = randArray(ys.reduce((a, b) => a * b));
        const kernelGrad = () => tf.engine().runKernel('MaxPoolGrad', { dy: tf.tensor(dy, ys), input: tf.tensor(x, xs), output: tf.maxPool(tf.tensor4d(x, xs), size, s, pad) }, { filterSize: size, strides: s, pad } as unknown as tf.NamedAttrMap) as tf.Tensor;
        const simd = await on('wasm', kernelGrad);
        useSimdKernels(false);
        const js = await on('wasm', kernelGrad);
        useSimdKernels(true);
        const label = `maxPool ${size} s${s} ${pad} C=${c}`;
        expect(Array.from(simd), label).toEqual(Array.from(js));
        expect(relErr(simd, await on('cpu', kernelGrad)), label).toBeLessThan(1e-6);
      }
    }
    // The research note's case: x = −[0.1 … 0.4] per 2×2 window, dy = 10, 20, 30, 40.
    const x = new Float32Array(16);
    for (let i = 0; i < 4; i++) for (let j = 0; j < 4; j++) x[i * 4 + j] = -0.1 * (1 + ((i % 2) * 2 + (j % 2)));
    const g = await on('wasm', () =>
      tf.tidy(() => tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.maxPool(t as tf.Tensor4D, 2, 2, 'valid'), tf.tensor([10, 20, 30, 40], [1, 2, 2, 1]))))(tf.tensor(x, [1, 4, 4, 1]))));
    expect(Array.from(g)).toEqual([10, 0, 20, 0, 0, 0, 0, 0, 30, 0, 40, 0, 0, 0, 0, 0]);
  });
});

describe('MaxPoolWithArgmax on wasm (the switches of the explicit deconvnet)', () => {
  it('matches cpu on mixed-sign, all-negative and all-zero windows, with and without the batch in the index', async () => {
    for (const [size, s, pad] of [[2, 2, 'valid'], [3, 2, 'same'], [2, 1, 'valid']] as const) {
      const xs: S4 = [2, randInt(5, 8), randInt(5, 8), 3];
      const mixed = randArray(xs.reduce((a, b) => a * b));
      const negative = mixed.map((v) => -Math.abs(v) - 0.01);
      // Ties of distinct values are impossible here except in the zero case, where every
      // backend must pick the first element of the window (cpu's rule).
      const zeros = new Float32Array(mixed.length);
      for (const x of [mixed, negative, zeros]) {
        for (const batchInIndex of [false, true]) {
          const run = (which: 'result' | 'indexes') => () => tf.tidy(() => tf.maxPoolWithArgmax(tf.tensor4d(x, xs), size, s, pad, batchInIndex)[which]);
          const what = `${size} s${s} ${pad} batchInIndex=${batchInIndex} ${x === mixed ? 'mixed' : x === negative ? 'negative' : 'zeros'}`;
          expect(Array.from(await on('wasm', run('indexes'))), `indexes ${what}`).toEqual(Array.from(await on('cpu', run('indexes'))));
          expect(Array.from(await on('wasm', run('result'))), `values ${what}`).toEqual(Array.from(await on('cpu', run('result'))));
        }
      }
    }
  });
});

/** Fixed upstream gradient for a pooling case (depends only on the output shape). */
function randArrayFixed(xs: S4, size: number, s: number, pad: 'same' | 'valid'): Float32Array {
  const info = tf.backend_util.computePool2DInfo(xs, size, s, 1, pad);
  const r = new Rng(size * 10 + s);
  return Float32Array.from({ length: xs[0] * info.outHeight * info.outWidth * xs[3] }, () => r.normal()).slice() as Float32Array;
}

describe('gradients on wasm', () => {
  it('agree with central finite differences (strided conv → maxPool → weighted sum)', async () => {
    await initBackend('wasm');
    const xs: S4 = [2, 7, 6, 2];
    const fs: S4 = [3, 3, 2, 3];
    const x = tf.tensor4d(randArray(2 * 7 * 6 * 2), xs);
    const w0 = randArray(3 * 3 * 2 * 3);
    const loss = (w: tf.Tensor) =>
      tf.tidy(() => {
        const y = tf.maxPool(tf.conv2d(x, w as tf.Tensor4D, 2, 'same'), 2, 1, 'same');
        return tf.sum(tf.mul(y, tf.reshape(tf.linspace(-1, 1, y.size), y.shape)));
      });
    const g = tf.tidy(() => tf.grad(loss)(tf.tensor4d(w0, fs)).dataSync());
    const eps = 2e-3; // small enough that no pooling window switches its maximum
    for (const k of [0, 5, 17, 33, 53]) {
      const wp = w0.slice();
      const wm = w0.slice();
      wp[k] += eps;
      wm[k] -= eps;
      const lp = tf.tidy(() => loss(tf.tensor4d(wp, fs)).dataSync()[0]!);
      const lm = tf.tidy(() => loss(tf.tensor4d(wm, fs)).dataSync()[0]!);
      const fd = (lp - lm) / (2 * eps);
      expect(Math.abs(fd - g[k]!), `dL/dw[${k}]: fd ${fd} vs ${g[k]}`).toBeLessThan(2e-3 * Math.max(1, Math.abs(fd)));
    }
    x.dispose();
  });

  it('trains a tfjs-layers conv net (fused ReLU conv, maxPool, GAP) with the same gradients as cpu, without leaking tensors', async () => {
    const build = () => {
      const m = tfl.sequential();
      m.add(tfl.layers.conv2d({ inputShape: [8, 8, 1], filters: 4, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: tfl.initializers.glorotUniform({ seed: 1 }) }));
      m.add(tfl.layers.maxPooling2d({ poolSize: 2 }));
      m.add(tfl.layers.conv2d({ filters: 6, kernelSize: 3, strides: 2, padding: 'same', kernelInitializer: tfl.initializers.glorotUniform({ seed: 2 }) }));
      m.add(tfl.layers.globalAveragePooling2d({}));
      m.add(tfl.layers.dense({ units: 3, kernelInitializer: tfl.initializers.glorotUniform({ seed: 3 }) }));
      return m;
    };
    const xv = randArray(4 * 64);
    const grads = async (backend: 'cpu' | 'wasm') => {
      await initBackend(backend);
      const m = build();
      const x = tf.tensor4d(xv, [4, 8, 8, 1]);
      const before = tf.memory().numTensors;
      const out: number[] = [];
      for (let rep = 0; rep < 2; rep++) {
        const { value, grads: g } = tf.variableGrads(() => tf.sum(tf.square(m.apply(x) as tf.Tensor)) as tf.Scalar);
        for (const v of m.trainableWeights) {
          const gv = g[(v.read() as tf.Variable).name];
          expect(gv, v.name).toBeDefined();
          out.push(...gv!.dataSync());
        }
        tf.dispose([value, ...Object.values(g)]);
      }
      expect(tf.memory().numTensors, `${backend} tensors`).toBe(before);
      m.compile({ optimizer: tf.train.sgd(0.01), loss: 'meanSquaredError' });
      const h = await m.fit(x, tf.zeros([4, 3]), { epochs: 2, batchSize: 2, shuffle: false, verbose: 0 });
      expect(Number.isFinite(h.history.loss![1] as number)).toBe(true);
      x.dispose();
      m.dispose();
      return Float32Array.from(out);
    };
    const c = await grads('cpu');
    const w = await grads('wasm');
    expect(w.length).toBeGreaterThan(0);
    expect(relErr(w, c)).toBeLessThan(1e-5);
  });

  it('leaves the tensor count unchanged across kernel calls', async () => {
    await initBackend('wasm');
    const x = tf.randomNormal([2, 9, 9, 3]) as tf.Tensor4D;
    const w = tf.randomNormal([3, 3, 3, 4]) as tf.Tensor4D;
    const dw = tf.randomNormal([3, 3, 3, 2]) as tf.Tensor4D;
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      tf.tidy(() => {
        tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.maxPool(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 2, 'same'), 2, 2, 'same')))([x, w]);
        tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.depthwiseConv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, 'same')))([x, dw]);
      });
      const g = tf.grad((a: tf.Tensor) => tf.sum(tf.conv2d(a as tf.Tensor4D, w, 1, 'valid')))(x);
      g.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, w, dw]);
  });
});

/** ⟨a, b⟩ in float64. */
function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

/**
 * For an affine op y = A·x + c, the gradient of ⟨y, r⟩ is Aᵀ·r, so ⟨A·x', r⟩ = ⟨x', grad⟩ for every x'
 * (A·x' = y(x') − y(0); c is cropAndResize's extrapolation value outside the image).
 * Checked for three random x' against the backend's own forward op: a wrong gradient (a wrong
 * batch offset, swapped H/W, ignored half-pixel centres) breaks the identity.
 */
async function expectAdjoint(
  backend: 'cpu' | 'wasm', label: string, xShape: number[], forward: (x: tf.Tensor) => tf.Tensor,
): Promise<void> {
  await initBackend(backend);
  const before = tf.memory().numTensors;
  const x0 = randArray(xShape.reduce((a, b) => a * b));
  const yShape = tf.tidy(() => forward(tf.tensor(x0, xShape)).shape);
  const r = randArray(yShape.reduce((a, b) => a * b));
  const g = tf.tidy(() => tf.grad((x: tf.Tensor) => tf.sum(tf.mul(forward(x), tf.tensor(r, yShape))))(tf.tensor(x0, xShape)).dataSync());
  const c = tf.tidy(() => forward(tf.zeros(xShape)).dataSync());
  expect(g.length, `${label} gradient shape`).toBe(x0.length);
  for (let t = 0; t < 3; t++) {
    const xt = randArray(x0.length);
    const y = tf.tidy(() => forward(tf.tensor(xt, xShape)).dataSync()).map((v, i) => v - c[i]!);
    const lhs = dot(y, r);
    const rhs = dot(xt, g);
    const e = Math.abs(lhs - rhs) / Math.max(Math.sqrt(dot(y, y) * dot(r, r)), 1e-30);
    worst = Math.max(worst, e);
    expect(e, `${backend} ${label}: <Ax, r> ${lhs} vs <x, grad> ${rhs}`).toBeLessThan(1e-5);
  }
  expect(tf.memory().numTensors, `${backend} ${label} tensors`).toBe(before);
}

describe('gradient gaps (StridedSlice, gather on wasm, resize on cpu, cropAndResize)', () => {
  it('StridedSlice: the gradient puts dy exactly at the sliced positions (masks, negative strides, shrink/new axes), cpu and wasm', async () => {
    type Spec = { shape: number[]; begin: number[]; end: number[]; strides: number[]; masks?: [number, number, number, number, number] };
    const specs: Spec[] = [
      { shape: [2, 7, 6, 3], begin: [0, 1, 0, 0], end: [2, 7, 6, 3], strides: [1, 2, 3, 1] },
      { shape: [3, 8, 5], begin: [2, -1, 4], end: [0, 0, 0], strides: [-1, -3, -2], masks: [0, 0, 0, 0, 0] },
      { shape: [4, 6, 5], begin: [1, 0, 2], end: [3, 0, 5], strides: [1, 2, 1], masks: [2, 2, 0, 0, 0] },
      // shrink axis 0 (with strides ≠ 1 elsewhere tfjs's own cpu forward reads out of range, a separate bug)
      { shape: [3, 5, 4], begin: [1, 1, 0], end: [2, 4, 4], strides: [1, 1, 1], masks: [0, 0, 0, 0, 1] },
      { shape: [5, 4], begin: [0, 0, 1], end: [5, 1, 4], strides: [2, 1, 1], masks: [0, 0, 0, 2, 0] }, // new axis 1
    ];
    for (const backend of ['cpu', 'wasm'] as const) {
      await initBackend(backend);
      for (const s of specs) {
        const [bm, em, ell, nm, sm] = s.masks ?? [0, 0, 0, 0, 0];
        const x = randArray(s.shape.reduce((a, b) => a * b));
        const slice = (t: tf.Tensor) => tf.stridedSlice(t, s.begin, s.end, s.strides, bm, em, ell, nm, sm);
        const before = tf.memory().numTensors;
        const [r, back, g] = tf.tidy(() => {
          const y = slice(tf.tensor(x, s.shape));
          const rr = tf.tensor(randArray(y.size), y.shape);
          const gg = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(slice(t), rr)))(tf.tensor(x, s.shape));
          // Slicing the gradient must give r back, and all of the gradient's mass must lie there.
          return [rr.dataSync(), slice(gg).dataSync(), gg.dataSync()];
        });
        expect(tf.memory().numTensors).toBe(before);
        const label = `${backend} ${JSON.stringify(s)}`;
        expect(Array.from(back), label).toEqual(Array.from(r));
        expect(dot(g, g), label).toBeCloseTo(dot(r, r), 4);
      }
    }
  });

  it('gather: gradient on wasm (UnsortedSegmentSum kernel) equals cpu, repeated indices, axes 0 and 1', async () => {
    for (const axis of [0, 1]) {
      const shape = [5, 4, 3];
      const x = randArray(60);
      const idx = [3, 0, 3, 1, 3, 2].slice(0, axis === 0 ? 6 : 5).map((i) => i % shape[axis]!);
      const f = () => tf.tidy(() =>
        tf.grad((t: tf.Tensor) => {
          const y = tf.gather(t, tf.tensor1d(idx, 'int32'), axis);
          return tf.sum(tf.mul(y, tf.reshape(tf.sin(tf.range(0, y.size)), y.shape)));
        })(tf.tensor(x, shape)));
      expect(relErr(await on('wasm', f), await on('cpu', f)), `gather axis ${axis}`).toBeLessThan(1e-6);
    }
    // The kernel itself, 2-D segment ids and an int32 input.
    const seg = () => tf.tidy(() => tf.cast(tf.engine().runKernel('UnsortedSegmentSum',
      { x: tf.tensor([1, 2, 3, 4, 5, 6, 7, 8], [4, 2], 'int32'), segmentIds: tf.tensor1d([2, 0, 2, 1], 'int32') }, { numSegments: 4 }) as tf.Tensor, 'float32'));
    expect(Array.from(await on('wasm', seg))).toEqual([3, 4, 7, 8, 6, 8, 0, 0]);
  });

  it('resizeBilinear and resizeNearestNeighbor gradients: H ≠ W, batch 3, every corner/half-pixel setting, cpu and wasm', async () => {
    const settings: [boolean, boolean][] = [[false, false], [true, false], [false, true]];
    for (const backend of ['cpu', 'wasm'] as const) {
      for (const [ac, hp] of settings) {
        for (const [inHW, outHW] of [[[5, 7], [9, 4]], [[6, 4], [12, 8]], [[7, 3], [3, 5]]] as const) {
          const xs = [3, inHW[0], inHW[1], 2];
          const size: [number, number] = [outHW[0], outHW[1]];
          const label = `${JSON.stringify(xs)} → ${size} alignCorners=${ac} halfPixel=${hp}`;
          await expectAdjoint(backend, `bilinear ${label}`, xs, (x) => tf.image.resizeBilinear(x as tf.Tensor4D, size, ac, hp));
          await expectAdjoint(backend, `nearest ${label}`, xs, (x) => tf.image.resizeNearestNeighbor(x as tf.Tensor4D, size, ac, hp));
        }
      }
    }
  });

  it('cropAndResize gradient w.r.t. the image (bilinear and nearest, boxes partly outside, crop 1×1), cpu and wasm', async () => {
    // No coordinate lands on an exact .5 'nearest' tie, where wasm's float32 forward and cpu's
    // float64 one can pick different pixels (see extra-grads.ts).
    const boxes = [0.11, 0.23, 0.81, 0.94, -0.21, 0.03, 0.62, 1.31, 0.52, 0.47, 0.52, 0.47, 0.93, 0.71, 0.22, 0.13];
    const boxInd = [0, 1, 1, 0];
    for (const backend of ['cpu', 'wasm'] as const) {
      for (const method of ['bilinear', 'nearest'] as const) {
        for (const crop of [[5, 4], [1, 1], [3, 6]] as [number, number][]) {
          const f = (x: tf.Tensor) => tf.image.cropAndResize(x as tf.Tensor4D, tf.tensor2d(boxes, [4, 4]), tf.tensor1d(boxInd, 'int32'), crop, method, 0.5);
          await expectAdjoint(backend, `cropAndResize ${method} ${crop}`, [2, 6, 9, 3], f);
        }
      }
    }
  });
});

describe('Transpose and transposed BatchMatMul on wasm (tiled copy in the heap)', () => {
  it('Transpose of the last two axes equals cpu bit for bit (float32 with NaN/−0, int32, ranks 2–4, odd sizes); other perms too', async () => {
    const shapes = [[1, 1], [3, 17], [9, 8], [2, 13, 9], [1, 4096, 96], [2, 3, 5, 7], [2, 0, 3]];
    for (const shape of shapes) {
      const n = shape.reduce((a, b) => a * b, 1);
      const r = shape.length;
      const perm = [...Array.from({ length: r - 2 }, (_, i) => i), r - 1, r - 2];
      const f = randArray(n).map((v, i) => (i % 11 === 0 ? NaN : i % 13 === 0 ? -0 : v));
      const bits = (a: Float32Array) => Array.from(new Uint32Array(a.slice().buffer));
      const tr = () => tf.transpose(tf.tensor(f, shape), perm);
      expect(bits(await on('wasm', tr)), `float32 ${JSON.stringify(shape)}`).toEqual(bits(await on('cpu', tr)));
      const ints = Int32Array.from({ length: n }, (_, i) => i * 7919 - 3);
      const trInt = async (backend: 'cpu' | 'wasm') => {
        await initBackend(backend);
        return Array.from(tf.tidy(() => tf.transpose(tf.tensor(ints, shape, 'int32'), perm).dataSync()));
      };
      expect(await trInt('wasm'), `int32 ${JSON.stringify(shape)}`).toEqual(await trInt('cpu'));
    }
    // a permutation that is not a swap of the last two axes still goes to wasm's own kernel
    const x = randArray(2 * 3 * 4);
    const other = () => tf.transpose(tf.tensor(x, [2, 3, 4]), [2, 0, 1]);
    expect(Array.from(await on('wasm', other))).toEqual(Array.from(await on('cpu', other)));
  });

  it('matMul with transposeA/transposeB (and their gradients) matches cpu; no buffers leak', async () => {
    for (const [m, k, n, batchA, batchB] of [[5, 7, 3, 1, 1], [33, 17, 9, 2, 2], [96, 4096, 96, 1, 1], [4, 6, 8, 3, 1], [1, 1, 1, 1, 1]]) {
      for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]] as const) {
        const aShape = ta ? [batchA, k, m] : [batchA, m, k];
        const bShape = tb ? [batchB, n, k] : [batchB, k, n];
        const a = randArray(aShape.reduce((p, q) => p * q, 1));
        const b = randArray(bShape.reduce((p, q) => p * q, 1));
        const mm = () => tf.matMul(tf.tensor3d(a, aShape as [number, number, number]), tf.tensor3d(b, bShape as [number, number, number]), ta, tb);
        const label = `[${batchA}|${batchB}] ${m}×${k}×${n} tA ${ta} tB ${tb}`;
        expect(relErr(await on('wasm', mm), await on('cpu', mm)), label).toBeLessThan(1e-5);
      }
    }
    // the Gram-matrix gradient that motivated it: d Σ (FᵀF ⊙ R) / dF
    const f = randArray(64 * 24);
    const r = randArray(24 * 24);
    const g = () => tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.matMul(t as tf.Tensor2D, t as tf.Tensor2D, true, false), tf.tensor2d(r, [24, 24]))))(tf.tensor2d(f, [64, 24]));
    expect(relErr(await on('wasm', g), await on('cpu', g))).toBeLessThan(1e-5);
    await initBackend('wasm');
    const once = () => tf.tidy(() => void g());
    once();
    const ids = tf.backend().numDataIds();
    const tensors = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) once();
    expect(tf.backend().numDataIds()).toBe(ids);
    expect(tf.memory().numTensors).toBe(tensors);
  });
});

describe('Slice on wasm (contiguous runs copied heap to heap)', () => {
  it('equals cpu for ranks 1–5, random begin/size (−1 = to the end), float32, int32 and bool, empty slices', async () => {
    const rng = new Rng(41);
    const cases: Array<{ shape: number[]; begin: number[]; size: number[] }> = [];
    for (let i = 0; i < 40; i++) {
      const rank = 1 + (i % 5);
      const shape = Array.from({ length: rank }, () => 1 + rng.int(6));
      const begin = shape.map((d) => rng.int(d));
      const size = shape.map((d, k) => (rng.int(4) === 0 ? -1 : rng.int(4) === 0 ? d - begin[k]! : rng.int(d - begin[k]! + 1)));
      cases.push({ shape, begin, size });
    }
    cases.push({ shape: [2, 129, 129, 3], begin: [0, 0, 0, 0], size: [2, 128, 128, 3] }, { shape: [4, 5], begin: [1, 0], size: [0, 5] });
    for (const { shape, begin, size } of cases) {
      const n = shape.reduce((p, q) => p * q, 1);
      const values = Float32Array.from({ length: n }, (_, i) => i * 0.5 - 7);
      for (const dtype of ['float32', 'int32', 'bool'] as const) {
        const run = async (backend: 'cpu' | 'wasm') => {
          await initBackend(backend);
          return tf.tidy(() => {
            const t = tf.tensor(dtype === 'bool' ? values.map((v) => (v > 0 ? 1 : 0)) : values, shape, dtype);
            const y = tf.slice(t, begin, size);
            return { shape: y.shape, data: Array.from(y.dataSync()) };
          });
        };
        expect(await run('wasm'), `${dtype} ${JSON.stringify({ shape, begin, size })}`).toEqual(await run('cpu'));
      }
    }
  });
});

describe('FusedBatchNorm forward on wasm (one SIMD pass x·s + t)', () => {
  it('matches cpu for channel counts around the lane width, without offset or scale, and falls back for scalar parameters', async () => {
    for (const c of [1, 3, 4, 5, 16, 17]) {
      const xs = [2, 3, 5, c];
      const x = randArray(xs.reduce((a, b) => a * b));
      const mean = randArray(c);
      const variance = randArray(c).map((v) => 0.05 + Math.abs(v));
      const offset = randArray(c);
      const scale = randArray(c);
      for (const [withOffset, withScale] of [[true, true], [false, true], [true, false], [false, false]]) {
        const bn = () => tf.batchNorm(tf.tensor4d(x, xs as S4), tf.tensor1d(mean), tf.tensor1d(variance),
          withOffset ? tf.tensor1d(offset) : undefined, withScale ? tf.tensor1d(scale) : undefined, 1e-3);
        const label = `C=${c} offset ${withOffset} scale ${withScale}`;
        expect(relErr(await on('wasm', bn), await on('cpu', bn)), label).toBeLessThan(1e-6);
      }
    }
    // scalar mean/variance: not per-channel vectors, so wasm's own kernel runs
    const x = randArray(2 * 3 * 4 * 5);
    const scalarBn = () => tf.batchNorm(tf.tensor4d(x, [2, 3, 4, 5]), tf.scalar(0.3), tf.scalar(2), tf.scalar(-1), tf.scalar(0.5), 1e-3);
    expect(relErr(await on('wasm', scalarBn), await on('cpu', scalarBn))).toBeLessThan(1e-6);
    // and the temporary per-channel buffer (allocated in the backend, not the engine) is freed
    await initBackend('wasm');
    const run = () => tf.tidy(() => tf.batchNorm(tf.ones([1, 2, 2, 8]), tf.zeros([8]), tf.ones([8]), tf.zeros([8]), tf.ones([8])).dataSync());
    run();
    const before = tf.backend().numDataIds();
    for (let i = 0; i < 5; i++) run();
    expect(tf.backend().numDataIds()).toBe(before);
  });
});

describe('FusedBatchNorm gradient (broadcasting instead of tile)', () => {
  it('matches central finite differences for x, mean, variance, scale and offset, on cpu and wasm', async () => {
    const xs = [2, 3, 4, 5];
    const x0 = randArray(120);
    const m0 = randArray(5);
    const v0 = randArray(5).map((v) => 0.5 + Math.abs(v));
    const o0 = randArray(5);
    const s0 = randArray(5);
    const r = randArray(120);
    const loss = (x: tf.Tensor, m: tf.Tensor, v: tf.Tensor, o: tf.Tensor, s: tf.Tensor) =>
      tf.sum(tf.mul(tf.batchNorm(x as tf.Tensor4D, m as tf.Tensor1D, v as tf.Tensor1D, o as tf.Tensor1D, s as tf.Tensor1D, 1e-3), tf.tensor(r, xs))) as tf.Scalar;
    const args = [x0, m0, v0, o0, s0];
    const shapes = [xs, [5], [5], [5], [5]];
    for (const backend of ['cpu', 'wasm'] as const) {
      await initBackend(backend);
      const before = tf.memory().numTensors;
      const grads = tf.tidy(() => tf.grads(loss)(args.map((a, i) => tf.tensor(a, shapes[i]))).map((g) => g.dataSync()));
      const at = (vals: Float32Array[]) => tf.tidy(() => loss(...(vals.map((a, i) => tf.tensor(a, shapes[i])) as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor])).dataSync()[0]!);
      for (let which = 0; which < 5; which++) {
        for (const k of which === 0 ? [0, 37, 119] : [0, 3]) {
          const eps = 1e-2;
          const plus = args.map((a) => a.slice());
          const minus = args.map((a) => a.slice());
          plus[which]![k] += eps;
          minus[which]![k] -= eps;
          const fd = (at(plus) - at(minus)) / (2 * eps);
          const g = grads[which]![k]!;
          expect(Math.abs(fd - g), `${backend} input ${which} [${k}]: fd ${fd} vs ${g}`).toBeLessThan(2e-3 * Math.max(1, Math.abs(fd)));
        }
      }
      expect(tf.memory().numTensors).toBe(before);
    }
  });
});

describe('one-pass Relu/Relu6 gradients and zero-copy Identity on wasm', () => {
  it('relu and relu6 gradients are dy where 0 < x (≤ 6), else 0 (edges 0 and 6 included), on cpu and wasm', async () => {
    const x = [-2, 0, 1e-3, 3, 6, 6.5, -0.1, 10];
    const dy = [1, 2, 3, 4, 5, 6, 7, 8];
    for (const backend of ['cpu', 'wasm'] as const) {
      await initBackend(backend);
      const before = tf.memory().numTensors;
      const g = (f: (t: tf.Tensor) => tf.Tensor) => tf.tidy(() => Array.from(tf.grad((t: tf.Tensor) => tf.sum(tf.mul(f(t), tf.tensor(dy))))(tf.tensor(x)).dataSync()));
      expect(g(tf.relu), `${backend} relu`).toEqual([0, 0, 3, 4, 5, 6, 0, 8]);
      expect(g(tf.relu6), `${backend} relu6`).toEqual([0, 0, 3, 4, 5, 0, 0, 0]);
      // float32 neighbours of 0 and 6, and values where x − 6 is not exact
      const edges = [Math.fround(6 - 4.76837158203125e-7), 6, Math.fround(6 + 4.76837158203125e-7), 1e-45, -1e-45, 3, Math.fround(2.9999998), 12, Math.fround(12.000001), 1e30, -1e30];
      const ge = (f: (t: tf.Tensor) => tf.Tensor) => tf.tidy(() => Array.from(tf.grad((t: tf.Tensor) => tf.sum(tf.mul(f(t), tf.onesLike(t))))(tf.tensor(edges)).dataSync()));
      expect(ge(tf.relu6), `${backend} relu6 edges`).toEqual(edges.map((v) => (v > 0 && v <= 6 ? 1 : 0)));
      expect(ge(tf.relu), `${backend} relu edges`).toEqual(edges.map((v) => (v > 0 ? 1 : 0)));
      // random values around the edges against the definition
      const xr = Array.from({ length: 4096 }, (_, i) => Math.fround((i % 3 === 0 ? 6 : 0) + rng.normal() * (i % 2 ? 1e-3 : 4)));
      const dr = Array.from({ length: 4096 }, () => Math.fround(rng.normal()));
      const gr = (f: (t: tf.Tensor) => tf.Tensor) => tf.tidy(() => Array.from(tf.grad((t: tf.Tensor) => tf.sum(tf.mul(f(t), tf.tensor(dr))))(tf.tensor(xr)).dataSync()).map((v) => v + 0)); // dy·0 may be −0 on wasm: equal as numbers
      expect(gr(tf.relu6), `${backend} relu6 random`).toEqual(xr.map((v, i) => (v > 0 && v <= 6 ? dr[i]! : 0)));
      expect(gr(tf.relu), `${backend} relu random`).toEqual(xr.map((v, i) => (v > 0 ? dr[i]! : 0)));
      expect(tf.memory().numTensors).toBe(before);
    }
  });

  it('a clone on wasm keeps its values after the original is disposed', async () => {
    await initBackend('wasm');
    const a = tf.tensor([1, 2, 3]);
    const b = tf.clone(a);
    a.dispose();
    const c = tf.add(b, 1); // new allocations must not reuse b's memory
    expect(Array.from(b.dataSync())).toEqual([1, 2, 3]);
    expect(Array.from(c.dataSync())).toEqual([2, 3, 4]);
    tf.dispose([b, c]);
  });
});

describe('strided input gradients by stride phases', () => {
  it('conv2d and depthwise input gradients agree on cpu (ops fallback) and wasm (interleave kernel) with tfjs-backend-cpu, strides 2 and 3, odd sizes', async () => {
    for (const [s, k, h, pad] of [[2, 3, 9, 'same'], [3, 3, 10, 'valid'], [2, 1, 7, 'same'], [3, 5, 11, 'same'], [2, 4, 8, 'valid']] as const) {
      const n = 2, ci = 3, co = 4;
      const xs: S4 = [n, h, h + 1, ci];
      const info = tf.backend_util.computeConv2DInfo(xs, [k, k, ci, co], s, 1, pad);
      const ys: S4 = [n, info.outHeight, info.outWidth, co];
      const dy = randArray(ys.reduce((a, b) => a * b));
      const f = randArray(k * k * ci * co);
      const dinfo = tf.backend_util.computeConv2DInfo(xs, [k, k, ci, 1], s, 1, pad, undefined, true);
      const dys: S4 = [n, dinfo.outHeight, dinfo.outWidth, ci];
      const ddy = randArray(dys.reduce((a, b) => a * b));
      const df = randArray(k * k * ci);
      const ours = () => tf.tidy(() => tf.concat([
        tf.reshape(conv2dInputGrad(tf.tensor4d(dy, ys), tf.tensor4d(f, [k, k, ci, co]), xs, s, pad), [-1]),
        tf.reshape(depthwiseInputGrad(tf.tensor4d(ddy, dys), tf.tensor4d(df, [k, k, ci, 1]), xs, s, pad), [-1]),
      ]));
      const ref = () => tf.tidy(() => tf.concat([
        tf.reshape(tf.engine().runKernel('Conv2DBackpropInput', { dy: tf.tensor4d(dy, ys), filter: tf.tensor4d(f, [k, k, ci, co]) }, { inputShape: xs, strides: s, pad, dataFormat: 'NHWC' } as unknown as tf.NamedAttrMap) as tf.Tensor, [-1]),
        tf.reshape(tf.engine().runKernel('DepthwiseConv2dNativeBackpropInput', { dy: tf.tensor4d(ddy, dys), filter: tf.tensor4d(df, [k, k, ci, 1]) }, { inputShape: xs, strides: s, pad, dilations: 1 } as unknown as tf.NamedAttrMap) as tf.Tensor, [-1]),
      ]));
      const want = await on('cpu', ref);
      expect(relErr(await on('cpu', ours), want), `cpu s${s} k${k} h${h} ${pad}`).toBeLessThan(1e-5);
      expect(relErr(await on('wasm', ours), want), `wasm s${s} k${k} h${h} ${pad}`).toBeLessThan(1e-5);
    }
  });
});

describe('phaseInterleaveListInto', () => {
  it('gives the same result from separate arrays and from views on one heap (the wasm path), cropped to H×W', () => {
    for (const [sh, sw, h, w] of [[2, 2, 7, 8], [3, 2, 9, 5], [2, 3, 4, 9]] as const) {
      const n = 2, c = 3, qh = Math.ceil(h / sh), qw = Math.ceil(w / sw), size = n * qh * qw * c;
      const phases = Array.from({ length: sh * sw }, () => randArray(size));
      const want = new Float32Array(n * h * w * c);
      for (let b = 0; b < n; b++) for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let d = 0; d < c; d++) {
        const src = phases[(y % sh) * sw + (x % sw)]!;
        want[((b * h + y) * w + x) * c + d] = src[((b * qh + Math.floor(y / sh)) * qw + Math.floor(x / sw)) * c + d]!;
      }
      const separate = new Float32Array(want.length);
      phaseInterleaveListInto(separate, phases, [n, qh, qw, c], sh, sw, h, w);
      expect(Array.from(separate)).toEqual(Array.from(want));
      // one buffer, phases first and the output after them at an offset, as wasm heap views are
      const heap = new Float32Array(3 + phases.length * size + want.length);
      const views = phases.map((ph, i) => { const v = heap.subarray(3 + i * size, 3 + (i + 1) * size); v.set(ph); return v; });
      const out = heap.subarray(3 + phases.length * size);
      phaseInterleaveListInto(out, views, [n, qh, qw, c], sh, sw, h, w);
      expect(Array.from(out)).toEqual(Array.from(want));
    }
  });
});

describe('per-filter cache of derived filters (filter-cache.ts)', () => {
  it('reuses transposed/phase filters for the same filter data, recomputes for new data, frees them with the filter, leaks no tensors', async () => {
    await initBackend('wasm');
    const be = tf.backend();
    const tensorsBefore = tf.memory().numTensors;
    const idsBefore = be.numDataIds();
    // conv2d: 1×1 s1 (transposed), 3×3 s1 (flipped + transposed), 3×3 s2 (phases, k3 s3 valid); depthwise: s1 (flipped), s2 (phases)
    const convCases: Array<{ xs: S4; k: number; s: number; pad: Pad; depthwise: boolean }> = [
      { xs: [2, 7, 6, 5], k: 1, s: 1, pad: 'same', depthwise: false },
      { xs: [2, 7, 8, 3], k: 3, s: 1, pad: 'same', depthwise: false },
      { xs: [3, 9, 8, 4], k: 3, s: 2, pad: 'same', depthwise: false },
      { xs: [2, 10, 9, 3], k: 3, s: 3, pad: 'valid', depthwise: false },
      { xs: [2, 8, 7, 6], k: 3, s: 1, pad: 'same', depthwise: true },
      { xs: [2, 9, 10, 5], k: 3, s: 2, pad: 'same', depthwise: true },
      { xs: [2, 9, 10, 5], k: 3, s: 2, pad: [[0, 0], [1, 0], [2, 1], [0, 0]], depthwise: true },
    ];
    for (const c of convCases) {
      const co = c.depthwise ? 1 : randInt(2, 6);
      const fs: S4 = [c.k, c.k, c.xs[3], co];
      const info = tf.backend_util.computeConv2DInfo(c.xs, fs, c.s, 1, c.pad, undefined, c.depthwise);
      const ys: S4 = [c.xs[0], info.outHeight, info.outWidth, info.outChannels];
      const name = c.depthwise ? 'DepthwiseConv2dNativeBackpropInput' : 'Conv2DBackpropInput';
      const attrs = (c.depthwise ? { inputShape: c.xs, strides: c.s, pad: c.pad, dilations: 1 } : { inputShape: c.xs, strides: c.s, pad: c.pad, dataFormat: 'NHWC' }) as unknown as tf.NamedAttrMap;
      const label = `${name} ${JSON.stringify(c.xs)} k${c.k} s${c.s} ${padName(c.pad)}`;
      for (let round = 0; round < 2; round++) {
        // a new filter (new data) each round: the second round must not see the first one's cache
        const fv = randArray(fs.reduce((a, b) => a * b));
        const dyv = randArray(ys.reduce((a, b) => a * b));
        const ref = await on('cpu', kernel(name, { dy: [dyv, ys], filter: [fv, fs] }, attrs));
        await initBackend('wasm');
        const filter = tf.tensor4d(fv, fs);
        const dy = tf.tensor4d(dyv, ys);
        const run = () => {
          const g = tf.engine().runKernel(name, { dy, filter }, attrs) as tf.Tensor;
          const v = g.dataSync() as Float32Array;
          g.dispose();
          return v;
        };
        const first = run();
        expect(derivedFilterCount(filter), `${label}: cached after the first call`).toBeGreaterThan(0);
        const second = run(); // from the cache
        const viaClone = tf.tidy(() => {
          // a clone shares the data (Identity on wasm), as the gradient tape's saved filter does
          const g = tf.engine().runKernel(name, { dy, filter: tf.clone(filter) }, attrs) as tf.Tensor;
          return g.dataSync() as Float32Array;
        });
        expect(relErr(first, ref), `${label} round ${round} first`).toBeLessThan(1e-5);
        expect(relErr(second, ref), `${label} round ${round} cached`).toBeLessThan(1e-5);
        expect(relErr(viaClone, ref), `${label} round ${round} clone`).toBeLessThan(1e-5);
        useFilterCache(false);
        expect(relErr(run(), ref), `${label} round ${round} cache off`).toBeLessThan(1e-5);
        useFilterCache(true);
        filter.dispose();
        dy.dispose();
        expect(derivedFilterCount(filter), `${label}: freed with the filter`).toBe(0);
      }
    }
    await initBackend('wasm');
    expect(tf.memory().numTensors).toBe(tensorsBefore);
    expect(be.numDataIds(), 'backend buffers (cached filters freed with their filters)').toBe(idsBefore);
  });

  it('a gradient through a kept filter caches once and the tensor count stays flat over repeated gradients', async () => {
    await initBackend('wasm');
    const w1 = tf.randomNormal([1, 1, 6, 8]) as tf.Tensor4D;
    const dw = tf.randomNormal([3, 3, 8, 1]) as tf.Tensor4D;
    const w3 = tf.randomNormal([3, 3, 8, 4]) as tf.Tensor4D;
    const x = tf.randomNormal([2, 11, 10, 6]) as tf.Tensor4D;
    const f = (a: tf.Tensor) => tf.sum(tf.relu6(tf.conv2d(tf.depthwiseConv2d(tf.relu6(tf.conv2d(a as tf.Tensor4D, w1, 1, 'same')), dw, 2, 'same'), w3, 1, 'same')));
    const ref = await on('cpu', () => tf.grad(f)(x));
    await initBackend('wasm');
    tf.grad(f)(x).dispose(); // warm: fills the cache
    const ids = tf.backend().numDataIds();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      const g = tf.grad(f)(x);
      expect(relErr(g.dataSync(), ref)).toBeLessThan(1e-5);
      g.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
    expect(tf.backend().numDataIds()).toBe(ids);
    // 1×1: its transpose; stride-2 depthwise: 4 phase filters; 3×3: flipped + transposed
    const derived = derivedFilterCount(w1) + derivedFilterCount(dw) + derivedFilterCount(w3);
    expect(derived).toBe(6);
    tf.dispose([w1, dw, w3, x]);
    expect(tf.backend().numDataIds(), 'the four tensors and their derived filters freed').toBe(ids - 4 - derived);
  });
});
