import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildExecutor, type GraphExecutor } from '../pipelines/model/graph';
import { fieldBounds, receptiveFields, samePadBefore } from '../pipelines/model/receptive-field';
import type { ReceptiveField } from '../pipelines/types';
import { seededImages, setSeededWeights } from './fixtures/models';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

type Rect = { top: number; bottom: number; left: number; right: number };
type Sym = tfl.SymbolicTensor;

/** Centre unit of a node's output grid. */
function centreOf(exec: GraphExecutor, node: string): [number, number] {
  const [h, w] = exec.node(node).outputShape;
  return [Math.floor((h - 1) / 2), Math.floor((w - 1) / 2)];
}

/** Nonzero set of d(centre unit of `node`, summed over channels)/d(input), over channels. */
function gradientSupport(exec: GraphExecutor, node: string, x: tf.Tensor4D): boolean[][] {
  const [cy, cx] = centreOf(exec, node);
  const g = tf.grad((v: tf.Tensor) => {
    const out = exec.run(v as tf.Tensor4D, { upTo: node }).output as tf.Tensor4D;
    return tf.sum(tf.slice(out, [0, cy, cx, 0], [1, 1, 1, -1]));
  })(x);
  const mag = tf.tidy(() => tf.sum(tf.abs(g), [0, 3]));
  const rows = mag.arraySync() as number[][];
  tf.dispose([g, mag]);
  return rows.map((r) => r.map((v) => v > 0));
}

/**
 * Max pooling passes gradient to one input per window, hiding the rest of the field; instead
 * raise one input pixel at a time (a batch holding every pixel) and see which raises change
 * the centre unit. With positive weights a raised pixel inside the field always wins some max.
 */
function raiseSupport(exec: GraphExecutor, node: string, base: tf.Tensor4D): boolean[][] {
  const [, h, w, c] = base.shape;
  const [cy, cx] = centreOf(exec, node);
  const diffs = tf.tidy(() => {
    const bumps = tf.reshape(tf.mul(tf.oneHot(tf.range(0, h * w, 1, 'int32'), h * w), 100), [h * w, h, w, 1]);
    const raised = tf.add(tf.tile(base, [h * w, 1, 1, 1]), tf.tile(bumps, [1, 1, 1, c]));
    const unit = (x: tf.Tensor4D) => tf.sum(tf.slice(exec.run(x, { upTo: node }).output as tf.Tensor4D, [0, cy, cx, 0], [-1, 1, 1, -1]), [1, 2, 3]);
    return tf.abs(tf.sub(unit(raised as tf.Tensor4D), unit(base)));
  });
  const d = diffs.dataSync();
  diffs.dispose();
  return Array.from({ length: h }, (_, i) => Array.from({ length: w }, (_, j) => d[i * w + j] > 1e-4));
}

function boundingBox(support: boolean[][]): Rect | undefined {
  let box: Rect | undefined;
  support.forEach((row, i) =>
    row.forEach((on, j) => {
      if (!on) return;
      box = box
        ? { top: Math.min(box.top, i), bottom: Math.max(box.bottom, i), left: Math.min(box.left, j), right: Math.max(box.right, j) }
        : { top: i, bottom: i, left: j, right: j };
    }),
  );
  return box;
}

/**
 * Support must be exactly the predicted rectangle, clipped to the image: nothing outside, its
 * bounding box the rectangle, and (unless `filled` is false: downstream of a merge of offset
 * branches the support is a union of rectangles) every pixel inside it.
 */
function expectSupportIsField(support: boolean[][], field: ReceptiveField, unit: [number, number], node: string, filled = true): void {
  const size: [number, number] = [support.length, support[0].length];
  const rect = fieldBounds(field, unit, size);
  expect({ node, box: boundingBox(support) }).toEqual({ node, box: rect });
  if (!filled) return;
  const holes = support.flatMap((row, i) => row.map((on, j) => (!on && i >= rect.top && i <= rect.bottom && j >= rect.left && j <= rect.right ? 1 : 0) as number));
  expect({ node, holes: holes.reduce((a, b) => a + b, 0) }).toEqual({ node, holes: 0 });
}

