/**
 * The GPU path end to end: the techniques that used to read tensors synchronously (deconvnet,
 * grad-cam with its layer comparison, occlusion) and an optimisation technique
 * (activation-maximization, a few Adam steps) run through the real runner on webgpu (Mesa
 * lavapipe on a CPU-only machine) and give what cpu gives on the tiny report.
 *
 * Tolerances, per raw float32 file, as max|webgpu − cpu| / max|cpu|:
 * - attribution maps 1e-4: the same bound and reasoning as attribution-backends.test.ts (float32
 *   rounding ~6e-8 per op, summation order differs by backend, a few layers deep → ~1e-6 expected;
 *   a wrong switch, mask or filter gives errors of order 1).
 * - activation maximisation 1e-3: five Adam steps feed each step's image into the next, and Adam
 *   divides by √v, which magnifies the relative error of small gradients (the test logs the
 *   measured drift: ~5e-7 on lavapipe). The recorded losses are rounded to 5 significant digits,
 *   so they agree exactly or differ in the last digit (~1e-5).
 * The deconvnet's discrete choice (the strongest unit) must be the same unit on both.
 */
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../pipelines/backend';
import type { FeaturesData } from '../pipelines/engines/examples';
import { isConvlensError } from '../pipelines/errors';
import { loadModel } from '../pipelines/model/load';
import type { Technique } from '../pipelines/technique';
import activationMaximization, { type AmData } from '../pipelines/techniques/activation-maximization';
import deconvnet from '../pipelines/techniques/deconvnet';
import features from '../pipelines/techniques/features';
import gradCam from '../pipelines/techniques/grad-cam';
import occlusion from '../pipelines/techniques/occlusion';
import type { BackendName } from '../pipelines/types';
import { runTechnique, tinyReport, type TinyDataset } from './helpers/tiny-report';
import { maxRelErr } from './helpers/compare';

const MAP_TOLERANCE = 1e-4;
const OPTIMIZE_TOLERANCE = 1e-3;

const CASES: [Technique, Record<string, unknown>][] = [
  [deconvnet, { faithfulness: false }],
  [gradCam, { faithfulness: false, compareLayers: 3, compareImages: 2 }],
  [occlusion, { faithfulness: false }],
  [activationMaximization, { steps: 5, channels: 2, layers: ['c2', 'c3'] }],
];

interface Run { raw: Map<string, Float32Array>; data: Map<string, unknown> }

let dataset: TinyDataset;
let modelDir: string;
let feats: { data: FeaturesData; dir: string };

function readRaw(dir: string, prefix: string, into: Map<string, Float32Array>): void {
  for (const f of fs.readdirSync(dir, { recursive: true }).map(String)) {
    if (!f.endsWith('.f32')) continue;
    const b = fs.readFileSync(path.join(dir, f));
    into.set(`${prefix}/${f}`, new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)));
  }
}

async function runOn(name: BackendName): Promise<Run> {
  await initBackend(name);
  const model = await loadModel(modelDir);
  const out: Run = { raw: new Map(), data: new Map() };
  try {
    const before = tf.memory().numTensors;
    for (const [t, params] of CASES) {
      const r = await runTechnique(t, { model, dataset, params, seed: 7, deps: { features: feats.data }, depDirs: { features: feats.dir } });
      expect(tf.memory().numTensors, `${t.id} on ${name} leaked tensors`).toBe(before);
      readRaw(r.dir, t.id, out.raw);
      out.data.set(t.id, r.data);
      fs.rmSync(r.dir, { recursive: true, force: true });
    }
  } finally {
    model.dispose();
  }
  return out;
}


beforeAll(async () => {
  await initBackend('cpu');
  const tiny = await tinyReport();
  dataset = tiny.dataset;
  modelDir = tiny.model.dir;
  const f = await runTechnique(features, { model: tiny.model, dataset });
  feats = { data: f.data as FeaturesData, dir: f.dir };
  tiny.model.dispose();
}, 60_000);

describe('techniques on webgpu agree with cpu (tiny report)', () => {
  it('deconvnet, grad-cam (+ layer comparison), occlusion, activation-maximization', async (ctx) => {
    try {
      await initBackend('webgpu');
    } catch (e) {
      // Only a developer machine without any Vulkan driver may skip; CI installs Mesa lavapipe.
      if (!process.env.CI && isConvlensError(e) && /no adapter/.test(e.message)) ctx.skip(`no WebGPU adapter here (${e.message})`);
      throw e;
    }
    const cpu = await runOn('cpu');
    const gpu = await runOn('webgpu');

    // every file compared, none trivially zero; grad-cam's comparison wrote one file per layer
    expect([...gpu.raw.keys()].sort()).toEqual([...cpu.raw.keys()].sort());
    expect([...cpu.raw.keys()].filter((k) => k.startsWith('grad-cam/compare/'))).toHaveLength(3);
    const worst: Record<string, number> = {};
    for (const [file, ref] of cpu.raw) {
      expect(Math.max(...Array.from(ref, Math.abs)), file).toBeGreaterThan(1e-6);
      const e = maxRelErr(gpu.raw.get(file)!, ref);
      const id = file.slice(0, file.indexOf('/'));
      worst[id] = Math.max(worst[id] ?? 0, e);
      expect(e, file).toBeLessThanOrEqual(id === 'activation-maximization' ? OPTIMIZE_TOLERANCE : MAP_TOLERANCE);
    }

    // the same deconvnet units (a different argmax would be a different picture)
    type Info = { unit: { y: number; x: number; channel: number; activation: number } };
    const units = (r: Run) => (r.data.get('deconvnet') as { images: { targets: { info: Info }[] }[] }).images.flatMap((i) => i.targets.map((t) => t.info.unit));
    expect(units(gpu).map(({ y, x, channel }) => [y, x, channel])).toEqual(units(cpu).map(({ y, x, channel }) => [y, x, channel]));

    // the recorded loss curves of the optimisation: same length, same values within the bound
    const losses = (r: Run) => (r.data.get('activation-maximization') as AmData).layers.flatMap((l) => Object.values(l.runs).map((x) => x.losses));
    const lc = losses(cpu);
    const lg = losses(gpu);
    expect(lg.map((l) => l.length)).toEqual(lc.map((l) => l.length));
    lc.forEach((l, i) => {
      const e = maxRelErr(Float32Array.from(lg[i]), Float32Array.from(l));
      worst['activation-maximization losses'] = Math.max(worst['activation-maximization losses'] ?? 0, e);
      expect(e).toBeLessThanOrEqual(OPTIMIZE_TOLERANCE);
    });
    console.log(`webgpu vs cpu, max |Δ| / max |cpu|: ${Object.entries(worst).map(([k, v]) => `${k} ${v.toExponential(1)}`).join(', ')}`);
  }, 300_000);
});
