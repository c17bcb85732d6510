import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeStats, openImageFolder, type ImageFolderOptions } from '../pipelines/data/image-folder';
import { ConvlensError } from '../pipelines/errors';
import type { Batch, Dataset, Preprocessing } from '../pipelines/types';

const CONFIG = 'reports/x/report.config.ts';
const BIRD = '<i>bird & "x"'; // class names are kept as plain strings, HTML included
const rgbPrep: Preprocessing = { size: [4, 4], channels: 3, fit: 'fill', normalize: { kind: 'range', min: 0, max: 1 } };

let tmp: string;
let root: string;

const solid = (w: number, h: number, rgb: [number, number, number], alpha?: number) =>
  sharp({ create: { width: w, height: h, channels: (alpha === undefined ? 3 : 4) as 3 | 4, background: { r: rgb[0], g: rgb[1], b: rgb[2], alpha: alpha ?? 1 } } });
const noise = (w: number, h: number) => sharp({ create: { width: w, height: h, channels: 3, background: '#000', noise: { type: 'gaussian', mean: 128, sigma: 40 } } });

async function write(file: string, data: Buffer | string) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, data);
}

async function collect(ds: Dataset, split: 'train' | 'test', batchSize: number, indices?: number[]): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of ds.batches(split, batchSize, indices ? { indices } : undefined)) out.push(b);
  return out;
}

async function expectConvlensError(p: Promise<unknown>, ...patterns: RegExp[]) {
  const e = await p.then(() => null, (x: unknown) => x);
  expect(e).toBeInstanceOf(ConvlensError);
  const msg = (e as Error).message;
  expect(msg).toContain(CONFIG);
  expect(msg).toContain('Fix:');
  expect(msg).not.toContain('\n');
  for (const re of patterns) expect(msg).toMatch(re);
  return e as ConvlensError;
}

const open = (opts: Partial<ImageFolderOptions> & { root: string }) =>
  openImageFolder({ configFile: CONFIG, preprocessing: rgbPrep, log: () => {}, ...opts });

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'convlens-data-'));
  root = path.join(tmp, 'pets');
  const c = (name: string, file: string) => path.join(root, name, file);
  await write(c('cat', 'a.png'), await solid(8, 6, [200, 100, 50]).png().toBuffer());
  await write(c('cat', 'b.jpg'), await noise(10, 10).jpeg().toBuffer());
  await write(c('cat', 'c.webp'), await noise(5, 7).webp().toBuffer());
  await write(c('cat', 'sub/d.gif'), await noise(4, 4).gif().toBuffer());
  await write(c('cat', 'empty.jpg'), '');
  await write(c('cat', 'notes.txt'), 'ignored silently');
  await write(c('cat', 'scan.bmp'), 'BM not really');
  await write(c('cat', '.DS_Store'), 'hidden');
  await write(c('dog', 'rgba.png'), await solid(3, 3, [200, 100, 50], 0.5).png().toBuffer());
  await write(c('dog', 'grey.png'), await solid(6, 6, [90, 90, 90]).greyscale().png().toBuffer());
  await write(c('dog', 'e.jpg'), await noise(12, 9).jpeg().toBuffer());
  await write(c('dog', 'f.png'), await noise(7, 7).png().toBuffer());
  await write(c('dog', 'text.jpg'), 'this is not a jpeg at all');
  for (const f of ['g.png', 'h.jpg', 'i.webp', 'j.gif']) {
    const img = noise(9, 5);
    await write(c(BIRD, f), await (f.endsWith('png') ? img.png() : f.endsWith('jpg') ? img.jpeg() : f.endsWith('webp') ? img.webp() : img.gif()).toBuffer());
  }
  const big = await noise(64, 64).png({ compressionLevel: 0 }).toBuffer();
  await write(c(BIRD, 'trunc.png'), big.subarray(0, big.length >> 1));
  const jpg = await noise(64, 64).jpeg().toBuffer();
  await write(c(BIRD, 'trunc.jpg'), jpg.subarray(0, jpg.length >> 1));
  await write(c(BIRD, 'trailing.jpg'), Buffer.concat([jpg, Buffer.alloc(5000, 7)])); // valid: data after EOI is allowed
});

afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('openImageFolder: scan', () => {
  it('finds classes (sorted, names kept verbatim), counts, and skips bad files with one warning', async () => {
    const logs: string[] = [];
    const ds = await open({ root, log: (l) => logs.push(l) });
    expect(ds.classNames).toEqual([BIRD, 'cat', 'dog']);
    expect(ds.name).toBe('pets');
    expect(ds.imageShape).toEqual([4, 4, 3]);
    expect(ds.splitSizes).toEqual({ train: 0, test: 13 });
    expect(ds.classCounts).toEqual({ train: [0, 0, 0], test: [5, 4, 4] });
    const skipped = Object.fromEntries(ds.skipped.map((s) => [s.file, s.reason]));
    expect(Object.keys(skipped).sort()).toEqual([`${BIRD}/trunc.jpg`, `${BIRD}/trunc.png`, 'cat/empty.jpg', 'cat/scan.bmp', 'dog/text.jpg']);
    expect(skipped['cat/empty.jpg']).toMatch(/empty file/);
    expect(skipped['cat/scan.bmp']).toMatch(/unsupported image format '\.bmp'/);
    expect(skipped['dog/text.jpg']).toMatch(/not a readable image/);
    expect(skipped[`${BIRD}/trunc.png`]).toMatch(/corrupt or truncated png/);
    expect(skipped[`${BIRD}/trunc.jpg`]).toMatch(/corrupt or truncated jpeg/);
    expect(logs).toHaveLength(1);
    expect(logs[0]).toMatch(/^warning: 5 files in .*pets skipped: .*; …$/);
    expect(ds.describeImage('test', 5)).toEqual({ id: 'cat/a.png', label: 1, file: 'cat/a.png' });
    expect(ds.describeImage('test', 8)).toEqual({ id: 'cat/sub/d.gif', label: 1, file: 'cat/sub/d.gif' });
  });

  it('has a content id: stable on reopening, changed by one byte of one file or by the preprocessing', async () => {
    const dir = path.join(tmp, 'idcheck');
    fs.cpSync(path.join(root, 'dog'), path.join(dir, 'dog'), { recursive: true });
    const a = await open({ root: dir });
    expect((await open({ root: dir })).id).toBe(a.id);
    expect((await open({ root: dir, preprocessing: { ...rgbPrep, channels: 1 } })).id).not.toBe(a.id);
    await write(path.join(dir, 'dog', 'grey.png'), await solid(6, 6, [91, 91, 91]).greyscale().png().toBuffer());
    expect((await open({ root: dir })).id).not.toBe(a.id);
  });

  it('uses train/ and test/ folders when both exist', async () => {
    const dir = path.join(tmp, 'split-folders');
    const png = await solid(2, 2, [1, 2, 3]).png().toBuffer();
    for (const [split, n] of [['train', 3], ['test', 2]] as const) {
      for (const cls of ['a', 'b']) for (let i = 0; i < n; i++) await write(path.join(dir, split, cls, `${i}.png`), png);
    }
    const ds = await open({ root: dir });
    expect(ds.classNames).toEqual(['a', 'b']);
    expect(ds.splitSizes).toEqual({ train: 6, test: 4 });
    expect(ds.describeImage('train', 5).file).toBe('train/b/2.png');
    // Explicit folder names work too, with the train split optional.
    const only = await open({ root: dir, splits: { test: 'test' } });
    expect(only.splitSizes).toEqual({ train: 0, test: 4 });
  });

  it('follows classNames order for labels', async () => {
    const ds = await open({ root, classNames: ['dog', BIRD, 'cat'] });
    expect(ds.classNames).toEqual(['dog', BIRD, 'cat']);
    expect(ds.describeImage('test', 0)).toMatchObject({ label: 0, file: 'dog/e.jpg' });
    expect(ds.classCounts.test).toEqual([4, 5, 4]);
  });
});

