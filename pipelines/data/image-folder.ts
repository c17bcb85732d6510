/**
 * A class-per-folder image dataset (the Keras / torchvision convention), decoded and resized
 * with sharp.
 *
 * Layout: `root/<class>/…` (sub-folders are walked recursively; hidden files and folders are
 * ignored), split either by folders (`root/train/<class>/…` + `root/test/<class>/…`, detected
 * automatically when both exist) or by a seeded hash of each file's path (`testFraction`). With
 * neither, every image is in the `test` split (an evaluation set) and `train` is empty.
 *
 * Labels: class folders sorted by code point (like Python's `sorted`), or the order of
 * `classNames` when the config gives it (it must name exactly the folders).
 *
 * Decoding (the same for every format): first frame of a GIF; alpha flattened onto BLACK
 * (transparent background → 0, as in MNIST-like data, independent of the hidden colour under
 * transparent pixels); EXIF orientation is NOT applied (Keras' `load_img` and torchvision
 * don't either, so the model sees what it was trained on); resized by sharp (lanczos3) with
 * `fit` (`contain` pads with black); converted to 8-bit sRGB; grey = ITU-R 601 luma on the
 * sRGB values, `(19595 R + 38470 G + 7471 B + 32768) >> 16`, the formula of PIL's
 * `convert('L')` that Keras and torchvision use.
 *
 * Opening scans every file once: it is read whole (hashed with sha256 for the dataset id) and
 * validated with sharp's metadata plus a cheap end-of-file check per format (PNG IEND, JPEG
 * EOI, GIF trailer, WebP RIFF length); only files failing the cheap check are fully decoded to
 * decide. Cost: one read of every byte, e.g. 100k 100 kB JPEGs ≈ 10 GB read + sha256 (~1 min
 * on a laptop SSD); results are cached in memory per (path, size, mtime) for this process.
 * A file corrupt in a way the scan cannot see fails later with an error naming it.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { ConvlensError } from '../errors';
import type { Batch, Dataset, Preprocessing, SkippedFile, Split } from '../types';

export type ImageFolderSplit = { train?: string; test: string } | { testFraction: number; seed: number };

export interface ImageFolderOptions {
  /** dataset root folder (absolute, or relative to the process's cwd). */
  root: string;
  /** the report config, named in every error. */
  configFile: string;
  preprocessing: Preprocessing;
  splits?: ImageFolderSplit;
  /** expected class folder names in label order. */
  classNames?: string[];
  /** where the skipped-files warning goes (default: console.warn). */
  log?: (line: string) => void;
  /** config field that holds the root, for errors (default `dataset.path`). */
  field?: string;
}

const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.webp', '.gif']);
/** Image formats we do not read: listed as skipped so the user knows, unlike random files. */
const OTHER_IMAGE_EXTENSIONS = new Set([
  '.bmp', '.tif', '.tiff', '.avif', '.heic', '.heif', '.svg', '.ppm', '.pgm', '.pbm', '.pnm', '.jxl', '.jp2',
  '.ico', '.psd', '.exr', '.hdr', '.dng', '.cr2', '.nef', '.arw',
]);
const SHARP_FORMATS = new Set(['jpeg', 'png', 'webp', 'gif']);
const SCAN_CONCURRENCY = 8;
const DECODE_CONCURRENCY = 4;

/** Counts decoded files; lets tests check that iteration is lazy and bounded. */
export const decodeStats = { files: 0 };

interface FileInfo { hash: string; problem?: string }
/** Per-file scan results for this process, keyed by absolute path + size + mtime. */
const scanCache = new Map<string, FileInfo>();

interface Entry { abs: string; rel: string; label: number }

