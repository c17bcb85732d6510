/**
 * Runs a LayersModel's layer DAG with raw tfjs-core ops, so that techniques can capture any
 * node, add a perturbation at any node (gradients w.r.t. hidden layers of any DAG), swap the
 * ReLU gradient rule and record max-pool switches. tfjs-layers' own `apply` offers none of
 * these, and its fused conv+activation kernels ignore custom ReLU gradients. Inference-mode
 * BatchNormalization is folded into the linear conv that feeds it where that is exact
 * (`GraphExecutor.foldBatchNorm`); the nodes techniques see do not change.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { ConvlensError } from '../errors';

export type ReluRule = 'plain' | 'guided' | 'deconvnet';
export type Padding = 'same' | 'valid';

/** How a node maps the image grid of its input(s) to its output: what receptive fields need. */
export type SpatialOp =
  /** conv / pooling window; dilation is [1, 1] for pools */
  | { kind: 'window'; kernel: [number, number]; strides: [number, number]; dilation: [number, number]; padding: Padding }
  /** explicit zero padding: [[top, bottom], [left, right]] */
  | { kind: 'pad'; pads: [[number, number], [number, number]] }
  /** same grid as its single input (activations, BatchNorm, dropout, ...) */
  | { kind: 'pointwise' }
  /** several inputs on one grid combined position by position (Add, Concatenate, ...) */
  | { kind: 'merge' }
  /** the output is no longer an image grid (Dense, Flatten, global pooling, Reshape) */
  | { kind: 'none' };

export interface GraphNode {
  /** Keras layer name, or `<layer>/preact` for the linear part of a layer with a fused activation. */
  name: string;
  /** the Keras layer this node comes from. */
  layerName: string;
  /** the Keras class of that layer, e.g. "Conv2D" (also for its split-out activation node). */
  className: string;
  /** input: the model input; layer: a whole layer; preact/activation: the two halves of a fused layer. */
  role: 'input' | 'layer' | 'preact' | 'activation';
  inbound: string[];
  /** without the batch dimension. */
  outputShape: number[];
  /** trainable + non-trainable weights counted on this node (a fused layer's count sits on its preact node). */
  params: number;
  /** the activation this node applies, if it is an activation (split out or an Activation-like layer). */
  activation?: string;
  spatial: SpatialOp;
}

export interface RunOptions {
  /** node names whose outputs are returned in `captured`. */
  capture?: string[];
  /** tensor added to a node's output (broadcast); zeros + tf.grad give the gradient at that node. */
  perturb?: Record<string, tf.Tensor>;
  /** gradient rule of every ReLU-family node; forward values do not change. */
  reluRule?: ReluRule;
  /** record argmax indices of every MaxPooling2D node that runs. */
  recordSwitches?: boolean;
  /** stop at this node: it becomes `output` (e.g. a penultimate layer's features). */
  upTo?: string;
}

export interface RunResult {
  output: tf.Tensor;
  captured: Record<string, tf.Tensor>;
  /**
   * Per MaxPooling2D node: int32 indices shaped like the pooled output; each is the flat index
   * `(y * width + x) * channels + c` into that example's pool input (tf.maxPoolWithArgmax's
   * convention with includeBatchInIndex = false).
   */
  switches: Record<string, tf.Tensor>;
}

type Compute = (inputs: tf.Tensor[], rule: ReluRule) => tf.Tensor;
type RawConfig = Record<string, unknown>;

// Structural views of tfjs-layers internals we rely on (not all exported as types).
interface TfNode { inboundLayers: TfLayer[]; nodeIndices: number[]; tensorIndices: number[] }
interface TfLayer {
  name: string;
  inboundNodes: TfNode[];
  outputShape: (number | null)[] | (number | null)[][];
  weights: { originalName?: string; name: string; read(): tf.Tensor }[];
  getClassName(): string;
  countParams(): number;
}
interface TfSymbolic { sourceLayer: TfLayer; nodeIndex: number; tensorIndex: number; shape: (number | null)[] }

export class GraphExecutor {
  /** topological order; the last node is the model output. */
  readonly nodes: GraphNode[];
  readonly inputName: string;
  readonly outputName: string;
  /** [h, w, c] */
  readonly inputShape: [number, number, number];
  /**
   * Fold inference-mode BatchNormalization into the linear Conv2D / DepthwiseConv2D that feeds
   * it (see `batchNormFolds`): one conv instead of conv + BN, forward and backward. Values are
   * the same up to float32 rounding (so a ReLU input within rounding of 0 or 6 may switch side,
   * which changes that unit's gradient path). A pair runs unfolded in any run that captures,
   * stops at (`upTo`) or perturbs the conv node, so that node's value is always the pre-BN one;
   * the ReLU nodes after a BN stay separate, with their gradient rules. Set to false to run every
   * BatchNorm as its own op (bench/gradients.ts compares the two).
   */
  foldBatchNorm = true;
  private readonly byName: Map<string, GraphNode>;
  private readonly computes: Map<string, Compute>;
  private readonly owned: tf.Tensor[];
  /** by BatchNorm node name */
  private readonly folds: Map<string, BatchNormFold>;

  constructor(parts: { nodes: GraphNode[]; computes: Map<string, Compute>; owned: tf.Tensor[]; inputShape: [number, number, number]; folds?: BatchNormFold[] }) {
    this.nodes = parts.nodes;
    this.computes = parts.computes;
    this.owned = parts.owned;
    this.inputShape = parts.inputShape;
    this.byName = new Map(parts.nodes.map((n) => [n.name, n]));
    this.inputName = parts.nodes[0].name;
    this.outputName = parts.nodes[parts.nodes.length - 1].name;
    this.folds = new Map((parts.folds ?? []).map((f) => [f.batchNorm, f]));
  }

