/**
 * Dense linear algebra over feature files, on the TF.js backend, in row blocks so that memory
 * stays bounded by a block however many rows there are.
 *
 * wasm note: only `matMul(a, b)` without transposes reaches XNNPACK; transposeA / transposeB take
 * a scalar loop up to ~50× slower, so every product here materialises its transpose first.
 */
import * as tf from '@tensorflow/tfjs-core';
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';

/** A block of consecutive rows of a row-major float32 matrix. */
export interface RowBlock {
  start: number;
  count: number;
  values: Float32Array;
}
export type BlockSource = AsyncIterable<RowBlock>;

export type Metric = 'cosine' | 'euclidean';

export interface KnnResult {
  k: number;
  /** queries × k reference-row indices, nearest first (-1 when fewer than k rows exist). */
  indices: Int32Array;
  /** queries × k distances: euclidean ‖q − r‖, or cosine 1 − cos(q, r). */
  distances: Float32Array;
}

/** Rows scaled to unit length; an all-zero row stays zero (its cosine with anything is 0). */
function unitRows(x: tf.Tensor2D): tf.Tensor2D {
  return tf.div(x, tf.maximum(tf.norm(x, 'euclidean', 1, true), 1e-12));
}

/**
 * Exact k nearest neighbours of `queries` (m × dim) among the rows streamed by `reference`.
 * Per reference block: one matrix product Q·Bᵀ on the backend scores all m × n pairs
 * (‖q − b‖² = ‖q‖² + ‖b‖² − 2 q·b, or 1 − q̂·b̂), tf.topk picks each query's k best in the block,
 * and only those m × k values come back to JS, where they are merged into a running top-k.
 * Ties keep the lower reference index.
 */
export async function exactKnn(
  queries: Float32Array,
  dim: number,
  reference: BlockSource,
  opts: { k: number; metric: Metric; onBlock?: (rowsDone: number) => void },
): Promise<KnnResult> {
  const { k, metric } = opts;
  const m = queries.length / dim;
  if (!Number.isInteger(m)) throw new RangeError(`exactKnn: ${queries.length} values is not a multiple of dim ${dim}`);
  const bestD = new Float32Array(m * k).fill(Infinity);
  const bestI = new Int32Array(m * k).fill(-1);
  if (m === 0) return { k, indices: bestI, distances: bestD };
  // ‖q‖² is the same for every candidate of a query, so the ranking needs only 2 q·b − ‖b‖²
  // (or q̂·b̂ for cosine): one product and one broadcast op per block, then top-k of the largest
  const qNorm2 = new Float64Array(m);
  for (let r = 0; r < m; r++) for (let j = 0; j < dim; j++) qNorm2[r] += queries[r * dim + j] ** 2;
  const q = tf.tidy(() => {
    const raw = tf.tensor2d(queries, [m, dim]);
    return metric === 'cosine' ? unitRows(raw) : tf.mul(raw, 2);
  });
  const mergedD = new Float32Array(k);
  const mergedI = new Int32Array(k);
  try {
    for await (const block of reference) {
      if (block.count === 0) continue;
      const kb = Math.min(k, block.count);
      const { values, indices } = tf.tidy(() => {
        let b: tf.Tensor2D = tf.tensor2d(block.values, [block.count, dim]);
        if (metric === 'cosine') b = unitRows(b);
        const score = tf.matMul(q, tf.transpose(b)); // m × n, explicit transpose (see the wasm note)
        const ranked = metric === 'cosine' ? score : tf.sub(score, tf.reshape(tf.sum(tf.square(b), 1), [1, block.count]));
        return tf.topk(ranked, kb, true);
      });
      const [best, idx] = await Promise.all([values.data(), indices.data()]);
      tf.dispose([values, indices]);
      // merge two ascending lists (running best, this block's best) per query
      for (let r = 0; r < m; r++) {
        let a = 0;
        let c = 0;
        const base = r * k;
        for (let o = 0; o < k; o++) {
          // score → distance: 1 − cos, or ‖q‖² − (2 q·b − ‖b‖²) = ‖q − b‖²
          const blockD = c < kb ? (metric === 'cosine' ? 1 - best[r * kb + c] : qNorm2[r] - best[r * kb + c]) : Infinity;
          if (a < k && bestD[base + a] <= blockD) {
            mergedD[o] = bestD[base + a];
            mergedI[o] = bestI[base + a++];
          } else if (c < kb) {
            mergedD[o] = blockD;
            mergedI[o] = block.start + idx[r * kb + c++];
          } else {
            mergedD[o] = Infinity;
            mergedI[o] = -1;
          }
        }
        bestD.set(mergedD, base);
        bestI.set(mergedI, base);
      }
      opts.onBlock?.(block.start + block.count);
    }
  } finally {
    q.dispose();
  }
  // squared distances → distances; rounding can make a tiny negative
  for (let i = 0; i < bestD.length; i++) {
    if (bestI[i] < 0) continue;
    const v = Math.max(0, bestD[i]);
    bestD[i] = metric === 'euclidean' ? Math.sqrt(v) : v;
  }
  return { k, indices: bestI, distances: bestD };
}

