/**
 * Every attribution technique's raw float32 maps (the `.f32` files the site links to) agree
 * between the cpu reference and wasm / webgpu (Mesa lavapipe in CI).
 *
 * Tolerance: max|a − b| / max|cpu| ≤ 1e-4 per raw file. float32 carries ~6e-8 relative rounding
 * per operation; backends sum convolutions and reductions in different orders, so on this
 * model (≤ 72-term dot products, a few layers deep, then a backward pass) the expected drift is
 * ~1e-6 of the largest value. Scaling by the file's max (not per pixel) keeps pixels near zero
 * from turning harmless absolute noise into huge relative errors. 1e-4 leaves ~100× headroom
 * and still fails a wrong kernel (wrong switches, a missing ReLU mask, a flipped filter all give
 * errors of order 1).
 *
 * Discrete choices can flip on near-ties and would then differ by O(1) for a legitimate
 * reason: the deconvnet's strongest unit (argmax over a layer) and every max-pool switch. The
 * tests below first check on cpu that, for the chosen example images, the two largest values in
 * each such choice are separated by far more than the backends' drift, so agreement is a fair
 * expectation rather than luck. Exact ties are another matter: max-pool windows that a ReLU zeroed
 * are all ties, and the explicit deconvnet sends signal through them; its switches therefore come
 * from exact comparisons (first maximum), not from the backend's MaxPoolWithArgmax.
 *
 * Caveat: the tiny model is saturated (softmax ≈ 1), so occlusion's probability drops are
 * quantised near ulp(1) and compare weakly; its forward logits are covered by backend.test.ts.
 */
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../pipelines/backend';
import { deconvnetProject, gradCamMaps, strongestUnits } from '../pipelines/engines/attribution';
import { chooseExamples, type FeaturesData } from '../pipelines/engines/examples';
import { isConvlensError } from '../pipelines/errors';
import { loadModel, type LoadedModel } from '../pipelines/model/load';
import type { Technique } from '../pipelines/technique';
import cam from '../pipelines/techniques/cam';
import deconvnet from '../pipelines/techniques/deconvnet';
import features from '../pipelines/techniques/features';
import gradCam from '../pipelines/techniques/grad-cam';
import gradCamPlusPlus from '../pipelines/techniques/grad-cam-plus-plus';
import guidedBackprop from '../pipelines/techniques/guided-backprop';
import guidedGradCam from '../pipelines/techniques/guided-grad-cam';
import occlusion from '../pipelines/techniques/occlusion';
import saliency from '../pipelines/techniques/saliency';
import smoothgrad from '../pipelines/techniques/smoothgrad';
import type { BackendName } from '../pipelines/types';
import { runTechnique, tinyReport, TINY_SIZE, type TinyDataset } from './helpers/tiny-report';
import { maxRelErr } from './helpers/compare';

const TOLERANCE = 1e-4;
/**
 * A near-tie: a top-two gap below this fraction of the layer's largest value. Forward activations
 * agree across backends to ~1e-7 of the layer max (test/backend.test.ts), so 1e-5 is 100× that.
 */
const TIE_MARGIN = 1e-5;

// Faithfulness curves are off: they sort pixels by the map, and equal-valued pixels may sort
// differently; the maps themselves are what this file compares.
const TECHNIQUES: [Technique, Record<string, unknown>][] = [
  [saliency, {}],
  [smoothgrad, { samples: 10 }],
  [guidedBackprop, {}],
  [deconvnet, {}],
  [cam, {}],
  [gradCam, {}],
  [gradCamPlusPlus, {}],
  [guidedGradCam, {}],
  [occlusion, {}],
];

/**
 * Known gaps, asserted to persist (so a fix shows up as a failure here and the entry is
 * removed) instead of being skipped: either the technique fails with `error`, or it runs but
 * the raw files in `wrong` disagree with cpu beyond the tolerance.
 */
