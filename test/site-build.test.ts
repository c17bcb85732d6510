/**
 * Builds the site from the hand-written fixture manifest (test/fixtures/site) under a non-root
 * base, then reads the generated HTML: content, escaping, published result files, and links.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '..');
const fixture = path.join(root, 'test/fixtures/site');
const base = '/convlens-test/';
// Inside the project on purpose: Astro stages an outDir outside the cwd in <cwd>/.astro and
// deletes that folder afterwards, and the prerender step needs node_modules to resolve.
let work = '';
let dist = '';
let buildLog = '';

const page = (p: string) => fs.readFileSync(path.join(dist, p), 'utf8');
/** HTML with quoted attribute values blanked: what remains is markup, where `<` starts a tag. */
const markupOnly = (html: string) => html.replace(/="[^"]*"/g, '=""').replace(/='[^']*'/g, "=''");

function htmlFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const p = path.join(dir, d.name);
    return d.isDirectory() ? htmlFiles(p) : d.name.endsWith('.html') ? [p] : [];
  });
}

beforeAll(async () => {
  fs.mkdirSync(path.join(root, 'node_modules/.cache'), { recursive: true });
  work = fs.mkdtempSync(path.join(root, 'node_modules/.cache/convlens-site-test-'));
  dist = path.join(work, 'dist');
  // vitest exports Vite's env (BASE_URL=/, MODE=test, NODE_ENV=test…) into process.env, and the
  // build's import.meta.env would pick them up; the child gets a clean one.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(BASE_URL|MODE|DEV|PROD|SSR|NODE_ENV|TEST|VITEST.*)$/.test(k)));
  const { stdout, stderr } = await promisify(execFile)(process.execPath, [path.join(root, 'node_modules/astro/astro.js'), 'build', '--outDir', dist], {
    cwd: root,
    env: {
      ...env,
      CONVLENS_SITE_DATA: fixture,
      CONVLENS_METHODS_DIR: path.join(fixture, 'methods'),
      CONVLENS_BASE: base,
      CONVLENS_ASTRO_CACHE_DIR: path.join(work, 'cache'),
      ASTRO_TELEMETRY_DISABLED: '1',
    },
    maxBuffer: 16 * 1024 * 1024,
  });
  buildLog = stdout + stderr;
}, 120_000);

afterAll(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

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
    const imgs = [...html.matchAll(/<img\s(?:[^>"]|"[^"]*")*>/g)].map((m) => m[0]);
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
});
