/**
 * Vega-lite specs for the site's charts. Pure functions of plain data: no DOM, no vega import,
 * so they are unit-tested in Node and the same object is rendered to SVG at build time and
 * handed to vega-embed in the browser.
 */
import type { TopLevelSpec } from 'vega-lite';

/** Categorical palette readable on the white chart panel; hues by the golden angle beyond it. */
export const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#8c8c8c'];
export const classColour = (k: number): string => PALETTE[k] ?? `hsl(${Math.round((k * 137.508) % 360)}, 65%, 45%)`;

/** Shared look: white panel (legible inside dark pages too), system font, no actions. */
const CONFIG = {
  background: 'white',
  font: 'system-ui, sans-serif',
  view: { stroke: '#d9dcdf' },
  axis: { labelColor: '#1d1f21', titleColor: '#1d1f21', gridColor: '#eceef0' },
  legend: { labelColor: '#1d1f21', titleColor: '#1d1f21', labelLimit: 220 },
} as const;

const SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';

export interface ScatterPoint {
  x: number;
  y: number;
  /** true class index into classNames */
  label: number;
  /** predicted class index, shown in the tooltip */
  predicted?: number;
  /** test-split index, shown in the tooltip as the image id */
  index?: number;
  /** optional URL the point links to (e.g. the image's page) */
  href?: string;
  /** optional thumbnail URL, shown in the browser tooltip */
  thumb?: string;
}

export interface ChartSize {
  width?: number;
  height?: number;
}

/** One data row of the scatter chart: short keys because an embedding can have 10k rows. */
export interface ScatterRow {
  x: number;
  y: number;
  /** true class */
  l: number;
  /** predicted class, -1 when unknown */
  p: number;
  /** test index, -1 when unknown */
  i: number;
  /** link, '' when none */
  h: string;
  /** thumbnail URL, '' when none ('' keeps vega-tooltip from drawing an <img>) */
  t: string;
}

/** Coordinates to 5 significant digits: far below a pixel, and a third of the JSON. */
const round5 = (v: number): number => Number(v.toPrecision(5));

/** The rows of scatterSpec's data, inline or published as a JSON file (`opts.dataUrl`). */
export function scatterRows(points: readonly ScatterPoint[]): ScatterRow[] {
  return points.map((q) => ({ x: round5(q.x), y: round5(q.y), l: q.label, p: q.predicted ?? -1, i: q.index ?? -1, h: q.href ?? '', t: q.thumb ?? '' }));
}

/**
 * A 2-D embedding (PCA, t-SNE, UMAP) coloured by true class. In the browser: tooltips with class,
 * predicted class, image id and (vega-tooltip draws a field titled "image" as a picture) the
 * thumbnail; wheel zoom and drag pan (an interval selection bound to the scales); a click on a
 * point with a page opens it. The build-time SVG is the same view at rest. With `dataUrl` the
 * rows (scatterRows) are loaded from that URL instead of sitting in the spec, and `points` only
 * decide which tooltip entries and links exist.
 */
