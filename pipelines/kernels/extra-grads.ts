/**
 * The remaining gradient gaps of TF.js 4.22 on the CPU backends (issue 7 item 1):
 *
 *   StridedSlice        no gradient registered in tfjs-core at all      → gradient config (scatterND)
 *   UnsortedSegmentSum  no wasm kernel, so gather's gradient fails there → wasm kernel (JS on the heap)
 *   ResizeBilinearGrad  cpu: returns shape [N,W,H,C], so the engine throws for H ≠ W; cpu and wasm
 *                       both ignore halfPixelCenters                     → cpu + wasm kernels
 *   ResizeNearestNeighborGrad  cpu: reads dy at the *image's* batch offset (wrong for batch > 1);
 *                       cpu and wasm ignore halfPixelCenters             → cpu + wasm kernels
 *   CropAndResize       no gradient anywhere                             → gradient config (image
 *                       only) + a cpu/wasm kernel 'ConvlensCropAndResizeGradImage'
 *   FusedBatchNorm      gradient tiles a per-channel vector to the full input (slow on wasm)
 *                                                                        → broadcasting gradient config
 *   Relu, Relu6         gradient is 3–5 kernels (Step, LessEqual, Cast, Mul) → one-pass kernel
 *                       (cpu: JS; wasm: one SIMD pass on the heap, simd.wat; without wasm SIMD
 *                       dy·step(x) and dy·(step(x) − step(x − 6)), native passes)
 *
 * The resize and crop gradients are written as the exact adjoints of the cpu backend's forward
 * kernels: they replay the forward's index and weight computation and scatter dy with the same
 * weights, so ⟨forward(x), dy⟩ = ⟨x, grad(dy)⟩ holds to rounding (the tests check that identity).
 * They run in JS on values read with readSync: these ops are cheap next to the convolutions.
 */
import * as tf from '@tensorflow/tfjs-core';
import { simdKernels } from './simd';

export { useSimdKernels } from './simd';

type Backend = tf.KernelBackend & {
  makeOutput?: (shape: number[], dtype: tf.DataType) => tf.TensorInfo;
  typedArrayFromHeap?: (info: tf.TensorInfo) => tf.backend_util.TypedArray;
  makeTensorInfo?: (shape: number[], dtype: tf.DataType, values: tf.backend_util.BackendValues) => tf.TensorInfo;
};

function req(inputs: tf.NamedTensorInfoMap, kernel: string, name: string): tf.TensorInfo {
  const t = inputs[name];
  if (!t) throw new Error(`${kernel} (pipelines/kernels/extra-grads.ts): input '${name}' is missing`);
  return t;
}

function values(backend: Backend, t: tf.TensorInfo): Float32Array | Int32Array {
  return backend.readSync(t.dataId) as Float32Array | Int32Array;
}

/** A float32 kernel output holding `data`, on the cpu (makeTensorInfo) or the wasm heap (makeOutput). */
function floatOutput(backend: Backend, shape: number[], data: Float32Array): tf.TensorInfo {
  if (backend.makeOutput && backend.typedArrayFromHeap) {
    const out = backend.makeOutput(shape, 'float32');
    (backend.typedArrayFromHeap(out) as Float32Array).set(data);
    return out;
  }
  if (!backend.makeTensorInfo) throw new Error('pipelines/kernels/extra-grads.ts: backend has neither makeOutput nor makeTensorInfo');
  return backend.makeTensorInfo(shape, 'float32', data);
}

// ---------- resize ----------

/** The cpu forward's source coordinate scale per axis (alignCorners uses (in−1)/(out−1)). */
function ratio(inSize: number, outSize: number, alignCorners: boolean): number {
  return alignCorners && outSize > 1 ? (inSize - 1) / (outSize - 1) : inSize / outSize;
}

/**
 * Adjoint of resizeBilinear (tfjs-backend-cpu's formula, halfPixelCenters included): each output
 * pixel is (1−ry)(1−rx)·TL + (1−ry)rx·TR + ry(1−rx)·BL + ry·rx·BR, so dy goes back with those weights.
 */
