/**
 * `npm run bench [name…]`: runs each benchmark script in bench/ (or the named ones) in its own
 * process, one after another, so that they do not share a core or a wasm heap.
 * Benchmarks print their own tables; record measured numbers in bench/RESULTS.md with the date
 * and the machine. Never part of `npm test`.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
// models.ts is the shared model builders, not a benchmark.
const all = fs.readdirSync(here).filter((f) => f.endsWith('.ts') && f !== 'run.ts' && f !== 'models.ts').map((f) => f.replace(/\.ts$/, '')).sort();
const wanted = process.argv.slice(2);
const unknown = wanted.filter((w) => !all.includes(w));
if (unknown.length) {
  console.error(`unknown benchmark(s): ${unknown.join(', ')}; available: ${all.join(', ')}`);
  process.exit(2);
}
console.log(`# convlens benchmarks, ${new Date().toISOString()}, ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, node ${process.version}`);
let failed = 0;
for (const name of wanted.length ? wanted : all) {
  console.log(`\n## ${name}`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(here, `${name}.ts`)], { stdio: 'inherit' });
  if (r.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
