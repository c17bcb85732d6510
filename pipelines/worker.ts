/**
 * A runner worker process (see run-pool.ts): receives one step at a time, computes it with the
 * same code as an in-process run (run.ts stepCompute + computeInto) and writes the result into
 * the cache itself. Model and dataset are loaded once per report and kept for the next step.
 * Exits when the runner closes the channel or sends SIGTERM, removing its temp folder first.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describeBackend, initBackend } from './backend';
import { ResultCache } from './cache';
import { loadReportConfig } from './config';
import { isConvlensError } from './errors';
import type { Progress } from './progress';
import { techniques as registry } from './registry';
import { computeInto, loadInputs, loadTechniquesModule, parseParams, stepCompute, type ReportInputs } from './run';
import type { FromWorker, ToWorker, WorkerJob } from './run-pool';

const send = (m: FromWorker) => {
  if (process.connected) process.send!(m);
};
const log = (line: string) => send({ type: 'log', line });

let currentTmp: string | undefined;
const inputs = new Map<string, Promise<ReportInputs>>();
const techniqueLists = new Map<string, Promise<typeof registry>>();

function stop(code: number): never {
  if (currentTmp) fs.rmSync(currentTmp, { recursive: true, force: true });
  process.exit(code);
}
process.on('disconnect', () => stop(0));
// A terminal's Ctrl-C reaches the whole process group: the runner decides (it sends SIGTERM), so
// that an interrupted step is not recorded as a crash.
process.on('SIGINT', () => {});
process.on('SIGTERM', () => stop(143));

// One job at a time: the pool sends the next only after this one's result.
let chain = Promise.resolve();
process.on('message', (m: ToWorker) => {
  if (m.type === 'job') chain = chain.then(() => handle(m.job));
});

/** Progress forwarded to the runner, at most ~5 messages a second (techniques may update per image). */
function forwardProgress(): Progress {
  let last = 0;
  return {
    update(done, total) {
      const now = Date.now();
      if (now - last < 200 && done < total) return;
      last = now;
      send({ type: 'progress', done, total });
    },
    done(summary) {
      send({ type: 'progress-done', summary });
    },
  };
}

async function handle(job: WorkerJob): Promise<void> {
  try {
    await initBackend(job.backend);
    let ctx = inputs.get(job.configFile);
    if (!ctx) {
      ctx = loadReportConfig(job.configFile).then((report) => loadInputs(report, log));
      inputs.set(job.configFile, ctx);
    }
    const loaded = await ctx;
    const list = job.techniquesModule ? await techniquesFrom(job.techniquesModule) : registry;
    const technique = job.overview ? undefined : list.find((t) => t.id === job.step);
    if (!job.overview && !technique) throw new Error(`worker: no technique '${job.step}' in ${job.techniquesModule ?? 'the registry'}`);
    // Re-parsed here from the config rather than sent: exactly what the runner parsed, no JSON round trip.
    const params = technique ? parseParams(technique, loaded.report, job.quick) : undefined;
    const deps = Object.fromEntries(
      Object.entries(job.depDirs).map(([id, dir]) => [id, JSON.parse(fs.readFileSync(path.join(dir, 'result.json'), 'utf8')).data]),
    );
    const cache = new ResultCache(job.cacheRoot);
    currentTmp = path.join(job.cacheRoot, `${job.key}.tmp-${process.pid}`);
    const compute = stepCompute(job.step, loaded, { technique, params, deps, depDirs: job.depDirs, backend: describeBackend() }, log, forwardProgress());
    await computeInto(cache, job.key, job.provenance, compute, log);
    send({ type: 'result', ok: true, maxRssKb: process.resourceUsage().maxRSS });
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    const stack = !isConvlensError(e) && e instanceof Error ? e.stack : undefined;
    send({ type: 'result', ok: false, message, stack, maxRssKb: process.resourceUsage().maxRSS });
  } finally {
    currentTmp = undefined;
  }
}

function techniquesFrom(file: string) {
  let p = techniqueLists.get(file);
  if (!p) techniqueLists.set(file, (p = loadTechniquesModule(file)));
  return p;
}