export function resizeBilinearGradValues(
  dy: ArrayLike<number>, imageShape: number[], dyShape: number[], alignCorners: boolean, halfPixelCenters: boolean,
): Float32Array {
  const [n, h, w, c] = imageShape as [number, number, number, number];
  const [, oh, ow] = dyShape as [number, number, number, number];
  const out = new Float32Array(n * h * w * c);
  const rr = ratio(h, oh, alignCorners);
  const rc = ratio(w, ow, alignCorners);
  const src = (r: number, i: number, size: number): [number, number, number] => {
    const f = halfPixelCenters ? r * (i + 0.5) - 0.5 : r * i;
    const lo = Math.max(0, Math.floor(f));
    return [lo, Math.min(size - 1, Math.ceil(f)), f - lo];
  };
  let k = 0;
  for (let b = 0; b < n; b++) {
    for (let y = 0; y < oh; y++) {
      const [top, bot, fy] = src(rr, y, h);
      for (let x = 0; x < ow; x++) {
        const [left, right, fx] = src(rc, x, w);
        const tl = ((b * h + top) * w + left) * c;
        const tr = ((b * h + top) * w + right) * c;
        const bl = ((b * h + bot) * w + left) * c;
        const br = ((b * h + bot) * w + right) * c;
        const wtl = (1 - fy) * (1 - fx);
        const wtr = (1 - fy) * fx;
        const wbl = fy * (1 - fx);
        const wbr = fy * fx;
        for (let d = 0; d < c; d++, k++) {
          const g = dy[k]!;
          out[tl + d] += g * wtl;
          out[tr + d] += g * wtr;
          out[bl + d] += g * wbl;
          out[br + d] += g * wbr;
        }
      }
    }
  }
  return out;
}

/** Adjoint of resizeNearestNeighbor (tfjs-backend-cpu's source-pixel rule): dy is summed into the pixel each output copied. */
export function resizeNearestGradValues(
  dy: ArrayLike<number>, imageShape: number[], dyShape: number[], alignCorners: boolean, halfPixelCenters: boolean,
): Float32Array {
  const [n, h, w, c] = imageShape as [number, number, number, number];
  const [, oh, ow] = dyShape as [number, number, number, number];
  const out = new Float32Array(n * h * w * c);
  const rr = ratio(h, oh, alignCorners);
  const rc = ratio(w, ow, alignCorners);
  const src = (r: number, i: number, size: number): number => {
    const f = halfPixelCenters ? r * (i + 0.5) : r * i;
    const s = Math.min(size - 1, alignCorners ? Math.round(f) : Math.floor(f));
    return halfPixelCenters ? Math.max(0, s) : s;
  };
  const cols = Int32Array.from({ length: ow }, (_, x) => src(rc, x, w));
  let k = 0;
  for (let b = 0; b < n; b++) {
    for (let y = 0; y < oh; y++) {
      const row = (b * h + src(rr, y, h)) * w;
      for (let x = 0; x < ow; x++) {
        const o = (row + cols[x]!) * c;
        for (let d = 0; d < c; d++, k++) out[o + d] += dy[k]!;
      }
    }
  }
  return out;
}

function resizeGradKernel(
  kernelName: string, backendName: string,
  f: (dy: ArrayLike<number>, imageShape: number[], dyShape: number[], alignCorners: boolean, halfPixelCenters: boolean) => Float32Array,
): tf.KernelConfig {
  return {
    kernelName,
    backendName,
    kernelFunc: ({ inputs, attrs, backend }) => {
      const be = backend as Backend;
      const images = req(inputs, kernelName, 'images');
      const dy = req(inputs, kernelName, 'dy');
      const a = attrs ?? {};
      const g = f(values(be, dy), images.shape, dy.shape, a.alignCorners === true, a.halfPixelCenters === true);
      return floatOutput(be, images.shape.slice(), g);
    },
  };
}

// ---------- crop and resize ----------

export const CROP_AND_RESIZE_GRAD_IMAGE = 'ConvlensCropAndResizeGradImage';

/**
 * Adjoint of cropAndResize with respect to the image (tfjs-backend-cpu's sampling: TF's
 * crop_and_resize_op). Samples outside the image took the extrapolation value, a constant,
 * so they send no gradient back. The coordinates are computed in float64 as the cpu kernel
 * does; wasm's forward works in float32, so for 'nearest' at an exact .5 tie it may have copied
 * the neighbouring pixel (measure zero for real boxes, but possible for round numbers).
 */
