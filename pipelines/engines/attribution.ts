/**
 * Shared machinery of the attribution techniques (saliency, SmoothGrad, guided backprop,
 * deconvnet, CAM, Grad-CAM(++), guided Grad-CAM, occlusion):
 *
 * - the class score: the logit of a class, read at the pre-softmax node (a softmax couples the
 *   classes, so its gradient mixes in every other class);
 * - gradients w.r.t. the input or a hidden node (through the executor's `perturb` hook), under a
 *   ReLU gradient rule;
 * - the explicit Zeiler–Fergus deconvnet (unpool through switches, rectify, transposed filters);
 * - one runner that picks the example images, batches them, renders maps with fixed colour scales
 *   and legends, writes raw float32 maps and measures deletion / insertion faithfulness.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { ConvlensError } from '../errors';
import { applyColormap, colorbarPng, effectiveRange, type ColormapName } from '../images';
import type { GraphExecutor, GraphNode, ReluRule } from '../model/graph';
import type { LoadedModel } from '../model/load';
import type { TechniqueContext } from '../technique';
import { findLayers } from '../techniques/features';
import type { Dataset } from '../types';
import { chooseExamples, type Example, type FeaturesData } from './examples';

// ---------------------------------------------------------------- params

/** Params every attribution technique shares (spread into its zod object). */
export const commonParams = {
  correctPerClass: z.number().int().min(0).max(100).default(1).describe('correctly classified test images shown per class'),
  wrongPerClass: z.number().int().min(0).max(100).default(1).describe('misclassified test images shown per class (fewer when a class has fewer mistakes)'),
  batchSize: z.number().int().min(1).max(1024).default(16).describe('maps computed per batch (one tf.tidy each)'),
  faithfulness: z.boolean().default(true).describe('measure deletion / insertion curves of every map'),
  faithfulnessSteps: z.number().int().min(2).max(200).default(20).describe('steps of the deletion / insertion curves'),
};
const commonSchema = z.object(commonParams);
export type CommonParams = z.output<typeof commonSchema>;

// ---------------------------------------------------------------- scores and gradients

/** The node whose output holds the class logits (pre-softmax). */
export function scoreNode(executor: GraphExecutor): string {
  return findLayers(executor).logits;
}

/**
 * Σ_b logit[b, target_b]. Images in a batch do not interact (inference-mode layers), so one
 * backward pass of this sum gives every image's own gradient. A constant one-hot mask rather than
 * gather: its backward pass is one multiply, where gather's is a scatter (UnsortedSegmentSum).
 */
export function targetScore(logits: tf.Tensor, targets: number[]): tf.Scalar {
  const k = logits.shape[logits.shape.length - 1];
  const flat = tf.reshape(logits, [logits.shape[0], k]);
  const mask = tf.cast(tf.oneHot(tf.tensor1d(targets, 'int32'), k), 'float32');
  return tf.sum(tf.mul(flat, mask));
}

/** ∂ logit_target / ∂ input, per image, under a ReLU gradient rule. Call inside tf.tidy. */
export function inputGradient(executor: GraphExecutor, x: tf.Tensor4D, targets: number[], rule: ReluRule = 'plain'): tf.Tensor4D {
  const upTo = scoreNode(executor);
  const f = tf.grad((xi: tf.Tensor) => targetScore(executor.run(xi as tf.Tensor4D, { upTo, reluRule: rule }).output, targets));
  return f(x) as tf.Tensor4D;
}

/**
 * A hidden node's activation A and ∂ logit_target / ∂ A, from one forward and one backward pass:
 * a zero perturbation is added at the node and differentiated. Call inside tf.tidy.
 */
export function layerGradient(
  executor: GraphExecutor, x: tf.Tensor4D, layer: string, targets: number[], rule: ReluRule = 'plain',
): { activation: tf.Tensor; gradient: tf.Tensor } {
  const upTo = scoreNode(executor);
  const zero = tf.zeros([x.shape[0], ...executor.node(layer).outputShape]);
  let kept: tf.Tensor | undefined;
  const f = tf.grad((p: tf.Tensor) => {
    const r = executor.run(x, { upTo, perturb: { [layer]: p }, capture: [layer], reluRule: rule });
    // the tape's scope frees intermediates; keep the activation and hand it to our scope below
    kept = tf.keep(r.captured[layer]);
    return targetScore(r.output, targets);
  });
  const gradient = f(zero);
  const activation = tf.clone(kept!);
  kept!.dispose();
  return { activation, gradient };
}

/**
 * Flat unit indices, one per image: a plain array, or an int32 tensor straight from
 * `strongestUnits` (so the choice never has to be read back to JavaScript inside a tidy).
 */
export type Units = number[] | tf.Tensor1D;
const unitTensor = (units: Units): tf.Tensor1D => (Array.isArray(units) ? tf.tensor1d(units, 'int32') : units);

