/**
 * One image-optimisation loop for every `optimization` technique (after Lucid's optvis):
 *
 * - a **parameterisation** turns trainable variables into an image in [0, 1]: raw pixels, or a
 *   Fourier spectrum scaled by 1/f (so all frequencies start out equally "easy" to change), with
 *   decorrelated colour for RGB, squashed by a sigmoid into the valid range;
 * - seeded **transforms** (pad, jitter, scale, rotate) show the network a slightly different
 *   image at every step, so the result must work under all of them;
 * - an **objective**: a weighted sum of small terms (channel mean, class logit, feature match,
 *   Gram match, total variation, α-norm, L2 decay) over captured activations, minimised;
 * - **Adam**; optional projections between steps (blur for class models).
 *
 * Every op used has a gradient on cpu, wasm and webgpu: the Fourier basis and the affine
 * resampling are matrix products (tfjs has no FFT or Transform gradient, cropAndResize none,
 * gather none on wasm), jitter is a slice.
 */
import * as tf from '@tensorflow/tfjs-core';
import { toUint8Image, type Channels } from '../images';
import type { GraphExecutor } from '../model/graph';
import type { LoadedModel } from '../model/load';
import type { Rng } from '../rng';
import type { Preprocessing } from '../types';

export type Activations = Record<string, tf.Tensor>;

/** What the image feeds: x is NHWC in [0, 1]; returns the captured activations by name. */
export type Forward = (x: tf.Tensor4D, layers: string[]) => Activations;

/** One objective term: a scalar to MINIMISE (use a negative weight to maximise). */
export interface Term {
  label: string;
  weight: number;
  /** layers whose activations the term reads (captured in the forward pass). */
  layers: string[];
  /** `image` is the untransformed image in [0, 1] (for priors such as TV). */
  value(acts: Activations, image: tf.Tensor4D): tf.Scalar;
}

export interface Parameterization {
  kind: 'pixel' | 'fourier';
  /** Lucid's colour decorrelation (only with 3 channels). */
  decorrelate: boolean;
  /** std of the initial noise in the parameter space (Lucid: 0.01). */
  sd: number;
  /** spectrum scaling 1 / f^decayPower (Fourier only; Lucid: 1). */
  decayPower: number;
}

export interface Transforms {
  /** constant (mid-grey) padding on each side, px. */
  pad: number;
  /** random integer shift in [0, jitter) before scaling/rotation, px. */
  jitter: number;
  /** candidate scale factors, one drawn per step. */
  scales: number[];
  /** candidate rotation angles in degrees, one drawn per step. */
  angles: number[];
  /** second, smaller random shift after scaling/rotation, px. */
  jitter2: number;
}

export interface OptimizeOptions {
  /** images optimised together (independent: the loss is a sum over them). */
  batch: number;
  height: number;
  width: number;
  channels: number;
  param: Parameterization;
  /** null: the network sees the image exactly as parameterised. */
  transforms: Transforms | null;
  terms: Term[];
  forward: Forward;
  steps: number;
  /** Adam learning rate (Lucid: 0.05). */
  lr: number;
  rng: Rng;
  /** start image, NHWC in [0, 1] (e.g. the content image for style transfer); noise otherwise. */
  init?: Float32Array;
  /** every `every` steps, blur the pixel parameter with a 3×3 Gaussian (class models). Pixel only. */
  blur?: { every: number; sigma: number };
  /**
   * called with each step's loss, in order; the losses are read in batches of `lossReadEvery`
   * steps (reading waits for the device), so the calls come in bursts.
   */
  onStep?: (step: number, loss: number) => void;
  /** steps between reads of the queued loss scalars (default 10); the recorded losses are the same for any value. */
  lossReadEvery?: number;
}