describe('openImageFolder: pixels and normalisation', () => {
  const onlyA = async (prep: Preprocessing) => {
    const ds = await open({ root, preprocessing: prep });
    const [b] = await collect(ds, 'test', 1, [5]); // cat/a.png, solid (200, 100, 50)
    return b;
  };

  it('resizes a solid RGB image exactly and scales to a range', async () => {
    const b = await onlyA({ ...rgbPrep, normalize: { kind: 'range', min: -1, max: 1 } });
    expect(b.size).toBe(1);
    expect(b.pixels.length).toBe(4 * 4 * 3);
    for (let i = 0; i < 16; i++) expect([...b.pixels.slice(i * 3, i * 3 + 3)]).toEqual([200, 100, 50]);
    expect(b.images[0]).toBeCloseTo(-1 + (2 * 200) / 255, 6);
    expect(b.images[1]).toBeCloseTo(-1 + (2 * 100) / 255, 6);
    expect(b.images[2]).toBeCloseTo(-1 + (2 * 50) / 255, 6);
    expect([...b.labels]).toEqual([1]);
    expect([...b.indices]).toEqual([5]);
  });

  it('converts to grey with PIL luma and applies mean/std', async () => {
    const b = await onlyA({ size: [3, 5], channels: 1, fit: 'cover', normalize: { kind: 'meanStd', mean: [0.5], std: [0.25] } });
    const luma = (200 * 19595 + 100 * 38470 + 50 * 7471 + 32768) >> 16; // 124
    expect(luma).toBe(124);
    expect([...b.pixels]).toEqual(new Array(15).fill(124));
    for (const v of b.images) expect(v).toBeCloseTo((124 / 255 - 0.5) / 0.25, 6);
  });

  it('per-channel mean/std; alpha is flattened on black; grey files become RGB', async () => {
    const prep: Preprocessing = { ...rgbPrep, size: [3, 3], normalize: { kind: 'meanStd', mean: [0.1, 0.2, 0.3], std: [0.5, 1, 2] } };
    const ds = await open({ root, preprocessing: prep });
    const rgba = ds.describeImage('test', 12);
    const grey = ds.describeImage('test', 11);
    expect([rgba.file, grey.file]).toEqual(['dog/rgba.png', 'dog/grey.png']);
    const [b] = await collect(ds, 'test', 2, [12, 11]);
    const px = (n: number) => [...b.pixels.slice(n * 27, n * 27 + 3)];
    const [r, g, bl] = px(0);
    expect(Math.abs(r - 100)).toBeLessThanOrEqual(1);
    expect(Math.abs(g - 50)).toBeLessThanOrEqual(1);
    expect(Math.abs(bl - 25)).toBeLessThanOrEqual(1);
    expect(px(1)).toEqual([90, 90, 90]);
    expect(b.images[27]).toBeCloseTo((90 / 255 - 0.1) / 0.5, 6);
    expect(b.images[28]).toBeCloseTo((90 / 255 - 0.2) / 1, 6);
    expect(b.images[29]).toBeCloseTo((90 / 255 - 0.3) / 2, 6);
  });

  it('decodes every format to the requested shape, in index order', async () => {
    const ds = await open({ root });
    const batches = await collect(ds, 'test', 5);
    expect(batches.map((b) => b.size)).toEqual([5, 5, 3]);
    expect(batches.flatMap((b) => [...b.indices])).toEqual([...Array(13).keys()]);
    expect(batches.flatMap((b) => [...b.labels])).toEqual([0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]);
    for (const b of batches) expect(b.images.length).toBe(b.size * 48);
  });

  it('a file corrupted after the scan fails with an error naming it', async () => {
    const dir = path.join(tmp, 'late-corrupt');
    const png = await solid(2, 2, [1, 2, 3]).png().toBuffer();
    await write(path.join(dir, 'a', '1.png'), png);
    await write(path.join(dir, 'a', '2.png'), png);
    const ds = await open({ root: dir });
    fs.writeFileSync(path.join(dir, 'a', '2.png'), 'garbage');
    await expectConvlensError(collect(ds, 'test', 2), /image 'a\/2\.png' .* could not be decoded/, /delete or replace/);
  });
});

