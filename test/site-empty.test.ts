/**
 * The site must build before anything has run: a manifest with no reports and no techniques,
 * and method pages for techniques the manifest does not know yet (skipped with a warning).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildFixtureSite, fixture, htmlFiles, type BuiltSite } from './helpers/build-site';

let site: BuiltSite | undefined;
let data = '';

beforeAll(async () => {
  data = fs.mkdtempSync(path.join(os.tmpdir(), 'convlens-empty-site-'));
  fs.writeFileSync(path.join(data, 'manifest.json'), JSON.stringify({ generatedAt: '2025-01-01T00:00:00.000Z', convlensVersion: '0.1.0', techniques: [], reports: [] }));
  // the fixture's method page names a technique this manifest does not register
  site = await buildFixtureSite({ base: '/', name: 'site-empty', dataDir: data, methodsDir: path.join(fixture, 'methods') });
}, 120_000);

afterAll(() => {
  site?.cleanup();
  if (data) fs.rmSync(data, { recursive: true, force: true });
});

describe('site build from an empty manifest', () => {
  it('builds the index and the methods index, saying there is nothing yet', () => {
    const pages = htmlFiles(site!.dist).map((f) => path.relative(site!.dist, f)).sort();
    expect(pages).toEqual(['index.html', 'methods/index.html']);
    expect(fs.readFileSync(path.join(site!.dist, 'index.html'), 'utf8')).toContain('No reports yet');
    expect(fs.readFileSync(path.join(site!.dist, 'methods/index.html'), 'utf8')).toContain('No techniques are registered yet.');
  });

  it('skips a method page for an unregistered technique with a warning', () => {
    expect(site!.log).toMatch(/skipping 1 method page\(s\) for unregistered techniques \(example-technique\.mdx\)/);
  });
});
