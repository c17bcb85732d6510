/**
 * `occlusion` (Zeiler & Fergus 2014): slide a grey patch over the image and map how much the
 * class probability drops with each position covered. Forward passes only, batched.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { commonParams, inputRange, meanFill, prepareItems, runAttribution, scoreNode, type Item } from '../engines/attribution';
import type { GraphExecutor } from '../model/graph';
import { defineTechnique } from '../technique';

/** Patch positions along one axis: every `stride`, plus the last one flush with the edge. */
export function positions(length: number, size: number, stride: number): number[] {
  const out: number[] = [];
  for (let p = 0; p + size <= length; p += stride) out.push(p);
  if (out.length === 0 || out[out.length - 1] + size < length) out.push(Math.max(0, length - size));
  return out;
}

/**
 * Per item: mean over the patches covering each pixel of (p(class) − p(class | patch there)).
 * Each chunk's probabilities are computed in a tidy and read after it with await (webgpu under
 * Node has no synchronous read); an item's chunks are all queued before the first read.
 */
export async function occlusionMaps(
  executor: GraphExecutor, items: Item[], shape: [number, number, number], size: number, stride: number, fill: number[], chunk = 256,
): Promise<Float32Array> {
  const [H, W, C] = shape;
  const ys = positions(H, size, stride);
  const xs = positions(W, size, stride);
  const P = ys.length * xs.length;
  const upTo = scoreNode(executor);
  const out = new Float32Array(items.length * H * W);
  for (const [i, it] of items.entries()) {
    const probs = new Float32Array(P + 1);
    const pending: { start: number; n: number; pr: tf.Tensor }[] = [];
    // image 0 is the untouched one; then every patch position
    for (let start = 0; start <= P; start += chunk) {
      const n = Math.min(chunk, P + 1 - start);
      const buf = new Float32Array(n * H * W * C);
      for (let j = 0; j < n; j++) {
        const img = buf.subarray(j * H * W * C, (j + 1) * H * W * C);
        img.set(it.image);
        const p = start + j - 1;
        if (p < 0) continue;
        const y0 = ys[Math.floor(p / xs.length)];
        const x0 = xs[p % xs.length];
        for (let y = y0; y < y0 + size && y < H; y++) for (let x = x0; x < x0 + size && x < W; x++) for (let c = 0; c < C; c++) img[(y * W + x) * C + c] = fill[c];
      }
      const pr = tf.tidy(() => tf.softmax(tf.reshape(executor.run(tf.tensor4d(buf, [n, H, W, C]), { upTo }).output, [n, -1])));
      pending.push({ start, n, pr });
    }
    try {
      for (const { start, n, pr } of pending) {
        const v = await pr.data();
        const k = v.length / n;
        for (let j = 0; j < n; j++) probs[start + j] = v[j * k + it.target];
      }
    } finally {
      tf.dispose(pending.map((p) => p.pr));
    }
    const sum = new Float32Array(H * W);
    const count = new Float32Array(H * W);
    for (let p = 0; p < P; p++) {
      const y0 = ys[Math.floor(p / xs.length)];
      const x0 = xs[p % xs.length];
      const drop = probs[0] - probs[p + 1];
      for (let y = y0; y < y0 + size && y < H; y++) for (let x = x0; x < x0 + size && x < W; x++) {
        sum[y * W + x] += drop;
        count[y * W + x] += 1;
      }
    }
    for (let q = 0; q < H * W; q++) out[i * H * W + q] = count[q] ? sum[q] / count[q] : 0;
  }
  return out;
}

export default defineTechnique({
  id: 'occlusion',
  title: 'Occlusion sensitivity',
  summary: 'Covers the image with a grey patch at every position and maps how much the probability of the class drops: a model-agnostic check of what matters.',
  family: 'attribution',
  version: 1,
  needs: ['features'],
  params: z.object({
    ...commonParams,
    size: z.number().int().min(1).optional().describe('patch side in pixels; default ⌈height / 7⌉'),
    stride: z.number().int().min(1).optional().describe('step between patch positions; default ⌈size / 2⌉'),
    fill: z.enum(['mean', 'mid-range']).default('mean').describe('patch value: the mean of the example images, or the middle of the input range'),
  }),
  async run(ctx) {
    const shape = ctx.dataset.imageShape;
    const [H, W, C] = shape;
    const size = Math.min(ctx.params.size ?? Math.ceil(H / 7), H, W);
    const stride = ctx.params.stride ?? Math.ceil(size / 2);
    const { items } = await prepareItems(ctx);
    const range = inputRange(ctx.dataset);
    const fill = ctx.params.fill === 'mean' ? meanFill(items, C) : new Array<number>(C).fill((range.min + range.max) / 2);
    const maps = await occlusionMaps(ctx.model.executor, items, shape, size, stride, fill);
    let at = 0;
    const data = await runAttribution(ctx, {
      technique: 'occlusion',
      items,
      kinds: [{ name: 'occlusion', title: `probability drop under a ${size}×${size} patch`, signed: true }],
      // the maps are already computed (forward passes only); hand them over batch by batch
      compute: (x) => {
        const B = x.shape[0];
        const t = tf.tensor3d(maps.subarray(at * H * W, (at + B) * H * W), [B, H, W]);
        at += B;
        return { maps: { occlusion: t } };
      },
      notes: [`patch ${size}×${size} px, stride ${stride} px, ${positions(H, size, stride).length * positions(W, size, stride).length} positions per image; fill ${fill.map((v) => v.toFixed(4)).join(', ')} (${ctx.params.fill === 'mean' ? 'mean of the example images' : 'middle of the input range'}); each pixel shows the mean drop of the softmax probability over the patches covering it (negative = covering it raised the probability)`],
    });
    return { ...data, size, stride, fill };
  },
});