/**
 * A float32 tensor's values. On wasm: a view of the wasm heap, no copy (copying a 16 MB product
 * into a fresh array cost 10–50× the product itself on the 2-core box); valid only until the
 * next TF.js op or dispose. Elsewhere: data().
 */
async function valuesOf(t: tf.Tensor): Promise<Float32Array> {
  const be = tf.backend() as unknown as { typedArrayFromHeap?: (t: tf.Tensor) => Float32Array };
  if (tf.getBackend() === 'wasm' && typeof be.typedArrayFromHeap === 'function' && t.dtype === 'float32') return be.typedArrayFromHeap(t);
  return (await t.data()) as Float32Array;
}

/**
 * Per row, a max-heap of the k best (distance, index) pairs offered so far (root = worst kept);
 * among equal distances the lower index wins. `worst[i]` mirrors row i's root in a compact array,
 * so that callers can reject most candidates inline before calling offer().
 */
export class KnnHeaps {
  readonly dist: Float64Array;
  readonly index: Int32Array;
  readonly worst: Float64Array;
  constructor(readonly rows: number, readonly k: number) {
    this.dist = new Float64Array(rows * k).fill(Infinity);
    this.index = new Int32Array(rows * k).fill(-1);
    this.worst = new Float64Array(rows).fill(Infinity);
  }

  offer(i: number, j: number, d: number): void {
    const { k, dist, index } = this;
    const base = i * k;
    const top = dist[base];
    if (d > top || (d === top && j > index[base])) return;
    // replace the root and sift down
    let pos = 0;
    for (;;) {
      const l = 2 * pos + 1;
      if (l >= k) break;
      const r = l + 1;
      let c = l;
      if (r < k && (dist[base + r] > dist[base + l] || (dist[base + r] === dist[base + l] && index[base + r] > index[base + l]))) c = r;
      const cd = dist[base + c];
      if (cd < d || (cd === d && index[base + c] < j)) break;
      dist[base + pos] = cd;
      index[base + pos] = index[base + c];
      pos = c;
    }
    dist[base + pos] = d;
    index[base + pos] = j;
    this.worst[i] = dist[base];
  }

  /** Each row's entries, ascending by (distance, index). */
  sorted(): { indices: Int32Array; dist2: Float64Array } {
    const { rows, k, dist, index } = this;
    const indices = new Int32Array(rows * k);
    const dist2 = new Float64Array(rows * k);
    const order = new Array<number>(k);
    for (let i = 0; i < rows; i++) {
      const base = i * k;
      for (let t = 0; t < k; t++) order[t] = t;
      order.sort((a, b) => dist[base + a] - dist[base + b] || index[base + a] - index[base + b]);
      for (let t = 0; t < k; t++) {
        indices[base + t] = index[base + order[t]];
        dist2[base + t] = dist[base + order[t]];
      }
    }
    return { indices, dist2 };
  }
}

/**
 * Each row's candidate neighbours (`width` per row, -1 = none) re-ranked by squared euclidean
 * distance computed in float64 as Σ (a − b)² (no cancellation), keeping the k best; ties to the
 * lower index. Both neighbour searches end here, so they give the same bytes for the same sets.
 */