  /** The (conv, BatchNorm) node pairs that runs fold when `foldBatchNorm` is on. */
  get batchNormFolds(): { conv: string; batchNorm: string }[] {
    return [...this.folds.values()].map((f) => ({ conv: f.conv, batchNorm: f.batchNorm }));
  }

  /** The node called `name`; an unknown name is a user error (it comes from report configs). */
  node(name: string): GraphNode {
    const found = this.byName.get(name);
    if (found) return found;
    const close = closeNames(name, [...this.byName.keys()]);
    throw new ConvlensError(`unknown layer name '${name}'.`, {
      field: 'layer',
      fix: close.length
        ? `did you mean ${close.map((c) => `'${c}'`).join(', ')}?`
        : `use one of: ${[...this.byName.keys()].join(', ')}.`,
    });
  }

  /** Names of all nodes upstream of `name` (inclusive). */
  ancestors(names: string[]): Set<string> {
    const seen = new Set<string>();
    const stack = names.map((n) => this.node(n).name);
    while (stack.length) {
      const n = stack.pop()!;
      if (seen.has(n)) continue;
      seen.add(n);
      stack.push(...this.byName.get(n)!.inbound);
    }
    return seen;
  }

  /**
   * Synchronous forward pass; call it inside tf.tidy (or tf.grad). Intermediates that nobody
   * asked for are freed early, except while a gradient tape records (the tape needs them).
   */
  run(x: tf.Tensor4D, opts: RunOptions = {}): RunResult {
    const [, , , channels] = x.shape;
    if (x.rank !== 4 || channels !== this.inputShape[2]) {
      throw new Error(`GraphExecutor.run: expected an NHWC batch with ${this.inputShape[2]} channels, got shape [${x.shape}]`);
    }
    const target = this.node(opts.upTo ?? this.outputName).name;
    const capture = (opts.capture ?? []).map((n) => this.node(n).name);
    const perturb = opts.perturb ?? {};
    for (const n of Object.keys(perturb)) this.node(n);
    const rule = opts.reluRule ?? 'plain';
    const needed = this.ancestors([target, ...capture]);
    const keep = new Set([target, ...capture]);
    const canFree = tf.engine().state.gradientDepth === 0;

    // BatchNorm nodes computed by their folded conv in this run; their conv nodes are skipped
    const folded = new Map<string, BatchNormFold>();
    if (this.foldBatchNorm) {
      for (const f of this.folds.values()) {
        if (!needed.has(f.batchNorm) || keep.has(f.conv) || perturb[f.conv]) continue;
        if (!f.fresh()) {
          // weights reassigned since the fold: refold outside a gradient tape, else run unfolded
          if (!canFree) continue;
          f.refold();
        }
        folded.set(f.batchNorm, f);
      }
    }
    const skipped = new Set([...folded.values()].map((f) => f.conv));
    const inboundOf = (n: GraphNode): string[] => folded.get(n.name)?.inbound ?? n.inbound;

    // consumers left per node, to free a value once its last consumer has run
    const pending = new Map<string, number>();
    for (const n of this.nodes) {
      if (!needed.has(n.name) || skipped.has(n.name)) continue;
      for (const i of inboundOf(n)) pending.set(i, (pending.get(i) ?? 0) + 1);
    }

    const values = new Map<string, tf.Tensor>();
    const switches: Record<string, tf.Tensor> = {};
    for (const node of this.nodes) {
      if (!needed.has(node.name) || skipped.has(node.name)) continue;
      const inbound = inboundOf(node);
      const inputs = inbound.map((i) => values.get(i)!);
      const compute = folded.get(node.name)?.compute ?? this.computes.get(node.name)!;
      // the input node clones x so every value is ours to free (clones share data, no copy)
      let out = node.role === 'input' ? tf.clone(x) : compute(inputs, rule);
      if (opts.recordSwitches && node.className === 'MaxPooling2D' && node.spatial.kind === 'window') {
        const { kernel, strides, padding } = node.spatial;
        const { result, indexes } = tf.maxPoolWithArgmax(inputs[0] as tf.Tensor4D, kernel, strides, padding, false);
        result.dispose();
        switches[node.name] = indexes;
      }
      const p = perturb[node.name];
      if (p) {
        const perturbed = tf.add(out, p);
        if (canFree) out.dispose();
        out = perturbed;
      }
      values.set(node.name, out);
      if (!canFree) continue;
      for (const i of inbound) {
        const left = pending.get(i)! - 1;
        pending.set(i, left);
        if (left === 0 && !keep.has(i)) values.get(i)!.dispose();
      }
    }
    const captured: Record<string, tf.Tensor> = {};
    for (const c of capture) captured[c] = values.get(c)!;
    return { output: values.get(target)!, captured, switches };
  }

  /** Frees the constants the executor made, folded weights included (the weights belong to the LayersModel). */
  dispose(): void {
    for (const t of this.owned) t.dispose();
    this.owned.length = 0;
    for (const f of this.folds.values()) f.dispose();
  }
}

// ---------------------------------------------------------------- building

/**
 * Builds the executor over `model`'s layer objects and weights. `topology` is the raw
 * `modelTopology` of model.json: its snake_case layer configs keep Keras fields that
 * tfjs-layers drops when it parses them (e.g. ReLU's negative_slope and threshold).
 */
