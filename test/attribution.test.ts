/**
 * Attribution techniques on hand-made models with known answers and on the tiny trained report:
 * saliency / occlusion on a model that sees only one quadrant, explicit deconvnet = gradient
 * rule, CAM = Grad-CAM up to scale, guided / deconvnet ≠ saliency, SmoothGrad(σ = 0) = saliency,
 * and every technique's result shape, files and tensor hygiene.
 */
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import '@tensorflow/tfjs-backend-cpu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  auc, camHead, camMaps, deconvnetProject, gradCamMaps, inputGradient, itemTensor, poolSwitches, strongestUnits, unitGradient, type AttributionData, type Item,
} from '../pipelines/engines/attribution';
import type { FeaturesData } from '../pipelines/engines/examples';
import { loadModel, type LoadedModel } from '../pipelines/model/load';
import cam from '../pipelines/techniques/cam';
import deconvnet from '../pipelines/techniques/deconvnet';
import features from '../pipelines/techniques/features';
import gradCam from '../pipelines/techniques/grad-cam';
import gradCamPlusPlus from '../pipelines/techniques/grad-cam-plus-plus';
import guidedBackprop from '../pipelines/techniques/guided-backprop';
import guidedGradCam from '../pipelines/techniques/guided-grad-cam';
import occlusion, { occlusionMaps } from '../pipelines/techniques/occlusion';
import saliency from '../pipelines/techniques/saliency';
import smoothgrad from '../pipelines/techniques/smoothgrad';
import type { Technique } from '../pipelines/technique';
import { saveModel, seededImages, setSeededWeights, tmpDir } from './fixtures/models';
import { runTechnique, tinyReport, TINY_SIZE, type TinyDataset } from './helpers/tiny-report';
import { maxRelErr } from './helpers/compare';

let model: LoadedModel;
let quadrant: LoadedModel;
let dataset: TinyDataset;
let feats: { data: FeaturesData; dir: string };
let quadrantFeats: { data: FeaturesData; dir: string };
const S = TINY_SIZE;

/** Flatten → Dense(3): the logits read only the top-left 8×8 quadrant (all other weights are zero). */
async function quadrantModel(): Promise<LoadedModel> {
  const m = tfl.sequential();
  m.add(tfl.layers.flatten({ inputShape: [S, S, 1], name: 'flat' }));
  m.add(tfl.layers.dense({ units: 3, name: 'logits' }));
  m.add(tfl.layers.activation({ activation: 'softmax', name: 'probs' }));
  const w = new Float32Array(S * S * 3);
  for (let y = 0; y < S / 2; y++) for (let x = 0; x < S / 2; x++) for (let k = 0; k < 3; k++) w[(y * S + x) * 3 + k] = Math.sin(1 + y * 7 + x * 3 + k * 11);
  m.getLayer('logits').setWeights([tf.tensor2d(w, [S * S, 3]), tf.zeros([3])]);
  const dir = tmpDir('convlens-quadrant-');
  await saveModel(m, dir);
  m.dispose();
  return loadModel(dir);
}

async function firstImages(n: number): Promise<Item[]> {
  const b = (await dataset.batches('test', n).next()).value!;
  return Array.from({ length: n }, (_, i) => ({
    example: { split: 'test' as const, index: i, label: b.labels[i], predicted: b.labels[i], correct: true },
    id: `test-${i}`, target: b.labels[i], role: 'predicted' as const,
    image: b.images.subarray(i * S * S, (i + 1) * S * S), pixels: b.pixels.subarray(i * S * S, (i + 1) * S * S),
  }));
}


beforeAll(async () => {
  await tf.setBackend('cpu');
  ({ model, dataset } = await tinyReport());
  quadrant = await quadrantModel();
  const f = await runTechnique(features, { model, dataset });
  feats = { data: f.data as FeaturesData, dir: f.dir };
  const q = await runTechnique(features, { model: quadrant, dataset });
  quadrantFeats = { data: q.data as FeaturesData, dir: q.dir };
}, 60_000);
afterAll(() => {
  model?.dispose();
  quadrant?.dispose();
});

