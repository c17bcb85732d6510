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
 * - `loadMobileNetV2Backbone`: the MobileNetV2 shipped inside the npm package nsfwjs@4.4.0 (MIT,
 *   Copyright Infinite Red; ImageNet-initialised, fine-tuned by its authors for content
 *   moderation). Its files are JS modules wrapping the Keras model JSON and base64 uint8-quantised
 *   weights; we read them as text (never evaluated), cut the network after its last conv block,
 *   dequantise, write a plain LayersModel folder and load it through the standard loader. The
 *   classifier head (pooling, dense layers, class names) is dropped before anything is loaded.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
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
  /** which kind of net (the `perceptualModel.kind` it came from). */
  kind: 'random' | 'mobilenet-v2' | 'model';
  /** one sentence for the page: where the weights come from, their licence, what was used. */
  attribution: string;
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

/**
 * Every perceptual net also answers to `pixels`: the image itself minus mid-grey, a zeroth
 * "layer" of 3 channels whose Gram matrix is the colour palette's second moments. The trained
 * MobileNetV2's first layer hardly sees colour (The Scream and a photo of a cat differ by 2.6 %
 * in its Gram matrix, 33–67 % in deeper layers), so its style layers start with `pixels`.
 */
export const PIXELS_LAYER = 'pixels';

function withPixels(forward: Forward): Forward {
  return (x, wanted) => {
    const rest = wanted.filter((n) => n !== PIXELS_LAYER);
    const out = rest.length ? forward(x, rest) : {};
    if (rest.length < wanted.length) out[PIXELS_LAYER] = tf.sub(x, 0.5);
    return out;
  };
}

/** What a loaded network offers texture/style objectives: the pixels, then every spatial node. */
function layersOf(model: LoadedModel): string[] {
  return [PIXELS_LAYER, ...model.executor.nodes.filter((n) => n.outputShape.length === 3 && n.role !== 'input').map((n) => n.name)];
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
    kind: 'random',
    attribution: `random weights from convlens' seeded generator (seed ${seed}), after Ustyuzhaninov et al. (ICLR 2017); nothing downloaded, nothing trained`,
    layers: [PIXELS_LAYER, ...layers],
    defaultStyleLayers: layers, // level0 sees the colours directly
    defaultContentLayer: layers[Math.min(2, levels - 1)],
    inputSize: null,
    forward: withPixels(forward),
    dispose: () => tf.dispose(kernels),
  };
}

export interface PerceptualModelSpec {
  /** TF.js LayersModel folder (model.json + shards), RGB input. */
  path: string;
  /** how [0, 1] RGB becomes the model's input: a range, a per-channel mean/std (RGB, on [0, 1]), or Keras' 'caffe' mode (VGG16/19: BGR, 0..255, ImageNet mean subtracted). */
  normalize: { kind: 'range'; min: number; max: number } | { kind: 'meanStd'; mean: number[]; std: number[] } | { kind: 'caffe' };
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
  for (const l of [...spec.styleLayers, spec.contentLayer]) if (l !== PIXELS_LAYER) ex.node(l); // unknown names fail early with suggestions
  const order = new Map(ex.nodes.map((n, i) => [n.name, i]));
  const norm = spec.normalize;
  const toInput = (x: tf.Tensor4D): tf.Tensor4D => {
    if (norm.kind === 'range') return tf.add(tf.mul(x, norm.max - norm.min), norm.min);
    if (norm.kind === 'meanStd') return tf.div(tf.sub(x, tf.tensor1d(norm.mean)), tf.tensor1d(norm.std));
    // keras.applications.vgg16.preprocess_input: RGB→BGR, ×255, minus the ImageNet BGR mean
    return tf.sub(tf.mul(tf.reverse(x, -1), 255), tf.tensor1d([103.939, 116.779, 123.68]));
  };
  const forward: Forward = (x, wanted) => {
    const upTo = wanted.reduce((a, b) => (order.get(b)! > order.get(a)! ? b : a));
    return ex.run(toInput(x), { capture: wanted, upTo }).captured;
  };
  return {
    id: `${spec.path} (${model.id.slice(0, 12)})`,
    kind: 'model',
    attribution: `the report's own perceptual network ${path.basename(spec.path)} (sha256 ${model.id.slice(0, 12)}…); its licence is the report author's to state`,
    layers: layersOf(model),
    defaultStyleLayers: spec.styleLayers,
    defaultContentLayer: spec.contentLayer,
    inputSize: [model.inputShape[0], model.inputShape[1]],
    forward: withPixels(forward),
    dispose: () => model.dispose(),
  };
}

// ---------------------------------------------------------------- MobileNetV2 from nsfwjs

