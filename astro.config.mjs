// @ts-check
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'astro/config';
import mdx from '@astrojs/mdx';
import remarkMath from 'remark-math';
import rehypeKatex from 'rehype-katex';

// The build reaches no network: Astro's anonymous usage telemetry (sent after the config loads) stays off.
process.env.ASTRO_TELEMETRY_DISABLED = '1';

// Relative paths are taken from the project root, not the shell's cwd (`astro build --root …`).
const projectRoot = path.dirname(fileURLToPath(import.meta.url));
// Where the runner left the manifest and result files; tests point this at a fixture.
const dataDir = path.resolve(projectRoot, process.env.CONVLENS_SITE_DATA ?? '.convlens/site');
// Pages and content config read the same variables; make them absolute once, here.
process.env.CONVLENS_SITE_DATA = dataDir;
process.env.CONVLENS_METHODS_DIR = path.resolve(projectRoot, process.env.CONVLENS_METHODS_DIR ?? 'content/methods');

/** '/', '/sub/' — always with a trailing slash so `${base}path` joins cleanly. */
const base = `/${(process.env.CONVLENS_BASE ?? '/').replace(/^\/+|\/+$/g, '')}/`.replace(/^\/\/$/, '/');

const MIME = {
  '.png': 'image/png', '.webp': 'image/webp', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.gif': 'image/gif',
  '.svg': 'image/svg+xml', '.json': 'application/json', '.csv': 'text/csv', '.txt': 'text/plain',
};

/**
 * Publishes `<data dir>/results/**` at `<base>results/**`: copied into the build output, served
 * straight from the data dir in dev. Result folders are large binary trees the runner already
 * placed; routing them through Astro's asset pipeline would only copy them slower.
 * @returns {import('astro').AstroIntegration}
 */
function convlensResults() {
  const resultsDir = path.join(dataDir, 'results');
  return {
    name: 'convlens-results',
    hooks: {
      'astro:config:setup': ({ updateConfig }) => {
        updateConfig({
          vite: {
            plugins: [{
              name: 'convlens-results-dev',
              configureServer(server) {
                server.middlewares.use((req, res, next) => {
                  const url = decodeURIComponent((req.url ?? '').split('?')[0]);
                  // Astro's dev server may already have stripped the base from req.url.
                  const prefix = [`${base}results/`, '/results/'].find((p) => url.startsWith(p));
                  if (!prefix) return next();
                  const file = path.resolve(resultsDir, url.slice(prefix.length));
                  // Refuse anything that escapes the results folder (`..` in the URL).
                  if (!file.startsWith(resultsDir + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) return next();
                  res.setHeader('Content-Type', MIME[/** @type {keyof typeof MIME} */ (path.extname(file).toLowerCase())] ?? 'application/octet-stream');
                  fs.createReadStream(file).pipe(res);
                });
              },
            }],
          },
        });
      },
      'astro:build:done': ({ dir, logger }) => {
        if (!fs.existsSync(resultsDir)) {
          logger.warn(`no result files at ${resultsDir}; pages will link to missing images`);
          return;
        }
        const target = path.join(fileURLToPath(dir), 'results');
        fs.rmSync(target, { recursive: true, force: true });
        fs.cpSync(resultsDir, target, { recursive: true });
        logger.info(`published ${resultsDir} at ${base}results/`);
      },
    },
  };
}

export default defineConfig({
  output: 'static',
  srcDir: 'src',
  // Lets a test build keep its content-layer store apart from the project's (default node_modules/.astro).
  ...(process.env.CONVLENS_ASTRO_CACHE_DIR ? { cacheDir: process.env.CONVLENS_ASTRO_CACHE_DIR } : {}),
  base,
  trailingSlash: 'ignore',
  // Maths is typeset to HTML at build time; the layout imports KaTeX's CSS so Vite bundles its fonts.
  integrations: [mdx({ remarkPlugins: [remarkMath], rehypePlugins: [rehypeKatex] }), convlensResults()],
  // Nothing to prefetch or fetch from elsewhere: the built site must work offline.
  prefetch: false,
  // vega-embed (with vega) is one ~1 MB chunk, loaded only on pages that have a chart.
  vite: { build: { chunkSizeWarningLimit: 2048 } },
  devToolbar: { enabled: false },
});
