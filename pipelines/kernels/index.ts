/**
 * Gradient kernels for the wasm backend, and a few faster forward ones (issue 7 item 1, issue 2 item 8).
 *
 * Mechanism: kernels registered with tf.registerKernel for backend 'wasm', not gradient
 * overrides. Every gradient path (tf.grad, tf.variableGrads, tfjs-layers' fit, the fused-conv
 * customGrad) ends in these kernel names, so one registration covers all of them and leaves
 * the cpu/webgpu gradients untouched. Registered:
 *   Conv2DBackpropFilter                 missing on wasm   → JS im2col on the heap + one matMul
 *   Conv2DBackpropInput                  ~10× slower than forward → forward conv of dilated dy
 *   DepthwiseConv2dNativeBackpropInput   missing           → forward depthwise conv of dilated dy
 *   DepthwiseConv2dNativeBackpropFilter  missing           → per-tap multiply + sum
 *   MaxPoolGrad                          wrong for all-negative windows → SIMD pass on the wasm heap
 *                                        (simd.wat), the JS loop where wasm SIMD is unavailable
 *   MaxPoolWithArgmax                    index 0 for windows whose max is ≤ 0 → the same JS walk
 *                                        (the explicit deconvnet's switches depend on it)
 * and forward kernels that wasm runs slowly (each falls back to wasm's own for other cases):
 *   Identity                             copies → shares the data
 *   Slice                                copies the whole input through JS → native copies per run
 *   Transpose (last two axes)            ~10× a tiled copy → simd.wat
 *   BatchMatMul with transposeA/B        10–45× the plain product → transposed copies + plain
 *   FusedBatchNorm (inference)           index arithmetic per element → one SIMD pass x·s + t
 *
 * The derived filters of the input-gradient kernels (transposed, flipped, stride-phase) are made
 * once per filter tensor and freed with it (filter-cache.ts): filters are constants in a gradient.
 *
 * The conv kernels compose tf ops (which run on wasm while wasm is active). They run inside
 * tf.tidy, so every intermediate is freed; the result's data gets an extra backend reference
 * before its Tensor wrapper is disposed, so the engine can wrap the returned TensorInfo.
 */
import * as tf from '@tensorflow/tfjs-core';
import { wasmConv2dFilterGrad, type WasmBackendLike } from './im2col';
import {
  conv2dInputGrad, depthwiseFilterGrad, depthwiseInputGrad, maxPoolGradInto, poolArgmaxInto, PHASE_INTERLEAVE, PHASE_INTERLEAVE_LIST, phaseInterleaveInto, phaseInterleaveListInto, STRIDE_DILATE, strideDilateInto,
} from './conv-grads';
import { useGradients } from './extra-grads';
import { simdKernels, type SimdKernels } from './simd';

export { conv2dInputGrad, depthwiseFilterGrad, depthwiseInputGrad } from './conv-grads';
export { wasmConv2dFilterGrad } from './im2col';
export { derivedFilter, derivedFilterCount, useFilterCache } from './filter-cache';
export { simdKernels, useSimdKernels } from './simd';
export {
  useGradients, useReluStepGrad, registerGradientFixes, resizeBilinearGradValues, resizeNearestGradValues, cropAndResizeGradImageValues,
} from './extra-grads';


type Rounding = 'floor' | 'round' | 'ceil' | undefined;
type Shape4 = [number, number, number, number];
type Pair = [number, number] | number;
type Pad = 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;

/** Inputs reach kernels as Tensors when called through ops; wrap bare TensorInfos without stealing a reference. */
function asTensor(info: tf.TensorInfo, backend: WasmBackendLike): tf.Tensor4D {
  if (info instanceof tf.Tensor) return info as tf.Tensor4D;
  backend.incRef(info.dataId); // balanced by the dispose at the end of the surrounding tidy
  return tf.engine().makeTensorFromTensorInfo(info) as tf.Tensor4D;
}

/** Hands a tensor computed from ops back to the engine as a kernel output. */
function toOutput(t: tf.Tensor, backend: WasmBackendLike): tf.TensorInfo {
  backend.incRef(t.dataId);
  const out: tf.TensorInfo = { dataId: t.dataId, shape: t.shape.slice(), dtype: t.dtype };
  t.dispose();
  return out;
}

function req(inputs: tf.NamedTensorInfoMap, name: string): tf.TensorInfo {
  const t = inputs[name];
  if (!t) throw new Error(`wasm gradient kernel: input '${name}' is missing`);
  return t;
}