interface Gap { why: string; error?: RegExp; wrong?: string[] }
// None: every technique reads its tensors with await after its tidy (webgpu under Node has no
// synchronous readback); the explicit deconvnet's switches come from exact first-maximum
// comparisons (engines/attribution.ts, poolSwitches) and webgpu's MaxPoolGrad routes ties to the
// first maximum like cpu's (kernels/webgpu-pool.ts), so neither depends on the backend.
const KNOWN_GAPS: Partial<Record<BackendName, Record<string, Gap>>> = {};

type Maps = Map<string, Float32Array>;
interface BackendRun {
  maps: Map<string, Maps>;
  errors: Map<string, Error>;
  /** deconvnet: the projected unit per row */
  units: unknown[];
}

let dataset: TinyDataset;
let modelDir: string;
let feats: { data: FeaturesData; dir: string };
let reference: BackendRun;

/** Every raw float32 map a result wrote, keyed by its path inside the result folder. */
function readRaw(dir: string, files: string[]): Maps {
  const out: Maps = new Map();
  for (const f of files.filter((x) => x.endsWith('.f32'))) {
    const b = fs.readFileSync(path.join(dir, f));
    out.set(f, new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)));
  }
  return out;
}

/** Loads the tiny model on `name` and runs every technique on the cpu-chosen examples. */
async function runAll(name: BackendName): Promise<BackendRun> {
  await initBackend(name);
  const model = await loadModel(modelDir);
  const run: BackendRun = { maps: new Map(), errors: new Map(), units: [] };
  const before = tf.memory().numTensors;
  try {
    for (const [t, params] of TECHNIQUES) {
      try {
        const r = await runTechnique(t, {
          model, dataset, params: { faithfulness: false, ...params },
          deps: { features: feats.data }, depDirs: { features: feats.dir },
        });
        const files = fs.readdirSync(r.dir, { recursive: true }).map(String);
        const maps = readRaw(r.dir, files);
        expect(maps.size, `${t.id} wrote no raw maps`).toBeGreaterThan(0);
        run.maps.set(t.id, maps);
        if (t.id === 'deconvnet') {
          const d = r.data as { images: { targets: { info?: { unit?: unknown } }[] }[] };
          run.units = d.images.flatMap((i) => i.targets.map((x) => x.info?.unit));
        }
        fs.rmSync(r.dir, { recursive: true, force: true });
      } catch (e) {
        run.errors.set(t.id, e as Error);
      }
      // a failing technique must not leak either
      expect(tf.memory().numTensors, `${t.id} on ${name} leaked tensors`).toBe(before);
    }
  } finally {
    model.dispose();
  }
  return run;
}

/**
 * The engine functions directly, from the units cpu chose: Grad-CAM at every conv layer (what
 * grad-cam's comparison shows) and the explicit deconvnet, whose switches must not follow the
 * backend's tie-breaking.
 */
async function engineMaps(name: BackendName, images: Float32Array, n: number, units: number[], values: number[]): Promise<Maps> {
  await initBackend(name);
  const model = await loadModel(modelDir);
  const before = tf.memory().numTensors;
  const targets = Array.from({ length: n }, (_, i) => i % 3);
  const kept = tf.tidy(() => {
    const x = tf.tensor4d(images, [n, TINY_SIZE, TINY_SIZE, 1]);
    const out: Record<string, tf.Tensor> = {};
    for (const l of ['c1', 'c2', 'c3']) out[`grad-cam ${l}`] = gradCamMaps(model.executor, x, l, targets);
    for (const l of ['c3', 'p2', 'c2']) out[`deconvnet projection ${l}`] = deconvnetProject(model, x, l, units.map((u) => u % model.executor.node(l).outputShape.reduce((a, b) => a * b, 1)), values);
    return out;
  });
  const maps: Maps = new Map();
  for (const [k, t] of Object.entries(kept)) maps.set(k, (await t.data()) as Float32Array);
  tf.dispose(Object.values(kept));
  expect(tf.memory().numTensors).toBe(before);
  model.dispose();
  return maps;
}


