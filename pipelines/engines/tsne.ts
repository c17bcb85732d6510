/**
 * Barnes-Hut t-SNE (van der Maaten 2014) on typed arrays, written from the paper's equations.
 *
 *   p_{j|i} = exp(-β_i d_ij²) / Σ_k exp(-β_i d_ik²)  over the k = 3·perplexity nearest neighbours,
 *             β_i chosen by bisection so that the entropy of p_{·|i} equals log(perplexity);
 *   p_ij    = (p_{j|i} + p_{i|j}) / 2N                 (sparse, symmetric, sums to 1);
 *   q_ij    = (1 + |y_i − y_j|²)⁻¹ / Z,  Z = Σ_{k≠l} (1 + |y_k − y_l|²)⁻¹;
 *   C       = KL(P‖Q) = Σ p_ij log(p_ij / q_ij);
 *   ∂C/∂y_i = 4 Σ_j (p_ij − q_ij) (1 + |y_i − y_j|²)⁻¹ (y_i − y_j)
 *           = 4 [ Σ_j p_ij w_ij (y_i − y_j)  −  (1/Z) Σ_j w_ij² (y_i − y_j) ],  w = (1 + d²)⁻¹.
 * The first (attractive) sum runs over the sparse P. The second (repulsive) sum and Z are
 * approximated with a 2-D quadtree: a cell of side s whose centre of mass is at distance d from
 * y_i stands in for all its points when s < θ·d (d measured to the bounding box of y_i's leaf,
 * so one traversal serves the whole leaf: see repulsionAll).
 *
 * Optimisation follows scikit-learn's defaults: PCA initialisation scaled to std 1e-4, early
 * exaggeration 12 for 250 iterations at momentum 0.5, then momentum 0.8, per-coordinate gains
 * (delta-bar-delta: +0.2 when the step changes direction, ×0.8 otherwise, floor 0.01; reset when
 * the phase changes, as sklearn does). The step uses the gradient WITHOUT the constant 4 and
 * learning rate max(N/12, 200): the same step as sklearn's 'auto' (N/(4·12) times the gradient
 * with the 4), i.e. the rate of Belkina et al. 2019.
 *
 * Speed: the exact neighbours come from linalg.selfKnn (tsneAsync: blocked matrix products on
 * the TF.js backend) or from exactKnn below (pure JS); both end in the same float64 re-ranking.
 * Each iteration's repulsion (per range of quadtree leaves) and attraction (per range of rows)
 * are work items shared by the main thread and worker threads over SharedArrayBuffers
 * (tsne-kernels.mjs, tsne-worker.mjs); every output is a fixed-order sum whatever thread computes
 * it, so the layout is the same bytes for any thread count.
 */
import os from 'node:os';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { Rng } from '../rng';
import { KnnHeaps, rerankKnn, selfKnn } from './linalg';
import {
  attractionRows, CTRL_WORDS, DONE, FAILED, GEN, NEXT, READY, repulsionLeaves, runItems, type IterationView, type TreeView,
} from './tsne-kernels.mjs';

export interface TsneOptions {
  perplexity?: number;
  iterations?: number;
  /** Barnes-Hut accuracy: 0 = exact (O(N²)), 0.5 default. Values above ~0.7 are refused. */
  theta?: number;
  earlyExaggeration?: number;
  exaggerationIterations?: number;
  /** number, or 'auto' = max(N / earlyExaggeration, 200) (see the header on the factor 4). */
  learningRate?: number | 'auto';
  seed?: number;
  init?: 'pca' | 'random' | Float32Array;
  /** called every `progressEvery` iterations and at the end. */
  onProgress?: (iteration: number, total: number) => void;
  progressEvery?: number;
  /**
   * threads for the gradient, the main one included (worker_threads); default defaultThreads(N).
   * The layout does not depend on it.
   */
  threads?: number;
  /** precomputed exact neighbours: k = neighbourCount(N, perplexity) per row, ascending (tsneAsync). */
  knn?: { indices: Int32Array; dist2: ArrayLike<number> };
  /** told how many threads the gradient actually runs on. */
  onThreads?: (threads: number) => void;
  onLog?: (message: string) => void;
}

/** Row-compressed sparse matrix (symmetric P). */
export interface SparseMatrix {
  n: number;
  rowPtr: Int32Array;
  cols: Int32Array;
  vals: Float64Array;
}

// ---------------------------------------------------------------------------------------------
// Exact k nearest neighbours (brute force, blocked).

/**
 * Exact kNN by squared euclidean distance, ascending per row; ties broken by lower index. Pure
 * JS, one thread (tsneAsync uses linalg.selfKnn on the backend instead, much faster for large N).
 * Each pair is computed once (upper triangle) and offered to both points' heaps; four query
 * rows share each loaded point, which keeps the inner loop bound by arithmetic, not loads.
 */
