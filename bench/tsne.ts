/**
 * t-SNE benchmark: our Barnes-Hut t-SNE (pipelines/engines/tsne.ts: exact neighbours by blocked
 * matrix products on the wasm backend, gradient on worker threads) against scikit-learn's
 * Barnes-Hut t-SNE (bench/tsne_sklearn.py) and the exact O(N²) `tsne-js` (devDependency) on the
 * same seeded 64-d Gaussian mixture, in the same run. Each method runs in its own process so that
 * peak RSS is its own; quality is scored by the same TS code for all.
 *
 *   npx tsx bench/tsne.ts                      # N = 10 000 and 70 000 (+ tsne-js, ours, sklearn at 1 000)
 *   npx tsx bench/tsne.ts --n 10000            # sizes, comma separated
 *   npx tsx bench/tsne.ts --threads 1          # gradient threads (default: defaultThreads(N))
 *   npx tsx bench/tsne.ts --tsne-js 1000,2000  # sizes for tsne-js (exact; 0 = none), default 1000
 *   npx tsx bench/tsne.ts --no-sklearn         # ours only
 *   npx tsx bench/tsne.ts --knn-only           # the neighbour search alone: JS brute force vs backend
 *   npx tsx bench/tsne.ts --write-fixture      # the 1 000 × 50 test mixture → sklearn reference values
 *
 * scikit-learn: Debian's `sudo apt-get install -y python3-sklearn` (or `pip install scikit-learn`;
 * set PYTHON=/path/to/python3 to choose the interpreter). Without it the sklearn rows are skipped.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../pipelines/backend';
import { selfKnn } from '../pipelines/engines/linalg';
import { Rng } from '../pipelines/rng';
import { exactKnn, knnOf, knnPreservation, neighbourCount, trustworthiness, tsne } from '../pipelines/engines/tsne';

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

interface RunResult { wallS: number; cpuS?: number; rssMB: number; embedding: string; knnS?: number; setupS?: number; msPerIter?: number; threads?: number; wasmHeapMB?: number; iterations?: number; note?: string }

/** user + system CPU seconds of this process, all threads. */
const cpuS = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };

const wasmHeapMB = () => {
  const heap = (tf.backend() as unknown as { wasm?: { HEAPU8: Uint8Array } }).wasm?.HEAPU8;
  return heap ? heap.length / 2 ** 20 : undefined;
};

/** Child-process entry: run ours on a .f32 file, write the embedding, print timing JSON. */
async function child(args: string[]) {
  const [file, nS, dimS, outFile, threadsS] = args;
  const n = Number(nS), dim = Number(dimS);
  const data = readF32(file);
  await initBackend('wasm');
  const cpu0 = cpuS();
  const t0 = performance.now();
  const knn = await selfKnn(data, n, dim, neighbourCount(n, 30));
  const t1 = performance.now();
  let at10 = 0;
  let threads = 1;
  // iteration 10's callback splits set-up (P, PCA, worker start) from the optimisation
  const y = tsne(data, n, dim, {
    seed: 1, knn, threads: threadsS ? Number(threadsS) : undefined,
    onThreads: (t) => { threads = t; }, onProgress: (it) => { if (it === 10) at10 = performance.now(); },
  });
  const end = performance.now();
  const msPerIter = (end - at10) / 990;
  const setupS = (at10 - t1 - 10 * msPerIter) / 1000;
  writeF32(outFile, y);
  console.log(JSON.stringify({
    wallS: (end - t0) / 1000, cpuS: cpuS() - cpu0, knnS: (t1 - t0) / 1000, setupS, msPerIter, threads,
    rssMB: process.resourceUsage().maxRSS / 1024, wasmHeapMB: wasmHeapMB(), embedding: outFile,
  }));
}