/** Gradient of one unit per image (flat index into the node's h·w·c output) w.r.t. the input. */
export function unitGradient(executor: GraphExecutor, x: tf.Tensor4D, layer: string, units: Units, rule: ReluRule): tf.Tensor4D {
  const shape = executor.node(layer).outputShape;
  const n = shape.reduce((a, b) => a * b, 1);
  const mask = tf.reshape(tf.cast(tf.oneHot(unitTensor(units), n), 'float32'), [x.shape[0], ...shape]);
  const f = tf.grad((xi: tf.Tensor) => tf.sum(tf.mul(executor.run(xi as tf.Tensor4D, { upTo: layer, reluRule: rule }).output, mask)));
  return f(x) as tf.Tensor4D;
}

/** [B, h, w] → [B, H, W], bilinear with half-pixel centres (what PIL / OpenCV do). */
export function upsample(maps: tf.Tensor, size: [number, number]): tf.Tensor3D {
  const [, h, w] = maps.shape;
  if (h === size[0] && w === size[1]) return maps as tf.Tensor3D;
  return tf.squeeze(tf.image.resizeBilinear(tf.expandDims(maps, 3) as tf.Tensor4D, size, false, true), [3]) as tf.Tensor3D;
}

// ---------------------------------------------------------------- layers

const CONV_CLASSES = new Set(['Conv2D', 'DepthwiseConv2D', 'SeparableConv2D']);

/** Output nodes of conv layers (after their activation), in order: Grad-CAM candidates. */
export function convLayers(executor: GraphExecutor): string[] {
  return executor.nodes.filter((n) => CONV_CLASSES.has(n.className) && n.role !== 'preact').map((n) => n.name);
}

/** The last node whose output is still an image grid (h, w > 1 or any conv output): Grad-CAM's default. */
export function lastSpatialLayer(executor: GraphExecutor): string {
  const spatial = executor.nodes.filter((n) => n.role !== 'input' && n.outputShape.length === 3 && n.spatial.kind !== 'none' && n.outputShape[0] * n.outputShape[1] > 1);
  const last = spatial[spatial.length - 1];
  if (!last) {
    throw new ConvlensError('the model has no layer with a spatial (height × width) output, so there is nothing to localise.', {
      field: 'layer', fix: 'Grad-CAM and CAM need a convolutional model.',
    });
  }
  return last.name;
}

/** A named node that must be spatial (rank 3 output without the batch). */
export function spatialNode(executor: GraphExecutor, name: string): GraphNode {
  const node = executor.node(name);
  if (node.outputShape.length !== 3) {
    throw new ConvlensError(`layer '${name}' has output shape [${node.outputShape}], not an image grid [h, w, channels].`, {
      field: 'layer', fix: `pick a convolutional or pooling layer, e.g. one of: ${convLayers(executor).map((n) => `'${n}'`).join(', ')}.`,
    });
  }
  return node;
}

/** The `layer` param of the Grad-CAM family (Grad-CAM, Grad-CAM++, guided Grad-CAM). */
export const camLayerParam = z.string().optional().describe('layer to explain; default: the last layer with a spatial output');

/** The Grad-CAM family's layer: the one named in params, or the last layer with a spatial output. */
export const camLayer = (executor: GraphExecutor, name: string | undefined): string => spatialNode(executor, name ?? lastSpatialLayer(executor)).name;

/** A Keras layer's kernel (a variable: not ours to dispose). */
function kernelOf(model: LoadedModel, layerName: string, which = 'kernel'): tf.Tensor {
  const layer = model.layersModel.getLayer(layerName);
  const w = layer.weights.find((v) => {
    const full = v.originalName ?? v.name;
    return full.slice(full.lastIndexOf('/') + 1).replace(/(_\d+)?(:\d+)?$/, '') === which;
  });
  if (!w) throw new Error(`layer '${layerName}' has no '${which}' weight`);
  return w.read();
}

// ---------------------------------------------------------------- CAM

export type CamHead = { ok: true; feature: string; gap: string; logits: string; weights: tf.Tensor2D } | { ok: false; reason: string };

const PASS_THROUGH = new Set(['Dropout', 'SpatialDropout2D', 'GaussianNoise', 'GaussianDropout', 'AlphaDropout']);

/**
 * Whether the model ends in feature maps → global average pooling → (dropout) → Dense logits,
 * the architecture CAM needs (Zhou et al. 2016). `weights` is the Dense kernel [k, classes].
 */
export function camHead(model: LoadedModel): CamHead {
  const ex = model.executor;
  const logits = scoreNode(ex);
  const dense = ex.node(logits);
  if (dense.className !== 'Dense') return { ok: false, reason: `the logits come from '${logits}' (${dense.className}), not from a Dense layer` };
  let node = ex.node(dense.inbound[0]);
  while (PASS_THROUGH.has(node.className)) node = ex.node(node.inbound[0]);
  if (node.className !== 'GlobalAveragePooling2D') {
    return { ok: false, reason: `the Dense logits layer '${dense.layerName}' reads '${node.name}' (${node.className}), not a GlobalAveragePooling2D layer` };
  }
  const feature = node.inbound[0];
  return { ok: true, feature, gap: node.name, logits, weights: kernelOf(model, dense.layerName) as tf.Tensor2D };
}

/** Σ_k w_k^c A_k per image: [B, h, w]. */
export function camMaps(activation: tf.Tensor, weights: tf.Tensor2D, targets: number[]): tf.Tensor3D {
  const w = tf.transpose(tf.gather(weights, tf.tensor1d(targets, 'int32'), 1)); // [B, k], no gradient needed
  return tf.sum(tf.mul(activation, tf.reshape(w, [targets.length, 1, 1, -1])), 3) as tf.Tensor3D;
}