export function exactKnn(data: Float32Array, n: number, dim: number, k: number): { indices: Int32Array; dist2: Float64Array } {
  if (data.length !== n * dim) throw new RangeError(`exactKnn: ${data.length} values for ${n}×${dim}`);
  if (!(k >= 1 && k < n)) throw new RangeError(`exactKnn: k=${k} needs 1 ≤ k < n=${n}`);
  const norms = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let d = i * dim, e = d + dim; d < e; d++) s += data[d] * data[d];
    norms[i] = s;
  }
  const heaps = new KnnHeaps(n, k);
  const worst = heaps.worst;
  for (let i0 = 0; i0 < n; i0 += 4) {
    const rows = Math.min(4, n - i0);
    const a0 = i0 * dim;
    const a1 = rows > 1 ? a0 + dim : a0;
    const a2 = rows > 2 ? a0 + 2 * dim : a0;
    const a3 = rows > 3 ? a0 + 3 * dim : a0;
    for (let j = i0 + 1; j < n; j++) {
      const b = j * dim;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let d = 0; d < dim; d++) {
        const x = data[b + d];
        s0 += data[a0 + d] * x;
        s1 += data[a1 + d] * x;
        s2 += data[a2 + d] * x;
        s3 += data[a3 + d] * x;
      }
      const nj = norms[j];
      // Most pairs are rejected by both heaps: test against the roots inline, call out rarely.
      // Distances are clamped at 0: cancellation can make a tiny one negative.
      let d = norms[i0] + nj - 2 * s0;
      if (d < 0) d = 0;
      if (d <= worst[i0]) heaps.offer(i0, j, d);
      if (d <= worst[j]) heaps.offer(j, i0, d);
      if (rows > 1 && j > i0 + 1) {
        d = norms[i0 + 1] + nj - 2 * s1;
        if (d < 0) d = 0;
        if (d <= worst[i0 + 1]) heaps.offer(i0 + 1, j, d);
        if (d <= worst[j]) heaps.offer(j, i0 + 1, d);
      }
      if (rows > 2 && j > i0 + 2) {
        d = norms[i0 + 2] + nj - 2 * s2;
        if (d < 0) d = 0;
        if (d <= worst[i0 + 2]) heaps.offer(i0 + 2, j, d);
        if (d <= worst[j]) heaps.offer(j, i0 + 2, d);
      }
      if (rows > 3 && j > i0 + 3) {
        d = norms[i0 + 3] + nj - 2 * s3;
        if (d < 0) d = 0;
        if (d <= worst[i0 + 3]) heaps.offer(i0 + 3, j, d);
        if (d <= worst[j]) heaps.offer(j, i0 + 3, d);
      }
    }
  }
  // the float64 difference form for the kept distances, as selfKnn: both searches give the same bytes
  return rerankKnn(data, dim, heaps.sorted().indices, n, k, k);
}

// ---------------------------------------------------------------------------------------------
// Input affinities.

/**
 * p_{·|i} for one row of squared distances: bisection on β = 1/(2σ²) until the entropy (nats)
 * matches log(perplexity). Distances are shifted by the row minimum (it cancels in the
 * normalisation) so that exp() cannot underflow for far-away rows.
 */
export function conditionalRow(dist2: ArrayLike<number>, offset: number, k: number, perplexity: number, out: Float64Array, outOffset: number): number {
  const target = Math.log(perplexity);
  let dmin = Infinity;
  for (let t = 0; t < k; t++) dmin = Math.min(dmin, dist2[offset + t]);
  let beta = 1;
  let lo = 0;
  let hi = Infinity;
  for (let step = 0; step < 200; step++) {
    let sum = 0;
    let sumDP = 0;
    for (let t = 0; t < k; t++) {
      const d = dist2[offset + t] - dmin;
      const p = Math.exp(-beta * d);
      out[outOffset + t] = p;
      sum += p;
      sumDP += d * p;
    }
    // H = log Σ exp(-βd) + β Σ d p / Σ p
    const entropy = Math.log(sum) + (beta * sumDP) / sum;
    const diff = entropy - target;
    for (let t = 0; t < k; t++) out[outOffset + t] /= sum;
    if (Math.abs(diff) < 1e-5) break;
    if (diff > 0) {
      // too flat: sharpen
      lo = beta;
      beta = hi === Infinity ? beta * 2 : (beta + hi) / 2;
    } else {
      hi = beta;
      beta = (beta + lo) / 2;
    }
  }
  return beta;
}

/** Symmetrised sparse P from kNN rows (indices ascending by distance); sums to 1. */
export function symmetrise(n: number, k: number, indices: Int32Array, cond: Float64Array): SparseMatrix {
  // Each directed edge i→j contributes p_{j|i} to (i, j) and to (j, i).
  const degree = new Int32Array(n + 1);
  for (let i = 0; i < n; i++) {
    for (let t = 0; t < k; t++) {
      degree[i]++;
      degree[indices[i * k + t]]++;
    }
  }
  const start = new Int32Array(n + 1);
  for (let i = 0; i < n; i++) start[i + 1] = start[i] + degree[i];
  const fill = start.slice(0, n);
  const cols = new Int32Array(start[n]);
  const vals = new Float64Array(start[n]);
  for (let i = 0; i < n; i++) {
    for (let t = 0; t < k; t++) {
      const j = indices[i * k + t];
      const p = cond[i * k + t];
      cols[fill[i]] = j;
      vals[fill[i]++] = p;
      cols[fill[j]] = i;
      vals[fill[j]++] = p;
    }
  }
  // Merge duplicates per row (both i→j and j→i present).
  const rowPtr = new Int32Array(n + 1);
  const outCols = new Int32Array(start[n]);
  const outVals = new Float64Array(start[n]);
  const slot = new Int32Array(n).fill(-1);
  let w = 0;
  let total = 0;
  for (let i = 0; i < n; i++) {
    rowPtr[i] = w;
    for (let e = start[i]; e < start[i + 1]; e++) {
      const j = cols[e];
      if (slot[j] < 0) {
        slot[j] = w;
        outCols[w] = j;
        outVals[w] = 0;
        w++;
      }
      outVals[slot[j]] += vals[e];
    }
    // Entries stay in first-seen order: deterministic, so no per-row sort is needed.
    for (let e = rowPtr[i]; e < w; e++) total += outVals[e];
    for (let e = rowPtr[i]; e < w; e++) slot[outCols[e]] = -1;
  }
  rowPtr[n] = w;
  const vNorm = outVals.subarray(0, w);
  for (let e = 0; e < w; e++) vNorm[e] /= total;
  return { n, rowPtr, cols: outCols.slice(0, w), vals: vNorm.slice() };
}