/** Child-process entry: tsne-js (exact t-SNE) with our settings where it has them. */
function childTsneJs(args: string[]) {
  const [file, nS, dimS, outFile] = args;
  const n = Number(nS), dim = Number(dimS);
  const data = readF32(file);
  const TSNE = createRequire(import.meta.url)('tsne-js');
  const rows = Array.from({ length: n }, (_, i) => Array.from(data.subarray(i * dim, (i + 1) * dim)));
  const cpu0 = cpuS();
  const t0 = performance.now();
  // tsne-js draws its start with Math.random (not seedable) and hard-codes 100 exaggerated iterations
  const model = new TSNE({ dim: 2, perplexity: 30, earlyExaggeration: 12, learningRate: Math.max(n / 12, 200), nIter: 1000, metric: 'euclidean' });
  model.init({ data: rows, type: 'dense' });
  const [, iterations] = model.run();
  const out = model.getOutput() as number[][];
  const wallS = (performance.now() - t0) / 1000;
  writeF32(outFile, Float32Array.from(out.flat()));
  console.log(JSON.stringify({ wallS, cpuS: cpuS() - cpu0, iterations, rssMB: process.resourceUsage().maxRSS / 1024, embedding: outFile }));
}

/** Child-process entry: the neighbour search alone, JS brute force (if N ≤ 20 000) and backend. */
async function childKnn(args: string[]) {
  const [file, nS, dimS] = args;
  const n = Number(nS), dim = Number(dimS);
  const data = readF32(file);
  const k = neighbourCount(n, 30);
  await initBackend('wasm');
  const t0 = performance.now();
  const b = await selfKnn(data, n, dim, k);
  const backendS = (performance.now() - t0) / 1000;
  const out: Record<string, unknown> = { backendS, rssMB: process.resourceUsage().maxRSS / 1024, wasmHeapMB: wasmHeapMB() };
  if (n <= 20_000) {
    const t1 = performance.now();
    const a = exactKnn(data, n, dim, k);
    out.jsS = (performance.now() - t1) / 1000;
    let same = 0;
    for (let t = 0; t < a.indices.length; t++) if (a.indices[t] === b.indices[t]) same++;
    out.sameNeighbours = same / a.indices.length;
  }
  console.log(JSON.stringify(out));
}

function scoreQueries(n: number): number[] {
  const rng = new Rng(99);
  const all = Array.from({ length: n }, (_, i) => i);
  return rng.shuffle(all).slice(0, Math.min(1000, n));
}