export function cropAndResizeGradImageValues(
  dy: ArrayLike<number>, boxes: ArrayLike<number>, boxInd: ArrayLike<number>, imageShape: number[],
  cropSize: [number, number], method: 'bilinear' | 'nearest',
): Float32Array {
  const [n, h, w, c] = imageShape as [number, number, number, number];
  const [ch, cw] = cropSize;
  const out = new Float32Array(n * h * w * c);
  const numBoxes = boxInd.length;
  for (let bx = 0; bx < numBoxes; bx++) {
    const [y1, x1, y2, x2] = [boxes[bx * 4]!, boxes[bx * 4 + 1]!, boxes[bx * 4 + 2]!, boxes[bx * 4 + 3]!];
    const b = boxInd[bx]!;
    if (b < 0 || b >= n) continue;
    const hs = ch > 1 ? ((y2 - y1) * (h - 1)) / (ch - 1) : 0;
    const ws = cw > 1 ? ((x2 - x1) * (w - 1)) / (cw - 1) : 0;
    for (let y = 0; y < ch; y++) {
      const yi = ch > 1 ? y1 * (h - 1) + y * hs : 0.5 * (y1 + y2) * (h - 1);
      if (yi < 0 || yi > h - 1) continue;
      for (let x = 0; x < cw; x++) {
        const xi = cw > 1 ? x1 * (w - 1) + x * ws : 0.5 * (x1 + x2) * (w - 1);
        if (xi < 0 || xi > w - 1) continue;
        const k = ((bx * ch + y) * cw + x) * c;
        if (method === 'bilinear') {
          const top = Math.floor(yi);
          const bot = Math.ceil(yi);
          const left = Math.floor(xi);
          const right = Math.ceil(xi);
          const fy = yi - top;
          const fx = xi - left;
          const tl = ((b * h + top) * w + left) * c;
          const tr = ((b * h + top) * w + right) * c;
          const bl = ((b * h + bot) * w + left) * c;
          const br = ((b * h + bot) * w + right) * c;
          for (let d = 0; d < c; d++) {
            const g = dy[k + d]!;
            out[tl + d] += g * (1 - fy) * (1 - fx);
            out[tr + d] += g * (1 - fy) * fx;
            out[bl + d] += g * fy * (1 - fx);
            out[br + d] += g * fy * fx;
          }
        } else {
          const o = ((b * h + Math.round(yi)) * w + Math.round(xi)) * c;
          for (let d = 0; d < c; d++) out[o + d] += dy[k + d]!;
        }
      }
    }
  }
  return out;
}

function cropGradKernel(backendName: string): tf.KernelConfig {
  return {
    kernelName: CROP_AND_RESIZE_GRAD_IMAGE,
    backendName,
    kernelFunc: ({ inputs, attrs, backend }) => {
      const be = backend as Backend;
      const k = CROP_AND_RESIZE_GRAD_IMAGE;
      const image = req(inputs, k, 'image');
      const a = attrs ?? {};
      const g = cropAndResizeGradImageValues(
        values(be, req(inputs, k, 'dy')), values(be, req(inputs, k, 'boxes')), values(be, req(inputs, k, 'boxInd')),
        image.shape, a.cropSize as [number, number], a.method as 'bilinear' | 'nearest',
      );
      return floatOutput(be, image.shape.slice(), g);
    },
  };
}

const cropAndResizeGrad: tf.GradConfig = {
  kernelName: 'CropAndResize',
  inputsToSave: ['image', 'boxes', 'boxInd'],
  gradFunc: (dy, saved, attrs) => {
    const [image, boxes, boxInd] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
    return {
      image: () => tf.engine().runKernel(CROP_AND_RESIZE_GRAD_IMAGE, { dy: dy as tf.Tensor, image, boxes, boxInd }, attrs) as tf.Tensor,
      boxes: () => {
        throw new Error('cropAndResize: the gradient with respect to the boxes is not implemented (pipelines/kernels/extra-grads.ts); keep the boxes constant (outside tf.grad)');
      },
      boxInd: () => tf.zerosLike(boxInd),
    };
  },
};

// ---------- strided slice ----------