/** Grad-CAM: ReLU(Σ_k α_k A_k), α_k = spatial mean of ∂score/∂A_k. [B, h, w]. */
export function gradCamMaps(executor: GraphExecutor, x: tf.Tensor4D, layer: string, targets: number[]): tf.Tensor3D {
  const { activation, gradient } = layerGradient(executor, x, layer, targets);
  const alpha = tf.mean(gradient, [1, 2], true);
  return tf.relu(tf.sum(tf.mul(activation, alpha), 3)) as tf.Tensor3D;
}

/**
 * Grad-CAM++ (Chattopadhay et al. 2018), closed form for an exponential score: with g = ∂S/∂A,
 * a = g² / (2g² + Σ_ij A · g³), weights w_k = Σ_ij a · ReLU(g); map = ReLU(Σ_k w_k A_k).
 */
export function gradCamPlusPlusMaps(executor: GraphExecutor, x: tf.Tensor4D, layer: string, targets: number[]): tf.Tensor3D {
  const { activation, gradient } = layerGradient(executor, x, layer, targets);
  const g2 = tf.square(gradient);
  const g3 = tf.mul(g2, gradient);
  const sumA = tf.sum(activation, [1, 2], true);
  const denom = tf.add(tf.mul(g2, 2), tf.mul(sumA, g3));
  const safe = tf.where(tf.notEqual(denom, 0), denom, tf.onesLike(denom));
  const a = tf.where(tf.notEqual(gradient, 0), tf.div(g2, safe), tf.zerosLike(g2));
  const w = tf.sum(tf.mul(a, tf.relu(gradient)), [1, 2], true);
  return tf.relu(tf.sum(tf.mul(w, activation), 3)) as tf.Tensor3D;
}

// ---------------------------------------------------------------- deconvnet

const RECTIFIED = new Set(['relu', 'relu6', 'elu', 'leaky_relu']);

/**
 * Zeiler & Fergus's deconvnet, layer by layer: start from `units` (one flat index per image into
 * `layer`'s output, set to `values`, every other unit zero) and project down to the input:
 * ReLU layers rectify the signal, max-pools unpool it through the switches of this forward pass,
 * convolutions apply their transposed (flipped) filters; biases play no part. Call inside tf.tidy.
 */
export function deconvnetProject(model: LoadedModel, x: tf.Tensor4D, layer: string, units: Units, values: number[] | tf.Tensor1D): tf.Tensor4D {
  const ex = model.executor;
  const B = x.shape[0];
  const start = ex.node(layer);
  // the inputs of the max-pools on the way down, for their switches (see poolSwitches)
  const pools: GraphNode[] = [];
  for (let n = start; n.role !== 'input' && n.inbound.length === 1; n = ex.node(n.inbound[0])) if (n.className === 'MaxPooling2D') pools.push(n);
  const { captured } = ex.run(x, { upTo: layer, capture: pools.map((p) => p.inbound[0]) });
  const switches = Object.fromEntries(pools.map((p) => [p.name, poolSwitches(captured[p.inbound[0]] as tf.Tensor4D, p)]));
  const n = start.outputShape.reduce((a, b) => a * b, 1);
  const oneHot = tf.cast(tf.oneHot(unitTensor(units), n), 'float32');
  const v = Array.isArray(values) ? tf.tensor2d(values, [B, 1]) : tf.reshape(values, [B, 1]);
  let signal: tf.Tensor = tf.reshape(tf.mul(oneHot, v), [B, ...start.outputShape]);
  let node = start;
  while (node.role !== 'input') {
    if (node.inbound.length !== 1) {
      throw new ConvlensError(`the deconvnet cannot pass layer '${node.name}' (${node.className}): it merges ${node.inbound.length} inputs.`, {
        field: 'layer', fix: 'the explicit deconvnet covers Sequential conv nets; pick a layer below the first merge, or read the gradient-rule form.',
      });
    }
    const below = ex.node(node.inbound[0]);
    signal = deconvStep(model, node, below, signal, switches, B);
    node = below;
  }
  return signal as tf.Tensor4D;
}

/**
 * Max-pool switches: per pooled unit, the flat index (y · width + x) · channels + c into its
 * image's pool input of the FIRST maximum of its window in row-major order. Built from strided
 * slices and exact comparisons rather than tf.maxPoolWithArgmax, whose tie-breaking differs by
 * backend (webgpu picks the last maximum); ties are common (a ReLU zeroes whole windows) and the
 * deconvnet sends signal through them, so the choice must not depend on the backend.
 * Gives the same indices as the cpu kernel. Call inside tf.tidy.
 */