describe('openImageFolder: seeded split', () => {
  let many: string;
  beforeAll(async () => {
    // 2,000 tiny files from 8 distinct encodings: cheap to write, each hashed and decoded.
    many = path.join(tmp, 'many');
    const bufs = await Promise.all(Array.from({ length: 8 }, (_, i) => solid(3, 3, [i * 30, 0, 255 - i * 30]).png().toBuffer()));
    for (const cls of ['a', 'b']) {
      fs.mkdirSync(path.join(many, cls), { recursive: true });
      for (let i = 0; i < 1000; i++) fs.writeFileSync(path.join(many, cls, `${String(i).padStart(4, '0')}.png`), bufs[i % 8]);
    }
  });

  it('is deterministic, roughly the fraction, and depends on the seed', async () => {
    const s1 = await open({ root: many, splits: { testFraction: 0.25, seed: 1 } });
    const again = await open({ root: many, splits: { testFraction: 0.25, seed: 1 } });
    const s2 = await open({ root: many, splits: { testFraction: 0.25, seed: 2 } });
    expect(s1.splitSizes.train + s1.splitSizes.test).toBe(2000);
    expect(s1.splitSizes.test).toBeGreaterThan(420);
    expect(s1.splitSizes.test).toBeLessThan(580);
    const files = (ds: Dataset) => Array.from({ length: ds.splitSizes.test }, (_, i) => ds.describeImage('test', i).file);
    expect(files(again)).toEqual(files(s1));
    expect(again.id).toBe(s1.id);
    expect(files(s2)).not.toEqual(files(s1));
    expect(s2.id).not.toBe(s1.id);
    expect(s1.classCounts.test[0] + s1.classCounts.test[1]).toBe(s1.splitSizes.test);
  });

  it('streams lazily: one batch decoded at a time, memory bounded by batchSize', async () => {
    const ds = await open({ root: many });
    const it = ds.batches('test', 64);
    const before = decodeStats.files;
    expect(decodeStats.files - before).toBe(0); // nothing decoded until asked
    const first = await it.next();
    expect(first.done).toBe(false);
    expect(decodeStats.files - before).toBe(64);
    let total = (first.value as Batch).size;
    let maxSize = total;
    for await (const b of it) {
      total += b.size;
      maxSize = Math.max(maxSize, b.size);
      // Never more than the current batch decoded beyond what was yielded.
      expect(decodeStats.files - before).toBe(total);
      expect(b.images.length).toBe(b.size * 48);
    }
    expect(total).toBe(2000);
    expect(maxSize).toBe(64);
  });
});

describe('openImageFolder: errors name the file and the fix', () => {
  it('root missing or not a folder', async () => {
    await expectConvlensError(open({ root: path.join(tmp, 'nope') }), /dataset folder '.*nope' does not exist/, /dataset\.path/);
    fs.writeFileSync(path.join(tmp, 'file.txt'), 'x');
    await expectConvlensError(open({ root: path.join(tmp, 'file.txt') }), /is not a folder/);
  });

  it('no class folders', async () => {
    const dir = path.join(tmp, 'flat');
    await write(path.join(dir, 'x.png'), await solid(2, 2, [0, 0, 0]).png().toBuffer());
    await expectConvlensError(open({ root: dir }), /no class folders in .*flat' \(it holds images directly\)/, /own sub-folder/);
  });

  it('an empty class folder', async () => {
    const dir = path.join(tmp, 'with-empty');
    await write(path.join(dir, 'full', 'x.png'), await solid(2, 2, [0, 0, 0]).png().toBuffer());
    await write(path.join(dir, 'hollow', 'readme.txt'), 'no images here');
    await expectConvlensError(open({ root: dir }), /class folder 'hollow' .* has no images/, /remove it or add images/);
  });

  it('a class folder whose every file is corrupt', async () => {
    const dir = path.join(tmp, 'all-bad');
    await write(path.join(dir, 'good', 'x.png'), await solid(2, 2, [0, 0, 0]).png().toBuffer());
    await write(path.join(dir, 'bad', 'y.jpg'), 'text');
    await write(path.join(dir, 'bad', 'z.png'), '');
    await expectConvlensError(open({ root: dir }), /every image in class folder 'bad' .* is unreadable \(2 skipped/, /replace the files/);
  });

  it('classNames that do not match the folders', async () => {
    const e = await expectConvlensError(open({ root, classNames: ['cat', 'dog', 'fish'] }), /'fish' has no folder/, /is not listed/);
    expect(e.field).toBe('dataset.classNames');
  });

  it('train and test folders with different classes', async () => {
    const dir = path.join(tmp, 'mismatch');
    const png = await solid(2, 2, [0, 0, 0]).png().toBuffer();
    await write(path.join(dir, 'train', 'a', '1.png'), png);
    await write(path.join(dir, 'train', 'b', '1.png'), png);
    await write(path.join(dir, 'test', 'a', '1.png'), png);
    await expectConvlensError(open({ root: dir }), /'b' only in train/, /same class sub-folders/);
  });

  it('a split folder that does not exist', async () => {
    await expectConvlensError(open({ root, splits: { train: 'training', test: 'cat' } }), /split folder '.*training' does not exist/);
  });
});
