/**
 * The runner with worker processes (--jobs > 1) on the tiny report written to disk: results
 * byte-identical to a one-job run, failures (a throw, a worker that exits) confined to their
 * step, needs respected while steps run at the same time, and Ctrl-C leaving no temp folders.
 * Test techniques live in a module written next to the project: workers import it by path.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { listFiles } from '../pipelines/cache';
import type { SiteManifest } from '../pipelines/manifest';
import { runReports } from '../pipelines/run';
import { ProgressBoard } from '../pipelines/run-progress';
import { writeTinyProject } from './helpers/tiny-report';

const require = createRequire(import.meta.url);
const abs = (p: string) => JSON.stringify(path.resolve(p));

/** A project folder with reports/tiny (tiny trained model, PNG class folders) and the test techniques module. */
async function writeProject(): Promise<string> {
  const { root, reportDir } = await writeTinyProject('convlens-jobs-');
  fs.writeFileSync(
    path.join(reportDir, 'report.config.ts'),
    `import { defineReport } from ${abs('pipelines/config.ts')};
export default defineReport({
  title: 'Tiny', model: './model', samplesPerClass: 1,
  dataset: { type: 'image-folder', path: './data', split: { train: 'train', test: 'test' } },
});
`,
  );
  // Markers go to <root>/markers: how the tests see what ran where, and when.
  fs.mkdirSync(path.join(root, 'markers'));
  fs.writeFileSync(
    path.join(root, 'techniques.ts'),
    `import fs from 'node:fs';
import path from 'node:path';
import { z } from ${JSON.stringify(pathToFileURL(require.resolve('zod')).href)};
import { defineTechnique } from ${abs('pipelines/technique.ts')};
const markers = (ctx) => path.join(ctx.report.dir, '..', '..', 'markers');
const mark = (ctx, name) => fs.writeFileSync(path.join(markers(ctx), name), String(process.pid));
const waitFor = async (ctx, name) => {
  for (let i = 0; i < 1200 && !fs.existsSync(path.join(markers(ctx), name)); i++) await new Promise((r) => setTimeout(r, 50));
  if (!fs.existsSync(path.join(markers(ctx), name))) throw new Error('timed out waiting for ' + name);
};
const base = { summary: 'test technique', family: 'dataset', version: 1, params: z.object({}) };
export const techniques = [
  defineTechnique({ ...base, id: 'counted', title: 'Counts test images', async run(ctx) {
    let n = 0;
    for await (const b of ctx.dataset.batches('test', 16)) n += b.size;
    await ctx.out.file('n.txt', String(n));
    return { n, seed: ctx.seed, r: ctx.rng.next() };
  } }),
  defineTechnique({ ...base, id: 'throws', title: 'Throws', async run(ctx) {
    await ctx.out.file('half.txt', 'partial');
    throw new Error('thrown on purpose');
  } }),
  defineTechnique({ ...base, id: 'dies', title: 'Exits its process', async run(ctx) {
    await ctx.out.file('half.txt', 'partial');
    if (process.env.CONVLENS_WORKER) process.exit(3);
    throw new Error('would exit');
  } }),
  defineTechnique({ ...base, id: 'after-dies', title: 'Needs dies', needs: ['dies'], async run() { return {}; } }),
  // first and side each wait for the other to start: they finish only if they run at the same time.
  defineTechnique({ ...base, id: 'first', title: 'First', async run(ctx) {
    mark(ctx, 'first-started');
    await waitFor(ctx, 'side-started');
    await ctx.out.file('x.txt', 'from first');
    return { end: Date.now() };
  } }),
  defineTechnique({ ...base, id: 'side', title: 'Side', async run(ctx) {
    mark(ctx, 'side-started');
    await waitFor(ctx, 'first-started');
    return {};
  } }),
  defineTechnique({ ...base, id: 'second', title: 'Second', needs: ['first'], async run(ctx) {
    return { start: Date.now(), firstEnd: ctx.deps.first.end, read: fs.readFileSync(path.join(ctx.depDirs.first, 'x.txt'), 'utf8') };
  } }),
  // hang: with CONVLENS_TEST_HANG set, starts, writes half a result and waits to be killed.
  ...['hang-a', 'hang-b'].map((id) => defineTechnique({ ...base, id, title: id, async run(ctx) {
    await ctx.out.file('half.txt', 'partial');
    if (process.env.CONVLENS_TEST_HANG) {
      mark(ctx, id + '-started');
      await new Promise(() => setInterval(() => {}, 1000));
    }
    return { id };
  } })),
];
`,
  );
  return root;
}

