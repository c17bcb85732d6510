/**
 * Thumbnails of test images for the interactive scatter tooltips, from files the results already
 * publish: the input picture an attribution or activation result saved for an image, else its
 * thumbnail from the internal `thumbnails` result (one PNG per test image), else its cell in the
 * t-SNE image-grid sprite (cropped at build time by the thumbs endpoint). Points none of these
 * cover get no thumbnail.
 */
import path from 'node:path';
import type { ScatterPoint } from '../charts/specs';
import { assetUrl, dataDir, href, type ReportManifest, type ResultEntry } from '../site-data';
import { imageSlug, testImages } from './test-images';

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/** Where a result file lies on disk at build time. */
export const localFile = (entry: ResultEntry, file: string): string => path.join(dataDir(), entry.assetBase.replace(/^\/+/, ''), file);

export interface SpriteCell {
  entry: ResultEntry;
  file: string;
  left: number;
  top: number;
  width: number;
  height: number;
}

/**
 * test index → its cell in the t-SNE grid sprite. Cells are `cellWidth` × `cellHeight` with `gap`
 * pixels between them (none outside), row-major, `cells[c]` the image in cell c or -1 for empty.
 */
export function spriteCells(report: ReportManifest): Map<number, SpriteCell> {
  const out = new Map<number, SpriteCell>();
  const entry = report.results.tsne;
  if (entry?.status !== 'ok' || !isObj(entry.data) || !isObj(entry.data.grid)) return out;
  const g = entry.data.grid;
  const { cols, cellWidth: w, cellHeight: h, gap, file, cells } = g;
  if (!isNum(cols) || !isNum(w) || !isNum(h) || !isNum(gap) || typeof file !== 'string' || !entry.files.includes(file) || !Array.isArray(cells)) return out;
  cells.forEach((index, c) => {
    if (!isNum(index) || index < 0 || out.has(index)) return;
    out.set(index, { entry, file, left: (c % cols) * (w + gap), top: Math.floor(c / cols) * (h + gap), width: w, height: h });
  });
  return out;
}

/** URL of the thumbnail the thumbs endpoint crops out of the sprite. */
export const spriteThumbUrl = (report: ReportManifest, index: number): string => href(`reports/${report.id}/thumbs/${imageSlug(index)}.png`);

/** test index → URL of its thumbnail, for every test image with a published picture. */
export function thumbnails(report: ReportManifest): Map<number, string> {
  const out = new Map<number, string>();
  for (const img of testImages(report)) {
    const m = img.mentions.find((x) => x.input);
    if (m?.input) out.set(img.index, assetUrl(m.entry, m.input));
  }
  const own = ownThumbnails(report);
  if (own) for (let i = 0; i < own.count; i++) if (!out.has(i)) out.set(i, assetUrl(own.entry, own.pattern.replace('{index}', String(i))));
  for (const index of spriteCells(report).keys()) if (!out.has(index)) out.set(index, spriteThumbUrl(report, index));
  return out;
}

/** The `thumbnails` result: test images 0 … count − 1 each have a PNG of their own. */
function ownThumbnails(report: ReportManifest): { entry: ResultEntry; count: number; pattern: string } | undefined {
  const entry = report.results.thumbnails;
  if (entry?.status !== 'ok' || !isObj(entry.data) || !isNum(entry.data.count) || typeof entry.data.pattern !== 'string') return undefined;
  return { entry, count: entry.data.count, pattern: entry.data.pattern };
}

/** Test indices whose thumbnail only the sprite holds: the thumbs endpoint writes these. */
export function spriteOnly(report: ReportManifest): Map<number, SpriteCell> {
  const withInput = new Set(testImages(report).filter((i) => i.mentions.some((m) => m.input)).map((i) => i.index));
  const own = ownThumbnails(report)?.count ?? 0;
  return new Map([...spriteCells(report)].filter(([i]) => !withInput.has(i) && i >= own));
}

export interface Embedding {
  x: readonly number[];
  y: readonly number[];
  labels: readonly number[];
  predicted?: readonly number[];
}

export const EMBEDDINGS = ['pca', 'tsne', 'umap'] as const;

/** The 2-D points of a PCA (`points`), t-SNE or UMAP (`x`, `y`, `labels`) result; undefined if malformed. */
export function embedding(technique: string, entry: ResultEntry | undefined): Embedding | undefined {
  if (entry?.status !== 'ok' || !isObj(entry.data)) return undefined;
  const d = technique === 'pca' && isObj(entry.data.points) ? entry.data.points : entry.data;
  const x = d.x, y = d.y, labels = d.labels ?? d.label, predicted = d.predicted;
  if (!Array.isArray(x) || !Array.isArray(y) || !Array.isArray(labels) || x.length !== y.length || x.length !== labels.length) return undefined;
  return { x, y, labels, predicted: Array.isArray(predicted) && predicted.length === x.length ? predicted : undefined };
}

/** Every point of an embedding with its test index (= position), its page link and thumbnail where they exist. */
export function scatterPoints(report: ReportManifest, technique: string): ScatterPoint[] {
  const e = embedding(technique, report.results[technique]);
  if (!e) return [];
  const pages = new Set(testImages(report).map((i) => i.index));
  const thumbs = thumbnails(report);
  return e.x.map((x, i) => ({
    x, y: e.y[i], label: e.labels[i], predicted: e.predicted?.[i], index: i,
    href: pages.has(i) ? href(`reports/${report.id}/images/${imageSlug(i)}/`) : undefined,
    thumb: thumbs.get(i),
  }));
}
