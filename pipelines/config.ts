/**
 * `reports/<id>/report.config.ts`: a typed `defineReport({...})`, validated with zod.
 * Every validation error names the config file and the field.
 */
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import { datasetSpecSchema } from './data/index';
import { ConvlensError } from './errors';
import type { BackendRequest, Preprocessing } from './types';

const preprocessingSchema = z
  .object({
    size: z.tuple([z.number().int().positive(), z.number().int().positive()]).optional()
      .describe('[height, width] images are resized to; default: the model input size'),
    channels: z.union([z.literal(1), z.literal(3)]).optional()
      .describe('1 (grey) or 3 (RGB); default: the model input channels'),
    range: z.tuple([z.number(), z.number()]).optional()
      .describe('pixels 0..255 are scaled linearly to [min, max]; default [0, 1]'),
    mean: z.array(z.number()).optional().describe('per-channel mean of x/255, with std: (x/255 - mean) / std'),
    std: z.array(z.number().positive()).optional().describe('per-channel std, with mean'),
    fit: z.enum(['fill', 'cover', 'contain']).default('fill').describe('how images are resized to size'),
  })
  .strict()
  .refine((p) => (p.mean === undefined) === (p.std === undefined), { message: 'mean and std go together', path: ['std'] })
  .refine((p) => !(p.range && p.mean), { message: 'give either range or mean/std, not both', path: ['range'] });

export const reportConfigSchema = z
  .object({
    title: z.string().min(1).describe('shown on the index and overview'),
    description: z.string().optional(),
    model: z.string().min(1).describe('folder holding model.json and its weight shards, relative to the config'),
    dataset: datasetSpecSchema,
    preprocessing: preprocessingSchema.default({ fit: 'fill' }),
    classNames: z.array(z.string().min(1)).optional().describe('overrides the dataset class names, in label order'),
    seed: z.number().int().nonnegative().default(0).describe('mixed into every cache key seed'),
    samplesPerClass: z.number().int().min(1).max(64).default(8).describe('sample images per class on the overview'),
    techniques: z
      .record(z.string(), z.union([z.literal(false), z.record(z.string(), z.unknown())]))
      .default({})
      .describe('technique id → its parameters, or false to skip it; unlisted techniques run with defaults'),
    backend: z.enum(['auto', 'webgpu', 'wasm', 'cpu', 'tensorflow']).optional(),
  })
  .strict();

export type ReportConfig = z.input<typeof reportConfigSchema>;
export type ParsedReportConfig = z.output<typeof reportConfigSchema>;

/** Typed identity: gives editors completion and type errors in report.config.ts. */
export function defineReport(config: ReportConfig): ReportConfig {
  return config;
}

export interface ResolvedReport {
  id: string;
  dir: string;
  configFile: string;
  config: ParsedReportConfig;
  modelDir: string;
  backend?: BackendRequest;
}

/** Formats zod issues as one line each: `file: field.path: message`. */
export function configError(file: string, error: z.ZodError): ConvlensError {
  const lines = error.issues.map((issue) => {
    const field = issue.path.map(String).join('.') || '(root)';
    return `${field}: ${issue.message}`;
  });
  return new ConvlensError(`invalid report config: ${lines.join('; ')}`, { file });
}

export async function loadReportConfig(configFile: string): Promise<ResolvedReport> {
  const file = path.resolve(configFile);
  const rel = path.relative(process.cwd(), file) || file;
  if (!fs.existsSync(file)) {
    throw new ConvlensError('report config not found', { file: rel, fix: 'create it with `export default defineReport({...})`' });
  }
  let mod: { default?: unknown };
  try {
    mod = await import(pathToFileURL(file).href);
  } catch (e) {
    const msg = e instanceof Error ? e.message.split('\n')[0] : String(e);
    throw new ConvlensError(`could not load the config: ${msg}`, { file: rel });
  }
  if (!mod.default) {
    throw new ConvlensError('has no default export', { file: rel, fix: 'end it with `export default defineReport({...})`' });
  }
  const parsed = reportConfigSchema.safeParse(mod.default);
  if (!parsed.success) throw configError(rel, parsed.error);
  const dir = path.dirname(file);
  const modelDir = resolveInside(dir, parsed.data.model, rel, 'model');
  if (parsed.data.dataset.type === 'image-folder') resolveInside(dir, parsed.data.dataset.path, rel, 'dataset.path');
  return { id: path.basename(dir), dir, configFile: rel, config: parsed.data, modelDir, backend: parsed.data.backend };
}

/** Resolves a config path relative to the config's folder; it must not escape that folder. */
export function resolveInside(dir: string, p: string, file: string, field: string): string {
  const full = path.resolve(dir, p);
  const relative = path.relative(dir, full);
  if (path.isAbsolute(p) || relative.startsWith('..')) {
    throw new ConvlensError(`path '${p}' leaves the report folder`, {
      file,
      field,
      fix: `use a path inside ${path.relative(process.cwd(), dir) || '.'} (copy or symlink the folder there)`,
    });
  }
  return full;
}

/** Preprocessing from the config, with defaults taken from the model's input shape. */
export function resolvePreprocessing(
  p: ParsedReportConfig['preprocessing'],
  modelInput: [number | null, number | null, number],
  file: string,
): Preprocessing {
  const [h, w, c] = modelInput;
  const size = p.size ?? (h && w ? [h, w] : undefined);
  if (!size) {
    throw new ConvlensError('the model accepts any image size, so the size cannot be inferred', {
      file,
      field: 'preprocessing.size',
      fix: 'set preprocessing.size to [height, width]',
    });
  }
  const channels = p.channels ?? (c === 1 || c === 3 ? c : 3);
  if (p.mean && p.std) {
    for (const [field, arr] of [['mean', p.mean], ['std', p.std]] as const) {
      if (arr.length !== channels && arr.length !== 1) {
        throw new ConvlensError(`has ${arr.length} values for ${channels} channels`, { file, field: `preprocessing.${field}`, fix: `give ${channels} values` });
      }
    }
    return { size, channels, fit: p.fit, normalize: { kind: 'meanStd', mean: p.mean, std: p.std } };
  }
  const [min, max] = p.range ?? [0, 1];
  return { size, channels, fit: p.fit, normalize: { kind: 'range', min, max } };
}