export interface OptimizeResult {
  /** NHWC in [0, 1]. */
  images: Float32Array;
  shape: [number, number, number, number];
  /** total loss before each step (index 0 = at the start), then after the last step. */
  losses: number[];
  /** each term's (unweighted) value on the final image, untransformed. */
  finalTerms: Record<string, number>;
  seconds: number;
}

// ---------------------------------------------------------------- parameterisations

/** Lucid's square root of the ImageNet colour covariance (rows: R, G, B), normalised below. */
const COLOR_SQRT = [
  [0.26, 0.09, 0.02],
  [0.27, 0.0, -0.05],
  [0.27, -0.09, 0.03],
];
const COLOR_MAX_NORM = Math.max(...[0, 1, 2].map((j) => Math.hypot(COLOR_SQRT[0][j], COLOR_SQRT[1][j], COLOR_SQRT[2][j])));

interface ParamState {
  vars: tf.Variable[];
  /** builds the image in [0, 1] from the variables; call inside tidy. */
  image(): tf.Tensor4D;
  /** constants to free at the end. */
  constants: tf.Tensor[];
}

function noise(rng: Rng, n: number, sd: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.normal() * sd;
  return a;
}

/** logit(p), the inverse of the sigmoid, for initialising from a given image. */
function logit(values: Float32Array): Float32Array {
  return Float32Array.from(values, (v) => {
    const p = Math.min(0.999, Math.max(0.001, v));
    return Math.log(p / (1 - p));
  });
}

/** [n, c] → [n, c] colour mixing: decorrelated space → RGB (before the sigmoid). */
function colorMatrix(): tf.Tensor2D {
  // t_rgb = t · (M / maxNorm)ᵀ, as in Lucid's _linear_decorrelate_color
  const m = [0, 1, 2].map((i) => [0, 1, 2].map((j) => COLOR_SQRT[j][i] / COLOR_MAX_NORM));
  return tf.tensor2d(m);
}

/**
 * Real 2-D Fourier synthesis as matrix products: x = Cy·(A∘s)·Cxᵀ − Sy·(A∘s)·Sxᵀ + Sy·(B∘s)·Cxᵀ
 * + Cy·(B∘s)·Sxᵀ (cos/sin of 2π(uy/H + vx/W) expanded), u < H, v ≤ W/2, s = 1/f^decay.
 */
function fourierBasis(h: number, w: number, decay: number) {
  const wf = Math.floor(w / 2) + 1;
  const cy = new Float32Array(h * h);
  const sy = new Float32Array(h * h);
  for (let y = 0; y < h; y++) for (let u = 0; u < h; u++) {
    cy[y * h + u] = Math.cos((2 * Math.PI * u * y) / h);
    sy[y * h + u] = Math.sin((2 * Math.PI * u * y) / h);
  }
  const cxT = new Float32Array(wf * w);
  const sxT = new Float32Array(wf * w);
  for (let v = 0; v < wf; v++) for (let x = 0; x < w; x++) {
    cxT[v * w + x] = Math.cos((2 * Math.PI * v * x) / w);
    sxT[v * w + x] = Math.sin((2 * Math.PI * v * x) / w);
  }
  // Lucid: scale = 1 / max(f, 1/max(h, w))^decay · sqrt(hw); irfft divides by hw; image / 4
  const scale = new Float32Array(h * wf);
  for (let u = 0; u < h; u++) for (let v = 0; v < wf; v++) {
    const fy = Math.min(u, h - u) / h;
    const fx = v / w;
    const f = Math.max(Math.hypot(fx, fy), 1 / Math.max(h, w));
    scale[u * wf + v] = (1 / f ** decay) / (4 * Math.sqrt(h * w));
  }
  return {
    wf,
    cy: tf.tensor2d(cy, [h, h]),
    sy: tf.tensor2d(sy, [h, h]),
    cxT: tf.tensor2d(cxT, [wf, w]),
    sxT: tf.tensor2d(sxT, [wf, w]),
    scale: tf.tensor2d(scale, [h, wf]),
  };
}