/** Compares every technique's maps with the cpu reference; returns the worst error per technique. */
function compare(name: BackendName, run: BackendRun): Record<string, number> {
  const gaps = KNOWN_GAPS[name] ?? {};
  const worst: Record<string, number> = {};
  const gapErrors: string[] = [];
  const identical: string[] = [];
  for (const [t] of TECHNIQUES) {
    const err = run.errors.get(t.id);
    const gap = gaps[t.id];
    if (gap?.error) {
      expect(err?.message, `${t.id} on ${name} is a known gap (${gap.why}) but now works: remove it from KNOWN_GAPS`).toMatch(gap.error);
      gapErrors.push(`${t.id}: fails (${gap.error.source})`);
      continue;
    }
    if (err) throw new Error(`${t.id} failed on ${name}: ${err.message}`, { cause: err });
    const ref = reference.maps.get(t.id)!;
    const got = run.maps.get(t.id)!;
    expect([...got.keys()].sort()).toEqual([...ref.keys()].sort());
    let w = 0;
    let exact = true;
    for (const [file, r] of ref) {
      exact &&= got.get(file)!.every((v, i) => v === r[i]);
      const e = maxRelErr(got.get(file)!, r);
      if (gap?.wrong?.includes(file)) {
        expect(e, `${t.id} ${file} on ${name} is a known gap (${gap.why}) but now agrees: remove it from KNOWN_GAPS`).toBeGreaterThan(TOLERANCE);
        gapErrors.push(`${t.id} ${file}: ${e.toExponential(1)}`);
        continue;
      }
      expect(e, `${t.id} ${file} on ${name}`).toBeLessThanOrEqual(TOLERANCE);
      w = Math.max(w, e);
    }
    worst[t.id] = w;
    if (exact) identical.push(t.id);
  }
  if (!gaps.deconvnet?.error) {
    // the same unit everywhere (a flip would be a near-tie); its activation within the tolerance
    type Unit = { layer: string; y: number; x: number; channel: number; activation: number };
    const where = (u: unknown[]) => (u as Unit[]).map(({ layer, y, x, channel }) => ({ layer, y, x, channel }));
    expect(where(run.units)).toEqual(where(reference.units));
    const act = (u: unknown[]) => Float32Array.from(u as Unit[], (v) => v.activation);
    expect(maxRelErr(act(run.units), act(reference.units))).toBeLessThanOrEqual(TOLERANCE);
  }
  console.log(`${name} vs cpu, max |Δ| / max |cpu| per technique: ${Object.entries(worst).map(([k, v]) => `${k} ${v.toExponential(1)}`).join(', ')}`);
  if (identical.length) console.log(`${name}: bit-identical to cpu: ${identical.join(', ')}`);
  if (gapErrors.length) console.log(`${name} known gaps: ${gapErrors.join('; ')}`);
  return worst;
}

/** Smallest (top1 − top2) / max over rows of a [rows, n] array. */
function minTopTwoGap(values: Float32Array, rows: number): number {
  const n = values.length / rows;
  let scale = 0;
  for (const v of values) scale = Math.max(scale, Math.abs(v));
  let gap = Infinity;
  for (let r = 0; r < rows; r++) {
    let a = -Infinity;
    let b = -Infinity;
    for (let i = r * n; i < (r + 1) * n; i++) {
      const v = values[i];
      if (v > a) [a, b] = [v, a];
      else if (v > b) b = v;
    }
    gap = Math.min(gap, (a - b) / scale);
  }
  return gap;
}

/** Smallest (top1 − top2) / max over every 2×2 max-pool window of an [B, h, w, c] activation. */
function minPoolGap(a: tf.Tensor4D): number {
  const [B, h, w, c] = a.shape;
  const v = a.dataSync();
  let scale = 0;
  for (const x of v) scale = Math.max(scale, Math.abs(x));
  let gap = Infinity;
  for (let b = 0; b < B; b++) for (let y = 0; y + 1 < h; y += 2) for (let x = 0; x + 1 < w; x += 2) for (let k = 0; k < c; k++) {
    const win = [0, 1, 2, 3].map((j) => v[((b * h + y + (j >> 1)) * w + x + (j & 1)) * c + k]).sort((p, q) => q - p);
    // all-zero windows (ReLU'd away) pass no gradient whichever switch is chosen
    if (win[0] > 0) gap = Math.min(gap, (win[0] - win[1]) / scale);
  }
  return gap;
}

