/** Types of tsne-kernels.mjs (plain JS so that worker threads can load it without a loader). */

/** The quadtree arrays the repulsion reads (see QuadTree in tsne.ts) and its outputs by tree position. */
export interface TreeView {
  comX: Float64Array;
  comY: Float64Array;
  mass: Float64Array;
  side2: Float64Array;
  skip: Int32Array;
  leafStart: Int32Array;
  leafEnd: Int32Array;
  px: Float64Array;
  py: Float64Array;
  leaves: Int32Array;
  count: number;
  leafCount: number;
  leafSize: number;
  z: Float64Array;
  fx: Float64Array;
  fy: Float64Array;
}

/** Everything one iteration's work items read and write. */
export interface IterationView {
  n: number;
  tree: TreeView;
  theta2: number;
  exaggeration: number;
  rowPtr: Int32Array;
  cols: Int32Array;
  vals: Float64Array;
  y: Float64Array;
  /** attraction output, 2 per point in index order. */
  attr: Float64Array;
}

export function repulsionLeaves(t: TreeView, theta2: number, from: number, to: number, list: Float64Array): Float64Array;
export function attractionRows(
  rowPtr: Int32Array, cols: Int32Array, vals: Float64Array, y: Float64Array, exaggeration: number, from: number, to: number, out: Float64Array,
): void;
export function runItems(v: IterationView, ctrl: Int32Array, list: Float64Array): Float64Array;
export const LEAF_CHUNK: number;
export const ROW_CHUNK: number;
export const GEN: number;
export const NEXT: number;
export const DONE: number;
export const READY: number;
export const FAILED: number;
export const CTRL_WORDS: number;
