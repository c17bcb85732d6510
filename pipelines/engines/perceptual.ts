/**
 * Perceptual networks for texture synthesis and style transfer: networks whose feature
 * statistics describe natural colour images (the report's own model, trained on 28-px grey
 * clothes, is not one).
 *
 * - `buildRandomNet`: after Ustyuzhaninov et al. (ICLR 2017), who showed that a single layer
 *   of random filters at several scales synthesises convincing textures. Their multi-scale net
 *   convolves the full image with filters up to 55 px wide; to fit 2 CPU cores we get the same
 *   range of scales from a Gaussian image pyramid instead: at each level (the image blurred and
 *   halved 0, 1, 2, 3, 4 times) one bank of random k×k filters + ReLU, i.e. receptive fields of k, 2k, 4k, …
 *   pixels. Weights come from the seeded Rng: reproducible, nothing to download.
 * - `loadPerceptualModel`: a user's own TF.js LayersModel (e.g. a Keras VGG-19 converted with
 *   tensorflowjs_converter, exported with a fixed input size), read by the standard loader.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { resolveInside } from '../config';
import { ConvlensError } from '../errors';
import { loadModel, type LoadedModel } from '../model/load';
import { Rng } from '../rng';
import type { Forward } from './optimize-image';

export interface PerceptualNet {
  /** short id for provenance, e.g. "random-multiscale(seed 1, 5 levels × 64 filters 5×5)". */
  id: string;
  /** every layer a texture/style objective may read, shallow to deep. */
  layers: string[];
  /** Gatys-style defaults for this net. */
  defaultStyleLayers: string[];
  defaultContentLayer: string;
  /** fixed input size [h, w] if the net has one (a loaded LayersModel), else null (any size). */
  inputSize: [number, number] | null;
  /** x: NHWC RGB in [0, 1]. Call inside tidy / grad. */
  forward: Forward;
  dispose(): void;
}

export interface RandomNetOptions {
  seed?: number;
  /** filters per pyramid level. */
  filters?: number;
  /** kernel size at every level. */
  kernel?: number;
  /** pyramid levels (level l sees the image pooled by 2^l). */
  levels?: number;
}

export function buildRandomNet(opts: RandomNetOptions = {}): PerceptualNet {
  const seed = opts.seed ?? 1;
  const filters = opts.filters ?? 64;
  const k = opts.kernel ?? 5;
  const levels = opts.levels ?? 5;
  const rng = new Rng(seed);
  const kernels: tf.Tensor4D[] = [];
  for (let l = 0; l < levels; l++) {
    const w = new Float32Array(k * k * 3 * filters);
    for (let i = 0; i < w.length; i++) w[i] = rng.normal();
    // unit L2 norm per filter, so every level responds on the same scale
    for (let f = 0; f < filters; f++) {
      let s = 0;
      for (let i = f; i < w.length; i += filters) s += w[i] * w[i];
      const n = Math.sqrt(s) || 1;
      for (let i = f; i < w.length; i += filters) w[i] /= n;
    }
    kernels.push(tf.tensor4d(w, [k, k, 3, filters]));
  }
  // Gaussian-pyramid step: binomial 3×3 blur per channel, stride 2, as a plain conv2d (its input
  // gradient exists on every backend; depthwise has none on wasm). Average pooling instead
  // leaves flat 2^l-px blocks in the synthesised image.
  const b = [1, 2, 1];
  const down = new Float32Array(3 * 3 * 3 * 3);
  for (let y = 0; y < 3; y++) for (let x = 0; x < 3; x++) for (let c = 0; c < 3; c++) down[((y * 3 + x) * 3 + c) * 3 + c] = (b[y] * b[x]) / 16;
  kernels.push(tf.tensor4d(down, [3, 3, 3, 3]));
  const downKernel = kernels[kernels.length - 1];
  const layers = kernels.slice(0, levels).map((_, l) => `level${l}`);
  const forward: Forward = (x, wanted) => {
    const out: Record<string, tf.Tensor> = {};
    const deepest = Math.max(...wanted.map((n) => layers.indexOf(n)));
    // centred input: with a zero-mean input the ReLU keeps roughly half of each response
    let img: tf.Tensor4D = tf.sub(x, 0.5);
    for (let l = 0; l <= deepest; l++) {
      if (l > 0) img = tf.conv2d(img, downKernel, 2, 'same');
      if (img.shape[1] < k || img.shape[2] < k) break; // image too small for this level
      if (wanted.includes(layers[l])) out[layers[l]] = tf.relu(tf.conv2d(img, kernels[l], 1, 'same'));
    }
    for (const n of wanted) if (!out[n]) throw new Error(`perceptual net: layer ${n} needs a larger image (it works at 1/${2 ** layers.indexOf(n)} scale with ${k}×${k} filters)`);
    return out;
  };
  return {
    id: `random-multiscale(seed ${seed}, ${levels} levels × ${filters} filters ${k}×${k})`,
    layers,
    defaultStyleLayers: layers,
    defaultContentLayer: layers[Math.min(2, levels - 1)],
    inputSize: null,
    forward,
    dispose: () => tf.dispose(kernels),
  };
}

