/**
 * The runner: for each report, load config, model and dataset; run the overview step and every
 * enabled technique whose result is not cached; write the site manifest. One technique's failure
 * is recorded (cache `<key>.err`, manifest entry with status 'error') and the others go on.
 *
 * With `jobs` > 1, steps run concurrently in worker processes (run-pool.ts, worker.ts), each step
 * as soon as everything it needs has a result. A worker loads the model and dataset itself and
 * writes its result into the cache; the code that computes a step is the same in both places.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { describeBackend, initBackend } from './backend';
import { cacheKey, ResultCache, type StoredResult } from './cache';
import { loadReportConfig, resolvePreprocessing, type ResolvedReport } from './config';
import { checkDatasetFitsModel, openDataset } from './data/index';
import { ConvlensError, isConvlensError } from './errors';
import { imageGrid, encodePng } from './images';
import type { OverviewData, Provenance, ReportManifest, ResultEntry, SiteManifest, TechniqueInfo } from './manifest';
import { loadModel, type LoadedModel } from './model/load';
import { createProgress, type Progress } from './progress';
import { techniques as registry } from './registry';
import { interruptOnSignal, WorkerPool } from './run-pool';
import { ProgressBoard } from './run-progress';
import { Rng, seedFrom } from './rng';
import { ResultWriter, type Technique } from './technique';
import type { BackendInfo, BackendName, BackendRequest, Dataset } from './types';

const require = createRequire(import.meta.url);
export const CONVLENS_VERSION: string = require('../package.json').version;
const TFJS_VERSION: string = require('@tensorflow/tfjs-core/package.json').version;

export interface RunOptions {
  /** project root holding reports/ (default: cwd). */
  root?: string;
  /** report ids to run (default: every folder in reports/ with a report.config.ts). */
  reports?: string[];
  /** technique ids to run (default: all enabled); others are still read from the cache if present. */
  only?: string[];
  backend?: BackendRequest;
  /** where the cache and the site data live (default: <root>/.convlens). */
  workDir?: string;
  /** recompute even when cached. */
  force?: boolean;
  /** lay each technique's `quick` params under the config's: a fast, rough preview. */
  quick?: boolean;
  log?: (line: string) => void;
  /** the techniques to run (default: the registry); steps run in-process unless techniquesModule is set too. */
  techniques?: Technique[];
  /**
   * a module exporting `techniques: Technique[]`, loaded by the runner and by every worker
   * process in place of the registry (workers cannot receive function objects).
   */
  techniquesModule?: string;
  /**
   * steps computed at the same time, each in its own worker process; 1 = all in this process,
   * one after the other. Default: defaultJobs(backend).
   */
  jobs?: number;
}

/**
 * wasm and cpu compute on one thread, so a second process uses a second core (capped at 2: each
 * worker holds its own copy of the model and dataset). webgpu and tensorflow parallelise inside.
 */
export function defaultJobs(backend: BackendName): number {
  return backend === 'wasm' || backend === 'cpu' ? Math.max(1, Math.min(os.availableParallelism(), 2)) : 1;
}

/** The `techniques` list of a module (runReports' techniquesModule option; worker processes). */
export async function loadTechniquesModule(file: string): Promise<Technique[]> {
  const mod = (await import(pathToFileURL(path.resolve(file)).href)) as { techniques?: unknown };
  if (!Array.isArray(mod.techniques)) {
    throw new ConvlensError('exports no `techniques` array', { file, field: 'techniques', fix: 'export const techniques: Technique[] = [...]' });
  }
  return mod.techniques as Technique[];
}

export interface RunSummary {
  computed: string[];
  reused: string[];
  failures: { report: string; step: string; message: string }[];
  manifestFile: string;
  usedKeys: string[];
}

export function discoverReports(root: string): string[] {
  const dir = path.join(root, 'reports');
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && fs.existsSync(path.join(dir, d.name, 'report.config.ts')))
    .map((d) => d.name)
    .sort();
}

