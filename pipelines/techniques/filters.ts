/**
 * `filters` (weights): the conv kernels themselves, as pictures. The first conv layer reads the
 * image, so its kernels are shown as small images (RGB for colour input, a diverging map for grey
 * input); deeper kernels mix many input channels and are shown per input channel, as a grid of
 * kh×kw tiles (rows = output channels, columns = input channels). Every layer has ONE symmetric
 * scale [-m, m], m = max |w| over the whole layer, so kernels of a layer compare by eye.
 *
 * Smoothness score of a layer: mean squared difference of horizontally and vertically neighbouring
 * taps (within each kh×kw slice) divided by the variance of all the layer's weights. Independent
 * noise gives E[(a − b)²] = 2σ², i.e. ≈ 2; slowly varying kernels → 0; a checkerboard reaches 4.
 */
import { z } from 'zod';
import { ConvlensError } from '../errors';
import { applyColormap, colorbarPng, imageGrid, toUint8Image, type RasterImage } from '../images';
import { defineTechnique, type ResultWriter } from '../technique';

/** Below this score the page calls a layer's kernels smooth, at or above it noisy (white noise ≈ 2). */
export const SMOOTH_THRESHOLD = 1;

/** [kh, kw, in, out], the Keras/TF.js Conv2D kernel layout. */
export type KernelShape = [number, number, number, number];

const at = (s: KernelShape, y: number, x: number, i: number, o: number): number => ((y * s[1] + x) * s[2] + i) * s[3] + o;

/** Variance of all weights (population); 0 for an empty kernel. */
function variance(w: Float32Array): number {
  if (w.length === 0) return 0;
  let mean = 0;
  for (const v of w) mean += v;
  mean /= w.length;
  let ss = 0;
  for (const v of w) ss += (v - mean) ** 2;
  return ss / w.length;
}

/**
 * Smoothness score (see the file comment) over the slices (in, out) selected by `only`
 * (default: all), normalised by the variance of the WHOLE kernel `w`. null when there are no
 * neighbouring taps (1×1 kernels); 0 when every weight is equal.
 */
export function smoothness(w: Float32Array, shape: KernelShape, only?: { out?: number }): number | null {
  const [kh, kw, cin, cout] = shape;
  const outs = only?.out !== undefined ? [only.out] : Array.from({ length: cout }, (_, o) => o);
  let sum = 0;
  let pairs = 0;
  for (const o of outs) {
    for (let i = 0; i < cin; i++) {
      for (let y = 0; y < kh; y++) {
        for (let x = 0; x < kw; x++) {
          const v = w[at(shape, y, x, i, o)];
          if (x + 1 < kw) { sum += (w[at(shape, y, x + 1, i, o)] - v) ** 2; pairs++; }
          if (y + 1 < kh) { sum += (w[at(shape, y + 1, x, i, o)] - v) ** 2; pairs++; }
        }
      }
    }
  }
  if (pairs === 0) return null;
  const v = variance(w);
  return v > 0 ? sum / pairs / v : 0;
}

/** Largest |w|: the half-width of the layer's symmetric scale. */
export function symmetricMax(w: Float32Array): number {
  let m = 0;
  for (const v of w) m = Math.max(m, Math.abs(v));
  return m;
}

/**
 * One output channel of a first-layer kernel as a kh×kw image. RGB input: each colour channel
 * maps w linearly from [-m, m] to 0..255 (0 → mid-grey 128), so a red patch means "responds to
 * red there" and a dark cyan one "responds to the absence of red". Grey input: the diverging
 * 'rdbu' map on [-m, m] (blue negative, white zero, red positive).
 */
export function firstLayerTile(w: Float32Array, shape: KernelShape, out: number, m: number): RasterImage {
  const [kh, kw, cin] = shape;
  const vals = new Float32Array(kh * kw * cin);
  for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++) for (let i = 0; i < cin; i++) vals[(y * kw + x) * cin + i] = w[at(shape, y, x, i, out)];
  if (cin === 3) return { pixels: toUint8Image(vals, kw, kh, 3, { min: -m, max: m }), width: kw, height: kh, channels: 3 };
  return { pixels: applyColormap(vals, 'rdbu', { min: -m, max: m }), width: kw, height: kh, channels: 3 };
}