/**
 * Gradient of stridedSlice: dy scattered back into zeros at the positions the slice read.
 * tf.slice_util.sliceInfo resolves masks, ellipsis and negative indices into a dense begin and
 * stride per input dimension; element k of dy (row-major over the selected ranges, which
 * new-axis and shrink dimensions of size 1 do not reorder) came from begin + k·stride.
 */
const stridedSliceGrad: tf.GradConfig = {
  kernelName: 'StridedSlice',
  inputsToSave: ['x'],
  gradFunc: (dy, saved, attrs) => {
    const [x] = saved as [tf.Tensor];
    const a = attrs as unknown as {
      begin: number[]; end: number[]; strides: number[]; beginMask: number; endMask: number;
      ellipsisMask: number; newAxisMask: number; shrinkAxisMask: number;
    };
    return {
      x: () => {
        const info = tf.slice_util.sliceInfo(
          x.shape, a.begin, a.end, a.strides, a.beginMask, a.endMask, a.ellipsisMask, a.newAxisMask, a.shrinkAxisMask,
        );
        const g = dy as tf.Tensor;
        const rank = x.shape.length;
        if (g.size === 0 || rank === 0) return tf.zeros(x.shape);
        // Selected count per dimension, as the forward computed it.
        const counts = x.shape.map((_, i) => {
          const len = info.end[i]! - info.begin[i]!;
          const s = info.strides[i]!;
          return len === 0 || len < 0 !== s < 0 ? 0 : Math.ceil(Math.abs(len) / Math.abs(s));
        });
        const m = counts.reduce((p, q) => p * q, 1);
        if (m !== g.size) {
          throw new Error(`StridedSlice gradient (pipelines/kernels/extra-grads.ts): ${m} selected elements but dy has ${g.size}`);
        }
        const idx = new Int32Array(m * rank);
        const pos = new Array<number>(rank).fill(0);
        for (let k = 0; k < m; k++) {
          for (let i = 0; i < rank; i++) idx[k * rank + i] = info.begin[i]! + pos[i]! * info.strides[i]!;
          for (let i = rank - 1; i >= 0; i--) {
            if (++pos[i]! < counts[i]!) break;
            pos[i] = 0;
          }
        }
        return tf.scatterND(tf.tensor2d(idx, [m, rank], 'int32'), tf.reshape(g, [m]), x.shape);
      },
    };
  },
};

// ---------- batch norm ----------

/**
 * FusedBatchNorm's gradient with broadcasting instead of tfjs-core's tile: core tiles the
 * per-channel 1/√(var+ε) to the full [N,H,W,C] shape before multiplying, and on wasm that Tile
 * took ~45 % of the default model's input gradient. Same maths otherwise (each term computed
 * only when asked for), and for every backend.
 */
const fusedBatchNormGrad: tf.GradConfig = {
  kernelName: 'FusedBatchNorm',
  inputsToSave: ['x', 'mean', 'variance', 'scale'],
  gradFunc: (dy, saved, attrs) => {
    const [x, mean, variance, scale] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor | undefined];
    const g = dy as tf.Tensor;
    const eps = (attrs as { varianceEpsilon: number }).varianceEpsilon;
    const axes = tf.backend_util.getReductionAxes(mean.shape, x.shape);
    const reduce = (t: tf.Tensor) => tf.reshape(mean.rank === 1 ? tf.sum(t, axes) : t, mean.shape);
    const rstd = () => tf.rsqrt(tf.add(variance, tf.scalar(eps)));
    const scaled = () => (scale ? tf.mul(g, scale) : g);
    return {
      // one per-channel factor, then a single broadcast multiply over dy
      x: () => tf.reshape(tf.mul(g, scale ? tf.mul(rstd(), scale) : rstd()), x.shape),
      mean: () => reduce(tf.mul(tf.neg(rstd()), scaled())),
      variance: () => {
        const r = rstd();
        return reduce(tf.mul(tf.mul(tf.mul(tf.mul(r, r), r), tf.scalar(-0.5)), tf.mul(tf.sub(x, mean), scaled())));
      },
      scale: () => reduce(tf.mul(g, tf.mul(tf.sub(x, mean), rstd()))),
      offset: () => reduce(g),
    };
  },
};

// ---------- relu, relu6 ----------

export const RELU_GRAD = 'ConvlensReluGrad';