export function poolSwitches(input: tf.Tensor4D, node: GraphNode): tf.Tensor4D {
  if (node.spatial.kind !== 'window') throw new Error(`'${node.name}' is not a pooling window`);
  const { kernel: [kh, kw], strides: [sh, sw], padding } = node.spatial;
  const [B, h, w, c] = input.shape;
  const [oh, ow] = node.outputShape;
  // tfjs 'same' padding: the total split with the smaller half on top / left
  const top = padding === 'same' ? Math.floor(Math.max((oh - 1) * sh + kh - h, 0) / 2) : 0;
  const left = padding === 'same' ? Math.floor(Math.max((ow - 1) * sw + kw - w, 0) / 2) : 0;
  const bottom = Math.max((oh - 1) * sh + kh - h - top, 0);
  const right = Math.max((ow - 1) * sw + kw - w - left, 0);
  const padded = top + bottom + left + right > 0 ? tf.pad(input, [[0, 0], [top, bottom], [left, right], [0, 0]], -Infinity) : input;
  const offsets: { dy: number; dx: number; values: tf.Tensor4D }[] = [];
  for (let dy = 0; dy < kh; dy++) for (let dx = 0; dx < kw; dx++) {
    const values = tf.stridedSlice(padded, [0, dy, dx, 0], [B, dy + (oh - 1) * sh + 1, dx + (ow - 1) * sw + 1, c], [1, sh, sw, 1]) as tf.Tensor4D;
    offsets.push({ dy, dx, values });
  }
  const max = offsets.map((o) => o.values).reduce((a, b) => tf.maximum(a, b));
  // walk the window backwards so that the first maximum is the one left standing
  let idx: tf.Tensor = tf.zeros([B, oh, ow, c], 'int32');
  for (const { dy, dx, values } of offsets.reverse()) {
    const at = new Int32Array(oh * ow * c);
    for (let y = 0; y < oh; y++) for (let x = 0; x < ow; x++) for (let k = 0; k < c; k++) {
      at[(y * ow + x) * c + k] = ((y * sh + dy - top) * w + (x * sw + dx - left)) * c + k;
    }
    idx = tf.where(tf.equal(values, max), tf.tile(tf.tensor4d(at, [1, oh, ow, c], 'int32'), [B, 1, 1, 1]), idx);
  }
  return idx as tf.Tensor4D;
}

function deconvStep(model: LoadedModel, node: GraphNode, below: GraphNode, signal: tf.Tensor, switches: Record<string, tf.Tensor>, B: number): tf.Tensor {
  const unsupported = (why: string) =>
    new ConvlensError(`the explicit deconvnet cannot pass layer '${node.name}' (${node.className}): ${why}.`, {
      field: 'layer', fix: 'it supports Conv2D, BatchNormalization, ReLU-family activations, MaxPooling2D, ZeroPadding2D, Flatten/Reshape and dropout/noise layers; the gradient-rule form covers every layer.',
    });
  if (node.role === 'activation' || (node.activation && node.role === 'layer')) {
    const act = node.activation ?? 'linear';
    if (act === 'linear') return signal;
    if (RECTIFIED.has(act)) return tf.relu(signal); // rectification: the signal itself goes through a ReLU
    throw unsupported(`activation '${act}' has no deconvnet counterpart`);
  }
  if (PASS_THROUGH.has(node.className)) return signal;
  switch (node.className) {
    case 'Conv2D': {
      if (node.spatial.kind !== 'window') throw unsupported('no window');
      const { strides, padding, dilation } = node.spatial;
      if (dilation[0] !== 1 || dilation[1] !== 1) throw unsupported('dilated convolution');
      const kernel = kernelOf(model, node.layerName) as tf.Tensor4D;
      const [h, w, c] = below.outputShape;
      // conv2dTranspose with the layer's own kernel = correlation with the flipped filters, channels swapped
      return tf.conv2dTranspose(signal as tf.Tensor4D, kernel, [B, h, w, c], strides, padding);
    }
    case 'MaxPooling2D': {
      const idx = switches[node.name];
      const size = below.outputShape.reduce((a, b) => a * b, 1);
      // switches are per-image flat indices; offset them per image and scatter (overlapping windows add up)
      const offsets = tf.reshape(tf.mul(tf.range(0, B, 1, 'int32'), tf.scalar(size, 'int32')), [B, 1, 1, 1]);
      const flat = tf.reshape(tf.add(idx, offsets), [-1, 1]);
      return tf.reshape(tf.scatterND(flat, tf.reshape(signal, [-1]), [B * size]), [B, ...below.outputShape]);
    }
    case 'ZeroPadding2D': {
      if (node.spatial.kind !== 'pad') throw unsupported('no padding info');
      const [[top], [left]] = node.spatial.pads;
      const [h, w, c] = below.outputShape;
      return tf.slice(signal, [0, top, left, 0], [B, h, w, c]);
    }
    case 'Flatten':
    case 'Reshape':
      return tf.reshape(signal, [B, ...below.outputShape]);
    case 'BatchNormalization': {
      // Inference BN is a per-channel affine map; like a conv's bias, its offset is dropped and the
      // signal goes back through the transpose of its linear part: a scale by gamma / sqrt(var + eps).
      // (Zeiler & Fergus predate BN; this is the extension that keeps explicit = gradient rule.)
      const config = model.layersModel.getLayer(node.layerName).getConfig();
      const eps = (config.epsilon as number | undefined) ?? 1e-3;
      const std = tf.sqrt(tf.add(kernelOf(model, node.layerName, 'moving_variance'), eps));
      const gamma = config.scale !== false ? kernelOf(model, node.layerName, 'gamma') : tf.onesLike(std);
      return tf.mul(signal, tf.div(gamma, std));
    }
    default:
      throw unsupported('not a layer type of Sequential conv nets that the deconvnet defines');
  }
}

