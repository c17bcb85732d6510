/**
 * Models the benchmarks share: the default report model (or a seeded stand-in of the same
 * architecture while it is not trained) and a VGG16-shaped network with seeded random weights.
 * Each is saved to a temp folder and loaded through the real loader, so benchmarks time the same
 * graph executor the techniques use.
 */
import fs from 'node:fs';
import path from 'node:path';
import * as tfl from '@tensorflow/tfjs-layers';
import { loadModel, type LoadedModel } from '../pipelines/model/load';
import { saveModel, tmpDir } from '../test/fixtures/models';

export interface BenchModel {
  model: LoadedModel;
  /** the model.json folder (bench/pytorch_anchor.py reads the same topology and weights from it) */
  dir: string;
  /** one line saying what this is, printed with every table */
  description: string;
  /** false when a stand-in replaced the requested model */
  real: boolean;
}

const glorot = (seed: number) => tfl.initializers.glorotUniform({ seed });

async function saveAndLoad(m: tfl.LayersModel, prefix: string): Promise<LoadedModel> {
  return (await saveAndLoadDir(m, prefix)).model;
}

async function saveAndLoadDir(m: tfl.LayersModel, prefix: string): Promise<{ model: LoadedModel; dir: string }> {
  const dir = tmpDir(prefix);
  await saveModel(m, dir);
  m.dispose();
  return { model: await loadModel(dir), dir };
}

/**
 * The default Fashion-MNIST model's architecture (reports/fashion-mnist/train.ts): four 3×3 conv
 * stages 16-32-64-64 with fused ReLU, each followed by batch norm, max-pools after the first two,
 * GAP, Dense logits, softmax. Seeded random weights; BN at its initial (identity) statistics.
 */
export async function defaultModelStandIn(seed = 1): Promise<LoadedModel> {
  return (await defaultModelStandInDir(seed)).model;
}

async function defaultModelStandInDir(seed = 1): Promise<{ model: LoadedModel; dir: string }> {
  const m = tfl.sequential({ name: 'default_model_stand_in' });
  const filters = [16, 32, 64, 64];
  filters.forEach((f, i) => {
    m.add(tfl.layers.conv2d({
      ...(i === 0 ? { inputShape: [28, 28, 1] } : {}),
      filters: f, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: glorot(seed * 100 + i), name: `conv${i + 1}`,
    }));
    m.add(tfl.layers.batchNormalization({ name: `bn${i + 1}` }));
    if (i < 2) m.add(tfl.layers.maxPooling2d({ poolSize: 2, name: `pool${i + 1}` }));
  });
  m.add(tfl.layers.globalAveragePooling2d({ name: 'gap' }));
  m.add(tfl.layers.dense({ units: 10, kernelInitializer: glorot(seed * 100 + 9), name: 'logits' }));
  m.add(tfl.layers.activation({ activation: 'softmax', name: 'probs' }));
  return saveAndLoadDir(m, 'convlens-bench-default-');
}

/** The trained default model if its folder has a model.json, else the seeded stand-in (and says so). */
export async function defaultModel(dir = path.resolve('reports/fashion-mnist/model')): Promise<BenchModel> {
  if (fs.existsSync(path.join(dir, 'model.json'))) {
    const model = await loadModel(dir);
    return { model, dir, description: `trained default model ${path.relative(process.cwd(), dir) || dir} (${model.totalParams} parameters)`, real: true };
  }
  const { model, dir: standInDir } = await defaultModelStandInDir();
  return {
    model,
    dir: standInDir,
    description: `STAND-IN: ${dir} has no model.json yet, so a seeded random network of the default architecture (${model.totalParams} parameters) is timed instead`,
    real: false,
  };
}

/**
 * VGG16's convolutional body at `size` px (13 3×3 convs 64-64-M-128-128-M-256×3-M-512×3-M-512×3-M,
 * fused ReLU, 2×2 max-pools), then global average pooling + Dense(classes) instead of VGG's
 * three fully connected layers: 14.7 M conv weights + 0.5 M head instead of 138 M in all, which
 * keeps the wasm heap small; the convolutions, where the time goes, are VGG16's.
 */
