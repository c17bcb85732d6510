/** Display helpers shared by the pages; all return plain text (Astro escapes it). */
export const int = (n: number): string => n.toLocaleString('en-US');
export const pct = (x: number, digits = 2): string => `${(100 * x).toFixed(digits)}%`;
export const shape = (s: readonly (number | null)[]): string => `[${s.map((d) => (d === null ? '?' : String(d))).join(', ')}]`;
export const pair = (p: readonly [number, number]): string => (p[0] === p[1] ? String(p[0]) : `${p[0]}×${p[1]}`);
export function ms(n: number): string {
  if (n < 1000) return `${Math.round(n)} ms`;
  if (n < 60_000) return `${(n / 1000).toFixed(1)} s`;
  return `${Math.floor(n / 60_000)} min ${Math.round((n % 60_000) / 1000)} s`;
}
/** A JSON value as compact text for tables. */
export const json = (v: unknown): string => (v === undefined ? '—' : JSON.stringify(v));