export function buildExecutor(model: LayersModel, topology?: unknown): GraphExecutor {
  const rawConfigs = layerConfigs(topology ?? model.toJSON(null, false));
  const outputs = model.outputs as unknown as TfSymbolic[];
  const inputs = model.inputs as unknown as TfSymbolic[];
  if (outputs.length !== 1 || inputs.length !== 1) {
    throw new ConvlensError(`the model has ${inputs.length} inputs and ${outputs.length} outputs; convlens needs exactly one of each.`, {
      field: 'modelTopology',
      fix: 'export a model with one image input and one output (e.g. the class scores).',
    });
  }
  const inShape = inputs[0].shape;
  if (inShape.length !== 4 || inShape.slice(1).some((d) => d == null || d <= 0)) {
    throw new ConvlensError(`the model input has shape [${inShape.map(String)}]; convlens needs a 4-D image input [batch, height, width, channels] with a fixed size.`, {
      field: 'modelTopology: batch_input_shape',
      fix: 'export the model with a fixed input shape such as (None, 28, 28, 1), channels last.',
    });
  }
  const inputShape = inShape.slice(1) as [number, number, number];

  // depth-first from the output: a valid topological order holding only what the output needs
  const order: TfLayer[] = [];
  const nodeIndexOf = new Map<TfLayer, number>();
  const visiting = new Set<TfLayer>();
  const visit = (layer: TfLayer, nodeIndex: number): void => {
    const seenIndex = nodeIndexOf.get(layer);
    if (seenIndex !== undefined) {
      if (seenIndex !== nodeIndex) {
        throw new ConvlensError(`layer '${layer.name}' is applied more than once (a shared layer), which convlens cannot execute.`, {
          field: 'modelTopology', fix: 'export the model with one layer object per use.',
        });
      }
      return;
    }
    if (visiting.has(layer)) throw new Error(`cycle at layer '${layer.name}'`);
    visiting.add(layer);
    const tfNode = layer.inboundNodes[nodeIndex];
    tfNode.inboundLayers.forEach((l, i) => visit(l, tfNode.nodeIndices[i]));
    visiting.delete(layer);
    nodeIndexOf.set(layer, nodeIndex);
    order.push(layer);
  };
  visit(outputs[0].sourceLayer, outputs[0].nodeIndex);

  const nodes: GraphNode[] = [];
  const computes = new Map<string, Compute>();
  const owned: tf.Tensor[] = [];
  const shapeOf = new Map<string, number[]>();
  const convParts = new Map<string, ConvParts>();
  const bnParts = new Map<string, BnParts>();
  for (const layer of order) {
    const className = layer.getClassName();
    const tfNode = layer.inboundNodes[nodeIndexOf.get(layer)!];
    const inbound = tfNode.inboundLayers.map((l) => l.name);
    const outShape = (Array.isArray(layer.outputShape[0]) ? layer.outputShape[0] : layer.outputShape) as (number | null)[];
    const outputShape = outShape.slice(1).map((d) => d ?? -1);
    const config = rawConfigs.get(layer.name) ?? {};
    const inShapes = inbound.map((n) => shapeOf.get(n)!);
    shapeOf.set(layer.name, outputShape);
    if (className === 'InputLayer') {
      nodes.push({ name: layer.name, layerName: layer.name, className, role: 'input', inbound: [], outputShape, params: 0, spatial: { kind: 'pointwise' } });
      continue;
    }
    const builder = BUILDERS[className];
    if (!builder) {
      throw new ConvlensError(
        `layer '${layer.name}' has class '${className}', which convlens cannot execute; supported: ${Object.keys(BUILDERS).sort().join(', ')}.`,
        { field: 'modelTopology', fix: 'replace that layer with supported ones, or open an issue asking for it.' },
      );
    }
    if (config.data_format === 'channels_first') {
      throw new ConvlensError(`layer '${layer.name}' uses data_format channels_first; convlens supports channels_last only.`, {
        field: `layer '${layer.name}': data_format`, fix: 'export the model with channels_last (the Keras default).',
      });
    }
    const weights = new Map<string, tf.Tensor>();
    for (const w of layer.weights) {
      const full = w.originalName ?? w.name;
      weights.set(full.slice(full.lastIndexOf('/') + 1).replace(/_\d+$/, '').replace(/:\d+$/, ''), w.read());
    }
    const ctx: BuildContext = { layerName: layer.name, className, config, weights, inShapes, owned };
    const built = builder(ctx);
    const params = layer.countParams();
    const act = built.fusedActivation && built.fusedActivation !== 'linear' ? activation(built.fusedActivation, ctx) : undefined;
    if (act) {
      const preact = `${layer.name}/preact`;
      nodes.push({ name: preact, layerName: layer.name, className, role: 'preact', inbound, outputShape, params, spatial: built.spatial });
      computes.set(preact, built.compute);
      nodes.push({
        name: layer.name, layerName: layer.name, className, role: 'activation', inbound: [preact], outputShape, params: 0,
        activation: built.fusedActivation, spatial: { kind: 'pointwise' },
      });
      computes.set(layer.name, act);
    } else {
      nodes.push({ name: layer.name, layerName: layer.name, className, role: 'layer', inbound, outputShape, params, activation: built.activation, spatial: built.spatial });
      computes.set(layer.name, built.compute);
      // only a linear conv (no activation node split out) can absorb a following BatchNorm
      if (built.conv) convParts.set(layer.name, built.conv);
      if (built.bn) bnParts.set(layer.name, built.bn);
    }
  }
  return new GraphExecutor({ nodes, computes, owned, inputShape, folds: batchNormFolds(nodes, convParts, bnParts) });
}

/**
 * Every (linear Conv2D / DepthwiseConv2D → BatchNormalization) pair in which the conv's only
 * consumer is the BatchNorm: inference-mode BN is then a per-channel affine map of the conv's
 * output and folds exactly into its weights. BN after an activation (conv+ReLU → BN) does not.
 */