export async function openImageFolder(opts: ImageFolderOptions): Promise<Dataset> {
  const { configFile, preprocessing: prep } = opts;
  const field = opts.field ?? 'dataset.path';
  const root = path.resolve(opts.root);
  const shown = displayPath(root);
  const err = (problem: string, fix: string, f = field) => new ConvlensError(problem, { file: configFile, field: f, fix });

  const rootStat = statOrNull(root);
  if (!rootStat) throw err(`dataset folder '${shown}' does not exist`, 'point dataset.path at a folder holding one sub-folder of images per class (relative paths start at the config\'s folder)');
  if (!rootStat.isDirectory()) throw err(`dataset path '${shown}' is not a folder`, 'point dataset.path at a folder holding one sub-folder of images per class');

  // ---- which trees make up which split ----
  let trees: { split: Split | 'hash'; dir: string }[];
  const splits = opts.splits;
  if (splits && 'testFraction' in splits) {
    if (!(splits.testFraction > 0 && splits.testFraction < 1)) {
      throw err(`testFraction ${splits.testFraction} is not between 0 and 1`, 'set dataset.split.testFraction to e.g. 0.2', 'dataset.split.testFraction');
    }
    trees = [{ split: 'hash', dir: root }];
  } else if (splits) {
    trees = [{ split: 'test', dir: path.resolve(root, splits.test) }];
    if (splits.train) trees.unshift({ split: 'train', dir: path.resolve(root, splits.train) });
    for (const t of trees) {
      if (!statOrNull(t.dir)?.isDirectory()) {
        throw err(`split folder '${displayPath(t.dir)}' does not exist`, `create it with one sub-folder per class, or fix dataset.split.${t.split}`, `dataset.split.${t.split}`);
      }
    }
  } else if (isDir(path.join(root, 'train')) && isDir(path.join(root, 'test'))) {
    trees = [{ split: 'train', dir: path.join(root, 'train') }, { split: 'test', dir: path.join(root, 'test') }];
  } else {
    trees = [{ split: 'test', dir: root }];
  }

  // ---- class folders ----
  const classesPerTree = trees.map((t) => {
    const names = listEntries(t.dir).filter((e) => e.isDir).map((e) => e.name).sort(byCodePoint);
    if (names.length === 0) {
      const loose = listEntries(t.dir).some((e) => !e.isDir && IMAGE_EXTENSIONS.has(path.extname(e.name).toLowerCase()));
      throw err(
        `no class folders in '${displayPath(t.dir)}'${loose ? ' (it holds images directly)' : ''}`,
        `put each class's images in its own sub-folder: ${displayPath(t.dir)}/<class name>/<image>.png`,
      );
    }
    return names;
  });
  const folderNames = classesPerTree[classesPerTree.length - 1];
  for (let i = 0; i < trees.length - 1; i++) {
    const a = classesPerTree[i];
    const onlyHere = a.filter((n) => !folderNames.includes(n));
    const missing = folderNames.filter((n) => !a.includes(n));
    if (onlyHere.length || missing.length) {
      throw err(
        `the train and test folders have different classes (${[...onlyHere.map((n) => `'${n}' only in train`), ...missing.map((n) => `'${n}' only in test`)].join(', ')})`,
        'give both split folders the same class sub-folders',
      );
    }
  }
  let classNames = folderNames;
  if (opts.classNames) {
    const missing = opts.classNames.filter((n) => !folderNames.includes(n));
    const extra = folderNames.filter((n) => !opts.classNames!.includes(n));
    const dupes = opts.classNames.filter((n, i) => opts.classNames!.indexOf(n) !== i);
    if (missing.length || extra.length || dupes.length) {
      const parts = [
        ...missing.map((n) => `'${n}' has no folder`),
        ...extra.map((n) => `folder '${n}' is not listed`),
        ...dupes.map((n) => `'${n}' is listed twice`),
      ];
      throw err(`dataset.classNames does not match the class folders of '${shown}': ${parts.join(', ')}`,
        `list exactly the folder names, in label order: [${folderNames.map((n) => JSON.stringify(n)).join(', ')}], or drop dataset.classNames`, 'dataset.classNames');
    }
    classNames = [...opts.classNames];
  }

  // ---- files ----
  const skipped: SkippedFile[] = [];
  const candidates: { tree: number; label: number; abs: string; rel: string }[] = [];
  const perClassCandidates = new Map<string, number>();
  trees.forEach((t, ti) => {
    classNames.forEach((name, label) => {
      const classDir = path.join(t.dir, name);
      const files = walk(classDir).sort(byCodePoint);
      let n = 0;
      for (const abs of files) {
        const rel = toPosix(path.relative(root, abs));
        const ext = path.extname(abs).toLowerCase();
        if (IMAGE_EXTENSIONS.has(ext)) {
          candidates.push({ tree: ti, label, abs, rel });
          n++;
        } else if (OTHER_IMAGE_EXTENSIONS.has(ext)) {
          skipped.push({ file: rel, reason: `unsupported image format '${ext}' (convlens reads jpg, jpeg, png, webp, gif)` });
        }
      }
      if (n === 0) {
        throw err(`class folder '${name}' (${displayPath(classDir)}) has no images`, 'remove it or add images (jpg, jpeg, png, webp, gif)');
      }
      perClassCandidates.set(`${ti}\0${label}`, n);
    });
  });

  const infos = await mapPool(candidates, SCAN_CONCURRENCY, (c) => scanFile(c.abs));
  const entries: Record<Split, Entry[]> = { train: [], test: [] };
  const hashes: Record<Split, string[]> = { train: [], test: [] };
  const valid = new Map<string, number>();
  candidates.forEach((c, i) => {
    const info = infos[i];
    if (info.problem) {
      skipped.push({ file: c.rel, reason: info.problem });
      return;
    }
    const key = `${c.tree}\0${c.label}`;
    valid.set(key, (valid.get(key) ?? 0) + 1);
    const t = trees[c.tree];
    const split: Split = t.split === 'hash' ? hashSplit(c.rel, opts.splits as { testFraction: number; seed: number }) : t.split;
    entries[split].push({ abs: c.abs, rel: c.rel, label: c.label });
    hashes[split].push(info.hash);
  });
  for (const [key, n] of perClassCandidates) {
    if (!valid.get(key)) {
      const [ti, label] = key.split('\0').map(Number);
      const dir = path.join(trees[ti].dir, classNames[label]);
      throw err(`every image in class folder '${classNames[label]}' (${displayPath(dir)}) is unreadable (${n} skipped, e.g. ${skipped.find((s) => s.file.startsWith(toPosix(path.relative(root, dir)) + '/'))?.reason})`,
        'replace the files with valid jpg/png/webp/gif images, or remove the folder');
    }
  }
  // Stable index order: by label, then by path (a train/test tree walk already gives it; the hash split interleaves).
  for (const split of ['train', 'test'] as const) {
    const order = entries[split].map((_, i) => i).sort((a, b) => entries[split][a].label - entries[split][b].label || byCodePoint(entries[split][a].rel, entries[split][b].rel));
    entries[split] = order.map((i) => entries[split][i]);
    hashes[split] = order.map((i) => hashes[split][i]);
  }

  if (skipped.length) {
    const first = skipped.slice(0, 3).map((s) => `${s.file} (${s.reason})`).join('; ');
    (opts.log ?? console.warn)(`warning: ${skipped.length} file${skipped.length === 1 ? '' : 's'} in ${shown} skipped: ${first}${skipped.length > 3 ? '; …' : ''}`);
  }

  const id = createHash('sha256');
  id.update(JSON.stringify({ kind: 'convlens image-folder v1', preprocessing: prep, splits: opts.splits ?? null, classNames }));
  for (const split of ['train', 'test'] as const) {
    entries[split].forEach((e, i) => id.update(`\n${split}\t${e.label}\t${e.rel}\t${hashes[split][i]}`));
  }

  const [h, w] = prep.size;
  const c = prep.channels;
  const tables = normalizationTables(prep);
  const classCounts: Record<Split, number[]> = { train: classNames.map(() => 0), test: classNames.map(() => 0) };
  for (const split of ['train', 'test'] as const) for (const e of entries[split]) classCounts[split][e.label]++;

  return {
    id: id.digest('hex'),
    name: path.basename(root),
    source: `image folder ${path.basename(root)}`,
    classNames,
    imageShape: [h, w, c],
    preprocessing: prep,
    splitSizes: { train: entries.train.length, test: entries.test.length },
    classCounts,
    skipped,
    describeImage(split, index) {
      const e = entries[split][index];
      if (!e) throw new RangeError(`no image ${index} in the ${split} split (${entries[split].length} images)`);
      return { id: e.rel, label: e.label, file: e.rel };
    },
    batches(split, batchSize, bopts) {
      const list = entries[split];
      return streamBatches(list.length, batchSize, bopts?.indices, [h, w, c], tables, async (index) => {
        const e = list[index];
        try {
          return await decodeImage(e.abs, prep);
        } catch (cause) {
          throw new ConvlensError(`image '${e.rel}' in ${shown} could not be decoded: ${firstLine(cause)}`, {
            file: configFile, field, fix: 'delete or replace the file (convlens skips unreadable files it detects when it opens the dataset)',
          });
        }
      }, (index) => list[index].label);
    },
  };
}

