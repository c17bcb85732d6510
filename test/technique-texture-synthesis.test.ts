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
      model, dataset, params: { textures: ['images/gravel.png'], size: 24, steps: 5, perceptualModel: small, compareWith: null },
    });
    expect(tf.memory().numTensors).toBe(before);
    const d = data as TextureData;
    expect(d.runs).toHaveLength(1);
    const run = d.runs[0];
    expect(run.layers).toEqual(['level0', 'level1', 'level2']);
    expect(run.network).toContain('random-multiscale');
    expect(run.kind).toBe('random');
    expect(run.attribution).toMatch(/seeded/);
    const t = run.textures[0];
    expect(files).toEqual(expect.arrayContaining([t.result, t.sourcePng]));
    expect(t.losses).toHaveLength(6);
    expect(t.losses[5]).toBeLessThan(t.losses[0]);
    model.dispose();
  });

  it('two networks side by side start from the same noise (0 steps: identical images, different losses)', async () => {
    const { model, dataset } = await tinyReport();
    const other = { ...small, seed: 2 };
    const { data, dir } = await runTechnique(technique, {
      model, dataset, params: { textures: ['images/gravel.png'], size: 24, steps: 0, perceptualModel: small, compareWith: other },
    });
    const d = data as TextureData;
    expect(d.runs.map((r) => r.network)).toEqual([expect.stringContaining('seed 1'), expect.stringContaining('seed 2')]);
    const [a, b] = d.runs.map((r) => fs.readFileSync(path.join(dir, r.textures[0].raw)));
    expect(a.length).toBeGreaterThan(0);
    expect(a.equals(b)).toBe(true);
    expect(d.runs[0].textures[0].losses[0]).not.toBe(d.runs[1].textures[0].losses[0]);
    model.dispose();
  });

  it('compares with the MobileNetV2 backbone by default', () => {
    expect(technique.params.parse({}).compareWith).toEqual({ kind: 'mobilenet-v2' });
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
