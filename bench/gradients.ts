/**
 * Forward and input-gradient images/s on the CPU backends, before and after our wasm gradient
 * kernels, in ONE run, next to PyTorch on the same cores and the same weights (issue 7).
 *
 *   npm run bench gradients
 *   npx tsx bench/gradients.ts --models default,mnv1,mnv2 --reps 3 [--cpu] [--profile] [--no-torch] [--no-kernels] [--batch N] [--ab] [--ceiling]
 * --ceiling: also GFLOP/s of single forward convolutions of these nets' shapes, wasm vs PyTorch on
 * one thread (what the arithmetic allows the whole-net ratio to reach).
 * --ab: also times the input gradient before/after the SIMD kernels + fused conv bias in
 * alternation (before, after, before, … 2·reps batches each), which a shared, loaded box favours
 * over back-to-back rows.
 *
 * Per network (default report model, MobileNetV1- and MobileNetV2-shaped at 224 px):
 *   wasm/tfjs      tfjs-backend-wasm's own kernels (ours unregistered): slow Conv2DBackpropInput,
 *                  wrong MaxPoolGrad, missing depthwise backprops (the gradient then fails)
 *   wasm/convlens  our kernels (pipelines/kernels)
 *   wasm/convlens, before SIMD kernels + fused conv bias   both switches below off
 *   wasm/convlens, no SIMD kernels   useSimdKernels(false): the ReLU/ReLU6 gradient as native step
 *                  passes, MaxPoolGrad as a JS walk, wasm's own FusedBatchNorm, Transpose and
 *                  transposed BatchMatMul (not simd.wat)
 *   wasm/convlens, conv + separate bias add   useFusedConvBias(false): a conv then an Add, instead
 *                  of the fused conv + bias kernel with an x-only gradient
 *   wasm/convlens, no filter cache   the same with useFilterCache(false): transposed/flipped/phase
 *                  filters rebuilt at every backprop call (before pipelines/kernels/filter-cache.ts)
 *   wasm/convlens, BN unfolded   the same with GraphExecutor.foldBatchNorm = false (every
 *                  BatchNorm its own op; only for nets with foldable conv → BN pairs): before/after
 *                  of folding BN into the conv, in the same run. Every other row folds (the default).
 *   cpu            tfjs-backend-cpu (with --cpu; one timed run for the 224-px nets: ~30 s each)
 *   pytorch        bench/pytorch_anchor.py: the same model.json topology and weights, 2 threads
 * The input gradient is the saliency one: ∂ logit_target / ∂ input for every image of the batch
 * (pipelines/engines/attribution inputGradient, plain ReLU rule). Times are medians of `reps`
 * runs after one warm-up. Then a per-kernel table (tfjs vs ours on the shapes of these nets),
 * and with --profile the kernels that dominate each requested network's gradient (self time:
 * a composed kernel's nested kernels are counted under their own names only).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../pipelines/backend';
import { inputGradient, scoreNode } from '../pipelines/engines/attribution';
import { useFilterCache, useSimdKernels, useWasmKernels } from '../pipelines/kernels/index';
import { useFusedConvBias } from '../pipelines/model/graph';
import { defaultModel, mobileNetV1Shaped, mobileNetV2Shaped, type BenchModel } from './models';

const { values: args } = parseArgs({
  options: {
    models: { type: 'string', default: 'default,mnv1,mnv2' },
    reps: { type: 'string', default: '3' },
    cpu: { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    'no-torch': { type: 'boolean', default: false },
    'no-kernels': { type: 'boolean', default: false },
    ab: { type: 'boolean', default: false },
    batch: { type: 'string' },
    ceiling: { type: 'boolean', default: false },
  },
});
const reps = Math.max(1, Number(args.reps));
const here = path.dirname(fileURLToPath(import.meta.url));
const load = () => os.loadavg().map((v) => v.toFixed(2)).join(' ');

const builders: Record<string, { batch: number; make: () => Promise<BenchModel> }> = {
  default: { batch: 16, make: () => defaultModel() },
  mnv1: { batch: 2, make: () => mobileNetV1Shaped() },
  mnv2: { batch: 2, make: () => mobileNetV2Shaped() },
};
const wanted = args.models!.split(',').filter(Boolean);
for (const w of wanted) {
  if (!builders[w]) {
    console.error(`bench/gradients.ts: unknown model '${w}' (--models takes ${Object.keys(builders).join(',')})`);
    process.exit(2);
  }
}

/** Median and best seconds of `n` timed calls after one warm-up (warm-up skipped when n = 1). */
async function time(n: number, f: () => Promise<void>): Promise<{ median: number; best: number }> {
  if (n > 1) await f();
  const ts: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await f();
    ts.push((performance.now() - t0) / 1000);
  }
  ts.sort((a, b) => a - b);
  return { median: ts[Math.floor(ts.length / 2)]!, best: ts[0]! };
}