/** tf.variable keeps its own reference: free the initial tensor. */
function variableOf(t: tf.Tensor): tf.Variable {
  const v = tf.variable(t, true);
  t.dispose();
  return v;
}

function makeParam(o: OptimizeOptions): ParamState {
  const { batch: b, height: h, width: w, channels: c, param, rng } = o;
  const decorrelate = param.decorrelate && c === 3;
  const constants: tf.Tensor[] = [];
  const color = decorrelate ? colorMatrix() : null;
  if (color) constants.push(color);
  // pre-sigmoid tensor [b, h, w, c] → image in [0, 1]
  const squash = (t: tf.Tensor4D): tf.Tensor4D => {
    const mixed = color ? (tf.reshape(tf.matMul(tf.reshape(t, [-1, 3]), color), [b, h, w, c]) as tf.Tensor4D) : t;
    return tf.sigmoid(mixed);
  };

  if (param.kind === 'pixel') {
    let start = noise(rng, b * h * w * c, param.sd);
    if (o.init) {
      if (decorrelate) throw new Error('optimizeImage: init with decorrelated pixels is not supported; use decorrelate: false');
      const l = logit(o.init);
      start = Float32Array.from(l, (v, i) => v + start[i]);
    }
    const v = variableOf(tf.tensor4d(start, [b, h, w, c]));
    return { vars: [v], constants, image: () => squash(v as unknown as tf.Tensor4D) };
  }

  if (o.init) throw new Error('optimizeImage: init is only supported with the pixel parameterisation');
  const basis = fourierBasis(h, w, param.decayPower);
  constants.push(basis.cy, basis.sy, basis.cxT, basis.sxT, basis.scale);
  const n = b * c;
  const a = variableOf(tf.tensor3d(noise(rng, n * h * basis.wf, param.sd), [n, h, basis.wf]));
  const bb = variableOf(tf.tensor3d(noise(rng, n * h * basis.wf, param.sd), [n, h, basis.wf]));
  const image = (): tf.Tensor4D => {
    const as = tf.reshape(tf.mul(a, basis.scale), [n * h, basis.wf]);
    const bs = tf.reshape(tf.mul(bb, basis.scale), [n * h, basis.wf]);
    // right products, then bring y to the front for the left products
    const left = (m: tf.Tensor2D) => tf.reshape(tf.transpose(tf.reshape(m, [n, h, w]), [1, 0, 2]), [h, n * w]);
    const p14 = left(tf.add(tf.matMul(as, basis.cxT), tf.matMul(bs, basis.sxT)));
    const p32 = left(tf.sub(tf.matMul(bs, basis.cxT), tf.matMul(as, basis.sxT)));
    const xy = tf.add(tf.matMul(basis.cy, p14), tf.matMul(basis.sy, p32)); // [h, n·w]
    const t = tf.transpose(tf.reshape(xy, [h, b, c, w]), [1, 0, 3, 2]) as tf.Tensor4D; // [b, h, w, c]
    return squash(t);
  };
  return { vars: [a, bb], constants, image };
}

// ---------------------------------------------------------------- transforms

/** One step's random draw, made up front from the seeded rng (so the same seed → same images). */
export interface TransformDraw { dy: number; dx: number; scale: number; angle: number; dy2: number; dx2: number }

export function drawTransform(t: Transforms, rng: Rng): TransformDraw {
  return {
    dy: rng.int(Math.max(1, t.jitter)),
    dx: rng.int(Math.max(1, t.jitter)),
    scale: t.scales.length ? t.scales[rng.int(t.scales.length)] : 1,
    angle: t.angles.length ? t.angles[rng.int(t.angles.length)] : 0,
    dy2: rng.int(Math.max(1, t.jitter2)) - Math.floor(t.jitter2 / 2),
    dx2: rng.int(Math.max(1, t.jitter2)) - Math.floor(t.jitter2 / 2),
  };
}

