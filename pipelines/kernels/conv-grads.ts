/**
 * Convolution gradients written with fast forward ops (conv2d, depthwiseConv2d, slices), so
 * that they run at forward-conv speed on the wasm backend (the conv2d filter gradient lives in
 * im2col.ts: it needs the wasm heap). Backend-agnostic: the tests run
 * them on cpu and wasm alike. NHWC only (the only layout wasm supports).
 *
 * Notation: x [N,H,W,Ci], filter [kh,kw,Ci,Co] (depthwise: [kh,kw,Ci,cm]), dy [N,oh,ow,Co].
 */
import * as tf from '@tensorflow/tfjs-core';
import { derivedFilter } from './filter-cache';

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

/**
 * Stride phases (sub-pixel decomposition) of a transposed conv along one axis, for stride s > 1
 * and dilation 1. Output pixel p = s·q + r (phase r) only receives the taps a ≡ r + padBefore
 * (mod s), so every phase is a stride-1 correlation of dy (no inserted zeros) with a short
 * filter. All phases share one filter length L and one leading pad P (shorter filters get
 * leading zeros), so they stack as extra output channels of ONE forward conv.
 * tap[r][j] is the original tap for phase r and correlation offset j, or −1 for a zero.
 */
interface AxisPhases { s: number; L: number; P: number; Pb: number; Q: number; tap: number[][] }
function axisPhases(k: number, s: number, padBefore: number, inSize: number, outSize: number): AxisPhases | undefined {
  const T = Math.ceil(k / s);
  const c: number[] = [];
  const ar: number[] = [];
  for (let r = 0; r < s; r++) {
    ar.push((r + padBefore) % s);
    c.push(Math.floor((r + padBefore) / s));
  }
  const cMin = Math.min(...c);
  const L = T + Math.max(...c) - cMin;
  const P = T - 1 - cMin;
  if (P < 0) return undefined; // would need a crop: use the dilated path
  const Q = Math.ceil(inSize / s);
  const Pb = Math.max(0, Q - 1 + L - 1 - P - (outSize - 1));
  // dx_r[q] = Σ_t dy[q + c_r − t]·w[a_r + s·t] = Σ_j dy[q + j − P]·f_r[j] with j = c_r − cMin + T − 1 − t.
  const tap = c.map((cr, r) => {
    const row = new Array<number>(L).fill(-1);
    for (let t = 0; t < T; t++) {
      const a = ar[r]! + s * t;
      if (a < k) row[cr - cMin + T - 1 - t] = a;
    }
    return row;
  });
  return { s, L, P, Pb, Q, tap };
}

/** Name of the optional phase-interleaving kernel (registered for wasm in index.ts). */
export const PHASE_INTERLEAVE = 'ConvlensPhaseInterleave';

/**
 * [N,Qh,Qw,C·sh·sw] phase outputs → [N,H,W,C]: out[b, qh·sh+rh, qw·sw+rw, c] = in[…, channel],
 * channel = (rh·sw + rw)·C + c ('phase-major', conv2d) or c·sh·sw + rh·sw + rw ('channel-major',
 * depthwise with channel multiplier sh·sw). Rows/columns past H, W are dropped.
 */
export function phaseInterleaveInto(
  out: Float32Array, x: Float32Array, inShape: number[], sh: number, sw: number, h: number, w: number, channelMajor: boolean,
): void {
  const [n, qh, qw, cs] = inShape as [number, number, number, number];
  const ph = sh * sw;
  const c = cs / ph;
  for (let b = 0; b < n; b++) {
    for (let i = 0; i < qh; i++) {
      for (let rh = 0; rh < sh; rh++) {
        const y = i * sh + rh;
        if (y >= h) break;
        for (let j = 0; j < qw; j++) {
          const src = ((b * qh + i) * qw + j) * cs;
          for (let rw = 0; rw < sw; rw++) {
            const xx = j * sw + rw;
            if (xx >= w) break;
            const phase = rh * sw + rw;
            const dst = ((b * h + y) * w + xx) * c;
            if (channelMajor) for (let d = 0; d < c; d++) out[dst + d] = x[src + d * ph + phase]!;
            else {
              const s0 = src + phase * c;
              for (let d = 0; d < c; d++) out[dst + d] = x[s0 + d]!;
            }
          }
        }
      }
    }
  }
}