// ---------- shared with the Fashion-MNIST wrapper ----------

/**
 * Per channel, a 256-entry table pixel → normalised value, computed in double precision with
 * the documented formulas: range: min + (max - min) · p / 255; meanStd: (p / 255 - mean) / std.
 */
export function normalizationTables(prep: Preprocessing): Float32Array[] {
  const tables: Float32Array[] = [];
  for (let ch = 0; ch < prep.channels; ch++) {
    const t = new Float32Array(256);
    const n = prep.normalize;
    for (let p = 0; p < 256; p++) {
      if (n.kind === 'range') t[p] = n.min + ((n.max - n.min) * p) / 255;
      else t[p] = (p / 255 - pick(n.mean, ch)) / pick(n.std, ch);
    }
    tables.push(t);
  }
  return tables;
}

const pick = (arr: number[], ch: number) => (arr.length === 1 ? arr[0] : arr[ch]);

/**
 * The lazy batch loop behind `Dataset.batches`: decodes only the current batch (up to
 * DECODE_CONCURRENCY images at a time), so memory is bounded by batchSize.
 */
export async function* streamBatches(
  count: number,
  batchSize: number,
  indices: ArrayLike<number> | undefined,
  shape: [number, number, number],
  tables: Float32Array[],
  load: (index: number) => Promise<Uint8Array>,
  labelOf: (index: number) => number,
): AsyncGenerator<Batch> {
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`batchSize must be a positive integer, got ${batchSize}`);
  const n = indices ? indices.length : count;
  if (indices) {
    for (let i = 0; i < indices.length; i++) {
      const k = indices[i];
      if (!Number.isInteger(k) || k < 0 || k >= count) throw new RangeError(`index ${k} is outside the split (0..${count - 1})`);
    }
  }
  const [h, w, c] = shape;
  const per = h * w * c;
  for (let start = 0; start < n; start += batchSize) {
    const size = Math.min(batchSize, n - start);
    const idx = new Int32Array(size);
    for (let j = 0; j < size; j++) idx[j] = indices ? indices[start + j] : start + j;
    const pixels = new Uint8Array(size * per);
    const images = new Float32Array(size * per);
    const labels = new Int32Array(size);
    await mapPool(Array.from(idx), DECODE_CONCURRENCY, async (index, j) => {
      const px = await load(index);
      pixels.set(px, j * per);
      labels[j] = labelOf(index);
    });
    for (let i = 0; i < pixels.length; i++) images[i] = tables[i % c][pixels[i]];
    yield { images, pixels, labels, indices: idx, size };
  }
}

