/**
 * Convolution gradients written with fast forward ops (conv2d, depthwiseConv2d, slices), so
 * that they run at forward-conv speed on the wasm backend (the conv2d filter gradient lives in
 * im2col.ts: it needs the wasm heap). Backend-agnostic: the tests run
 * them on cpu and wasm alike. NHWC only (the only layout wasm supports).
 *
 * Notation: x [N,H,W,Ci], filter [kh,kw,Ci,Co] (depthwise: [kh,kw,Ci,cm]), dy [N,oh,ow,Co].
 */
import * as tf from '@tensorflow/tfjs-core';

export type PadSpec = 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
type Pair = [number, number];

function pair(v: number | Pair): Pair {
  return typeof v === 'number' ? [v, v] : v;
}

function convInfo(
  xShape: readonly number[], filterShape: readonly number[], strides: number | Pair, pad: PadSpec,
  dilations: number | Pair, dimRoundingMode: 'floor' | 'round' | 'ceil' | undefined, depthwise: boolean,
): tf.backend_util.Conv2DInfo {
  return tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number], filterShape as [number, number, number, number],
    pair(strides), pair(dilations), pad, dimRoundingMode, depthwise,
  );
}

/**
 * The kh·kw kernel-tap views of the padded input: tap (a,b) is x_pad[:, a·dh + i·sh, b·dw + j·sw, :]
 * for i < oh, j < ow. Each is [N,oh,ow,Ci].
 */
function taps(x: tf.Tensor4D, info: tf.backend_util.Conv2DInfo): tf.Tensor4D[] {
  const { top, bottom, left, right } = info.padInfo;
  const xp = top || bottom || left || right ? tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]]) : x;
  const [n, , , c] = x.shape;
  const { outHeight: oh, outWidth: ow, strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw } = info;
  const out: tf.Tensor4D[] = [];
  for (let a = 0; a < info.filterHeight; a++) {
    for (let b = 0; b < info.filterWidth; b++) {
      const r0 = a * dh;
      const c0 = b * dw;
      out.push(
        sh === 1 && sw === 1
          ? tf.slice(xp, [0, r0, c0, 0], [n, oh, ow, c])
          : tf.stridedSlice(xp, [0, r0, c0, 0], [n, r0 + (oh - 1) * sh + 1, c0 + (ow - 1) * sw + 1, c], [1, sh, sw, 1]) as tf.Tensor4D,
      );
    }
  }
  return out;
}

/** Crops (negative) or zero-pads (positive) H and W of a 4-D tensor by the given amounts. */
function padOrCrop(t: tf.Tensor4D, top: number, bottom: number, left: number, right: number): tf.Tensor4D {
  let r = t;
  if (top < 0 || bottom < 0 || left < 0 || right < 0) {
    const [n, h, w, c] = r.shape;
    const ct = Math.max(0, -top);
    const cl = Math.max(0, -left);
    r = tf.slice(r, [0, ct, cl, 0], [n, h - ct - Math.max(0, -bottom), w - cl - Math.max(0, -right), c]);
  }
  if (top > 0 || bottom > 0 || left > 0 || right > 0) {
    r = tf.pad(r, [[0, 0], [Math.max(0, top), Math.max(0, bottom)], [Math.max(0, left), Math.max(0, right)], [0, 0]]);
  }
  return r;
}

/** Name of the optional zero-stuffing kernel (registered for wasm and cpu in index.ts). */
export const STRIDE_DILATE = 'ConvlensStrideDilate';

/**
 * Inserts sh−1 zero rows and sw−1 zero columns after every row/column of dy ([N,oh·sh,ow·sw,C]);
 * the trailing zeros are harmless (padOrCrop trims them when they fall outside). Uses the
 * one-pass kernel where the active backend has it: on wasm the 6-D pad below was ~30 ms per call.
 */