/** Linear, positive-weight Sequential stack: stride-2 SAME conv, dilated conv, pools. */
function sequentialProbeModel(): tfl.Sequential {
  const m = tfl.sequential();
  m.add(tfl.layers.conv2d({ inputShape: [24, 24, 1], filters: 2, kernelSize: 3, name: 'a' }));
  m.add(tfl.layers.conv2d({ filters: 2, kernelSize: 3, strides: 2, padding: 'same', name: 'b' }));
  m.add(tfl.layers.conv2d({ filters: 2, kernelSize: 3, dilationRate: 2, padding: 'same', name: 'c' }));
  m.add(tfl.layers.averagePooling2d({ poolSize: 2, name: 'd' }));
  m.add(tfl.layers.batchNormalization({ name: 'bn' }));
  m.add(tfl.layers.conv2d({ filters: 2, kernelSize: 3, padding: 'same', name: 'e' }));
  m.add(tfl.layers.averagePooling2d({ poolSize: 3, strides: 2, padding: 'same', name: 'f' }));
  m.add(tfl.layers.flatten({ name: 'flat' }));
  m.add(tfl.layers.dense({ units: 2, name: 'out' }));
  setSeededWeights(m, 3, { positive: true });
  return m;
}

/** Branches whose fields disagree (one shifted by asymmetric zero padding), merged by Add and Concatenate. */
function branchedProbeModel(): tfl.LayersModel {
  const input = tfl.input({ shape: [20, 20, 2], name: 'in' });
  const a = tfl.layers.conv2d({ filters: 2, kernelSize: 3, padding: 'same', name: 'a' }).apply(input) as Sym;
  const b1 = tfl.layers.conv2d({ filters: 2, kernelSize: 3, padding: 'same', name: 'b1' }).apply(a) as Sym;
  const zp = tfl.layers.zeroPadding2d({ padding: [[2, 0], [2, 0]], name: 'zp' }).apply(a) as Sym;
  const b2 = tfl.layers.depthwiseConv2d({ kernelSize: 3, name: 'b2' }).apply(zp) as Sym;
  const m = tfl.layers.add({ name: 'm' }).apply([b1, b2]) as Sym;
  const c = tfl.layers.separableConv2d({ filters: 2, kernelSize: 3, strides: 2, name: 'c' }).apply(m) as Sym;
  const p = tfl.layers.averagePooling2d({ poolSize: 3, strides: 2, name: 'p' }).apply(m) as Sym;
  const cat = tfl.layers.concatenate({ name: 'cat' }).apply([c, p]) as Sym;
  const d = tfl.layers.conv2d({ filters: 2, kernelSize: 3, dilationRate: 2, padding: 'same', name: 'd' }).apply(cat) as Sym;
  const gap = tfl.layers.globalAveragePooling2d({ name: 'gap' }).apply(d) as Sym;
  const model = tfl.model({ inputs: input, outputs: gap });
  setSeededWeights(model, 4, { positive: true });
  return model;
}

/** Max pools (VALID and SAME) between linear positive convs. */
function maxPoolProbeModel(): tfl.Sequential {
  const m = tfl.sequential();
  m.add(tfl.layers.conv2d({ inputShape: [16, 16, 1], filters: 2, kernelSize: 3, padding: 'same', name: 'a' }));
  m.add(tfl.layers.maxPooling2d({ poolSize: 2, name: 'p1' }));
  m.add(tfl.layers.conv2d({ filters: 2, kernelSize: 3, name: 'b' }));
  m.add(tfl.layers.maxPooling2d({ poolSize: 3, strides: 2, padding: 'same', name: 'p2' }));
  m.add(tfl.layers.conv2d({ filters: 2, kernelSize: 2, name: 'c' }));
  setSeededWeights(m, 5, { positive: true });
  return m;
}