function phaseInterleave(t: tf.Tensor4D, sh: number, sw: number, h: number, w: number, channelMajor: boolean): tf.Tensor4D {
  if (tf.getKernel(PHASE_INTERLEAVE, tf.getBackend())) {
    return tf.engine().runKernel(PHASE_INTERLEAVE, { x: t }, { sh, sw, h, w, channelMajor }) as tf.Tensor4D;
  }
  const [n, qh, qw, cs] = t.shape;
  const c = cs / (sh * sw);
  const r = channelMajor ? tf.reshape(t, [n, qh, qw, c, sh, sw]) : tf.reshape(t, [n, qh, qw, sh, sw, c]);
  const p = channelMajor ? tf.transpose(r, [0, 1, 4, 2, 5, 3]) : tf.transpose(r, [0, 1, 3, 2, 4, 5]);
  const full = tf.reshape(p, [n, qh * sh, qw * sw, c]) as tf.Tensor4D;
  return qh * sh === h && qw * sw === w ? full : tf.slice(full, [0, 0, 0, 0], [n, h, w, c]) as tf.Tensor4D;
}

/** Both axes' phases, or undefined where the phase path does not apply (dilation > 1, stride 1, odd pads). */
function phases(info: tf.backend_util.Conv2DInfo): [AxisPhases, AxisPhases] | undefined {
  const { strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw } = info;
  if ((sh === 1 && sw === 1) || dh !== 1 || dw !== 1) return undefined;
  const ah = axisPhases(info.filterHeight, sh, info.padInfo.top, info.inHeight, info.outHeight);
  const aw = axisPhases(info.filterWidth, sw, info.padInfo.left, info.inWidth, info.outWidth);
  return ah && aw ? [ah, aw] : undefined;
}

/**
 * The strided conv2d input gradient by stride phases: one forward conv of dy (not zero-stuffed)
 * with all sh·sw phase filters stacked as output channels, then one interleaving pass. Avoids the
 * dilated path's (sh·sw−1)/(sh·sw) multiplications by inserted zeros. Reads the filter's values.
 */
function conv2dInputGradPhases(dy: tf.Tensor4D, filter: tf.Tensor4D, info: tf.backend_util.Conv2DInfo, [ah, aw]: [AxisPhases, AxisPhases]): tf.Tensor4D {
  const f = derivedFilter(filter, `conv phases ${phaseKey(ah, aw)}`, () => phaseFilter(filter, ah, aw)) as tf.Tensor4D;
  const y = tf.conv2d(dy, f, 1, [[0, 0], [ah.P, ah.Pb], [aw.P, aw.Pb], [0, 0]]);
  return phaseInterleave(y, ah.s, aw.s, info.inHeight, info.inWidth, false);
}

/** What a derived phase filter depends on besides the filter: each axis's stride, length and taps (filter-cache key). */
function phaseKey(ah: AxisPhases, aw: AxisPhases): string {
  return JSON.stringify([ah.s, ah.L, ah.tap, aw.s, aw.L, aw.tap]);
}

/** The sh·sw phase filters of a conv2d filter stacked as output channels: [Lh, Lw, Co, phases·Ci]. */
function phaseFilter(filter: tf.Tensor4D, ah: AxisPhases, aw: AxisPhases): tf.Tensor4D {
  const [, kw, ci, co] = filter.shape;
  const w = filter.dataSync() as Float32Array;
  const ph = ah.s * aw.s;
  const big = new Float32Array(ah.L * aw.L * co * ph * ci); // [Lh, Lw, Co, phases·Ci]
  for (let rh = 0; rh < ah.s; rh++) for (let rw = 0; rw < aw.s; rw++) {
    const phase = rh * aw.s + rw;
    for (let jh = 0; jh < ah.L; jh++) {
      const a = ah.tap[rh]![jh]!;
      if (a < 0) continue;
      for (let jw = 0; jw < aw.L; jw++) {
        const b = aw.tap[rw]![jw]!;
        if (b < 0) continue;
        for (let o = 0; o < co; o++) {
          const dst = ((jh * aw.L + jw) * co + o) * ph * ci + phase * ci;
          const src = (a * kw + b) * ci * co + o;
          for (let i = 0; i < ci; i++) big[dst + i] = w[src + i * co]!;
        }
      }
    }
  }
  return tf.tensor4d(big, [ah.L, aw.L, co, ph * ci]);
}

/** Name of the optional kernel interleaving separate phase tensors x0…x{sh·sw−1} (wasm, index.ts). */
export const PHASE_INTERLEAVE_LIST = 'ConvlensPhaseInterleaveList';