const quiet = () => {};
const tmpEntries = (root: string, workDir = '.convlens') => fs.readdirSync(path.join(root, workDir, 'cache')).filter((n) => n.includes('.tmp-'));

describe('runner --jobs', () => {
  it('gives results byte-identical to --jobs 1 (registry techniques on the tiny report)', async () => {
    const root = await writeProject();
    const only = ['features', 'pca', 'saliency', 'filters', 'activation-maximization'];
    const logs: string[] = [];
    const one = await runReports({ root, workDir: path.join(root, 'one'), backend: 'cpu', only, quick: true, jobs: 1, log: quiet });
    const two = await runReports({ root, workDir: path.join(root, 'two'), backend: 'cpu', only, quick: true, jobs: 2, log: (l) => logs.push(l) });
    expect(logs.some((l) => /running up to 2 steps at a time in worker processes/.test(l))).toBe(true);
    expect(logs.some((l) => /workers: pid \d+: \d+ steps?, peak RSS \d+ MiB/.test(l))).toBe(true);
    expect(one.failures).toEqual([]);
    expect(two.failures).toEqual([]);
    expect(two.computed).toEqual(one.computed);
    expect(two.usedKeys).toEqual(one.usedKeys);
    expect(one.computed).toHaveLength(only.length + 1); // + overview

    for (const key of one.usedKeys) {
      const a = path.join(root, 'one', 'cache', key);
      const b = path.join(root, 'two', 'cache', key);
      expect(listFiles(b)).toEqual(listFiles(a));
      for (const f of listFiles(a)) {
        if (f === 'result.json') continue;
        expect(Buffer.compare(fs.readFileSync(path.join(a, f)), fs.readFileSync(path.join(b, f))), `${key}/${f}`).toBe(0);
      }
      // result.json: equal but for clock readings (when it ran, how long; some techniques time themselves)
      const CLOCK = new Set(['startedAt', 'wallTimeMs', 'seconds', 'secondsPerImage']);
      const strip = (dir: string) =>
        JSON.stringify(JSON.parse(fs.readFileSync(path.join(dir, 'result.json'), 'utf8'), (k, v) => (CLOCK.has(k) ? undefined : v)));
      expect(strip(b)).toBe(strip(a));
    }
    const ma: SiteManifest = JSON.parse(fs.readFileSync(one.manifestFile, 'utf8'));
    const mb: SiteManifest = JSON.parse(fs.readFileSync(two.manifestFile, 'utf8'));
    expect(Object.keys(mb.reports[0].results)).toEqual(Object.keys(ma.reports[0].results));
    expect(tmpEntries(root, 'two')).toEqual([]);
  }, 240_000);

  it('confines a throw and a dead worker to their steps; needs wait for results; others run concurrently', async () => {
    const root = await writeProject();
    const techniquesModule = path.join(root, 'techniques.ts');
    const logs: string[] = [];
    const only = ['counted', 'throws', 'dies', 'after-dies', 'first', 'side', 'second'];
    const run = await runReports({ root, backend: 'cpu', techniquesModule, only, jobs: 2, log: (l) => logs.push(l) });
    const report: SiteManifest['reports'][0] = JSON.parse(fs.readFileSync(run.manifestFile, 'utf8')).reports[0];
    const cache = path.join(root, '.convlens', 'cache');

    // the failure list is in plan order, as a one-job run reports it
    expect(run.failures.map((f) => f.step)).toEqual(['throws', 'dies', 'after-dies']);
    expect(run.computed.sort()).toEqual(['tiny/counted', 'tiny/first', 'tiny/overview', 'tiny/second', 'tiny/side']);
    expect(report.results.throws).toMatchObject({ status: 'error', error: 'thrown on purpose' });
    expect(fs.readFileSync(path.join(cache, `${report.results.throws.key}.err`), 'utf8')).toBe('thrown on purpose');
    expect(report.results.dies.status).toBe('error');
    expect(report.results.dies.error).toMatch(/worker process \(pid \d+\) exited with code 3 while computing it/);
    expect(fs.readFileSync(path.join(cache, `${report.results.dies.key}.err`), 'utf8')).toMatch(/exited with code 3/);
    expect(report.results['after-dies']).toMatchObject({ status: 'error', error: 'needs dies, which did not produce a result' });
    for (const id of ['throws', 'dies']) expect(fs.existsSync(path.join(cache, report.results[id].key))).toBe(false);
    expect(tmpEntries(root)).toEqual([]);

    // the worker that died was replaced; the others went on
    expect(report.results.counted.data).toMatchObject({ n: 24 });
    expect(report.results.counted.provenance.seed).toBe((report.results.counted.data as { seed: number }).seed);
    const second = report.results.second.data as { start: number; firstEnd: number; read: string };
    expect(second.read).toBe('from first');
    expect(second.start).toBeGreaterThanOrEqual(second.firstEnd);
    // first and side waited for each other, so they ran in two processes at once
    const pids = ['first-started', 'side-started'].map((m) => fs.readFileSync(path.join(root, 'markers', m), 'utf8'));
    expect(new Set(pids).size).toBe(2);
    expect(pids).not.toContain(String(process.pid));

    // the same technique in-process, from the module: same data, same seed
    const inProcess = await runReports({ root, workDir: path.join(root, 'one'), backend: 'cpu', techniquesModule, only: ['counted'], jobs: 1, log: quiet });
    const again: SiteManifest = JSON.parse(fs.readFileSync(inProcess.manifestFile, 'utf8'));
    expect(again.reports[0].results.counted.data).toEqual(report.results.counted.data);
    expect(Buffer.compare(
      fs.readFileSync(path.join(root, 'one', 'cache', again.reports[0].results.counted.key, 'n.txt')),
      fs.readFileSync(path.join(cache, report.results.counted.key, 'n.txt')),
    )).toBe(0);
  }, 240_000);

  it('Ctrl-C stops the workers, leaves no temp folders, and the next run resumes', async () => {
    const root = await writeProject();
    const script = path.join(root, 'run.ts');
    fs.writeFileSync(script, `import { runReports } from ${abs('pipelines/run.ts')};
const s = await runReports({ root: ${JSON.stringify(root)}, backend: 'cpu', techniquesModule: ${JSON.stringify(path.join(root, 'techniques.ts'))}, only: ['counted', 'hang-a', 'hang-b'], jobs: 2, log: (l) => process.stderr.write(l + '\\n') });
process.stdout.write(JSON.stringify(s));
process.exit(0);
`);
    const tsx = pathToFileURL(require.resolve('tsx')).href;
    const start = (env: Record<string, string>) =>
      spawn(process.execPath, ['--import', tsx, script], { cwd: root, env: { ...process.env, ...env }, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const finished = (child: ReturnType<typeof start>) =>
      new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
        let out = '';
        let err = '';
        child.stdout!.on('data', (d) => (out += d));
        child.stderr!.on('data', (d) => (err += d));
        child.on('exit', (code) => resolve({ code, out, err }));
      });

    const child = start({ CONVLENS_TEST_HANG: '1' });
    const done = finished(child);
    const marker = (m: string) => path.join(root, 'markers', m);
    for (let i = 0; i < 1200 && !(fs.existsSync(marker('hang-a-started')) && fs.existsSync(marker('hang-b-started'))); i++) await new Promise((r) => setTimeout(r, 100));
    expect(tmpEntries(root).length).toBeGreaterThan(0); // both are mid-write
    const workers = ['hang-a-started', 'hang-b-started'].map((m) => Number(fs.readFileSync(marker(m), 'utf8')));
    process.kill(-child.pid!, 'SIGINT'); // what a terminal's Ctrl-C does: the whole process group
    const killed = await done;
    expect(killed.code).toBe(130);
    expect(tmpEntries(root)).toEqual([]);
    // an interrupted step is not a failure: no .err
    expect(fs.readdirSync(path.join(root, '.convlens', 'cache')).filter((n) => n.endsWith('.err'))).toEqual([]);
    const alive = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };
    expect(workers.filter(alive)).toEqual([]);

    // resume: what finished before the interruption is reused, the rest computed
    const resumed = await finished(start({}));
    expect(resumed.code, resumed.err).toBe(0);
    const summary = JSON.parse(resumed.out);
    expect(summary.failures).toEqual([]);
    expect(summary.computed.sort()).toEqual(['tiny/hang-a', 'tiny/hang-b']);
    expect(summary.reused.sort()).toEqual(['tiny/counted', 'tiny/overview']);
    expect(tmpEntries(root)).toEqual([]);
  }, 240_000);
});