export function scatterSpec(
  points: readonly ScatterPoint[],
  classNames: readonly string[],
  opts: ChartSize & { xTitle?: string; yTitle?: string; dataUrl?: string; axes?: boolean } = {},
): TopLevelSpec {
  // Class names are the colour domain, in class order, so colours match every other page.
  const domain = classNames.map((n, k) => n || `class ${k}`);
  const hasHref = points.some((p) => p.href);
  const hasPredicted = points.some((p) => p.predicted !== undefined);
  const hasIndex = points.some((p) => p.index !== undefined);
  const names = JSON.stringify(domain);
  const axis = opts.axes === false ? { axis: { labels: false, ticks: false, title: null, grid: false } } : {};
  return {
    $schema: SCHEMA,
    width: opts.width ?? 560,
    height: opts.height ?? 420,
    config: CONFIG,
    data: opts.dataUrl ? { url: opts.dataUrl, format: { type: 'json' } } : { values: scatterRows(points) },
    transform: [
      // Names by lookup in a JSON array literal: every quote escaped, never markup.
      { calculate: `${names}[datum.l] || 'class ' + datum.l`, as: 'class' },
      { calculate: `datum.p < 0 ? 'unknown' : ${names}[datum.p] || 'class ' + datum.p`, as: 'predicted' },
      { calculate: `datum.i < 0 ? 'unknown' : 'test #' + datum.i`, as: 'image id' },
    ],
    params: [{ name: 'zoom', select: 'interval', bind: 'scales' }],
    // Misclassified points get a dark ring, as in the static picture.
    mark: { type: 'circle', size: points.length > 3000 ? 10 : 24, opacity: 0.8, stroke: '#1d1f21', ...(hasHref ? { cursor: 'pointer' } : {}) },
    encoding: {
      x: { field: 'x', type: 'quantitative', title: opts.xTitle ?? 'x', scale: { zero: false }, ...axis },
      y: { field: 'y', type: 'quantitative', title: opts.yTitle ?? 'y', scale: { zero: false }, ...axis },
      color: { field: 'class', type: 'nominal', title: 'true class', scale: { domain, range: domain.map((_, k) => classColour(k)) } },
      strokeWidth: { condition: { test: 'datum.p >= 0 && datum.p !== datum.l', value: 1.2 }, value: 0 },
      tooltip: [
        { field: 'class', type: 'nominal', title: 'class' },
        ...(hasPredicted ? [{ field: 'predicted', type: 'nominal' as const, title: 'predicted' }] : []),
        ...(hasIndex ? [{ field: 'image id', type: 'nominal' as const, title: 'image id' }] : []),
        ...(points.some((p) => p.thumb) ? [{ field: 't', type: 'nominal' as const, title: 'image' }] : []),
      ],
      // Points without a page get no link (a plain field would write the text "" as the URL).
      ...(hasHref ? { href: { condition: { test: "datum.h !== ''", field: 'h', type: 'nominal' }, value: '' } } : {}),
    },
  };
}

export interface Bar {
  category: string;
  value: number;
}

/** Horizontal bars, one per category in the given order (e.g. per-class accuracy). */
export function barSpec(bars: readonly Bar[], opts: ChartSize & { valueTitle?: string; percent?: boolean; max?: number } = {}): TopLevelSpec {
  // Categories can repeat (two classes with one name); a position index keeps them apart.
  const values = bars.map((b, i) => ({ i, category: b.category, value: b.value }));
  const format = opts.percent ? '.1%' : ',.3~g';
  return {
    $schema: SCHEMA,
    width: opts.width ?? 420,
    height: opts.height ?? Math.max(60, 22 * bars.length),
    config: CONFIG,
    data: { values },
    mark: { type: 'bar', color: PALETTE[0] },
    encoding: {
      y: { field: 'i', type: 'ordinal', title: null, axis: { labelExpr: labelLookup(values.map((v) => v.category)) } },
      x: {
        field: 'value', type: 'quantitative', title: opts.valueTitle ?? 'value',
        axis: { format },
        ...(opts.max !== undefined ? { scale: { domain: [0, opts.max] } } : {}),
      },
      tooltip: [
        { field: 'category', type: 'nominal', title: 'class' },
        { field: 'value', type: 'quantitative', title: opts.valueTitle ?? 'value', format },
      ],
    },
  };
}

export interface Series {
  name: string;
  values: readonly number[];
}