/** Neighbours used for N points: k = min(N−1, ⌊3·perplexity⌋). */
export const neighbourCount = (n: number, perplexity: number): number => Math.min(n - 1, Math.floor(3 * perplexity));

/** A perplexity above k cannot be reached over k neighbours: small sets aim just below k. */
export const effectivePerplexity = (n: number, perplexity: number): number => Math.min(perplexity, neighbourCount(n, perplexity) * 0.99);

/** Sparse symmetric P from the data: exact kNN with k = min(N−1, ⌊3·perplexity⌋). */
export function inputAffinities(
  data: Float32Array, n: number, dim: number, perplexity: number, knn?: { indices: Int32Array; dist2: ArrayLike<number> },
): SparseMatrix {
  if (!(perplexity > 0)) throw new RangeError(`perplexity must be > 0, got ${perplexity}`);
  const k = neighbourCount(n, perplexity);
  if (k < 1) throw new RangeError(`t-SNE needs at least 2 points, got ${n}`);
  const perp = effectivePerplexity(n, perplexity);
  if (knn && (knn.indices.length !== n * k || knn.dist2.length !== n * k)) {
    throw new RangeError(`tsne: opts.knn holds ${knn.indices.length} neighbours, want N·k = ${n}·${k} (k = neighbourCount(N, perplexity))`);
  }
  const { indices, dist2 } = knn ?? exactKnn(data, n, dim, k);
  const cond = new Float64Array(n * k);
  for (let i = 0; i < n; i++) conditionalRow(dist2, i * k, k, perp, cond, i * k);
  return symmetrise(n, k, indices, cond);
}

// ---------------------------------------------------------------------------------------------
// PCA initialisation.

/** Eigen-decomposition of a small symmetric matrix (cyclic Jacobi); columns of `vectors`. */
function jacobiEigen(a: Float64Array, m: number): { values: Float64Array; vectors: Float64Array } {
  const A = a.slice();
  const V = new Float64Array(m * m);
  for (let i = 0; i < m; i++) V[i * m + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < m; p++) for (let q = p + 1; q < m; q++) off += A[p * m + q] ** 2;
    if (off < 1e-30) break;
    for (let p = 0; p < m; p++) {
      for (let q = p + 1; q < m; q++) {
        const apq = A[p * m + q];
        if (Math.abs(apq) < 1e-300) continue;
        const tau = (A[q * m + q] - A[p * m + p]) / (2 * apq);
        const t = Math.sign(tau || 1) / (Math.abs(tau) + Math.sqrt(1 + tau * tau));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = t * c;
        for (let r = 0; r < m; r++) {
          const arp = A[r * m + p];
          const arq = A[r * m + q];
          A[r * m + p] = c * arp - s * arq;
          A[r * m + q] = s * arp + c * arq;
        }
        for (let r = 0; r < m; r++) {
          const apr = A[p * m + r];
          const aqr = A[q * m + r];
          A[p * m + r] = c * apr - s * aqr;
          A[q * m + r] = s * apr + c * aqr;
        }
        for (let r = 0; r < m; r++) {
          const vrp = V[r * m + p];
          const vrq = V[r * m + q];
          V[r * m + p] = c * vrp - s * vrq;
          V[r * m + q] = s * vrp + c * vrq;
        }
      }
    }
  }
  const values = new Float64Array(m);
  for (let i = 0; i < m; i++) values[i] = A[i * m + i];
  return { values, vectors: V };
}

/**
 * Projection on the first two principal axes, scaled so that the first coordinate has std 1e-4
 * (sklearn's init='pca'). Covariance, then subspace iteration with a seeded start and a
 * Rayleigh-Ritz step; each axis's sign is fixed (largest loading positive) for stable output.
 */
