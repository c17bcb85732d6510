/**
 * `convlens` command line. Errors a user can fix print as one line (no stack trace) and exit 2;
 * failed techniques are listed and exit 1; success exits 0.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { shutdownBackend } from './backend';
import { ResultCache } from './cache';
import { isConvlensError } from './errors';
import { CONVLENS_VERSION, runReports } from './run';
import type { BackendRequest } from './types';

const HELP = `convlens ${CONVLENS_VERSION} — explain a trained CNN as a static website

Usage:
  convlens run [--report <id>]... [--only <technique>[,<technique>]] [--backend auto|webgpu|wasm|cpu|tensorflow] [--jobs N] [--force] [--quick]
      compute what is missing for every report in reports/ (or the ones named), then write
      .convlens/site/manifest.json for the site (npm run build also runs astro build);
      --quick uses each technique's fast preview parameters (fewer steps, smaller images);
      --jobs N computes up to N independent steps at once, each in its own worker process
      (default: 2 on wasm/cpu with two or more cores, else 1; webgpu and tensorflow use 1)
  convlens cache gc
      remove cached results that the last run did not use
  convlens --help | --version
`;

const BACKENDS = ['auto', 'webgpu', 'wasm', 'cpu', 'tensorflow'];

export async function main(argv: string[]): Promise<number> {
  try {
    return await dispatch(argv);
  } catch (e) {
    if (isConvlensError(e)) {
      process.stderr.write(`convlens: error: ${e.message}\n`);
      return 2;
    }
    throw e;
  } finally {
    await shutdownBackend();
  }
}

async function dispatch(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      report: { type: 'string', multiple: true },
      only: { type: 'string', multiple: true },
      backend: { type: 'string' },
      jobs: { type: 'string', short: 'j' },
      force: { type: 'boolean' },
      quick: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean' },
    },
    strict: false,
  });
  if (values.version) {
    process.stdout.write(`${CONVLENS_VERSION}\n`);
    return 0;
  }
  const [command, sub] = positionals;
  if (values.help || !command) {
    process.stdout.write(HELP);
    return command || values.help ? 0 : 2;
  }
  const root = process.cwd();
  const workDir = path.join(root, '.convlens');
  if (command === 'run') {
    const backend = (values.backend as string | undefined) ?? process.env.CONVLENS_BACKEND;
    if (backend && !BACKENDS.includes(backend)) {
      process.stderr.write(`convlens: error: --backend ${backend} is not one of ${BACKENDS.join(', ')}\n`);
      return 2;
    }
    const jobsText = (values.jobs as string | undefined) ?? process.env.CONVLENS_JOBS;
    const jobs = jobsText === undefined ? undefined : Number(jobsText);
    if (jobs !== undefined && !(Number.isInteger(jobs) && jobs >= 1)) {
      process.stderr.write(`convlens: error: --jobs ${jobsText} is not a whole number ≥ 1 (use --jobs 1 to compute one step at a time)\n`);
      return 2;
    }
    const list = (v: unknown) => (v as string[] | undefined)?.flatMap((s) => s.split(',')).filter(Boolean);
    const summary = await runReports({
      root,
      workDir,
      reports: list(values.report),
      only: list(values.only),
      backend: backend as BackendRequest | undefined,
      jobs,
      force: Boolean(values.force),
      quick: Boolean(values.quick),
    });
    if (summary.failures.length) {
      process.stderr.write(`convlens: ${summary.failures.length} step(s) failed:\n`);
      for (const f of summary.failures) process.stderr.write(`  ${f.report}/${f.step}: ${f.message}\n`);
      return 1;
    }
    return 0;
  }
  if (command === 'cache' && sub === 'gc') {
    const last = path.join(workDir, 'last-build.json');
    if (!fs.existsSync(last)) {
      process.stderr.write('convlens: error: no previous run recorded (.convlens/last-build.json); run `convlens run` first\n');
      return 2;
    }
    const keep = new Set<string>(JSON.parse(fs.readFileSync(last, 'utf8')).keys);
    const { removed } = new ResultCache(path.join(workDir, 'cache')).gc(keep);
    process.stdout.write(`removed ${removed.length} cache entr${removed.length === 1 ? 'y' : 'ies'}, kept ${keep.size}\n`);
    return 0;
  }
  process.stderr.write(`convlens: error: unknown command '${positionals.join(' ')}'\n\n${HELP}`);
  return 2;
}