function hasSklearn(): boolean {
  try {
    execFileSync(PYTHON, ['-c', 'import sklearn'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const load = () => os.loadavg().map((v) => v.toFixed(2)).join(' ');

/** Runs a child process, returns its last stdout line as JSON (null on failure, reported). */
function runJson(cmd: string, args: string[], env?: NodeJS.ProcessEnv): RunResult | null {
  try {
    const out = execFileSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 26, env: env ?? process.env, stdio: ['ignore', 'pipe', 'inherit'] });
    return JSON.parse(out.trim().split('\n').pop()!);
  } catch (e) {
    console.log(`  (${path.basename(args[0] ?? cmd)} failed: ${(e as Error).message.split('\n')[0]})`);
    return null;
  }
}

async function main() {
  const argv = process.argv.slice(2);
  if (argv[0] === '--child') return child(argv.slice(1));
  if (argv[0] === '--child-tsne-js') return childTsneJs(argv.slice(1));
  if (argv[0] === '--child-knn') return childKnn(argv.slice(1));
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsne-bench-'));
  const py = path.join(here, 'tsne_sklearn.py');
  const opt = (name: string) => (argv.includes(`--${name}`) ? argv[argv.indexOf(`--${name}`) + 1] : undefined);
  const self = fileURLToPath(import.meta.url);
  const tsx = (args: string[]): [string, string[]] => [process.execPath, ['--import', 'tsx', self, ...args]];

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

  const dim = 64;
  const sizes = (opt('n') ?? '10000,70000').split(',').map(Number);
  const tsneJsSizes = (opt('tsne-js') ?? '1000').split(',').map(Number).filter((v) => v > 0);
  const sklearn = !argv.includes('--no-sklearn') && hasSklearn();
  const threads = opt('threads');
  console.log(`# t-SNE bench, ${new Date().toISOString()}, ${os.cpus()[0]?.model ?? '?'} × ${os.cpus().length}, node ${process.version}, load ${load()}`);
  if (!sklearn && !argv.includes('--no-sklearn')) {
    console.log(`# scikit-learn not found for ${PYTHON}: sklearn rows skipped (Debian: sudo apt-get install -y python3-sklearn; or pip install scikit-learn and set PYTHON)`);
  }

  if (argv.includes('--knn-only')) {
    for (const n of sizes) {
      const { data } = gaussianMixture(n, dim, 10, 7);
      const file = path.join(tmp, `mix-${n}.f32`);
      writeF32(file, data);
      const r = runJson(...tsx(['--child-knn', file, String(n), String(dim)])) as unknown as { backendS: number; jsS?: number; sameNeighbours?: number; rssMB: number; wasmHeapMB?: number } | null;
      if (!r) continue;
      const js = r.jsS !== undefined ? `JS brute force ${r.jsS.toFixed(2)} s, same neighbours ${(100 * r.sameNeighbours!).toFixed(3)}%` : 'JS brute force not run (N > 20 000)';
      console.log(`kNN N=${n} D=${dim} k=${neighbourCount(n, 30)} | backend (wasm) ${r.backendS.toFixed(2)} s | ${js} | peak RSS ${r.rssMB.toFixed(0)} MB, wasm heap ${r.wasmHeapMB?.toFixed(0)} MB | load ${load()}`);
    }
    fs.rmSync(tmp, { recursive: true, force: true });
    return;
  }

  const all = [...new Set([...tsneJsSizes, ...sizes])].sort((a, b) => a - b);
  for (const n of all) {
    const { data, labels } = gaussianMixture(n, dim, 10, 7);
    const file = path.join(tmp, `mix-${n}.f32`);
    writeF32(file, data);
    const rows: [string, RunResult][] = [];
    const loadBefore = load();
    if (tsneJsSizes.includes(n)) {
      const r = runJson(...tsx(['--child-tsne-js', file, String(n), String(dim), path.join(tmp, `tsnejs-${n}.f32`)]));
      if (r) rows.push(['tsne-js 1.0.3 (exact, 1 thread)', r]);
    }
    const ours = runJson(...tsx(['--child', file, String(n), String(dim), path.join(tmp, `ours-${n}.f32`), ...(threads ? [threads] : [])]));
    if (ours) rows.push([`convlens BH (TS, kNN on wasm, ${ours.threads} thread${ours.threads === 1 ? '' : 's'})`, ours]);
    if (sklearn) {
      const sk = runJson(PYTHON, [py, file, String(n), String(dim), path.join(tmp, `sk-${n}.f32`)], { ...process.env, OMP_NUM_THREADS: '1' }) as (RunResult & { version?: string }) | null;
      if (sk) rows.push([`sklearn ${sk.version} BH (n_jobs=1)`, sk]);
    }
    const qs = scoreQueries(n);
    for (const [name, r] of rows) {
      const y = readF32(r.embedding);
      const knn = knnPreservation(data, dim, y, n, 10, qs);
      const purity = labelPurity(y, labels, n, 10, qs);
      const split = r.setupS !== undefined ? ` (kNN ${r.knnS!.toFixed(1)} s + set-up ${r.setupS.toFixed(1)} s + ${r.msPerIter!.toFixed(1)} ms/iter)` : '';
      const iters = r.iterations !== undefined ? ` (${r.iterations} iterations)` : '';
      const heap = r.wasmHeapMB !== undefined ? `, wasm heap ${r.wasmHeapMB.toFixed(0)} MB` : '';
      const cpu = r.cpuS !== undefined ? `, CPU ${r.cpuS.toFixed(1)} s` : '';
      console.log(`N=${n} D=${dim} | ${name} | wall ${r.wallS.toFixed(1)} s${cpu}${split}${iters} | peak RSS ${r.rssMB.toFixed(0)} MB${heap} | kNN-10 ${knn.toFixed(3)} | purity-10 ${purity.toFixed(3)} | load before ${loadBefore}, now ${load()}`);
    }
  }
  fs.rmSync(tmp, { recursive: true, force: true });
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
