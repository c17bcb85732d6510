import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import technique, { type TextureData } from '../pipelines/techniques/texture-synthesis';
import { runTechnique, tinyReport } from './helpers/tiny-report';

const images = path.resolve(__dirname, '../assets/images');
const small = { kind: 'random' as const, seed: 1, filters: 6, kernel: 3, levels: 3 };

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('texture-synthesis', () => {
  it('matches Gram matrices from noise: loss falls within 5 steps; files; no leaked tensors', async () => {
    const { model, dataset } = await tinyReport();
    const before = tf.memory().numTensors;
    const { data, files } = await runTechnique(technique, {
      model, dataset, params: { textures: ['images/gravel.png'], size: 24, steps: 5, perceptualModel: small },
    });
    expect(tf.memory().numTensors).toBe(before);
    const d = data as TextureData;
    expect(d.layers).toEqual(['level0', 'level1', 'level2']);
    expect(d.network).toContain('random-multiscale');
    const t = d.textures[0];
    expect(files).toEqual(expect.arrayContaining([t.result, t.sourcePng]));
    expect(t.losses).toHaveLength(6);
    expect(t.losses[5]).toBeLessThan(t.losses[0]);
    model.dispose();
  });

  it('the default textures ship with the report', () => {
    const defaults = technique.params.parse({}).textures;
    for (const f of defaults) expect(fs.existsSync(path.resolve(images, '..', f))).toBe(true);
  });
});

describe('image paths in params', () => {
  it('stay inside the report folder and fall back to the built-in images', async () => {
    const { resolveImage } = await import('../pipelines/engines/perceptual');
    const reportDir = path.resolve('reports/fashion-mnist');
    expect(resolveImage('images/gravel.png', reportDir)).toBe(path.join(images, 'gravel.png'));
    expect(() => resolveImage('../../etc/passwd', reportDir)).toThrow(/leaves the report folder/);
    expect(() => resolveImage('/etc/passwd', reportDir)).toThrow(/leaves the report folder/);
    expect(() => resolveImage('images/nope.png', reportDir)).toThrow(/images\/gravel\.png/);
  });
});