/**
 * Bilinear resampling matrix [outH·outW, inH·inW]: output pixel p samples the input at
 * centre_in + R(angle)·(p − centre_out)/scale + shift; outside the input clamps to the edge
 * (the input is already padded with grey). Dense, so only for small images.
 */
export function affineMatrix(inH: number, inW: number, outH: number, outW: number, scale: number, angleDeg: number, shift: [number, number]): Float32Array {
  const m = new Float32Array(outH * outW * inH * inW);
  const th = (angleDeg * Math.PI) / 180;
  const cos = Math.cos(th);
  const sin = Math.sin(th);
  const ciy = (inH - 1) / 2 + shift[0];
  const cix = (inW - 1) / 2 + shift[1];
  const coy = (outH - 1) / 2;
  const cox = (outW - 1) / 2;
  const clampY = (v: number) => Math.min(inH - 1, Math.max(0, v));
  const clampX = (v: number) => Math.min(inW - 1, Math.max(0, v));
  for (let oy = 0; oy < outH; oy++) {
    for (let ox = 0; ox < outW; ox++) {
      const ry = (oy - coy) / scale;
      const rx = (ox - cox) / scale;
      const sy = clampY(ciy + cos * ry - sin * rx);
      const sx = clampX(cix + sin * ry + cos * rx);
      const y0 = Math.floor(sy);
      const x0 = Math.floor(sx);
      const fy = sy - y0;
      const fx = sx - x0;
      const y1 = Math.min(y0 + 1, inH - 1);
      const x1 = Math.min(x0 + 1, inW - 1);
      const row = (oy * outW + ox) * inH * inW;
      m[row + y0 * inW + x0] += (1 - fy) * (1 - fx);
      m[row + y0 * inW + x1] += (1 - fy) * fx;
      m[row + y1 * inW + x0] += fy * (1 - fx);
      m[row + y1 * inW + x1] += fy * fx;
    }
  }
  return m;
}

/** Largest dense resampling matrix we build per step (entries); beyond it rotation/scale are skipped. */
const MAX_AFFINE_ENTRIES = 16e6;

/**
 * Applies pad → jitter (slice) → scale + rotate + jitter2 (one bilinear matrix product) and
 * returns an image of the input size. Call inside tidy.
 */
export function applyTransforms(x: tf.Tensor4D, t: Transforms, d: TransformDraw): tf.Tensor4D {
  const [b, h, w, c] = x.shape;
  let y = t.pad > 0 ? (tf.pad(x, [[0, 0], [t.pad, t.pad], [t.pad, t.pad], [0, 0]], 0.5) as tf.Tensor4D) : x;
  const jh = y.shape[1] - Math.max(0, t.jitter - 1);
  const jw = y.shape[2] - Math.max(0, t.jitter - 1);
  if (t.jitter > 1) y = tf.slice(y, [0, d.dy, d.dx, 0], [b, jh, jw, c]);
  const [, ih, iw] = y.shape;
  if (ih * iw * h * w > MAX_AFFINE_ENTRIES) {
    // large images: integer crop back to size (jitter2 as the crop offset), no rotation/scale
    const oy = Math.min(ih - h, Math.max(0, Math.floor((ih - h) / 2) + d.dy2));
    const ox = Math.min(iw - w, Math.max(0, Math.floor((iw - w) / 2) + d.dx2));
    return tf.slice(y, [0, oy, ox, 0], [b, h, w, c]);
  }
  const m = tf.tensor2d(affineMatrix(ih, iw, h, w, d.scale, d.angle, [d.dy2, d.dx2]), [h * w, ih * iw]);
  // [b, ih, iw, c] → [ih·iw, b·c] so that one 2-D product resamples every image and channel
  const flat = tf.reshape(tf.transpose(y, [1, 2, 0, 3]), [ih * iw, b * c]);
  const out = tf.matMul(m, flat);
  return tf.transpose(tf.reshape(out, [h, w, b, c]), [2, 0, 1, 3]) as tf.Tensor4D;
}