export async function runReports(options: RunOptions = {}): Promise<RunSummary> {
  const root = path.resolve(options.root ?? process.cwd());
  const workDir = path.resolve(options.workDir ?? path.join(root, '.convlens'));
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const techniques = options.techniquesModule ? await loadTechniquesModule(options.techniquesModule) : options.techniques ?? registry;
  if (options.jobs !== undefined && (!Number.isInteger(options.jobs) || options.jobs < 1)) {
    throw new ConvlensError(`jobs must be a whole number ≥ 1, got ${options.jobs}`, { field: 'jobs', fix: 'use --jobs 1, 2, …' });
  }
  const cache = new ResultCache(path.join(workDir, 'cache'));
  const siteDir = path.join(workDir, 'site');
  const summary: RunSummary = { computed: [], reused: [], failures: [], manifestFile: path.join(siteDir, 'manifest.json'), usedKeys: [] };

  const available = discoverReports(root);
  const ids = options.reports?.length ? options.reports : available;
  for (const id of ids) {
    if (!available.includes(id)) {
      throw new ConvlensError(`no report '${id}'`, { file: `reports/${id}/report.config.ts`, fix: `choose one of: ${available.join(', ') || '(none)'}` });
    }
  }
  for (const id of options.only ?? []) {
    if (!techniques.some((t) => t.id === id)) {
      throw new ConvlensError(`unknown technique '${id}' in --only`, { fix: `choose from: ${techniques.map((t) => t.id).join(', ') || '(none registered)'}` });
    }
  }

  const reports: ReportManifest[] = [];
  for (const id of ids) {
    const report = await loadReportConfig(path.join(root, 'reports', id, 'report.config.ts'));
    const backend = await initBackend(options.backend ?? report.backend ?? 'auto', { log });
    // Technique objects handed in without a module cannot reach a worker process: run them here.
    const inProcessOnly = Boolean(options.techniques && !options.techniquesModule);
    const jobs = inProcessOnly ? 1 : options.jobs ?? defaultJobs(backend.name);
    log(`report ${id}: backend ${backend.name} (${backend.adapter}), ${jobs} job${jobs === 1 ? '' : 's'}`);
    const manifest = await runReport(report, backend, { cache, techniques, options, log, summary, jobs });
    reports.push(manifest);
  }

  publish(siteDir, cache, reports, techniques, summary);
  fs.writeFileSync(path.join(workDir, 'last-build.json'), JSON.stringify({ keys: summary.usedKeys }, null, 1));
  if (summary.computed.length === 0) log(`nothing to compute: all ${summary.reused.length} results reused from the cache`);
  else log(`computed ${summary.computed.length}, reused ${summary.reused.length} from the cache`);
  return summary;
}

/** What every step's cache key and provenance share within one report. */
interface StepBase {
  modelId: string;
  datasetId: string;
  engine: Record<string, string>;
  backend: string;
  seed: number;
}

interface RunContext {
  cache: ResultCache;
  techniques: Technique[];
  options: RunOptions;
  log: (line: string) => void;
  summary: RunSummary;
  jobs: number;
}

/** The model and dataset a report computes on, checked against each other. */
export interface ReportInputs {
  report: ResolvedReport;
  model: LoadedModel;
  dataset: Dataset;
}

/** Loads and checks a report's model and dataset (the runner and each worker process do this). */
export async function loadInputs(report: ResolvedReport, log: (line: string) => void): Promise<ReportInputs> {
  const { config } = report;
  const model = await loadModel(report.modelDir);
  try {
    const preprocessing = resolvePreprocessing(config.preprocessing, model.inputShape, report.configFile);
    const dataset = await openDataset(config.dataset, { configFile: report.configFile, baseDir: report.dir, preprocessing, log });
    checkDatasetFitsModel(dataset, model.inputShape, report.configFile);
    if (config.classNames) {
      if (config.classNames.length !== dataset.classNames.length) {
        throw new ConvlensError(`lists ${config.classNames.length} names for ${dataset.classNames.length} classes`, {
          file: report.configFile, field: 'classNames', fix: 'give one name per class folder, in label order',
        });
      }
      dataset.classNames = config.classNames;
    }
    checkClassCount(model, dataset, report.configFile);
    return { report, model, dataset };
  } catch (e) {
    model.dispose();
    throw e;
  }
}

