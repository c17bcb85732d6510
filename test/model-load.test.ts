import '@tensorflow/tfjs-backend-cpu';
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConvlensError } from '../pipelines/errors';
import { loadModel } from '../pipelines/model/load';
import { functionalModel, saveModel, seededImages, sequentialModel, tmpDir } from './fixtures/models';

let root: string;
let goodDir: string;
beforeAll(async () => {
  await tf.setBackend('cpu');
  root = tmpDir();
  const model = functionalModel();
  goodDir = await saveModel(model, path.join(root, 'good'), { shards: 3 });
  model.dispose();
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** A copy of the good model folder with model.json edited by `edit`. */
function variant(name: string, edit: (json: Record<string, any>, dir: string) => void): string {
  const dir = path.join(root, name);
  fs.cpSync(goodDir, dir, { recursive: true });
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
  edit(json, dir);
  fs.writeFileSync(path.join(dir, 'model.json'), JSON.stringify(json));
  return dir;
}

async function loadError(dir: string): Promise<ConvlensError> {
  try {
    const m = await loadModel(dir);
    m.dispose();
  } catch (e) {
    expect(e).toBeInstanceOf(ConvlensError);
    expect((e as Error).message).not.toContain('\n');
    return e as ConvlensError;
  }
  throw new Error(`loading ${dir} should have failed`);
}

describe('loadModel', () => {
  it('loads a sharded functional model: id, shapes, layers, receptive fields, executor', async () => {
    const m = await loadModel(goodDir);
    const hash = createHash('sha256');
    hash.update(fs.readFileSync(path.join(goodDir, 'model.json')));
    for (let i = 1; i <= 3; i++) hash.update(fs.readFileSync(path.join(goodDir, `group1-shard${i}of3.bin`)));
    expect(m.id).toBe(hash.digest('hex'));
    expect(m.inputShape).toEqual([12, 12, 3]);
    expect(m.totalParams).toBe(m.layersModel.countParams());
    expect(m.layers.map((l) => l.name)).toEqual(['image', 'c1', 'bn', 'dw', 'add', 'zp', 'sep', 'side', 'side_act', 'cat', 'gap', 'drop', 'probs']);
    const c1 = m.layers.find((l) => l.name === 'c1')!;
    expect(c1).toMatchObject({ className: 'Conv2D', activation: 'relu', inbound: ['image'], outputShape: [12, 12, 6], params: 3 * 3 * 3 * 6 + 6 });
    expect(c1.receptiveField).toEqual({ size: [5, 5], jump: [1, 1], start: [0, 0] }); // dilation 2
    expect(m.layers.find((l) => l.name === 'add')!.inbound).toEqual(['c1', 'dw']);
    expect(m.layers.find((l) => l.name === 'gap')!.receptiveField).toBeUndefined();
    const x = seededImages([2, 12, 12, 3], 1);
    const expected = m.layersModel.predict(x) as tf.Tensor;
    const actual = tf.tidy(() => m.executor.run(x).output);
    expect(tf.tidy(() => tf.max(tf.abs(tf.sub(expected, actual))).dataSync()[0])).toBeLessThan(1e-5);
    tf.dispose([x, expected, actual]);
    const before = tf.memory().numTensors;
    m.dispose();
    expect(tf.memory().numTensors).toBeLessThan(before);
  });

  it('gives the same id for the same files and another id when a weight changes', async () => {
    const a = await loadModel(goodDir);
    const b = await loadModel(goodDir);
    expect(a.id).toBe(b.id);
    const dir = variant('changed-weight', () => undefined);
    const shard = path.join(dir, 'group1-shard1of3.bin');
    const bytes = fs.readFileSync(shard);
    bytes[0] ^= 1;
    fs.writeFileSync(shard, bytes);
    const c = await loadModel(dir);
    expect(c.id).not.toBe(a.id);
    [a, b, c].forEach((m) => m.dispose());
  });

  it('loads a Sequential model', async () => {
    const model = sequentialModel();
    const dir = await saveModel(model, path.join(root, 'seq'));
    const m = await loadModel(dir);
    expect(m.inputShape).toEqual([10, 10, 1]);
    expect(m.layers[0].className).toBe('InputLayer');
    expect(m.layers.map((l) => l.name).slice(1)).toEqual(['conv1', 'pool1', 'conv2', 'flat', 'fc1', 'logits']);
    m.dispose();
    model.dispose();
  });
});

describe('loadModel errors', () => {
  it('missing model.json names the folder and how to export', async () => {
    const dir = path.join(root, 'empty');
    fs.mkdirSync(dir);
    const e = await loadError(dir);
    expect(e.message).toContain(dir);
    expect(e.message).toMatch(/LayersModel.*tensorflowjs_converter --input_format keras/);
    expect((await loadError(path.join(root, 'nope'))).message).toMatch(/does not exist/);
  });

  it('malformed JSON', async () => {
    const dir = variant('malformed', () => undefined);
    fs.writeFileSync(path.join(dir, 'model.json'), '{"modelTopology": ');
    expect((await loadError(dir)).message).toMatch(/model\.json: is not valid JSON/);
  });

  it('a GraphModel', async () => {
    const dir = variant('graph', (json) => {
      json.format = 'graph-model';
      json.modelTopology = { node: [], library: {}, versions: {} };
    });
    const e = await loadError(dir);
    expect(e.message).toMatch(/format: is a TF.js GraphModel.*not support.*--input_format keras/);
  });

  it('missing weightsManifest', async () => {
    const dir = variant('no-manifest', (json) => delete json.weightsManifest);
    expect((await loadError(dir)).message).toMatch(/weightsManifest: has no weightsManifest/);
  });

  it('absolute shard path', async () => {
    const dir = variant('absolute', (json) => (json.weightsManifest[0].paths[1] = '/etc/passwd'));
    expect((await loadError(dir)).message).toMatch(/weightsManifest\[0\]\.paths\[1\]: shard path '\/etc\/passwd' is absolute/);
  });

  it('shard path escaping the folder with ../', async () => {
    const dir = variant('escape', (json) => (json.weightsManifest[0].paths[0] = '../good/group1-shard1of3.bin'));
    expect((await loadError(dir)).message).toMatch(/paths\[0\]: shard path '..\/good\/group1-shard1of3.bin' points outside the model folder/);
  });

  it('shard symlink resolving outside the folder', async () => {
    const dir = variant('symlink', () => undefined);
    const outside = path.join(root, 'outside.bin');
    fs.copyFileSync(path.join(goodDir, 'group1-shard2of3.bin'), outside);
    fs.rmSync(path.join(dir, 'group1-shard2of3.bin'));
    fs.symlinkSync(outside, path.join(dir, 'group1-shard2of3.bin'));
    expect((await loadError(dir)).message).toMatch(/paths\[1\]: shard path 'group1-shard2of3.bin' is a symlink to .*outside the model folder/);
  });

  it('missing shard file', async () => {
    const dir = variant('missing-shard', () => undefined);
    fs.rmSync(path.join(dir, 'group1-shard3of3.bin'));
    expect((await loadError(dir)).message).toMatch(/paths\[2\]: weight shard 'group1-shard3of3.bin' is missing.*Fix: copy every file/);
  });

  it('shard size not matching the manifest', async () => {
    const dir = variant('short-shard', () => undefined);
    const shard = path.join(dir, 'group1-shard3of3.bin');
    fs.writeFileSync(shard, fs.readFileSync(shard).subarray(4));
    expect((await loadError(dir)).message).toMatch(/weightsManifest\[0\]: the shards .* hold \d+ bytes but the weights listed for them need \d+/);
  });

  it('a model without a 4-D image input', async () => {
    const model = tfl.sequential();
    model.add(tfl.layers.dense({ inputShape: [5], units: 2 }));
    const dir = await saveModel(model, path.join(root, 'dense-only'));
    const e = await loadError(dir);
    expect(e.message).toMatch(/model\.json: .*input has shape \[null,5\]; convlens needs a 4-D image input/);
    model.dispose();
  });

  it('an unsupported layer names the layer and its class', async () => {
    const model = tfl.sequential();
    model.add(tfl.layers.conv2d({ inputShape: [6, 6, 1], filters: 2, kernelSize: 3, name: 'c' }));
    model.add(tfl.layers.upSampling2d({ size: [2, 2], name: 'up' }));
    const dir = await saveModel(model, path.join(root, 'unsupported'));
    const e = await loadError(dir);
    expect(e.message).toMatch(/model\.json: .*layer 'up' has class 'UpSampling2D', which convlens cannot execute/);
    model.dispose();
  });
});