function nhwcOnly(kernel: string, dataFormat: string | undefined): void {
  if (dataFormat !== undefined && dataFormat !== 'NHWC') {
    throw new Error(`${kernel} on wasm: only NHWC is supported (got ${dataFormat})`);
  }
}

function composed(
  kernelName: string,
  run: (inputs: tf.NamedTensorInfoMap, attrs: tf.NamedAttrMap, backend: WasmBackendLike) => tf.Tensor,
): tf.KernelConfig {
  return {
    kernelName,
    backendName: 'wasm',
    kernelFunc: ({ inputs, attrs, backend }) => {
      const be = backend as unknown as WasmBackendLike;
      const t = tf.tidy(() => run(inputs, attrs ?? {}, be));
      return toOutput(t, be);
    },
  };
}

/**
 * out = x[begin : begin + size] (row-major, any rank): the axes after the last one that is cut
 * are copied whole, so each copy is one contiguous run; the axes before it are walked odometer-style.
 */
export function sliceInto(out: tf.backend_util.TypedArray, x: tf.backend_util.TypedArray, shape: number[], begin: number[], size: number[]): void {
  const r = shape.length;
  if (r === 0) {
    out[0] = x[0]!;
    return;
  }
  if (size.some((v) => v === 0)) return;
  let cut = r - 1; // the last axis that is not taken whole
  while (cut > 0 && begin[cut] === 0 && size[cut] === shape[cut]) cut--;
  const strides = tf.util.computeStrides(shape);
  const stride = (axis: number) => (axis === r - 1 ? 1 : strides[axis]!);
  const run = size[cut]! * stride(cut);
  const outer = size.slice(0, cut).reduce((p, q) => p * q, 1);
  const idx = new Array<number>(cut).fill(0);
  for (let o = 0; o < outer; o++) {
    let src = begin[cut]! * stride(cut);
    for (let axis = 0; axis < cut; axis++) src += (begin[axis]! + idx[axis]!) * stride(axis);
    out.set(x.subarray(src, src + run), o * run);
    for (let axis = cut - 1; axis >= 0 && ++idx[axis]! === size[axis]; axis--) idx[axis] = 0;
  }
}

/** x with its last two axes swapped, as a new backend buffer (one tiled copy in the heap). */
function transposeLast2(simd: SimdKernels, be: WasmBackendLike, x: tf.TensorInfo): tf.TensorInfo {
  const r = x.shape.length;
  const [rows, cols] = [x.shape[r - 2]!, x.shape[r - 1]!];
  // Allocate first: allocation may grow the wasm heap and detach earlier views.
  const out = be.makeOutput([...x.shape.slice(0, r - 2), cols, rows], x.dtype);
  const size = x.shape.reduce((p, q) => p * q, 1);
  if (size > 0) {
    simd.transposeLast2(be.typedArrayFromHeap(x).byteOffset, be.typedArrayFromHeap(out).byteOffset, size / (rows * cols), rows, cols);
  }
  return out;
}