/** A technique's parameters as the config (and --quick) set them; a bad value is a user error. */
export function parseParams(technique: Technique, report: ResolvedReport, quick: boolean): unknown {
  const setting = report.config.techniques[technique.id];
  const input = setting === false ? {} : setting;
  const parsed = technique.params.safeParse(quick ? { ...technique.quick, ...input } : input ?? {});
  if (!parsed.success) {
    const field = (issue: z.core.$ZodIssue) => ['techniques', technique.id, ...issue.path.map(String)].join('.');
    throw new ConvlensError(`invalid parameters: ${parsed.error.issues.map((i) => `${field(i)}: ${i.message}`).join('; ')}`, { file: report.configFile });
  }
  return parsed.data;
}

export const overviewParams = (report: ResolvedReport) => ({ samplesPerClass: report.config.samplesPerClass });

/** What computing one step means, in-process or in a worker: the same code, so the same bytes. */
export function stepCompute(
  name: string,
  inputs: ReportInputs,
  ctx: { technique?: Technique; params: unknown; deps: Record<string, unknown>; depDirs: Record<string, string>; backend: BackendInfo },
  log: (line: string) => void,
  progress: Progress,
): (out: ResultWriter, provenance: Provenance) => Promise<unknown> {
  const { report, model, dataset } = inputs;
  if (!ctx.technique) {
    return (out) => computeOverview(model, dataset, overviewParams(report).samplesPerClass, out, progress);
  }
  const technique = ctx.technique;
  return async (out, prov) => {
    const data = await technique.run({
      params: ctx.params, model, dataset, deps: ctx.deps, depDirs: ctx.depDirs, out, rng: new Rng(prov.seed), seed: prov.seed, backend: ctx.backend,
      report: { id: report.id, dir: report.dir, configFile: report.configFile },
      log: (m) => log(`  ${name}: ${m}`),
      progress: (d, t) => progress.update(d, t),
    });
    progress.done('done');
    return data;
  };
}

/**
 * Computes one step into the cache: `<key>.tmp-<pid>` renamed into place when complete,
 * `<key>.err` on failure (then rethrown). Used in-process and by worker processes.
 */
export async function computeInto(
  cache: ResultCache,
  key: string,
  provenance: Provenance,
  compute: (out: ResultWriter, provenance: Provenance) => Promise<unknown>,
  log: (line: string) => void,
): Promise<StoredResult> {
  const started = Date.now();
  const prov = { ...provenance, startedAt: new Date(started).toISOString() };
  const tensorsBefore = tf.memory().numTensors;
  const stored = await cache.write(key, async (tmp) => {
    const data = await compute(new ResultWriter(tmp), prov);
    return { data, provenance: { ...prov, wallTimeMs: Date.now() - started } };
  });
  const leaked = tf.memory().numTensors - tensorsBefore;
  if (leaked > 0) log(`  warning: ${provenance.technique} left ${leaked} tensors allocated`);
  return stored;
}

/** One planned step of a report: the overview or an enabled technique. */
interface Planned {
  name: string;
  key: string;
  version: number;
  params: unknown;
  needs: string[];
  technique?: Technique;
}

/** How a step ended; folded into the run summary in plan order once all steps are done. */
interface Outcome {
  entry: ResultEntry;
  status: 'computed' | 'reused' | 'failed';
  /** false for a step that never ran because what it needs failed (no key used). */
  usedKey: boolean;
}

