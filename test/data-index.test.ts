import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { checkDatasetFitsModel, datasetSpecSchema, openDataset } from '../pipelines/data/index';
import { ConvlensError } from '../pipelines/errors';
import type { Preprocessing } from '../pipelines/types';

const CONFIG = 'reports/x/report.config.ts';
const prep: Preprocessing = { size: [28, 28], channels: 1, fit: 'fill', normalize: { kind: 'range', min: 0, max: 1 } };
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'convlens-index-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('datasetSpecSchema', () => {
  it('accepts both kinds and fills the seed default', () => {
    expect(datasetSpecSchema.parse({ type: 'fashion-mnist' })).toEqual({ type: 'fashion-mnist' });
    expect(datasetSpecSchema.parse({ type: 'image-folder', path: '../data', split: { testFraction: 0.2 } }))
      .toEqual({ type: 'image-folder', path: '../data', split: { testFraction: 0.2, seed: 0 } });
    expect(datasetSpecSchema.parse({ type: 'image-folder', path: 'd', split: { test: 'val' }, classNames: ['b', 'a'] }).type).toBe('image-folder');
  });

  it('rejects bad specs with the field path', () => {
    const bad = [
      { type: 'imagenet' },
      { type: 'image-folder' },
      { type: 'image-folder', path: 'd', split: { testFraction: 1.5 } },
      { type: 'fashion-mnist', path: 'x' },
    ];
    for (const spec of bad) expect(datasetSpecSchema.safeParse(spec).success).toBe(false);
    const r = datasetSpecSchema.safeParse({ type: 'image-folder', path: 'd', split: { testFraction: 0 } });
    expect(r.success).toBe(false);
    expect(r.error!.issues[0].path.slice(0, 1)).toEqual(['split']);
  });
});

describe('openDataset', () => {
  it('resolves image-folder paths from the config folder, also outside it', async () => {
    const reportDir = path.join(tmp, 'reports', 'mine');
    fs.mkdirSync(reportDir, { recursive: true });
    const png = await sharp({ create: { width: 2, height: 2, channels: 3, background: '#808080' } }).png().toBuffer();
    for (const cls of ['x', 'y']) {
      fs.mkdirSync(path.join(tmp, 'data', cls), { recursive: true });
      fs.writeFileSync(path.join(tmp, 'data', cls, '1.png'), png);
    }
    const ds = await openDataset({ type: 'image-folder', path: '../../data' }, { configFile: CONFIG, baseDir: reportDir, preprocessing: prep });
    expect(ds.classNames).toEqual(['x', 'y']);
    expect(ds.splitSizes.test).toBe(2);
    const e = await openDataset({ type: 'image-folder', path: 'missing' }, { configFile: CONFIG, baseDir: reportDir, preprocessing: prep }).catch((x) => x);
    expect(e).toBeInstanceOf(ConvlensError);
    expect(e.message).toMatch(/reports\/x\/report\.config\.ts: dataset\.path: dataset folder '.*missing' does not exist Fix: /);
  });
});

describe('checkDatasetFitsModel', () => {
  const ds = (shape: [number, number, number]) => ({ imageShape: shape });

  it('accepts a match, and any size for a null height/width', () => {
    expect(() => checkDatasetFitsModel(ds([28, 28, 1]), [28, 28, 1], CONFIG)).not.toThrow();
    expect(() => checkDatasetFitsModel(ds([64, 48, 3]), [null, null, 3], CONFIG)).not.toThrow();
  });

  it('names the mismatch and the fix', () => {
    let e: unknown;
    try {
      checkDatasetFitsModel(ds([32, 32, 3]), [28, 28, 1], CONFIG);
    } catch (x) {
      e = x;
    }
    expect(e).toBeInstanceOf(ConvlensError);
    expect((e as Error).message).toBe(
      `${CONFIG}: preprocessing: the model expects 28×28×1 images but the preprocessing gives 32×32×3 ` +
        `Fix: set preprocessing.size to [28, 28] and set preprocessing.channels to 1 in ${CONFIG}`,
    );
    expect(() => checkDatasetFitsModel(ds([32, 32, 3]), [null, null, 1], CONFIG)).toThrow(/any×any×1 .* set preprocessing\.channels to 1 in/);
    expect(() => checkDatasetFitsModel(ds([32, 32, 3]), [28, null, 3], CONFIG)).toThrow(/set preprocessing\.size to \[28, 32\] in/);
  });
});