describe('ProgressBoard (progress of concurrent steps)', () => {
  const fakeStream = (isTTY: boolean) => {
    const writes: string[] = [];
    return { writes, stream: { isTTY, columns: 60, write: (s: string) => writes.push(s) } as unknown as NodeJS.WriteStream };
  };

  it('on a terminal keeps one status line of all running steps, with log lines printed above it', () => {
    const prevCi = process.env.CI;
    delete process.env.CI;
    try {
      const { writes, stream } = fakeStream(true);
      const board = new ProgressBoard(stream);
      const a = board.start('r/a');
      const b = board.start('r/b');
      a.update(1, 4);
      const status = writes.at(-1)!;
      expect(status.startsWith('\r\x1b[2K')).toBe(true);
      expect(status).toMatch(/r\/a 1\/4 ETA .* │ r\/b …/);
      writes.length = 0;
      board.log('  a log line', (l) => writes.push(`${l}\n`));
      expect(writes[0]).toBe('\r\x1b[2K'); // the status line is cleared first
      expect(writes[1]).toBe('  a log line\n');
      expect(writes[2]).toMatch(/^\r\x1b\[2K {2}r\/a 1\/4/); // and redrawn below
      writes.length = 0;
      a.done('done');
      expect(writes.join('')).toMatch(/ {2}r\/a: done \(\d+\.\d s\)\n/);
      expect(writes.at(-1)).toMatch(/r\/b …$/);
      expect(writes.at(-1)).not.toMatch(/r\/a/);
      b.cancel(); // failed: leaves the status line, no closing line
      expect(writes.join('')).not.toMatch(/r\/b: /);
      for (const w of writes) expect(w.replace(/\x1b\[2K/g, '').length).toBeLessThanOrEqual(60);
    } finally {
      if (prevCi !== undefined) process.env.CI = prevCi;
    }
  });

  it('elsewhere prints plain lines: no redraws, each step closed with its time', () => {
    const { writes, stream } = fakeStream(false);
    const board = new ProgressBoard(stream);
    const a = board.start('r/a');
    for (let i = 1; i <= 100; i++) a.update(i, 100); // within 5 s: no line
    expect(writes).toEqual([]);
    board.log('  hello', (l) => writes.push(`${l}\n`));
    a.done('done');
    expect(writes.join('')).not.toMatch(/\r|\x1b/);
    expect(writes).toEqual(['  hello\n', expect.stringMatching(/^ {2}r\/a: done \(\d+\.\d s\)\n$/)]);
  });
});
