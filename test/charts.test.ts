/** Chart spec builders: each compiles without a vega-lite warning and draws the expected marks. */
import { describe, expect, it } from 'vitest';
import { compileChart, renderSvg } from '../src/charts/render';
import { barSpec, heatmapSpec, lineSpec, scatterSpec } from '../src/charts/specs';

const names = ['circle', '<img src=x onerror=alert(1)>', 'square & "quoted"'];

/** The items of the first mark group of a kind (`symbol`, `rect`, `text`, `line`) in vega's SVG. */
function markGroups(svg: string, kind: string): string[] {
  return [...svg.matchAll(new RegExp(`<g class="mark-${kind} role-mark[^"]*"[^>]*>([\\s\\S]*?)</g>`, 'g'))].map((m) => m[1]);
}
const count = (s: string, re: RegExp) => (s.match(re) ?? []).length;

describe('chart specs', () => {
  it('scatter: one symbol per point, classes in the legend, escaped', async () => {
    const spec = scatterSpec([{ x: 0, y: 1, label: 0, index: 3 }, { x: 1, y: 0, label: 1, thumb: '/t.png' }, { x: 2, y: 2, label: 2, href: '/a/' }, { x: -1, y: 0.5, label: 0 }], names);
    expect(compileChart(spec).warnings).toEqual([]);
    const { svg, warnings } = await renderSvg(spec);
    expect(warnings).toEqual([]);
    const [points] = markGroups(svg, 'symbol');
    expect(count(points, /<path /g)).toBe(4);
    expect(svg).toContain('&lt;img src=x');
    expect(svg).not.toContain('<img');
    expect(count(svg, /xlink:href=/g)).toBe(1);
  });

  it('bar: one rect per category', async () => {
    const spec = barSpec(names.map((category, i) => ({ category, value: i / 2 })), { percent: true, max: 1, valueTitle: 'accuracy' });
    expect(compileChart(spec).warnings).toEqual([]);
    const { svg, warnings } = await renderSvg(spec);
    expect(warnings).toEqual([]);
    expect(count(markGroups(svg, 'rect')[0], /<path /g)).toBe(3);
    expect(svg).toContain('square &amp; "quoted"');
  });

  it('line: one path per series', async () => {
    const spec = lineSpec([{ name: 'deletion', values: [1, 0.5, 0.2, 0.1] }, { name: 'insertion', values: [0.1, 0.4, 0.8, 0.9] }], { x: [0, 1 / 3, 2 / 3, 1], xTitle: 'fraction of pixels' });
    expect(compileChart(spec).warnings).toEqual([]);
    const { svg, warnings } = await renderSvg(spec);
    expect(warnings).toEqual([]);
    const lines = markGroups(svg, 'line');
    expect(lines.reduce((n, g) => n + count(g, /<path /g), 0)).toBe(2);
    expect(count(markGroups(svg, 'symbol')[0], /<path /g)).toBe(8);
  });

  it('heatmap: n² cells with counts, links only on non-empty cells', async () => {
    const counts = [[2, 1, 0], [0, 3, 1], [1, 0, 4]];
    const spec = heatmapSpec(counts, names, { cellHref: (t, p) => `/r/confusion-matrix/#cell-${t}-${p}` });
    expect(compileChart(spec).warnings).toEqual([]);
    const { svg, warnings } = await renderSvg(spec);
    expect(warnings).toEqual([]);
    expect(count(svg, /aria-roledescription="rect mark"/g)).toBe(9);
    expect(count(markGroups(svg, 'text')[0], /<text /g)).toBe(9);
    expect(count(svg, /xlink:href="\/r\/confusion-matrix\/#cell-\d-\d"/g)).toBe(6);
    expect(svg).toContain('xlink:href="/r/confusion-matrix/#cell-1-2"');
  });
});