export function pcaInit(data: Float32Array, n: number, dim: number, rng: Rng): Float64Array {
  const mean = new Float64Array(dim);
  for (let i = 0; i < n; i++) for (let d = 0; d < dim; d++) mean[d] += data[i * dim + d];
  for (let d = 0; d < dim; d++) mean[d] /= n;
  const cov = new Float64Array(dim * dim);
  const row = new Float64Array(dim);
  for (let i = 0; i < n; i++) {
    for (let d = 0; d < dim; d++) row[d] = data[i * dim + d] - mean[d];
    for (let a = 0; a < dim; a++) {
      const ra = row[a];
      if (ra === 0) continue;
      const base = a * dim;
      for (let b = a; b < dim; b++) cov[base + b] += ra * row[b];
    }
  }
  for (let a = 0; a < dim; a++) for (let b = a + 1; b < dim; b++) cov[b * dim + a] = cov[a * dim + b];

  const m = Math.min(dim, 8);
  let V = new Float64Array(dim * m); // column-major: vector c at [c*dim ...]
  for (let t = 0; t < V.length; t++) V[t] = rng.normal();
  const orthonormalise = (M: Float64Array) => {
    for (let c = 0; c < m; c++) {
      for (let p = 0; p < c; p++) {
        let dot = 0;
        for (let d = 0; d < dim; d++) dot += M[c * dim + d] * M[p * dim + d];
        for (let d = 0; d < dim; d++) M[c * dim + d] -= dot * M[p * dim + d];
      }
      let norm = 0;
      for (let d = 0; d < dim; d++) norm += M[c * dim + d] ** 2;
      norm = Math.sqrt(norm) || 1;
      for (let d = 0; d < dim; d++) M[c * dim + d] /= norm;
    }
  };
  const mul = (M: Float64Array) => {
    const R = new Float64Array(dim * m);
    for (let c = 0; c < m; c++) {
      for (let a = 0; a < dim; a++) {
        let s = 0;
        for (let b = 0; b < dim; b++) s += cov[a * dim + b] * M[c * dim + b];
        R[c * dim + a] = s;
      }
    }
    return R;
  };
  orthonormalise(V);
  for (let it = 0; it < 60; it++) {
    V = mul(V);
    orthonormalise(V);
  }
  // Rayleigh-Ritz: eigenvectors of Vᵀ C V rotate V onto the principal axes.
  const CV = mul(V);
  const H = new Float64Array(m * m);
  for (let p = 0; p < m; p++) for (let q = 0; q < m; q++) {
    let s = 0;
    for (let d = 0; d < dim; d++) s += V[p * dim + d] * CV[q * dim + d];
    H[p * m + q] = s;
  }
  const { values, vectors } = jacobiEigen(H, m);
  const order = Array.from({ length: m }, (_, i) => i).sort((a, b) => values[b] - values[a]);
  const axes: Float64Array[] = [];
  for (let c = 0; c < 2; c++) {
    const axis = new Float64Array(dim);
    if (c < m) {
      const e = order[c];
      for (let q = 0; q < m; q++) {
        const w = vectors[q * m + e];
        for (let d = 0; d < dim; d++) axis[d] += w * V[q * dim + d];
      }
    }
    let big = 0;
    for (let d = 0; d < dim; d++) if (Math.abs(axis[d]) > Math.abs(big)) big = axis[d];
    if (big < 0) for (let d = 0; d < dim; d++) axis[d] = -axis[d];
    axes.push(axis);
  }
  const y = new Float64Array(n * 2);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 2; c++) {
      let s = 0;
      for (let d = 0; d < dim; d++) s += (data[i * dim + d] - mean[d]) * axes[c][d];
      y[i * 2 + c] = s;
    }
  }
  return scaleInit(y, n);
}

/** Centre, then scale so that the first coordinate has std 1e-4. */
function scaleInit(y: Float64Array, n: number): Float64Array {
  for (let c = 0; c < 2; c++) {
    let mu = 0;
    for (let i = 0; i < n; i++) mu += y[i * 2 + c];
    mu /= n;
    for (let i = 0; i < n; i++) y[i * 2 + c] -= mu;
  }
  let v = 0;
  for (let i = 0; i < n; i++) v += y[i * 2] ** 2;
  const std = Math.sqrt(v / n);
  const f = std > 0 ? 1e-4 / std : 1;
  for (let t = 0; t < y.length; t++) y[t] *= f;
  return y;
}

// ---------------------------------------------------------------------------------------------
// Quadtree and gradient.

const MAX_DEPTH = 40;

/** Typed arrays on ordinary or shared memory (workers read the shared ones in place). */
interface Alloc {
  f64(n: number): Float64Array;
  i32(n: number): Int32Array;
}
const heapAlloc: Alloc = { f64: (n) => new Float64Array(n), i32: (n) => new Int32Array(n) };
const sharedAlloc: Alloc = {
  f64: (n) => new Float64Array(new SharedArrayBuffer(8 * n)),
  i32: (n) => new Int32Array(new SharedArrayBuffer(4 * n)),
};

/**
 * Quadtree in depth-first order with skip pointers: node `t`'s children follow it, and
 * `skip[t]` is the first node after its subtree, so traversal is a loop without a stack.
 * Leaves hold up to `leafSize` points (copied in tree order into px/py for locality).
 * With `shared`, everything the repulsion reads or writes lives on SharedArrayBuffers.
 */
