/**
 * Builds the site from the hand-written fixture (test/fixtures/site) into a fresh folder, as the
 * site tests and the browser test both need. The folder lives inside the project on purpose:
 * Astro stages an outDir outside the cwd in <cwd>/.astro and deletes that folder afterwards, and
 * the prerender step needs node_modules to resolve.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

export const root = path.resolve(import.meta.dirname, '../..');
export const fixture = path.join(root, 'test/fixtures/site');

export interface BuiltSite {
  /** the build output */
  dist: string;
  /** everything the build printed */
  log: string;
  /** removes the work folder */
  cleanup(): void;
}

export async function buildFixtureSite(opts: { base: string; name: string; dataDir?: string; methodsDir?: string }): Promise<BuiltSite> {
  fs.mkdirSync(path.join(root, 'node_modules/.cache'), { recursive: true });
  const work = fs.mkdtempSync(path.join(root, `node_modules/.cache/convlens-${opts.name}-`));
  const dist = path.join(work, 'dist');
  // vitest exports Vite's env (BASE_URL=/, MODE=test, NODE_ENV=test…) into process.env, and the
  // build's import.meta.env would pick them up; the child gets a clean one.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(BASE_URL|MODE|DEV|PROD|SSR|NODE_ENV|TEST|VITEST.*)$/.test(k)));
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [path.join(root, 'node_modules/astro/astro.js'), 'build', '--outDir', dist], {
      cwd: root,
      env: {
        ...env,
        CONVLENS_SITE_DATA: opts.dataDir ?? fixture,
        CONVLENS_METHODS_DIR: opts.methodsDir ?? path.join(fixture, 'methods'),
        CONVLENS_BASE: opts.base,
        CONVLENS_ASTRO_CACHE_DIR: path.join(work, 'cache'),
        ASTRO_TELEMETRY_DISABLED: '1',
      },
      maxBuffer: 16 * 1024 * 1024,
    });
    return { dist, log: stdout + stderr, cleanup: () => fs.rmSync(work, { recursive: true, force: true }) };
  } catch (e) {
    fs.rmSync(work, { recursive: true, force: true });
    const err = e as Error & { stdout?: string; stderr?: string };
    throw new Error(`astro build of the fixture failed: ${err.message}\n${err.stdout ?? ''}${err.stderr ?? ''}`);
  }
}

/** Every .html file under a folder. */
export function htmlFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const p = path.join(dir, d.name);
    return d.isDirectory() ? htmlFiles(p) : d.name.endsWith('.html') ? [p] : [];
  });
}