describe('receptive-field arithmetic', () => {
  it("follows TF's SAME padding rule", () => {
    expect(samePadBefore(22, 2, 3)).toBe(0); // total 1 → 0 before, 1 after
    expect(samePadBefore(11, 1, 5)).toBe(2);
    expect(samePadBefore(5, 2, 3)).toBe(1);
    expect(samePadBefore(8, 4, 2)).toBe(0);
  });

  it('gives hand-computed fields on the Sequential stack', () => {
    const model = sequentialProbeModel();
    const rf = receptiveFields(buildExecutor(model).nodes);
    expect(rf.get('a')).toEqual({ size: [3, 3], jump: [1, 1], start: [1, 1] });
    expect(rf.get('b')).toEqual({ size: [5, 5], jump: [2, 2], start: [2, 2] });
    expect(rf.get('c')).toEqual({ size: [13, 13], jump: [2, 2], start: [2, 2] }); // dilated: effective kernel 5
    expect(rf.get('d')).toEqual({ size: [15, 15], jump: [4, 4], start: [3, 3] });
    expect(rf.get('bn')).toEqual(rf.get('d'));
    expect(rf.get('flat')).toBeUndefined();
    expect(rf.get('out')).toBeUndefined();
    model.dispose();
  });

  it('takes the union where branches disagree', () => {
    const model = branchedProbeModel();
    const rf = receptiveFields(buildExecutor(model).nodes);
    expect(rf.get('b1')).toEqual({ size: [5, 5], jump: [1, 1], start: [0, 0] });
    expect(rf.get('b2')).toEqual({ size: [5, 5], jump: [1, 1], start: [-1, -1] });
    // b1 covers −2..2, b2 covers −3..1: the merge covers −3..2
    expect(rf.get('m')).toEqual({ size: [6, 6], jump: [1, 1], start: [-0.5, -0.5] });
    expect(rf.get('gap')).toBeUndefined();
    model.dispose();
  });
});

describe('receptive fields against the input-gradient support', () => {
  it('Sequential: stride-2 SAME, dilated conv, average pools', () => {
    const model = sequentialProbeModel();
    const exec = buildExecutor(model);
    const rf = receptiveFields(exec.nodes);
    const x = seededImages([1, 24, 24, 1], 1, 0.5);
    for (const node of ['a', 'b', 'c', 'd', 'bn', 'e', 'f']) {
      expectSupportIsField(gradientSupport(exec, node, x), rf.get(node)!, centreOf(exec, node), node);
    }
    // also an off-centre unit that reaches into the padding
    const corner = tf.grad((v: tf.Tensor) => tf.sum(tf.slice(exec.run(v as tf.Tensor4D, { upTo: 'c' }).output as tf.Tensor4D, [0, 0, 10, 0], [1, 1, 1, -1])))(x);
    const support = (tf.tidy(() => tf.sum(tf.abs(corner), [0, 3])).arraySync() as number[][]).map((r) => r.map((v) => v > 0));
    expectSupportIsField(support, rf.get('c')!, [0, 10], 'c (0, 10)');
    tf.dispose([x, corner]);
    model.dispose();
  });

  it('branched: depthwise, shifted zero padding, Add, separable, Concatenate, dilated conv', () => {
    const model = branchedProbeModel();
    const exec = buildExecutor(model);
    const rf = receptiveFields(exec.nodes);
    const x = seededImages([1, 20, 20, 2], 2, 0.5);
    for (const node of ['a', 'b1', 'zp', 'b2', 'm', 'c', 'p', 'cat', 'd']) {
      const afterMerge = !['a', 'b1', 'zp', 'b2'].includes(node);
      expectSupportIsField(gradientSupport(exec, node, x), rf.get(node)!, centreOf(exec, node), node, !afterMerge);
    }
    // the merge sees the union of two offset squares: its field is their bounding box
    const unit = centreOf(exec, 'm');
    const support = gradientSupport(exec, 'm', x);
    const inRect = (r: Rect, i: number, j: number) => i >= r.top && i <= r.bottom && j >= r.left && j <= r.right;
    const [r1, r2] = ['b1', 'b2'].map((n) => fieldBounds(rf.get(n)!, unit, [20, 20]));
    expect(support).toEqual(support.map((row, i) => row.map((_, j) => inRect(r1, i, j) || inRect(r2, i, j))));
    expect(boundingBox(support)).toEqual(fieldBounds(rf.get('m')!, unit, [20, 20]));
    x.dispose();
    model.dispose();
  });

  it('max pools (VALID and SAME), probed by raising single pixels', () => {
    const model = maxPoolProbeModel();
    const exec = buildExecutor(model);
    const rf = receptiveFields(exec.nodes);
    const x = seededImages([1, 16, 16, 1], 3, 0.5);
    for (const node of ['a', 'p1', 'b', 'p2', 'c']) {
      expectSupportIsField(raiseSupport(exec, node, x), rf.get(node)!, centreOf(exec, node), node);
    }
    x.dispose();
    model.dispose();
  });
});