export function rerankKnn(data: Float32Array, dim: number, candidates: Int32Array, rows: number, width: number, k: number): { indices: Int32Array; dist2: Float64Array } {
  const indices = new Int32Array(rows * k);
  const dist2 = new Float64Array(rows * k);
  const candD = new Float64Array(width);
  const candI = new Int32Array(width);
  const order = Array.from({ length: width }, (_, t) => t);
  for (let i = 0; i < rows; i++) {
    let c = 0;
    for (let t = 0; t < width; t++) {
      const j = candidates[i * width + t];
      if (j < 0 || j === i) continue;
      let s = 0;
      for (let a = i * dim, b = j * dim, e = a + dim; a < e; a++, b++) {
        const v = data[a] - data[b];
        s += v * v;
      }
      candI[c] = j;
      candD[c++] = s;
    }
    if (c < k) throw new RangeError(`rerankKnn: row ${i} has ${c} candidates, needs ${k}`);
    const o = order.slice(0, c).sort((u, v) => candD[u] - candD[v] || candI[u] - candI[v]);
    for (let t = 0; t < k; t++) {
      indices[i * k + t] = candI[o[t]];
      dist2[i * k + t] = candD[o[t]];
    }
  }
  return { indices, dist2 };
}

/**
 * Exact k nearest neighbours of every row of `data` (n × dim) among the other rows, by squared
 * euclidean distance, ascending, ties to the lower index: the neighbour graph of t-SNE.
 *
 * The dot products come from the backend, one block pair at a time (each pair of row blocks
 * once: the distance is symmetric, so one product serves both blocks' rows), and JS keeps a
 * running top-(k + margin) per row (KnnHeaps; most candidates fail the inline test against the
 * row's worst kept distance). Reading the product back and scanning it in JS is several times
 * faster than tf.topk on wasm. The product is float32, and ‖a‖² + ‖b‖² − 2 a·b cancels when
 * points are close, so the candidates' distances are then recomputed in float64 and the k best
 * kept: only a neighbour that float32 rounding pushed behind `margin` others could be lost.
 */
export async function selfKnn(
  data: Float32Array,
  n: number,
  dim: number,
  k: number,
  opts: { blockRows?: number; margin?: number; onRows?: (rowsDone: number) => void } = {},
): Promise<{ indices: Int32Array; dist2: Float64Array }> {
  if (data.length !== n * dim) throw new RangeError(`selfKnn: ${data.length} values for ${n}×${dim}`);
  if (!(Number.isInteger(k) && k >= 1 && k < n)) throw new RangeError(`selfKnn: k=${k} needs 1 ≤ k < n=${n}`);
  const B = opts.blockRows ?? 2048;
  const want = Math.min(n - 1, k + (opts.margin ?? 8));
  const norms = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let d = i * dim, e = d + dim; d < e; d++) s += data[d] * data[d];
    norms[i] = s;
  }
  const heaps = new KnnHeaps(n, want);
  const worst = heaps.worst;
  const starts: number[] = [];
  for (let s = 0; s < n; s += B) starts.push(s);
  const rowsOf = (b: number) => Math.min(B, n - starts[b]);
  // every block on the backend once, and its transpose (wasm: matMul without transposeB flags)
  const blocks = starts.map((s, b) => tf.tensor2d(data.subarray(s * dim, (s + rowsOf(b)) * dim), [rowsOf(b), dim]));
  const blocksT = blocks.map((t) => tf.tidy(() => tf.transpose(t)));
  try {
    for (let I = 0; I < starts.length; I++) {
      const i0 = starts[I], ni = rowsOf(I);
      for (let J = I; J < starts.length; J++) {
        const j0 = starts[J], nj = rowsOf(J);
        const prod = tf.matMul(blocks[I], blocksT[J]);
        const dots = await valuesOf(prod);
        for (let r = 0; r < ni; r++) {
          const i = i0 + r;
          const normI = norms[i];
          let worstI = worst[i];
          const row = r * nj;
          // within a diagonal block, each pair once (c > r)
          for (let c = J === I ? r + 1 : 0; c < nj; c++) {
            const j = j0 + c;
            let d = normI + norms[j] - 2 * dots[row + c];
            if (d < 0) d = 0;
            if (d <= worstI) {
              heaps.offer(i, j, d);
              worstI = worst[i];
            }
            if (d <= worst[j]) heaps.offer(j, i, d);
          }
        }
        prod.dispose(); // after the scan: `dots` may be a view of the wasm heap
      }
      opts.onRows?.(i0 + ni);
    }
  } finally {
    tf.dispose([...blocks, ...blocksT]);
  }
  return rerankKnn(data, dim, heaps.sorted().indices, n, want, k);
}

