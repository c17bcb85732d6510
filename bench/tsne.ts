/**
 * t-SNE benchmark: our Barnes-Hut t-SNE (pipelines/engines/tsne.ts) against scikit-learn's
 * Barnes-Hut t-SNE (bench/tsne_sklearn.py, Debian python3-sklearn) on the same seeded 64-d
 * Gaussian mixture, in the same run. Each method runs in its own process so that peak RSS is
 * its own; quality is scored by the same TS code for both.
 *
 *   npx tsx bench/tsne.ts                 # N = 10 000 and 70 000
 *   npx tsx bench/tsne.ts --n 10000       # one size
 *   npx tsx bench/tsne.ts --no-sklearn    # ours only
 *   npx tsx bench/tsne.ts --write-fixture # the 1 000 × 50 test mixture → sklearn reference values
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Rng } from '../pipelines/rng';
import { knnOf, knnPreservation, trustworthiness, tsne } from '../pipelines/engines/tsne';

/**
 * Seeded Gaussian mixture: cluster centres ~ N(0, I_dim), cluster c has isotropic noise with
 * σ_c ∈ [0.7, 1.3]; point i belongs to cluster i mod clusters. Float32, row-major.
 */
export function gaussianMixture(n: number, dim: number, clusters: number, seed: number): { data: Float32Array; labels: Int32Array } {
  const rng = new Rng(seed);
  const centres = new Float64Array(clusters * dim);
  for (let t = 0; t < centres.length; t++) centres[t] = rng.normal();
  const sigma = Array.from({ length: clusters }, () => 0.7 + 0.6 * rng.next());
  const data = new Float32Array(n * dim);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const c = i % clusters;
    labels[i] = c;
    for (let d = 0; d < dim; d++) data[i * dim + d] = centres[c * dim + d] + sigma[c] * rng.normal();
  }
  return { data, labels };
}

/** Mean share of same-label points among each query's 10 nearest 2-D neighbours. */
export function labelPurity(low: Float32Array, labels: ArrayLike<number>, n: number, k: number, queries: number[]): number {
  const nn = knnOf(low, n, 2, k, queries);
  let same = 0;
  queries.forEach((i, q) => {
    for (let t = 0; t < k; t++) if (labels[nn[q * k + t]] === labels[i]) same++;
  });
  return same / (queries.length * k);
}

const here = path.dirname(fileURLToPath(import.meta.url));
// Debian's python3-sklearn lives under the system interpreter (a pyenv python3 may shadow it).
const PYTHON = process.env.PYTHON ?? (fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3');

function writeF32(file: string, values: Float32Array) {
  fs.writeFileSync(file, new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
}
function readF32(file: string): Float32Array {
  const b = fs.readFileSync(file);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

interface RunResult { wallS: number; rssMB: number; embedding: string; setupS?: number; msPerIter?: number }

/** Child-process entry: run ours on a .f32 file, write the embedding, print timing JSON. */
function child(args: string[]) {
  const [file, nS, dimS, outFile] = args;
  const n = Number(nS), dim = Number(dimS);
  const data = readF32(file);
  const t0 = performance.now();
  let at10 = 0;
  // iteration 10's callback splits set-up (kNN, P, PCA) from the optimisation
  const y = tsne(data, n, dim, { seed: 1, onProgress: (it) => { if (it === 10) at10 = performance.now(); } });
  const end = performance.now();
  const msPerIter = (end - at10) / 990;
  const setupS = (at10 - t0 - 10 * msPerIter) / 1000;
  writeF32(outFile, y);
  console.log(JSON.stringify({ wallS: (end - t0) / 1000, setupS, msPerIter, rssMB: process.resourceUsage().maxRSS / 1024, embedding: outFile }));
}

function scoreQueries(n: number): number[] {
  const rng = new Rng(99);
  const all = Array.from({ length: n }, (_, i) => i);
  return rng.shuffle(all).slice(0, Math.min(1000, n));
}

function main() {
  const argv = process.argv.slice(2);
  if (argv[0] === '--child') return child(argv.slice(1));
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsne-bench-'));
  const py = path.join(here, 'tsne_sklearn.py');

  if (argv.includes('--write-fixture')) {
    // The data of test/tsne.test.ts: sklearn's values on it become the test's reference constants.
    const { data, labels } = gaussianMixture(1000, 50, 10, 42);
    const file = path.join(tmp, 'mixture-1000x50.f32');
    writeF32(file, data);
    const out = path.join(tmp, 'sk.f32');
    const sk = JSON.parse(execFileSync(PYTHON, [py, file, '1000', '50', out], { encoding: 'utf8' }).trim().split('\n').pop()!);
    const y = readF32(out);
    const ours = tsne(data, 1000, 50, { seed: 1 });
    console.log(JSON.stringify({
      sklearn: { ...sk, knn10: knnPreservation(data, 50, y, 1000, 10), trust10: trustworthiness(data, 50, y, 1000, 10), purity10: labelPurity(y, labels, 1000, 10, scoreQueries(1000)) },
      ours: { knn10: knnPreservation(data, 50, ours, 1000, 10), trust10: trustworthiness(data, 50, ours, 1000, 10), purity10: labelPurity(ours, labels, 1000, 10, scoreQueries(1000)) },
    }, null, 1));
    return;
  }

  const sizes = argv.includes('--n') ? [Number(argv[argv.indexOf('--n') + 1])] : [10_000, 70_000];
  const dim = 64;
  console.log(`# t-SNE bench, ${new Date().toISOString()}, ${os.cpus()[0]?.model ?? '?'} × ${os.cpus().length}, load ${os.loadavg().map((v) => v.toFixed(2)).join(' ')}`);
  for (const n of sizes) {
    const { data, labels } = gaussianMixture(n, dim, 10, 7);
    const file = path.join(tmp, `mix-${n}.f32`);
    writeF32(file, data);
    const rows: [string, RunResult][] = [];
    const ours = JSON.parse(execFileSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', file, String(n), String(dim), path.join(tmp, `ours-${n}.f32`)], { encoding: 'utf8', maxBuffer: 1 << 24 }).trim().split('\n').pop()!);
    rows.push(['convlens BH (TS, 1 thread)', ours]);
    if (!argv.includes('--no-sklearn')) {
      const sk = JSON.parse(execFileSync(PYTHON, [py, file, String(n), String(dim), path.join(tmp, `sk-${n}.f32`)], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' } }).trim().split('\n').pop()!);
      rows.push([`sklearn ${sk.version} BH (n_jobs=1)`, sk]);
    }
    const qs = scoreQueries(n);
    for (const [name, r] of rows) {
      const y = readF32(r.embedding);
      const knn = knnPreservation(data, dim, y, n, 10, qs);
      const purity = labelPurity(y, labels, n, 10, qs);
      const split = r.setupS !== undefined ? ` (set-up ${r.setupS.toFixed(1)} s + ${r.msPerIter!.toFixed(1)} ms/iter)` : '';
      console.log(`N=${n} D=${dim} | ${name} | wall ${r.wallS.toFixed(1)} s${split} | peak RSS ${r.rssMB.toFixed(0)} MB | kNN-10 ${knn.toFixed(3)} | purity-10 ${purity.toFixed(3)} | load now ${os.loadavg()[0].toFixed(2)}`);
    }
  }
  fs.rmSync(tmp, { recursive: true, force: true });
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
