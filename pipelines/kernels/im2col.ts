/**
 * Conv2DBackpropFilter for wasm: an im2col written in JS straight into the wasm heap, then one
 * wasm matMul. wasm's own Slice/Transpose copy their whole input through JS per call (a 4-D
 * slice of a 3 M-element tensor took ~100 ms), so building the kh·kw tap slices from tf ops
 * cost ~10× the matMul; one JS pass over the heap costs about as much as the matMul.
 */
import * as tf from '@tensorflow/tfjs-core';

export interface WasmBackendLike {
  incRef(dataId: tf.DataId): void;
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(info: tf.TensorInfo): tf.backend_util.TypedArray;
}

/** cols[m, (a·kw + b)·Ci + c] = x_pad[n, i·sh + a·dh, j·sw + b·dw, c], m = (n·oh + i)·ow + j; zero outside x. */
export function im2colInto(cols: Float32Array, x: Float32Array, info: tf.backend_util.Conv2DInfo): void {
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: ci, outHeight: oh, outWidth: ow } = info;
  const { strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw } = info;
  const { filterHeight: kh, filterWidth: kw } = info;
  const { top, left } = info.padInfo;
  let o = 0;
  for (let b = 0; b < n; b++) {
    const xb = b * h * w * ci;
    for (let i = 0; i < oh; i++) {
      for (let j = 0; j < ow; j++) {
        for (let a = 0; a < kh; a++) {
          const r = i * sh - top + a * dh;
          const rowOk = r >= 0 && r < h;
          for (let bb = 0; bb < kw; bb++) {
            const q = j * sw - left + bb * dw;
            if (!rowOk || q < 0 || q >= w) {
              cols.fill(0, o, o + ci);
            } else {
              const src = xb + (r * w + q) * ci;
              if (ci >= 16) cols.set(x.subarray(src, src + ci), o);
              else for (let c = 0; c < ci; c++) cols[o + c] = x[src + c];
            }
            o += ci;
          }
        }
      }
    }
  }
}

/** out[c, m] = v[m, c] for a [rows, cols] matrix, blocked for cache locality. */
export function transposeInto(out: Float32Array, v: Float32Array, rows: number, cols: number): void {
  const B = 64;
  for (let r0 = 0; r0 < rows; r0 += B) {
    const r1 = Math.min(rows, r0 + B);
    for (let c = 0; c < cols; c++) {
      const ob = c * rows;
      for (let r = r0; r < r1; r++) out[ob + r] = v[r * cols + c];
    }
  }
}

/**
 * dL/dfilter [kh,kw,Ci,Co] of conv2d on the wasm backend (x, dy must live on it), for any
 * strides, padding and dilations described by `info`.
 */
export function wasmConv2dFilterGrad(
  x: tf.TensorInfo, dy: tf.TensorInfo, info: tf.backend_util.Conv2DInfo, backend: WasmBackendLike,
): tf.Tensor4D {
  const { filterHeight: kh, filterWidth: kw, inChannels: ci, outChannels: co } = info;
  const m = info.batchSize * info.outHeight * info.outWidth;
  const k = kh * kw * ci;
  const colsInfo = backend.makeOutput([m, k], 'float32');
  const dyTInfo = backend.makeOutput([co, m], 'float32');
  // Views only after every allocation: growing the heap detaches earlier views.
  im2colInto(backend.typedArrayFromHeap(colsInfo) as Float32Array, backend.typedArrayFromHeap(x) as Float32Array, info);
  transposeInto(backend.typedArrayFromHeap(dyTInfo) as Float32Array, backend.typedArrayFromHeap(dy) as Float32Array, m, co);
  const engine = tf.engine();
  // These wrappers take over the single reference makeOutput created; tidy disposes them.
  return tf.tidy(() => {
    const cols = engine.makeTensorFromTensorInfo(colsInfo) as tf.Tensor2D;
    const dyT = engine.makeTensorFromTensorInfo(dyTInfo) as tf.Tensor2D;
    const g = tf.matMul(dyT, cols); // [Co, kh·kw·Ci]; untransposed operands: wasm's transposed matMul is slow
    return tf.reshape(tf.transpose(g), [kh, kw, ci, co]);
  });
}