const kernels: tf.KernelConfig[] = [
  {
    // wasm's Identity copies the tensor; the engine clones every input it saves for the
    // backward pass (430 copies in one MobileNetV2 gradient). Share the data instead, as the
    // cpu backend does: tensors are immutable, and wasm's own Reshape shares data the same way.
    kernelName: 'Identity',
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend }) => {
      const x = req(inputs, 'x');
      if (x.dtype === 'string') throw new Error('Identity on wasm: string tensors are not supported');
      (backend as unknown as WasmBackendLike).incRef(x.dataId);
      return { dataId: x.dataId, shape: x.shape.slice(), dtype: x.dtype };
    },
  },
  {
    kernelName: PHASE_INTERLEAVE,
    backendName: 'wasm',
    kernelFunc: ({ inputs, attrs, backend }) => {
      const be = backend as unknown as WasmBackendLike;
      const x = req(inputs, 'x');
      const { sh, sw, h, w, channelMajor } = attrs as { sh: number; sw: number; h: number; w: number; channelMajor: boolean };
      const [n, , , cs] = x.shape as Shape4;
      // Allocate first: allocation may grow the wasm heap and detach earlier views.
      const out = be.makeOutput([n, h, w, cs / (sh * sw)], 'float32');
      phaseInterleaveInto(be.typedArrayFromHeap(out) as Float32Array, be.typedArrayFromHeap(x) as Float32Array, x.shape, sh, sw, h, w, channelMajor);
      return out;
    },
  },
  {
    kernelName: PHASE_INTERLEAVE_LIST,
    backendName: 'wasm',
    kernelFunc: ({ inputs, attrs, backend }) => {
      const be = backend as unknown as WasmBackendLike;
      const { sh, sw, h, w } = attrs as { sh: number; sw: number; h: number; w: number };
      const xs = Array.from({ length: sh * sw }, (_, i) => req(inputs, `x${i}`));
      const [n, , , c] = xs[0]!.shape as Shape4;
      // Allocate first: allocation may grow the wasm heap and detach earlier views.
      const out = be.makeOutput([n, h, w, c], 'float32');
      phaseInterleaveListInto(be.typedArrayFromHeap(out) as Float32Array, xs.map((x) => be.typedArrayFromHeap(x) as Float32Array), xs[0]!.shape, sh, sw, h, w);
      return out;
    },
  },
  {
    kernelName: STRIDE_DILATE,
    backendName: 'wasm',
    kernelFunc: ({ inputs, attrs, backend }) => {
      const be = backend as unknown as WasmBackendLike;
      const x = req(inputs, 'x');
      const { sh, sw } = attrs as { sh: number; sw: number };
      const [n, oh, ow, c] = x.shape as Shape4;
      // Allocate first: allocation may grow the wasm heap and detach earlier views.
      const out = be.makeOutput([n, oh * sh, ow * sw, c], 'float32');
      strideDilateInto(be.typedArrayFromHeap(out) as Float32Array, be.typedArrayFromHeap(x) as Float32Array, x.shape, sh, sw);
      return out;
    },
  },
  composed('Conv2DBackpropFilter', (inputs, attrs, be) => {
    nhwcOnly('Conv2DBackpropFilter', attrs.dataFormat as string | undefined);
    const x = req(inputs, 'x');
    const info = tf.backend_util.computeConv2DInfo(
      x.shape as Shape4, attrs.filterShape as Shape4, attrs.strides as Pair, 1, attrs.pad as Pad,
      attrs.dimRoundingMode as Rounding,
    );
    return wasmConv2dFilterGrad(x, asTensor(req(inputs, 'dy'), be), info, be);
  }),
  composed('Conv2DBackpropInput', (inputs, attrs, be) => {
    nhwcOnly('Conv2DBackpropInput', attrs.dataFormat as string | undefined);
    return conv2dInputGrad(
      asTensor(req(inputs, 'dy'), be), asTensor(req(inputs, 'filter'), be), attrs.inputShape as Shape4,
      attrs.strides as Pair, attrs.pad as Pad, 1, attrs.dimRoundingMode as Rounding,
    );
  }),
  composed('DepthwiseConv2dNativeBackpropFilter', (inputs, attrs, be) =>
    depthwiseFilterGrad(
      asTensor(req(inputs, 'x'), be), asTensor(req(inputs, 'dy'), be), attrs.filterShape as Shape4,
      attrs.strides as Pair, attrs.pad as Pad, attrs.dilations as Pair, attrs.dimRoundingMode as Rounding,
    )),
  composed('DepthwiseConv2dNativeBackpropInput', (inputs, attrs, be) =>
    depthwiseInputGrad(
      asTensor(req(inputs, 'dy'), be), asTensor(req(inputs, 'filter'), be), attrs.inputShape as Shape4,
      attrs.strides as Pair, attrs.pad as Pad, attrs.dilations as Pair, attrs.dimRoundingMode as Rounding,
    )),
  {
    // wasm's own Slice reads the whole input out of the heap (readSync copies it) and then walks
    // it in JS: 33 ms for a 1-pixel crop of [2,112,112,96]. Here: one native copy per contiguous
    // run (the innermost sliced axis and everything after it), heap to heap (issue 7).
    kernelName: 'Slice',
    backendName: 'wasm',
    kernelFunc: (args) => {
      const be = args.backend as unknown as WasmBackendLike;
      const x = req(args.inputs, 'x');
      if (x.dtype === 'string') return originals.get('Slice')!.kernelFunc(args);
      const a = (args.attrs ?? {}) as { begin: number | number[]; size: number | number[] };
      const [begin, size] = tf.slice_util.parseSliceParams(x as tf.Tensor, a.begin, a.size);
      // Allocate first: allocation may grow the wasm heap and detach earlier views.
      const out = be.makeOutput(size, x.dtype);
      sliceInto(be.typedArrayFromHeap(out), be.typedArrayFromHeap(x), x.shape, begin, size);
      return out;
    },
  },
  {
    // Swapping the last two axes (the transposes of every matMul gradient, Gram matrices): one
    // tiled copy in the heap; wasm's own Transpose took 5.5 ms for [1,4096,96] (issue 7)
    kernelName: 'Transpose',
    backendName: 'wasm',
    kernelFunc: (args) => {
      const be = args.backend as unknown as WasmBackendLike;
      const x = req(args.inputs, 'x');
      const perm = ((args.attrs ?? {}).perm as number[] | undefined) ?? [];
      const r = x.shape.length;
      const swapsLast2 = r >= 2 && perm.length === r && perm.every((p, i) => p === (i < r - 2 ? i : i === r - 2 ? r - 1 : r - 2));
      const simd = simdKernels(be);
      if (!simd || !swapsLast2 || (x.dtype !== 'float32' && x.dtype !== 'int32')) return originals.get('Transpose')!.kernelFunc(args);
      return transposeLast2(simd, be, x);
    },
  },
  {
    // wasm's BatchMatMul is fast only without transposes (XNNPACK); with transposeA or transposeB
    // (every matMul gradient) it took 10–45× longer on the Gram-matrix shapes of texture synthesis,
    // which made those gradients 90 % of a step. Transposed copies + the plain kernel (issue 7).
    kernelName: 'BatchMatMul',
    backendName: 'wasm',
    kernelFunc: (args) => {
      const be = args.backend as unknown as WasmBackendLike;
      const { transposeA, transposeB } = (args.attrs ?? {}) as { transposeA?: boolean; transposeB?: boolean };
      const a = req(args.inputs, 'a');
      const b = req(args.inputs, 'b');
      const simd = simdKernels(be);
      const own = originals.get('BatchMatMul')!.kernelFunc;
      if (!simd || (!transposeA && !transposeB) || a.dtype !== 'float32' || b.dtype !== 'float32') return own(args);
      const temps: tf.TensorInfo[] = [];
      const plain = (t: tf.TensorInfo, transposed: boolean | undefined) => {
        if (!transposed) return t;
        const c = transposeLast2(simd, be, t);
        temps.push(c);
        return c;
      };
      try {
        return own({ ...args, inputs: { a: plain(a, transposeA), b: plain(b, transposeB) }, attrs: { ...args.attrs, transposeA: false, transposeB: false } });
      } finally {
        for (const t of temps) be.disposeData(t.dataId);
      }
    },
  },
  {
    // Inference BatchNorm as one SIMD pass x·s + t per channel (s = γ/√(σ² + ε), t = β − μ·s, as
    // tf.nn.batch_normalization computes it): wasm's own kernel does index arithmetic per element
    // and took 1 ms for [16,28,28,16], twice a broadcast multiply and add together (issue 7).
    kernelName: 'FusedBatchNorm',
    backendName: 'wasm',
    kernelFunc: (args) => {
      const { inputs, attrs, backend } = args;
      const be = backend as unknown as WasmBackendLike;
      const x = req(inputs, 'x');
      const c = x.shape[x.shape.length - 1] ?? 1;
      const params = [inputs.mean, inputs.variance, inputs.offset, inputs.scale];
      const simd = simdKernels(be);
      // anything but float32 with per-channel vectors (e.g. scalars, broadcast shapes): wasm's own
      if (!simd || x.dtype !== 'float32' || params.some((p) => p && (p.dtype !== 'float32' || p.shape.reduce((a, b) => a * b, 1) !== c))) {
        return originals.get('FusedBatchNorm')!.kernelFunc(args);
      }
      const eps = ((attrs ?? {}).varianceEpsilon as number | undefined) ?? 1e-3;
      // Allocate first: allocation may grow the wasm heap and detach earlier views.
      const out = be.makeOutput(x.shape.slice(), 'float32');
      const st = be.makeOutput([2 * c], 'float32');
      try {
        const [mean, variance, offset, scale] = params.map((p) => (p ? (be.typedArrayFromHeap(p) as Float32Array) : undefined));
        const sts = be.typedArrayFromHeap(st) as Float32Array;
        for (let k = 0; k < c; k++) {
          const s = (scale ? scale[k]! : 1) / Math.sqrt(variance![k]! + eps);
          sts[k] = s;
          sts[c + k] = (offset ? offset[k]! : 0) - mean![k]! * s;
        }
        const xs = be.typedArrayFromHeap(x);
        simd.channelAffine(xs.byteOffset, sts.byteOffset, sts.byteOffset + 4 * c, be.typedArrayFromHeap(out).byteOffset, xs.length / c, c);
      } finally {
        be.disposeData(st.dataId);
      }
      return out;
    },
  },
  {
    kernelName: 'MaxPoolGrad',
    backendName: 'wasm',
    kernelFunc: ({ inputs, attrs, backend }) => {
      const be = backend as unknown as WasmBackendLike;
      const dy = req(inputs, 'dy');
      const input = req(inputs, 'input');
      const a = attrs ?? {};
      const info = tf.backend_util.computePool2DInfo(
        input.shape as Shape4, a.filterSize as Pair, a.strides as Pair, 1, a.pad as Pad, a.dimRoundingMode as Rounding,
      );
      // Allocate first: allocation may grow the wasm heap and detach earlier views.
      const dx = be.makeOutput(input.shape.slice(), 'float32');
      const simd = simdKernels(be);
      if (simd) {
        // one pass in the heap, 4 channels at a time (the JS walk is branchy: ~6 ns per element)
        const dxs = be.typedArrayFromHeap(dx) as Float32Array;
        dxs.fill(0);
        simd.maxPoolGrad(
          be.typedArrayFromHeap(input).byteOffset, be.typedArrayFromHeap(dy).byteOffset, dxs.byteOffset,
          info.batchSize, info.inHeight, info.inWidth, info.inChannels, info.outHeight, info.outWidth,
          info.effectiveFilterHeight, info.effectiveFilterWidth, info.strideHeight, info.strideWidth,
          info.dilationHeight, info.dilationWidth, info.padInfo.top, info.padInfo.left,
        );
        return dx;
      }
      maxPoolGradInto(
        be.typedArrayFromHeap(dx) as Float32Array,
        be.typedArrayFromHeap(input) as Float32Array,
        be.typedArrayFromHeap(dy) as Float32Array,
        info,
      );
      return dx;
    },
  },
  {
    kernelName: 'MaxPoolWithArgmax',
    backendName: 'wasm',
    kernelFunc: ({ inputs, attrs, backend }) => {
      const be = backend as unknown as WasmBackendLike;
      const x = req(inputs, 'x');
      const a = attrs ?? {};
      const info = tf.backend_util.computePool2DInfo(x.shape as Shape4, a.filterSize as Pair, a.strides as Pair, 1, a.pad as Pad);
      const outShape = [info.batchSize, info.outHeight, info.outWidth, info.outChannels];
      // Allocate first: allocation may grow the wasm heap and detach earlier views.
      const values = be.makeOutput(outShape, 'float32');
      const indexes = be.makeOutput(outShape, 'int32');
      const xs = be.typedArrayFromHeap(x) as Float32Array;
      const vs = be.typedArrayFromHeap(values) as Float32Array;
      const is = be.typedArrayFromHeap(indexes) as Int32Array;
      const perImage = info.inHeight * info.inWidth * info.inChannels;
      const at = new Int32Array(is.length);
      poolArgmaxInto(at, xs, info);
      for (let out = 0; out < at.length; out++) {
        const k = at[out]!;
        vs[out] = k >= 0 ? xs[k]! : Number.NEGATIVE_INFINITY;
        // tf.maxPoolWithArgmax's convention: (y·W + x)·C + c, plus b·H·W·C only when asked
        is[out] = k < 0 || a.includeBatchInIndex ? k : k % perImage;
      }
      return [values, indexes];
    },
  },
];

