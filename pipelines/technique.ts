/**
 * The technique contract (DESIGN.md §3). A technique is one file exporting
 * `defineTechnique({...})`, listed once in `registry.ts`, with a page `content/methods/<id>.mdx`.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { z } from 'zod';
import { encodePng } from './images';
import type { LoadedModel } from './model/load';
import type { Rng } from './rng';
import type { BackendInfo, Dataset } from './types';

export type Family = 'dataset' | 'weights' | 'attribution' | 'optimization';

/** Where a technique writes its files: the cache's temp folder for this result. */
export class ResultWriter {
  readonly written: string[] = [];
  constructor(readonly dir: string) {}

  /** Absolute path for a result file (sub-folders are created); names must stay inside the folder. */
  path(name: string): string {
    const full = path.resolve(this.dir, name);
    if (!full.startsWith(path.resolve(this.dir) + path.sep)) throw new Error(`result file name '${name}' escapes the result folder`);
    fs.mkdirSync(path.dirname(full), { recursive: true });
    return full;
  }

  async file(name: string, data: string | Uint8Array): Promise<string> {
    await fs.promises.writeFile(this.path(name), data);
    this.written.push(name);
    return name;
  }

  async png(name: string, pixels: Uint8Array, width: number, height: number, channels: 1 | 3 | 4): Promise<string> {
    return this.file(name, await encodePng(pixels, width, height, channels));
  }

  /** Raw float32 array, little-endian, plus a JSON sidecar with its shape: downloadable raw data. */
  async float32(name: string, values: Float32Array, shape: number[]): Promise<string> {
    await this.file(`${name}.json`, JSON.stringify({ dtype: 'float32', shape, byteOrder: 'little-endian' }));
    return this.file(`${name}.f32`, new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
  }
}

export interface TechniqueContext<P> {
  params: P;
  model: LoadedModel;
  dataset: Dataset;
  /** result.json data of each technique in `needs`, by id. */
  deps: Record<string, unknown>;
  /** folders of those results (to read their files). */
  depDirs: Record<string, string>;
  out: ResultWriter;
  /** seeded from the cache key: the only source of randomness a technique may use. */
  rng: Rng;
  seed: number;
  backend: BackendInfo;
  report: { id: string; dir: string; configFile: string };
  log: (message: string) => void;
  /** report progress in units of the technique's choice (images, steps). */
  progress: (done: number, total: number) => void;
}

export interface Technique<S extends z.ZodType = z.ZodType> {
  id: string;
  title: string;
  summary: string;
  family: Family;
  /** bump when the meaning of the output changes: it invalidates cached results. */
  version: number;
  params: S;
  needs: string[];
  /**
   * Shared work other techniques read (e.g. one streamed dataset pass): cached like any result,
   * but it has no page of its own and is not listed on the site.
   */
  internal?: boolean;
  /**
   * Parameters laid over the defaults for a quick run: `convlens run --quick` previews and the
   * registry's contract test. Only expensive techniques need it (fewer steps, smaller images).
   */
  quick?: Partial<z.input<S>>;
  run(ctx: TechniqueContext<z.output<S>>): Promise<unknown>;
}

export function defineTechnique<S extends z.ZodType>(
  technique: Omit<Technique<S>, 'needs'> & { needs?: string[] },
): Technique<S> {
  if (!/^[a-z0-9]+(-[a-z0-9]+)*$/.test(technique.id)) throw new Error(`technique id '${technique.id}' must be kebab-case`);
  return { needs: [], ...technique };
}
