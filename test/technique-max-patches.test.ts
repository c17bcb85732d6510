import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LoadedModel } from '../pipelines/model/load';
import { fieldBounds } from '../pipelines/model/receptive-field';
import channelStats, { type ChannelStatsData } from '../pipelines/techniques/channel-stats';
import maxPatches, { cropPatch, stageEnds, type Box, type MaxPatchesData } from '../pipelines/techniques/max-patches';
import { runTechnique, tinyReport, TINY_SIZE, type TinyDataset } from './helpers/tiny-report';

let model: LoadedModel;
let dataset: TinyDataset;
let stats: ChannelStatsData;

beforeAll(async () => {
  await tf.setBackend('cpu');
  ({ model, dataset } = await tinyReport());
  stats = (await runTechnique(channelStats, { model, dataset })).data as ChannelStatsData;
});
afterAll(() => model?.dispose());

/** Box minus what the border cut off: the part of the field inside the image. */
const inside = (b: Box, clip: Box): Box => ({ top: b.top + clip.top, bottom: b.bottom - clip.bottom, left: b.left + clip.left, right: b.right - clip.right });

/** Bounding box of the nonzero set of d(channel ch of c1/preact at (y, x)) / d(input) on image x0. */
function gradientBox(x0: tf.Tensor4D, y: number, x: number, ch: number): Box {
  const g = tf.grad((v: tf.Tensor) => tf.sum(tf.slice(model.executor.run(v as tf.Tensor4D, { upTo: 'c1/preact' }).output, [0, y, x, ch], [1, 1, 1, 1])))(x0);
  const rows = (tf.tidy(() => tf.abs(tf.squeeze(g))).arraySync() as number[][]);
  g.dispose();
  const box = { top: Infinity, bottom: -Infinity, left: Infinity, right: -Infinity };
  rows.forEach((r, i) => r.forEach((v, j) => {
    if (v === 0) return;
    box.top = Math.min(box.top, i); box.bottom = Math.max(box.bottom, i);
    box.left = Math.min(box.left, j); box.right = Math.max(box.right, j);
  }));
  return box;
}

describe('cropping arithmetic', () => {
  it('copies the part inside the image and pads the rest with a checkerboard', () => {
    // 4×4 grey image, pixel (y, x) = 10·y + x
    const img = Uint8Array.from({ length: 16 }, (_, i) => 10 * Math.floor(i / 4) + (i % 4));
    const { image, clip } = cropPatch(img, [4, 4], 1, { top: -1, bottom: 1, left: 2, right: 4 });
    expect([image.width, image.height, image.channels]).toEqual([3, 3, 3]);
    expect(clip).toEqual({ top: 1, bottom: 0, left: 0, right: 1 });
    const grey = Array.from({ length: 9 }, (_, i) => image.pixels[i * 3]);
    // row 0 is above the image (checker 176/112 alternating); column 2 is right of it
    expect(grey).toEqual([176, 112, 176, 2, 3, 112, 12, 13, 176]); // checker parity (r + c) mod 2
    // RGB input keeps its channels
    const rgb = Uint8Array.from({ length: 2 * 2 * 3 }, (_, i) => i);
    expect(Array.from(cropPatch(rgb, [2, 2], 3, { top: 1, bottom: 1, left: 1, right: 1 }).image.pixels)).toEqual([9, 10, 11]);
    // a field larger than the image is clipped on all sides
    expect(cropPatch(img, [4, 4], 1, { top: -2, bottom: 5, left: -3, right: 6 }).clip).toEqual({ top: 2, bottom: 2, left: 3, right: 3 });
  });

  it('picks the last conv layer of each stage', () => {
    const n = (name: string, jump: number, conv = true) => ({ name, jump: [jump, jump] as [number, number], conv });
    expect(stageEnds([n('a', 1), n('b', 1), n('pool', 2, false), n('c', 2), n('d', 2), n('s', 4), n('e', 4)])).toEqual(['b', 'd', 'e']);
  });
});

