/**
 * Linear assignment (minimum-cost matching of n rows to m ≥ n columns) by successive shortest
 * augmenting paths with dual potentials (the Hungarian method in Jonker-Volgenant's
 * shortest-path form): each row is added with one Dijkstra-like sweep over the columns on
 * reduced costs, so the whole solve is O(n²·m); fine for the t-SNE grid (n ≤ ~2 500).
 */

/**
 * Minimum-cost assignment. `cost` is row-major n×m (n ≤ m), finite. Returns, for each row, its
 * column (all distinct).
 */
export function linearAssignment(cost: ArrayLike<number>, n: number, m: number): Int32Array {
  if (n > m) throw new RangeError(`linearAssignment: ${n} rows cannot be matched to ${m} columns`);
  if (cost.length !== n * m) throw new RangeError(`linearAssignment: ${cost.length} costs for ${n}×${m}`);
  for (let t = 0; t < cost.length; t++) if (!Number.isFinite(cost[t])) throw new RangeError('linearAssignment: costs must be finite');
  // 1-based rows and columns; column 0 is a virtual start whose row is the one being inserted.
  const u = new Float64Array(n + 1); // row potentials
  const v = new Float64Array(m + 1); // column potentials
  const rowOf = new Int32Array(m + 1); // row matched to column j (0 = free)
  const prev = new Int32Array(m + 1); // previous column on the shortest path
  const dist = new Float64Array(m + 1);
  const done = new Uint8Array(m + 1);
  for (let i = 1; i <= n; i++) {
    rowOf[0] = i;
    let j0 = 0;
    dist.fill(Infinity);
    done.fill(0);
    // Grow a shortest-path tree on reduced costs c(i, j) − u_i − v_j ≥ 0 until a free column.
    do {
      done[j0] = 1;
      const i0 = rowOf[j0];
      const base = (i0 - 1) * m - 1;
      const ui = u[i0];
      let delta = Infinity;
      let j1 = 0;
      for (let j = 1; j <= m; j++) {
        if (done[j]) continue;
        const reduced = cost[base + j] - ui - v[j];
        if (reduced < dist[j]) {
          dist[j] = reduced;
          prev[j] = j0;
        }
        if (dist[j] < delta) {
          delta = dist[j];
          j1 = j;
        }
      }
      // Shift potentials so reduced costs stay ≥ 0 and the tree's edges stay tight.
      for (let j = 0; j <= m; j++) {
        if (done[j]) {
          u[rowOf[j]] += delta;
          v[j] -= delta;
        } else {
          dist[j] -= delta;
        }
      }
      j0 = j1;
    } while (rowOf[j0] !== 0);
    // Augment: flip the matching along the path back to the virtual column.
    do {
      const j1 = prev[j0];
      rowOf[j0] = rowOf[j1];
      j0 = j1;
    } while (j0 !== 0);
  }
  const colOf = new Int32Array(n);
  for (let j = 1; j <= m; j++) if (rowOf[j] > 0) colOf[rowOf[j] - 1] = j - 1;
  return colOf;
}

/**
 * Snaps 2-D points (n×2, x then y) to the cells of a cols×rows grid (n ≤ cols·rows), one point
 * per cell, minimising the total squared distance between each point and its cell centre after
 * both axes are rescaled to [0, 1]. Returns the cell (row-major: r·cols + c) of each point;
 * row 0 is the top (smallest y maps to the top, like image rows).
 */
export function snapToGrid(points: ArrayLike<number>, n: number, cols: number, rows: number): Int32Array {
  const cells = cols * rows;
  if (n > cells) throw new RangeError(`snapToGrid: ${n} points do not fit ${cols}×${rows} cells`);
  if (n === 0) return new Int32Array(0);
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (let i = 0; i < n; i++) {
    x0 = Math.min(x0, points[2 * i]);
    x1 = Math.max(x1, points[2 * i]);
    y0 = Math.min(y0, points[2 * i + 1]);
    y1 = Math.max(y1, points[2 * i + 1]);
  }
  const sx = x1 > x0 ? 1 / (x1 - x0) : 0;
  const sy = y1 > y0 ? 1 / (y1 - y0) : 0;
  const cost = new Float64Array(n * cells);
  for (let i = 0; i < n; i++) {
    const px = (points[2 * i] - x0) * sx;
    const py = (points[2 * i + 1] - y0) * sy;
    for (let r = 0; r < rows; r++) {
      const dy = py - (r + 0.5) / rows;
      for (let c = 0; c < cols; c++) {
        const dx = px - (c + 0.5) / cols;
        cost[i * cells + r * cols + c] = dx * dx + dy * dy;
      }
    }
  }
  return linearAssignment(cost, n, cells);
}