async function runReport(report: ResolvedReport, backend: BackendInfo, rc: RunContext): Promise<ReportManifest> {
  const { config } = report;
  const inputs = await loadInputs(report, rc.log);
  const { model, dataset } = inputs;
  let pool: WorkerPool | undefined;
  let uninstall = () => {};
  try {
    const base: StepBase = {
      modelId: model.id,
      datasetId: dataset.id,
      engine: { convlens: CONVLENS_VERSION, tfjs: TFJS_VERSION },
      backend: backend.name,
      seed: config.seed,
    };

    // Plan first (parameters, keys), so that a bad parameter stops the run before any compute.
    const plans: Planned[] = [{ name: 'overview', key: cacheKey({ ...base, step: 'overview', version: 1, params: overviewParams(report) }), version: 1, params: overviewParams(report), needs: [] }];
    const keys = new Map<string, string>();
    // --only runs the named techniques and what they need; others are shown if already cached.
    const selected = rc.options.only?.length ? withNeeds(rc.options.only, rc.techniques) : undefined;
    for (const technique of orderByNeeds(rc.techniques)) {
      if (config.techniques[technique.id] === false) continue;
      const params = parseParams(technique, report, Boolean(rc.options.quick));
      const key = cacheKey({ ...base, technique: technique.id, version: technique.version, params, needs: technique.needs.map((n) => keys.get(n) ?? n) });
      keys.set(technique.id, key);
      if (selected && !selected.has(technique.id) && !rc.cache.has(key)) continue;
      plans.push({ name: technique.id, key, version: technique.version, params, needs: technique.needs, technique });
    }

    // Worker processes only pay off with two or more steps to compute.
    const toCompute = plans.filter((p) => rc.options.force || !rc.cache.has(p.key)).length;
    let log = rc.log;
    let board: ProgressBoard | undefined;
    if (rc.jobs > 1 && toCompute > 1) {
      const b = (board = new ProgressBoard());
      log = (line) => b.log(line, rc.log);
      pool = new WorkerPool(rc.jobs, { log });
      uninstall = interruptOnSignal(pool, rc.cache.root);
      log(`  running up to ${rc.jobs} steps at a time in worker processes`);
    }

    const outcomes = new Map<string, Promise<Outcome>>();
    for (const p of plans) {
      const outcome = (async (): Promise<Outcome> => {
        // A step starts when everything it needs has a result (or has failed).
        const needs = await Promise.all(p.needs.map((n) => outcomes.get(n)));
        const missing = p.needs.filter((_, i) => needs[i]?.entry.status !== 'ok');
        if (missing.length) {
          const entry = failedEntry(p, `needs ${missing.join(', ')}, which did not produce a result`, base, backend);
          return { entry, status: 'failed', usedKey: false };
        }
        const deps = Object.fromEntries(p.needs.map((n, i) => [n, needs[i]!.entry.data]));
        const depDirs = Object.fromEntries(p.needs.map((n) => [n, rc.cache.dirOf(keys.get(n)!)]));
        return step(rc, report, p, base, backend, log, pool && board ? { pool, board } : undefined, depDirs, (progress) =>
          stepCompute(p.name, inputs, { technique: p.technique, params: p.params, deps, depDirs, backend }, log, progress));
      })();
      outcomes.set(p.name, outcome);
      // One job: exactly the sequential order of a plain run.
      if (!pool) await outcome;
    }
    const results: Record<string, ResultEntry> = {};
    let overview: ResultEntry | undefined;
    for (const p of plans) {
      const o = await outcomes.get(p.name)!;
      if (o.usedKey) rc.summary.usedKeys.push(p.key);
      if (o.status === 'computed') rc.summary.computed.push(`${report.id}/${p.name}`);
      if (o.status === 'reused') rc.summary.reused.push(`${report.id}/${p.name}`);
      if (o.status === 'failed') rc.summary.failures.push({ report: report.id, step: p.name, message: o.entry.error! });
      if (p.technique) results[p.name] = o.entry;
      else overview = o.entry;
    }

    return {
      id: report.id,
      title: config.title,
      description: config.description,
      backend,
      model: {
        path: path.relative(report.dir, report.modelDir) || '.',
        id: model.id,
        inputShape: [...model.inputShape],
        totalParams: model.totalParams,
        layers: model.layers,
      },
      dataset: {
        name: dataset.name,
        source: dataset.source,
        id: dataset.id,
        classNames: dataset.classNames,
        imageShape: dataset.imageShape,
        preprocessing: dataset.preprocessing,
        splitSizes: dataset.splitSizes,
        classCounts: dataset.classCounts,
        skipped: dataset.skipped,
      },
      overview: overview as ResultEntry<OverviewData>,
      results,
    };
  } finally {
    await pool?.close();
    uninstall();
    model.dispose();
  }
}

