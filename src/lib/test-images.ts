/**
 * Which results mention which test images, read generically from result data so a new technique
 * shows up on the per-image pages without the site knowing its data type: any top-level array
 * of objects with an integer `index` and `label` is a list of per-image entries (attribution `images`,
 * activations `images`, kNN `queries`), and the image files named inside an entry belong to it.
 */
import { isImage, type ReportManifest, type ResultEntry } from '../site-data';

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const isIndex = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0;

export interface ImageMention {
  technique: string;
  entry: ResultEntry;
  /** the image as the model saw it, when the entry names one (`input: "x.png"` or `input: { file }`) */
  input?: string;
  /** every other image file of the entry, in the order found */
  files: string[];
  label?: number;
  predicted?: number;
}

export interface TestImage {
  index: number;
  label?: number;
  predicted?: number;
  confidence?: number;
  mentions: ImageMention[];
}

/** File names (known to the entry) found anywhere in a value, depth-limited against odd data. */
function filesIn(v: unknown, known: Set<string>, out: string[], depth = 0): void {
  if (depth > 6) return;
  if (typeof v === 'string') {
    if (known.has(v) && isImage(v) && !out.includes(v)) out.push(v);
  } else if (Array.isArray(v)) {
    for (const x of v) filesIn(x, known, out, depth + 1);
  } else if (isObj(v)) {
    for (const x of Object.values(v)) filesIn(x, known, out, depth + 1);
  }
}

function inputFile(item: Obj, known: Set<string>): string | undefined {
  const v = item.input;
  const file = typeof v === 'string' ? v : isObj(v) && typeof v.file === 'string' ? v.file : undefined;
  return file && known.has(file) && isImage(file) ? file : undefined;
}

/** Per-image entries of one result: every top-level array whose elements all carry an index. */
export function mentionsIn(technique: string, entry: ResultEntry): { index: number; mention: ImageMention }[] {
  if (entry.status !== 'ok' || !isObj(entry.data)) return [];
  const known = new Set(entry.files);
  const out: { index: number; mention: ImageMention }[] = [];
  for (const value of Object.values(entry.data)) {
    // An image entry carries its true label too: `index` alone may be a class (class-model's `classes`).
    if (!Array.isArray(value) || value.length === 0 || !value.every((x) => isObj(x) && isIndex(x.index) && isIndex(x.label))) continue;
    for (const item of value as Obj[]) {
      const input = inputFile(item, known);
      const files: string[] = [];
      filesIn(item, known, files);
      out.push({
        index: item.index as number,
        mention: {
          technique, entry, input, files: files.filter((f) => f !== input),
          label: isIndex(item.label) ? item.label : undefined,
          predicted: isIndex(item.predicted) ? item.predicted : undefined,
        },
      });
    }
  }
  return out;
}

interface SplitLike { labels?: unknown; predicted?: unknown; confidence?: unknown }

/** labels / predicted / confidence of the test split from the internal `features` result, if any. */
function testPredictions(report: ReportManifest): SplitLike | undefined {
  const f = report.results.features;
  if (f?.status !== 'ok' || !isObj(f.data) || !isObj(f.data.splits) || !isObj(f.data.splits.test)) return undefined;
  return f.data.splits.test as SplitLike;
}
const at = (arr: unknown, i: number): number | undefined => (Array.isArray(arr) && typeof arr[i] === 'number' ? arr[i] : undefined);

/** Every test image some result shows, ascending by index, with what is known about it. */
export function testImages(report: ReportManifest): TestImage[] {
  const byIndex = new Map<number, TestImage>();
  for (const [technique, entry] of Object.entries(report.results)) {
    for (const { index, mention } of mentionsIn(technique, entry)) {
      let img = byIndex.get(index);
      if (!img) byIndex.set(index, (img = { index, mentions: [] }));
      img.mentions.push(mention);
    }
  }
  const preds = testPredictions(report);
  for (const img of byIndex.values()) {
    img.label = at(preds?.labels, img.index) ?? img.mentions.find((m) => m.label !== undefined)?.label;
    img.predicted = at(preds?.predicted, img.index) ?? img.mentions.find((m) => m.predicted !== undefined)?.predicted;
    img.confidence = at(preds?.confidence, img.index);
  }
  return [...byIndex.values()].sort((a, b) => a.index - b.index);
}

/** Test-image indices per confusion cell, when a confusion-matrix result with `cells` exists. */
export function confusionCells(report: ReportManifest): number[][][] | undefined {
  const c = report.results['confusion-matrix'];
  if (c?.status !== 'ok' || !isObj(c.data) || !Array.isArray(c.data.cells)) return undefined;
  return c.data.cells as number[][][];
}

/** Confusion counts: from the confusion-matrix result, else recomputed from the features predictions. */
export function confusionCounts(report: ReportManifest): number[][] | undefined {
  const n = report.dataset.classNames.length;
  const c = report.results['confusion-matrix'];
  if (c?.status === 'ok' && isObj(c.data) && Array.isArray(c.data.counts)) return c.data.counts as number[][];
  const preds = testPredictions(report);
  if (!preds || !Array.isArray(preds.labels) || !Array.isArray(preds.predicted)) return undefined;
  const counts = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  preds.labels.forEach((t, i) => {
    const p = at(preds.predicted, i);
    if (isIndex(t) && p !== undefined && t < n && p < n) counts[t][p]++;
  });
  return counts;
}

/** URL segment of a test image's page. */
export const imageSlug = (index: number): string => `test-${index}`;