/**
 * Per image: the flat index (int32) and value of the strongest unit of `layer` (optionally of one
 * channel), as tensors: they feed `deconvnetProject` / `unitGradient` in the same tidy, and are
 * read (with await) only afterwards, which is what webgpu under Node needs. Call inside tf.tidy.
 */
export function strongestUnits(executor: GraphExecutor, x: tf.Tensor4D, layer: string, channel?: number): { units: tf.Tensor1D; values: tf.Tensor1D } {
  const shape = executor.node(layer).outputShape;
  const a = executor.run(x, { upTo: layer }).output;
  const c = shape[shape.length - 1];
  let flat = tf.reshape(a, [x.shape[0], -1]);
  if (channel !== undefined) {
    if (channel < 0 || channel >= c) throw new ConvlensError(`layer '${layer}' has ${c} channels; channel ${channel} does not exist.`, { field: 'channel' });
    // keep only that channel's units: the rest get -inf so argMax never picks them
    const chan = tf.equal(tf.mod(tf.range(0, flat.shape[1]!, 1, 'int32'), c), channel);
    flat = tf.where(tf.tile(tf.reshape(chan, [1, -1]), [x.shape[0], 1]), flat, tf.fill(flat.shape, -Infinity));
  }
  return { units: tf.argMax(flat, 1) as tf.Tensor1D, values: tf.max(flat, 1) as tf.Tensor1D };
}

// ---------------------------------------------------------------- examples and items

export interface Item {
  example: Example;
  /** stable image id from the dataset, e.g. "test-123" */
  id: string;
  target: number;
  role: 'predicted' | 'true';
  /** preprocessed HWC image */
  image: Float32Array;
  /** uint8 HWC pixels */
  pixels: Uint8Array;
}

/** Chosen examples (features pass) and, per example, one item per class to explain: predicted, and true when it differs. */
export async function prepareItems(ctx: TechniqueContext<CommonParams>): Promise<{ items: Item[]; examples: Example[] }> {
  const features = ctx.deps.features as FeaturesData | undefined;
  if (!features) throw new Error('attribution techniques need the `features` result (needs: ["features"])');
  const examples = chooseExamples(features, { correct: ctx.params.correctPerClass, wrong: ctx.params.wrongPerClass });
  const { images, pixels } = await loadImages(ctx.dataset, examples.map((e) => e.index));
  const [h, w, c] = ctx.dataset.imageShape;
  const size = h * w * c;
  const items: Item[] = [];
  examples.forEach((example, i) => {
    const base = {
      example,
      id: ctx.dataset.describeImage('test', example.index).id,
      image: images.subarray(i * size, (i + 1) * size),
      pixels: pixels.subarray(i * size, (i + 1) * size),
    };
    items.push({ ...base, target: example.predicted, role: 'predicted' });
    if (!example.correct) items.push({ ...base, target: example.label, role: 'true' });
  });
  return { items, examples };
}

async function loadImages(dataset: Dataset, indices: number[]): Promise<{ images: Float32Array; pixels: Uint8Array }> {
  const [h, w, c] = dataset.imageShape;
  const size = h * w * c;
  const images = new Float32Array(indices.length * size);
  const pixels = new Uint8Array(indices.length * size);
  let at = 0;
  if (indices.length === 0) return { images, pixels };
  for await (const b of dataset.batches('test', 256, { indices })) {
    images.set(b.images, at * size);
    pixels.set(b.pixels, at * size);
    at += b.size;
  }
  return { images, pixels };
}

/** Stacks the items' images into one NHWC tensor. */
export function itemTensor(items: Item[], shape: [number, number, number]): tf.Tensor4D {
  const size = shape[0] * shape[1] * shape[2];
  const buf = new Float32Array(items.length * size);
  items.forEach((it, i) => buf.set(it.image, i * size));
  return tf.tensor4d(buf, [items.length, ...shape]);
}

/** Width of the input's value range: the declared scaling, or (mean/std) the widest channel. */
export function inputRange(dataset: Dataset): { min: number; max: number } {
  const n = dataset.preprocessing.normalize;
  if (n.kind === 'range') return { min: n.min, max: n.max };
  const mins = n.mean.map((m, i) => (0 - m) / n.std[i]);
  const maxs = n.mean.map((m, i) => (1 - m) / n.std[i]);
  return { min: Math.min(...mins), max: Math.max(...maxs) };
}

/** Per channel mean of the items' images: the grey used for occlusion and for deletion / insertion. */
export function meanFill(items: Item[], channels: number): number[] {
  const sum = new Array<number>(channels).fill(0);
  const seen = new Set<string>();
  let count = 0;
  for (const it of items) {
    if (seen.has(it.id)) continue;
    seen.add(it.id);
    for (let i = 0; i < it.image.length; i++) sum[i % channels] += it.image[i];
    count += it.image.length / channels;
  }
  return sum.map((s) => (count ? s / count : 0));
}

