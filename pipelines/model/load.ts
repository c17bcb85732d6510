/**
 * Loads a TF.js LayersModel folder (model.json + weight shards) through fs: the file://
 * handler needs tfjs-node, which we cannot assume. Every problem with the files becomes a
 * one-line ConvlensError naming the file, the field and the fix.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { loadLayersModel, type LayersModel } from '@tensorflow/tfjs-layers';
import { ConvlensError } from '../errors';
import type { LayerSummary } from '../types';
import { buildExecutor, type GraphExecutor } from './graph';
import { summarizeLayers } from './summary';

export interface LoadedModel {
  /** absolute path of the model folder */
  dir: string;
  /** sha256 over model.json and every weight shard's bytes, in manifest order */
  id: string;
  layersModel: LayersModel;
  /** [h, w, c], batch dimension dropped */
  inputShape: [number, number, number];
  executor: GraphExecutor;
  layers: LayerSummary[];
  totalParams: number;
  dispose(): void;
}

const HOW_TO_EXPORT =
  'point `model` at a TF.js LayersModel folder, e.g. made by `tensorflowjs_converter --input_format keras model.h5 <dir>` or by `model.save()` in TF.js.';

/** bytes per stored element, by dtype (quantized weights are stored in the quantization dtype) */
const BYTES: Record<string, number> = { float32: 4, int32: 4, bool: 1, uint8: 1, uint16: 2, float16: 2 };

interface WeightEntry { name: string; shape: number[]; dtype: string; quantization?: { dtype?: string } }
interface WeightGroup { paths: string[]; weights: WeightEntry[] }

export async function loadModel(dir: string): Promise<LoadedModel> {
  const modelDir = path.resolve(dir);
  const jsonPath = path.join(modelDir, 'model.json');
  if (!fs.existsSync(jsonPath)) {
    const what = fs.existsSync(modelDir) ? `has no model.json` : `does not exist`;
    throw new ConvlensError(`the model folder ${modelDir} ${what}; convlens expects a TF.js LayersModel folder (model.json + weight shards).`, {
      file: jsonPath,
      fix: HOW_TO_EXPORT,
    });
  }
  const jsonBytes = fs.readFileSync(jsonPath);
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(jsonBytes.toString('utf8'));
  } catch (e) {
    throw new ConvlensError(`is not valid JSON (${(e as Error).message}).`, { file: jsonPath, fix: 'export the model again; the file may be truncated.' });
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new ConvlensError('is not a JSON object.', { file: jsonPath, fix: HOW_TO_EXPORT });
  }
  const topology = json.modelTopology as Record<string, unknown> | undefined;
  if (json.format === 'graph-model' || (topology && 'node' in topology)) {
    throw new ConvlensError('is a TF.js GraphModel (format "graph-model"), which convlens does not support: it needs the layer structure.', {
      file: jsonPath,
      field: 'format',
      fix: 'export the Keras model as a LayersModel: `tensorflowjs_converter --input_format keras model.h5 <dir>` (not --input_format tf_saved_model).',
    });
  }
  if (!topology || typeof topology !== 'object') {
    throw new ConvlensError('has no modelTopology.', { file: jsonPath, field: 'modelTopology', fix: HOW_TO_EXPORT });
  }
  const groups = validateManifest(json.weightsManifest, jsonPath);

  // read and check every shard before handing anything to tfjs
  const hash = createHash('sha256').update(jsonBytes);
  const realDir = fs.realpathSync(modelDir);
  const groupBuffers: Uint8Array[] = [];
  groups.forEach((group, g) => {
    const shards = group.paths.map((p, i) => {
      const field = `weightsManifest[${g}].paths[${i}]`;
      const shardPath = checkShardPath(p, modelDir, realDir, jsonPath, field);
      const bytes = fs.readFileSync(shardPath);
      hash.update(bytes);
      return bytes;
    });
    const actual = shards.reduce((n, s) => n + s.length, 0);
    const expected = group.weights.reduce((n, w, i) => n + weightBytes(w, jsonPath, `weightsManifest[${g}].weights[${i}]`), 0);
    if (actual !== expected) {
      throw new ConvlensError(
        `the shards ${group.paths.join(', ')} hold ${actual} bytes but the weights listed for them need ${expected} (dtype × shape).`,
        { file: jsonPath, field: `weightsManifest[${g}]`, fix: 'the weight files do not belong to this model.json (or are truncated); export the model again.' },
      );
    }
    groupBuffers.push(Buffer.concat(shards));
  });
  const weightData = concat(groupBuffers);
  const weightSpecs = groups.flatMap((g) => g.weights) as tf.io.WeightsManifestEntry[];

  let layersModel: LayersModel;
  try {
    const handler = tf.io.fromMemory({
      modelTopology: topology,
      weightSpecs,
      weightData,
      format: json.format as string | undefined,
      generatedBy: json.generatedBy as string | undefined,
      convertedBy: json.convertedBy as string | null | undefined,
    });
    layersModel = await loadLayersModel(handler);
  } catch (e) {
    throw new ConvlensError(`tfjs-layers could not build the model: ${(e as Error).message.split('\n')[0]}`, {
      file: jsonPath,
      field: 'modelTopology',
      fix: 'check that the model uses only layers TF.js supports and that the weights match the topology; export it again with tensorflowjs_converter.',
    });
  }

  let executor: GraphExecutor;
  try {
    executor = buildExecutor(layersModel, topology);
  } catch (e) {
    layersModel.dispose();
    if (e instanceof ConvlensError) throw new ConvlensError(e.message, { file: jsonPath });
    throw e;
  }
  const layers = summarizeLayers(executor);
  return {
    dir: modelDir,
    id: hash.digest('hex'),
    layersModel,
    inputShape: executor.inputShape,
    executor,
    layers,
    totalParams: layersModel.countParams(),
    dispose() {
      executor.dispose();
      layersModel.dispose();
    },
  };
}