/** Column means of a streamed matrix, accumulated in float64. */
export async function columnMeans(source: BlockSource, dim: number): Promise<{ mean: Float64Array; rows: number }> {
  const sum = new Float64Array(dim);
  let rows = 0;
  for await (const b of source) {
    for (let r = 0; r < b.count; r++) for (let j = 0; j < dim; j++) sum[j] += b.values[r * dim + j];
    rows += b.count;
  }
  for (let j = 0; j < dim; j++) sum[j] /= Math.max(rows, 1);
  return { mean: sum, rows };
}

/**
 * Sample covariance (X − μ)ᵀ(X − μ) / (n − 1) of a streamed matrix: each block's Bᵀ·B is one
 * backend product (float32), and the blocks are summed in float64 in JS.
 */
export async function covariance(source: BlockSource, dim: number, mean: Float64Array, rows: number, onBlock?: (rowsDone: number) => void): Promise<Float64Array> {
  const acc = new Float64Array(dim * dim);
  const mu = Float32Array.from(mean);
  const muT = tf.tensor2d(mu, [1, dim]);
  try {
    for await (const b of source) {
      const prod = tf.tidy(() => {
        const centred = tf.sub(tf.tensor2d(b.values, [b.count, dim]), muT);
        return tf.matMul(tf.transpose(centred), centred);
      });
      const v = await prod.data();
      prod.dispose();
      for (let i = 0; i < v.length; i++) acc[i] += v[i];
      onBlock?.(b.start + b.count);
    }
  } finally {
    muT.dispose();
  }
  const denom = Math.max(rows - 1, 1);
  // symmetrise: float32 products of blocks can differ in the last bit across the diagonal
  for (let i = 0; i < dim; i++) {
    for (let j = i; j < dim; j++) {
      const s = (acc[i * dim + j] + acc[j * dim + i]) / (2 * denom);
      acc[i * dim + j] = s;
      acc[j * dim + i] = s;
    }
  }
  return acc;
}

/**
 * Eigen-decomposition of a symmetric dim × dim matrix (ml-matrix: Householder tridiagonalisation
 * + QL), eigenvalues descending. `vectors[c]` is the unit eigenvector of `values[c]`, with its sign
 * fixed so that its largest-magnitude entry is positive (a deterministic choice; eigenvectors are
 * only defined up to sign).
 */
export function symmetricEigen(matrix: Float64Array, dim: number): { values: number[]; vectors: Float64Array[] } {
  const rows: number[][] = [];
  for (let i = 0; i < dim; i++) rows.push(Array.from(matrix.subarray(i * dim, (i + 1) * dim)));
  const evd = new EigenvalueDecomposition(new Matrix(rows), { assumeSymmetric: true });
  const values = evd.realEigenvalues;
  const V = evd.eigenvectorMatrix;
  const order = values.map((_, i) => i).sort((a, b) => values[b] - values[a]);
  const vectors = order.map((c) => {
    const v = Float64Array.from(V.getColumn(c));
    let big = 0;
    for (let i = 1; i < dim; i++) if (Math.abs(v[i]) > Math.abs(v[big])) big = i;
    if (v[big] < 0) for (let i = 0; i < dim; i++) v[i] = -v[i];
    return v;
  });
  return { values: order.map((c) => values[c]), vectors };
}

/** Projects streamed rows onto `axes` (each a dim-vector) after subtracting `mean`: rows × axes.length, row-major. */
export async function project(source: BlockSource, dim: number, mean: Float64Array, axes: Float64Array[], rows: number): Promise<Float32Array> {
  const a = axes.length;
  const out = new Float32Array(rows * a);
  const W = new Float32Array(dim * a);
  for (let c = 0; c < a; c++) for (let j = 0; j < dim; j++) W[j * a + c] = axes[c][j];
  const [w, mu] = [tf.tensor2d(W, [dim, a]), tf.tensor2d(Float32Array.from(mean), [1, dim])];
  try {
    for await (const b of source) {
      const y = tf.tidy(() => tf.matMul(tf.sub(tf.tensor2d(b.values, [b.count, dim]), mu), w));
      out.set(await y.data(), b.start * a);
      y.dispose();
    }
  } finally {
    tf.dispose([w, mu]);
  }
  return out;
}

/** Streams an in-memory row-major matrix in blocks (tests, small data). */
export async function* memoryBlocks(values: Float32Array, dim: number, blockRows: number): AsyncGenerator<RowBlock> {
  const rows = values.length / dim;
  for (let start = 0; start < rows; start += blockRows) {
    const count = Math.min(blockRows, rows - start);
    yield { start, count, values: values.subarray(start * dim, (start + count) * dim) };
  }
}