beforeAll(async () => {
  await initBackend('cpu');
  let model: LoadedModel;
  ({ dataset, model } = await tinyReport());
  modelDir = model.dir; // each backend loads its own copy of the weights from here
  const f = await runTechnique(features, { model, dataset });
  feats = { data: f.data as FeaturesData, dir: f.dir };
  model.dispose();
  reference = await runAll('cpu');
}, 60_000);
afterAll(() => fs.rmSync(feats.dir, { recursive: true, force: true }));

describe('attribution maps agree across backends (tiny model)', () => {
  it('cpu ran every technique, and its discrete choices are not near-ties', async () => {
    expect([...reference.errors].map(([k, e]) => `${k}: ${e.message}`)).toEqual([]);
    expect(reference.maps.size).toBe(TECHNIQUES.length);
    // the cpu maps must be non-trivial or every comparison below would pass vacuously
    for (const [id, maps] of reference.maps) for (const [file, m] of maps) {
      expect(Math.max(...Array.from(m, Math.abs)), `${id} ${file}`).toBeGreaterThan(1e-6);
    }
    const model = await loadModel(modelDir);
    const examples = chooseExamples(feats.data, { correct: 1, wrong: 1 });
    const size = TINY_SIZE * TINY_SIZE;
    const buf = new Float32Array(examples.length * size);
    for await (const b of dataset.batches('test', 256, { indices: examples.map((e) => e.index) })) buf.set(b.images);
    const gaps = tf.tidy(() => {
      const x = tf.tensor4d(buf, [examples.length, TINY_SIZE, TINY_SIZE, 1]);
      const r = model.executor.run(x, { upTo: 'c3', capture: ['c1', 'c2'] });
      return {
        deconvUnit: minTopTwoGap(r.output.dataSync() as Float32Array, examples.length),
        pool1: minPoolGap(r.captured.c1 as tf.Tensor4D),
        pool2: minPoolGap(r.captured.c2 as tf.Tensor4D),
      };
    });
    model.dispose();
    console.log(`smallest top-two gaps / layer max: deconvnet unit (c3) ${gaps.deconvUnit.toExponential(1)}, p1 switches ${gaps.pool1.toExponential(1)}, p2 switches ${gaps.pool2.toExponential(1)}`);
    for (const g of Object.values(gaps)) expect(g).toBeGreaterThan(TIE_MARGIN);
  });

  it('wasm agrees with cpu (known gaps are listed, not skipped)', async () => {
    compare('wasm', await runAll('wasm'));
  });

  it('webgpu agrees with cpu', async (ctx) => {
    try {
      await initBackend('webgpu');
    } catch (e) {
      // Only a developer machine without any Vulkan driver may skip; CI installs Mesa lavapipe.
      if (!process.env.CI && isConvlensError(e) && /no adapter/.test(e.message)) ctx.skip(`no WebGPU adapter here (${e.message})`);
      throw e;
    }
    compare('webgpu', await runAll('webgpu'));

    // the engine functions on images chosen without regard to ties (six test images in order)
    const n = 6;
    const images = new Float32Array(n * TINY_SIZE * TINY_SIZE);
    for await (const b of dataset.batches('test', n)) {
      images.set(b.images);
      break;
    }
    await initBackend('cpu');
    const model = await loadModel(modelDir);
    const chosen = tf.tidy(() => strongestUnits(model.executor, tf.tensor4d(images, [n, TINY_SIZE, TINY_SIZE, 1]), 'c3'));
    const units = Array.from(await chosen.units.data());
    const values = Array.from(await chosen.values.data());
    tf.dispose([chosen.units, chosen.values]);
    model.dispose();
    const ref = await engineMaps('cpu', images, n, units, values);
    const got = await engineMaps('webgpu', images, n, units, values);
    const errs = [...ref].map(([k, r]) => [k, maxRelErr(got.get(k)!, r)] as const);
    console.log(`webgpu vs cpu, engine functions: ${errs.map(([k, e]) => `${k} ${e.toExponential(1)}`).join(', ')}`);
    for (const [k, e] of errs) expect(e, k).toBeLessThanOrEqual(TOLERANCE);
  });
});