// ---------------------------------------------------------------- the runner

export interface MapKind {
  name: string;
  title: string;
  /** signed maps get the diverging 'rdbu' scale around zero; unsigned ones 'inferno' from zero */
  signed: boolean;
  /** node the map lives on (layer maps are upsampled bilinearly to the input size) */
  layer?: string;
  /** include in the deletion / insertion measurement (default true) */
  faithfulness?: boolean;
}

export interface ComputeOut {
  /** per kind name: [B, h, w] maps for the batch (any h, w; upsampled to the input when smaller) */
  maps: Record<string, tf.Tensor>;
  /** tensors that `info` needs as numbers: kept past the tidy, read with await, then disposed */
  read?: Record<string, tf.Tensor>;
  /** per item, JSON-able facts worth showing (e.g. the deconvnet's unit), from the values of `read` */
  info?: (values: Record<string, number[]>) => Record<string, unknown>[];
}

export interface Curves { deletion: number[]; insertion: number[]; deletionAuc: number; insertionAuc: number }

export interface TargetEntry {
  class: number;
  role: 'predicted' | 'true';
  /** row of this map in every kind's raw file */
  row: number;
  /** per kind: heat map and overlay PNGs at the input resolution */
  files: Record<string, { heat: string; overlay: string }>;
  /** per kind, when measured */
  faithfulness?: Record<string, Curves>;
  info?: Record<string, unknown>;
}

export interface ImageEntry {
  id: string;
  index: number;
  label: number;
  predicted: number;
  correct: boolean;
  /** the input image as the model saw it (PNG) */
  input: string;
  targets: TargetEntry[];
}

export interface KindEntry {
  name: string;
  title: string;
  signed: boolean;
  layer?: string;
  colormap: ColormapName;
  /** the fixed colour scale shared by every image of this result, and how it was chosen */
  scale: { min: number; max: number; rule: string };
  legend: string;
  /** float32 file (+ .json shape sidecar) of all maps of this kind, [rows, h, w] at the map's own resolution */
  raw: string;
  rawShape: number[];
}

export interface AttributionData {
  technique: string;
  scoreNode: string;
  score: string;
  inputShape: [number, number, number];
  classNames: string[];
  kinds: KindEntry[];
  images: ImageEntry[];
  faithfulness?: {
    steps: number;
    baseline: number[];
    description: string;
    /** per kind: mean AUCs over every (image, class) row, the numbers a cross-method table compares */
    means: Record<string, { deletionAuc: number; insertionAuc: number; n: number }>;
  };
  overlay: string;
  notes: string[];
}

/**
 * Runs a technique's `compute` over the chosen examples in batches (one tf.tidy per batch) and
 * writes everything the page shows. `compute` runs inside the tidy and must stay synchronous and
 * must not read tensors (no dataSync): numbers it needs go out through `read` / `info`.
 */