function batchNormFolds(nodes: GraphNode[], convParts: Map<string, ConvParts>, bnParts: Map<string, BnParts>): BatchNormFold[] {
  const consumers = new Map<string, number>();
  for (const n of nodes) for (const i of n.inbound) consumers.set(i, (consumers.get(i) ?? 0) + 1);
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const folds: BatchNormFold[] = [];
  for (const n of nodes) {
    const bn = bnParts.get(n.name);
    if (!bn || n.inbound.length !== 1) continue;
    const convName = n.inbound[0];
    const conv = convParts.get(convName);
    if (!conv || consumers.get(convName) !== 1) continue;
    const [, , ci, co] = conv.kernel.shape;
    const channels = conv.depthwise ? ci * co : co;
    if (bn.mean.size !== channels || bn.mean.rank !== 1) continue;
    folds.push(new BatchNormFold(convName, n.name, byName.get(convName)!.inbound, conv, bn));
  }
  return folds;
}

/**
 * A linear conv with the BatchNorm that is its only consumer, as one conv:
 * w' = w·s, b' = (b − μ)·s + β with s = γ/√(σ² + ε) per output channel (for a depthwise kernel
 * [h, w, in, multiplier] output channel in·multiplier + m). The folded weights are computed once
 * and refolded only if the layer's weight variables were reassigned since (their dataId changes).
 */
class BatchNormFold {
  kernel: tf.Tensor4D | undefined;
  bias: tf.Tensor1D | undefined;
  private foldedIds: unknown[] = [];

  constructor(
    readonly conv: string,
    readonly batchNorm: string,
    /** the conv's inputs: what the folded node reads */
    readonly inbound: string[],
    private readonly c: ConvParts,
    private readonly b: BnParts,
  ) {
    this.refold();
  }

  private sources(): tf.Tensor[] {
    const { c, b } = this;
    return [c.kernel, ...(c.bias ? [c.bias] : []), b.mean, b.variance, b.offset, b.scale];
  }

  /** whether the folded weights still match the layer weights */
  fresh(): boolean {
    return this.sources().every((t, i) => t.dataId === this.foldedIds[i]);
  }

  refold(): void {
    this.disposeFolded();
    const { c, b } = this;
    const [kernel, bias] = tf.tidy(() => {
      const s = tf.mul(b.scale, tf.rsqrt(tf.add(b.variance, b.eps)));
      const [, , ci, m] = c.kernel.shape;
      // a dilated kernel is spread once here rather than at every call
      const k = spreadKernel(c.kernel, c.spatial.dilation);
      const w = tf.mul(k, c.depthwise ? tf.reshape(s, [ci, m]) : s);
      const shifted = c.bias ? tf.sub(c.bias, b.mean) : tf.neg(b.mean);
      return [w, tf.add(tf.mul(shifted, s), b.offset)];
    });
    this.kernel = tf.keep(kernel) as tf.Tensor4D;
    this.bias = tf.keep(bias) as tf.Tensor1D;
    this.foldedIds = this.sources().map((t) => t.dataId);
  }

  /** conv + bias with the folded weights */
  readonly compute: Compute = ([x]) =>
    convBias(x as tf.Tensor4D, this.kernel!, this.bias!, this.c.spatial, this.c.depthwise);

  private disposeFolded(): void {
    if (this.kernel) this.kernel.dispose();
    if (this.bias) this.bias.dispose();
    this.kernel = this.bias = undefined;
  }

  dispose(): void {
    this.disposeFolded();
  }
}

/** name → snake_case config of every layer in a Sequential or functional topology. */
function layerConfigs(topology: unknown): Map<string, RawConfig> {
  const result = new Map<string, RawConfig>();
  let top = topology as RawConfig | undefined;
  if (top && typeof top === 'object' && 'model_config' in top) top = top.model_config as RawConfig;
  const config = top?.config as RawConfig | RawConfig[] | undefined;
  const layers = (Array.isArray(config) ? config : (config?.layers as RawConfig[] | undefined)) ?? [];
  for (const l of layers) {
    const c = l.config as RawConfig | undefined;
    const name = (c?.name ?? l.name) as string | undefined;
    if (name && c) result.set(name, c);
  }
  return result;
}

// ---------------------------------------------------------------- layer builders

interface BuildContext {
  layerName: string;
  className: string;
  config: RawConfig;
  /** weights by short name: kernel, bias, depthwise_kernel, gamma, moving_mean, ... */
  weights: Map<string, tf.Tensor>;
  inShapes: number[][];
  /** constants the executor creates and must free */
  owned: tf.Tensor[];
}
interface Built {
  compute: Compute;
  spatial: SpatialOp;
  /** an activation fused in the layer: split out into its own node */
  fusedActivation?: string;
  /** for activation layers themselves */
  activation?: string;
  /** a Conv2D / DepthwiseConv2D: what folding a following BatchNormalization needs */
  conv?: ConvParts;
  /** a BatchNormalization: its inference-mode per-channel affine map */
  bn?: BnParts;
}
type Builder = (ctx: BuildContext) => Built;
type WindowOp = Extract<SpatialOp, { kind: 'window' }>;
interface ConvParts { depthwise: boolean; kernel: tf.Tensor4D; bias?: tf.Tensor; spatial: WindowOp }
/** y = (x − mean) · scale / √(variance + eps) + offset, per channel */
interface BnParts { mean: tf.Tensor; variance: tf.Tensor; offset: tf.Tensor; scale: tf.Tensor; eps: number }

const identity: Compute = ([x]) => tf.clone(x);

function pair(v: unknown, fallback: number): [number, number] {
  if (v == null) return [fallback, fallback];
  if (typeof v === 'number') return [v, v];
  const a = v as number[];
  return [a[0], a.length > 1 ? a[1] : a[0]];
}