/** Slice (in, out) of a kernel as a kh×kw 'rdbu' tile on [-m, m]. */
export function sliceTile(w: Float32Array, shape: KernelShape, input: number, out: number, m: number): RasterImage {
  const [kh, kw] = shape;
  const vals = new Float32Array(kh * kw);
  for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++) vals[y * kw + x] = w[at(shape, y, x, input, out)];
  return { pixels: applyColormap(vals, 'rdbu', { min: -m, max: m }), width: kw, height: kh, channels: 3 };
}

export interface ImageFile { file: string; width: number; height: number }

export interface FilterLayer {
  name: string;
  className: string;
  kernelShape: KernelShape;
  /** rgb / grey: first layer, one image per kernel; per-input-channel: grid of kh×kw slices. */
  mode: 'rgb' | 'grey' | 'per-input-channel';
  /** rgb-linear: each colour channel linear from min (0) to max (255), zero = mid-grey; rdbu: diverging. */
  scale: { map: 'rgb-linear' | 'rdbu'; min: number; max: number };
  legend: ImageFile;
  smoothness: number | null;
  verdict: 'smooth' | 'noisy' | null;
  /** the overview grid; in per-input-channel mode rows = `outChannels`, columns = `inChannels`. */
  grid: ImageFile & { rows: number; columns: number; upscale: number; outChannels: number[]; inChannels: number[] };
  /** first layer only: one image per output channel with its own score (against the layer's variance). */
  kernels?: (ImageFile & { channel: number; smoothness: number | null })[];
  /** raw kernel, float32 [kh, kw, in, out] (+ .json shape sidecar). */
  weightsFile: string;
}

export interface FiltersData {
  smoothThreshold: number;
  layers: FilterLayer[];
  /** conv layers not drawn (e.g. depthwise kernels), with why. */
  skipped: { name: string; reason: string }[];
}

const params = z.object({
  layers: z.array(z.string()).optional().describe('Conv2D layers to show; default: all, in model order'),
  maxOut: z.number().int().min(1).max(512).default(16).describe('deeper layers: output channels (grid rows) shown'),
  maxIn: z.number().int().min(1).max(512).default(16).describe('deeper layers: input channels (grid columns) shown'),
  maxFirst: z.number().int().min(1).max(1024).default(64).describe('first layer: kernels shown'),
  upscale: z.number().int().min(1).max(64).optional().describe('nearest-neighbour upscale of each weight; default: about 48 px per first-layer kernel, 24 px per deeper tile'),
  smoothThreshold: z.number().positive().default(SMOOTH_THRESHOLD).describe('scores below this are called smooth (white noise ≈ 2)'),
});

/** A file-name-safe folder per layer; the index keeps names unique. */
const folder = (i: number, name: string): string => `${i}-${name.replace(/[^A-Za-z0-9_.-]/g, '_')}`;

async function png(out: ResultWriter, name: string, img: RasterImage): Promise<ImageFile> {
  await out.png(name, img.pixels, img.width, img.height, img.channels);
  return { file: name, width: img.width, height: img.height };
}

