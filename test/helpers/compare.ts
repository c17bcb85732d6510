import { expect } from 'vitest';

/** max|a − ref| / max|ref| (the absolute difference when ref is all zeros): how far a map is from a reference map. */
export function maxRelErr(a: ArrayLike<number>, ref: ArrayLike<number>): number {
  expect(a.length).toBe(ref.length);
  let d = 0;
  let m = 0;
  for (let i = 0; i < ref.length; i++) {
    d = Math.max(d, Math.abs(a[i] - ref[i]));
    m = Math.max(m, Math.abs(ref[i]));
  }
  return m > 0 ? d / m : d;
}