/** Lucid's standard_transforms, scaled from its 128-px images to an image of `size` px. */
export function standardTransforms(size: number): Transforms {
  const px = (v: number) => Math.max(1, Math.round((v * size) / 128));
  return {
    pad: px(12),
    jitter: px(8),
    scales: Array.from({ length: 11 }, (_, i) => 1 + (i - 5) / 50),
    angles: Array.from({ length: 21 }, (_, i) => i - 10),
    jitter2: px(4),
  };
}

// ---------------------------------------------------------------- objective terms

/** Mean activation of one channel per image (Erhan et al.'s filter visualisation): MAXIMISE → weight < 0. */
export function channelMean(layer: string, channels: number[], weight = -1): Term {
  return {
    label: `channel mean @ ${layer}`, weight, layers: [layer],
    value: (acts) => {
      const a = acts[layer];
      const k = a.shape[a.shape.length - 1];
      const mask = tf.oneHot(tf.tensor1d(channels, 'int32'), k); // [b, k]: gather-free selection
      const means = a.rank === 4 ? tf.mean(a, [1, 2]) : a;
      return tf.sum(tf.mul(means, mask));
    },
  };
}

/** One unit (centre position) of one channel per image. */
export function neuron(layer: string, channels: number[], weight = -1): Term {
  return {
    label: `neuron @ ${layer}`, weight, layers: [layer],
    value: (acts) => {
      const a = acts[layer] as tf.Tensor4D;
      const [b, h, w, k] = a.shape;
      const centre = tf.slice(a, [0, Math.floor(h / 2), Math.floor(w / 2), 0], [b, 1, 1, k]);
      return tf.sum(tf.mul(tf.reshape(centre, [b, k]), tf.oneHot(tf.tensor1d(channels, 'int32'), k)));
    },
  };
}

/** A class logit per image (pre-softmax: Simonyan et al.). */
export function classLogit(layer: string, classes: number[], weight = -1): Term {
  return { ...channelMean(layer, classes, weight), label: `class logit @ ${layer}` };
}

/** ‖a(y) − a(x)‖² / ‖a(x)‖² per image, summed (Mahendran & Vedaldi's normalised reconstruction error). */
export function featureMatch(layer: string, target: tf.Tensor, weight = 1): Term {
  return {
    label: `feature match @ ${layer}`, weight, layers: [layer],
    value: (acts) => {
      const a = acts[layer];
      const axes = a.shape.map((_, i) => i).slice(1);
      const err = tf.sum(tf.square(tf.sub(a, target)), axes);
      const norm = tf.add(tf.sum(tf.square(target), axes), 1e-8);
      return tf.sum(tf.div(err, norm));
    },
  };
}

/** Gram matrix per image: [b, h, w, k] → [b, k, k], G = FᵀF / (h·w). */
export function gram(a: tf.Tensor4D): tf.Tensor3D {
  const [b, h, w, k] = a.shape;
  const n = h * w;
  // Its own gradient, dF = F·(dG + dGᵀ)/N: one plain matMul, where differentiating FᵀF through
  // tf.matMul costs two products with transposed operands (the Gram matrices are most of a
  // texture-synthesis step's matMul time).
  return tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const f = tf.reshape(args[0] as tf.Tensor, [b, n, k]) as tf.Tensor3D;
    (args[1] as tf.GradSaveFunc)([f]);
    const value = tf.div(tf.matMul(f, f, true, false), n) as tf.Tensor3D;
    const gradFunc = (dy: tf.Tensor, [fs]: tf.Tensor[]) =>
      tf.reshape(tf.div(tf.matMul(fs as tf.Tensor3D, tf.add(dy, tf.transpose(dy, [0, 2, 1])) as tf.Tensor3D), n), [b, h, w, k]);
    return { value, gradFunc };
  })(a) as tf.Tensor3D;
}