describe('hand-made model: the logit depends only on the top-left quadrant', () => {
  it('saliency equals the weights there and is exactly zero elsewhere', async () => {
    const items = await firstImages(3);
    const [g, w] = tf.tidy(() => [inputGradient(quadrant.executor, itemTensor(items, [S, S, 1]), [0, 1, 2]).dataSync(), quadrant.layersModel.getLayer('logits').getWeights()[0].dataSync()]);
    for (let b = 0; b < 3; b++) {
      for (let p = 0; p < S * S; p++) {
        const inside = Math.floor(p / S) < S / 2 && p % S < S / 2;
        const v = g[b * S * S + p];
        if (inside) expect(v).toBeCloseTo(w[p * 3 + b], 6);
        else expect(v).toBe(0);
      }
    }
  });

  it('occlusion drops the probability only where patches touch the quadrant', async () => {
    const items = await firstImages(3);
    const maps = await occlusionMaps(quadrant.executor, items, [S, S, 1], 4, 4, [0.5]);
    let insideTotal = 0;
    for (let b = 0; b < 3; b++) {
      for (let p = 0; p < S * S; p++) {
        const inside = Math.floor(p / S) < S / 2 && p % S < S / 2;
        if (inside) insideTotal += Math.abs(maps[b * S * S + p]);
        else expect(maps[b * S * S + p]).toBe(0);
      }
    }
    expect(insideTotal).toBeGreaterThan(0);
  });

  it('CAM does not apply and says why (no global average pooling)', async () => {
    const head = camHead(quadrant);
    expect(head.ok).toBe(false);
    const before = tf.memory().numTensors;
    const { data } = await runTechnique(cam, { model: quadrant, dataset, deps: { features: quadrantFeats.data }, depDirs: { features: quadrantFeats.dir } });
    expect(tf.memory().numTensors).toBe(before);
    expect(data).toMatchObject({ applicable: false });
    expect((data as { reason: string }).reason).toMatch(/GlobalAveragePooling2D/);
  });

  it('the explicit deconvnet names the layer it cannot pass (average pooling)', async () => {
    const m = tfl.sequential();
    m.add(tfl.layers.conv2d({ inputShape: [S, S, 1], filters: 2, kernelSize: 3, activation: 'relu', name: 'a1' }));
    m.add(tfl.layers.averagePooling2d({ poolSize: 2, name: 'avg' }));
    m.add(tfl.layers.conv2d({ filters: 2, kernelSize: 3, activation: 'relu', name: 'a2' }));
    m.add(tfl.layers.globalAveragePooling2d({ name: 'gap' }));
    m.add(tfl.layers.dense({ units: 3, name: 'logits' }));
    const dir = tmpDir('convlens-avgpool-');
    await saveModel(m, dir);
    m.dispose();
    const avg = await loadModel(dir);
    const items = await firstImages(2);
    expect(() => tf.tidy(() => {
      const x = itemTensor(items, [S, S, 1]);
      const { units, values } = strongestUnits(avg.executor, x, 'a2');
      return deconvnetProject(avg, x, 'a2', units, values);
    })).toThrow(/cannot pass layer 'avg' \(AveragePooling2D\)/);
    expect(camHead(avg).ok).toBe(true);
    avg.dispose();
  });

  it('poolSwitches = the cpu kernel\'s MaxPoolWithArgmax (first maximum), ties and padding included', () => {
    const before = tf.memory().numTensors;
    // ReLU'd noise: many all-zero windows (exact ties), the case where backends' kernels differ
    const x = tf.tidy(() => tf.relu(seededImages([2, 7, 9, 3], 3, -1)) as tf.Tensor4D);
    // rounded to 1/4: ties between non-zero values too
    const xr = tf.tidy(() => tf.div(tf.round(tf.mul(x, 4)), 4) as tf.Tensor4D);
    const cases: [[number, number], [number, number], 'valid' | 'same'][] = [[[2, 2], [2, 2], 'valid'], [[3, 3], [2, 2], 'same'], [[3, 2], [1, 2], 'valid'], [[2, 2], [2, 2], 'same']];
    for (const input of [x, xr]) for (const [kernel, strides, padding] of cases) {
      const [ours, ref] = tf.tidy(() => {
        const { indexes } = tf.maxPoolWithArgmax(input, kernel, strides, padding, false);
        const node = { name: 'p', outputShape: indexes.shape.slice(1), spatial: { kind: 'window', kernel, strides, dilation: [1, 1], padding } } as unknown as Parameters<typeof poolSwitches>[1];
        return [poolSwitches(input, node).dataSync(), indexes.dataSync()];
      });
      expect(Array.from(ours), `${kernel} ${strides} ${padding}`).toEqual(Array.from(ref));
    }
    tf.dispose([x, xr]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('the trapezoid area of a straight line from 1 to 0 is 1/2', () => {
    expect(auc([1, 0.75, 0.5, 0.25, 0])).toBeCloseTo(0.5, 10);
  });
});

describe('tiny trained model (fused ReLUs, max-pools, GAP + dense)', () => {
  it('explicit deconvnet (switches, rectification, transposed filters) = gradient with the deconvnet rule', async () => {
    const items = await firstImages(6);
    const before = tf.memory().numTensors;
    for (const layer of ['c3', 'c2', 'p2']) {
      const [a, b] = tf.tidy(() => {
        const x = itemTensor(items, [S, S, 1]);
        const { units, values } = strongestUnits(model.executor, x, layer);
        const explicit = deconvnetProject(model, x, layer, units, values);
        const rule = tf.mul(unitGradient(model.executor, x, layer, units, 'deconvnet'), tf.reshape(values, [-1, 1, 1, 1]));
        return [explicit.dataSync(), rule.dataSync()];
      });
      expect(Math.max(...Array.from(b, Math.abs))).toBeGreaterThan(0);
      expect(maxRelErr(a, b)).toBeLessThanOrEqual(1e-5);
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('explicit deconvnet = gradient rule through BatchNormalization (conv → ReLU → BN → pool, like the default model)', async () => {
    const m = tfl.sequential();
    m.add(tfl.layers.conv2d({ inputShape: [10, 10, 1], filters: 4, kernelSize: 3, padding: 'same', activation: 'relu', name: 'conv' }));
    m.add(tfl.layers.batchNormalization({ name: 'bn' }));
    m.add(tfl.layers.maxPooling2d({ poolSize: 2, name: 'pool' }));
    m.add(tfl.layers.conv2d({ filters: 3, kernelSize: 3, activation: 'relu', name: 'top' }));
    setSeededWeights(m, 11); // non-trivial gamma, beta and moving statistics
    const dir = await saveModel(m, tmpDir());
    m.dispose();
    const bnModel = await loadModel(dir);
    try {
      const before = tf.memory().numTensors;
      const [a, b] = tf.tidy(() => {
        const x = seededImages([3, 10, 10, 1], 5);
        const { units, values } = strongestUnits(bnModel.executor, x, 'top');
        const explicit = deconvnetProject(bnModel, x, 'top', units, values);
        const rule = tf.mul(unitGradient(bnModel.executor, x, 'top', units, 'deconvnet'), tf.reshape(values, [-1, 1, 1, 1]));
        return [explicit.dataSync(), rule.dataSync()];
      });
      expect(Math.max(...Array.from(b, Math.abs))).toBeGreaterThan(0);
      expect(maxRelErr(a, b)).toBeLessThanOrEqual(1e-5);
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      bnModel.dispose();
    }
  });

  it('guided backprop and deconvnet differ from plain saliency (the fused ReLU is split out)', async () => {
    const items = await firstImages(4);
    const targets = items.map((i) => i.target);
    const [plain, guided, deconv] = tf.tidy(() => {
      const x = itemTensor(items, [S, S, 1]);
      return (['plain', 'guided', 'deconvnet'] as const).map((r) => inputGradient(model.executor, x, targets, r).dataSync());
    });
    expect(maxRelErr(guided, plain)).toBeGreaterThan(0.05);
    expect(maxRelErr(deconv, plain)).toBeGreaterThan(0.05);
    expect(maxRelErr(deconv, guided)).toBeGreaterThan(0.05);
  });

  it('Grad-CAM at the last conv layer = ReLU(CAM) / (h·w): CAM up to a positive scale', async () => {
    const items = await firstImages(6);
    const head = camHead(model);
    if (!head.ok) throw new Error(head.reason);
    expect(head.feature).toBe('c3');
    let positive = 0;
    for (const targets of [items.map((i) => i.target), items.map((i) => (i.target + 1) % 3)]) {
      const [g, c] = tf.tidy(() => {
        const x = itemTensor(items, [S, S, 1]);
        const a = model.executor.run(x, { upTo: 'c3' }).output;
        const [, h, w] = a.shape;
        return [gradCamMaps(model.executor, x, 'c3', targets).dataSync(), tf.div(tf.relu(camMaps(a, head.weights, targets)), h * w).dataSync()];
      });
      positive += c.filter((v) => v > 0).length;
      expect(maxRelErr(g, c)).toBeLessThanOrEqual(1e-5);
    }
    expect(positive).toBeGreaterThan(0);
  });
});

describe('every attribution technique on the tiny report', () => {
  const run = async (t: Technique, params: Record<string, unknown> = {}) => {
    const before = tf.memory().numTensors;
    const r = await runTechnique(t, { model, dataset, params, deps: { features: feats.data }, depDirs: { features: feats.dir } });
    expect(tf.memory().numTensors).toBe(before);
    return r as { data: AttributionData & Record<string, unknown>; dir: string; files: string[] };
  };
  const raw = (dir: string, d: AttributionData, kind: string) => {
    const k = d.kinds.find((x) => x.name === kind)!;
    const b = fs.readFileSync(path.join(dir, k.raw));
    return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
  };

  it('saliency: maps for the predicted and (when wrong) true class, files, scales, faithfulness', async () => {
    const { data, dir, files } = await run(saliency);
    const examples = data.images;
    expect(examples.length).toBeGreaterThanOrEqual(3);
    for (const img of examples) {
      expect(img.targets[0]).toMatchObject({ class: img.predicted, role: 'predicted' });
      if (!img.correct) expect(img.targets[1]).toMatchObject({ class: img.label, role: 'true' });
      for (const t of img.targets) for (const f of Object.values(t.files)) expect(files).toContain(f.heat);
    }
    const grad = data.kinds.find((k) => k.name === 'gradient')!;
    expect(grad).toMatchObject({ colormap: 'inferno', scale: { min: 0 } });
    expect(data.kinds.find((k) => k.name === 'gradient-x-input')!.colormap).toBe('rdbu');
    const rows = examples.reduce((n, i) => n + i.targets.length, 0);
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'gradient/raw.json'), 'utf8')).shape).toEqual([rows, S, S]);
    const f = data.faithfulness!;
    expect(f.means.gradient.n).toBe(rows);
    const c = examples[0].targets[0].faithfulness!.gradient;
    expect(c.deletion).toHaveLength(21);
    expect(c.deletion[0]).toBeCloseTo(c.insertion[20], 4); // both are the untouched image
  });

  it('smoothgrad with σ = 0 equals saliency; with noise it differs', async () => {
    const s = await run(saliency, { faithfulness: false });
    const z = await run(smoothgrad, { noise: 0, samples: 3, faithfulness: false });
    expect(maxRelErr(raw(z.dir, z.data, 'gradient'), raw(s.dir, s.data, 'gradient'))).toBeLessThanOrEqual(1e-5);
    const n = await run(smoothgrad, { samples: 5, faithfulness: false });
    expect(maxRelErr(raw(n.dir, n.data, 'gradient'), raw(s.dir, s.data, 'gradient'))).toBeGreaterThan(1e-3);
    // the same noisy copies in chunks of 2 (as for big models) give the same average
    const chunked = await run(smoothgrad, { samples: 5, samplesPerCall: 2, faithfulness: false });
    expect(maxRelErr(raw(chunked.dir, chunked.data, 'gradient'), raw(n.dir, n.data, 'gradient'))).toBeLessThanOrEqual(1e-6);
  });

  it('deconvnet: the explicit projection agrees with the gradient rule; four maps side by side', async () => {
    const { data } = await run(deconvnet);
    expect(data.layer).toBe('c3');
    expect(data.explicitVsRuleMaxRelativeDifference as number).toBeLessThanOrEqual(1e-5);
    expect(data.kinds.map((k) => k.name)).toEqual(['projection', 'saliency', 'deconvnet', 'guided']);
    expect(data.images[0].targets[0].info).toHaveProperty('unit');
  });

  it('cam, grad-cam (with a layer comparison), grad-cam++, guided grad-cam, guided backprop, occlusion run', async () => {
    const c = await run(cam);
    expect(c.data).toMatchObject({ applicable: true, layer: 'c3' });
    const g = await run(gradCam);
    expect(g.data.layer).toBe('c3');
    const cmp = g.data.comparison as { layers: { layer: string }[]; images: unknown[] };
    expect(cmp.layers.map((l) => l.layer)).toEqual(['c1', 'c2', 'c3']);
    expect(cmp.images.length).toBeGreaterThan(0);
    // CAM and Grad-CAM rows agree up to scale where CAM is positive
    const camRaw = raw(c.dir, c.data, 'cam').map((v) => Math.max(v, 0) / 16);
    expect(maxRelErr(raw(g.dir, g.data, 'grad-cam'), camRaw)).toBeLessThanOrEqual(1e-5);
    await run(gradCamPlusPlus);
    await run(guidedGradCam);
    await run(guidedBackprop);
    const o = await run(occlusion);
    expect(o.data).toMatchObject({ size: 3, stride: 2 });
  });

  it('an unknown layer is a user error naming the choices', async () => {
    await expect(run(gradCam, { layer: 'c9' })).rejects.toThrow(/unknown layer name 'c9'/);
  });
});
