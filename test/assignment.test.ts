import { describe, expect, it } from 'vitest';
import { linearAssignment, snapToGrid } from '../pipelines/engines/assignment';
import { Rng } from '../pipelines/rng';

function total(cost: ArrayLike<number>, m: number, cols: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < cols.length; i++) s += cost[i * m + cols[i]];
  return s;
}

/** Minimum over all injective row → column maps (m ≤ 7). */
function bruteForce(cost: ArrayLike<number>, n: number, m: number): number {
  let best = Infinity;
  const used = new Array<boolean>(m).fill(false);
  const rec = (i: number, acc: number) => {
    if (i === n) { best = Math.min(best, acc); return; }
    for (let j = 0; j < m; j++) {
      if (used[j]) continue;
      used[j] = true;
      rec(i + 1, acc + cost[i * m + j]);
      used[j] = false;
    }
  };
  rec(0, 0);
  return best;
}

describe('linearAssignment', () => {
  it('solves a hand case', () => {
    // Greedy (row 0 takes its cheapest, column 0) ends at 1 + 50 + 50 = 101; the optimum
    // gives row 0 its second choice: 2 + 2 + 3 = 7.
    const cost = [
      1, 2, 50,
      2, 100, 50,
      50, 50, 3,
    ];
    const cols = linearAssignment(cost, 3, 3);
    expect(Array.from(cols)).toEqual([1, 0, 2]);
    expect(total(cost, 3, cols)).toBe(7);
  });

  it('matches brute force on random square and rectangular cases (n ≤ 7)', () => {
    const rng = new Rng(12);
    for (let trial = 0; trial < 300; trial++) {
      const m = 1 + rng.int(7);
      const n = 1 + rng.int(m);
      const ints = trial % 2 === 0; // integer costs produce ties
      const cost = Array.from({ length: n * m }, () => (ints ? rng.int(5) : rng.next() * 10 - 3));
      const cols = linearAssignment(cost, n, m);
      expect(new Set(cols).size).toBe(n);
      for (const c of cols) expect(c >= 0 && c < m).toBe(true);
      expect(total(cost, m, cols)).toBeCloseTo(bruteForce(cost, n, m), 9);
    }
  });

  it('refuses more rows than columns and non-finite costs', () => {
    expect(() => linearAssignment([1, 2], 2, 1)).toThrow(/rows/);
    expect(() => linearAssignment([1, NaN], 1, 2)).toThrow(/finite/);
  });
});

describe('snapToGrid', () => {
  it('puts points that already sit on a grid into their own cells', () => {
    const rng = new Rng(1);
    const g = 6;
    const perm = rng.shuffle(Array.from({ length: g * g }, (_, i) => i));
    const pts = new Float32Array(g * g * 2);
    perm.forEach((cell, i) => { pts[2 * i] = (cell % g) * 3 + 1; pts[2 * i + 1] = Math.floor(cell / g) * 3 - 5; });
    expect(Array.from(snapToGrid(pts, g * g, g, g))).toEqual(perm);
  });

  it('gives every point a distinct cell when there are fewer points than cells', () => {
    const rng = new Rng(5);
    const pts = new Float32Array(40).map(() => rng.normal());
    const cells = snapToGrid(pts, 20, 5, 5);
    expect(new Set(cells).size).toBe(20);
  });

  it('handles a full 32 × 32 grid (1024 points; about a second on one core)', () => {
    const rng = new Rng(8);
    const n = 1024;
    const pts = new Float32Array(n * 2).map(() => rng.normal());
    const cells = snapToGrid(pts, n, 32, 32);
    expect(new Set(cells).size).toBe(n);
  });
});