/** Σ(G(y) − G_target)² / Σ G_target² per image (so layers weigh alike without hand-tuned weights). */
export function gramMatch(layer: string, targetGram: tf.Tensor, weight = 1): Term {
  return {
    label: `Gram match @ ${layer}`, weight, layers: [layer],
    value: (acts) => {
      const g = gram(acts[layer] as tf.Tensor4D);
      const err = tf.sum(tf.square(tf.sub(g, targetGram)));
      const norm = tf.add(tf.sum(tf.square(targetGram)), 1e-8);
      return tf.div(tf.div(err, norm), g.shape[0]) as tf.Scalar;
    },
  };
}

/** Total variation (β = 2): mean squared difference of neighbouring pixels. */
export function totalVariation(weight: number): Term {
  return {
    label: 'total variation', weight, layers: [],
    value: (_acts, x) => {
      const [b, h, w, c] = x.shape;
      const dy = tf.sub(tf.slice(x, [0, 1, 0, 0], [b, h - 1, w, c]), tf.slice(x, [0, 0, 0, 0], [b, h - 1, w, c]));
      const dx = tf.sub(tf.slice(x, [0, 0, 1, 0], [b, h, w - 1, c]), tf.slice(x, [0, 0, 0, 0], [b, h, w - 1, c]));
      return tf.mul(tf.add(tf.mean(tf.square(dy)), tf.mean(tf.square(dx))), b) as tf.Scalar;
    },
  };
}

/** α-norm of the image around mid-grey, mean over pixels: keeps values from drifting to extremes. */
export function alphaNorm(alpha: number, weight: number): Term {
  return {
    label: `α-norm (α = ${alpha})`, weight, layers: [],
    value: (_acts, x) => tf.mul(tf.mean(tf.pow(tf.abs(tf.sub(x, 0.5)), alpha)), x.shape[0]) as tf.Scalar,
  };
}

/** L2 decay of the image around mid-grey (Simonyan et al.'s λ‖I‖²), mean over pixels. */
export function l2Decay(weight: number): Term {
  return { ...alphaNorm(2, weight), label: 'L2 decay' };
}

// ---------------------------------------------------------------- the loop

/** 3×3 Gaussian blur with mirrored edges (a projection between steps, not a loss term). */
function blur3(x: tf.Tensor4D, sigma: number): tf.Tensor4D {
  const g = [-1, 0, 1].map((d) => Math.exp(-(d * d) / (2 * sigma * sigma)));
  const s = g.reduce((p, q) => p + q, 0);
  const k2 = g.flatMap((a) => g.map((b) => (a * b) / (s * s)));
  const c = x.shape[3];
  const kernel = tf.tensor4d(k2.flatMap((v) => Array(c).fill(v)), [3, 3, c, 1]);
  return tf.depthwiseConv2d(tf.mirrorPad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], 'reflect'), kernel, 1, 'valid');
}

function totalLoss(o: OptimizeOptions, layers: string[], image: tf.Tensor4D, seen: tf.Tensor4D): tf.Scalar {
  const acts = layers.length ? o.forward(seen, layers) : {};
  let loss: tf.Scalar = tf.scalar(0);
  for (const t of o.terms) loss = tf.add(loss, tf.mul(t.value(acts, image), t.weight));
  return loss;
}

/**
 * After an exception inside tf.grad, tfjs (4.22) ends the tape but neither frees the tensors it
 * saved for the backward pass nor drops the tape; free them here (engine internals, guarded).
 */
function releaseTape(): void {
  const state = tf.engine().state as unknown as { gradientDepth: number; activeTape: { saved?: tf.Tensor[] }[] | null };
  if (state.gradientDepth !== 0 || !Array.isArray(state.activeTape)) return;
  for (const node of state.activeTape) for (const t of node.saved ?? []) t.dispose();
  state.activeTape = null;
}

