import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cacheKey, canonicalJson, ResultCache } from '../pipelines/cache';
import type { Provenance } from '../pipelines/manifest';

const provenance = { technique: 't', cacheKey: 'k' } as unknown as Provenance;
const tmpCache = () => new ResultCache(fs.mkdtempSync(path.join(os.tmpdir(), 'convlens-cache-')));

describe('cache keys', () => {
  it('do not depend on object key order, and change with any value', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { y: 2, x: 1 }], c: 3 } })).toBe('{"a":{"c":3,"d":[1,{"x":1,"y":2}]},"b":1}');
    expect(cacheKey({ a: 1, b: 2 })).toBe(cacheKey({ b: 2, a: 1 }));
    expect(cacheKey({ a: 1, b: 2 })).not.toBe(cacheKey({ a: 1, b: 3 }));
    expect(cacheKey({ params: { k: 8 } })).not.toBe(cacheKey({ params: { k: '8' } }));
  });
});

describe('ResultCache', () => {
  it('publishes a result only when complete, with its files', async () => {
    const cache = tmpCache();
    let tmpSeen = '';
    const stored = await cache.write('abc', async (tmp) => {
      tmpSeen = tmp;
      expect(cache.has('abc')).toBe(false); // nothing visible while computing
      fs.writeFileSync(path.join(tmp, 'a.png'), 'x');
      fs.mkdirSync(path.join(tmp, 'sub'));
      fs.writeFileSync(path.join(tmp, 'sub', 'b.bin'), 'y');
      return { data: { answer: 42 }, provenance };
    });
    expect(cache.has('abc')).toBe(true);
    expect(fs.existsSync(tmpSeen)).toBe(false);
    expect(stored.data).toEqual({ answer: 42 });
    expect(stored.files).toEqual(['a.png', 'sub/b.bin']);
    expect(cache.read('abc').data).toEqual({ answer: 42 });
  });

  it('a failure leaves <key>.err and no half result; a later success clears the error', async () => {
    const cache = tmpCache();
    await expect(cache.write('bad', async (tmp) => {
      fs.writeFileSync(path.join(tmp, 'half.png'), 'x');
      throw new Error('kernel exploded');
    })).rejects.toThrow('kernel exploded');
    expect(cache.has('bad')).toBe(false);
    expect(cache.error('bad')).toBe('kernel exploded');
    expect(fs.readdirSync(cache.root)).toEqual(['bad.err']);
    await cache.write('bad', async () => ({ data: 1, provenance }));
    expect(cache.error('bad')).toBeUndefined();
    expect(cache.has('bad')).toBe(true);
  });

  it('an interrupted write (stale temp folder of a dead process) is ignored and collected', async () => {
    const cache = tmpCache();
    fs.mkdirSync(path.join(cache.root, 'k1.tmp-99999999'));
    fs.writeFileSync(path.join(cache.root, 'k1.tmp-99999999', 'partial.png'), 'x');
    expect(cache.has('k1')).toBe(false);
    await cache.write('k1', async () => ({ data: 'done', provenance }));
    await cache.write('k2', async () => ({ data: 'old', provenance }));
    const { removed } = cache.gc(new Set(['k1']));
    expect(removed.sort()).toEqual(['k1.tmp-99999999', 'k2']);
    expect(fs.readdirSync(cache.root)).toEqual(['k1']);
  });
});