let registered = false;
/** wasm's own configs of the kernels we replaced (missing ones are absent), for before/after benchmarks. */
const originals = new Map<string, tf.KernelConfig>();

/** Registers the wasm gradient kernels (idempotent; replaces wasm's own MaxPoolGrad and Conv2DBackpropInput). */
export function registerWasmKernels(): void {
  if (registered) return;
  for (const k of kernels) {
    const own = tf.getKernel(k.kernelName, 'wasm');
    // Unregister first so that overriding wasm's own kernel does not log a warning.
    if (own) {
      originals.set(k.kernelName, own);
      tf.unregisterKernel(k.kernelName, 'wasm');
    }
    tf.registerKernel(k);
  }
  registered = true;
}

/**
 * Switches between our wasm gradient kernels and gradient configs ('convlens') and TF.js's own
 * ('tfjs': the slow or wrong ones back, the missing ones missing again). For bench/gradients.ts's
 * before/after table in one process; after registerWasmKernels().
 */
export function useWasmKernels(set: 'convlens' | 'tfjs'): void {
  if (!registered) throw new Error('useWasmKernels: call registerWasmKernels() (initBackend(\'wasm\')) first');
  useGradients(set === 'tfjs' ? 'core' : 'convlens');
  for (const k of kernels) {
    if (tf.getKernel(k.kernelName, 'wasm')) tf.unregisterKernel(k.kernelName, 'wasm');
    const own = originals.get(k.kernelName);
    if (set === 'convlens') tf.registerKernel(k);
    else if (own) tf.registerKernel(own);
  }
}