function dilateForStride(dy: tf.Tensor4D, sh: number, sw: number): tf.Tensor4D {
  if (sh === 1 && sw === 1) return dy;
  if (tf.getKernel(STRIDE_DILATE, tf.getBackend())) {
    return tf.engine().runKernel(STRIDE_DILATE, { x: dy }, { sh, sw }) as tf.Tensor4D;
  }
  const [n, oh, ow, c] = dy.shape;
  const t = tf.pad(tf.reshape(dy, [n, oh, 1, ow, 1, c]), [[0, 0], [0, 0], [0, sh - 1], [0, 0], [0, sw - 1], [0, 0]]);
  return tf.reshape(t, [n, oh * sh, ow * sw, c]);
}

/** One pass of dilateForStride over raw NHWC values (the kernel's body). */
export function strideDilateInto(out: Float32Array, x: Float32Array, shape: number[], sh: number, sw: number): void {
  const [n, oh, ow, c] = shape as [number, number, number, number];
  const W = ow * sw;
  out.fill(0);
  let k = 0;
  for (let b = 0; b < n; b++) {
    for (let i = 0; i < oh; i++) {
      const row = (b * oh * sh + i * sh) * W;
      for (let j = 0; j < ow; j++) {
        const o = (row + j * sw) * c;
        for (let d = 0; d < c; d++) out[o + d] = x[k++]!;
      }
    }
  }
}

/**
 * Prepares the upstream gradient for the "transposed conv as forward conv" trick: dx equals a
 * stride-1 conv (dilation d) of the stride-dilated dy, padded so that output row p reads
 * dy rows (p + top − a·d)/s, with the spatially flipped filter. Positive pads are returned for
 * the conv's own explicit padding (no separate Pad pass); negative ones are crops, done here.
 */
function paddedUpstream(dy: tf.Tensor4D, info: tf.backend_util.Conv2DInfo): { up: tf.Tensor4D; pad: tf.backend_util.ExplicitPadding } {
  const { strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw } = info;
  const d = dilateForStride(dy, sh, sw);
  const [, hd, wd] = d.shape;
  const pt = (info.filterHeight - 1) * dh - info.padInfo.top;
  const pl = (info.filterWidth - 1) * dw - info.padInfo.left;
  // Output length of the stride-1 conv must equal H: hd + pt + pb − (kh−1)·dh = H.
  const pb = info.inHeight - hd + info.padInfo.top;
  const pr = info.inWidth - wd + info.padInfo.left;
  const up = padOrCrop(d, Math.min(pt, 0), Math.min(pb, 0), Math.min(pl, 0), Math.min(pr, 0));
  return { up, pad: [[0, 0], [Math.max(pt, 0), Math.max(pb, 0)], [Math.max(pl, 0), Math.max(pr, 0)], [0, 0]] };
}

/** The spatially flipped filter (a no-op for 1×1 filters, the commonest case in MobileNets). */
function flip(filter: tf.Tensor4D): tf.Tensor4D {
  return filter.shape[0] === 1 && filter.shape[1] === 1 ? filter : tf.reverse(filter, [0, 1]);
}

/** dL/dx of conv2d as a forward conv2d (fast on wasm) of the dilated dy with the flipped, transposed filter. */
export function conv2dInputGrad(
  dy: tf.Tensor4D, filter: tf.Tensor4D, xShape: [number, number, number, number],
  strides: number | Pair, pad: PadSpec, dilations: number | Pair = 1,
  dimRoundingMode?: 'floor' | 'round' | 'ceil',
): tf.Tensor4D {
  return tf.tidy(() => {
    const info = convInfo(xShape, filter.shape, strides, pad, dilations, dimRoundingMode, false);
    const { up, pad: p } = paddedUpstream(dy, info);
    const wf = tf.transpose(flip(filter), [0, 1, 3, 2]); // [kh,kw,Co,Ci]
    return tf.conv2d(up, wf as tf.Tensor4D, 1, p, 'NHWC', [info.dilationHeight, info.dilationWidth]);
  });
}