function paddingOf(ctx: BuildContext): Padding {
  const p = (ctx.config.padding ?? 'valid') as string;
  if (p !== 'same' && p !== 'valid') {
    throw new ConvlensError(`layer '${ctx.layerName}' has padding '${p}'; convlens supports 'same' and 'valid'.`, { field: `layer '${ctx.layerName}': padding` });
  }
  return p;
}

function weight(ctx: BuildContext, name: string): tf.Tensor {
  const w = ctx.weights.get(name);
  if (!w) throw new ConvlensError(`layer '${ctx.layerName}' (${ctx.className}) has no weight '${name}'.`, { field: 'weightsManifest' });
  return w;
}

/** Where conv-like layers keep their fused activation; 'linear' when none. */
function fused(ctx: BuildContext): string {
  const a = ctx.config.activation;
  if (a == null) return 'linear';
  if (typeof a === 'string') return a;
  // Keras 3 may serialise an activation as { class_name, config: { name } } or similar
  const obj = a as RawConfig;
  return String((obj.config as RawConfig | undefined)?.name ?? obj.class_name ?? 'linear');
}

function convSpatial(ctx: BuildContext, kernelKey = 'kernel_size'): SpatialOp {
  return {
    kind: 'window',
    kernel: pair(ctx.config[kernelKey], 1),
    strides: pair(ctx.config.strides, 1),
    dilation: pair(ctx.config.dilation_rate, 1),
    padding: paddingOf(ctx),
  };
}

/**
 * tfjs has no gradient for dilated conv2d / depthwiseConv2d, so a dilated kernel is spread out
 * with zeros between its taps (same output, plain stride-1-dilation ops with gradients). Done per
 * call, not once, so the executor keeps following the layer's weight variables.
 */
function spreadKernel(kernel: tf.Tensor4D, dilation: [number, number]): tf.Tensor4D {
  if (dilation[0] === 1 && dilation[1] === 1) return kernel;
  return tf.tidy(() => {
    let k: tf.Tensor = kernel;
    for (const axis of [0, 1]) {
      const d = dilation[axis];
      if (d === 1) continue;
      const taps = k.shape[axis];
      // [.., taps, ..] → [.., taps, d, ..] with zeros after each tap → [.., taps·d, ..] → drop the trailing zeros
      const withGap = tf.concat([tf.expandDims(k, axis + 1), tf.zeros([...k.shape.slice(0, axis + 1), d - 1, ...k.shape.slice(axis + 1)])], axis + 1);
      const merged = tf.reshape(withGap, [...k.shape.slice(0, axis), taps * d, ...k.shape.slice(axis + 1)]);
      const begin = [0, 0, 0, 0];
      const size = [-1, -1, -1, -1];
      size[axis] = (taps - 1) * d + 1;
      k = tf.slice(merged, begin, size);
    }
    return k as tf.Tensor4D;
  });
}

function withSpread(kernel: tf.Tensor4D, dilation: [number, number], op: (k: tf.Tensor4D) => tf.Tensor): tf.Tensor {
  const k = spreadKernel(kernel, dilation);
  const y = op(k);
  if (k !== kernel) k.dispose();
  return y;
}

function biasOf(ctx: BuildContext): tf.Tensor | undefined {
  return ctx.config.use_bias !== false && ctx.weights.has('bias') ? weight(ctx, 'bias') : undefined;
}

let fuseConvBias = true;
/** false: conv, then a separate bias add (as before the fused form), for before/after benchmarks. */
export function useFusedConvBias(on: boolean): void {
  fuseConvBias = on;
}

/**
 * conv (or depthwise conv) + bias as tfjs's fused kernel: one pass over the output instead of
 * two. Under a gradient tape it is differentiable in x only: the weights are constants to every
 * technique, and tfjs's own fused-conv gradient would also compute the filter and bias gradients,
 * one more backprop and a reduction per layer that nothing reads (issue 7). No activation is
 * fused: fused activations bypass the custom ReLU gradients, so those stay their own nodes.
 */
function convBias(x: tf.Tensor4D, filter: tf.Tensor4D, bias: tf.Tensor, spatial: WindowOp, depthwise: boolean): tf.Tensor4D {
  if (!fuseConvBias) return tf.tidy(() => tf.add(plainConv(x, filter, spatial, depthwise), bias));
  const { strides, padding } = spatial;
  const run = (v: tf.Tensor4D) => (depthwise ? tf.fused.depthwiseConv2d : tf.fused.conv2d)({ x: v, filter, strides, pad: padding, bias });
  if (tf.engine().state.gradientDepth === 0) return run(x);
  return tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const v = args[0] as tf.Tensor4D;
    // saved, not captured: the engine keeps a reference until the backward pass
    (args[1] as tf.GradSaveFunc)([filter]);
    const attrs = { strides, pad: padding, inputShape: v.shape, ...(depthwise ? { dilations: 1 } : { dataFormat: 'NHWC' }) };
    const gradFunc = (dy: tf.Tensor, [f]: tf.Tensor[]) =>
      tf.engine().runKernel(depthwise ? 'DepthwiseConv2dNativeBackpropInput' : 'Conv2DBackpropInput', { dy, filter: f! }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor;
    return { value: run(v), gradFunc };
  })(x) as tf.Tensor4D;
}

function withBias(ctx: BuildContext, linear: (x: tf.Tensor) => tf.Tensor): Compute {
  const bias = biasOf(ctx);
  // plain ops, not fused kernels: fused ones bypass custom ReLU gradients
  return ([x]) => {
    const y = linear(x);
    if (!bias) return y;
    const withB = tf.add(y, bias);
    y.dispose();
    return withB;
  };
}