/** Lines over a shared x (step index or fraction), e.g. training loss or deletion / insertion curves. */
export function lineSpec(series: readonly Series[], opts: ChartSize & { x?: readonly number[]; xTitle?: string; yTitle?: string } = {}): TopLevelSpec {
  const values = series.flatMap((s) => s.values.map((v, i) => ({ series: s.name, x: opts.x?.[i] ?? i, y: v })));
  return {
    $schema: SCHEMA,
    width: opts.width ?? 420,
    height: opts.height ?? 240,
    config: CONFIG,
    data: { values },
    mark: { type: 'line', point: series.every((s) => s.values.length <= 40) },
    encoding: {
      x: { field: 'x', type: 'quantitative', title: opts.xTitle ?? 'step' },
      y: { field: 'y', type: 'quantitative', title: opts.yTitle ?? 'value' },
      color: { field: 'series', type: 'nominal', title: null, scale: { domain: series.map((s) => s.name), range: series.map((_, k) => classColour(k)) } },
      tooltip: [
        { field: 'series', type: 'nominal' },
        { field: 'x', type: 'quantitative', title: opts.xTitle ?? 'step', format: ',.3~g' },
        { field: 'y', type: 'quantitative', title: opts.yTitle ?? 'value', format: ',.4~g' },
      ],
    },
  };
}

/**
 * Confusion matrix as a heat map: rows true class, columns predicted, colour the row rate,
 * the count written in each cell. `cellHref(t, p)` lets a cell link to its list of images.
 */
export function heatmapSpec(counts: readonly (readonly number[])[], classNames: readonly string[], opts: ChartSize & { cellHref?: (t: number, p: number) => string } = {}): TopLevelSpec {
  const n = counts.length;
  const values = counts.flatMap((row, t) => {
    const total = row.reduce((a, b) => a + b, 0);
    return row.map((count, p) => ({
      t, p, count, rate: total > 0 ? count / total : 0,
      trueClass: classNames[t] ?? `class ${t}`, predictedClass: classNames[p] ?? `class ${p}`,
      href: opts.cellHref && count > 0 ? opts.cellHref(t, p) : null,
    }));
  });
  const names = Array.from({ length: n }, (_, k) => classNames[k] ?? `class ${k}`);
  const side = Math.min(520, Math.max(120, 36 * n));
  const axis = { labelExpr: labelLookup(names), labelLimit: 140 };
  const domain = names.map((_, k) => k);
  return {
    $schema: SCHEMA,
    width: opts.width ?? side,
    height: opts.height ?? side,
    config: CONFIG,
    data: { values },
    encoding: {
      x: { field: 'p', type: 'ordinal', title: 'predicted class', axis: { ...axis, labelAngle: -40 }, scale: { domain } },
      y: { field: 't', type: 'ordinal', title: 'true class', axis, scale: { domain } },
    },
    layer: [
      {
        mark: { type: 'rect' },
        encoding: {
          color: { field: 'rate', type: 'quantitative', title: 'share of row', scale: { scheme: 'blues', domain: [0, 1] }, legend: { format: '.0%' } },
          tooltip: [
            { field: 'trueClass', type: 'nominal', title: 'true' },
            { field: 'predictedClass', type: 'nominal', title: 'predicted' },
            { field: 'count', type: 'quantitative', title: 'images' },
            { field: 'rate', type: 'quantitative', title: 'share of row', format: '.1%' },
          ],
          // Empty cells get no link (a plain field would write the text "null" as the URL).
          ...(opts.cellHref ? { href: { condition: { test: 'isValid(datum.href)', field: 'href', type: 'nominal' }, value: '' } } : {}),
        },
      },
      {
        mark: { type: 'text', fontSize: n > 12 ? 8 : 11 },
        encoding: {
          text: { field: 'count', type: 'quantitative' },
          color: { condition: { test: 'datum.rate > 0.55', value: 'white' }, value: '#1d1f21' },
        },
      },
    ],
  };
}

/**
 * A vega expression mapping an ordinal index label to its display text. The texts go in as a
 * JSON array literal, which is valid vega expression syntax and escapes every quote.
 */
function labelLookup(texts: readonly string[]): string {
  return `${JSON.stringify(texts)}[datum.value] || ''`;
}
