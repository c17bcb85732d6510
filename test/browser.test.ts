/**
 * End to end in a real browser: builds the fixture site, serves dist/ on 127.0.0.1 and opens every
 * page in headless Debian Chromium (driven by playwright-core; no browser is ever downloaded).
 * Every page: no console errors, no failed or off-host requests, every <img> decoded, every
 * internal link answers 200, charts become live SVG, the HTML class name stays text.
 */
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { chromium, type BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildFixtureSite, htmlFiles, type BuiltSite } from './helpers/build-site';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = fs.existsSync(CHROMIUM);
const inCi = process.env.CI === 'true';
if (!haveChromium && !inCi) console.warn(`browser test skipped: ${CHROMIUM} is missing (apt-get install chromium); in CI it is required`);

const base = '/convlens-browser/';
const XSS = '<img src=x onerror=alert(1)>';
const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.css': 'text/css', '.js': 'text/javascript', '.json': 'application/json',
  '.png': 'image/png', '.webp': 'image/webp', '.jpg': 'image/jpeg', '.svg': 'image/svg+xml', '.csv': 'text/csv',
  '.woff2': 'font/woff2', '.woff': 'font/woff', '.ttf': 'font/ttf', '.txt': 'text/plain',
};

/** The smallest static server that behaves like a static host: base prefix, index.html, 404. */
function serve(dist: string): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const url = decodeURIComponent((req.url ?? '/').split(/[?#]/)[0]);
    let file = url.startsWith(base) ? path.join(dist, url.slice(base.length)) : '';
    if (file && !path.resolve(file).startsWith(dist)) file = '';
    if (file && fs.existsSync(file) && fs.statSync(file).isDirectory()) file = path.join(file, 'index.html');
    if (!file || !fs.existsSync(file)) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': MIME[path.extname(file).toLowerCase()] ?? 'application/octet-stream' });
    fs.createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

describe.skipIf(!haveChromium && !inCi)('the fixture site in headless Chromium', () => {
  let site: BuiltSite | undefined;
  let server: http.Server | undefined;
  let context: BrowserContext | undefined;
  let profile = '';
  let origin = '';

  beforeAll(async () => {
    if (!haveChromium) throw new Error(`${CHROMIUM} is missing: .ci/run must install chromium`);
    site = await buildFixtureSite({ base, name: 'browser-test' });
    server = await serve(site.dist);
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    profile = fs.mkdtempSync(path.join(os.tmpdir(), 'convlens-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1100, height: 900 },
    });
  }, 240_000);

  afterAll(async () => {
    await context?.close();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    site?.cleanup();
    if (profile) fs.rmSync(profile, { recursive: true, force: true });
  });

  it('opens every page cleanly: console, requests, images, charts, links, escaping', async () => {
    const dist = site!.dist;
    const pages = htmlFiles(dist).map((f) => `${origin}${base}${path.relative(dist, f).replace(/index\.html$/, '').split(path.sep).join('/')}`);
    expect(pages.length).toBeGreaterThan(8);
    const problems: string[] = [];
    const links = new Set<string>();
    let xssSeen = 0;

    for (const url of pages) {
      const page = await context!.newPage();
      const where = url.slice(origin.length);
      page.on('console', (m) => { if (m.type() === 'error') problems.push(`${where}: console error: ${m.text()}`); });
      page.on('pageerror', (e) => problems.push(`${where}: page error: ${e.message}`));
      page.on('dialog', (d) => { problems.push(`${where}: a ${d.type()} dialog fired: ${d.message()}`); void d.dismiss(); });
      page.on('requestfailed', (r) => problems.push(`${where}: request failed: ${r.url()} (${r.failure()?.errorText})`));
      page.on('request', (r) => {
        const u = new URL(r.url());
        if (u.protocol !== 'data:' && u.hostname !== '127.0.0.1') problems.push(`${where}: request leaves 127.0.0.1: ${r.url()}`);
      });
      page.on('response', (r) => { if (r.status() >= 400) problems.push(`${where}: HTTP ${r.status()} for ${r.url()}`); });

      const response = await page.goto(url, { waitUntil: 'load' });
      expect(response?.status(), where).toBe(200);

      // Lazy images below the fold never load on their own in a fixed viewport: ask for them now.
      const images = await page.evaluate(async () => {
        const imgs = [...document.images];
        for (const img of imgs) img.loading = 'eager';
        await Promise.all(imgs.map((img) => img.decode().catch(() => undefined)));
        return imgs.map((img) => ({ src: img.currentSrc.slice(0, 80), w: img.naturalWidth }));
      });
      for (const img of images) if (!(img.w > 0)) problems.push(`${where}: image not decoded: ${img.src}`);

      // Every chart becomes a live vega view with an SVG inside.
      const charts = await page.locator('.chart-host').count();
      if (charts > 0) {
        await page.waitForFunction((n) => document.querySelectorAll('.chart-host[data-chart-live="true"] svg').length >= n, charts, { timeout: 15_000 })
          .catch(() => problems.push(`${where}: ${charts} chart(s) did not render an SVG`));
      }

      const text = await page.evaluate(() => document.body.innerText);
      if (text.includes(XSS)) xssSeen++;

      for (const href of await page.evaluate(() => [...document.querySelectorAll('a[href]')].map((a) => (a as HTMLAnchorElement).href))) {
        const u = new URL(href);
        if (u.origin === origin) links.add(u.href.replace(/#.*$/, ''));
        else if (u.protocol === 'http:' || u.protocol === 'https:') problems.push(`${where}: external link ${href}`);
      }
      await page.close();
    }

    for (const link of links) {
      const r = await fetch(link);
      if (r.status !== 200) problems.push(`link ${link.slice(origin.length)}: HTTP ${r.status}`);
      await r.arrayBuffer();
    }

    expect(problems).toEqual([]);
    // The class name is shown, as text, on the overview, image and confusion pages.
    expect(xssSeen).toBeGreaterThanOrEqual(3);
  }, 90_000);

  it('makes the accuracy chart interactive: a tooltip on hover', async () => {
    const page = await context!.newPage();
    await page.goto(`${origin}${base}reports/tiny/`, { waitUntil: 'load' });
    const bar = page.locator('.chart-host[data-chart-live="true"] svg .mark-rect path').first();
    await bar.waitFor({ timeout: 15_000 });
    await bar.hover();
    const tooltip = page.locator('#vg-tooltip-element');
    await tooltip.waitFor({ state: 'visible', timeout: 5_000 });
    expect(await tooltip.innerText()).toContain('circle');
    await page.close();
  }, 30_000);
  it('makes the t-SNE scatter interactive: thumbnail tooltip, click to the image page, wheel zoom', async () => {
    const page = await context!.newPage();
    const errors: string[] = [];
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${origin}${base}reports/tiny/tsne/`, { waitUntil: 'load' });
    // the plotted points, not the legend's symbols
    const points = page.locator('.scatter-host[data-chart-live="true"] svg .mark-symbol.role-mark path');
    await points.first().waitFor({ timeout: 15_000 });
    expect(await points.count()).toBe(12);

    // test #3 has no page of its own: its thumbnail is cropped from the t-SNE grid sprite
    await points.nth(3).hover();
    const tooltip = page.locator('#vg-tooltip-element');
    await tooltip.waitFor({ state: 'visible', timeout: 5_000 });
    await page.waitForFunction(() => (document.querySelector<HTMLImageElement>('#vg-tooltip-element img')?.naturalWidth ?? 0) > 0, null, { timeout: 5_000 });
    const tip = await tooltip.evaluate((t) => ({ text: (t as HTMLElement).innerText, src: t.querySelector('img')!.getAttribute('src'), w: t.querySelector('img')!.naturalWidth }));
    expect(tip.text).toContain('test #3');
    expect(tip.text).toContain('circle');
    expect(tip.src).toBe(`${origin}${base}reports/tiny/thumbs/test-3.png`);
    expect(tip.w).toBe(8);

    // test #5 (true <img…> class, predicted square) has a page: a click opens it
    await points.nth(5).hover();
    expect(await tooltip.innerText()).toContain(XSS);
    await Promise.all([page.waitForURL(`${origin}${base}reports/tiny/images/test-5/`, { timeout: 5_000 }), points.nth(5).click()]);
    await page.goBack({ waitUntil: 'load' });
    await points.first().waitFor({ timeout: 15_000 });

    // zooming in with the wheel spreads the points apart
    const centre = async (i: number) => { const b = (await points.nth(i).boundingBox())!; return [b.x + b.width / 2, b.y + b.height / 2]; };
    const spread = async () => { const [a, b] = [await centre(0), await centre(2)]; return Math.hypot(a[0] - b[0], a[1] - b[1]); };
    const before = await spread();
    const [cx, cy] = await centre(1);
    await page.mouse.move(cx, cy);
    await page.mouse.wheel(0, -400);
    await page.waitForTimeout(300);
    expect(await spread()).toBeGreaterThan(1.25 * before);
    expect(errors).toEqual([]);
    await page.close();
  }, 60_000);
  it('reads on a phone in the dark theme: no sideways page scroll, diagrams in the theme colours', async () => {
    const page = await context!.newPage();
    await page.setViewportSize({ width: 375, height: 740 });
    await page.emulateMedia({ colorScheme: 'dark' });
    const wide: string[] = [];
    for (const p of ['', 'reports/tiny/', 'reports/tiny/tsne/', 'reports/tiny/example-technique/', 'methods/example-technique/', 'reports/tiny/images/test-5/']) {
      await page.goto(`${origin}${base}${p}`, { waitUntil: 'load' });
      // wide content (tables, charts, diagrams) scrolls inside its own box, never the page
      const { scroll, client } = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth }));
      if (scroll > client) wide.push(`${p || '/'}: ${scroll} > ${client}`);
    }
    expect(wide).toEqual([]);

    await page.goto(`${origin}${base}methods/example-technique/`, { waitUntil: 'load' });
    const svg = page.locator('figure.diagram svg');
    expect(await svg.count()).toBe(1);
    const d = await svg.evaluate((el) => {
      const rgb = (c: string) => (c.match(/[\d.]+/g) ?? []).slice(0, 3).map(Number);
      const lum = (c: number[]) => (0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]) / 255;
      const labelled = (el.getAttribute('aria-labelledby') ?? '').split(' ').map((id) => document.getElementById(id)?.textContent);
      return {
        role: el.getAttribute('role'), labelled,
        text: lum(rgb(getComputedStyle(el.querySelector('text')!).fill)),
        page: lum(rgb(getComputedStyle(document.body).backgroundColor)),
        width: el.getBoundingClientRect().width,
      };
    });
    expect(d.role).toBe('img');
    expect(d.labelled).toEqual(['How the example technique works', 'The image goes forward to the class score, which is differentiated back to the pixels.']);
    // light text on a dark page
    expect(d.page).toBeLessThan(0.2);
    expect(d.text).toBeGreaterThan(0.7);
    expect(d.width).toBeGreaterThan(300);
    await page.close();
  }, 60_000);
});
