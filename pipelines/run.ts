/**
 * The runner: for each report, load config, model and dataset; run the overview step and every
 * enabled technique whose result is not cached; write the site manifest. One technique's failure
 * is recorded (cache `<key>.err`, manifest entry with status 'error') and the others go on.
 */
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
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
import { createProgress } from './progress';
import { techniques as registry } from './registry';
import { Rng, seedFrom } from './rng';
import { ResultWriter, type Technique } from './technique';
import type { BackendInfo, BackendRequest, Dataset } from './types';

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
  techniques?: Technique[];
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
  const techniques = options.techniques ?? registry;
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
    log(`report ${id}: backend ${backend.name} (${backend.adapter})`);
    const manifest = await runReport(report, backend, { cache, techniques, options, log, summary });
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
}

async function runReport(report: ResolvedReport, backend: BackendInfo, rc: RunContext): Promise<ReportManifest> {
  const { config } = report;
  const model = await loadModel(report.modelDir);
  try {
    const preprocessing = resolvePreprocessing(config.preprocessing, model.inputShape, report.configFile);
    const dataset = await openDataset(config.dataset, { configFile: report.configFile, baseDir: report.dir, preprocessing, log: rc.log });
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

    const base: StepBase = {
      modelId: model.id,
      datasetId: dataset.id,
      engine: { convlens: CONVLENS_VERSION, tfjs: TFJS_VERSION },
      backend: backend.name,
      seed: config.seed,
    };

    const overviewParams = { samplesPerClass: config.samplesPerClass };
    const overview = await step(rc, report.id, 'overview', cacheKey({ ...base, step: 'overview', version: 1, params: overviewParams }), (out) =>
      computeOverview(model, dataset, overviewParams.samplesPerClass, out),
    1, overviewParams, base, backend);

    const results: Record<string, ResultEntry> = {};
    const keys = new Map<string, string>();
    // --only runs the named techniques and what they need; others are shown if already cached.
    const selected = rc.options.only?.length ? withNeeds(rc.options.only, rc.techniques) : undefined;
    for (const technique of orderByNeeds(rc.techniques)) {
      const setting = config.techniques[technique.id];
      if (setting === false) continue;
      const parsed = technique.params.safeParse(rc.options.quick ? { ...technique.quick, ...setting } : setting ?? {});
      if (!parsed.success) {
        const field = (issue: z.core.$ZodIssue) => ['techniques', technique.id, ...issue.path.map(String)].join('.');
        throw new ConvlensError(`invalid parameters: ${parsed.error.issues.map((i) => `${field(i)}: ${i.message}`).join('; ')}`, { file: report.configFile });
      }
      const missing = technique.needs.filter((n) => !keys.has(n) || results[n]?.status !== 'ok');
      const key = cacheKey({ ...base, technique: technique.id, version: technique.version, params: parsed.data, needs: technique.needs.map((n) => keys.get(n) ?? n) });
      keys.set(technique.id, key);
      if (selected && !selected.has(technique.id) && !rc.cache.has(key)) continue;
      if (missing.length) {
        results[technique.id] = failedEntry(technique, key, `needs ${missing.join(', ')}, which did not produce a result`, parsed.data, base, backend);
        rc.summary.failures.push({ report: report.id, step: technique.id, message: results[technique.id].error! });
        continue;
      }
      const deps = Object.fromEntries(technique.needs.map((n) => [n, results[n].data]));
      const depDirs = Object.fromEntries(technique.needs.map((n) => [n, rc.cache.dirOf(keys.get(n)!)]));
      results[technique.id] = await step(rc, report.id, technique.id, key, async (out, prov) => {
        const progress = createProgress(`${report.id}/${technique.id}`);
        const data = await technique.run({
          params: parsed.data, model, dataset, deps, depDirs, out, rng: new Rng(prov.seed), seed: prov.seed, backend,
          report: { id: report.id, dir: report.dir, configFile: report.configFile },
          log: (m) => rc.log(`  ${technique.id}: ${m}`),
          progress: (d, t) => progress.update(d, t),
        });
        progress.done('done');
        return data;
      }, technique.version, parsed.data, base, backend);
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
    model.dispose();
  }
}

/** Runs one cached step: reuse, or compute atomically; failures become 'error' entries. */
async function step(
  rc: RunContext,
  reportId: string,
  name: string,
  key: string,
  compute: (out: ResultWriter, provenance: Provenance) => Promise<unknown>,
  version: number,
  params: unknown,
  base: StepBase,
  backend: BackendInfo,
): Promise<ResultEntry> {
  rc.summary.usedKeys.push(key);
  if (rc.cache.has(key) && !rc.options.force) {
    rc.summary.reused.push(`${reportId}/${name}`);
    return entryOf(name, rc.cache.read(key));
  }
  const started = Date.now();
  const provenance = provenanceOf(name, version, params, key, base, describeBackend() ?? backend, started);
  const tensorsBefore = tf.memory().numTensors;
  try {
    if (rc.options.force && rc.cache.has(key)) fs.rmSync(rc.cache.dirOf(key), { recursive: true, force: true });
    const stored = await rc.cache.write(key, async (tmp) => {
      const data = await compute(new ResultWriter(tmp), provenance);
      return { data, provenance: { ...provenance, wallTimeMs: Date.now() - started } };
    });
    rc.summary.computed.push(`${reportId}/${name}`);
    const leaked = tf.memory().numTensors - tensorsBefore;
    if (leaked > 0) rc.log(`  warning: ${name} left ${leaked} tensors allocated`);
    return entryOf(name, stored);
  } catch (e) {
    const message = e instanceof Error ? e.message.split('\n')[0] : String(e);
    rc.log(`  ${name}: FAILED: ${message}`);
    if (!isConvlensError(e) && e instanceof Error && e.stack && process.env.CONVLENS_DEBUG) rc.log(e.stack);
    rc.summary.failures.push({ report: reportId, step: name, message });
    return { technique: name, status: 'error', error: message, key, assetBase: '', files: [], provenance: { ...provenance, wallTimeMs: Date.now() - started } };
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
function failedEntry(technique: Technique, key: string, message: string, params: unknown, base: StepBase, backend: BackendInfo): ResultEntry {
  return {
    technique: technique.id, status: 'error', error: message, key, assetBase: '', files: [],
    provenance: provenanceOf(technique.id, technique.version, params, key, base, backend, Date.now()),
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
async function computeOverview(model: LoadedModel, dataset: Dataset, samplesPerClass: number, out: ResultWriter): Promise<OverviewData> {
  const classes = dataset.classNames.length;
  const split = dataset.splitSizes.test > 0 ? 'test' : 'train';
  const total = dataset.splitSizes[split];
  const correct = new Array<number>(classes).fill(0);
  const seen = new Array<number>(classes).fill(0);
  const [h, w, c] = dataset.imageShape;
  const tiles: { pixels: Uint8Array; width: number; height: number; channels: 1 | 3 }[][] = Array.from({ length: classes }, () => []);
  const progress = createProgress('overview');
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