function validateManifest(manifest: unknown, jsonPath: string): WeightGroup[] {
  if (manifest === undefined) {
    throw new ConvlensError('has no weightsManifest, so the weights cannot be found.', {
      file: jsonPath,
      field: 'weightsManifest',
      fix: 'export the model with its weights (tensorflowjs_converter or model.save write weightsManifest next to modelTopology).',
    });
  }
  if (!Array.isArray(manifest)) {
    throw new ConvlensError('weightsManifest must be a list of {paths, weights} groups.', { file: jsonPath, field: 'weightsManifest', fix: HOW_TO_EXPORT });
  }
  return manifest.map((group, g) => {
    const field = `weightsManifest[${g}]`;
    const ok =
      group && Array.isArray(group.paths) && group.paths.every((p: unknown) => typeof p === 'string') &&
      Array.isArray(group.weights) &&
      group.weights.every((w: WeightEntry) => w && typeof w.name === 'string' && typeof w.dtype === 'string' &&
        Array.isArray(w.shape) && w.shape.every((d) => Number.isInteger(d) && d >= 0));
    if (!ok) {
      throw new ConvlensError('each weights group needs `paths` (strings) and `weights` ({name, shape, dtype}).', { file: jsonPath, field, fix: HOW_TO_EXPORT });
    }
    return group as WeightGroup;
  });
}

/** A shard must be a relative path that stays inside the model folder, also after symlinks. */
function checkShardPath(p: string, modelDir: string, realDir: string, jsonPath: string, field: string): string {
  const fix = 'weight shard paths must be relative file names inside the model folder, as tensorflowjs_converter writes them.';
  const inside = (root: string, target: string) => {
    const rel = path.relative(root, target);
    return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
  };
  if (path.isAbsolute(p) || /^[a-z][a-z0-9+.-]*:/i.test(p)) {
    throw new ConvlensError(`shard path '${p}' is absolute; convlens only reads shards inside the model folder.`, { file: jsonPath, field, fix });
  }
  const resolved = path.resolve(modelDir, p);
  if (!inside(modelDir, resolved)) {
    throw new ConvlensError(`shard path '${p}' points outside the model folder.`, { file: jsonPath, field, fix });
  }
  if (!fs.existsSync(resolved)) {
    throw new ConvlensError(`weight shard '${p}' is missing (looked for ${resolved}).`, {
      file: jsonPath,
      field,
      fix: 'copy every file listed in weightsManifest next to model.json.',
    });
  }
  const real = fs.realpathSync(resolved);
  if (!inside(realDir, real)) {
    throw new ConvlensError(`shard path '${p}' is a symlink to ${real}, outside the model folder.`, { file: jsonPath, field, fix });
  }
  if (!fs.statSync(real).isFile()) {
    throw new ConvlensError(`weight shard '${p}' is not a file.`, { file: jsonPath, field, fix });
  }
  return real;
}

function weightBytes(w: WeightEntry, jsonPath: string, field: string): number {
  const dtype = w.quantization?.dtype ?? w.dtype;
  const bytes = BYTES[dtype];
  if (bytes === undefined) {
    throw new ConvlensError(`weight '${w.name}' has dtype '${dtype}', which convlens cannot read.`, {
      file: jsonPath,
      field: `${field}.dtype`,
      fix: 'use float32 weights (optionally uint8/uint16/float16 quantized).',
    });
  }
  return w.shape.reduce((n, d) => n * d, 1) * bytes;
}

function concat(parts: Uint8Array[]): ArrayBuffer {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out.buffer;
}
