import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { loadLayersModel, model as functionalModel } from '@tensorflow/tfjs-layers';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  MOBILENET_STYLE_LAYERS, PERCEPTUAL_CACHE, PIXELS_LAYER, buildRandomNet, cutBackbone, dequantize, findNsfwjs, loadMobileNetV2Backbone, parseExportedLiteral, perceptualParam,
  prepareMobileNetV2Backbone,
} from '../pipelines/engines/perceptual';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

/** the default style layers that are MobileNetV2 layers (all but the pixels). */
const NET_LAYERS = MOBILENET_STYLE_LAYERS.filter((l) => l !== PIXELS_LAYER);

// the full nsfwjs model, head included, exactly as nsfwjs hands it to tfjs (tfjs dequantises)
function fullNsfwjsArtifacts(): tf.io.ModelArtifacts {
  const dir = path.join(findNsfwjs(), 'dist/models/mobilenet_v2');
  const json = parseExportedLiteral(fs.readFileSync(path.join(dir, 'model.min.js'), 'utf8')) as {
    modelTopology: object; weightsManifest: { weights: tf.io.WeightsManifestEntry[] }[];
  };
  const b64 = parseExportedLiteral(fs.readFileSync(path.join(dir, 'group1-shard1of1.min.js'), 'utf8')) as string;
  const bytes = Buffer.from(b64, 'base64');
  return {
    modelTopology: json.modelTopology,
    weightSpecs: json.weightsManifest.flatMap((g) => g.weights),
    weightData: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length),
  };
}

describe('reading the nsfwjs files', () => {
  it('parses minified JS literals without evaluating them', () => {
    const src = '!function(e){x()}(function(){return {1:[function(e,a,n){a.exports={k:!0,f:!1,"q":[.5,-1e-3,12,"a\\"b"],n:null}},{}]}});';
    expect(parseExportedLiteral(src)).toEqual({ k: true, f: false, q: [0.5, -0.001, 12, 'a"b'], n: null });
    expect(parseExportedLiteral('h.exports="QUJD"}')).toBe('QUJD');
    expect(() => parseExportedLiteral('a.exports={k:require("fs")}')).toThrow(/not a literal/);
  });

  it('dequantises like tfjs: q·scale + min (hand-made case and tf.io.decodeWeights)', () => {
    const q = new Uint8Array([0, 1, 2, 255]);
    expect(Array.from(dequantize(q, 0.5, -1))).toEqual([-1, -0.5, 0, 126.5]);
    const spec = [{ name: 'w', shape: [4], dtype: 'float32' as const, quantization: { dtype: 'uint8' as const, scale: 0.013, min: -0.7 } }];
    const ref = tf.io.decodeWeights(q.buffer, spec).w;
    expect(Array.from(dequantize(q, 0.013, -0.7))).toEqual(Array.from(ref.dataSync()));
    ref.dispose();
  });

  it('cuts the head: only ancestors of the cut layer and their weights remain', () => {
    const layer = (name: string, from?: string) => ({ name, class_name: 'X', inbound_nodes: from ? [[[from, 0, 0, {}]]] : [] });
    const json = {
      modelTopology: { model_config: { config: { layers: [layer('in'), layer('a', 'in'), layer('head', 'a')], output_layers: [['head', 0, 0]] } }, training_config: {} },
      weightsManifest: [{ paths: ['s'], weights: [
        { name: 'a/kernel', shape: [2], dtype: 'float32', quantization: { dtype: 'uint8', scale: 2, min: 1 } },
        { name: 'head/kernel', shape: [3], dtype: 'float32' },
      ] }],
    };
    const bytes = new Uint8Array(2 + 12);
    bytes.set([3, 4]);
    const cut = cutBackbone(json, bytes, 'a');
    expect(cut.topology.model_config.config.layers.map((l) => l.name)).toEqual(['in', 'a']);
    expect(cut.topology.model_config.config.output_layers).toEqual([['a', 0, 0]]);
    expect(cut.topology).not.toHaveProperty('training_config');
    expect(cut.weights.map((w) => w.name)).toEqual(['a/kernel']);
    expect(Array.from(cut.data)).toEqual([7, 9]);
    expect(() => cutBackbone(json, bytes.slice(0, 10), 'a')).toThrow(/describes 14 bytes/);
    // float32 and uint16 weights, read from a Buffer at a non-zero offset of a larger allocation
    json.weightsManifest[0].weights = [
      { name: 'head/kernel', shape: [1], dtype: 'float32', quantization: { dtype: 'uint16', scale: 0.5, min: 0 } },
      { name: 'a/kernel', shape: [2], dtype: 'float32' },
    ] as never;
    const pool = Buffer.alloc(64);
    const buf = pool.subarray(5, 5 + 2 + 8);
    buf.writeUInt16LE(9, 0);
    buf.writeFloatLE(1.5, 2);
    buf.writeFloatLE(-2.25, 6);
    expect(Array.from(cutBackbone(json, buf, 'a').data)).toEqual([1.5, -2.25]);
  });

  it('a missing package is a clear error', () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'convlens-nsfwjs-'));
    expect(() => findNsfwjs(pathToFileURL(path.join(tmp, 'x.js')).href)).toThrow(/npm install nsfwjs@4\.4\.0/);
    fs.writeFileSync(path.join(tmp, 'package.json'), '{"version":"9.9.9"}');
    expect(() => prepareMobileNetV2Backbone(tmp, tmp)).toThrow(/nsfwjs 9\.9\.9 has no model\.min\.js.*npm install nsfwjs@4\.4\.0/);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('the param accepts { kind: "mobilenet-v2" }', () => {
    expect(perceptualParam.parse({ kind: 'mobilenet-v2' })).toEqual({ kind: 'mobilenet-v2' });
  });
});

