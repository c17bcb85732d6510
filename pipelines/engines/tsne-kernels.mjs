// @ts-check
/**
 * The two hot loops of one Barnes-Hut t-SNE iteration (see tsne.ts for the maths), in plain
 * JavaScript so that the same code runs on the main thread and in worker threads
 * (tsne-worker.mjs) whatever loader started the process (tsx, vitest, plain node): a worker
 * cannot import TypeScript without a loader of its own.
 *
 * Both loops write only the outputs of their own range (leaves, or rows), and each output is a sum
 * in a fixed order over data that does not depend on who computes it: splitting the ranges over
 * threads gives the same bytes as one thread.
 */

/**
 * Repulsion for the points of leaves [from, to) (leaf numbers in tree order), one traversal per
 * leaf: a cell stands in for all its points when side² < θ²·d², d measured from its centre of
 * mass to the leaf's bounding box; opened leaves contribute their points one by one. The
 * traversal fills an interaction list (x, y, mass), then each point of the leaf sums over it.
 * Outputs by tree position p: z[p] = Σ w (self-pair excluded), fx/fy[p] = Σ w² (y_p − y_j).
 *
 * @param {import('./tsne-kernels.d.mts').TreeView} t
 * @param {number} theta2
 * @param {number} from
 * @param {number} to
 * @param {Float64Array} list scratch interaction list; a bigger one is returned when it grew
 * @returns {Float64Array}
 */
export function repulsionLeaves(t, theta2, from, to, list) {
  const { comX, comY, mass, side2, skip, leafStart, leafEnd, px, py, leaves, count, leafSize, z: zOut, fx: fxOut, fy: fyOut } = t;
  for (let l = from; l < to; l++) {
    const leaf = leaves[l];
    const a = leafStart[leaf], b = leafEnd[leaf];
    let minX = Infinity, maxX = -Infinity, minY = Infinity, maxY = -Infinity;
    for (let p = a; p < b; p++) {
      const x = px[p], y = py[p];
      if (x < minX) minX = x;
      if (x > maxX) maxX = x;
      if (y < minY) minY = y;
      if (y > maxY) maxY = y;
    }
    let len = 0;
    let c = 0;
    while (c < count) {
      if (len + 3 * leafSize + 3 > list.length) {
        const bigger = new Float64Array(list.length * 2);
        bigger.set(list);
        list = bigger;
      }
      const cx = comX[c], cy = comY[c];
      const ddx = cx < minX ? minX - cx : cx > maxX ? cx - maxX : 0;
      const ddy = cy < minY ? minY - cy : cy > maxY ? cy - maxY : 0;
      if (side2[c] < theta2 * (ddx * ddx + ddy * ddy)) {
        list[len++] = cx;
        list[len++] = cy;
        list[len++] = mass[c];
        c = skip[c];
      } else if (leafEnd[c] >= 0) {
        for (let q = leafStart[c], e = leafEnd[c]; q < e; q++) {
          list[len++] = px[q];
          list[len++] = py[q];
          list[len++] = 1;
        }
        c = skip[c];
      } else {
        c++;
      }
    }
    for (let p = a; p < b; p++) {
      const xi = px[p], yi = py[p];
      let z = 0, fx = 0, fy = 0;
      for (let r = 0; r < len; r += 3) {
        const dx = xi - list[r];
        const dy = yi - list[r + 1];
        const w = 1 / (1 + dx * dx + dy * dy);
        const mw = list[r + 2] * w;
        z += mw;
        const mw2 = mw * w;
        fx += mw2 * dx;
        fy += mw2 * dy;
      }
      // the self-pair (d = 0, w = 1) is in the list once: its own leaf is always opened
      zOut[p] = z - 1;
      fxOut[p] = fx;
      fyOut[p] = fy;
    }
  }
  return list;
}

/**
 * Attraction for rows [from, to) of the symmetric sparse P (every row holds all its entries):
 * out[2i..2i+1] = exaggeration · Σ_j p_ij (1 + |y_i − y_j|²)⁻¹ (y_i − y_j).
 *
 * @param {Int32Array} rowPtr
 * @param {Int32Array} cols
 * @param {Float64Array} vals
 * @param {Float64Array} y
 * @param {number} exaggeration
 * @param {number} from
 * @param {number} to
 * @param {Float64Array} out
 */
export function attractionRows(rowPtr, cols, vals, y, exaggeration, from, to, out) {
  for (let i = from; i < to; i++) {
    const xi = y[2 * i], yi = y[2 * i + 1];
    let ax = 0, ay = 0;
    for (let e = rowPtr[i], end = rowPtr[i + 1]; e < end; e++) {
      const j = cols[e];
      const dx = xi - y[2 * j];
      const dy = yi - y[2 * j + 1];
      const pw = vals[e] / (1 + dx * dx + dy * dy);
      ax += pw * dx;
      ay += pw * dy;
    }
    out[2 * i] = exaggeration * ax;
    out[2 * i + 1] = exaggeration * ay;
  }
}

/** Leaves per work item and rows per work item: small enough to balance two busy cores. */
export const LEAF_CHUNK = 32;
export const ROW_CHUNK = 1024;

/**
 * Runs work items taken from a shared counter until none are left: items [0, leafChunks) are
 * repulsion leaf ranges, the next rowChunks are attraction row ranges. Which thread takes which
 * item does not change any output (see the header).
 *
 * @param {import('./tsne-kernels.d.mts').IterationView} v
 * @param {Int32Array} ctrl shared control words; ctrl[NEXT] is the counter
 * @param {Float64Array} list
 * @returns {Float64Array} the (possibly grown) scratch list
 */
export function runItems(v, ctrl, list) {
  const leafChunks = Math.ceil(v.tree.leafCount / LEAF_CHUNK);
  const rowChunks = Math.ceil(v.n / ROW_CHUNK);
  for (;;) {
    const item = Atomics.add(ctrl, NEXT, 1);
    if (item >= leafChunks + rowChunks) return list;
    if (item < leafChunks) {
      const from = item * LEAF_CHUNK;
      list = repulsionLeaves(v.tree, v.theta2, from, Math.min(from + LEAF_CHUNK, v.tree.leafCount), list);
    } else {
      const from = (item - leafChunks) * ROW_CHUNK;
      attractionRows(v.rowPtr, v.cols, v.vals, v.y, v.exaggeration, from, Math.min(from + ROW_CHUNK, v.n), v.attr);
    }
  }
}

/** Indices into the shared Int32Array of control words. */
export const GEN = 0; // bumped by the main thread: "a new iteration (or exit) is posted"
export const NEXT = 1; // next work item
export const DONE = 2; // workers finished with this generation
export const READY = 3; // workers started
export const FAILED = 4; // a worker threw (its message is posted back)
export const CTRL_WORDS = 8;