/**
 * Relu/Relu6 gradients in one pass where the backend has the kernel below: core's are
 * dy·cast(step(x)) and dy·cast(lessEqual(x, 6)·step(x)), 3–5 kernels and as many full-size
 * temporaries per activation (on wasm Cast, Step and LessEqual together cost about as much as
 * the MobileNetV2 convolutions' backprop). Same values: dy where 0 < x (≤ 6), else 0.
 */
let reluFast = true;
/**
 * true (default): the fastest wasm path (one SIMD pass when available, else the native step
 * form); false: the one-pass JS loop on wasm too (as before the step form), for before/after
 * benchmarks. useSimdKernels(false) turns off only the SIMD pass (then true means the step form).
 */
export function useReluStepGrad(on: boolean): void {
  reluFast = on;
}

/** Which form the wasm backend's float32 Relu/Relu6 gradient takes now (for benchmarks and tests). */
export function wasmReluGradPath(backend: unknown = tf.findBackend('wasm')): 'simd' | 'steps' | 'js' {
  if (!reluFast) return 'js';
  return backend && simdKernels(backend) ? 'simd' : 'steps';
}

function reluGrad(kernelName: 'Relu' | 'Relu6', max: number): tf.GradConfig {
  return {
    kernelName,
    inputsToSave: ['x'],
    gradFunc: (dy, saved) => {
      const [x] = saved as [tf.Tensor];
      const g = dy as tf.Tensor;
      return {
        x: () => {
          const f32 = x.dtype === 'float32' && g.dtype === 'float32';
          if (f32 && tf.getBackend() === 'wasm' && wasmReluGradPath(tf.backend()) === 'steps') {
            // wasm without SIMD: 2 (Relu) or 4 (Relu6) native passes beat one JS pass over the heap
            // (JS loops on heap views ran ~6 ns/element: 10 ms vs 2.2 ms for [2,112,112,64], issue 7).
            // step(x − 6) = [x > 6] exactly: x − 6 is exact for x in [3, 12] (Sterbenz) and far from 0 elsewhere.
            return tf.tidy(() => max === Infinity
              ? tf.mul(g, tf.step(x))
              : tf.mul(g, tf.sub(tf.step(x), tf.step(tf.sub(x, max)))));
          }
          if (f32 && tf.getKernel(RELU_GRAD, tf.getBackend())) {
            // cpu: JS loop; wasm: the SIMD pass, or the JS loop under useReluStepGrad(false)
            return tf.engine().runKernel(RELU_GRAD, { dy: g, x }, { max }) as tf.Tensor;
          }
          const m = max === Infinity ? tf.step(x) : tf.mul(tf.lessEqual(x, max), tf.step(x));
          return tf.mul(g, tf.cast(m, 'float32'));
        },
      };
    },
  };
}
const reluGrads = [reluGrad('Relu', Infinity), reluGrad('Relu6', 6)];

function reluGradKernel(backendName: string): tf.KernelConfig {
  return {
    kernelName: RELU_GRAD,
    backendName,
    kernelFunc: ({ inputs, attrs, backend }) => {
      const be = backend as Backend;
      const dy = req(inputs, RELU_GRAD, 'dy');
      const x = req(inputs, RELU_GRAD, 'x');
      const max = (attrs ?? {}).max as number;
      const n = dy.shape.reduce((a, b) => a * b, 1);
      if (be.makeOutput && be.typedArrayFromHeap) {
        // Allocate first: growing the heap detaches views made earlier (pointers stay valid).
        const out = be.makeOutput(dy.shape.slice(), 'float32');
        const o = be.typedArrayFromHeap(out) as Float32Array;
        const d = be.typedArrayFromHeap(dy) as Float32Array;
        const v = be.typedArrayFromHeap(x) as Float32Array;
        const simd = reluFast ? simdKernels(be) : undefined;
        if (simd) {
          // One 4-lane pass in the backend's own memory; the views only supply the pointers.
          simd.reluGrad(d.byteOffset, v.byteOffset, o.byteOffset, n, max);
          return out;
        }
        for (let i = 0; i < n; i++) o[i] = v[i]! > 0 && v[i]! <= max ? d[i]! : 0;
        return out;
      }
      const d = values(be, dy);
      const v = values(be, x);
      const o = new Float32Array(n);
      for (let i = 0; i < n; i++) o[i] = v[i]! > 0 && v[i]! <= max ? d[i]! : 0;
      return floatOutput(be, dy.shape.slice(), o);
    },
  };
}