/** Decodes (first frame), flattens alpha on black, resizes and converts to 1 or 3 channels. */
export async function decodeImage(
  input: string | { data: Uint8Array; width: number; height: number; channels: 1 | 3 },
  prep: Preprocessing,
): Promise<Uint8Array> {
  decodeStats.files++;
  const [h, w] = prep.size;
  const black = { r: 0, g: 0, b: 0 };
  const img = typeof input === 'string'
    ? sharp(input, { pages: 1, failOn: 'error' })
    : sharp(Buffer.from(input.data.buffer, input.data.byteOffset, input.data.byteLength), {
        raw: { width: input.width, height: input.height, channels: input.channels },
      });
  const { data, info } = await img
    .flatten({ background: black })
    .resize({ width: w, height: h, fit: prep.fit, background: black })
    .toColourspace('srgb')
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  if (info.width !== w || info.height !== h || info.channels < 3) {
    throw new Error(`sharp returned ${info.width}×${info.height}×${info.channels}, expected ${w}×${h}×3`);
  }
  return fromRgb(data, w * h, info.channels, prep.channels);
}

/** Packs sharp's RGB(A) output into 3 channels or PIL-style luma. */
export function fromRgb(data: Uint8Array, count: number, stride: number, channels: 1 | 3): Uint8Array {
  const out = new Uint8Array(count * channels);
  for (let i = 0; i < count; i++) {
    const s = i * stride;
    if (channels === 1) out[i] = (data[s] * 19595 + data[s + 1] * 38470 + data[s + 2] * 7471 + 32768) >> 16;
    else {
      out[i * 3] = data[s];
      out[i * 3 + 1] = data[s + 1];
      out[i * 3 + 2] = data[s + 2];
    }
  }
  return out;
}