/** conv or depthwise conv with an undilated kernel */
function plainConv(x: tf.Tensor4D, filter: tf.Tensor4D, { strides, padding }: WindowOp, depthwise: boolean): tf.Tensor4D {
  return (depthwise ? tf.depthwiseConv2d : tf.conv2d)(x, filter, strides, padding);
}

/**
 * A Conv2D / DepthwiseConv2D layer: its linear part (the fused conv + bias kernel when it has a
 * bias) and the parts that folding a following BatchNorm needs.
 */
function convLayer(ctx: BuildContext, depthwise: boolean): Built {
  const conv: ConvParts = {
    depthwise, kernel: weight(ctx, depthwise ? 'depthwise_kernel' : 'kernel') as tf.Tensor4D, bias: biasOf(ctx), spatial: convSpatial(ctx) as WindowOp,
  };
  const { kernel, bias, spatial } = conv;
  // a dilated kernel is spread to a plain one first (withSpread), so the conv itself has no dilation
  const compute: Compute = ([x]) => withSpread(kernel, spatial.dilation, (k) => bias
    ? convBias(x as tf.Tensor4D, k, bias, spatial, depthwise)
    : plainConv(x as tf.Tensor4D, k, spatial, depthwise));
  return { spatial, fusedActivation: fused(ctx), compute, conv };
}

const conv2d: Builder = (ctx) => convLayer(ctx, false);
const depthwise: Builder = (ctx) => convLayer(ctx, true);

const separable: Builder = (ctx) => {
  const spatial = convSpatial(ctx) as WindowOp;
  const dw = weight(ctx, 'depthwise_kernel') as tf.Tensor4D;
  const pw = weight(ctx, 'pointwise_kernel') as tf.Tensor4D;
  return {
    spatial,
    fusedActivation: fused(ctx),
    compute: withBias(ctx, (x) => {
      const d = withSpread(dw, spatial.dilation, (k) => tf.depthwiseConv2d(x as tf.Tensor4D, k, spatial.strides, spatial.padding)) as tf.Tensor4D;
      const y = tf.conv2d(d, pw, 1, 'valid');
      d.dispose();
      return y;
    }),
  };
};

const dense: Builder = (ctx) => {
  const rank = ctx.inShapes[0].length + 1;
  if (rank !== 2) {
    throw new ConvlensError(`layer '${ctx.layerName}' is a Dense layer on a rank-${rank} input; convlens runs Dense on flat [batch, features] inputs only.`, {
      field: `layer '${ctx.layerName}'`, fix: 'add a Flatten or global pooling layer before it.',
    });
  }
  const kernel = weight(ctx, 'kernel') as tf.Tensor2D;
  return { spatial: { kind: 'none' }, fusedActivation: fused(ctx), compute: withBias(ctx, (x) => tf.matMul(x as tf.Tensor2D, kernel)) };
};

const batchNorm: Builder = (ctx) => {
  const rank = ctx.inShapes[0].length + 1;
  const axisCfg = ctx.config.axis ?? -1;
  const axis = Array.isArray(axisCfg) ? (axisCfg as number[]) : [axisCfg as number];
  if (axis.length !== 1 || (axis[0] !== -1 && axis[0] !== rank - 1)) {
    throw new ConvlensError(`layer '${ctx.layerName}' normalises axis ${JSON.stringify(axisCfg)}; convlens supports the last (channel) axis only.`, {
      field: `layer '${ctx.layerName}': axis`,
    });
  }
  const mean = weight(ctx, 'moving_mean');
  const variance = weight(ctx, 'moving_variance');
  const eps = (ctx.config.epsilon as number | undefined) ?? 1e-3;
  // tf.batchNorm needs explicit offset and scale tensors on every backend
  const makeConst = (v: number): tf.Tensor => {
    const t = tf.fill(mean.shape, v);
    ctx.owned.push(t);
    return t;
  };
  const offset = ctx.config.center !== false && ctx.weights.has('beta') ? weight(ctx, 'beta') : makeConst(0);
  const scale = ctx.config.scale !== false && ctx.weights.has('gamma') ? weight(ctx, 'gamma') : makeConst(1);
  return {
    spatial: { kind: 'pointwise' },
    compute: ([x]) => tf.batchNorm(x, mean as tf.Tensor1D, variance as tf.Tensor1D, offset as tf.Tensor1D, scale as tf.Tensor1D, eps),
    bn: { mean, variance, offset, scale, eps },
  };
};

function pool(kind: 'max' | 'avg'): Builder {
  return (ctx) => {
    const kernel = pair(ctx.config.pool_size, 2);
    const strides = ctx.config.strides == null ? kernel : pair(ctx.config.strides, 1);
    const padding = paddingOf(ctx);
    const op = kind === 'max' ? tf.maxPool : tf.avgPool;
    return {
      spatial: { kind: 'window', kernel, strides, dilation: [1, 1], padding },
      compute: ([x]) => op(x as tf.Tensor4D, kernel, strides, padding),
    };
  };
}

function globalPool(kind: 'max' | 'avg'): Builder {
  return (ctx) => {
    const keepDims = ctx.config.keepdims === true;
    const op = kind === 'max' ? tf.max : tf.mean;
    return { spatial: { kind: 'none' }, compute: ([x]) => op(x, [1, 2], keepDims) };
  };
}

const zeroPadding: Builder = (ctx) => {
  const p = ctx.config.padding ?? 1;
  let pads: [[number, number], [number, number]];
  if (typeof p === 'number') pads = [[p, p], [p, p]];
  else {
    const a = p as (number | number[])[];
    // [h, w] pads both sides alike; [[top, bottom], [left, right]] sets each
    pads = [pair(a[0], 0), pair(a[1], 0)];
  }
  return {
    spatial: { kind: 'pad', pads },
    compute: ([x]) => tf.pad(x, [[0, 0], pads[0], pads[1], [0, 0]]),
  };
};

