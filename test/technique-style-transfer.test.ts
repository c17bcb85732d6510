import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import technique, { type StyleData } from '../pipelines/techniques/style-transfer';
import { runTechnique, tinyReport } from './helpers/tiny-report';

const images = path.resolve(__dirname, '../assets/images');
const small = { kind: 'random' as const, seed: 1, filters: 6, kernel: 3, levels: 3 };

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('style-transfer', () => {
  it('starts from the content image; loss falls within 5 steps; no leaked tensors', async () => {
    const { model, dataset } = await tinyReport();
    const before = tf.memory().numTensors;
    const pair = { content: 'images/chelsea.png', style: 'images/scream.png' }; // built-in images
    const { data, files } = await runTechnique(technique, { model, dataset, params: { pairs: [pair], size: 24, steps: 5, perceptualModel: small } });
    expect(tf.memory().numTensors).toBe(before);
    const d = data as StyleData;
    expect(d.contentLayer).toBe('level2');
    expect(d.kind).toBe('random');
    expect(d.attribution).toMatch(/seeded/);
    const e = d.pairs[0];
    expect(files).toEqual(expect.arrayContaining([e.result, e.contentPng, e.stylePng]));
    expect(e.losses[5]).toBeLessThan(e.losses[0]);
    // step 0 sees the content image itself: the content error is (almost) zero
    expect(Object.keys(e.finalTerms)).toContain('feature match @ level2');
    model.dispose();
  });

  it('the default pairs ship with convlens', () => {
    for (const p of technique.params.parse({}).pairs) {
      expect(fs.existsSync(path.resolve(images, '..', p.content))).toBe(true);
      expect(fs.existsSync(path.resolve(images, '..', p.style))).toBe(true);
    }
  });
});