/** Runs fn over items with at most `limit` in flight; results in input order. */
export async function mapPool<T, R>(items: T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

// ---------- scanning ----------

async function scanFile(abs: string): Promise<FileInfo> {
  const st = await fs.promises.stat(abs);
  const key = `${abs}\0${st.size}\0${st.mtimeMs}`;
  const cached = scanCache.get(key);
  if (cached) return cached;
  let info: FileInfo;
  if (st.size === 0) {
    info = { hash: '', problem: 'empty file (0 bytes)' };
  } else {
    const buf = await fs.promises.readFile(abs);
    info = { hash: createHash('sha256').update(buf).digest('hex'), problem: await validateImage(buf) };
  }
  scanCache.set(key, info);
  return info;
}

/** undefined when the bytes look like a complete jpg/png/webp/gif, else the reason. */
async function validateImage(buf: Buffer): Promise<string | undefined> {
  let format: string | undefined;
  try {
    const meta = await sharp(buf, { pages: 1 }).metadata();
    format = meta.format;
    if (!meta.width || !meta.height) return 'image has no size';
  } catch (e) {
    return `not a readable image (${firstLine(e)})`;
  }
  if (!format || !SHARP_FORMATS.has(format)) return `unsupported image format '${format}' (convlens reads jpg, jpeg, png, webp, gif)`;
  if (looksComplete(buf, format)) return undefined;
  // The cheap check failed (truncated, or unusual trailing data): a full decode decides.
  try {
    await sharp(buf, { pages: 1, failOn: 'error' }).raw().toBuffer();
    return undefined;
  } catch (e) {
    return `corrupt or truncated ${format} (${firstLine(e)})`;
  }
}

function looksComplete(buf: Buffer, format: string): boolean {
  const tail = buf.subarray(Math.max(0, buf.length - 4096));
  switch (format) {
    case 'png': return tail.includes('IEND');
    case 'jpeg': return tail.includes(Buffer.from([0xff, 0xd9]));
    case 'gif': return buf[buf.length - 1] === 0x3b;
    case 'webp': return buf.length >= 12 && buf.readUInt32LE(4) + 8 <= buf.length;
    default: return false;
  }
}

function hashSplit(rel: string, s: { testFraction: number; seed: number }): Split {
  const d = createHash('sha256').update(`${s.seed}\0${rel}`).digest();
  return d.readUInt32BE(0) / 2 ** 32 < s.testFraction ? 'test' : 'train';
}

// ---------- small fs helpers ----------

function statOrNull(p: string): fs.Stats | null {
  try {
    return fs.statSync(p);
  } catch {
    return null;
  }
}
const isDir = (p: string) => Boolean(statOrNull(p)?.isDirectory());

/** Non-hidden entries; symlinks are followed. */
function listEntries(dir: string): { name: string; isDir: boolean }[] {
  const out: { name: string; isDir: boolean }[] = [];
  for (const d of fs.readdirSync(dir, { withFileTypes: true })) {
    if (d.name.startsWith('.')) continue;
    const full = path.join(dir, d.name);
    const dirLike = d.isDirectory() || (d.isSymbolicLink() && isDir(full));
    const fileLike = d.isFile() || (d.isSymbolicLink() && Boolean(statOrNull(full)?.isFile()));
    if (dirLike || fileLike) out.push({ name: d.name, isDir: dirLike });
  }
  return out;
}

function walk(dir: string, depth = 0): string[] {
  if (depth > 32) return []; // symlink loops
  const out: string[] = [];
  for (const e of listEntries(dir)) {
    const full = path.join(dir, e.name);
    if (e.isDir) out.push(...walk(full, depth + 1));
    else out.push(full);
  }
  return out;
}

function byCodePoint(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
const toPosix = (p: string) => p.split(path.sep).join('/');
function displayPath(p: string): string {
  const rel = path.relative(process.cwd(), p);
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : p;
}
function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0];
}
