/**
 * `features` (internal): the shared dataset pass. One streamed forward pass over the test split
 * and the training split records, per image, the feature vector at one layer (by default the
 * input of the last Dense layer, i.e. what the classifier sees), the logits, the predicted class
 * and its softmax probability. Feature vectors and logits are appended to float32 files batch by
 * batch, so memory stays bounded however large the dataset; kNN, PCA, t-SNE and UMAP read them.
 */
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import type { FeaturesData, SplitFeatures } from '../engines/examples';
import { ConvlensError } from '../errors';
import type { GraphExecutor } from '../model/graph';
import { defineTechnique, type ResultWriter } from '../technique';
import type { Dataset, Split } from '../types';

const params = z.object({
  layer: z.string().optional().describe('node whose output is the feature vector (flattened); default: the input of the last Dense layer'),
  maxTrain: z.number().int().min(0).optional().describe('use only the first maxTrain training images (index order); default: all'),
  batchSize: z.number().int().min(1).max(4096).default(256).describe('images per forward pass'),
});

/** The node giving the logits (the last Dense layer before its activation) and the default feature node. */
export function findLayers(executor: GraphExecutor): { logits: string; features?: string } {
  const dense = executor.nodes.filter((n) => n.className === 'Dense' && (n.role === 'layer' || n.role === 'preact'));
  const last = dense[dense.length - 1];
  if (last) return { logits: last.name, features: last.inbound[0] };
  // no Dense layer (e.g. a fully convolutional classifier): logits are the output before a softmax
  const out = executor.node(executor.outputName);
  return { logits: out.activation === 'softmax' && out.inbound.length === 1 ? out.inbound[0] : out.name };
}

/** Appends float32 rows to a result file and writes its shape sidecar (as ResultWriter.float32 does) at the end. */
class RowFile {
  private rows = 0;
  private constructor(
    private readonly out: ResultWriter,
    readonly name: string,
    private readonly handle: fs.promises.FileHandle,
    private readonly width: number,
  ) {}

  static async open(out: ResultWriter, name: string, width: number): Promise<RowFile> {
    return new RowFile(out, name, await fs.promises.open(out.path(name), 'w'), width);
  }