// ---------- unsorted segment sum (wasm) ----------

const unsortedSegmentSumWasm: tf.KernelConfig = {
  kernelName: 'UnsortedSegmentSum',
  backendName: 'wasm',
  kernelFunc: ({ inputs, attrs, backend }) => {
    const be = backend as Backend;
    const x = req(inputs, 'UnsortedSegmentSum', 'x');
    const ids = req(inputs, 'UnsortedSegmentSum', 'segmentIds');
    const numSegments = (attrs ?? {}).numSegments as number;
    const idsSize = ids.shape.reduce((p, q) => p * q, 1);
    const inner = x.shape.slice(ids.shape.length).reduce((p, q) => p * q, 1);
    const outShape = [numSegments, ...x.shape.slice(ids.shape.length)];
    const dtype = x.dtype === 'int32' ? 'int32' : 'float32';
    // Allocate first: growing the heap detaches views made earlier.
    const out = be.makeOutput!(outShape, dtype);
    const o = be.typedArrayFromHeap!(out) as Float32Array | Int32Array;
    const xs = be.typedArrayFromHeap!(x) as Float32Array | Int32Array;
    const is = be.typedArrayFromHeap!(ids) as Int32Array;
    o.fill(0);
    for (let k = 0; k < idsSize; k++) {
      const s = is[k]!;
      if (s < 0 || s >= numSegments) continue; // TF drops out-of-range ids
      const src = k * inner;
      const dst = s * inner;
      for (let j = 0; j < inner; j++) o[dst + j] += xs[src + j]!;
    }
    return out;
  },
};

// ---------- registration ----------

const kernels: tf.KernelConfig[] = [
  unsortedSegmentSumWasm,
  ...['cpu', 'wasm'].flatMap((b) => [
    resizeGradKernel('ResizeBilinearGrad', b, resizeBilinearGradValues),
    resizeGradKernel('ResizeNearestNeighborGrad', b, resizeNearestGradValues),
    cropGradKernel(b),
    reluGradKernel(b),
  ]),
];

const ourGrads: tf.GradConfig[] = [stridedSliceGrad, cropAndResizeGrad, fusedBatchNormGrad, ...reluGrads];
/** tfjs-core's own configs of the gradients we replaced, captured at the first registration. */
const coreGrads = new Map<string, tf.GradConfig | undefined>();

/**
 * 'core' puts tfjs-core's gradients back (FusedBatchNorm with its Tile, Relu/Relu6 with
 * Step/Cast; StridedSlice and CropAndResize then have none), 'convlens' ours: for the
 * before/after benchmark.
 */
export function useGradients(set: 'convlens' | 'core'): void {
  for (const g of ourGrads) {
    if (!coreGrads.has(g.kernelName)) coreGrads.set(g.kernelName, tf.getGradient(g.kernelName));
    const core = coreGrads.get(g.kernelName);
    // tfjs-core has no unregisterGradient; a config without gradFunc output acts as "none".
    tf.registerGradient(set === 'convlens' ? g : core ?? { kernelName: g.kernelName, gradFunc: () => ({}) });
  }
}

/**
 * Registers the gradient configs and the kernels above for one backend, after that backend's
 * package has been imported (its import registers its own kernels and would overwrite ours, with
 * a warning). Safe to call any number of times: a kernel is (re)registered only when the
 * registry holds someone else's.
 */
export function registerGradientFixes(backendName: string): void {
  for (const g of ourGrads) {
    if (!coreGrads.has(g.kernelName)) coreGrads.set(g.kernelName, tf.getGradient(g.kernelName));
    if (tf.getGradient(g.kernelName) !== g) tf.registerGradient(g);
  }
  for (const k of kernels) {
    if (k.backendName !== backendName) continue;
    const cur = tf.getKernel(k.kernelName, k.backendName);
    if (cur?.kernelFunc === k.kernelFunc) continue;
    // The replaced kernels are wrong (see the file comment), so unregister them first: that
    // also avoids tfjs's "overriding kernel" warning.
    if (cur) tf.unregisterKernel(k.kernelName, k.backendName);
    tf.registerKernel(k);
  }
}