describe('max-patches', () => {
  it('crops the top images of each channel to the unit receptive field, clipping shown and recorded', async () => {
    const before = tf.memory().numTensors;
    const { data, dir, files } = await runTechnique(maxPatches, { model, dataset, params: { channels: 3 }, deps: { 'channel-stats': stats } });
    expect(tf.memory().numTensors).toBe(before);
    const d = data as MaxPatchesData;
    for (const f of files) expect(fs.existsSync(path.join(dir, f))).toBe(true);
    // every conv layer of the tiny model ends a stage (pooling follows c1 and c2)
    expect(d.layers.map((l) => [l.name, l.patchSize])).toEqual([['c1', [3, 3]], ['c2', [8, 8]], ['c3', [18, 18]]]);
    const batch = (await dataset.batches('test', 1000).next()).value!;
    for (const [l, layer] of d.layers.entries()) {
      const stat = stats.layers.find((s) => s.name === layer.name)!;
      expect(layer.units.map((u) => u.channel)).toEqual([0, 1, 2]);
      for (const unit of layer.units) {
        const top = stat.top[unit.channel].filter((e) => e[3] !== 0);
        expect(unit.patches.map((p) => [p.index, p.y, p.x])).toEqual(top.map((e) => [e[0], e[1], e[2]]));
        for (const p of unit.patches) {
          // by hand: c1 start 0 jump 1 size 3; c2 start 0.5 jump 2 size 8; c3 start 1.5 jump 4 size 18
          const [start, jump, size] = [[0, 1, 3], [0.5, 2, 8], [1.5, 4, 18]][l];
          expect(p.box).toEqual({
            top: start + jump * p.y - (size - 1) / 2, bottom: start + jump * p.y + (size - 1) / 2,
            left: start + jump * p.x - (size - 1) / 2, right: start + jump * p.x + (size - 1) / 2,
          });
          expect(inside(p.box, p.clip)).toEqual(fieldBounds(layer.receptiveField, [p.y, p.x], [TINY_SIZE, TINY_SIZE]));
          expect(p.clipped).toBe(Object.values(p.clip).some((v) => v > 0));
        }
        // the grid's first patch, pixel by pixel (sampled at each upscaled block's corner)
        if (!unit.patches.length) continue;
        const { data: px, info } = await sharp(path.join(dir, unit.file)).raw().toBuffer({ resolveWithObject: true });
        const p = unit.patches[0];
        const [ph, pw] = layer.patchSize;
        for (let r = 0; r < ph; r++) {
          for (let c = 0; c < pw; c++) {
            const y = p.box.top + r;
            const x = p.box.left + c;
            const v = px[(r * layer.upscale * info.width + c * layer.upscale) * info.channels];
            if (y >= 0 && y < TINY_SIZE && x >= 0 && x < TINY_SIZE) expect(v).toBe(batch.pixels[p.index * TINY_SIZE * TINY_SIZE + y * TINY_SIZE + x]);
            else expect([d.checker.light, d.checker.dark]).toContain(v);
          }
        }
      }
    }
    // c3's 18-pixel field is wider than the 16-pixel image: every patch is clipped
    expect(d.layers[2].units.flatMap((u) => u.patches).every((p) => p.clipped)).toBe(true);
  });

  it('crop boxes equal the support of the input gradient of c1 units, at borders too', async () => {
    const { data } = await runTechnique(maxPatches, { model, dataset, params: { layers: ['c1'], channels: [0, 3] }, deps: { 'channel-stats': stats } });
    const layer = (data as MaxPatchesData).layers[0];
    const batch = (await dataset.batches('test', 1).next()).value!;
    const x0 = tf.tensor4d(batch.images, [1, TINY_SIZE, TINY_SIZE, 1]);
    const units: [number, number, number][] = [[0, 0, 0], [15, 15, 3], [0, 7, 0], [9, 15, 3]];
    for (const u of layer.units) for (const p of u.patches.slice(0, 2)) units.push([p.y, p.x, u.channel]);
    for (const [y, x, ch] of units) {
      const box = fieldBounds(layer.receptiveField, [y, x]);
      const { clip } = cropPatch(new Uint8Array(TINY_SIZE * TINY_SIZE), [TINY_SIZE, TINY_SIZE], 1, box);
      expect(inside(box, clip)).toEqual(gradientBox(x0, y, x, ch));
    }
    x0.dispose();
  });

  it('explains a layer missing from channel-stats and a channel that does not exist', async () => {
    await expect(runTechnique(maxPatches, { model, dataset, params: { layers: ['c1/preact'] }, deps: { 'channel-stats': stats } })).rejects.toThrow(/not in the channel-stats pass/);
    await expect(runTechnique(maxPatches, { model, dataset, params: { layers: ['c1'], channels: [4] }, deps: { 'channel-stats': stats } })).rejects.toThrow(/no channel 4/);
  });
});