export class QuadTree {
  count = 0;
  comX: Float64Array;
  comY: Float64Array;
  mass: Float64Array;
  /** squared side length of the cell. */
  side2: Float64Array;
  skip: Int32Array;
  /** for leaves: [leafStart, leafEnd) into order/px/py; leafEnd = -1 for inner nodes. */
  leafStart: Int32Array;
  leafEnd: Int32Array;
  order: Int32Array;
  px: Float64Array;
  py: Float64Array;
  /** leaf node ids, in tree order. */
  leaves: Int32Array;
  leafCount = 0;
  /** per tree position: repulsion outputs (reused every iteration). */
  zBuf: Float64Array;
  fxBuf: Float64Array;
  fyBuf: Float64Array;
  /** bumped whenever the node arrays are reallocated (workers must be sent the new ones). */
  generation = 0;
  private alloc: Alloc;
  private scratch: Int32Array;
  private quad: Uint8Array;

  /** leafSize: points per leaf before splitting (exact interactions inside opened leaves). */
  constructor(readonly n: number, readonly leafSize = 16, shared = false) {
    const A = (this.alloc = shared ? sharedAlloc : heapAlloc);
    this.order = new Int32Array(n);
    for (let i = 0; i < n; i++) this.order[i] = i;
    this.px = A.f64(n);
    this.py = A.f64(n);
    this.scratch = new Int32Array(n);
    this.quad = new Uint8Array(n);
    this.leaves = A.i32(n);
    this.zBuf = A.f64(n);
    this.fxBuf = A.f64(n);
    this.fyBuf = A.f64(n);
    const size = Math.max(64, Math.ceil(n / 2));
    [this.comX, this.comY, this.mass, this.side2] = [A.f64(size), A.f64(size), A.f64(size), A.f64(size)];
    [this.skip, this.leafStart, this.leafEnd] = [A.i32(size), A.i32(size), A.i32(size)];
  }

  private grow(size: number) {
    const A = this.alloc;
    const copyF = (a: Float64Array) => { const b = A.f64(size); b.set(a); return b; };
    const copyI = (a: Int32Array) => { const b = A.i32(size); b.set(a); return b; };
    this.comX = copyF(this.comX);
    this.comY = copyF(this.comY);
    this.mass = copyF(this.mass);
    this.side2 = copyF(this.side2);
    this.skip = copyI(this.skip);
    this.leafStart = copyI(this.leafStart);
    this.leafEnd = copyI(this.leafEnd);
    this.generation++;
  }

  /** What the repulsion kernel reads and writes (tsne-kernels.mjs). */
  view(): TreeView {
    return {
      comX: this.comX, comY: this.comY, mass: this.mass, side2: this.side2, skip: this.skip,
      leafStart: this.leafStart, leafEnd: this.leafEnd, px: this.px, py: this.py, leaves: this.leaves,
      count: this.count, leafCount: this.leafCount, leafSize: this.leafSize, z: this.zBuf, fx: this.fxBuf, fy: this.fyBuf,
    };
  }

  build(y: Float64Array): void {
    const n = this.n;
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (let i = 0; i < n; i++) {
      const a = y[2 * i], b = y[2 * i + 1];
      if (a < x0) x0 = a;
      if (a > x1) x1 = a;
      if (b < y0) y0 = b;
      if (b > y1) y1 = b;
    }
    const size = Math.max(x1 - x0, y1 - y0) * (1 + 1e-9) + 1e-12;
    this.count = 0;
    this.leafCount = 0;
    // `order` keeps last iteration's tree order: nearly sorted input keeps partitions cheap.
    this.node(y, 0, n, x0, y0, size, 0);
    for (let p = 0; p < n; p++) {
      const i = this.order[p];
      this.px[p] = y[2 * i];
      this.py[p] = y[2 * i + 1];
    }
  }

  private node(y: Float64Array, start: number, end: number, x0: number, y0: number, size: number, depth: number): void {
    if (this.count >= this.mass.length) this.grow(this.mass.length * 2);
    const t = this.count++;
    const order = this.order;
    let sx = 0, sy = 0;
    for (let p = start; p < end; p++) {
      const i = order[p];
      sx += y[2 * i];
      sy += y[2 * i + 1];
    }
    const m = end - start;
    this.comX[t] = sx / m;
    this.comY[t] = sy / m;
    this.mass[t] = m;
    this.side2[t] = size * size;
    if (m <= this.leafSize || depth >= MAX_DEPTH) {
      this.leafStart[t] = start;
      this.leafEnd[t] = end;
      this.skip[t] = this.count;
      this.leaves[this.leafCount++] = t;
      return;
    }
    this.leafStart[t] = start;
    this.leafEnd[t] = -1;
    const h = size / 2;
    const xm = x0 + h, ym = y0 + h;
    // Stable 4-way partition by quadrant (stable keeps the order deterministic and local).
    const quad = this.quad;
    let q0 = 0, q1 = 0, q2 = 0;
    for (let p = start; p < end; p++) {
      const i = order[p];
      const c = (y[2 * i] >= xm ? 1 : 0) + (y[2 * i + 1] >= ym ? 2 : 0);
      quad[p] = c;
      if (c === 0) q0++;
      else if (c === 1) q1++;
      else if (c === 2) q2++;
    }
    const b1 = start + q0, b2 = b1 + q1, b3 = b2 + q2;
    let w0 = start, w1 = b1, w2 = b2, w3 = b3;
    const tmp = this.scratch;
    for (let p = start; p < end; p++) {
      const c = quad[p];
      const i = order[p];
      if (c === 0) tmp[w0++] = i;
      else if (c === 1) tmp[w1++] = i;
      else if (c === 2) tmp[w2++] = i;
      else tmp[w3++] = i;
    }
    for (let p = start; p < end; p++) order[p] = tmp[p];
    if (b1 > start) this.node(y, start, b1, x0, y0, h, depth + 1);
    if (b2 > b1) this.node(y, b1, b2, xm, y0, h, depth + 1);
    if (b3 > b2) this.node(y, b2, b3, x0, ym, h, depth + 1);
    if (end > b3) this.node(y, b3, end, xm, ym, h, depth + 1);
    this.skip[t] = this.count;
  }
}

