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
  /** one line saying what this is, printed with every table */
  description: string;
  /** false when a stand-in replaced the requested model */
  real: boolean;
}

const glorot = (seed: number) => tfl.initializers.glorotUniform({ seed });

async function saveAndLoad(m: tfl.Sequential, prefix: string): Promise<LoadedModel> {
  const dir = tmpDir(prefix);
  await saveModel(m, dir);
  m.dispose();
  return loadModel(dir);
}

/**
 * The default Fashion-MNIST model's architecture (reports/fashion-mnist/train.ts): four 3×3 conv
 * stages 16-32-64-64 with fused ReLU, each followed by batch norm, max-pools after the first two,
 * GAP, Dense logits, softmax. Seeded random weights; BN at its initial (identity) statistics.
 */
export async function defaultModelStandIn(seed = 1): Promise<LoadedModel> {
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
  return saveAndLoad(m, 'convlens-bench-default-');
}

/** The trained default model if its folder has a model.json, else the seeded stand-in (and says so). */
export async function defaultModel(dir = path.resolve('reports/fashion-mnist/model')): Promise<BenchModel> {
  if (fs.existsSync(path.join(dir, 'model.json'))) {
    const model = await loadModel(dir);
    return { model, description: `trained default model ${path.relative(process.cwd(), dir) || dir} (${model.totalParams} parameters)`, real: true };
  }
  const model = await defaultModelStandIn();
  return {
    model,
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
  const model = await saveAndLoad(m, 'convlens-bench-vgg16-');
  return {
    model,
    description: `VGG16-shaped ${size}×${size}×3, 13 conv3×3 + 5 max-pools, GAP + Dense(${classes}) head (not VGG's 3 FC layers), seeded random weights, ${(model.totalParams / 1e6).toFixed(1)} M parameters`,
    real: true,
  };
}