export async function vgg16Shaped(size = 224, classes = 1000, seed = 16): Promise<BenchModel> {
  const blocks = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]];
  const m = tfl.sequential({ name: 'vgg16_shaped' });
  let k = 0;
  blocks.forEach((block, b) => {
    block.forEach((f, c) => {
      m.add(tfl.layers.conv2d({
        ...(k === 0 ? { inputShape: [size, size, 3] } : {}),
        filters: f, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: glorot(seed * 100 + k++), name: `block${b + 1}_conv${c + 1}`,
      }));
    });
    m.add(tfl.layers.maxPooling2d({ poolSize: 2, name: `block${b + 1}_pool` }));
  });
  m.add(tfl.layers.globalAveragePooling2d({ name: 'gap' }));
  m.add(tfl.layers.dense({ units: classes, kernelInitializer: glorot(seed * 100 + 99), name: 'logits' }));
  m.add(tfl.layers.activation({ activation: 'softmax', name: 'probs' }));
  const { model, dir } = await saveAndLoadDir(m, 'convlens-bench-vgg16-');
  return {
    model,
    dir,
    description: `VGG16-shaped ${size}×${size}×3, 13 conv3×3 + 5 max-pools, GAP + Dense(${classes}) head (not VGG's 3 FC layers), seeded random weights, ${(model.totalParams / 1e6).toFixed(1)} M parameters`,
    real: true,
  };
}

/*
 * MobileNet weights: He-normal for the convolutions and N(0, 2/9) for the 3×3 depthwise taps
 * (fan-in 9). Glorot on a [3,3,C,1] depthwise kernel counts fan-in as 9·C, which shrinks the
 * activations by ~√C per block: after 13 blocks they were denormal, logits exactly 0, and the
 * timings measured denormal arithmetic rather than the network.
 */
const he = (seed: number) => tfl.initializers.heNormal({ seed });
const dwInit = (seed: number) => tfl.initializers.randomNormal({ mean: 0, stddev: Math.sqrt(2 / 9), seed });

/** Conv (no bias) → BN → ReLU6, Keras MobileNet style; padding 'same' (= Keras' ZeroPadding2D(((0,1),(0,1))) + 'valid' at even sizes). */
function convBnRelu6(x: tfl.SymbolicTensor, filters: number, kernel: number, stride: number, name: string, seed: number, relu = true): tfl.SymbolicTensor {
  let y = tfl.layers.conv2d({ filters, kernelSize: kernel, strides: stride, padding: 'same', useBias: false, kernelInitializer: he(seed), name }).apply(x) as tfl.SymbolicTensor;
  y = tfl.layers.batchNormalization({ name: `${name}_bn` }).apply(y) as tfl.SymbolicTensor;
  return relu ? (tfl.layers.reLU({ maxValue: 6, name: `${name}_relu` }).apply(y) as tfl.SymbolicTensor) : y;
}

function dwBnRelu6(x: tfl.SymbolicTensor, stride: number, name: string, seed: number): tfl.SymbolicTensor {
  let y = tfl.layers.depthwiseConv2d({ kernelSize: 3, strides: stride, padding: 'same', useBias: false, depthwiseInitializer: dwInit(seed), name }).apply(x) as tfl.SymbolicTensor;
  y = tfl.layers.batchNormalization({ name: `${name}_bn` }).apply(y) as tfl.SymbolicTensor;
  return tfl.layers.reLU({ maxValue: 6, name: `${name}_relu` }).apply(y) as tfl.SymbolicTensor;
}

function head(x: tfl.SymbolicTensor, classes: number, seed: number): tfl.SymbolicTensor {
  const g = tfl.layers.globalAveragePooling2d({ name: 'gap' }).apply(x) as tfl.SymbolicTensor;
  const l = tfl.layers.dense({ units: classes, kernelInitializer: glorot(seed), name: 'logits' }).apply(g) as tfl.SymbolicTensor;
  return tfl.layers.activation({ activation: 'softmax', name: 'probs' }).apply(l) as tfl.SymbolicTensor;
}