/** Runs one cached step: reuse, or compute atomically (here or in a worker); failures become 'error' entries. */
async function step(
  rc: RunContext,
  report: ResolvedReport,
  p: Planned,
  base: StepBase,
  backend: BackendInfo,
  log: (line: string) => void,
  workers: { pool: WorkerPool; board: ProgressBoard } | undefined,
  depDirs: Record<string, string>,
  compute: (progress: Progress) => (out: ResultWriter, provenance: Provenance) => Promise<unknown>,
): Promise<Outcome> {
  const { name, key } = p;
  if (rc.cache.has(key) && !rc.options.force) return { entry: entryOf(name, rc.cache.read(key)), status: 'reused', usedKey: true };
  const started = Date.now();
  const provenance = provenanceOf(name, p.version, p.params, key, base, describeBackend() ?? backend, started);
  const label = p.technique ? `${report.id}/${name}` : 'overview';
  let progress: (Progress & { cancel?: () => void }) | undefined;
  try {
    if (rc.options.force && rc.cache.has(key)) fs.rmSync(rc.cache.dirOf(key), { recursive: true, force: true });
    let stored: StoredResult;
    if (workers) {
      await workers.pool.run(
        {
          configFile: path.join(report.dir, 'report.config.ts'), backend: backend.name, techniquesModule: rc.options.techniquesModule,
          step: name, overview: !p.technique, key, cacheRoot: rc.cache.root, quick: Boolean(rc.options.quick), provenance, depDirs,
        },
        { log, started: () => (progress = workers.board.start(label)) },
      );
      stored = rc.cache.read(key);
    } else {
      stored = await computeInto(rc.cache, key, provenance, compute(createProgress(label)), log);
    }
    return { entry: entryOf(name, stored), status: 'computed', usedKey: true };
  } catch (e) {
    progress?.cancel?.();
    const message = e instanceof Error ? e.message.split('\n')[0] : String(e);
    log(`  ${name}: FAILED: ${message}`);
    if (!isConvlensError(e) && e instanceof Error && e.stack && process.env.CONVLENS_DEBUG) log(e.stack);
    return {
      entry: { technique: name, status: 'error', error: message, key, assetBase: '', files: [], provenance: { ...provenance, wallTimeMs: Date.now() - started } },
      status: 'failed',
      usedKey: true,
    };
  }
}

function entryOf(name: string, stored: StoredResult): ResultEntry {
  return { technique: name, status: 'ok', key: stored.key, assetBase: `/results/${stored.key}/`, files: stored.files, provenance: stored.provenance, data: stored.data };
}

/** What the cache key promises, plus when and where: the reader's recipe for reproducing a figure. */
function provenanceOf(name: string, version: number, params: unknown, key: string, base: StepBase, backend: BackendInfo, started: number): Provenance {
  return {
    technique: name, techniqueVersion: version, params, seed: seedFrom(`${key}:${base.seed}`), backend,
    modelId: base.modelId, datasetId: base.datasetId, versions: { ...backend.versions, ...base.engine },
    startedAt: new Date(started).toISOString(), wallTimeMs: 0, cacheKey: key,
  };
}

/** A step that could not run (what it needs failed): an error entry, nothing cached. */
function failedEntry(p: Planned, message: string, base: StepBase, backend: BackendInfo): ResultEntry {
  return {
    technique: p.name, status: 'error', error: message, key: p.key, assetBase: '', files: [],
    provenance: provenanceOf(p.name, p.version, p.params, p.key, base, backend, Date.now()),
  };
}

/** The named techniques and, transitively, everything they need. */
export function withNeeds(ids: string[], list: Technique[]): Set<string> {
  const out = new Set<string>();
  const visit = (id: string) => {
    if (out.has(id)) return;
    out.add(id);
    for (const need of list.find((t) => t.id === id)?.needs ?? []) visit(need);
  };
  ids.forEach(visit);
  return out;
}

