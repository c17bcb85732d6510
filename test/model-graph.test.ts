import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildExecutor, type GraphExecutor, type ReluRule } from '../pipelines/model/graph';
import { functionalModel, seededImages, sequentialModel, setSeededWeights } from './fixtures/models';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

const maxAbsDiff = (a: tf.Tensor, b: tf.Tensor): number => tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);

/** d(class score)/d(input), the score taken with tf.slice (no gather gradient on wasm). */
function inputGradient(forward: (x: tf.Tensor4D) => tf.Tensor, x: tf.Tensor4D, cls: number): tf.Tensor {
  return tf.grad((input: tf.Tensor) => {
    const out = forward(input as tf.Tensor4D) as tf.Tensor2D;
    return tf.sum(tf.slice(out, [0, cls], [-1, 1]));
  })(x);
}

describe('GraphExecutor forward pass', () => {
  it('matches model.predict on a functional model with residual, BN, depthwise, separable, concat', () => {
    const model = functionalModel();
    const exec = buildExecutor(model);
    const x = seededImages([3, 12, 12, 3], 7);
    const expected = model.predict(x) as tf.Tensor;
    const actual = tf.tidy(() => exec.run(x).output);
    expect(actual.shape).toEqual(expected.shape);
    expect(maxAbsDiff(actual, expected)).toBeLessThan(1e-5);
    // BatchNorm with non-trivial moving statistics really changes the values
    const names = exec.nodes.map((n) => n.name);
    expect(names).toEqual(expect.arrayContaining(['image', 'c1/preact', 'c1', 'bn', 'dw/preact', 'dw', 'add', 'zp', 'sep', 'side', 'side_act', 'cat', 'gap', 'drop', 'probs/preact', 'probs']));
    expect(exec.node('c1').role).toBe('activation');
    expect(exec.node('side').role).toBe('layer'); // linear: nothing split out
    tf.dispose([x, expected, actual]);
    exec.dispose();
    model.dispose();
  });

  it('matches model.predict on a Sequential model with fused ReLUs', () => {
    const model = sequentialModel();
    const exec = buildExecutor(model);
    const x = seededImages([2, 10, 10, 1], 3);
    const expected = model.predict(x) as tf.Tensor;
    const actual = tf.tidy(() => exec.run(x).output);
    expect(maxAbsDiff(actual, expected)).toBeLessThan(1e-5);
    expect(exec.nodes[0].role).toBe('input');
    expect(exec.node('conv1/preact').outputShape).toEqual([8, 8, 4]);
    tf.dispose([x, expected, actual]);
    model.dispose();
  });

  it('stops at upTo and captures any node', () => {
    const model = sequentialModel();
    const exec = buildExecutor(model);
    const x = seededImages([2, 10, 10, 1], 3);
    tf.tidy(() => {
      const { output, captured } = exec.run(x, { upTo: 'fc1', capture: ['conv1/preact', 'conv1'] });
      expect(output.shape).toEqual([2, 8]);
      const pre = captured['conv1/preact'];
      expect(maxAbsDiff(tf.relu(pre), captured.conv1)).toBe(0);
      expect(tf.min(pre).dataSync()[0]).toBeLessThan(0);
    });
    x.dispose();
    model.dispose();
  });

  it('runs dilated depthwise and separable convs as Keras does (tfjs-layers ignores their dilation)', () => {
    const input = tfl.input({ shape: [9, 9, 2] });
    const dw = tfl.layers.depthwiseConv2d({ kernelSize: 3, dilationRate: 2, padding: 'same', name: 'dw' }).apply(input) as tfl.SymbolicTensor;
    const sep = tfl.layers.separableConv2d({ filters: 3, kernelSize: 3, dilationRate: 3, name: 'sep' }).apply(dw) as tfl.SymbolicTensor;
    const model = tfl.model({ inputs: input, outputs: sep });
    setSeededWeights(model, 9);
    const exec = buildExecutor(model);
    const x = seededImages([1, 9, 9, 2], 4);
    const [dwKernel, dwBias, sepDw, sepPw, sepBias] = model.getWeights();
    const expected = tf.tidy(() => {
      const a = tf.add(tf.depthwiseConv2d(x, dwKernel as tf.Tensor4D, 1, 'same', 'NHWC', 2), dwBias);
      const b = tf.separableConv2d(a as tf.Tensor4D, sepDw as tf.Tensor4D, sepPw as tf.Tensor4D, 1, 'valid', 3);
      return tf.add(b, sepBias);
    });
    const actual = tf.tidy(() => exec.run(x).output);
    expect(actual.shape).toEqual([1, 3, 3, 3]);
    expect(maxAbsDiff(actual, expected)).toBeLessThan(1e-5);
    tf.dispose([x, expected, actual]);
    model.dispose();
  });

  it('implements Keras ReLU max_value, negative_slope and threshold from the raw config', () => {
    const model = tfl.sequential();
    model.add(tfl.layers.reLU({ inputShape: [2, 2, 1], maxValue: 2, name: 'r' }));
    const topology = model.toJSON(null, false) as { config: { layers: { config: Record<string, unknown> }[] } };
    Object.assign(topology.config.layers[0].config, { negative_slope: 0.5, threshold: 1 });
    const exec = buildExecutor(model, topology);
    const x = tf.tensor4d([-1, 0.5, 1.5, 3], [1, 2, 2, 1]);
    const y = tf.tidy(() => exec.run(x).output);
    // below threshold: 0.5 * (x - 1); between: x; above max_value: 2
    expect(Array.from(y.dataSync())).toEqual([-1, -0.25, 1.5, 2]);
    tf.dispose([x, y]);
  });
});