/**
 * Repulsion for all points (tsne-kernels.mjs, repulsionLeaves: one traversal per leaf, the cell
 * criterion measured to the leaf's bounding box, so never less accurate than per-point BH).
 * Results go to z/fx/fy by tree position; z excludes self-pairs.
 */
export function repulsionAll(tree: QuadTree, theta2: number, zOut: Float64Array, fxOut: Float64Array, fyOut: Float64Array): void {
  const v = tree.view();
  repulsionLeaves({ ...v, z: zOut, fx: fxOut, fy: fyOut }, theta2, 0, tree.leafCount, new Float64Array(3 * 1024));
}

/** Threads used by default: one below 4 096 points (worker start-up would not pay), else all cores up to 8. */
export function defaultThreads(n: number): number {
  return n < 4096 ? 1 : Math.max(1, Math.min(8, os.availableParallelism()));
}

const WORKER_URL = new URL('./tsne-worker.mjs', import.meta.url);

/** Worker threads that share the work items of each iteration with the main thread (see tsne-worker.mjs). */
class WorkerPool {
  private ctrl = new Int32Array(new SharedArrayBuffer(4 * CTRL_WORDS));
  private ports: MessagePort[] = [];
  private workers: Worker[] = [];
  private sentGeneration = -1;
  private setupSent = false;

  constructor(readonly count: number) {
    for (let w = 0; w < count; w++) {
      const { port1, port2 } = new MessageChannel();
      // execArgv []: a plain worker, not a second tsx/vitest loader (the worker is plain JS)
      const worker = new Worker(WORKER_URL, { workerData: { ctrl: this.ctrl, port: port2 }, transferList: [port2], execArgv: [] });
      worker.unref();
      port1.unref();
      this.ports.push(port1);
      this.workers.push(worker);
    }
  }

  /** Waits (blocking) until every worker has started; false after `ms` without them. */
  ready(ms: number): boolean {
    const until = Date.now() + ms;
    for (;;) {
      const r = Atomics.load(this.ctrl, READY);
      if (r >= this.count) return true;
      const left = until - Date.now();
      if (left <= 0) return false;
      Atomics.wait(this.ctrl, READY, r, left);
    }
  }

  /** Runs one iteration's work items on the workers and this thread; returns when all are done. */
  run(view: IterationView, treeGeneration: number, list: Float64Array): Float64Array {
    const { ctrl } = this;
    const msg: Record<string, unknown> = { count: view.tree.count, leafCount: view.tree.leafCount, theta2: view.theta2, exaggeration: view.exaggeration };
    if (!this.setupSent) {
      msg.setup = { n: view.n, rowPtr: view.rowPtr, cols: view.cols, vals: view.vals, y: view.y, attr: view.attr };
      this.setupSent = true;
    }
    if (treeGeneration !== this.sentGeneration) {
      msg.tree = view.tree;
      this.sentGeneration = treeGeneration;
    }
    for (const p of this.ports) p.postMessage(msg);
    Atomics.store(ctrl, NEXT, 0);
    Atomics.store(ctrl, DONE, 0);
    Atomics.add(ctrl, GEN, 1);
    Atomics.notify(ctrl, GEN);
    list = runItems(view, ctrl, list);
    for (let d = Atomics.load(ctrl, DONE); d < this.count; d = Atomics.load(ctrl, DONE)) Atomics.wait(ctrl, DONE, d);
    if (Atomics.load(ctrl, FAILED)) {
      const why = this.ports.map((p) => receiveMessageOnPort(p)?.message).filter(Boolean).join('\n');
      this.close();
      throw new Error(`t-SNE worker thread failed: ${why}`);
    }
    return list;
  }

  close(): void {
    for (const p of this.ports) p.postMessage({ exit: true });
    Atomics.add(this.ctrl, GEN, 1);
    Atomics.notify(this.ctrl, GEN);
    for (const p of this.ports) p.close();
    this.ports = [];
  }
}

/**
 * The gradient of one P with reusable buffers, on `threads` threads (the main one included).
 * The result does not depend on `threads`: every output is a fixed-order sum over inputs that
 * the split does not change, and the sums across points run on this thread in index order.
 */
export class TsneGradient {
  readonly tree: QuadTree;
  /** threads actually used (1 if workers could not start). */
  readonly threads: number;
  private y: Float64Array;
  private attr: Float64Array;
  private rowPtr: Int32Array;
  private cols: Int32Array;
  private vals: Float64Array;
  private list: Float64Array = new Float64Array(3 * 1024);
  private pool?: WorkerPool;