/** Techniques ordered so that every one comes after what it needs; unknown needs are an error. */
export function orderByNeeds(list: Technique[]): Technique[] {
  const byId = new Map(list.map((t) => [t.id, t]));
  const ordered: Technique[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (t: Technique, chain: string[]) => {
    if (state.get(t.id) === 'done') return;
    if (state.get(t.id) === 'visiting') throw new Error(`techniques depend on each other in a cycle: ${[...chain, t.id].join(' → ')}`);
    state.set(t.id, 'visiting');
    for (const need of t.needs) {
      const dep = byId.get(need);
      if (!dep) throw new Error(`technique '${t.id}' needs '${need}', which is not registered`);
      visit(dep, [...chain, t.id]);
    }
    state.set(t.id, 'done');
    ordered.push(t);
  };
  for (const t of list) visit(t, []);
  return ordered;
}

function checkClassCount(model: LoadedModel, dataset: Dataset, file: string) {
  const out = model.executor.nodes[model.executor.nodes.length - 1].outputShape;
  const classes = out[out.length - 1];
  if (out.length === 1 && classes !== dataset.classNames.length) {
    throw new ConvlensError(`the model has ${classes} outputs but the dataset has ${dataset.classNames.length} classes`, {
      file, field: 'dataset', fix: 'point the report at the dataset the model was trained on (one class folder per output)',
    });
  }
}

/** Accuracy on the test split (one streamed pass) and sample thumbnails per class. */
async function computeOverview(model: LoadedModel, dataset: Dataset, samplesPerClass: number, out: ResultWriter, progress: Progress): Promise<OverviewData> {
  const classes = dataset.classNames.length;
  const split = dataset.splitSizes.test > 0 ? 'test' : 'train';
  const total = dataset.splitSizes[split];
  const correct = new Array<number>(classes).fill(0);
  const seen = new Array<number>(classes).fill(0);
  const [h, w, c] = dataset.imageShape;
  const tiles: { pixels: Uint8Array; width: number; height: number; channels: 1 | 3 }[][] = Array.from({ length: classes }, () => []);
  let done = 0;
  for await (const batch of dataset.batches(split, 256)) {
    const predicted = tf.tidy(() => {
      const x = tf.tensor4d(batch.images, [batch.size, h, w, c]);
      return tf.argMax(model.executor.run(x).output, -1);
    });
    const labels = (await predicted.data()) as Int32Array;
    predicted.dispose();
    for (let i = 0; i < batch.size; i++) {
      const y = batch.labels[i];
      seen[y]++;
      if (labels[i] === y) correct[y]++;
      if (tiles[y].length < samplesPerClass) {
        tiles[y].push({ pixels: batch.pixels.slice(i * h * w * c, (i + 1) * h * w * c), width: w, height: h, channels: c as 1 | 3 });
      }
    }
    done += batch.size;
    progress.update(done, total);
  }
  const samples: string[][] = [];
  for (let k = 0; k < classes; k++) {
    samples.push([]);
    for (let i = 0; i < tiles[k].length; i++) {
      const t = tiles[k][i];
      const scale = Math.max(1, Math.round(96 / Math.max(t.width, t.height)));
      const big = imageGrid([t], 1, { upscale: scale, gap: 0 });
      samples[k].push(await out.file(`samples/class-${k}-${i}.png`, await encodePng(big.pixels, big.width, big.height, big.channels)));
    }
  }
  const count = seen.reduce((a, b) => a + b, 0);
  progress.done(`accuracy ${((100 * correct.reduce((a, b) => a + b, 0)) / Math.max(count, 1)).toFixed(2)}% on ${count} images`);
  return {
    split,
    count,
    accuracy: correct.reduce((a, b) => a + b, 0) / Math.max(count, 1),
    perClassAccuracy: seen.map((n, k) => (n ? correct[k] / n : 0)),
    samples,
  };
}

/** Writes the site manifest and copies every used result folder where the site publishes it. */
function publish(siteDir: string, cache: ResultCache, reports: ReportManifest[], techniques: Technique[], summary: RunSummary) {
  const resultsDir = path.join(siteDir, 'results');
  fs.mkdirSync(resultsDir, { recursive: true });
  const used = new Set(summary.usedKeys.filter((k) => cache.has(k)));
  for (const name of fs.readdirSync(resultsDir)) if (!used.has(name)) fs.rmSync(path.join(resultsDir, name), { recursive: true, force: true });
  for (const key of used) {
    const target = path.join(resultsDir, key);
    if (!fs.existsSync(target)) fs.cpSync(cache.dirOf(key), target, { recursive: true });
  }
  const manifest: SiteManifest = {
    generatedAt: new Date().toISOString(),
    convlensVersion: CONVLENS_VERSION,
    techniques: techniques.map(techniqueInfo),
    reports,
  };
  const tmp = `${summary.manifestFile}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify(manifest, null, 1));
  fs.renameSync(tmp, summary.manifestFile);
}

export function techniqueInfo(t: Technique): TechniqueInfo {
  return { id: t.id, title: t.title, family: t.family, version: t.version, summary: t.summary, internal: t.internal, paramsSchema: z.toJSONSchema(t.params, { io: 'input', unrepresentable: 'any' }) };
}
