/**
 * Pixels → PNG (sharp), float maps → pixels, tile grids and colour maps with legends.
 *
 * Colour scales are fixed and documented so that two figures with the same range can be
 * compared by eye:
 * - `viridis`, `inferno`: perceptually uniform, luminance rises monotonically from min to max.
 *   Lookup tables are interpolated linearly (in sRGB) between 10 published samples of
 *   matplotlib's maps (the values R's viridisLite returns for `viridis(10)` / `inferno(10)`).
 * - `gray`: black at min, white at max.
 * - `rdbu`: diverging, for signed maps. Always symmetric around zero: the range used is
 *   [-m, m] with m = max(|min|, |max|), so equal magnitudes get equal saturation. Negative is
 *   blue, zero is near-white, positive is red (ColorBrewer RdBu, 11 classes, reversed, i.e.
 *   matplotlib's `RdBu_r`: positive evidence shows red as in most attribution papers).
 * Values outside the range are clamped; NaN maps like min.
 */
import sharp from 'sharp';

export type Channels = 1 | 3 | 4;
export interface RasterImage {
  pixels: Uint8Array;
  width: number;
  height: number;
  channels: Channels;
}
export type ColormapName = 'viridis' | 'inferno' | 'gray' | 'rdbu';
export interface ValueRange { min: number; max: number }

function checkSize(len: number, width: number, height: number, channels: number, what: string) {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new RangeError(`${what}: bad size ${width}×${height}`);
  }
  if (len !== width * height * channels) {
    throw new RangeError(`${what}: ${len} values for ${width}×${height}×${channels}`);
  }
}

/** Lossless PNG of HWC uint8 pixels: 1 = grey, 3 = RGB, 4 = RGBA. */
export async function encodePng(
  pixels: Uint8Array | Uint8ClampedArray,
  width: number,
  height: number,
  channels: Channels,
): Promise<Buffer> {
  checkSize(pixels.length, width, height, channels, 'encodePng');
  const raw = Buffer.from(pixels.buffer, pixels.byteOffset, pixels.byteLength);
  let img = sharp(raw, { raw: { width, height, channels } });
  // Without this sharp writes a 1-channel raw input as an RGB PNG (3× the bytes).
  if (channels === 1) img = img.toColourspace('b-w');
  return img.png({ compressionLevel: 9 }).toBuffer();
}

/**
 * Maps a float image to uint8: `scale.min` → 0, `scale.max` → 255, linear, clamped, rounded.
 * NaN → 0. A degenerate scale (max ≤ min) gives 0 everywhere (nothing to show).
 */
export function toUint8Image(values: Float32Array, w: number, h: number, c: number, scale: ValueRange): Uint8Array {
  checkSize(values.length, w, h, c, 'toUint8Image');
  const out = new Uint8Array(values.length);
  const span = scale.max - scale.min;
  if (!(span > 0)) return out;
  for (let i = 0; i < values.length; i++) {
    const t = ((values[i] - scale.min) / span) * 255;
    out[i] = t > 0 ? (t < 255 ? Math.round(t) : 255) : 0; // NaN fails `t > 0` → 0
  }
  return out;
}

/**
 * Lays tiles out row by row in `columns` columns. Every cell is as large as the largest tile
 * (after upscaling); smaller tiles sit in the cell's top-left corner. Output channels: the
 * largest among the tiles (grey tiles are replicated into RGB; non-RGBA tiles get alpha 255).
 * Defaults: gap 2 px, white background, upscale 1 (upscaling is nearest neighbour so that
 * pixels stay crisp).
 */
