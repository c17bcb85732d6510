/**
 * The technique contract, checked against the registry: every technique has a page, every page
 * names a technique, defaults parse, needs resolve, and each one runs on the tiny report with its
 * real dependencies, writes what it says, survives the cache's JSON round trip and leaves no tensors.
 */
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { techniques } from '../pipelines/registry';
import { orderByNeeds, techniqueInfo } from '../pipelines/run';
import { runTechnique, tinyReport } from './helpers/tiny-report';

const methodsDir = path.resolve('content/methods');
const pages = fs.existsSync(methodsDir) ? fs.readdirSync(methodsDir).filter((f) => f.endsWith('.mdx')).map((f) => f.replace(/\.mdx$/, '')) : [];

describe('registry', () => {
  it('has unique kebab-case ids and needs that resolve without cycles', () => {
    const ids = techniques.map((t) => t.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(() => orderByNeeds(techniques)).not.toThrow();
  });

  it('gives every public technique a page and every page a technique', () => {
    const publicIds = techniques.filter((t) => !t.internal).map((t) => t.id).sort();
    expect(pages.sort()).toEqual(publicIds);
  });

  it.each(techniques.map((t) => [t.id, t] as const))('%s: default params parse and document themselves', (_id, t) => {
    expect(() => t.params.parse({})).not.toThrow();
    const schema = techniqueInfo(t).paramsSchema as { properties?: Record<string, { description?: string }> };
    for (const [name, prop] of Object.entries(schema.properties ?? {})) {
      expect(prop.description, `${t.id}.${name} needs .describe()`).toBeTruthy();
    }
  });
});

describe('every technique on the tiny report', () => {
  const results: Record<string, { data: unknown; dir: string }> = {};
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });

  for (const t of orderByNeeds(techniques)) {
    it(`${t.id}: runs, writes its files, leaks no tensors`, async () => {
      const { model, dataset } = await tinyReport();
      try {
        for (const need of t.needs) expect(results[need], `${need} must run first`).toBeDefined();
        const before = tf.memory().numTensors;
        const { data, dir, files } = await runTechnique(t, {
          model,
          dataset,
          params: t.quick,
          deps: Object.fromEntries(t.needs.map((n) => [n, results[n].data])),
          depDirs: Object.fromEntries(t.needs.map((n) => [n, results[n].dir])),
        });
        expect(tf.memory().numTensors).toBe(before);
        expect(data).toBeDefined();
        for (const f of files) expect(fs.statSync(path.join(dir, f)).size, f).toBeGreaterThan(0);
        results[t.id] = { data, dir };
      } finally {
        model.dispose();
      }
    });
  }
});