/**
 * MobileNetV1 (α = 1) at `size` px: conv3×3/2 32, then 13 depthwise-separable blocks
 * (dw3×3 + BN + ReLU6, pw1×1 + BN + ReLU6) 64-128-128-256-256-512×6-1024-1024, GAP, Dense.
 * Seeded He / N(0, 2/9) weights (see above), BN at its initial statistics; 4.2 M parameters like the original.
 */
export async function mobileNetV1Shaped(size = 224, classes = 1000, seed = 21): Promise<BenchModel> {
  const input = tfl.input({ shape: [size, size, 3], name: 'input' });
  let x = convBnRelu6(input, 32, 3, 2, 'conv1', seed * 100);
  const blocks: [number, number][] = [[64, 1], [128, 2], [128, 1], [256, 2], [256, 1], [512, 2], [512, 1], [512, 1], [512, 1], [512, 1], [512, 1], [1024, 2], [1024, 1]];
  blocks.forEach(([f, s], i) => {
    x = dwBnRelu6(x, s, `dw${i + 1}`, seed * 100 + 2 * i + 1);
    x = convBnRelu6(x, f, 1, 1, `pw${i + 1}`, seed * 100 + 2 * i + 2);
  });
  const m = tfl.model({ inputs: input, outputs: head(x, classes, seed * 100 + 99), name: 'mobilenet_v1_shaped' });
  const { model, dir } = await saveAndLoadDir(m, 'convlens-bench-mnv1-');
  return {
    model, dir, real: true,
    description: `MobileNetV1-shaped ${size}×${size}×3 (α=1, 13 depthwise-separable blocks, BN + ReLU6), seeded random weights, ${(model.totalParams / 1e6).toFixed(1)} M parameters`,
  };
}

/**
 * MobileNetV2 (α = 1) at `size` px: conv3×3/2 32, 17 inverted-residual blocks (expand 1×1 ×t,
 * dw3×3, linear project 1×1; residual Add where stride 1 and widths match) with (t, c, n, s) =
 * (1,16,1,1) (6,24,2,2) (6,32,3,2) (6,64,4,2) (6,96,3,1) (6,160,3,2) (6,320,1,1), conv1×1 1280,
 * GAP, Dense. Seeded He / N(0, 2/9) weights (see above), BN at its initial statistics; 3.5 M parameters.
 */
export async function mobileNetV2Shaped(size = 224, classes = 1000, seed = 22): Promise<BenchModel> {
  const input = tfl.input({ shape: [size, size, 3], name: 'input' });
  let k = 0;
  let x = convBnRelu6(input, 32, 3, 2, 'conv1', seed * 100 + k++);
  let width = 32;
  let b = 0;
  for (const [t, c, n, s] of [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]] as const) {
    for (let i = 0; i < n; i++) {
      const stride = i === 0 ? s : 1;
      const name = `block${++b}`;
      let y = x;
      if (t !== 1) y = convBnRelu6(y, width * t, 1, 1, `${name}_expand`, seed * 100 + k++);
      y = dwBnRelu6(y, stride, `${name}_dw`, seed * 100 + k++);
      y = convBnRelu6(y, c, 1, 1, `${name}_project`, seed * 100 + k++, false);
      x = stride === 1 && width === c ? (tfl.layers.add({ name: `${name}_add` }).apply([x, y]) as tfl.SymbolicTensor) : y;
      width = c;
    }
  }
  x = convBnRelu6(x, 1280, 1, 1, 'conv_last', seed * 100 + k++);
  const m = tfl.model({ inputs: input, outputs: head(x, classes, seed * 100 + 99), name: 'mobilenet_v2_shaped' });
  const { model, dir } = await saveAndLoadDir(m, 'convlens-bench-mnv2-');
  return {
    model, dir, real: true,
    description: `MobileNetV2-shaped ${size}×${size}×3 (α=1, 17 inverted-residual blocks, BN + ReLU6), seeded random weights, ${(model.totalParams / 1e6).toFixed(1)} M parameters`,
  };
}