describe('ReLU gradient rules', () => {
  let model: tfl.Sequential;
  let exec: GraphExecutor;
  let x: tf.Tensor4D;
  beforeAll(() => {
    model = sequentialModel();
    exec = buildExecutor(model);
    x = seededImages([2, 10, 10, 1], 5);
  });

  const gradFor = (rule: ReluRule) => inputGradient((input) => exec.run(input, { reluRule: rule }).output, x, 1);

  it('plain equals tf.grad of layersModel.apply', () => {
    const ours = gradFor('plain');
    const reference = inputGradient((input) => model.apply(input, { training: false }) as tf.Tensor, x, 1);
    expect(maxAbsDiff(ours, reference)).toBeLessThan(1e-5);
    expect(tf.tidy(() => tf.max(tf.abs(reference)).dataSync()[0])).toBeGreaterThan(1e-3);
    tf.dispose([ours, reference]);
  });

  it('guided and deconvnet differ from plain (the fused ReLUs are split out)', () => {
    const plain = gradFor('plain');
    const guided = gradFor('guided');
    const deconv = gradFor('deconvnet');
    expect(maxAbsDiff(plain, guided)).toBeGreaterThan(1e-4);
    expect(maxAbsDiff(plain, deconv)).toBeGreaterThan(1e-4);
    expect(maxAbsDiff(guided, deconv)).toBeGreaterThan(1e-4);
    // forward values do not depend on the rule
    const a = tf.tidy(() => exec.run(x, { reluRule: 'guided' }).output);
    const b = tf.tidy(() => exec.run(x).output);
    expect(maxAbsDiff(a, b)).toBe(0);
    tf.dispose([plain, guided, deconv, a, b]);
  });

  it('guided = dy·[x>0]·[dy>0] and deconvnet = dy·[dy>0] on a single ReLU', () => {
    const m = tfl.sequential();
    m.add(tfl.layers.activation({ inputShape: [1, 1, 4], activation: 'relu', name: 'act' }));
    const e = buildExecutor(m);
    const input = tf.tensor4d([1, -1, 2, -2], [1, 1, 1, 4]);
    const dy = tf.tensor4d([1, 1, -1, -1], [1, 1, 1, 4]);
    const g = (rule: ReluRule) => Array.from(tf.grad((v: tf.Tensor) => e.run(v as tf.Tensor4D, { reluRule: rule }).output)(input, dy).dataSync());
    expect(g('plain')).toEqual([1, 0, -1, -0]);
    expect(g('guided')).toEqual([1, 0, 0, 0]);
    expect(g('deconvnet')).toEqual([1, 1, 0, 0]);
    tf.dispose([input, dy]);
  });
});

describe('perturbations and hidden-layer gradients', () => {
  it('gradient at a cut node obeys the chain rule', () => {
    const model = functionalModel();
    const exec = buildExecutor(model);
    const x = seededImages([2, 12, 12, 3], 11);
    const score = (out: tf.Tensor) => tf.sum(tf.slice(out as tf.Tensor2D, [0, 2], [-1, 1]));
    const cut = 'add'; // every path from the input to the output passes through it
    const zeros = tf.zeros([2, ...exec.node(cut).outputShape]);
    const hiddenGrad = tf.grad((p: tf.Tensor) => score(exec.run(x, { perturb: { [cut]: p } }).output))(zeros);
    // d score/dx = (d h/dx)ᵀ · d score/dh
    const viaChain = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(exec.run(v as tf.Tensor4D, { upTo: cut }).output, hiddenGrad)))(x);
    const direct = tf.grad((v: tf.Tensor) => score(exec.run(v as tf.Tensor4D).output))(x);
    expect(maxAbsDiff(viaChain, direct)).toBeLessThan(1e-5);
    expect(tf.tidy(() => tf.max(tf.abs(direct)).dataSync()[0])).toBeGreaterThan(1e-5);
    tf.dispose([x, zeros, hiddenGrad, viaChain, direct]);
  });

  it('gradient at a branch node matches finite differences', () => {
    const model = functionalModel();
    const exec = buildExecutor(model);
    const x = seededImages([1, 12, 12, 3], 13);
    const node = 'bn'; // inside the residual branch only
    const shape = [1, ...exec.node(node).outputShape];
    const score = (p: tf.Tensor) => tf.sum(tf.slice(exec.run(x, { perturb: { [node]: p } }).output as tf.Tensor2D, [0, 1], [1, 1]));
    const zeros = tf.zeros(shape);
    const g = tf.grad(score)(zeros);
    const gData = g.dataSync();
    const size = gData.length;
    const eps = 1e-2;
    for (const i of [0, 17, Math.floor(size / 2), size - 5]) {
      const fd = tf.tidy(() => {
        const bump = tf.mul(tf.reshape(tf.oneHot(tf.tensor1d([i], 'int32'), size), shape), eps);
        return (score(bump).dataSync()[0] - score(tf.neg(bump)).dataSync()[0]) / (2 * eps);
      });
      expect(Math.abs(fd - gData[i])).toBeLessThan(2e-3 + 1e-2 * Math.abs(gData[i]));
    }
    tf.dispose([x, zeros, g]);
  });
});

