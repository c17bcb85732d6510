/**
 * The site's one door to the runner's output: reads `<data dir>/manifest.json` once at build time,
 * validates it, and answers look-ups. Only `import type` from pipelines/, so TF.js never reaches
 * the site build.
 */
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type { OverviewData, ReportManifest, ResultEntry, SiteManifest, TechniqueInfo } from '../pipelines/manifest';

export type { OverviewData, ReportManifest, ResultEntry, SiteManifest, TechniqueInfo };

/** astro.config.mjs makes this absolute; the fallback serves scripts that import us directly. */
export function dataDir(): string {
  return path.resolve(process.env.CONVLENS_SITE_DATA ?? '.convlens/site');
}

// Structural check of what the pages read; unknown extra fields pass through untouched.
const num = z.number();
const shape3 = z.tuple([num, num, num]);
const backend = z.object({ name: z.string(), adapter: z.string(), hardware: z.boolean(), versions: z.record(z.string(), z.string()) });
const provenance = z.object({
  technique: z.string(), techniqueVersion: num, params: z.unknown(), seed: num, backend,
  modelId: z.string(), datasetId: z.string(), versions: z.record(z.string(), z.string()),
  startedAt: z.string(), wallTimeMs: num, cacheKey: z.string(),
});
const entry = z.object({
  technique: z.string(), status: z.enum(['ok', 'error']), error: z.string().optional(), key: z.string(),
  assetBase: z.string(), files: z.array(z.string()), provenance, data: z.unknown().optional(),
});
const overviewData = z.object({
  split: z.enum(['train', 'test']), count: num, accuracy: num, perClassAccuracy: z.array(num), samples: z.array(z.array(z.string())),
});
const receptiveField = z.object({ size: z.tuple([num, num]), jump: z.tuple([num, num]), start: z.tuple([num, num]) });
const layer = z.object({
  name: z.string(), className: z.string(), outputShape: z.array(num.nullable()), params: num, inbound: z.array(z.string()),
  activation: z.string().optional(), receptiveField: receptiveField.optional(),
});
const byClass = z.object({ train: z.array(num), test: z.array(num) });
const report = z.object({
  id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'report ids become URL segments: letters, digits, . _ -'),
  title: z.string(), description: z.string().optional(), backend,
  model: z.object({ path: z.string(), id: z.string(), inputShape: z.array(num.nullable()), totalParams: num, layers: z.array(layer) }),
  dataset: z.object({
    name: z.string(), source: z.string(), id: z.string(), classNames: z.array(z.string()), imageShape: shape3,
    preprocessing: z.object({ size: z.tuple([num, num]), channels: num, normalize: z.record(z.string(), z.unknown()), fit: z.string() }),
    splitSizes: z.object({ train: num, test: num }), classCounts: byClass,
    skipped: z.array(z.object({ file: z.string(), reason: z.string() })),
  }),
  overview: entry.extend({ data: overviewData.optional() }).optional(),
  results: z.record(z.string(), entry),
});
const manifestSchema = z.object({
  generatedAt: z.string(), convlensVersion: z.string(),
  techniques: z.array(z.object({
    id: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'technique ids become URL segments and file names: lower-case letters, digits, -'),
    title: z.string(), family: z.enum(['dataset', 'weights', 'attribution', 'optimization']), version: num, summary: z.string(), paramsSchema: z.unknown(),
    internal: z.boolean().optional(),
  })),
  reports: z.array(report),
});

let cached: SiteManifest | undefined;

/** The validated manifest; throws a one-line, actionable error when it is missing or malformed. */
export function manifest(): SiteManifest {
  if (cached) return cached;
  const file = path.join(dataDir(), 'manifest.json');
  if (!fs.existsSync(file)) throw new Error(`no manifest at ${file}: run \`npx convlens run\` first`);
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file} is not valid JSON (${(e as Error).message}): run \`npx convlens run\` again`);
  }
  const parsed = manifestSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`${file}: ${issue.path.join('.') || '(root)'}: ${issue.message} (written by an older or newer convlens? run \`npx convlens run\` again)`);
  }
  // The zod schema mirrors SiteManifest structurally; the type comes from pipelines/manifest.ts.
  cached = raw as SiteManifest;
  return cached;
}