export function imageGrid(
  tiles: { pixels: Uint8Array | Uint8ClampedArray; width: number; height: number; channels: Channels }[],
  columns: number,
  opts: { gap?: number; background?: number | [number, number, number]; upscale?: number } = {},
): RasterImage {
  if (tiles.length === 0) throw new RangeError('imageGrid: no tiles');
  const gap = opts.gap ?? 2;
  const up = opts.upscale ?? 1;
  if (!Number.isInteger(up) || up < 1) throw new RangeError(`imageGrid: upscale must be a positive integer, got ${up}`);
  const cols = Math.max(1, Math.min(columns, tiles.length));
  const rows = Math.ceil(tiles.length / cols);
  let cellW = 0;
  let cellH = 0;
  let channels: Channels = 1;
  for (const t of tiles) {
    checkSize(t.pixels.length, t.width, t.height, t.channels, 'imageGrid tile');
    cellW = Math.max(cellW, t.width * up);
    cellH = Math.max(cellH, t.height * up);
    if (t.channels > channels) channels = t.channels;
  }
  const width = cols * cellW + (cols - 1) * gap;
  const height = rows * cellH + (rows - 1) * gap;
  const pixels = new Uint8Array(width * height * channels);
  const bg = typeof opts.background === 'number' ? [opts.background, opts.background, opts.background] : (opts.background ?? [255, 255, 255]);
  const bgPixel = channels === 1 ? [bg[0]] : channels === 3 ? bg.slice(0, 3) : [...bg.slice(0, 3), 255];
  for (let i = 0; i < pixels.length; i += channels) for (let k = 0; k < channels; k++) pixels[i + k] = bgPixel[k];

  const px = new Array<number>(4);
  tiles.forEach((t, n) => {
    const x0 = (n % cols) * (cellW + gap);
    const y0 = Math.floor(n / cols) * (cellH + gap);
    for (let y = 0; y < t.height * up; y++) {
      const sy = Math.floor(y / up);
      for (let x = 0; x < t.width * up; x++) {
        const s = (sy * t.width + Math.floor(x / up)) * t.channels;
        if (t.channels === 1) px[0] = px[1] = px[2] = t.pixels[s];
        else for (let k = 0; k < 3; k++) px[k] = t.pixels[s + k];
        px[3] = t.channels === 4 ? t.pixels[s + 3] : 255;
        const d = ((y0 + y) * width + x0 + x) * channels;
        if (channels === 1) pixels[d] = px[0];
        else for (let k = 0; k < channels; k++) pixels[d + k] = px[k];
      }
    }
  });
  return { pixels, width, height, channels };
}

// ---------- colour maps ----------

const CONTROL_POINTS: Record<ColormapName, string[]> = {
  viridis: ['440154', '482878', '3e4a89', '31688e', '26828e', '1f9e89', '35b779', '6dcd59', 'b4de2c', 'fde725'],
  inferno: ['000004', '1b0c42', '4b0c6b', '781c6d', 'a52c60', 'cf4446', 'ed6925', 'fb9a06', 'f7d03c', 'fcffa4'],
  gray: ['000000', 'ffffff'],
  // ColorBrewer RdBu (11) reversed: low = blue, high = red.
  rdbu: ['053061', '2166ac', '4393c3', '92c5de', 'd1e5f0', 'f7f7f7', 'fddbc7', 'f4a582', 'd6604d', 'b2182b', '67001f'],
};

const LUT_SIZE = 257;
const luts = new Map<ColormapName, Uint8Array>();

/**
 * 257 RGB entries (odd, so that the middle of a diverging map is an exact entry) interpolated
 * linearly between evenly spaced control points.
 */
export function colormapTable(name: ColormapName): Uint8Array {
  const cached = luts.get(name);
  if (cached) return cached;
  const points = CONTROL_POINTS[name];
  if (!points) throw new RangeError(`unknown colour map '${name}'`);
  const rgb = points.map((hex) => [0, 2, 4].map((i) => parseInt(hex.slice(i, i + 2), 16)));
  const lut = new Uint8Array(LUT_SIZE * 3);
  for (let i = 0; i < LUT_SIZE; i++) {
    const pos = (i / (LUT_SIZE - 1)) * (rgb.length - 1);
    const j = Math.min(Math.floor(pos), rgb.length - 2);
    const f = pos - j;
    for (let k = 0; k < 3; k++) lut[i * 3 + k] = Math.round(rgb[j][k] * (1 - f) + rgb[j + 1][k] * f);
  }
  luts.set(name, lut);
  return lut;
}

/** The range actually used by a map: `rdbu` is made symmetric around zero. */
export function effectiveRange(name: ColormapName, range: ValueRange): ValueRange {
  if (name !== 'rdbu') return range;
  const m = Math.max(Math.abs(range.min), Math.abs(range.max));
  return { min: -m, max: m };
}