/** The nsfwjs release whose files we know how to read (the layer names below are its). */
export const NSFWJS_VERSION = '4.4.0';
/** Last layer of the convolutional backbone (7×7×1280 at 224 px); everything after it is the classifier head. */
export const MOBILENET_BACKBONE_END = 'out_relu';
/**
 * Gatys-style defaults, shallow to deep: the pixels' colours (see PIXELS_LAYER), then one ReLU6
 * per resolution: the expansion ReLUs at the start of the blocks that work at 1/2, 1/2, 1/4, 1/8
 * and 1/16 of the input side (the layers a MobileNetV2 U-Net taps as skip connections).
 * Content: the 1/8 layer, like VGG's relu4_2.
 */
export const MOBILENET_STYLE_LAYERS = ['pixels', 'Conv1_relu', 'block_1_expand_relu', 'block_3_expand_relu', 'block_6_expand_relu', 'block_13_expand_relu'];
export const MOBILENET_CONTENT_LAYER = 'block_6_expand_relu';

export const MOBILENET_ATTRIBUTION =
  `the convolutional layers of the MobileNetV2 shipped in the npm package nsfwjs ${NSFWJS_VERSION} (MIT licence, Copyright Infinite Red, Inc.): ` +
  'ImageNet-initialised, then fine-tuned by its authors to classify images for content moderation; convlens loads only the convolutional backbone ' +
  '(up to out_relu), never the classifier head or its class names';

const NSFWJS_FIX = `install it next to convlens: \`npm install nsfwjs@${NSFWJS_VERSION}\` (MIT; convlens reads only its MobileNetV2 files), or use perceptualModel: { kind: 'random' }.`;

/** The nsfwjs package folder, found like Node finds packages (its exports map hides package.json from require.resolve). */
export function findNsfwjs(from = import.meta.url): string {
  const require = createRequire(from);
  for (const dir of require.resolve.paths('nsfwjs') ?? []) {
    if (fs.existsSync(path.join(dir, 'nsfwjs', 'package.json'))) return path.join(dir, 'nsfwjs');
  }
  throw new ConvlensError('the perceptual network \'mobilenet-v2\' comes from the npm package nsfwjs, which is not installed.', {
    field: 'perceptualModel.kind', fix: NSFWJS_FIX,
  });
}

/**
 * Parses the JSON-like literal a minified JS module exports (`exports=` followed by an object or
 * a string) WITHOUT evaluating it: unquoted keys, `!0`/`!1` for true/false, numbers such as `.5`.
 * Anything else (a call, a variable) is refused, so a tampered file cannot run code.
 */
