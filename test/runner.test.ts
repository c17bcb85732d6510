/**
 * End to end through the runner on a tiny report written to disk (config, model folder, image
 * folders): overview numbers, caching (a second run computes nothing), failure isolation, and the
 * CLI's one-line errors. Worker processes (--jobs > 1): runner-jobs.test.ts.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { SiteManifest } from '../pipelines/manifest';
import { runReports } from '../pipelines/run';
import { defineTechnique } from '../pipelines/technique';
import { writeTinyProject } from './helpers/tiny-report';

const configModule = path.resolve('pipelines/config.ts');

/** A project folder with reports/tiny: the tiny trained model and its images as PNG class folders. */
async function writeProject(): Promise<string> {
  const { root, reportDir } = await writeTinyProject('convlens-e2e-');
  fs.writeFileSync(path.join(reportDir, 'data', 'test', '2-blob', 'notes.png'), 'this is not an image');
  fs.writeFileSync(
    path.join(reportDir, 'report.config.ts'),
    `import { defineReport } from ${JSON.stringify(configModule)};
export default defineReport({
  title: 'Tiny <b>report</b>',
  model: './model',
  dataset: { type: 'image-folder', path: './data', split: { train: 'train', test: 'test' } },
  samplesPerClass: 2,
  classNames: ['horizontal', 'vertical', '<i>blob</i>'],
  techniques: { broken: { shouldFail: true } },
});
`,
  );
  return root;
}

const counted = defineTechnique({
  id: 'counted',
  title: 'Counts test images',
  summary: 'test technique',
  family: 'dataset',
  version: 1,
  params: z.object({}),
  async run(ctx) {
    let n = 0;
    for await (const b of ctx.dataset.batches('test', 16)) n += b.size;
    await ctx.out.file('n.txt', String(n));
    return { n, seed: ctx.seed };
  },
});
const broken = defineTechnique({
  id: 'broken',
  title: 'Always fails',
  summary: 'test technique',
  family: 'dataset',
  version: 1,
  params: z.object({ shouldFail: z.boolean().default(false).describe('fail on purpose') }),
  async run(ctx) {
    await ctx.out.file('half.txt', 'partial');
    if (ctx.params.shouldFail) throw new Error('this technique failed on purpose');
    return {};
  },
});
const afterBroken = defineTechnique({
  id: 'after-broken', title: 'Needs broken', summary: 'test technique', family: 'dataset', version: 1,
  params: z.object({}), needs: ['broken'], async run() { return {}; },
});

describe('runner', () => {
  it('builds a report, reuses every result the second time, and isolates failures', async () => {
    const root = await writeProject();
    const techniques = [counted, broken, afterBroken];
    const logs: string[] = [];
    const first = await runReports({ root, backend: 'cpu', techniques, log: (l) => logs.push(l) });
    const manifest: SiteManifest = JSON.parse(fs.readFileSync(first.manifestFile, 'utf8'));
    const report = manifest.reports[0];
    expect(report.overview?.error).toBeUndefined();

    expect(report.title).toBe('Tiny <b>report</b>');
    expect(report.dataset.classNames).toEqual(['horizontal', 'vertical', '<i>blob</i>']);
    expect(report.dataset.splitSizes).toEqual({ train: 60, test: 24 });
    expect(report.dataset.skipped.map((s) => path.basename(s.file))).toEqual(['notes.png']);
    expect(report.overview?.status).toBe('ok');
    expect(report.overview?.data?.count).toBe(24);
    expect(report.overview?.data?.accuracy).toBeGreaterThan(0.8);
    expect(report.overview?.data?.samples.map((s) => s.length)).toEqual([2, 2, 2]);
    expect(report.model.layers.find((l) => l.name === 'c3')?.receptiveField?.size).toEqual([18, 18]);

    expect(report.results.counted.status).toBe('ok');
    expect(report.results.counted.data).toMatchObject({ n: 24 });
    const published = path.join(root, '.convlens', 'site', 'results', report.results.counted.key, 'n.txt');
    expect(fs.readFileSync(published, 'utf8')).toBe('24');

    expect(report.results.broken).toMatchObject({ status: 'error', error: 'this technique failed on purpose' });
    expect(fs.readFileSync(path.join(root, '.convlens', 'cache', `${report.results.broken.key}.err`), 'utf8')).toBe('this technique failed on purpose');
    expect(fs.existsSync(path.join(root, '.convlens', 'cache', report.results.broken.key))).toBe(false);
    expect(report.results['after-broken'].status).toBe('error');
    expect(first.failures.map((f) => f.step).sort()).toEqual(['after-broken', 'broken']);
    expect(first.computed.sort()).toEqual(['tiny/counted', 'tiny/overview']);

    const tensorsBefore = tf.memory().numTensors;
    const second = await runReports({ root, backend: 'cpu', techniques: [counted], log: (l) => logs.push(l) });
    expect(second.computed).toEqual([]);
    expect(second.reused.sort()).toEqual(['tiny/counted', 'tiny/overview']);
    expect(logs.at(-1)).toMatch(/nothing to compute/);
    expect(tf.memory().numTensors).toBe(tensorsBefore);
    // --only runs the named technique and what it needs, and keeps showing cached results
    const only = await runReports({ root, backend: 'cpu', techniques: [counted, broken, afterBroken], only: ['after-broken'], log: () => {} });
    expect(only.computed).toEqual([]);
    expect(only.failures.map((f) => f.step).sort()).toEqual(['after-broken', 'broken']);
    expect(only.reused).toContain('tiny/counted');

    const again: SiteManifest = JSON.parse(fs.readFileSync(second.manifestFile, 'utf8'));
    expect(again.reports[0].results.counted.data).toEqual(report.results.counted.data);
  });
});

describe('convlens CLI', () => {
  const cli = path.resolve('bin/convlens.mjs');
  const run = (cwd: string, ...args: string[]) => spawnSync(process.execPath, [cli, ...args], { cwd, encoding: 'utf8' });

  it('prints bad input as one line naming the file and the fix, and exits 2', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'convlens-cli-'));
    fs.writeFileSync(path.join(root, 'package.json'), '{ "type": "module" }');
    fs.mkdirSync(path.join(root, 'reports', 'bad', 'model'), { recursive: true });
    fs.writeFileSync(path.join(root, 'reports', 'bad', 'report.config.ts'),
      `import { defineReport } from ${JSON.stringify(configModule)};\nexport default defineReport({ title: 'x', model: './model', dataset: { type: 'fashion-mnist' } });\n`);
    const r = run(root, 'run', '--backend', 'cpu');
    expect(r.status).toBe(2);
    const lines = r.stderr.trim().split('\n').filter((l) => l.startsWith('convlens:'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/model\.json/);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  it('rejects an unknown report, an unknown backend and a bad --jobs', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'convlens-cli-'));
    expect(run(root, 'run', '--report', 'nope').stderr).toMatch(/no report 'nope'/);
    const r = run(root, 'run', '--backend', 'quantum');
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/not one of/);
    const j = run(root, 'run', '--jobs', '0');
    expect(j.status).toBe(2);
    expect(j.stderr).toMatch(/--jobs 0 is not a whole number ≥ 1/);
  });
});
