import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { readImage } from '../pipelines/engines/optimize-image';
import technique, { type StyleData } from '../pipelines/techniques/style-transfer';
import { runTechnique, tinyReport } from './helpers/tiny-report';

const images = path.resolve(__dirname, '../assets/images');
const small = { kind: 'random' as const, seed: 1, filters: 6, kernel: 3, levels: 3 };
const pair = { content: 'images/chelsea.png', style: 'images/scream.png' }; // built-in images

beforeAll(async () => {
  await tf.setBackend('cpu');
});

const readRaw = (dir: string, file: string) => {
  const b = fs.readFileSync(path.join(dir, file));
  return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
};

describe('style-transfer', () => {
  it('fourier (default): from faint noise, loss falls within 5 steps; files; no leaked tensors', async () => {
    const { model, dataset } = await tinyReport();
    const before = tf.memory().numTensors;
    const { data, files } = await runTechnique(technique, { model, dataset, params: { pairs: [pair], size: 24, steps: 5, perceptualModel: small } });
    expect(tf.memory().numTensors).toBe(before);
    const d = data as StyleData;
    expect(d.param).toBe('fourier');
    expect(d.contentLayer).toBe('level2');
    expect(d.kind).toBe('random');
    expect(d.attribution).toMatch(/seeded/);
    const e = d.pairs[0];
    expect(files).toEqual(expect.arrayContaining([e.result, e.contentPng, e.stylePng, e.raw]));
    expect(e.losses).toHaveLength(6);
    expect(e.losses[5]).toBeLessThan(e.losses[0]);
    expect(Object.keys(e.finalTerms)).toEqual(['feature match @ level2', 'Gram match @ level0', 'Gram match @ level1', 'Gram match @ level2']);
    model.dispose();
  });

  it('fourier starts from faint noise, pixel from the content image itself', async () => {
    const { model, dataset } = await tinyReport();
    const content = await readImage(path.join(images, 'chelsea.png'), 24, 3);
    const run = async (param: 'fourier' | 'pixel') => {
      const { data, dir } = await runTechnique(technique, { model, dataset, params: { pairs: [pair], size: 24, steps: 0, param, perceptualModel: small } });
      const e = (data as StyleData).pairs[0];
      return { e, image: readRaw(dir, e.raw) };
    };
    const pixel = await run('pixel');
    const fourier = await run('fourier');
    // pixel: the content image up to the sigmoid parameterisation's clamp to [0.001, 0.999]
    let maxDiff = 0;
    for (let i = 0; i < content.length; i++) maxDiff = Math.max(maxDiff, Math.abs(pixel.image[i] - content[i]));
    expect(maxDiff).toBeLessThan(1.5e-3);
    expect(pixel.e.finalTerms['feature match @ level2']).toBeLessThan(1e-6);
    // fourier: mid-grey plus noise, far from the photograph: the content error is large
    const mean = fourier.image.reduce((a, v) => a + v, 0) / fourier.image.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.05);
    expect(fourier.e.finalTerms['feature match @ level2']).toBeGreaterThan(0.1);
    model.dispose();
  });

  it('defaults: the MobileNetV2 backbone, Fourier parameterisation, built-in pairs', () => {
    const p = technique.params.parse({});
    expect(p.perceptualModel).toEqual({ kind: 'mobilenet-v2' });
    expect(p.param).toBe('fourier');
    for (const q of p.pairs) {
      expect(fs.existsSync(path.resolve(images, '..', q.content))).toBe(true);
      expect(fs.existsSync(path.resolve(images, '..', q.style))).toBe(true);
    }
  });

  it('runs on the default network (MobileNetV2 backbone, its default layers) at a small size', async () => {
    const { model, dataset } = await tinyReport();
    const before = tf.memory().numTensors;
    const { data } = await runTechnique(technique, { model, dataset, params: { pairs: [pair], size: 32, steps: 2 } });
    expect(tf.memory().numTensors).toBe(before);
    const d = data as StyleData;
    expect(d.kind).toBe('mobilenet-v2');
    expect(d.contentLayer).toBe('block_6_expand_relu');
    expect(d.styleLayers).toEqual(['pixels', 'Conv1_relu', 'block_1_expand_relu', 'block_3_expand_relu', 'block_6_expand_relu', 'block_13_expand_relu']);
    expect(d.attribution).toMatch(/nsfwjs/);
    expect(d.pairs[0].losses.every(Number.isFinite)).toBe(true);
    model.dispose();
  }, 120_000);
});
