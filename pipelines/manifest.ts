/**
 * What the runner writes for the site: `.convlens/site/manifest.json`, plus result files under
 * `.convlens/site/results/<cache-key>/…` which the site publishes at `/results/<cache-key>/…`.
 * Types only: the site imports this file with `import type`, so it never pulls in TF.js.
 */
import type { BackendInfo, Dataset, LayerSummary, Split } from './types';

export interface SiteManifest {
  /** ISO time of the run that wrote this manifest. */
  generatedAt: string;
  convlensVersion: string;
  /** Every registered technique, whether or not a report ran it. */
  techniques: TechniqueInfo[];
  reports: ReportManifest[];
}

export interface TechniqueInfo {
  id: string;
  title: string;
  family: 'dataset' | 'weights' | 'attribution' | 'optimization';
  version: number;
  /** One-line summary for listings. */
  summary: string;
  /** shared work other techniques read (e.g. the features pass): no page of its own. */
  internal?: boolean;
  /** JSON Schema generated from the technique's zod params (descriptions and defaults included). */
  paramsSchema: unknown;
}

export interface ReportManifest {
  id: string;
  title: string;
  description?: string;
  backend: BackendInfo;
  model: {
    /** path shown to readers, relative to the report folder. */
    path: string;
    id: string;
    inputShape: number[];
    totalParams: number;
    layers: LayerSummary[];
  };
  /** what the site shows of the dataset: its description without the streaming methods. */
  dataset: Pick<Dataset, 'name' | 'source' | 'id' | 'classNames' | 'imageShape' | 'preprocessing' | 'splitSizes' | 'classCounts' | 'skipped'>;
  /** The overview step: accuracy on the test split and sample images per class. */
  overview?: ResultEntry<OverviewData>;
  /** technique id → its result for this report (absent when the report disabled it). */
  results: Record<string, ResultEntry>;
}

export interface OverviewData {
  split: Split;
  count: number;
  accuracy: number;
  perClassAccuracy: number[];
  /** per class, file names (relative to the entry's assetBase) of sample thumbnails. */
  samples: string[][];
}

export interface ResultEntry<T = unknown> {
  technique: string;
  status: 'ok' | 'error';
  /** one-line message when status is 'error'. */
  error?: string;
  key: string;
  /** URL prefix of this result's files, e.g. "/results/<key>/" (site-relative, no origin). */
  assetBase: string;
  /** files in the result folder (relative names), for download links. */
  files: string[];
  provenance: Provenance;
  /** the technique's result.json. */
  data?: T;
}

export interface Provenance {
  technique: string;
  techniqueVersion: number;
  params: unknown;
  seed: number;
  backend: BackendInfo;
  modelId: string;
  datasetId: string;
  versions: Record<string, string>;
  startedAt: string;
  wallTimeMs: number;
  cacheKey: string;
}
