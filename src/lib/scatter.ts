/**
 * The inline-SVG scatter plots of the embedding results (PCA, t-SNE, UMAP), computed at build
 * time: class colours, one scale for both axes, and one <path> per class in which every dot is a
 * zero-length segment drawn with a round cap (far smaller HTML than 10k <circle>s).
 */
import { PALETTE } from '../charts/specs';

/** Colour of class k on light and dark pages; hues by the golden angle beyond the palette. */
export const scatterColour = (k: number): string => PALETTE[k] ?? `hsl(${Math.round((k * 137.508) % 360)} 65% 50%)`;

/** Dot diameter: smaller when there are many points. */
export const dotSize = (count: number): number => (count > 3000 ? 2.5 : 4);

export interface Bounds { x0: number; x1: number; y0: number; y1: number }

/** The smallest box around the points (x[i], y[i]). */
export function bounds(x: readonly number[], y: readonly number[]): Bounds {
  let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
  for (let i = 0; i < x.length; i++) {
    x0 = Math.min(x0, x[i]); x1 = Math.max(x1, x[i]);
    y0 = Math.min(y0, y[i]); y1 = Math.max(y1, y[i]);
  }
  return { x0, x1, y0, y1 };
}

export interface ScatterLayout {
  width: number;
  height: number;
  /** data → SVG coordinates (SVG y grows downwards). */
  sx: (v: number) => number;
  sy: (v: number) => number;
}

/**
 * One scale for both axes, so distances compare honestly; the data fit in `size` × `size` less
 * `margin` on each side. By default the SVG hugs the data; with `fullWidth` it is `size` wide with
 * the data centred, and at least `minHeight` tall.
 */
export function equalAxes(b: Bounds, size: number, margin: number, opts: { fullWidth?: boolean; minHeight?: number } = {}): ScatterLayout {
  const spanX = Math.max(b.x1 - b.x0, 1e-9);
  const spanY = Math.max(b.y1 - b.y0, 1e-9);
  const scale = Math.min((size - 2 * margin) / spanX, (size - 2 * margin) / spanY);
  const width = opts.fullWidth ? size : Math.round(spanX * scale + 2 * margin);
  const height = Math.max(opts.minHeight ?? 0, Math.round(spanY * scale + 2 * margin));
  const ox = opts.fullWidth ? (width - spanX * scale) / 2 : margin;
  const oy = opts.fullWidth ? (height - spanY * scale) / 2 : margin;
  return { width, height, sx: (v) => ox + (v - b.x0) * scale, sy: (v) => height - oy - (v - b.y0) * scale };
}

export interface ClassDots {
  /** one path per class, by class index. */
  paths: { k: number; d: string }[];
  /** the misclassified points (where `predicted` was given), for a ring under the dots. */
  wrong: string;
  wrongCount: number;
}

/** The dots of every point, grouped by `labels`; points whose `predicted` differs also go into `wrong`. */
export function classDots(x: readonly number[], y: readonly number[], labels: readonly number[], layout: ScatterLayout, predicted?: readonly number[]): ClassDots {
  const parts = new Map<number, string[]>();
  const wrong: string[] = [];
  for (let i = 0; i < x.length; i++) {
    const seg = `M${layout.sx(x[i]).toFixed(1)} ${layout.sy(y[i]).toFixed(1)}h0`;
    if (!parts.has(labels[i])) parts.set(labels[i], []);
    parts.get(labels[i])!.push(seg);
    if (predicted && predicted[i] !== labels[i]) wrong.push(seg);
  }
  const paths = [...parts.entries()].sort((a, b) => a[0] - b[0]).map(([k, segs]) => ({ k, d: segs.join('') }));
  return { paths, wrong: wrong.join(''), wrongCount: wrong.length };
}