describe('max-pool switches and memory', () => {
  it('switches point at the maximum of each window', () => {
    const exec = buildExecutor(sequentialModel());
    const x = seededImages([2, 10, 10, 1], 17);
    tf.tidy(() => {
      const { captured, switches } = exec.run(x, { capture: ['conv1', 'pool1'], recordSwitches: true });
      const idx = switches.pool1;
      expect(idx.dtype).toBe('int32');
      expect(idx.shape).toEqual([2, 4, 4, 4]);
      const source = tf.reshape(captured.conv1, [2, -1]).arraySync() as number[][];
      const pooled = tf.reshape(captured.pool1, [2, -1]).arraySync() as number[][];
      const indices = tf.reshape(idx, [2, -1]).arraySync() as number[][];
      for (let b = 0; b < 2; b++) {
        indices[b].forEach((flat, k) => expect(source[b][flat]).toBe(pooled[b][k]));
        // the index lies inside the unit's own 2×2 window
        indices[b].forEach((flat, k) => {
          const [row, col, ch] = [Math.floor(flat / (8 * 4)), Math.floor(flat / 4) % 8, flat % 4];
          const [orow, ocol, och] = [Math.floor(k / 16), Math.floor(k / 4) % 4, k % 4];
          expect(ch).toBe(och);
          expect(Math.floor(row / 2)).toBe(orow);
          expect(Math.floor(col / 2)).toBe(ocol);
        });
      }
    });
    x.dispose();
  });

  it('leaks no tensors inside tidy, forward or backward', () => {
    const model = functionalModel();
    const exec = buildExecutor(model);
    const x = seededImages([2, 12, 12, 3], 19);
    tf.tidy(() => {
      exec.run(x);
    }); // warm up lazily created tensors
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      exec.run(x, { capture: ['c1', 'add', 'cat'], recordSwitches: true, reluRule: 'guided' });
    });
    tf.tidy(() => {
      const p = tf.zeros([2, ...exec.node('add').outputShape]);
      tf.grad((v: tf.Tensor) => tf.sum(exec.run(v as tf.Tensor4D, { reluRule: 'deconvnet', perturb: { add: p } }).output))(x);
    });
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
  });
});

describe('errors', () => {
  it('names close layers for an unknown layer name', () => {
    const exec = buildExecutor(sequentialModel());
    expect(() => exec.node('conv_1')).toThrow(/unknown layer name 'conv_1'.*'conv1'/);
    const x = tf.zeros([1, 10, 10, 1]) as tf.Tensor4D;
    expect(() => exec.run(x, { capture: ['cnv2'] })).toThrow(/ConvlensError|unknown layer name 'cnv2'.*'conv2'/);
    x.dispose();
  });

  it('names the layer and its class for an unsupported layer', () => {
    const model = tfl.sequential();
    model.add(tfl.layers.conv2d({ inputShape: [6, 6, 1], filters: 2, kernelSize: 3, name: 'c' }));
    model.add(tfl.layers.upSampling2d({ size: [2, 2], name: 'up' }));
    expect(() => buildExecutor(model)).toThrow(/layer 'up' has class 'UpSampling2D', which convlens cannot execute; supported: .*Conv2D/);
  });
});

describe('setSeededWeights', () => {
  it('is deterministic', () => {
    const a = sequentialModel(5);
    const b = sequentialModel(5);
    const wa = a.getWeights()[0];
    const wb = b.getWeights()[0];
    expect(maxAbsDiff(wa, wb)).toBe(0);
    setSeededWeights(b, 6);
    expect(maxAbsDiff(a.getWeights()[0], b.getWeights()[0])).toBeGreaterThan(0);
  });
});