describe('MobileNetV2 backbone', () => {
  it('matches the full nsfwjs model run by tfjs-layers at every default layer; no head; no leaks', async () => {
    const before = tf.memory().numTensors;
    const net = await loadMobileNetV2Backbone();
    const full = await loadLayersModel(tf.io.fromMemory(fullNsfwjsArtifacts()));
    const probe = functionalModel({ inputs: full.inputs, outputs: NET_LAYERS.map((l) => full.getLayer(l).output as never) });
    tf.tidy(() => {
      // nsfwjs' input: pixels / 255 at 224 px; a smooth seeded image
      const x = tf.randomUniform([1, 224, 224, 3], 0, 1, 'float32', 3) as tf.Tensor4D;
      const ours = net.forward(x, NET_LAYERS);
      const theirs = probe.predict(x) as tf.Tensor[];
      NET_LAYERS.forEach((l, i) => {
        expect(ours[l].shape).toEqual(theirs[i].shape);
        const err = tf.max(tf.abs(tf.sub(ours[l], theirs[i]))).dataSync()[0];
        const scale = tf.max(tf.abs(theirs[i])).dataSync()[0];
        expect(scale).toBeGreaterThan(0.1);
        expect(err / scale).toBeLessThan(1e-4);
      });
    });
    // the head is not there, under any name
    for (const l of ['average_pooling2d_1', 'flatten_1', 'dense_1', 'dense_2', 'dense_3']) expect(net.layers).not.toContain(l);
    expect(net.layers.at(-1)).toBe('out_relu');
    expect(() => tf.tidy(() => { net.forward(tf.zeros([1, 32, 32, 3]), ['dense_3']); })).toThrow(/no layer 'dense_3'/);
    const saved = fs.readdirSync(PERCEPTUAL_CACHE).filter((d) => d.startsWith('nsfwjs-'))
      .map((d) => fs.readFileSync(path.join(PERCEPTUAL_CACHE, d, 'model.json'), 'utf8')).join('');
    for (const word of ['Dense', 'dense_', 'Flatten', 'training_config', 'Drawing', 'Hentai', 'Neutral', 'Porn', 'Sexy']) expect(saved).not.toContain(word);
    full.dispose();
    net.dispose();
    expect(tf.memory().numTensors).toBe(before);
  }, 60_000);

  it('works at any size (fully convolutional): 64 px gives 1/2 … 1/16 maps', async () => {
    const net = await loadMobileNetV2Backbone();
    const shapes = tf.tidy(() => Object.values(net.forward(tf.zeros([1, 64, 64, 3]), NET_LAYERS)).map((t) => t.shape.slice(1, 3)));
    expect(shapes).toEqual([[32, 32], [32, 32], [16, 16], [8, 8], [4, 4]]);
    net.dispose();
  });
});

describe('the pixels layer', () => {
  it('is the image minus mid-grey on every net, next to its other layers; the MobileNetV2 style layers start with it', async () => {
    expect(MOBILENET_STYLE_LAYERS[0]).toBe(PIXELS_LAYER);
    const before = tf.memory().numTensors;
    const nets = [buildRandomNet({ filters: 4, kernel: 3, levels: 2 }), await loadMobileNetV2Backbone()];
    for (const net of nets) {
      expect(net.layers[0]).toBe(PIXELS_LAYER);
      const deeper = net.layers[1];
      const [px, other, alone] = tf.tidy(() => {
        const x = tf.tensor4d([0, 0.25, 0.5, 1, 0.75, 0.125, 0.5, 0.5, 0.5, 1, 0, 0.2], [1, 2, 2, 3]);
        const both = net.forward(tf.image.resizeNearestNeighbor(x, [32, 32]), [PIXELS_LAYER, deeper]);
        return [tf.slice(both[PIXELS_LAYER], [0, 0, 0, 0], [1, 1, 1, 3]), both[deeper], net.forward(tf.image.resizeNearestNeighbor(x, [32, 32]), [deeper])[deeper]];
      });
      expect(Array.from(px.dataSync())).toEqual([-0.5, -0.25, 0]);
      expect(Array.from(other.dataSync())).toEqual(Array.from(alone.dataSync()));
      tf.dispose([px, other, alone]);
      net.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
  });
});