  async append(values: Float32Array): Promise<void> {
    await this.handle.write(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
    this.rows += values.length / this.width;
  }

  async close(): Promise<void> {
    await this.handle.close();
    this.out.written.push(this.name);
    const sidecar = this.name.replace(/\.f32$/, '.json');
    await this.out.file(sidecar, JSON.stringify({ dtype: 'float32', shape: [this.rows, this.width], byteOrder: 'little-endian' }));
  }

  async abandon(): Promise<void> {
    await this.handle.close().catch(() => {});
  }
}

async function passSplit(
  split: Split,
  count: number,
  ctx: { executor: GraphExecutor; dataset: Dataset; out: ResultWriter; featureNode: string; logitsNode: string; dim: number; classes: number; batchSize: number },
  onBatch: (n: number) => void,
): Promise<SplitFeatures> {
  const { executor, dataset, out, featureNode, logitsNode, dim, classes } = ctx;
  const [h, w, c] = dataset.imageShape;
  const featuresFile = `${split}-features.f32`;
  const logitsFile = `${split}-logits.f32`;
  const featureRows = await RowFile.open(out, featuresFile, dim);
  const logitRows = await RowFile.open(out, logitsFile, classes);
  const labels: number[] = [];
  const predicted: number[] = [];
  const confidence: number[] = [];
  try {
    // a cap takes the first `count` images in index order
    const opts = count < dataset.splitSizes[split] ? { indices: Int32Array.from({ length: count }, (_, i) => i) } : undefined;
    for await (const batch of dataset.batches(split, ctx.batchSize, opts)) {
      const n = batch.size;
      const [feats, logits, pred, conf] = tf.tidy(() => {
        const x = tf.tensor4d(batch.images, [n, h, w, c]);
        const r = executor.run(x, { upTo: logitsNode, capture: [featureNode] });
        const z2 = tf.reshape(r.output, [n, -1]);
        const probs = tf.softmax(z2);
        return [tf.reshape(r.captured[featureNode], [n, -1]), z2, tf.argMax(z2, 1), tf.max(probs, 1)];
      });
      // read back outside tidy: tidy cannot await
      const [fv, lv, pv, cv] = await Promise.all([feats.data(), logits.data(), pred.data(), conf.data()]);
      tf.dispose([feats, logits, pred, conf]);
      if (fv.length !== n * dim) throw new Error(`features: layer '${featureNode}' gave ${fv.length / n} values per image, expected ${dim}`);
      if (lv.length !== n * classes) {
        throw new ConvlensError(`the logits node '${logitsNode}' has ${lv.length / n} outputs but the dataset has ${classes} classes.`, {
          field: 'model', fix: 'point the report at the dataset the model was trained on.',
        });
      }
      await featureRows.append(fv as Float32Array);
      await logitRows.append(lv as Float32Array);
      for (let i = 0; i < n; i++) {
        labels.push(batch.labels[i]);
        predicted.push(pv[i]);
        confidence.push(Math.round(cv[i] * 1e6) / 1e6); // 6 digits are plenty and keep result.json small
      }
      onBatch(n);
    }
  } catch (e) {
    await featureRows.abandon();
    await logitRows.abandon();
    throw e;
  }
  await featureRows.close();
  await logitRows.close();
  return { count: labels.length, labels, predicted, confidence, featuresFile, logitsFile };
}

export default defineTechnique({
  id: 'features',
  title: 'Features (shared dataset pass)',
  summary: 'Feature vectors, logits and predictions of every test and training image, computed once and shared by the dataset techniques.',
  family: 'dataset',
  version: 1,
  internal: true,
  params,
  // a preview needs the test split in full (confusion matrix, embeddings) but not 60k neighbours
  quick: { maxTrain: 10_000 },
  async run(ctx): Promise<FeaturesData & { logitsLayer: string }> {
    const { executor } = ctx.model;
    const found = findLayers(executor);
    const featureNode = ctx.params.layer ? executor.node(ctx.params.layer).name : found.features;
    if (!featureNode) {
      throw new ConvlensError('the model has no Dense layer, so there is no default feature layer.', {
        field: 'techniques.features.layer', fix: `name the layer whose output to use as features, e.g. one of: ${executor.nodes.slice(-4).map((n) => `'${n.name}'`).join(', ')}.`,
      });
    }
    const dim = executor.node(featureNode).outputShape.reduce((a, b) => a * b, 1);
    const classes = ctx.dataset.classNames.length;
    const testCount = ctx.dataset.splitSizes.test;
    const trainCount = Math.min(ctx.dataset.splitSizes.train, ctx.params.maxTrain ?? Infinity);
    const total = testCount + trainCount;
    let done = 0;
    const pass = { executor, dataset: ctx.dataset, out: ctx.out, featureNode, logitsNode: found.logits, dim, classes, batchSize: ctx.params.batchSize };
    const onBatch = (n: number) => ctx.progress((done += n), total);
    const test = await passSplit('test', testCount, pass, onBatch);
    const train = trainCount > 0 ? await passSplit('train', trainCount, pass, onBatch) : undefined;
    ctx.log(`${test.count} test + ${train?.count ?? 0} train images, ${dim}-d features at '${featureNode}'`);
    return { layer: featureNode, logitsLayer: found.logits, dim, classes, splits: train ? { test, train } : { test } };
  },
});

// ---------------------------------------------------------------- reading the files

/** Absolute path of a split's features (or logits) file inside the features result folder. */
export function featuresPath(depDir: string, split: SplitFeatures, kind: 'features' | 'logits' = 'features'): string {
  return path.join(depDir, kind === 'features' ? split.featuresFile : split.logitsFile);
}

/**
 * Reads rows [start, start + count) of a row-major float32 file of `width` columns. The
 * returned array owns its buffer (aligned), so it can go straight into a tensor.
 */
export async function readRows(file: string, width: number, start: number, count: number): Promise<Float32Array> {
  const out = new Float32Array(count * width);
  const fh = await fs.promises.open(file, 'r');
  try {
    const bytes = new Uint8Array(out.buffer);
    let off = 0;
    while (off < bytes.length) {
      const { bytesRead } = await fh.read(bytes, off, bytes.length - off, start * width * 4 + off);
      if (bytesRead === 0) throw new Error(`${file}: expected ${count} rows from row ${start}, file too short`);
      off += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return out;
}

/** Streams a float32 row file in blocks of at most `blockRows` rows: memory bounded by the block. */
export async function* rowBlocks(file: string, width: number, rows: number, blockRows: number): AsyncGenerator<{ start: number; count: number; values: Float32Array }> {
  for (let start = 0; start < rows; start += blockRows) {
    const count = Math.min(blockRows, rows - start);
    yield { start, count, values: await readRows(file, width, start, count) };
  }
}