/** Maps each value to an RGB triple (output length = 3 × values.length). */
export function applyColormap(values: Float32Array, name: ColormapName, range: ValueRange): Uint8Array {
  const lut = colormapTable(name);
  const { min, max } = effectiveRange(name, range);
  const span = max - min;
  const out = new Uint8Array(values.length * 3);
  for (let i = 0; i < values.length; i++) {
    // A degenerate range shows everything at the middle of the scale (for rdbu: zero = white).
    let t = span > 0 ? (values[i] - min) / span : 0.5;
    t = t > 0 ? (t < 1 ? t : 1) : 0; // NaN → 0
    const j = Math.round(t * (LUT_SIZE - 1)) * 3;
    out[i * 3] = lut[j];
    out[i * 3 + 1] = lut[j + 1];
    out[i * 3 + 2] = lut[j + 2];
  }
  return out;
}

function formatTick(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e4 || a < 1e-3) return v.toExponential(1);
  return Number(v.toPrecision(3)).toString();
}

function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

/**
 * Horizontal legend: the gradient from min (left) to max (right) in the top rows, and below it
 * (when the image is at least 24 px high) the min and max values and the optional label, in
 * DejaVu/sans-serif text rendered by sharp's SVG support. For `rdbu` the ticks show the
 * symmetric range actually used.
 */
export async function colorbarPng(
  name: ColormapName,
  range: ValueRange,
  opts: { width: number; height: number; label?: string },
): Promise<Buffer> {
  const { width, height } = opts;
  const textRow = height >= 24 ? 14 : 0;
  const barH = height - textRow;
  const ramp = new Float32Array(width);
  const eff = effectiveRange(name, range);
  for (let x = 0; x < width; x++) ramp[x] = eff.min + ((eff.max - eff.min) * x) / Math.max(width - 1, 1);
  const row = applyColormap(ramp, name, eff);
  const pixels = new Uint8Array(width * height * 4).fill(255); // white, opaque
  for (let y = 0; y < barH; y++) {
    for (let x = 0; x < width; x++) {
      const d = (y * width + x) * 4;
      pixels[d] = row[x * 3];
      pixels[d + 1] = row[x * 3 + 1];
      pixels[d + 2] = row[x * 3 + 2];
    }
  }
  let img = sharp(Buffer.from(pixels.buffer), { raw: { width, height, channels: 4 } });
  if (textRow) {
    const y = height - 3;
    const text = (x: number, anchor: string, s: string) =>
      `<text x="${x}" y="${y}" text-anchor="${anchor}" font-family="DejaVu Sans, sans-serif" font-size="11" fill="#222">${escapeXml(s)}</text>`;
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${textRow}" viewBox="0 ${barH} ${width} ${textRow}">` +
      text(1, 'start', formatTick(eff.min)) + text(width - 1, 'end', formatTick(eff.max)) +
      (opts.label ? text(width / 2, 'middle', opts.label) : '') + '</svg>';
    img = img.composite([{ input: Buffer.from(svg), left: 0, top: barH }]);
  }
  return img.png({ compressionLevel: 9 }).toBuffer();
}

/** Box-average downscale of an HWC uint8 image by an integer factor (f = 1 returns the input). */
export function boxDownscale(px: Uint8Array, w: number, h: number, c: number, f: number): { pixels: Uint8Array; width: number; height: number } {
  if (f === 1) return { pixels: px, width: w, height: h };
  const ow = Math.max(1, Math.floor(w / f));
  const oh = Math.max(1, Math.floor(h / f));
  const out = new Uint8Array(ow * oh * c);
  for (let y = 0; y < oh; y++) for (let x = 0; x < ow; x++) for (let k = 0; k < c; k++) {
    let s = 0, m = 0;
    for (let dy = 0; dy < f && y * f + dy < h; dy++) for (let dx = 0; dx < f && x * f + dx < w; dx++) {
      s += px[((y * f + dy) * w + x * f + dx) * c + k];
      m++;
    }
    out[(y * ow + x) * c + k] = Math.round(s / m);
  }
  return { pixels: out, width: ow, height: oh };
}