  constructor(readonly P: SparseMatrix, threads = 1, onLog?: (message: string) => void) {
    const n = P.n;
    let pool: WorkerPool | undefined;
    if (threads > 1) {
      pool = new WorkerPool(threads - 1);
      if (!pool.ready(20_000)) {
        pool.close();
        pool = undefined;
        onLog?.('t-SNE worker threads did not start within 20 s; continuing on one thread (same result, slower)');
      }
    }
    this.pool = pool;
    this.threads = pool ? threads : 1;
    const A = pool ? sharedAlloc : heapAlloc;
    this.tree = new QuadTree(n, 16, !!pool);
    this.y = A.f64(2 * n);
    this.attr = A.f64(2 * n);
    const copy = <T extends Int32Array | Float64Array>(src: T, make: (len: number) => T): T => { const d = make(src.length); d.set(src); return d; };
    this.rowPtr = pool ? copy(P.rowPtr, A.i32) : P.rowPtr;
    this.cols = pool ? copy(P.cols, A.i32) : P.cols;
    this.vals = pool ? copy(P.vals, A.f64) : P.vals;
  }

  /** grad ← ∂C/∂y / 4 for P scaled by `exaggeration`; returns Z, the normaliser of Q. */
  compute(y: Float64Array, theta: number, exaggeration: number, grad: Float64Array): number {
    const n = this.P.n;
    const qt = this.tree;
    this.y.set(y);
    qt.build(this.y);
    const view: IterationView = {
      n, tree: qt.view(), theta2: theta * theta, exaggeration,
      rowPtr: this.rowPtr, cols: this.cols, vals: this.vals, y: this.y, attr: this.attr,
    };
    if (this.pool) {
      this.list = this.pool.run(view, qt.generation, this.list);
    } else {
      this.list = repulsionLeaves(view.tree, view.theta2, 0, qt.leafCount, this.list);
      attractionRows(this.rowPtr, this.cols, this.vals, this.y, exaggeration, 0, n, this.attr);
    }
    const zs = qt.zBuf, fxs = qt.fxBuf, fys = qt.fyBuf; // by tree position
    let z = 0;
    for (let p = 0; p < n; p++) z += zs[p];
    const invZ = 1 / z;
    const order = qt.order;
    const attr = this.attr;
    for (let p = 0; p < n; p++) {
      const i = order[p];
      grad[2 * i] = attr[2 * i] - fxs[p] * invZ;
      grad[2 * i + 1] = attr[2 * i + 1] - fys[p] * invZ;
    }
    return z;
  }

  /** Stops the workers (idempotent). */
  close(): void {
    this.pool?.close();
    this.pool = undefined;
  }
}

/**
 * grad ← ∂C/∂y / 4 (see the header) for P scaled by `exaggeration`, with the repulsion from the
 * quadtree (θ = 0: exact). Returns Z, the normaliser of Q. One thread (TsneGradient for more).
 */
export function gradient(P: SparseMatrix, y: Float64Array, theta: number, exaggeration: number, grad: Float64Array): number {
  return new TsneGradient(P).compute(y, theta, exaggeration, grad);
}

// ---------------------------------------------------------------------------------------------
// The optimiser.

/** t-SNE of `n` points of `dim` float32 values each (row-major); returns n×2 float32 (x, y per point). */
export function tsne(data: Float32Array, n: number, dim: number, opts: TsneOptions = {}): Float32Array {
  const perplexity = opts.perplexity ?? 30;
  const iterations = opts.iterations ?? 1000;
  const theta = opts.theta ?? 0.5;
  const exag = opts.earlyExaggeration ?? 12;
  const exagIters = Math.min(iterations, opts.exaggerationIterations ?? 250);
  const every = opts.progressEvery ?? 10;
  if (data.length !== n * dim) throw new RangeError(`tsne: ${data.length} values for ${n}×${dim}`);
  if (!(theta >= 0 && theta <= 0.7)) throw new RangeError(`tsne: theta must be in [0, 0.7], got ${theta}`);
  if (n === 0) return new Float32Array(0);
  if (n === 1) return new Float32Array(2);
  const lr = opts.learningRate === undefined || opts.learningRate === 'auto' ? Math.max(n / exag, 200) : opts.learningRate;
  const rng = new Rng(opts.seed ?? 0);
  const threads = opts.threads ?? defaultThreads(n);
  if (!(Number.isInteger(threads) && threads >= 1)) throw new RangeError(`tsne: threads must be an integer ≥ 1, got ${threads}`);

  const P = inputAffinities(data, n, dim, perplexity, opts.knn);
  let y: Float64Array;
  if (opts.init instanceof Float32Array) {
    if (opts.init.length !== n * 2) throw new RangeError(`tsne: init has ${opts.init.length} values, want ${n * 2}`);
    y = Float64Array.from(opts.init);
  } else if (opts.init === 'random') {
    y = new Float64Array(n * 2);
    for (let t = 0; t < y.length; t++) y[t] = rng.normal() * 1e-4;
  } else {
    y = pcaInit(data, n, dim, rng);
  }

  const grad = new Float64Array(n * 2);
  const update = new Float64Array(n * 2);
  const gains = new Float64Array(n * 2);
  const engine = new TsneGradient(P, threads, opts.onLog);
  opts.onThreads?.(engine.threads);
  try {
    for (let it = 0; it < iterations; it++) {
      const early = it < exagIters;
      if (it === 0 || it === exagIters) {
        // new phase: sklearn restarts its optimiser (zero velocity, unit gains)
        update.fill(0);
        gains.fill(1);
      }
      const momentum = early ? 0.5 : 0.8;
      engine.compute(y, theta, early ? exag : 1, grad);
      for (let t = 0; t < y.length; t++) {
        const g = grad[t];
        const u = update[t];
        let gain = gains[t];
        gain = u * g < 0 ? gain + 0.2 : gain * 0.8;
        if (gain < 0.01) gain = 0.01;
        gains[t] = gain;
        const nu = momentum * u - lr * gain * g;
        update[t] = nu;
        y[t] += nu;
      }
      if (opts.onProgress && ((it + 1) % every === 0 || it + 1 === iterations)) opts.onProgress(it + 1, iterations);
    }
  } finally {
    engine.close();
  }
  return Float32Array.from(y);
}