export interface PerceptualModelSpec {
  /** TF.js LayersModel folder (model.json + shards), RGB input. */
  path: string;
  /** how [0, 1] RGB becomes the model's input, e.g. VGG/Keras 'caffe': meanStd in 0..255 BGR is NOT supported; use the range or per-channel mean/std the model was trained with. */
  normalize: { kind: 'range'; min: number; max: number } | { kind: 'meanStd'; mean: number[]; std: number[] };
  styleLayers: string[];
  contentLayer: string;
}

/** A user-supplied perceptual network, through the standard model loader (same checks, same errors). */
export async function loadPerceptualModel(spec: PerceptualModelSpec): Promise<PerceptualNet> {
  const model: LoadedModel = await loadModel(spec.path);
  const ex = model.executor;
  if (model.inputShape[2] !== 3) {
    model.dispose();
    throw new Error(`perceptual model ${spec.path}: needs an RGB input (3 channels), has ${model.inputShape[2]}`);
  }
  for (const l of [...spec.styleLayers, spec.contentLayer]) ex.node(l); // unknown names fail early with suggestions
  const order = new Map(ex.nodes.map((n, i) => [n.name, i]));
  const norm = spec.normalize;
  const toInput = (x: tf.Tensor4D): tf.Tensor4D =>
    norm.kind === 'range'
      ? tf.add(tf.mul(x, norm.max - norm.min), norm.min)
      : tf.div(tf.sub(x, tf.tensor1d(norm.mean)), tf.tensor1d(norm.std));
  const forward: Forward = (x, wanted) => {
    const upTo = wanted.reduce((a, b) => (order.get(b)! > order.get(a)! ? b : a));
    return ex.run(toInput(x), { capture: wanted, upTo }).captured;
  };
  return {
    id: `${spec.path} (${model.id.slice(0, 12)})`,
    layers: ex.nodes.filter((n) => n.outputShape.length === 3 && n.role !== 'input').map((n) => n.name),
    defaultStyleLayers: spec.styleLayers,
    defaultContentLayer: spec.contentLayer,
    inputSize: [model.inputShape[0], model.inputShape[1]],
    forward,
    dispose: () => model.dispose(),
  };
}

// ---------------------------------------------------------------- technique params

/** `perceptualModel` param shared by texture-synthesis and style-transfer. */
export const perceptualParam = z
  .union([
    z.object({
      kind: z.literal('random'),
      seed: z.number().int().default(1),
      filters: z.number().int().min(1).max(512).default(64),
      kernel: z.number().int().min(1).max(15).default(5),
      levels: z.number().int().min(1).max(8).default(5),
    }),
    z.object({
      kind: z.literal('model'),
      path: z.string().describe('TF.js LayersModel folder, relative to the report folder'),
      normalize: z.union([
        z.object({ kind: z.literal('range'), min: z.number(), max: z.number() }),
        z.object({ kind: z.literal('meanStd'), mean: z.array(z.number()).length(3), std: z.array(z.number()).length(3) }),
      ]),
      styleLayers: z.array(z.string()).min(1),
      contentLayer: z.string(),
    }),
  ])
  .default({ kind: 'random', seed: 1, filters: 64, kernel: 5, levels: 5 })
  .describe('the perceptual network: a random-weight multi-scale net (default, no download) or your own TF.js LayersModel with RGB input');

export type PerceptualParam = z.output<typeof perceptualParam>;

export async function openPerceptual(spec: PerceptualParam, reportDir: string): Promise<PerceptualNet> {
  if (spec.kind === 'random') return buildRandomNet(spec);
  return loadPerceptualModel({ ...spec, path: resolveInside(reportDir, spec.path, configOf(reportDir), 'perceptualModel.path') });
}

/** Images that ship with convlens (assets/images, licences in its LICENSES.md). */
const BUILT_IN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../assets');

/**
 * Image files named in params, relative to the report folder (never outside it); a name the
 * report folder lacks falls back to the images that ship with convlens (`images/gravel.png`…).
 */
export function resolveImage(file: string, reportDir: string): string {
  const own = resolveInside(reportDir, file, configOf(reportDir), 'image');
  if (fs.existsSync(own)) return own;
  const builtIn = path.resolve(BUILT_IN, file);
  if (builtIn.startsWith(BUILT_IN + path.sep) && fs.existsSync(builtIn)) return builtIn;
  throw new ConvlensError(`image '${file}' is neither in the report folder nor among convlens' built-in images`, {
    file: configOf(reportDir),
    fix: `add it to ${path.relative(process.cwd(), reportDir) || '.'} or use one of: ${fs.readdirSync(path.join(BUILT_IN, 'images')).filter((f) => f.endsWith('.png')).map((f) => `images/${f}`).join(', ')}`,
  });
}

const configOf = (reportDir: string) => path.relative(process.cwd(), path.join(reportDir, 'report.config.ts'));