function merge(combine: (a: tf.Tensor, b: tf.Tensor) => tf.Tensor, finish?: (sum: tf.Tensor, n: number) => tf.Tensor): Builder {
  return () => ({
    spatial: { kind: 'merge' },
    compute: (xs) => {
      let acc = combine(xs[0], xs[1]);
      for (let i = 2; i < xs.length; i++) {
        const next = combine(acc, xs[i]);
        acc.dispose();
        acc = next;
      }
      if (!finish) return acc;
      const done = finish(acc, xs.length);
      acc.dispose();
      return done;
    },
  });
}

const concatenate: Builder = (ctx) => {
  const rank = ctx.inShapes[0].length + 1;
  const axisCfg = (ctx.config.axis as number | undefined) ?? -1;
  const axis = axisCfg < 0 ? rank + axisCfg : axisCfg;
  const spatial: SpatialOp = rank === 4 && axis === 3 ? { kind: 'merge' } : { kind: 'none' };
  return { spatial, compute: (xs) => tf.concat(xs, axis) };
};

const flatten: Builder = () => ({ spatial: { kind: 'none' }, compute: ([x]) => tf.reshape(x, [x.shape[0], -1]) });

const reshape: Builder = (ctx) => {
  const target = ctx.config.target_shape as number[];
  return { spatial: { kind: 'none' }, compute: ([x]) => tf.reshape(x, [x.shape[0], ...target]) };
};

const rescaling: Builder = (ctx) => {
  const scale = (ctx.config.scale as number | undefined) ?? 1;
  const offset = (ctx.config.offset as number | undefined) ?? 0;
  return {
    spatial: { kind: 'pointwise' },
    compute: ([x]) => tf.tidy(() => tf.add(tf.mul(x, scale), offset)),
  };
};

// ---------------------------------------------------------------- activations

interface ReluFamily {
  forward: (x: tf.Tensor) => tf.Tensor;
  /** local derivative f'(x), used by the guided rule */
  derivative: (x: tf.Tensor) => tf.Tensor;
}

/**
 * The ReLU gradient rules, applied to every ReLU-family node:
 * plain = dy·f'(x); guided = dy·f'(x)·[dy>0]; deconvnet = dy·[dy>0] (Zeiler–Fergus: the
 * backward signal itself goes through a ReLU, whatever x was).
 */
