/**
 * The shared shapes that the pipeline's parts agree on. Each part (backend, model, data,
 * cache/runner, site manifest) implements or consumes these; change them here first.
 */

// ---------- backends ----------
export type BackendRequest = 'auto' | 'webgpu' | 'wasm' | 'cpu' | 'tensorflow';
export type BackendName = Exclude<BackendRequest, 'auto'>;
export interface BackendInfo {
  name: BackendName;
  /** e.g. "NVIDIA H200 (vulkan, nvidia driver 570.x)", "llvmpipe (LLVM 19, 256 bits) via lavapipe", "wasm SIMD, 1 thread". */
  adapter: string;
  /** true for a hardware GPU adapter (not lavapipe / SwiftShader). */
  hardware: boolean;
  /** package → version: @tensorflow/tfjs-core, the backend package, webgpu (Dawn), node. */
  versions: Record<string, string>;
}

// ---------- datasets ----------
export type Split = 'train' | 'test';
/** How raw pixels become the model's input, declared in the report config. */
export interface Preprocessing {
  /** [height, width] the images are resized to (sharp, 'fill' unless `fit` says otherwise). */
  size: [number, number];
  channels: 1 | 3;
  /** Linear scaling of 0..255 pixels to [min, max], OR per-channel (x/255 - mean) / std. */
  normalize: { kind: 'range'; min: number; max: number } | { kind: 'meanStd'; mean: number[]; std: number[] };
  fit: 'fill' | 'cover' | 'contain';
}
export interface Batch {
  /** NHWC float32, preprocessed, length = size * h * w * c. */
  images: Float32Array;
  /** uint8 NHWC pixels after resize, before normalisation (for thumbnails and PNGs). */
  pixels: Uint8Array;
  labels: Int32Array;
  /** index of each image within its split (stable across runs). */
  indices: Int32Array;
  size: number;
}
export interface SkippedFile { file: string; reason: string }
export interface Dataset {
  /** sha256 over the dataset's content (file names, bytes or a content digest) and the preprocessing. */
  id: string;
  /** human name, e.g. "Fashion-MNIST" or the folder name. */
  name: string;
  source: string;
  classNames: string[];
  /** [h, w, c] of the preprocessed images. */
  imageShape: [number, number, number];
  preprocessing: Preprocessing;
  /** number of images per split; `train` may be 0 if the dataset has only one split. */
  splitSizes: Record<Split, number>;
  /** per split, per class image counts. */
  classCounts: Record<Split, number[]>;
  /** files that could not be decoded: listed in a warning and on the report's dataset page. */
  skipped: SkippedFile[];
  /** Streamed, in index order unless `indices` is given; memory bounded by batchSize. */
  batches(split: Split, batchSize: number, opts?: { indices?: ArrayLike<number> }): AsyncGenerator<Batch>;
  /** Original file path (image folders) or a synthetic id, for provenance and alt texts. */
  describeImage(split: Split, index: number): { id: string; label: number; file?: string };
}

// ---------- model summary (what the site shows) ----------
export interface ReceptiveField {
  /** [h, w] size in input pixels. */
  size: [number, number];
  /** [h, w] distance in input pixels between neighbouring units ("jump", cumulative stride). */
  jump: [number, number];
  /** [h, w] input coordinate of the centre of unit (0, 0); may be negative (padding). */
  start: [number, number];
}
export interface LayerSummary {
  name: string;
  className: string;
  /** output shape without the batch dimension. */
  outputShape: number[];
  params: number;
  inbound: string[];
  /** activation fused in the original layer, split out by the executor (e.g. "relu"). */
  activation?: string;
  receptiveField?: ReceptiveField;
}