/** dL/dfilter of depthwiseConv2d: per tap, Σ over N·oh·ow of x_tap[ci]·dy[ci·cm + m]. */
export function depthwiseFilterGrad(
  x: tf.Tensor4D, dy: tf.Tensor4D, filterShape: [number, number, number, number],
  strides: number | Pair, pad: PadSpec, dilations: number | Pair = 1,
  dimRoundingMode?: 'floor' | 'round' | 'ceil',
): tf.Tensor4D {
  return tf.tidy(() => {
    const info = convInfo(x.shape, filterShape, strides, pad, dilations, dimRoundingMode, true);
    const [kh, kw, ci, cm] = filterShape;
    const m = info.batchSize * info.outHeight * info.outWidth;
    const dy3 = tf.reshape(dy, [1, m, ci, cm]);
    const t = taps(x, info).map((v) => tf.reshape(v, [1, m, ci, 1]));
    const cols = t.length === 1 ? t[0]! : tf.concat(t, 0); // [T, M, Ci, 1]
    return tf.reshape(tf.sum(tf.mul(cols, dy3), 1), [kh, kw, ci, cm]);
  });
}

/** dL/dx of depthwiseConv2d as a forward depthwise conv of the dilated dy with the flipped filter. */
export function depthwiseInputGrad(
  dy: tf.Tensor4D, filter: tf.Tensor4D, xShape: [number, number, number, number],
  strides: number | Pair, pad: PadSpec, dilations: number | Pair = 1,
  dimRoundingMode?: 'floor' | 'round' | 'ceil',
): tf.Tensor4D {
  return tf.tidy(() => {
    const info = convInfo(xShape, filter.shape, strides, pad, dilations, dimRoundingMode, true);
    const [kh, kw, ci, cm] = filter.shape;
    const { up, pad: p } = paddedUpstream(dy, info);
    // Each of the Ci·cm dy channels is convolved with its own flipped tap; the cm results per
    // input channel are then summed.
    const wf = tf.reshape(flip(filter), [kh, kw, ci * cm, 1]) as tf.Tensor4D;
    const y = tf.depthwiseConv2d(up, wf, 1, p, 'NHWC', [info.dilationHeight, info.dilationWidth]);
    if (cm === 1) return y;
    const [n, h, w] = y.shape;
    return tf.sum(tf.reshape(y, [n, h, w, ci, cm]), 4) as tf.Tensor4D;
  });
}

/**
 * dL/dx of maxPool, routing each window's gradient to its first maximum (as the cpu backend
 * does), with the maximum starting at −∞ so all-negative windows are handled.
 */
/**
 * Walks every max-pool window and calls `visit(out, at)` with the flat NHWC index of the output
 * unit and of its input maximum (the first one on ties; the max starts at −∞, so windows whose
 * values are all negative still route to their largest element). `at` is −1 for a window that
 * lies wholly in the padding.
 */
export function forEachPoolArgmax(x: Float32Array, info: tf.backend_util.Conv2DInfo, visit: (out: number, at: number) => void): void {
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: c, outHeight: oh, outWidth: ow } = info;
  const { strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw } = info;
  const { effectiveFilterHeight: fh, effectiveFilterWidth: fw } = info;
  const { top, left } = info.padInfo;
  for (let b = 0; b < n; b++) {
    const xb = b * h * w * c;
    const yb = b * oh * ow * c;
    for (let i = 0; i < oh; i++) {
      const r0 = i * sh - top;
      for (let j = 0; j < ow; j++) {
        const c0 = j * sw - left;
        for (let ch = 0; ch < c; ch++) {
          let best = Number.NEGATIVE_INFINITY;
          let at = -1;
          for (let r = r0; r < r0 + fh; r += dh) {
            if (r < 0 || r >= h) continue;
            for (let q = c0; q < c0 + fw; q += dw) {
              if (q < 0 || q >= w) continue;
              const k = xb + (r * w + q) * c + ch;
              if (x[k] > best) {
                best = x[k];
                at = k;
              }
            }
          }
          visit(yb + (i * ow + j) * c + ch, at);
        }
      }
    }
  }
}

export function maxPoolGradInto(
  dx: Float32Array, x: Float32Array, dy: Float32Array, info: tf.backend_util.Conv2DInfo,
): void {
  dx.fill(0);
  forEachPoolArgmax(x, info, (out, at) => {
    if (at >= 0) dx[at] += dy[out];
  });
}
