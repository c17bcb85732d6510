import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { boxDownscale } from '../pipelines/images';
import thumbnails, { thumbnailFile, type ThumbnailsData } from '../pipelines/techniques/thumbnails';
import type { LoadedModel } from '../pipelines/model/load';
import { runTechnique, TINY_SIZE, useTinyReport, type TinyDataset } from './helpers/tiny-report';

let model: LoadedModel;
let dataset: TinyDataset;
useTinyReport((r) => ({ model, dataset } = r));

describe('box downscale', () => {
  it('averages each f×f block (hand-computed), clipping partial blocks at the border', () => {
    // 3×3 grey, f = 2 → 1×1 from the top-left 2×2 block: (0 + 10 + 30 + 40) / 4 = 20
    const px = Uint8Array.from([0, 10, 20, 30, 40, 50, 60, 70, 80]);
    expect(Array.from(boxDownscale(px, 3, 3, 1, 2).pixels)).toEqual([20]);
    // 2×1 RGB, f = 2 → per-channel means
    expect(Array.from(boxDownscale(Uint8Array.from([0, 100, 200, 10, 101, 255]), 2, 1, 3, 2).pixels)).toEqual([5, 101, 228]);
  });
});

describe('thumbnails', () => {
  it('writes one PNG per test image holding its pixels (downscaled past thumbSize)', async () => {
    const before = tf.memory().numTensors;
    const { data, dir, files } = await runTechnique(thumbnails, { model, dataset, params: { thumbSize: 8, maxImages: 5 } });
    expect(tf.memory().numTensors).toBe(before);
    const d = data as ThumbnailsData;
    expect(d).toMatchObject({ count: 5, width: TINY_SIZE / 2, height: TINY_SIZE / 2 });
    expect(files.filter((f) => f.startsWith('thumbs/')).sort()).toEqual([0, 1, 2, 3, 4].map((i) => thumbnailFile(d.pattern, i)).sort());
    const batch = (await dataset.batches('test', 5, { indices: [3] }).next()).value!;
    const want = boxDownscale(batch.pixels, TINY_SIZE, TINY_SIZE, 1, 2).pixels;
    const png = path.join(dir, thumbnailFile(d.pattern, 3));
    expect(fs.existsSync(png)).toBe(true);
    const { data: got, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height]).toEqual([TINY_SIZE / 2, TINY_SIZE / 2]);
    // grey PNG (sharp may decode it as RGB: every channel holds the grey value)
    expect(Array.from({ length: want.length }, (_, i) => got[i * info.channels])).toEqual(Array.from(want));
  });
});