export const reports = (): ReportManifest[] => manifest().reports;
export const techniques = (): TechniqueInfo[] => manifest().techniques;
/**
 * Techniques with pages: internal ones (shared passes such as `features`) have none. The manifest
 * marks them with `internal: true`.
 */
export const visibleTechniques = (): TechniqueInfo[] => techniques().filter((t) => t.internal !== true);
export const techniqueIds = (): Set<string> => new Set(techniques().map((t) => t.id));
export const findReport = (id: string): ReportManifest | undefined => reports().find((r) => r.id === id);
export const findTechnique = (id: string): TechniqueInfo | undefined => techniques().find((t) => t.id === id);

/** The result of `technique` for `report`, or undefined when the report did not enable it. */
export function resultFor(report: ReportManifest, technique: string): ResultEntry | undefined {
  return report.results[technique];
}

/** The overview entry's data when the overview step succeeded. */
export function overviewOf(report: ReportManifest): (ResultEntry<OverviewData> & { data: OverviewData }) | undefined {
  const o = report.overview;
  return o && o.status === 'ok' && o.data ? (o as ResultEntry<OverviewData> & { data: OverviewData }) : undefined;
}

/** A site-internal URL under the configured base (`import.meta.env.BASE_URL`). */
export function href(p: string): string {
  const base = import.meta.env.BASE_URL ?? '/';
  return `${base.endsWith('/') ? base : `${base}/`}${p.replace(/^\/+/, '')}`;
}

/** Public URL of one of an entry's files. assetBase is site-relative ("/results/<key>/"), so the base goes in front. */
export function assetUrl(entry: ResultEntry, file: string): string {
  return href(`${entry.assetBase.replace(/\/?$/, '/')}${file.split('/').map(encodeURIComponent).join('/')}`);
}

/** Display name of class k of the report's dataset (`class k` where the dataset names none). */
export const className = (report: ReportManifest, k: number): string => report.dataset.classNames[k] ?? `class ${k}`;

const IMAGE_EXT = /\.(png|webp|jpe?g|gif|svg)$/i;
export const isImage = (file: string): boolean => IMAGE_EXT.test(file);

/** Pixel size of a result image, read from its header so <img> can reserve space; undefined if unknown. */
export function imageSize(entry: ResultEntry, file: string): { width: number; height: number } | undefined {
  const local = path.join(dataDir(), entry.assetBase.replace(/^\/+/, ''), file);
  let head: Buffer;
  try {
    const fd = fs.openSync(local, 'r');
    head = Buffer.alloc(64 * 1024);
    const n = fs.readSync(fd, head, 0, head.length, 0);
    fs.closeSync(fd);
    head = head.subarray(0, n);
  } catch {
    return undefined;
  }
  return headerSize(head);
}

/** Width and height from the first bytes of a PNG, GIF, WebP or JPEG file. */
export function headerSize(b: Buffer): { width: number; height: number } | undefined {
  if (b.length >= 24 && b.readUInt32BE(0) === 0x89504e47) return { width: b.readUInt32BE(16), height: b.readUInt32BE(20) };
  if (b.length >= 10 && b.toString('ascii', 0, 3) === 'GIF') return { width: b.readUInt16LE(6), height: b.readUInt16LE(8) };
  if (b.length >= 30 && b.toString('ascii', 0, 4) === 'RIFF' && b.toString('ascii', 8, 12) === 'WEBP') {
    const kind = b.toString('ascii', 12, 16);
    if (kind === 'VP8X') return { width: 1 + b.readUIntLE(24, 3), height: 1 + b.readUIntLE(27, 3) };
    if (kind === 'VP8 ') return { width: b.readUInt16LE(26) & 0x3fff, height: b.readUInt16LE(28) & 0x3fff };
    if (kind === 'VP8L') {
      const bits = b.readUInt32LE(21);
      return { width: 1 + (bits & 0x3fff), height: 1 + ((bits >> 14) & 0x3fff) };
    }
  }
  if (b.length >= 4 && b[0] === 0xff && b[1] === 0xd8) {
    // Walk the JPEG segments to the first start-of-frame marker.
    let i = 2;
    while (i + 9 < b.length && b[i] === 0xff) {
      const marker = b[i + 1];
      const len = b.readUInt16BE(i + 2);
      if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
        return { width: b.readUInt16BE(i + 7), height: b.readUInt16BE(i + 5) };
      }
      i += 2 + len;
    }
  }
  return undefined;
}
