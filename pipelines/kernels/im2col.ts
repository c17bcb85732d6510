/**
 * Conv2DBackpropFilter for wasm: a (transposed) im2col written in JS straight into the wasm
 * heap, then one wasm matMul. wasm's own Slice/Transpose copy their whole input through JS per call (a 4-D
 * slice of a 3 M-element tensor took ~100 ms), so building the kh·kw tap slices from tf ops
 * cost ~10× the matMul; one JS pass over the heap costs about as much as the matMul.
 */
import * as tf from '@tensorflow/tfjs-core';

export interface WasmBackendLike {
  incRef(dataId: tf.DataId): void;
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(info: tf.TensorInfo): tf.backend_util.TypedArray;
  disposeData(dataId: tf.DataId): unknown;
}

/**
 * Transposed im2col: colsT[(a·kw + b)·Ci + c, m] = x_pad[n, i·sh + a·dh, j·sw + b·dw, c]. Built in
 * blocks of 64 output pixels so that both the reads (Ci-strided) and the writes (runs of 64)
 * stay in cache.
 */
export function im2colTInto(colsT: Float32Array, x: Float32Array, info: tf.backend_util.Conv2DInfo): void {
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: ci, outHeight: oh, outWidth: ow } = info;
  const { strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw } = info;
  const { filterHeight: kh, filterWidth: kw } = info;
  const { top, left } = info.padInfo;
  const m = n * oh * ow;
  const B = 64;
  const src = new Int32Array(B);
  for (let a = 0; a < kh; a++) {
    for (let bb = 0; bb < kw; bb++) {
      const rowBase = (a * kw + bb) * ci;
      for (let m0 = 0; m0 < m; m0 += B) {
        const len = Math.min(B, m - m0);
        for (let t = 0; t < len; t++) {
          const mm = m0 + t;
          const j = mm % ow;
          const rest = (mm - j) / ow;
          const i = rest % oh;
          const b = (rest - i) / oh;
          const r = i * sh - top + a * dh;
          const q = j * sw - left + bb * dw;
          src[t] = r >= 0 && r < h && q >= 0 && q < w ? ((b * h + r) * w + q) * ci : -1;
        }
        for (let c = 0; c < ci; c++) {
          const o = (rowBase + c) * m + m0;
          for (let t = 0; t < len; t++) {
            const s0 = src[t]!;
            colsT[o + t] = s0 >= 0 ? x[s0 + c]! : 0;
          }
        }
      }
    }
  }
}

/**
 * dL/dfilter [kh,kw,Ci,Co] of conv2d on the wasm backend (x, dy must live on it), for any
 * strides, padding and dilations described by `info`.
 */
export function wasmConv2dFilterGrad(
  x: tf.TensorInfo, dy: tf.Tensor, info: tf.backend_util.Conv2DInfo, backend: WasmBackendLike,
): tf.Tensor4D {
  const { filterHeight: kh, filterWidth: kw, inChannels: ci, outChannels: co } = info;
  const m = info.batchSize * info.outHeight * info.outWidth;
  const k = kh * kw * ci;
  const colsTInfo = backend.makeOutput([k, m], 'float32');
  // View only after the allocation: growing the heap detaches earlier views.
  im2colTInto(backend.typedArrayFromHeap(colsTInfo) as Float32Array, backend.typedArrayFromHeap(x) as Float32Array, info);
  const engine = tf.engine();
  return tf.tidy(() => {
    // The wrapper takes over the single reference makeOutput created; tidy disposes it.
    const colsT = engine.makeTensorFromTensorInfo(colsTInfo) as tf.Tensor2D;
    const dy2 = tf.reshape(dy, [m, co]);
    // [kh·kw·Ci, M] × [M, Co] is already the filter layout. This orientation (many rows, the
    // small dy as the packed right operand) ran ~1.6× faster than dyᵀ × cols, and wasm's
    // transposed matMuls are 10–50× slower still.
    return tf.reshape(tf.matMul(colsT, dy2 as tf.Tensor2D), [kh, kw, ci, co]);
  });
}