export async function runAttribution(
  ctx: TechniqueContext<CommonParams>,
  spec: { technique: string; kinds: MapKind[]; compute: (x: tf.Tensor4D, targets: number[], items: Item[]) => ComputeOut; notes?: string[]; items?: Item[] },
): Promise<AttributionData> {
  const { executor } = ctx.model;
  const shape = ctx.dataset.imageShape;
  const [H, W] = shape;
  const items = spec.items ?? (await prepareItems(ctx)).items;
  const rows = items.length;
  const raws = new Map<string, { values: Float32Array; shape: number[] }>();
  const upsampled = new Map<string, Float32Array>();
  const infos: (Record<string, unknown> | undefined)[] = [];
  for (const k of spec.kinds) upsampled.set(k.name, new Float32Array(rows * H * W));

  const bs = ctx.params.batchSize;
  for (let start = 0; start < rows; start += bs) {
    const batch = items.slice(start, start + bs);
    // The tidy keeps only the maps; they are read after it with await: webgpu under Node has no
    // synchronous readback (its dataSync needs OffscreenCanvas), and async reads cost the others nothing.
    let info: ComputeOut['info'];
    const { maps: kept, read } = tf.tidy(() => {
      const x = itemTensor(batch, shape);
      const out = spec.compute(x, batch.map((b) => b.target), batch);
      const maps = spec.kinds.map((k) => {
        const m = out.maps[k.name];
        if (!m || m.rank !== 3) throw new Error(`${spec.technique}: compute gave no [B, h, w] map '${k.name}'`);
        return { raw: m, full: upsample(m, [H, W]) };
      });
      info = out.info;
      return { maps, read: out.read ?? {} };
    });
    try {
      if (info) {
        const values: Record<string, number[]> = {};
        for (const [name, t] of Object.entries(read)) values[name] = Array.from(await t.data());
        info(values).forEach((v, i) => (infos[start + i] = v));
      }
      for (const [j, k] of spec.kinds.entries()) {
        const { raw: m, full } = kept[j];
        const [, h, w] = m.shape;
        let raw = raws.get(k.name);
        if (!raw) raws.set(k.name, (raw = { values: new Float32Array(rows * h * w), shape: [rows, h, w] }));
        raw.values.set(await m.data<'float32'>(), start * h * w);
        upsampled.get(k.name)!.set(await full.data<'float32'>(), start * H * W);
      }
    } finally {
      tf.dispose([...kept.flatMap((t) => [t.raw, t.full]), ...Object.values(read)]);
    }
    ctx.progress(Math.min(start + bs, rows), rows);
  }

  const kinds: KindEntry[] = [];
  const files = new Map<string, { heat: string; overlay: string }[]>();
  for (const k of spec.kinds) {
    const raw = raws.get(k.name) ?? { values: new Float32Array(0), shape: [0, H, W] };
    const rendered = await renderKind(ctx, k, upsampled.get(k.name)!, raw, items);
    kinds.push(rendered.entry);
    files.set(k.name, rendered.files);
  }

  const fill = meanFill(items, shape[2]);
  let curves: Map<string, Curves[]> | undefined;
  if (ctx.params.faithfulness && rows > 0) {
    curves = new Map();
    for (const k of spec.kinds) {
      if (k.faithfulness === false) continue;
      curves.set(k.name, await deletionInsertion(executor, items, upsampled.get(k.name)!, shape, fill, ctx.params.faithfulnessSteps, ctx.params.batchSize));
    }
  }

  // images in example order, each with its rows
  const images: ImageEntry[] = [];
  const byId = new Map<string, ImageEntry>();
  for (let r = 0; r < rows; r++) {
    const it = items[r];
    let img = byId.get(it.id);
    if (!img) {
      const input = await ctx.out.png(`input/${safeName(it.id)}.png`, it.pixels, W, H, shape[2] as 1 | 3);
      img = { id: it.id, index: it.example.index, label: it.example.label, predicted: it.example.predicted, correct: it.example.correct, input, targets: [] };
      byId.set(it.id, img);
      images.push(img);
    }
    const f: Record<string, { heat: string; overlay: string }> = {};
    for (const k of spec.kinds) f[k.name] = files.get(k.name)![r];
    const entry: TargetEntry = { class: it.target, role: it.role, row: r, files: f };
    if (curves) entry.faithfulness = Object.fromEntries([...curves].map(([name, c]) => [name, c[r]]));
    if (infos[r]) entry.info = infos[r];
    img.targets.push(entry);
  }

  const data: AttributionData = {
    technique: spec.technique,
    scoreNode: scoreNode(executor),
    score: `the logit (pre-softmax output of '${scoreNode(executor)}') of the explained class`,
    inputShape: shape,
    classNames: ctx.dataset.classNames,
    kinds,
    images,
    overlay: 'overlay = 60% colour-mapped attribution + 40% the input image in grey',
    notes: spec.notes ?? [],
  };
  if (curves) {
    const means: Record<string, { deletionAuc: number; insertionAuc: number; n: number }> = {};
    for (const [name, c] of curves) {
      means[name] = { deletionAuc: round(mean(c.map((v) => v.deletionAuc))), insertionAuc: round(mean(c.map((v) => v.insertionAuc))), n: c.length };
    }
    data.faithfulness = {
      steps: ctx.params.faithfulnessSteps,
      baseline: fill.map(round),
      description: 'Deletion: pixels are replaced, most attributed first, by the mean value of the example images, in equal steps; the curve is the softmax probability of the explained class (lower area = the map found what matters). Insertion: starting from that uniform image, pixels of the real image are put back in the same order (higher area is better). Areas by the trapezoid rule over the fraction of pixels changed.',
      means,
    };
  }
  return data;
}

const round = (v: number): number => Math.round(v * 1e5) / 1e5;
const mean = (v: number[]): number => (v.length ? v.reduce((a, b) => a + b, 0) / v.length : 0);
export const safeName = (id: string): string => id.replace(/[^A-Za-z0-9._-]/g, '_');

/** The 99th percentile of |values|: one extreme pixel should not wash out every other map. */
export function robustMax(values: Float32Array): number {
  if (values.length === 0) return 1;
  const stride = Math.max(1, Math.floor(values.length / 200_000));
  const sample: number[] = [];
  for (let i = 0; i < values.length; i += stride) sample.push(Math.abs(values[i]));
  sample.sort((a, b) => a - b);
  let m = sample[Math.min(sample.length - 1, Math.floor(0.99 * sample.length))];
  if (!(m > 0)) m = sample[sample.length - 1];
  return m > 0 ? m : 1;
}