export function parseExportedLiteral(src: string, file = 'module'): unknown {
  const m = /\bexports\s*=\s*(?=[{["'])/.exec(src);
  if (!m) throw new Error(`${file}: no \`exports = <literal>\` found`);
  let i = m.index + m[0].length;
  const fail = (what: string): never => { throw new Error(`${file}: ${what} at offset ${i}: '${src.slice(i, i + 30)}'`); };
  const ws = () => { while (i < src.length && /\s/.test(src[i])) i++; };
  const str = (): string => {
    const q = src[i++];
    let out = '';
    for (;;) {
      const c = src[i++];
      if (c === undefined) fail('unterminated string');
      if (c === q) return out;
      if (c !== '\\') { out += c; continue; }
      const e = src[i++];
      if (e === 'u') { out += String.fromCharCode(parseInt(src.slice(i, i + 4), 16)); i += 4; }
      else out += ({ n: '\n', t: '\t', r: '\r', b: '\b', f: '\f', '0': '\0' } as Record<string, string>)[e] ?? e;
    }
  };
  const value = (): unknown => {
    ws();
    const c = src[i];
    if (c === '{') {
      i++;
      const o: Record<string, unknown> = {};
      for (ws(); src[i] !== '}'; ws()) {
        let key: string;
        if (src[i] === '"' || src[i] === "'") key = str();
        else { const k = /^[A-Za-z_$][\w$]*|^\d+/.exec(src.slice(i, i + 200)); if (!k) fail('expected a key'); key = k![0]; i += key.length; }
        ws(); if (src[i++] !== ':') fail('expected :');
        o[key] = value();
        ws(); if (src[i] === ',') i++; else if (src[i] !== '}') fail('expected , or }');
      }
      i++;
      return o;
    }
    if (c === '[') {
      i++;
      const a: unknown[] = [];
      for (ws(); src[i] !== ']'; ws()) {
        a.push(value());
        ws(); if (src[i] === ',') i++; else if (src[i] !== ']') fail('expected , or ]');
      }
      i++;
      return a;
    }
    if (c === '"' || c === "'") return str();
    if (src.startsWith('!0', i)) { i += 2; return true; }
    if (src.startsWith('!1', i)) { i += 2; return false; }
    for (const [w, v] of [['null', null], ['true', true], ['false', false]] as const) if (src.startsWith(w, i)) { i += w.length; return v; }
    const n = /^-?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?/i.exec(src.slice(i, i + 40));
    if (!n) fail('not a literal');
    i += n![0].length;
    return Number(n![0]);
  };
  return value();
}

/** uint8/uint16 affine quantisation as tensorflowjs_converter writes it: x = q·scale + min. */
export function dequantize(q: Uint8Array | Uint16Array, scale: number, min: number): Float32Array {
  const out = new Float32Array(q.length);
  for (let i = 0; i < q.length; i++) out[i] = q[i] * scale + min;
  return out;
}

interface RawLayer { name: string; class_name: string; inbound_nodes: [string, number, number, unknown][][] }
interface RawWeight { name: string; shape: number[]; dtype: string; quantization?: { dtype: string; scale: number; min: number } }

/** The topology cut after `end` (kept: `end` and its ancestors) and the float32 weights of the kept layers. */
export function cutBackbone(modelJson: { modelTopology: Record<string, unknown>; weightsManifest: { paths: string[]; weights: RawWeight[] }[] }, bytes: Uint8Array, end: string) {
  const topology = structuredClone(modelJson.modelTopology) as { model_config: { config: { layers: RawLayer[]; output_layers: unknown } } } & Record<string, unknown>;
  const layers = topology.model_config.config.layers;
  const byName = new Map(layers.map((l) => [l.name, l]));
  if (!byName.has(end)) throw new Error(`the model has no layer '${end}'`);
  const keep = new Set<string>();
  const visit = (n: string) => {
    if (keep.has(n)) return;
    keep.add(n);
    for (const node of byName.get(n)!.inbound_nodes) for (const [from] of node) visit(from);
  };
  visit(end);
  topology.model_config.config.layers = layers.filter((l) => keep.has(l.name));
  topology.model_config.config.output_layers = [[end, 0, 0]];
  delete topology.training_config; // the head's optimiser settings: not ours to carry
  const specs: { name: string; shape: number[]; dtype: 'float32' }[] = [];
  const parts: Float32Array[] = [];
  let offset = 0;
  for (const w of modelJson.weightsManifest.flatMap((g) => g.weights)) {
    const n = w.shape.reduce((a, b) => a * b, 1);
    const q = w.quantization;
    const width = q ? (q.dtype === 'uint8' ? 1 : q.dtype === 'uint16' ? 2 : 0) : w.dtype === 'float32' ? 4 : 0;
    if (!width) throw new Error(`weight ${w.name}: unsupported dtype ${q?.dtype ?? w.dtype}`);
    const raw = new Uint8Array(bytes.subarray(offset, offset + n * width)); // a copy at offset 0 (Buffer.slice would be a view)
    offset += n * width;
    if (!keep.has(w.name.slice(0, w.name.lastIndexOf('/')))) continue;
    specs.push({ name: w.name, shape: w.shape, dtype: 'float32' });
    parts.push(!q ? new Float32Array(raw.buffer) : dequantize(width === 1 ? raw : new Uint16Array(raw.buffer), q.scale, q.min));
  }
  if (offset !== bytes.length) throw new Error(`the weights manifest describes ${offset} bytes, the shard holds ${bytes.length}`);
  const data = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) { data.set(p, o); o += p.length; }
  return { topology, weights: specs, data };
}

/**
 * Writes the nsfwjs MobileNetV2 backbone as a plain TF.js LayersModel folder under `cacheDir`
 * (once; keyed by the source files' hash) and returns the folder.
 */
export function prepareMobileNetV2Backbone(cacheDir: string, nsfwjsDir = findNsfwjs()): string {
  const version = (JSON.parse(fs.readFileSync(path.join(nsfwjsDir, 'package.json'), 'utf8')) as { version: string }).version;
  const srcDir = path.join(nsfwjsDir, 'dist', 'models', 'mobilenet_v2');
  const files = ['model.min.js', 'group1-shard1of1.min.js'].map((f) => path.join(srcDir, f));
  for (const f of files) {
    if (!fs.existsSync(f)) throw new ConvlensError(`nsfwjs ${version} has no ${path.basename(f)}; convlens reads the MobileNetV2 of nsfwjs ${NSFWJS_VERSION}.`, { file: f, field: 'perceptualModel.kind', fix: NSFWJS_FIX });
  }
  const texts = files.map((f) => fs.readFileSync(f, 'utf8'));
  const hash = createHash('sha256').update(texts[0]).update(texts[1]).digest('hex').slice(0, 16);
  const dir = path.join(cacheDir, `nsfwjs-${version}-mobilenet_v2-backbone-${hash}`);
  if (fs.existsSync(path.join(dir, 'model.json'))) return dir;
  let modelJson, b64;
  try {
    modelJson = parseExportedLiteral(texts[0], files[0]) as Parameters<typeof cutBackbone>[0];
    b64 = parseExportedLiteral(texts[1], files[1]);
    if (typeof b64 !== 'string' || !modelJson?.modelTopology || !Array.isArray(modelJson.weightsManifest)) throw new Error('unexpected module contents');
  } catch (e) {
    throw new ConvlensError(`cannot read the MobileNetV2 files of nsfwjs ${version}: ${(e as Error).message}`, { file: srcDir, field: 'perceptualModel.kind', fix: NSFWJS_FIX });
  }
  const { topology, weights, data } = cutBackbone(modelJson, Buffer.from(b64, 'base64'), MOBILENET_BACKBONE_END);
  const tmp = `${dir}.tmp-${process.pid}`;
  fs.mkdirSync(tmp, { recursive: true });
  fs.writeFileSync(path.join(tmp, 'weights.bin'), new Uint8Array(data.buffer));
  fs.writeFileSync(path.join(tmp, 'model.json'), JSON.stringify({
    format: 'layers-model', generatedBy: `convlens from nsfwjs ${version} (MIT, Copyright Infinite Red): MobileNetV2 backbone only, weights dequantised`,
    modelTopology: topology, weightsManifest: [{ paths: ['weights.bin'], weights }],
  }));
  try {
    fs.renameSync(tmp, dir);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    if (!fs.existsSync(path.join(dir, 'model.json'))) throw e; // else another process wrote the same files first
  }
  return dir;
}

/** Where decoded networks are kept: `<convlens root>/.convlens/perceptual` (git-ignored). */
export const PERCEPTUAL_CACHE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../.convlens/perceptual');

/**
 * The MobileNetV2 backbone as a perceptual net: any input size (it is fully convolutional once
 * the head is gone), RGB in [0, 1] exactly as nsfwjs feeds it (`img / 255`, 224 px by default).
 */
export async function loadMobileNetV2Backbone(opts: { cacheDir?: string; nsfwjsDir?: string } = {}): Promise<PerceptualNet> {
  const dir = prepareMobileNetV2Backbone(opts.cacheDir ?? PERCEPTUAL_CACHE, opts.nsfwjsDir);
  const model = await loadModel(dir);
  const ex = model.executor;
  const order = new Map(ex.nodes.map((n, i) => [n.name, i]));
  const forward: Forward = (x, wanted) => {
    for (const n of wanted) if (!order.has(n)) throw new Error(`mobilenet-v2 backbone: no layer '${n}'; layers: ${MOBILENET_STYLE_LAYERS.join(', ')}, …`);
    const upTo = wanted.reduce((a, b) => (order.get(b)! > order.get(a)! ? b : a));
    return ex.run(x, { capture: wanted, upTo }).captured; // nsfwjs: input = pixels / 255, no mean/std
  };
  return {
    id: `mobilenet-v2 backbone (nsfwjs ${path.basename(dir).split('-')[1]}, MIT; ${model.id.slice(0, 12)})`,
    kind: 'mobilenet-v2',
    attribution: MOBILENET_ATTRIBUTION,
    layers: layersOf(model),
    defaultStyleLayers: MOBILENET_STYLE_LAYERS,
    defaultContentLayer: MOBILENET_CONTENT_LAYER,
    inputSize: null,
    forward: withPixels(forward),
    dispose: () => model.dispose(),
  };
}

// ---------------------------------------------------------------- technique params

/** One perceptual network, as written in a report config. */
export const perceptualNet = z
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
        z.object({ kind: z.literal('caffe') }).describe('Keras VGG16/19 preprocessing: BGR, 0..255, ImageNet mean subtracted'),
      ]),
      styleLayers: z.array(z.string()).min(1),
      contentLayer: z.string(),
    }),
    z.object({
      kind: z.literal('mobilenet-v2'),
    }).describe(`the MobileNetV2 convolutional backbone from the npm package nsfwjs@${NSFWJS_VERSION} (MIT, Infinite Red; ImageNet-initialised, fine-tuned for content moderation; its classifier head is never loaded); input RGB in [0, 1], any size`),
  ])
  .describe('a perceptual network: a random-weight multi-scale net (no download), the MobileNetV2 backbone shipped in nsfwjs, or your own TF.js LayersModel with RGB input');

export const RANDOM_NET = { kind: 'random', seed: 1, filters: 64, kernel: 5, levels: 5 } as const;

/** `perceptualModel` param shared by texture-synthesis and style-transfer (default: the random net). */
export const perceptualParam = perceptualNet.default(RANDOM_NET);

export type PerceptualParam = z.output<typeof perceptualNet>;

export async function openPerceptual(spec: PerceptualParam, reportDir: string): Promise<PerceptualNet> {
  if (spec.kind === 'random') return buildRandomNet(spec);
  if (spec.kind === 'mobilenet-v2') return loadMobileNetV2Backbone();
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