/**
 * Runs the optimisation. Exactly one tf.tidy per step; the variables, the optimiser's slots
 * and the constants are disposed in `finally`, also when a step throws.
 *
 * Nothing is read inside a tidy (webgpu under Node has no synchronous readback): each step keeps
 * its loss scalar, and the queued scalars are read together every `lossReadEvery` steps, so the
 * device is not drained after every step and the queue stays short.
 */
export async function optimizeImage(o: OptimizeOptions): Promise<OptimizeResult> {
  const started = performance.now();
  const layers = [...new Set(o.terms.flatMap((t) => t.layers))];
  const p = makeParam(o);
  const optimizer = tf.train.adam(o.lr);
  const losses: number[] = [];
  const every = Math.max(1, o.lossReadEvery ?? 10);
  let queued: tf.Scalar[] = [];
  const readLosses = async () => {
    const batch = queued;
    queued = [];
    try {
      for (const t of batch) {
        const v = (await t.data())[0];
        o.onStep?.(losses.length, v);
        losses.push(v);
      }
    } finally {
      tf.dispose(batch);
    }
  };
  try {
    // a plain forward pass first: most errors (bad layer names, sizes) surface here, in a tidy
    // that cleans up, rather than inside the gradient tape, which leaks when it throws
    tf.tidy(() => { totalLoss(o, layers, p.image(), p.image()); });
    for (let step = 0; step < o.steps; step++) {
      const draw = o.transforms ? drawTransform(o.transforms, o.rng) : null;
      queued.push(tf.tidy(() => optimizer.minimize(() => {
        const image = p.image();
        const seen = draw && o.transforms ? applyTransforms(image, o.transforms, draw) : image;
        return totalLoss(o, layers, image, seen);
      }, true, p.vars)!));
      if (o.blur && o.param.kind === 'pixel' && (step + 1) % o.blur.every === 0) {
        const v = p.vars[0] as unknown as tf.Tensor4D;
        tf.tidy(() => { (p.vars[0]).assign(blur3(v, o.blur!.sigma)); });
      }
      if (queued.length >= every) await readLosses();
    }
    await readLosses();
    // final values on the untransformed image: every term and the image, read after the tidy
    const final = tf.tidy(() => {
      const image = p.image();
      const acts = layers.length ? o.forward(image, layers) : {};
      return { terms: o.terms.map((t) => t.value(acts, image)), image };
    });
    const finalTerms: Record<string, number> = {};
    let images: Float32Array;
    let total = 0;
    try {
      for (const [i, t] of o.terms.entries()) {
        const v = (await final.terms[i].data())[0];
        finalTerms[t.label] = (finalTerms[t.label] ?? 0) + v;
        total += v * t.weight;
      }
      images = Float32Array.from(await final.image.data());
    } finally {
      tf.dispose([...final.terms, final.image]);
    }
    losses.push(total);
    return {
      images,
      shape: [o.batch, o.height, o.width, o.channels],
      losses,
      finalTerms,
      seconds: (performance.now() - started) / 1000,
    };
  } catch (e) {
    releaseTape();
    throw e;
  } finally {
    tf.dispose(queued);
    optimizer.dispose();
    for (const v of p.vars) v.dispose();
    tf.dispose(p.constants);
  }
}

// ---------------------------------------------------------------- helpers for the techniques

/** The report model as a Forward: [0, 1] pixels → the dataset's normalisation → captured nodes. */
export function modelForward(model: LoadedModel, pre: Preprocessing): Forward {
  const ex = model.executor;
  const order = new Map(ex.nodes.map((n, i) => [n.name, i]));
  const toInput = (x: tf.Tensor4D): tf.Tensor4D => {
    const n = pre.normalize;
    if (n.kind === 'range') return tf.add(tf.mul(x, n.max - n.min), n.min);
    return tf.div(tf.sub(x, tf.tensor1d(n.mean)), tf.tensor1d(n.std));
  };
  return (x, layers) => {
    // stop at the deepest requested node: nothing after it needs computing
    const upTo = layers.reduce((a, b) => ((order.get(ex.node(b).name) ?? 0) > (order.get(ex.node(a).name) ?? 0) ? b : a));
    return ex.run(toInput(x), { capture: layers, upTo }).captured;
  };
}