/** Fixed scale, legend, raw file and per-row PNGs of one kind of map. */
export async function renderKind(
  ctx: TechniqueContext<unknown>, kind: MapKind, full: Float32Array, raw: { values: Float32Array; shape: number[] }, items: Item[], prefix = '',
): Promise<{ entry: KindEntry; files: { heat: string; overlay: string }[] }> {
  const [H, W, C] = ctx.dataset.imageShape;
  const colormap: ColormapName = kind.signed ? 'rdbu' : 'inferno';
  const m = robustMax(full);
  const scale = kind.signed
    ? { min: -m, max: m, rule: 'symmetric around zero, ±(99th percentile of |value|) over every map of this kind in this result; larger values saturate' }
    : { min: 0, max: m, rule: 'from 0 to the 99th percentile of the values over every map of this kind in this result; larger values saturate' };
  const eff = effectiveRange(colormap, scale);
  const base = `${prefix}${kind.name}`;
  const legend = await ctx.out.file(`${base}/legend.png`, await colorbarPng(colormap, eff, { width: 200, height: 30, label: kind.title }));
  const rawName = await ctx.out.float32(`${base}/raw`, raw.values, raw.shape);
  const files: { heat: string; overlay: string }[] = [];
  const px = H * W;
  for (let r = 0; r < items.length; r++) {
    const values = full.subarray(r * px, (r + 1) * px);
    const heat = applyColormap(values, colormap, eff);
    const over = new Uint8Array(px * 3);
    const p = items[r].pixels;
    for (let i = 0; i < px; i++) {
      let g = 0;
      for (let c = 0; c < C; c++) g += p[i * C + c];
      g /= C;
      for (let c = 0; c < 3; c++) over[i * 3 + c] = Math.round(0.6 * heat[i * 3 + c] + 0.4 * g);
    }
    const stem = `${base}/${safeName(items[r].id)}-class${items[r].target}`;
    files.push({ heat: await ctx.out.png(`${stem}.png`, heat, W, H, 3), overlay: await ctx.out.png(`${stem}-overlay.png`, over, W, H, 3) });
  }
  return {
    entry: { name: kind.name, title: kind.title, signed: kind.signed, layer: kind.layer, colormap, scale: { min: eff.min, max: eff.max, rule: scale.rule }, legend, raw: rawName, rawShape: raw.shape },
    files,
  };
}

// ---------------------------------------------------------------- faithfulness

/**
 * Deletion and insertion curves (Petsiuk et al. 2018) of every row: pixels ordered by the map,
 * highest first, replaced by (deletion) or restored from (insertion) the baseline in `steps` equal
 * steps; each point is the softmax probability of the row's class. Forward passes only, batched.
 */
export async function deletionInsertion(
  executor: GraphExecutor, items: Item[], maps: Float32Array, shape: [number, number, number], baseline: number[], steps: number, batchSize: number,
): Promise<Curves[]> {
  const [H, W, C] = shape;
  const px = H * W;
  const upTo = scoreNode(executor);
  const perItem = 2 * (steps + 1);
  const itemsPerPass = Math.max(1, Math.floor(Math.max(batchSize * 8, perItem) / perItem));
  const out: Curves[] = [];
  for (let start = 0; start < items.length; start += itemsPerPass) {
    const group = items.slice(start, start + itemsPerPass);
    const buf = new Float32Array(group.length * perItem * px * C);
    group.forEach((it, g) => {
      const map = maps.subarray((start + g) * px, (start + g + 1) * px);
      const order = Array.from({ length: px }, (_, i) => i).sort((a, b) => map[b] - map[a] || a - b);
      for (let s = 0; s <= steps; s++) {
        const count = Math.round((s * px) / steps);
        const del = buf.subarray(((g * perItem) + s) * px * C, ((g * perItem) + s + 1) * px * C);
        const ins = buf.subarray(((g * perItem) + steps + 1 + s) * px * C, ((g * perItem) + steps + 2 + s) * px * C);
        del.set(it.image);
        for (let i = 0; i < px; i++) for (let c = 0; c < C; c++) ins[i * C + c] = baseline[c];
        for (let j = 0; j < count; j++) {
          const p = order[j];
          for (let c = 0; c < C; c++) {
            del[p * C + c] = baseline[c];
            ins[p * C + c] = it.image[p * C + c];
          }
        }
      }
    });
    const probs = tf.tidy(() => {
      const x = tf.tensor4d(buf, [group.length * perItem, H, W, C]);
      const logits = executor.run(x, { upTo }).output;
      return tf.softmax(tf.reshape(logits, [logits.shape[0], -1]));
    });
    const p = await probs.data();
    probs.dispose();
    const k = p.length / (group.length * perItem);
    group.forEach((it, g) => {
      const curve = (off: number) => Array.from({ length: steps + 1 }, (_, s) => round(p[(g * perItem + off + s) * k + it.target]));
      const deletion = curve(0);
      const insertion = curve(steps + 1);
      out.push({ deletion, insertion, deletionAuc: round(auc(deletion)), insertionAuc: round(auc(insertion)) });
    });
  }
  return out;
}

/** Trapezoid area under equally spaced points over [0, 1]. */
export function auc(y: number[]): number {
  if (y.length < 2) return y[0] ?? 0;
  let s = 0;
  for (let i = 1; i < y.length; i++) s += (y[i - 1] + y[i]) / 2;
  return s / (y.length - 1);
}

// ---------------------------------------------------------------- map reductions

/** |g| max over channels: [B, H, W]. */
export const absMax = (g: tf.Tensor): tf.Tensor3D => tf.max(tf.abs(g), 3) as tf.Tensor3D;
/** Σ_c g · x: signed, [B, H, W]. */
export const timesInput = (g: tf.Tensor, x: tf.Tensor): tf.Tensor3D => tf.sum(tf.mul(g, x), 3) as tf.Tensor3D;
/** Σ_c g: signed, [B, H, W] (guided backprop and deconvnet images are shown summed over channels). */
export const channelSum = (g: tf.Tensor): tf.Tensor3D => tf.sum(g, 3) as tf.Tensor3D;