export default defineTechnique({
  id: 'filters',
  title: 'Filters',
  summary: 'The learned convolution kernels drawn as images on one signed scale per layer, with a smoothness score.',
  family: 'weights',
  version: 1,
  params,
  async run(ctx): Promise<FiltersData> {
    const { executor, layersModel } = ctx.model;
    const convNodes = executor.nodes.filter((n) => ['Conv2D', 'DepthwiseConv2D', 'SeparableConv2D'].includes(n.className) && n.role !== 'activation');
    const skipped: FiltersData['skipped'] = [];
    let chosen = convNodes.filter((n) => {
      if (n.className === 'Conv2D') return true;
      skipped.push({ name: n.layerName, reason: `${n.className} kernels are per-channel; not drawn` });
      return false;
    });
    if (ctx.params.layers) {
      chosen = ctx.params.layers.map((name) => {
        const node = chosen.find((n) => n.layerName === name);
        if (!node) {
          throw new ConvlensError(`'${name}' is not a Conv2D layer of the model.`, {
            field: 'techniques.filters.layers', fix: `choose from: ${convNodes.filter((n) => n.className === 'Conv2D').map((n) => `'${n.layerName}'`).join(', ') || '(none)'}.`,
          });
        }
        return node;
      });
    }
    if (chosen.length === 0) throw new ConvlensError('the model has no Conv2D layer, so there are no filters to draw.', { field: 'model' });
    const firstConv = convNodes.find((n) => n.className === 'Conv2D')?.layerName;
    const threshold = ctx.params.smoothThreshold;
    const verdict = (s: number | null) => (s === null ? null : s < threshold ? 'smooth' : 'noisy');
    const layers: FilterLayer[] = [];

    for (const [li, node] of chosen.entries()) {
      const layer = layersModel.getLayer(node.layerName);
      // a Conv2D layer's only rank-4 weight is its kernel
      const kernelVar = layer.weights.find((v) => v.shape.length === 4);
      if (!kernelVar) throw new Error(`filters: layer '${node.layerName}' has no kernel weight`);
      const kernel = kernelVar.read(); // the variable itself: read, never dispose
      const shape = kernel.shape as KernelShape;
      const w = (await kernel.data()) as Float32Array;
      const [kh, kw, cin, cout] = shape;
      const m = symmetricMax(w);
      const dir = folder(li, node.layerName);
      const weightsFile = await ctx.out.float32(`${dir}/kernel`, w, shape);
      const score = smoothness(w, shape);
      const first = node.layerName === firstConv && (cin === 1 || cin === 3);

      if (first) {
        const up = ctx.params.upscale ?? Math.max(1, Math.round(48 / Math.max(kh, kw)));
        const outs = Array.from({ length: Math.min(cout, ctx.params.maxFirst) }, (_, o) => o);
        const tiles = outs.map((o) => firstLayerTile(w, shape, o, m));
        const kernels = [];
        for (const [j, o] of outs.entries()) {
          const big = imageGrid([tiles[j]], 1, { upscale: up });
          kernels.push({ ...(await png(ctx.out, `${dir}/kernel-${o}.png`, big)), channel: o, smoothness: smoothness(w, shape, { out: o }) });
        }
        const columns = Math.ceil(Math.sqrt(outs.length));
        const grid = imageGrid(tiles, columns, { upscale: up, gap: Math.max(1, Math.round(up / 4)), background: [90, 90, 90] });
        const map = cin === 3 ? 'rgb-linear' : 'rdbu';
        const legend = await colorbarPng(cin === 3 ? 'gray' : 'rdbu', { min: -m, max: m }, { width: 200, height: 30, label: cin === 3 ? 'weight (each colour channel)' : 'weight' });
        await ctx.out.file(`${dir}/legend.png`, legend);
        layers.push({
          name: node.layerName, className: node.className, kernelShape: shape, mode: cin === 3 ? 'rgb' : 'grey',
          scale: { map, min: -m, max: m }, legend: { file: `${dir}/legend.png`, width: 200, height: 30 },
          smoothness: score, verdict: verdict(score),
          grid: { ...(await png(ctx.out, `${dir}/grid.png`, grid)), rows: Math.ceil(outs.length / columns), columns, upscale: up, outChannels: outs, inChannels: Array.from({ length: cin }, (_, i) => i) },
          kernels, weightsFile,
        });
      } else {
        const up = ctx.params.upscale ?? Math.max(1, Math.round(24 / Math.max(kh, kw)));
        const outs = Array.from({ length: Math.min(cout, ctx.params.maxOut) }, (_, o) => o);
        const ins = Array.from({ length: Math.min(cin, ctx.params.maxIn) }, (_, i) => i);
        const tiles = outs.flatMap((o) => ins.map((i) => sliceTile(w, shape, i, o, m)));
        const grid = imageGrid(tiles, ins.length, { upscale: up, gap: Math.max(1, Math.round(up / 4)), background: [90, 90, 90] });
        const legend = await colorbarPng('rdbu', { min: -m, max: m }, { width: 200, height: 30, label: 'weight' });
        await ctx.out.file(`${dir}/legend.png`, legend);
        layers.push({
          name: node.layerName, className: node.className, kernelShape: shape, mode: 'per-input-channel',
          scale: { map: 'rdbu', min: -m, max: m }, legend: { file: `${dir}/legend.png`, width: 200, height: 30 },
          smoothness: score, verdict: verdict(score),
          grid: { ...(await png(ctx.out, `${dir}/grid.png`, grid)), rows: outs.length, columns: ins.length, upscale: up, outChannels: outs, inChannels: ins },
          weightsFile,
        });
      }
      ctx.progress(li + 1, chosen.length);
    }
    ctx.log(layers.map((l) => `${l.name}: smoothness ${l.smoothness?.toFixed(2) ?? 'n/a'} (${l.verdict ?? 'n/a'})`).join(', '));
    return { smoothThreshold: threshold, layers, skipped };
  },
});