function withRule(family: ReluFamily): Compute {
  const byRule: Partial<Record<ReluRule, (x: tf.Tensor) => tf.Tensor>> = { plain: family.forward };
  const make = (rule: Exclude<ReluRule, 'plain'>) =>
    tf.customGrad(((x: tf.Tensor, save: tf.GradSaveFunc) => {
      save([x]);
      return {
        value: family.forward(x),
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
          tf.tidy(() => (rule === 'guided' ? tf.mul(tf.relu(dy), family.derivative(saved[0])) : tf.relu(dy))),
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return ([x], rule) => {
    let f = byRule[rule];
    if (!f) f = byRule[rule] = make(rule as Exclude<ReluRule, 'plain'>);
    return f(x);
  };
}

const mask = (cond: tf.Tensor): tf.Tensor => tf.cast(cond, 'float32');

function relu6Family(): ReluFamily {
  return { forward: (x) => tf.relu6(x), derivative: (x) => tf.tidy(() => mask(tf.logicalAnd(tf.greater(x, 0), tf.lessEqual(x, 6)))) };
}
const reluFamily: ReluFamily = { forward: (x) => tf.relu(x), derivative: (x) => mask(tf.greater(x, 0)) };

function leakyFamily(alpha: number): ReluFamily {
  return {
    forward: (x) => tf.leakyRelu(x, alpha),
    derivative: (x) => tf.tidy(() => tf.where(tf.greater(x, 0), tf.onesLike(x), tf.fill(x.shape, alpha))),
  };
}

function eluFamily(alpha: number): ReluFamily {
  return {
    forward: alpha === 1 ? (x) => tf.elu(x) : (x) => tf.tidy(() => tf.where(tf.greater(x, 0), x, tf.mul(alpha, tf.sub(tf.exp(x), 1)))),
    derivative: (x) => tf.tidy(() => tf.where(tf.greater(x, 0), tf.onesLike(x), tf.mul(alpha, tf.exp(x)))),
  };
}

/** Keras ReLU: max_value if x ≥ max_value; x if threshold ≤ x; negative_slope·(x − threshold) below. */
function kerasReluFamily(maxValue: number | null, slope: number, threshold: number): ReluFamily {
  if (slope === 0 && threshold === 0) {
    if (maxValue == null) return reluFamily;
    if (maxValue === 6) return relu6Family();
    return {
      forward: (x) => tf.tidy(() => tf.clipByValue(tf.relu(x), 0, maxValue)),
      derivative: (x) => tf.tidy(() => mask(tf.logicalAnd(tf.greater(x, 0), tf.less(x, maxValue)))),
    };
  }
  return {
    forward: (x) =>
      tf.tidy(() => {
        const y = tf.where(tf.greaterEqual(x, threshold), x, tf.mul(slope, tf.sub(x, threshold)));
        return maxValue == null ? y : tf.minimum(y, maxValue);
      }),
    derivative: (x) =>
      tf.tidy(() => {
        const d = tf.where(tf.greaterEqual(x, threshold), tf.onesLike(x), tf.fill(x.shape, slope));
        return maxValue == null ? d : tf.mul(d, mask(tf.less(x, maxValue)));
      }),
  };
}

/** Activation functions by Keras name; the ReLU family honours the gradient rule. */
function activation(name: string, ctx: Pick<BuildContext, 'layerName'>): Compute {
  const plain = (f: (x: tf.Tensor) => tf.Tensor): Compute => ([x]) => f(x);
  switch (name) {
    case 'linear':
      return identity;
    case 'relu':
      return withRule(reluFamily);
    case 'relu6':
      return withRule(relu6Family());
    case 'elu':
      return withRule(eluFamily(1));
    case 'leaky_relu':
      return withRule(leakyFamily(0.2));
    case 'selu':
      return plain((x) => tf.selu(x));
    case 'sigmoid':
      return plain((x) => tf.sigmoid(x));
    case 'tanh':
      return plain((x) => tf.tanh(x));
    case 'softmax':
      return plain((x) => tf.softmax(x, -1));
    case 'softplus':
      return plain((x) => tf.softplus(x));
    case 'softsign':
      return plain((x) => tf.tidy(() => tf.div(x, tf.add(tf.abs(x), 1))));
    case 'hard_sigmoid': // tfjs-layers' definition, so outputs match model.predict
      return plain((x) => tf.tidy(() => tf.clipByValue(tf.add(tf.mul(x, 0.2), 0.5), 0, 1)));
    case 'swish':
    case 'silu':
      return plain((x) => tf.tidy(() => tf.mul(x, tf.sigmoid(x))));
    case 'mish':
      return plain((x) => tf.tidy(() => tf.mul(x, tf.tanh(tf.softplus(x)))));
    case 'exponential':
      return plain((x) => tf.exp(x));
    default:
      throw new ConvlensError(`layer '${ctx.layerName}' uses activation '${name}', which convlens cannot execute.`, {
        field: `layer '${ctx.layerName}': activation`,
        fix: 'use relu, relu6, elu, leaky_relu, selu, sigmoid, tanh, softmax, softplus, softsign, hard_sigmoid, swish, mish, exponential or linear.',
      });
  }
}

const activationLayer: Builder = (ctx) => {
  const name = fused(ctx);
  return { spatial: { kind: 'pointwise' }, activation: name, compute: activation(name, ctx) };
};

const num = (v: unknown, fallback: number): number => (typeof v === 'number' ? v : fallback);

const BUILDERS: Record<string, Builder> = {
  Conv2D: conv2d,
  DepthwiseConv2D: depthwise,
  SeparableConv2D: separable,
  Dense: dense,
  BatchNormalization: batchNorm,
  Activation: activationLayer,
  ReLU: (ctx) => ({
    spatial: { kind: 'pointwise' },
    activation: 'relu',
    compute: withRule(kerasReluFamily((ctx.config.max_value as number | null | undefined) ?? null, num(ctx.config.negative_slope, 0), num(ctx.config.threshold, 0))),
  }),
  ReLU6: () => ({ spatial: { kind: 'pointwise' }, activation: 'relu6', compute: withRule(relu6Family()) }),
  // Keras 2 calls the slope `alpha`, Keras 3 `negative_slope`
  LeakyReLU: (ctx) => ({
    spatial: { kind: 'pointwise' },
    activation: 'leaky_relu',
    compute: withRule(leakyFamily(num(ctx.config.alpha, num(ctx.config.negative_slope, 0.3)))),
  }),
  ELU: (ctx) => ({ spatial: { kind: 'pointwise' }, activation: 'elu', compute: withRule(eluFamily(num(ctx.config.alpha, 1))) }),
  Softmax: (ctx) => {
    const axis = num(ctx.config.axis, -1);
    return { spatial: { kind: 'pointwise' }, activation: 'softmax', compute: ([x]) => tf.softmax(x, axis) };
  },
  MaxPooling2D: pool('max'),
  AveragePooling2D: pool('avg'),
  GlobalAveragePooling2D: globalPool('avg'),
  GlobalMaxPooling2D: globalPool('max'),
  Flatten: flatten,
  Reshape: reshape,
  Rescaling: rescaling,
  // inference: the noise and dropout layers pass their input through
  Dropout: () => ({ spatial: { kind: 'pointwise' }, compute: identity }),
  SpatialDropout2D: () => ({ spatial: { kind: 'pointwise' }, compute: identity }),
  GaussianNoise: () => ({ spatial: { kind: 'pointwise' }, compute: identity }),
  GaussianDropout: () => ({ spatial: { kind: 'pointwise' }, compute: identity }),
  AlphaDropout: () => ({ spatial: { kind: 'pointwise' }, compute: identity }),
  ZeroPadding2D: zeroPadding,
  Add: merge((a, b) => tf.add(a, b)),
  Subtract: merge((a, b) => tf.sub(a, b)),
  Multiply: merge((a, b) => tf.mul(a, b)),
  Average: merge((a, b) => tf.add(a, b), (sum, n) => tf.div(sum, n)),
  Maximum: merge((a, b) => tf.maximum(a, b)),
  Minimum: merge((a, b) => tf.minimum(a, b)),
  Concatenate: concatenate,
};

export const SUPPORTED_LAYER_CLASSES: readonly string[] = ['InputLayer', ...Object.keys(BUILDERS)];

// ---------------------------------------------------------------- helpers

/** Names close to `wanted`: same ignoring case, containing it, or within a small edit distance. */
function closeNames(wanted: string, names: string[]): string[] {
  const w = wanted.toLowerCase();
  const scored = names
    .map((n) => {
      const l = n.toLowerCase();
      const d = l === w ? 0 : l.includes(w) || w.includes(l) ? 1 : editDistance(l, w);
      return { n, d };
    })
    .filter(({ d }) => d <= Math.max(2, Math.floor(w.length / 3)))
    .sort((a, b) => a.d - b.d);
  return scored.slice(0, 5).map(({ n }) => n);
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}