/** out[b, qh·sh+rh, qw·sw+rw, c] = phase_{rh·sw+rw}[b, qh, qw, c], cropped to H×W. */
export function phaseInterleaveListInto(out: Float32Array, xs: Float32Array[], inShape: number[], sh: number, sw: number, h: number, w: number): void {
  const [n, qh, qw, c] = inShape as [number, number, number, number];
  // All on one heap (wasm): copyWithin moves each pixel's channels without a subarray per pixel.
  const heap = xs.every((x) => x.buffer === out.buffer) ? new Float32Array(out.buffer) : undefined;
  const o0 = heap ? out.byteOffset >> 2 : 0;
  for (let b = 0; b < n; b++) {
    for (let i = 0; i < qh; i++) {
      for (let rh = 0; rh < sh; rh++) {
        const y = i * sh + rh;
        if (y >= h) break;
        for (let rw = 0; rw < sw; rw++) {
          const x = xs[rh * sw + rw]!;
          const xb = (heap ? x.byteOffset >> 2 : 0) + ((b * qh + i) * qw) * c;
          const ob = o0 + ((b * h + y) * w + rw) * c;
          const jn = Math.min(qw, Math.floor((w - 1 - rw) / sw) + 1); // columns j·sw + rw < w
          for (let j = 0; j < jn; j++) {
            const src = xb + j * c;
            if (heap) heap.copyWithin(ob + j * sw * c, src, src + c);
            else out.set(x.subarray(src, src + c), ob + j * sw * c);
          }
        }
      }
    }
  }
}

/**
 * The strided depthwise input gradient by stride phases (channel multiplier 1): one depthwise
 * conv per phase (XNNPACK's depthwise with a channel multiplier of sh·sw was several times
 * slower than sh·sw plain ones), then one interleaving pass.
 */
function depthwiseInputGradPhases(dy: tf.Tensor4D, filter: tf.Tensor4D, info: tf.backend_util.Conv2DInfo, [ah, aw]: [AxisPhases, AxisPhases]): tf.Tensor4D {
  const [, kw, c] = filter.shape;
  const outs: tf.Tensor4D[] = [];
  const tapKey = phaseKey(ah, aw);
  for (let rh = 0; rh < ah.s; rh++) for (let rw = 0; rw < aw.s; rw++) outs.push(tf.depthwiseConv2d(dy, derivedFilter(filter, `depthwise phase ${rh},${rw} ${tapKey}`, () => {
    const w = filter.dataSync() as Float32Array;
    const f = new Float32Array(ah.L * aw.L * c); // [Lh, Lw, C, 1]
    for (let jh = 0; jh < ah.L; jh++) {
      const a = ah.tap[rh]![jh]!;
      if (a < 0) continue;
      for (let jw = 0; jw < aw.L; jw++) {
        const b = aw.tap[rw]![jw]!;
        if (b < 0) continue;
        for (let d = 0; d < c; d++) f[(jh * aw.L + jw) * c + d] = w[(a * kw + b) * c + d]!;
      }
    }
    return tf.tensor4d(f, [ah.L, aw.L, c, 1]);
  }) as tf.Tensor4D, 1, [[0, 0], [ah.P, ah.Pb], [aw.P, aw.Pb], [0, 0]]));
  if (tf.getKernel(PHASE_INTERLEAVE_LIST, tf.getBackend())) {
    const inputs: tf.NamedTensorMap = {};
    outs.forEach((t, i) => (inputs[`x${i}`] = t));
    return tf.engine().runKernel(PHASE_INTERLEAVE_LIST, inputs, { sh: ah.s, sw: aw.s, h: info.inHeight, w: info.inWidth }) as tf.Tensor4D;
  }
  return phaseInterleave(tf.concat(outs, 3), ah.s, aw.s, info.inHeight, info.inWidth, false);
}