interface Row { net: string; engine: string; batch: number; fwd?: number; grad?: number; note?: string }
const rows: Row[] = [];
const fmt = (v?: number) => (v === undefined ? '—' : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));

function relErr(a: Float32Array, b: Float32Array): number {
  let d = 0;
  let m = 0;
  for (let i = 0; i < b.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    m = Math.max(m, Math.abs(b[i]!));
  }
  return m > 0 ? d / m : d;
}

function pixels(n: number, shape: number[]): Float32Array {
  const size = n * shape.reduce((a, b) => a * b, 1);
  // deterministic pseudo-random pixels in [0, 1)
  return new Float32Array(size).map((_, i) => Math.abs(Math.sin(i * 12.9898) * 43758.5453) % 1);
}

console.log(`# gradients bench, ${new Date().toISOString()}, ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, node ${process.version}, load ${load()}`);
const wasmInfo = await initBackend('wasm');
console.log(`wasm: ${wasmInfo.adapter}`);

for (const key of wanted) {
  const { make } = builders[key]!;
  const batch = args.batch ? Math.max(1, Number(args.batch)) : builders[key]!.batch; // --batch N: a batch-size sweep
  await initBackend('wasm');
  const bench = await make();
  const { model } = bench;
  const ex = model.executor;
  const inShape = model.inputShape;
  const upTo = scoreNode(ex);
  const K = ex.node(upTo).outputShape.at(-1)!;
  const xv = pixels(batch, inShape);
  const targets = Array.from({ length: batch }, (_, i) => (i * 7) % K);
  console.log(`\n## ${key}: ${bench.description}; batch ${batch}; load ${load()}`);

  const measure = async (engine: string, n: number, keep?: (logits: Float32Array, grad: Float32Array) => void): Promise<void> => {
    const x = tf.tensor4d(xv, [batch, ...inShape] as [number, number, number, number]);
    const row: Row = { net: key, engine, batch };
    try {
      const f = await time(n, async () => {
        const y = tf.tidy(() => ex.run(x, { upTo }).output);
        await y.data();
        y.dispose();
      });
      row.fwd = batch / f.median;
      const g = await time(n, async () => {
        const d = tf.tidy(() => inputGradient(ex, x, targets));
        await d.data();
        d.dispose();
      });
      row.grad = batch / g.median;
      if (keep) {
        const [y, d] = tf.tidy(() => [ex.run(x, { upTo }).output, inputGradient(ex, x, targets)]);
        keep((await y!.data()) as Float32Array, (await d!.data()) as Float32Array);
        tf.dispose([y!, d!]);
      }
    } catch (e) {
      row.note = `fails: ${(e as Error).message.split('\n')[0]!.slice(0, 110)}`;
    }
    x.dispose();
    rows.push(row);
    console.log(`${engine.padEnd(14)} forward ${fmt(row.fwd)} img/s, input gradient ${fmt(row.grad)} img/s${row.fwd && row.grad ? ` (gradient = ${(row.fwd / row.grad).toFixed(2)}× forward)` : ''}${row.note ? `  ${row.note}` : ''}; load ${load()}`);
  };

  useWasmKernels('tfjs');
  await measure('wasm/tfjs', reps);
  useWasmKernels('convlens');
  // before the SIMD kernels (simd.wat: ReLU/ReLU6 and max-pool gradients, BatchNorm) and the fused
  // conv + bias with an x-only gradient, same run; then each of them off alone
  useSimdKernels(false);
  useFusedConvBias(false);
  await measure('wasm/convlens, before SIMD kernels + fused conv bias', reps);
  useFusedConvBias(true);
  await measure('wasm/convlens, no SIMD kernels', reps);
  useSimdKernels(true);
  useFusedConvBias(false);
  await measure('wasm/convlens, conv + separate bias add', reps);
  useFusedConvBias(true);
  // before/after of the per-filter cache of transposed/phase filters (filter-cache.ts), same run
  useFilterCache(false);
  await measure('wasm/convlens, no filter cache', reps);
  useFilterCache(true);
  let ours: { logits: Float32Array; grad: Float32Array } | undefined;
  if (ex.batchNormFolds.length) {
    let unfolded: { logits: Float32Array; grad: Float32Array } | undefined;
    ex.foldBatchNorm = false;
    await measure('wasm/convlens, BN unfolded', reps, (logits, grad) => (unfolded = { logits, grad }));
    ex.foldBatchNorm = true;
    await measure('wasm/convlens', reps, (logits, grad) => (ours = { logits, grad }));
    if (unfolded && ours) {
      console.log(`BN folded into ${ex.batchNormFolds.length} convs: folded vs unfolded logits rel. err ${relErr(ours.logits, unfolded.logits).toExponential(1)}, input gradient ${relErr(ours.grad, unfolded.grad).toExponential(1)} (max|a − b| / max|b|)`);
    }
  } else {
    await measure('wasm/convlens', reps, (logits, grad) => (ours = { logits, grad }));
  }
  if (args.ab) {
    const x = tf.tensor4d(xv, [batch, ...inShape] as [number, number, number, number]);
    const ts: Record<'before' | 'after', number[]> = { before: [], after: [] };
    for (let i = 0; i <= 2 * reps; i++) {
      for (const v of ['before', 'after'] as const) {
        useSimdKernels(v === 'after');
        useFusedConvBias(v === 'after');
        const t0 = performance.now();
        const d = tf.tidy(() => inputGradient(ex, x, targets));
        await d.data();
        d.dispose();
        if (i > 0) ts[v].push(performance.now() - t0); // round 0 warms both
      }
    }
    useSimdKernels(true);
    useFusedConvBias(true);
    x.dispose();
    const med = (a: number[]) => a.sort((p, q) => p - q)[Math.floor(a.length / 2)]!;
    const [b, a] = [med(ts.before), med(ts.after)];
    console.log(`A/B alternating (${ts.before.length} each): input gradient before ${(batch / (b / 1000)).toFixed(2)} img/s, after ${(batch / (a / 1000)).toFixed(2)} img/s (${(b / a).toFixed(2)}×); load ${load()}`);
  }
  if (args.cpu) {
    await initBackend('cpu');
    await measure('cpu', inShape[0]! >= 100 ? 1 : reps);
    await initBackend('wasm');
  }

  if (!args['no-torch'] && ours) {
    // The anchor reads the same model.json + weights, this input and our outputs (to compare).
    const io = fs.mkdtempSync(path.join(os.tmpdir(), 'convlens-anchor-'));
    fs.writeFileSync(path.join(io, 'x.bin'), Buffer.from(xv.buffer));
    fs.writeFileSync(path.join(io, 'logits.bin'), Buffer.from(ours.logits.buffer));
    fs.writeFileSync(path.join(io, 'grad.bin'), Buffer.from(ours.grad.buffer));
    fs.writeFileSync(path.join(io, 'meta.json'), JSON.stringify({ batch, inputShape: inShape, targets, scoreLayer: upTo.replace(/\/preact$/, '') }));
    // All cores (PyTorch's default use of this machine) and one thread (wasm runs on one here;
    // and OpenMP's spinning threads suffer most when other work shares the cores).
    for (const threads of [os.cpus().length, 1]) {
      const r = spawnSync('python3', [path.join(here, 'pytorch_anchor.py'), bench.dir, io, '--reps', String(reps), '--threads', String(threads)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
      const line = (r.stdout ?? '').split('\n').find((l) => l.startsWith('{'));
      if (r.status === 0 && line) {
        const a = JSON.parse(line) as { forward: number; grad: number; torch: string; threads: number; logitsRelErr: number; gradRelErr: number };
        rows.push({ net: key, engine: `pytorch ${a.torch} (${a.threads} thread${a.threads === 1 ? '' : 's'})`, batch, fwd: a.forward, grad: a.grad, note: `same net: logits rel. err ${a.logitsRelErr.toExponential(1)}, gradient rel. err ${a.gradRelErr.toExponential(1)}` });
        console.log(`pytorch ${a.threads}t     forward ${fmt(a.forward)} img/s, input gradient ${fmt(a.grad)} img/s; outputs vs ours: logits ${a.logitsRelErr.toExponential(1)}, gradient ${a.gradRelErr.toExponential(1)} (rel. L2); load ${load()}`);
      } else {
        const msg = (r.stdout ?? '').trim().split('\n').at(-1) ?? `exit ${r.status}`;
        rows.push({ net: key, engine: 'pytorch', batch, note: `skipped: ${msg}` });
        console.log(`pytorch        skipped: ${msg}`);
        break;
      }
    }
    fs.rmSync(io, { recursive: true, force: true });
  }

  if (args.profile) {
    for (const set of ['tfjs', 'convlens'] as const) {
      useWasmKernels(set);
      await profile(`${key} wasm/${set}`, ex, xv, [batch, ...inShape], targets);
    }
  }
  model.dispose();
}

/**
 * Kernel self time of one input gradient (median of 3), summed per kernel name: every wasm kernel's
 * kernelFunc is wrapped with a wall-clock timer (wasm is synchronous) and the time of kernels run
 * inside a composed kernel is subtracted from it. tf.profile was not used: its per-output data
 * reads inflated the memory-bound kernels several-fold (731 ms of "kernel time" for a 180 ms gradient).
 */
async function profile(label: string, ex: BenchModel['model']['executor'], xv: Float32Array, shape: number[], targets: number[]): Promise<void> {
  const x = tf.tensor4d(xv, shape as [number, number, number, number]);
  const configs = tf.getKernelsForBackend('wasm');
  const own = configs.map((k) => k.kernelFunc);
  const runs: Array<Map<string, { ms: number; n: number }>> = [];
  let by = new Map<string, { ms: number; n: number }>();
  const stack: number[] = []; // time spent in nested kernels, per open level
  configs.forEach((k, i) => {
    const f = own[i]!;
    k.kernelFunc = ((args: Parameters<tf.KernelFunc>[0]) => {
      stack.push(0);
      const t0 = performance.now();
      try {
        return f(args);
      } finally {
        const dt = performance.now() - t0;
        const nested = stack.pop()!;
        if (stack.length) stack[stack.length - 1]! += dt;
        const e = by.get(k.kernelName) ?? { ms: 0, n: 0 };
        e.ms += dt - nested;
        e.n++;
        by.set(k.kernelName, e);
      }
    }) as tf.KernelFunc;
  });
  let wall = Number.POSITIVE_INFINITY;
  try {
    for (let r = 0; r < 4; r++) {
      by = new Map();
      const t0 = performance.now();
      const d = tf.tidy(() => inputGradient(ex, x, targets));
      await d.data();
      const dt = performance.now() - t0;
      d.dispose();
      if (r > 0) { // the first is a warm-up
        runs.push(by);
        wall = Math.min(wall, dt);
      }
    }
  } catch (e) {
    console.log(`\nprofile ${label}: fails: ${(e as Error).message.split('\n')[0]}`);
    return;
  } finally {
    configs.forEach((k, i) => (k.kernelFunc = own[i]!));
    x.dispose();
  }
  const names = new Set(runs.flatMap((m) => [...m.keys()]));
  const med = new Map<string, { ms: number; n: number }>();
  for (const name of names) {
    const v = runs.map((m) => m.get(name) ?? { ms: 0, n: 0 }).sort((a, b) => a.ms - b.ms);
    med.set(name, v[Math.floor(v.length / 2)]!);
  }
  const total = [...med.values()].reduce((a, b) => a + b.ms, 0);
  console.log(`\nprofile ${label}: one input gradient of batch ${shape[0]}, ${total.toFixed(0)} ms of kernel self time (median of 3; best wall ${wall.toFixed(0)} ms)`);
  for (const [name, e] of [...med.entries()].sort((a, b) => b[1].ms - a[1].ms).slice(0, 14)) {
    console.log(`  ${name.padEnd(36)} ${e.ms.toFixed(1).padStart(8)} ms  ${((100 * e.ms) / total).toFixed(1).padStart(5)} %  (${e.n} calls)`);
  }
}

// ---------- per-kernel table: tfjs-backend-wasm's kernel vs ours, same shapes, same run ----------

interface KernelCase { kernel: string; what: string; inputs: () => tf.NamedTensorMap; attrs: tf.NamedAttrMap }
function kernelCases(): KernelCase[] {
  const r = (s: number[]) => tf.randomNormal(s, 0, 1, 'float32', 7);
  const convIn = (n: number, h: number, ci: number, co: number, k: number, s: number): KernelCase => {
    const info = tf.backend_util.computeConv2DInfo([n, h, h, ci], [k, k, ci, co], s, 1, 'same');
    return {
      kernel: 'Conv2DBackpropInput', what: `dy [${n},${info.outHeight},${info.outWidth},${co}] k${k} s${s} → [${n},${h},${h},${ci}]`,
      inputs: () => ({ dy: r([n, info.outHeight, info.outWidth, co]), filter: r([k, k, ci, co]) }),
      attrs: { inputShape: [n, h, h, ci], strides: s, pad: 'same', dataFormat: 'NHWC' } as unknown as tf.NamedAttrMap,
    };
  };
  const dwIn = (n: number, h: number, c: number, s: number): KernelCase => {
    const info = tf.backend_util.computeConv2DInfo([n, h, h, c], [3, 3, c, 1], s, 1, 'same', undefined, true);
    return {
      kernel: 'DepthwiseConv2dNativeBackpropInput', what: `dy [${n},${info.outHeight},${info.outWidth},${c}] 3×3 s${s}`,
      inputs: () => ({ dy: r([n, info.outHeight, info.outWidth, c]), filter: r([3, 3, c, 1]) }),
      attrs: { inputShape: [n, h, h, c], strides: s, pad: 'same', dilations: 1 } as unknown as tf.NamedAttrMap,
    };
  };
  const convF = (n: number, h: number, ci: number, co: number): KernelCase => ({
    kernel: 'Conv2DBackpropFilter', what: `x [${n},${h},${h},${ci}] 3×3 → ${co}`,
    inputs: () => ({ x: r([n, h, h, ci]), dy: r([n, h, h, co]) }),
    attrs: { filterShape: [3, 3, ci, co], strides: 1, pad: 'same', dataFormat: 'NHWC' } as unknown as tf.NamedAttrMap,
  });
  const pool = (n: number, h: number, c: number): KernelCase => ({
    kernel: 'MaxPoolGrad', what: `x [${n},${h},${h},${c}] 2×2/2`,
    inputs: () => ({ dy: r([n, h / 2, h / 2, c]), input: r([n, h, h, c]), output: r([n, h / 2, h / 2, c]) }),
    attrs: { filterSize: 2, strides: 2, pad: 'valid' } as unknown as tf.NamedAttrMap,
  });
  const bn = (n: number, h: number, c: number): KernelCase => ({
    kernel: 'FusedBatchNorm', what: `x [${n},${h},${h},${c}] (inference)`,
    inputs: () => ({ x: r([n, h, h, c]), mean: r([c]), variance: tf.tidy(() => tf.add(tf.abs(r([c])), 0.1)), offset: r([c]), scale: r([c]) }),
    attrs: { varianceEpsilon: 1e-3 } as unknown as tf.NamedAttrMap,
  });
  const mm = (what: string, a: number[], b: number[], transposeA: boolean, transposeB: boolean): KernelCase => ({
    kernel: 'BatchMatMul', what, inputs: () => ({ a: r(a), b: r(b) }), attrs: { transposeA, transposeB } as unknown as tf.NamedAttrMap,
  });
  return [
    // a 64 × 64 Gram matrix of a 64 × 64 × 96 layer and the two matMuls of its gradient
    mm('Gram FᵀF, F [1,4096,96], transposeA', [1, 4096, 96], [1, 4096, 96], true, false),
    mm('dG·Fᵀ, [1,96,96] × [1,4096,96], transposeB', [1, 96, 96], [1, 4096, 96], false, true),
    { kernel: 'Transpose', what: 'x [1,4096,96], last two axes', inputs: () => ({ x: r([1, 4096, 96]) }), attrs: { perm: [0, 2, 1] } as unknown as tf.NamedAttrMap },
    { kernel: 'Slice', what: 'x [1,129,129,3] → [1,128,128,3]', inputs: () => ({ x: r([1, 129, 129, 3]) }), attrs: { begin: [0, 0, 0, 0], size: [1, 128, 128, 3] } as unknown as tf.NamedAttrMap },
    { kernel: 'Slice', what: 'x [2,112,112,96], one column off', inputs: () => ({ x: r([2, 112, 112, 96]) }), attrs: { begin: [0, 0, 1, 0], size: [2, 112, 111, 96] } as unknown as tf.NamedAttrMap },
    convIn(16, 28, 1, 16, 3, 1), convIn(16, 28, 16, 32, 3, 1), convIn(16, 14, 32, 64, 3, 1), convIn(2, 224, 3, 32, 3, 2), convIn(2, 56, 128, 128, 1, 1),
    convIn(2, 28, 192, 32, 1, 1), convIn(2, 14, 512, 512, 1, 1), convIn(2, 7, 1024, 1024, 1, 1),
    dwIn(2, 112, 32, 1), dwIn(2, 112, 64, 2), dwIn(2, 112, 96, 2), dwIn(2, 28, 192, 1),
    convF(16, 28, 16, 32), pool(16, 28, 16), pool(16, 14, 32), bn(16, 28, 16), bn(2, 112, 96),
  ];
}

async function kernelTable(): Promise<string[]> {
  await initBackend('wasm');
  const out: string[] = [];
  for (const c of kernelCases()) {
    const inputs = c.inputs();
    const run = async () => {
      const y = tf.engine().runKernel(c.kernel, inputs, c.attrs) as tf.Tensor;
      await y.data();
      y.dispose();
    };
    const res: Record<string, string> = {};
    const ms: Record<string, number> = {};
    for (const set of ['tfjs', 'uncached', 'noSimd', 'convlens'] as const) {
      useWasmKernels(set === 'tfjs' ? 'tfjs' : 'convlens');
      useFilterCache(set !== 'uncached');
      useSimdKernels(set !== 'noSimd');
      if (!tf.getKernel(c.kernel, 'wasm')) {
        res[set] = 'missing';
        continue;
      }
      const t = await time(Math.max(3, reps), run);
      ms[set] = t.median * 1000;
      res[set] = `${(t.median * 1000).toFixed(1)} ms`;
    }
    useWasmKernels('convlens');
    tf.dispose(Object.values(inputs));
    const speed = ms.tfjs && ms.convlens ? `${(ms.tfjs / ms.convlens).toFixed(1)}×` : '—';
    out.push(`| ${c.kernel} | ${c.what} | ${res.tfjs} | ${res.uncached} | ${res.noSimd} | ${res.convlens} | ${speed} |`);
  }
  return out;
}

// ---------- ceiling: single forward convolutions of these nets' shapes, wasm vs PyTorch 1 thread ----------

/**
 * What the arithmetic allows: every gradient here is mostly convolutions (forward, and backprops
 * that are forward convs of dy), so one conv's GFLOP/s on wasm (XNNPACK, 128-bit SIMD without
 * FMA) against PyTorch's (oneDNN, AVX2/AVX-512 FMA) on the same shape bounds the whole-net ratio.
 */
async function ceilingTable(): Promise<string[]> {
  await initBackend('wasm');
  const shapes: Array<[number, number, number, number, number]> = [
    // default model (its 1-channel first layer is left out: a lone 1-channel conv took PyTorch
    // 4.6 ms, more than its whole gradient of the net, so that row said nothing)
    [16, 14, 16, 32, 3], [16, 7, 32, 64, 3], [16, 7, 64, 64, 3],
    [2, 112, 32, 64, 1], [2, 14, 512, 512, 1], [2, 7, 1024, 1024, 1], // MobileNetV1 pointwise
    [2, 56, 24, 144, 1], [2, 14, 384, 64, 1], // MobileNetV2 expand / project
  ];
  const ours: number[] = [];
  for (const [n, h, ci, co, k] of shapes) {
    const x = tf.randomNormal([n, h, h, ci]) as tf.Tensor4D;
    const w = tf.randomNormal([k, k, ci, co]) as tf.Tensor4D;
    const t = await time(Math.max(reps, 10), async () => {
      const y = tf.conv2d(x, w, 1, 'same');
      await y.data();
      y.dispose();
    });
    ours.push((2 * n * h * h * ci * co * k * k) / t.median / 1e9);
    tf.dispose([x, w]);
  }
  let torch: number[] | undefined;
  let torchName = 'PyTorch';
  if (!args['no-torch']) {
    const r = spawnSync('python3', [path.join(here, 'pytorch_anchor.py'), '--ceiling', JSON.stringify(shapes), '--reps', String(Math.max(reps, 10)), '--threads', '1'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    const line = (r.stdout ?? '').split('\n').find((l) => l.startsWith('{'));
    if (r.status === 0 && line) {
      const a = JSON.parse(line) as { gflops: number[]; torch: string };
      torch = a.gflops;
      torchName = `PyTorch ${a.torch}`;
    }
  }
  const out = [`\n### ceiling: one forward conv2d ('same'), GFLOP/s (median of ${Math.max(reps, 10)}), wasm vs ${torchName} 1 thread; load ${load()}`, '| conv [n, h, h, ci] k → co | wasm GFLOP/s | PyTorch 1 thread GFLOP/s | wasm / PyTorch |', '|---|---:|---:|---:|'];
  shapes.forEach(([n, h, ci, co, k], i) => {
    const p = torch?.[i];
    out.push(`| [${n},${h},${h},${ci}] k${k} → ${co} | ${ours[i]!.toFixed(1)} | ${p ? p.toFixed(1) : '—'} | ${p ? (ours[i]! / p).toFixed(2) + '×' : '—'} |`);
  });
  return out;
}

const kRows = args['no-kernels'] ? [] : await kernelTable();
const cRows = args.ceiling ? await ceilingTable() : [];

console.log(`\n### gradients: images/s (median of ${reps} after a warm-up), ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, load at end ${load()}`);
console.log('| network | engine | batch | forward img/s | input-gradient img/s | gradient / forward | note |');
console.log('|---|---|---|---|---|---|---|');
for (const r of rows) {
  const ratio = r.fwd && r.grad ? `${(r.fwd / r.grad).toFixed(2)}×` : '—';
  console.log(`| ${r.net} | ${r.engine} | ${r.batch} | ${fmt(r.fwd)} | ${fmt(r.grad)} | ${ratio} | ${r.note ?? ''} |`);
}
for (const key of wanted) {
  const ours = rows.find((r) => r.net === key && r.engine === 'wasm/convlens');
  for (const torch of rows.filter((r) => r.net === key && r.engine.startsWith('pytorch') && r.fwd)) {
    if (ours?.grad && torch.grad && ours.fwd && torch.fwd) {
      console.log(`${key}: convlens wasm / ${torch.engine} = ${(ours.fwd / torch.fwd).toFixed(2)}× (forward), ${(ours.grad / torch.grad).toFixed(2)}× (input gradient)`);
    }
  }
  if (ours?.grad) console.log(`${key}: one saliency map (input gradient) ${(1000 / ours.grad).toFixed(0)} ms per image on wasm`);
}
if (kRows.length) {
  console.log('\n### per kernel, wasm: tfjs-backend-wasm 4.22 vs pipelines/kernels (median ms)');
  console.log('(no filter cache: the transposed/phase filters rebuilt at every call, as before filter-cache.ts; no SIMD: useSimdKernels(false))');
  console.log('| kernel | shape | tfjs | convlens, no filter cache | convlens, no SIMD | convlens | speed-up tfjs → convlens |');
  console.log('|---|---|---|---|---|---|---|');
  for (const r of kRows) console.log(r);
}
for (const r of cRows) console.log(r);
