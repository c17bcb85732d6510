/**
 * MaxPoolGrad for webgpu that sends each window's gradient to its FIRST maximum in row-major
 * order, as cpu (and our wasm kernel) do. tfjs-backend-webgpu's own kernel picks the last
 * maximum; after a ReLU whole windows are exact ties (all zero), and the deconvnet ReLU rule,
 * unlike the plain and guided ones, passes signal through them, so its maps depended on the
 * backend. Composed from ops (pad, strided slices, comparisons, reshapes), so it runs on the GPU.
 */
import * as tf from '@tensorflow/tfjs-core';

type Pair = [number, number] | number;
type Pad = 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
type WebGpuLike = tf.KernelBackend & { incRef(dataId: tf.DataId): void };

/** A kernel input as a Tensor, without stealing the engine's reference (freed by the tidy). */
function asTensor(info: tf.TensorInfo, backend: WebGpuLike): tf.Tensor4D {
  if (info instanceof tf.Tensor) return info as tf.Tensor4D;
  backend.incRef(info.dataId);
  return tf.engine().makeTensorFromTensorInfo(info) as tf.Tensor4D;
}

/** dx of max pooling: dy routed to the first maximum of each window (overlapping windows add up). */
export function maxPoolGradFirstMax(dy: tf.Tensor4D, x: tf.Tensor4D, info: tf.backend_util.Conv2DInfo): tf.Tensor4D {
  const { batchSize: B, inHeight: h, inWidth: w, inChannels: c, outHeight: oh, outWidth: ow, filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw } = info;
  const { top, left } = info.padInfo;
  // padded so that every window and every input row / column is inside
  const hp = Math.max((oh - 1) * sh + kh, top + h);
  const wp = Math.max((ow - 1) * sw + kw, left + w);
  const padded = tf.pad(x, [[0, 0], [top, hp - top - h], [left, wp - left - w], [0, 0]], -Infinity);
  const window = (dy0: number, dx0: number) =>
    tf.stridedSlice(padded, [0, dy0, dx0, 0], [B, dy0 + (oh - 1) * sh + 1, dx0 + (ow - 1) * sw + 1, c], [1, sh, sw, 1]) as tf.Tensor4D;
  const offsets: [number, number][] = [];
  for (let a = 0; a < kh; a++) for (let b = 0; b < kw; b++) offsets.push([a, b]);
  const slices = offsets.map(([a, b]) => window(a, b));
  const max = slices.reduce((p, q) => tf.maximum(p, q));
  let taken: tf.Tensor = tf.cast(tf.zerosLike(max), 'bool');
  let acc: tf.Tensor = tf.zeros([B, hp, wp, c]);
  offsets.forEach(([a, b], i) => {
    const first = tf.logicalAnd(tf.equal(slices[i], max), tf.logicalNot(taken));
    taken = tf.logicalOr(taken, first);
    const g = tf.where(first, dy, tf.zerosLike(dy));
    // spread the [oh, ow] grid back to stride spacing, then shift it to this window offset
    // (rank-4 pads only: webgpu's pad shader does not index rank 6)
    const rows = tf.reshape(tf.pad(tf.reshape(g, [B, oh, 1, ow * c]), [[0, 0], [0, 0], [0, sh - 1], [0, 0]]), [B * oh * sh, ow, 1, c]);
    const grid = tf.reshape(tf.pad(rows, [[0, 0], [0, 0], [0, sw - 1], [0, 0]]), [B, oh * sh, ow * sw, c]);
    const spread = tf.slice(grid, [0, 0, 0, 0], [B, (oh - 1) * sh + 1, (ow - 1) * sw + 1, c]);
    acc = tf.add(acc, tf.pad(spread, [[0, 0], [a, hp - a - (oh - 1) * sh - 1], [b, wp - b - (ow - 1) * sw - 1], [0, 0]]));
  });
  return tf.slice(acc, [0, top, left, 0], [B, h, w, c]) as tf.Tensor4D;
}

const maxPoolGradWebGpu: tf.KernelConfig = {
  kernelName: 'MaxPoolGrad',
  backendName: 'webgpu',
  kernelFunc: ({ inputs, attrs, backend }) => {
    const be = backend as unknown as WebGpuLike;
    const a = attrs ?? {};
    const t = tf.tidy(() => {
      const x = asTensor(inputs.input!, be);
      const info = tf.backend_util.computePool2DInfo(
        x.shape, a.filterSize as Pair, a.strides as Pair, 1, a.pad as Pad, a.dimRoundingMode as 'floor' | 'round' | 'ceil' | undefined,
      );
      return maxPoolGradFirstMax(asTensor(inputs.dy!, be), x, info);
    });
    // hand the result's data to the engine as the kernel output
    be.incRef(t.dataId);
    const out: tf.TensorInfo = { dataId: t.dataId, shape: t.shape.slice(), dtype: t.dtype };
    t.dispose();
    return out;
  },
};

/** Replaces webgpu's MaxPoolGrad (idempotent). */
export function registerWebGpuKernels(): void {
  const cur = tf.getKernel('MaxPoolGrad', 'webgpu');
  if (cur?.kernelFunc === maxPoolGradWebGpu.kernelFunc) return;
  if (cur) tf.unregisterKernel('MaxPoolGrad', 'webgpu');
  tf.registerKernel(maxPoolGradWebGpu);
}