/** dL/dx of conv2d as a forward conv2d (fast on wasm) of the dilated dy with the flipped, transposed filter. */
export function conv2dInputGrad(
  dy: tf.Tensor4D, filter: tf.Tensor4D, xShape: [number, number, number, number],
  strides: number | Pair, pad: PadSpec, dilations: number | Pair = 1,
  dimRoundingMode?: 'floor' | 'round' | 'ceil',
): tf.Tensor4D {
  return tf.tidy(() => {
    const info = convInfo(xShape, filter.shape, strides, pad, dilations, dimRoundingMode, false);
    const ph = phases(info);
    if (ph) return conv2dInputGradPhases(dy, filter, info, ph);
    const { up, pad: p } = paddedUpstream(dy, info);
    // [kh,kw,Co,Ci], once per filter on wasm (filter-cache.ts)
    const wf = derivedFilter(filter, 'flipped transposed', () => tf.transpose(flip(filter), [0, 1, 3, 2])) as tf.Tensor4D;
    const dil: Pair = [info.dilationHeight, info.dilationWidth];
    if (filter.shape[2] === 1) {
      // one input channel (a grayscale model's first layer): a conv with a single output channel
      // wastes most of XNNPACK's output tile; [kh,kw,Co,1] is also a depthwise filter, and
      // depthwise + channel sum took 0.7 ms where the conv took 1.3 ms on [16,28,28,16] (issue 7)
      return tf.sum(tf.depthwiseConv2d(up, wf, 1, p, 'NHWC', dil), 3, true);
    }
    return tf.conv2d(up, wf, 1, p, 'NHWC', dil);
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
    const ph = cm === 1 ? phases(info) : undefined;
    if (ph) return depthwiseInputGradPhases(dy, filter, info, ph);
    const { up, pad: p } = paddedUpstream(dy, info);
    // Each of the Ci·cm dy channels is convolved with its own flipped tap; the cm results per
    // input channel are then summed.
    const wf = derivedFilter(filter, 'depthwise flipped', () => tf.reshape(flip(filter), [kh, kw, ci * cm, 1])) as tf.Tensor4D;
    const y = tf.depthwiseConv2d(up, wf, 1, p, 'NHWC', [info.dilationHeight, info.dilationWidth]);
    if (cm === 1) return y;
    const [n, h, w] = y.shape;
    return tf.sum(tf.reshape(y, [n, h, w, ci, cm]), 4) as tf.Tensor4D;
  });
}

/**
 * The argmax of every max-pool window: `at[out]` = the flat NHWC index in `x` of the output
 * unit's input maximum (the first one on ties, row-major; the max starts at −∞, so windows whose
 * values are all negative still route to their largest element), −1 for a window that lies
 * wholly in the padding. Channels are the innermost loop: each tap is one contiguous run of C
 * values compared against C running maxima (a closure per window cost ~27 ns per window, issue 7).
 */
export function poolArgmaxInto(at: Int32Array, x: Float32Array, info: tf.backend_util.Conv2DInfo): void {
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: c, outHeight: oh, outWidth: ow } = info;
  const { strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw } = info;
  const { effectiveFilterHeight: fh, effectiveFilterWidth: fw } = info;
  const { top, left } = info.padInfo;
  const best = new Float32Array(c);
  for (let b = 0; b < n; b++) {
    const xb = b * h * w * c;
    for (let i = 0; i < oh; i++) {
      const r0 = i * sh - top;
      for (let j = 0; j < ow; j++) {
        const c0 = j * sw - left;
        const o = ((b * oh + i) * ow + j) * c;
        for (let ch = 0; ch < c; ch++) {
          best[ch] = Number.NEGATIVE_INFINITY;
          at[o + ch] = -1;
        }
        for (let r = r0; r < r0 + fh; r += dh) {
          if (r < 0 || r >= h) continue;
          for (let q = c0; q < c0 + fw; q += dw) {
            if (q < 0 || q >= w) continue;
            const k = xb + (r * w + q) * c;
            for (let ch = 0; ch < c; ch++) {
              const v = x[k + ch]!;
              if (v > best[ch]!) {
                best[ch] = v;
                at[o + ch] = k + ch;
              }
            }
          }
        }
      }
    }
  }
}

/** reused between calls: allocating a fresh zeroed array per call cost a third of the kernel */
let argmaxScratch = new Int32Array(0);

/**
 * dL/dx of maxPool, routing each window's gradient to its first maximum (as the cpu backend
 * does), with the maximum starting at −∞ so all-negative windows are handled.
 */
export function maxPoolGradInto(
  dx: Float32Array, x: Float32Array, dy: Float32Array, info: tf.backend_util.Conv2DInfo,
): void {
  if (argmaxScratch.length < dy.length) argmaxScratch = new Int32Array(dy.length);
  const at = argmaxScratch.subarray(0, dy.length);
  poolArgmaxInto(at, x, info);
  dx.fill(0);
  for (let out = 0; out < at.length; out++) {
    const k = at[out]!;
    if (k >= 0) dx[k] += dy[out]!;
  }
}