/**
 * tsne() with the exact neighbour search on the TF.js backend (linalg.selfKnn: blocked matrix
 * products, float64 re-ranking), unless `opts.knn` is given. Same layout as tsne() up to the
 * neighbour sets (identical but for float32 rounding in the search; distances are float64 both ways).
 */
export async function tsneAsync(data: Float32Array, n: number, dim: number, opts: TsneOptions = {}): Promise<Float32Array> {
  if (n >= 2 && !opts.knn) {
    const k = neighbourCount(n, opts.perplexity ?? 30);
    const knn = await selfKnn(data, n, dim, k);
    return tsne(data, n, dim, { ...opts, knn });
  }
  return tsne(data, n, dim, opts);
}

// ---------------------------------------------------------------------------------------------
// Quality measures (used by tests and the benchmark).

/** Indices of the k nearest neighbours (excluding self) of each query, by squared euclidean distance. */
export function knnOf(points: Float32Array, n: number, dim: number, k: number, queries: ArrayLike<number>): Int32Array {
  const out = new Int32Array(queries.length * k);
  const bestD = new Float64Array(k);
  const bestI = new Int32Array(k);
  for (let q = 0; q < queries.length; q++) {
    const i = queries[q];
    bestD.fill(Infinity);
    bestI.fill(-1);
    for (let j = 0; j < n; j++) {
      if (j === i) continue;
      let s = 0;
      for (let c = 0; c < dim; c++) {
        const v = points[i * dim + c] - points[j * dim + c];
        s += v * v;
      }
      // insertion into the sorted top-k (ties: lower index first, as j ascends)
      if (s >= bestD[k - 1]) continue;
      let t = k - 1;
      while (t > 0 && bestD[t - 1] > s) {
        bestD[t] = bestD[t - 1];
        bestI[t] = bestI[t - 1];
        t--;
      }
      bestD[t] = s;
      bestI[t] = j;
    }
    out.set(bestI, q * k);
  }
  return out;
}

/** Mean share of each query's k nearest neighbours in `high` that are also among its k nearest in `low`. */
export function knnPreservation(high: Float32Array, dim: number, low: Float32Array, n: number, k: number, queries?: ArrayLike<number>): number {
  const qs = queries ?? Array.from({ length: n }, (_, i) => i);
  const a = knnOf(high, n, dim, k, qs);
  const b = knnOf(low, n, 2, k, qs);
  let hits = 0;
  for (let q = 0; q < qs.length; q++) {
    const set = new Set(a.subarray(q * k, q * k + k));
    for (let t = 0; t < k; t++) if (set.has(b[q * k + t])) hits++;
  }
  return hits / (qs.length * k);
}

/**
 * Trustworthiness (Venna & Kaski 2001) of a 2-D embedding, as sklearn.manifold.trustworthiness:
 * T(k) = 1 − 2/(n k (2n − 3k − 1)) Σ_i Σ_{j ∈ U_i} (r(i, j) − k), where U_i are the points
 * among i's k nearest in 2-D that are not among its k nearest in the input, and r(i, j) is j's
 * rank (1 = nearest) by input distance. O(n² log n): for evaluation sizes only.
 */
export function trustworthiness(high: Float32Array, dim: number, low: Float32Array, n: number, k: number): number {
  if (k >= n / 2) throw new RangeError(`trustworthiness: k=${k} must be < n/2`);
  const rank = new Int32Array(n);
  const d = new Float64Array(n);
  let penalty = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let c = 0; c < dim; c++) {
        const v = high[i * dim + c] - high[j * dim + c];
        s += v * v;
      }
      d[j] = j === i ? -Infinity : s;
    }
    const order = Array.from({ length: n }, (_, j) => j).sort((a, b) => d[a] - d[b] || a - b);
    // order[0] is i itself: ranks start at 1 for the nearest other point
    for (let r = 0; r < n; r++) rank[order[r]] = r;
    const lowNn = knnOf(low, n, 2, k, [i]);
    for (let t = 0; t < k; t++) {
      const r = rank[lowNn[t]];
      if (r > k) penalty += r - k;
    }
  }
  return 1 - (2 / (n * k * (2 * n - 3 * k - 1))) * penalty;
}
