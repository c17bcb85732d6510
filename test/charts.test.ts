/** Chart spec builders: each compiles without a vega-lite warning and draws the expected marks. */
import { describe, expect, it } from 'vitest';
import { compileChart, renderSvg } from '../src/charts/render';
import { barSpec, heatmapSpec, lineSpec, scatterRows, scatterSpec } from '../src/charts/specs';

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
    // only the one point with a page is a link
    expect(count(svg, /xlink:href=/g)).toBe(1);
    expect(svg).toContain('xlink:href="/a/"');
  });

  it('scatter rows: short keys, 5 significant digits, -1 / empty string for what is unknown', () => {
    expect(scatterRows([{ x: 1.234567, y: -0.000123456789, label: 2, predicted: 1, index: 7, href: '/r/images/test-7/', thumb: '/th/7.png' }, { x: 10, y: 20, label: 0 }])).toEqual([
      { x: 1.2346, y: -0.00012346, l: 2, p: 1, i: 7, h: '/r/images/test-7/', t: '/th/7.png' },
      { x: 10, y: 20, l: 0, p: -1, i: -1, h: '', t: '' },
    ]);
  });

  it('scatter tooltip: class, predicted class, image id and thumbnail; wheel zoom bound to the scales', async () => {
    const pts = [{ x: 0, y: 0, label: 1, predicted: 2, index: 5, thumb: '/th/5.png', href: '/p/5/' }, { x: 3, y: 4, label: 0, predicted: 0, index: 9 }];
    const { vg, warnings } = compileChart(scatterSpec(pts, names));
    expect(warnings).toEqual([]);
    const json = JSON.stringify(vg);
    // zoom and pan: vega-lite's scale-bound interval listens to the wheel and to drags
    expect(json).toContain('wheel');
    expect(json).toContain('zoom');
    // evaluate the tooltips the compiled view gives each point
    const vega = await import('vega');
    const view = new vega.View(vega.parse(vg), { renderer: 'none' });
    await view.runAsync();
    type Group = { role?: string; marktype?: string; items: { tooltip: Record<string, unknown>; href?: string }[] };
    const root = (view.scenegraph() as unknown as { root: { items: { items: Group[] }[] } }).root;
    const marks = root.items[0].items.find((g) => g.marktype === 'symbol' && g.role === 'mark')!;
    const tips = marks.items.map((it) => ({ tooltip: it.tooltip, href: it.href }));
    view.finalize();
    expect(tips).toEqual([
      { tooltip: { class: names[1], predicted: 'square & "quoted"', 'image id': 'test #5', image: '/th/5.png' }, href: '/p/5/' },
      { tooltip: { class: 'circle', predicted: 'circle', 'image id': 'test #9', image: '' }, href: '' },
    ]);
  });

  it('scatter with a data URL: the rows are not inlined', () => {
    const spec = scatterSpec([{ x: 0, y: 0, label: 0, thumb: '/a.png' }], names, { dataUrl: '/r/scatter-tsne.json' });
    expect(spec.data).toEqual({ url: '/r/scatter-tsne.json', format: { type: 'json' } });
    expect(compileChart(spec).warnings).toEqual([]);
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
