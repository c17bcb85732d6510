/**
 * Builds the site from the hand-written fixture manifest (test/fixtures/site) under a non-root
 * base, then reads the generated HTML: content, escaping, published result files, and links.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildFixtureSite, htmlFiles, root, type BuiltSite } from './helpers/build-site';

const base = '/convlens-test/';
let site: BuiltSite | undefined;
let dist = '';
let buildLog = '';

const page = (p: string) => fs.readFileSync(path.join(dist, p), 'utf8');
/** HTML with quoted attribute values blanked: what remains is markup, where `<` starts a tag. */
const markupOnly = (html: string) => html.replace(/="[^"]*"/g, '=""').replace(/='[^']*'/g, "=''");

beforeAll(async () => {
  site = await buildFixtureSite({ base, name: 'site-test' });
  dist = site.dist;
  buildLog = site.log;
}, 120_000);

afterAll(() => site?.cleanup());

describe('site build from the fixture manifest', () => {
  it('builds every page: index, overviews, technique pages, method pages', () => {
    for (const p of ['index.html', 'reports/tiny/index.html', 'reports/failing/index.html', 'reports/tiny/example-technique/index.html',
      'reports/failing/example-technique/index.html', 'methods/index.html', 'methods/example-technique/index.html']) {
      expect(fs.existsSync(path.join(dist, p)), `${p}\n${buildLog}`).toBe(true);
    }
  });

  it('lists the reports on the index with model, dataset and accuracy', () => {
    const html = page('index.html');
    expect(html).toContain(`href="${base}reports/tiny/"`);
    expect(html).toContain('Tiny fixture report');
    expect(html).toContain('Tiny shapes');
    expect(html).toContain('75.00% on 12 test images');
  });

  it('shows the architecture table with receptive fields, provenance and accuracy', () => {
    const html = page('reports/tiny/index.html');
    const table = html.match(/<table id="layers">[\s\S]*?<tbody>([\s\S]*?)<\/tbody>/)?.[1] ?? '';
    const rows = [...table.matchAll(/<tr>([\s\S]*?)<\/tr>/g)].map((m) => [...m[1].matchAll(/<td[^>]*>([\s\S]*?)<\/td>/g)].map((c) => c[1].trim()));
    expect(rows).toHaveLength(6);
    expect(rows[3]).toEqual(['conv2d_2', 'Conv2D', 'relu', '[4, 4, 8]', '296', '8', '2', '-1.5']);
    expect(rows[2]).toEqual(['max_pooling2d_1', 'MaxPooling2D', '', '[4, 4, 4]', '0', '4', '2', '0.5']);
    expect(rows[4].slice(5)).toEqual(['', '', '']);
    expect(html).toContain('75.00%');
    expect(html).toContain('50.0%');
    expect(html).toContain('TF.js cpu kernels');
    expect(html).toContain('circle/broken.png');
    expect(html).toContain(`href="${base}reports/tiny/example-technique/"`);
  });

  it('publishes the sample images under <base>results/ and sizes them', () => {
    const html = page('reports/tiny/index.html');
    // `>` may occur inside a quoted attribute (the XSS class name in an alt text).
    const imgs = [...html.matchAll(/<img\s(?:[^>"]|"[^"]*")*>/g)].map((m) => m[0]).filter((i) => i.startsWith(`<img src="${base}results/`));
    expect(imgs).toHaveLength(5);
    for (const img of imgs) {
      expect(img).toContain(' width="64"');
      expect(img).toContain(' height="64"');
      expect(img).toMatch(/ alt="test sample \d of class \d \([^"]+\)"/);
      expect(img).toContain('loading="lazy"');
      const src = img.match(/src="([^"]*)"/)![1];
      expect(src.startsWith(`${base}results/0f0f0f0f0f0f0f0f/samples/`)).toBe(true);
      expect(fs.existsSync(path.join(dist, src.slice(base.length)))).toBe(true);
    }
  });

  it('escapes strings from the manifest', () => {
    const overview = page('reports/tiny/index.html');
    expect(overview).toContain('&lt;img src=x onerror=alert(1)&gt;');
    expect(overview).toContain('square &amp; &quot;quoted&quot;');
    expect(page('reports/failing/index.html')).toContain('out of memory &lt;b&gt;not bold&lt;/b&gt;');
    for (const file of htmlFiles(dist)) {
      const markup = markupOnly(fs.readFileSync(file, 'utf8'));
      expect(markup, file).not.toContain('<img src=x');
      expect(markup, file).not.toContain('<b>not bold');
    }
  });

  it('renders technique pages: result files, status, parameters, provenance, MDX', () => {
    const ok = page('reports/tiny/example-technique/index.html');
    expect(ok).toContain('MDX-RENDERED-OK');
    expect(ok).toMatch(/<img src="\/convlens-test\/results\/abababababababab\/heatmap\.png"[^>]* width="6" height="3"/);
    expect(ok).toContain(`href="${base}results/abababababababab/scores.csv" download`);
    expect(ok).toContain('abababababababab');
    expect(ok).toContain('1.5 s');
    const failed = page('reports/failing/example-technique/index.html');
    expect(failed).toContain('status-error');
    expect(failed).toContain('layer &#39;conv9&#39; not found');
    const method = page('methods/example-technique/index.html');
    expect(method).toContain('Example technique, explained');
    expect(method).toContain('How many images to explain.');
    expect(method).toContain('integer ≥ 1 ≤ 64');
  });

  it('frames every result with a method card, and the technique component when one exists', () => {
    const ok = page('reports/tiny/example-technique/index.html');
    expect(ok).toContain('Method card');
    expect(ok).toMatch(/Seed <span class="mono">7<\/span>/);
    expect(ok).toContain('changed from the default: <code>samples</code>, <code>mode</code>');
    expect(ok).toContain('1.5 s wall time on cpu (TF.js cpu kernels, software)');
    expect(ok).toContain('id="params-used"');
    // no component for the fixture's made-up technique: the generic listing
    expect(ok).toContain(`href="${base}results/abababababababab/scores.csv" download`);
    const cm = page('reports/tiny/confusion-matrix/index.html');
    expect(cm).toContain('Method card');
    if (fs.existsSync(path.join(root, 'src/components/results/confusion-matrix.astro'))) {
      expect(cm).toContain('id="cell-1-2"');
    }
    // the cross-link list: misclassified cells → image pages
    expect(cm).toContain(`href="${base}reports/tiny/images/test-5/"`);
  });

  it('typesets maths with KaTeX at build time and bundles its fonts', () => {
    const method = page('methods/example-technique/index.html');
    expect(method).toContain('class="katex-display"');
    expect(method).toContain('class="katex-mathml"');
    expect(method).not.toContain('$$');
    const assets = fs.readdirSync(path.join(dist, '_astro'));
    expect(assets.some((f) => /^KaTeX_Main-Regular.*\.woff2$/.test(f))).toBe(true);
    const css = assets.filter((f) => f.endsWith('.css')).map((f) => fs.readFileSync(path.join(dist, '_astro', f), 'utf8')).join('');
    expect(css).toContain('.katex');
    expect(css).not.toMatch(/url\(["']?https?:/);
  });

  it('builds a page per explained test image with its label, prediction, cell and technique views', () => {
    for (const i of [0, 5, 10]) expect(fs.existsSync(path.join(dist, `reports/tiny/images/test-${i}/index.html`))).toBe(true);
    const html = page('reports/tiny/images/test-5/index.html');
    expect(html).toContain('misclassified');
    expect(html).toContain('(70.0% confidence)');
    expect(html).toContain(`href="${base}reports/tiny/confusion-matrix/#cell-1-2"`);
    expect(html).toContain(`href="${base}reports/tiny/example-technique/#test-5"`);
    expect(html).toContain(`src="${base}results/abababababababab/inputs/test-5.png"`);
    expect(html).toContain(`src="${base}results/abababababababab/maps/test-5-heat.png"`);
    expect(html).toContain('&lt;img src=x onerror=alert(1)&gt;');
  });

  it('shows the confusion matrix on the overview, cells linked to the confusion-matrix page, and a chart', () => {
    const html = page('reports/tiny/index.html');
    expect(html).toContain(`href="${base}reports/tiny/confusion-matrix/#cell-1-2"`);
    expect(html).toContain(`href="${base}reports/tiny/images/test-10/"`);
    expect(html).toMatch(/<img src="data:image\/svg\+xml;base64,[^"]+" alt="Accuracy per class on the test split"/);
    expect(html).toContain('data-chart-spec=');
  });

  it('compares the faithfulness of every attribution map on the overview', () => {
    const html = page('reports/tiny/index.html');
    const table = html.slice(html.indexOf('id="faithfulness-table"'), html.indexOf('</table>', html.indexOf('id="faithfulness-table"')));
    expect(table).toContain('0.123');
    expect(table).toContain('0.568');
    expect(table).toContain('&lt;b&gt;max&lt;/b&gt;');
    expect(table).toContain('href="/convlens-test/reports/tiny/example-technique/"');
  });

  it('resolves every internal link and image to a file in dist', () => {
    const missing: string[] = [];
    for (const file of htmlFiles(dist)) {
      const html = fs.readFileSync(file, 'utf8');
      for (const m of html.matchAll(/(?:href|src)="([^"]*)"/g)) {
        const url = m[1].replace(/&amp;/g, '&');
        if (/^[a-z]+:/i.test(url) || url.startsWith('#')) {
          // Nothing may leave the site: no CDN, no external fonts.
          if (/^https?:/i.test(url)) missing.push(`${path.relative(dist, file)}: external ${url}`);
          continue;
        }
        expect(url.startsWith(base), `${path.relative(dist, file)}: ${url} ignores the base`).toBe(true);
        const rel = decodeURIComponent(url.slice(base.length).split(/[?#]/)[0]);
        const target = path.join(dist, rel);
        const ok = rel === '' || rel.endsWith('/') ? fs.existsSync(path.join(target, 'index.html')) : fs.existsSync(target) || fs.existsSync(path.join(target, 'index.html'));
        if (!ok) missing.push(`${path.relative(dist, file)}: ${url}`);
      }
    }
    expect(missing).toEqual([]);
  });
  it('publishes the scatter rows and the thumbnails cropped from the t-SNE grid sprite', async () => {
    const rows = JSON.parse(page('reports/tiny/scatter-tsne.json')) as { x: number; y: number; l: number; p: number; i: number; h: string; t: string }[];
    expect(rows).toHaveLength(12);
    expect(rows.map((r) => r.i)).toEqual([...Array(12).keys()]);
    expect(rows[6]).toMatchObject({ x: 6, y: 4.5, l: 1, p: 1 });
    // images 0, 5, 10 have pages and an input picture; the others only a sprite cell, or nothing
    expect(rows[5].h).toBe(`${base}reports/tiny/images/test-5/`);
    expect(rows[5].t).toBe(`${base}results/abababababababab/inputs/test-5.png`);
    expect(rows[3]).toMatchObject({ h: '', t: `${base}reports/tiny/thumbs/test-3.png` });
    // the fixture sprite paints cell of image i in grey 10 + 20 i: each crop must be exactly that cell
    const sharp = (await import('sharp')).default;
    for (const i of [1, 2, 3, 4, 6, 7, 8, 9, 11]) {
      const { data, info } = await sharp(path.join(dist, `reports/tiny/thumbs/test-${i}.png`)).raw().toBuffer({ resolveWithObject: true });
      expect([info.width, info.height]).toEqual([8, 8]);
      expect(new Set(data), `thumbnail of test ${i}`).toEqual(new Set([10 + 20 * i]));
    }
    // no crop for images that have their own picture
    expect(fs.existsSync(path.join(dist, 'reports/tiny/thumbs/test-5.png'))).toBe(false);
    // the static SVG stays for readers without JavaScript; the live spec loads the rows by URL
    const html = page('reports/tiny/tsne/index.html');
    expect(html).toContain('class="tsne-plot"');
    const attr = html.match(/class="chart-host scatter-host[^"]*" data-chart-spec="([^"]*)"/)![1];
    const spec = JSON.parse(attr.replace(/&#(\d+);/g, (_, n) => String.fromCharCode(Number(n))).replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&'));
    expect(spec.data.url).toBe(`${base}reports/tiny/scatter-tsne.json`);
  });
});