const CONV = new Set(['Conv2D', 'DepthwiseConv2D', 'SeparableConv2D']);
const STAGE_END = new Set(['MaxPooling2D', 'AveragePooling2D', 'GlobalAveragePooling2D', 'GlobalMaxPooling2D', 'Flatten']);

/**
 * The conv layer that ends each conv stage: the last conv output before every pooling (or
 * flatten / global pooling) node, walking back through pointwise nodes (activation, BN, dropout).
 */
export function convStageLayers(ex: GraphExecutor): string[] {
  const byName = new Map(ex.nodes.map((n) => [n.name, n]));
  const found: string[] = [];
  for (const n of ex.nodes) {
    if (!STAGE_END.has(n.className) || n.inbound.length !== 1) continue;
    let cur = byName.get(n.inbound[0]);
    while (cur && !(CONV.has(cur.className) && cur.role !== 'preact') && cur.spatial.kind === 'pointwise' && cur.inbound.length === 1) {
      cur = byName.get(cur.inbound[0]);
    }
    if (cur && CONV.has(cur.className) && cur.role !== 'preact' && !found.includes(cur.name)) found.push(cur.name);
  }
  return found;
}

/** `count` channel indices spread evenly over [0, total): stable, and not only the first few. */
export function spreadChannels(total: number, count: number): number[] {
  const n = Math.min(total, count);
  return Array.from({ length: n }, (_, i) => Math.floor((i * total) / n));
}

/** Per image: a value computed from one batched forward pass over `images` (NHWC in [0, 1]), read after the tidy. */
export async function perImage(
  forward: Forward, images: Float32Array, shape: [number, number, number, number], layers: string[],
  fn: (acts: Activations, x: tf.Tensor4D) => tf.Tensor,
): Promise<number[]> {
  const t = tf.tidy(() => {
    const x = tf.tensor4d(images, shape);
    return fn(forward(x, layers), x);
  });
  try {
    return Array.from(await t.data());
  } finally {
    t.dispose();
  }
}

/** Losses rounded to 5 significant digits: result.json stays small and readable. */
export function roundLosses(losses: number[]): number[] {
  return losses.map((v) => (Number.isFinite(v) ? Number(v.toPrecision(5)) : v));
}

/** One image of a batch, as uint8 pixels in [0, 1] → [0, 255]. */
export function imageTile(images: Float32Array, shape: [number, number, number, number], i: number): { pixels: Uint8Array; width: number; height: number; channels: Channels } {
  const [, h, w, c] = shape;
  const n = h * w * c;
  return { pixels: toUint8Image(images.subarray(i * n, (i + 1) * n), w, h, c, { min: 0, max: 1 }), width: w, height: h, channels: c as Channels };
}

/** An RGB (or grey) image file → NHWC float32 in [0, 1] of `size` × `size` (centre crop). */
export async function readImage(file: string, size: number, channels: 1 | 3): Promise<Float32Array> {
  const sharp = (await import('sharp')).default;
  let img = sharp(file).removeAlpha().resize(size, size, { fit: 'cover' });
  img = channels === 1 ? img.toColourspace('b-w') : img.toColourspace('srgb');
  const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
  if (info.channels !== channels) {
    // grey source, RGB wanted: replicate
    const out = new Float32Array(size * size * channels);
    for (let i = 0; i < size * size; i++) for (let k = 0; k < channels; k++) out[i * channels + k] = data[i * info.channels + Math.min(k, info.channels - 1)] / 255;
    return out;
  }
  return Float32Array.from(data, (v) => v / 255);
}
