import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it, vi } from 'vitest';
import { describeBackend, initBackend, withBackend } from '../pipelines/backend';
import { isConvlensError } from '../pipelines/errors';
import { registerWasmKernels } from '../pipelines/kernels/index';
import type { BackendInfo, BackendName } from '../pipelines/types';
import { TINY_CLASSES, tinyInput, tinyModel, tinyWeights } from './helpers/tiny-model';
import { maxRelErr } from './helpers/compare';

// Spy on the real kernel registration to check that initBackend calls it exactly once.
vi.mock('../pipelines/kernels/index', async (importOriginal) => {
  const real = await importOriginal<typeof import('../pipelines/kernels/index')>();
  return { ...real, registerWasmKernels: vi.fn(real.registerWasmKernels) };
});

const BATCH = 4;
const CLASS = 3;
const TOLERANCE = 1e-4;
const weights = tinyWeights();
const input = tinyInput(BATCH);

interface Result {
  info: BackendInfo;
  logits: Float32Array;
  grad: Float32Array;
}

/** Logits and d(score of CLASS)/d(input) of the tiny model on one backend. */
async function runTiny(name: BackendName): Promise<Result> {
  const info = await initBackend(name);
  expect(tf.getBackend()).toBe(name);
  const model = tinyModel(weights);
  const x = tf.tensor4d(input, [BATCH, 28, 28, 1]);
  const logits = model.predict(x);
  // Score via slice (not gather): its gradient is a pad, which every backend has.
  const score = (xx: tf.Tensor): tf.Scalar =>
    tf.sum(tf.slice(model.predict(xx as tf.Tensor4D), [0, CLASS], [BATCH, 1]));
  const grad = tf.grad(score)(x);
  const result = { info, logits: (await logits.data()) as Float32Array, grad: (await grad.data()) as Float32Array };
  tf.dispose([x, logits, grad]);
  model.dispose();
  return result;
}


function expectProvenance(info: BackendInfo, name: BackendName, pkg: string): void {
  expect(info.name).toBe(name);
  expect(info.adapter.length).toBeGreaterThan(0);
  expect(typeof info.hardware).toBe('boolean');
  expect(info.versions['@tensorflow/tfjs-core']).toMatch(/^\d+\.\d+\.\d+/);
  expect(info.versions[pkg]).toMatch(/^\d+\.\d+\.\d+/);
  expect(info.versions.node).toBe(process.versions.node);
}

describe('backends', () => {
  let cpu: Result;
  let webgpuInfo: BackendInfo | undefined;

  it('cpu computes the reference and describes itself', async () => {
    cpu = await runTiny('cpu');
    expect(cpu.logits.length).toBe(BATCH * TINY_CLASSES);
    // A gradient of all zeros would make the comparisons below vacuous.
    expect(Math.max(...cpu.grad.map(Math.abs))).toBeGreaterThan(1e-3);
    expectProvenance(describeBackend(), 'cpu', '@tensorflow/tfjs-backend-cpu');
    expect(describeBackend().hardware).toBe(false);
  });

  it('wasm agrees with cpu (logits and input gradients)', async () => {
    const wasm = await runTiny('wasm');
    const logitsErr = maxRelErr(wasm.logits, cpu.logits);
    const gradErr = maxRelErr(wasm.grad, cpu.grad);
    console.log(`wasm [${wasm.info.adapter}]: logits rel err ${logitsErr.toExponential(2)}, grad rel err ${gradErr.toExponential(2)}`);
    expect(logitsErr).toBeLessThan(TOLERANCE);
    expect(gradErr).toBeLessThan(TOLERANCE);
    expectProvenance(describeBackend(), 'wasm', '@tensorflow/tfjs-backend-wasm');
    expect(wasm.info.adapter).toMatch(/^wasm (SIMD|no SIMD), \d+ threads?$/);
  });

  it('webgpu agrees with cpu (logits and input gradients)', async (ctx) => {
    let gpu: Result;
    try {
      gpu = await runTiny('webgpu');
    } catch (e) {
      // Only a developer machine without any Vulkan driver may skip; CI installs Mesa lavapipe.
      if (!process.env.CI && isConvlensError(e) && /no adapter/.test(e.message)) {
        ctx.skip(`no WebGPU adapter here (${e.message})`);
      }
      throw e;
    }
    webgpuInfo = gpu.info;
    const logitsErr = maxRelErr(gpu.logits, cpu.logits);
    const gradErr = maxRelErr(gpu.grad, cpu.grad);
    console.log(`webgpu [${gpu.info.adapter}]: logits rel err ${logitsErr.toExponential(2)}, grad rel err ${gradErr.toExponential(2)}`);
    expect(logitsErr).toBeLessThan(TOLERANCE);
    expect(gradErr).toBeLessThan(TOLERANCE);
    expectProvenance(describeBackend(), 'webgpu', '@tensorflow/tfjs-backend-webgpu');
    expect(describeBackend().versions.webgpu).toMatch(/^\d+\.\d+\.\d+/);
    if (/llvmpipe|lavapipe|swiftshader/i.test(gpu.info.adapter)) expect(gpu.info.hardware).toBe(false);
  });

  it('initBackend is idempotent', async () => {
    const a = await initBackend('wasm');
    const b = await initBackend('wasm');
    expect(b).toBe(a);
    expect(tf.getBackend()).toBe('wasm');
    expect(vi.mocked(registerWasmKernels)).toHaveBeenCalledTimes(1);
    // Switching away and back re-activates without re-initialising.
    await initBackend('cpu');
    expect(tf.getBackend()).toBe('cpu');
    expect(await initBackend('wasm')).toBe(a);
    expect(tf.getBackend()).toBe('wasm');
    expect(vi.mocked(registerWasmKernels)).toHaveBeenCalledTimes(1);
  });

  it('auto prefers a hardware GPU, else tensorflow, else wasm, and says why', async () => {
    const log: string[] = [];
    const info = await initBackend('auto', { log: (m) => log.push(m) });
    const text = log.join('\n');
    if (webgpuInfo?.hardware) {
      expect(info.name).toBe('webgpu');
      return;
    }
    // No hardware adapter on this machine or in CI (lavapipe), and tfjs-node is not installed.
    expect(info.name).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
    expect(text).toMatch(/skipped webgpu: (only a software adapter|.*no adapter)/);
    expect(text).toMatch(/skipped tensorflow: .*tfjs-node/);
    expect(text).toMatch(/chose wasm/);
    expect(await initBackend('auto')).toBe(info);
  });

  it("'tensorflow' without tfjs-node is a one-line ConvlensError naming the fix", async (ctx) => {
    let installed = true;
    try {
      (await import('node:module')).createRequire(import.meta.url).resolve('@tensorflow/tfjs-node/package.json');
    } catch {
      installed = false;
    }
    if (installed) ctx.skip('@tensorflow/tfjs-node is installed here');
    const err = await initBackend('tensorflow').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isConvlensError(err)).toBe(true);
    const message = (err as Error).message;
    expect(message).not.toMatch(/\n/);
    expect(message).toContain("backend 'tensorflow' needs @tensorflow/tfjs-node (or -gpu)");
    expect(message).toContain('npm install @tensorflow/tfjs-node');
    expect(message).toContain('--backend auto');
    // A failed request leaves the previous backend active.
    expect(tf.getBackend()).toBe('wasm');
  });

  it('withBackend restores the previous backend', async () => {
    await initBackend('wasm');
    const seen = await withBackend('cpu', () => tf.getBackend());
    expect(seen).toBe('cpu');
    expect(tf.getBackend()).toBe('wasm');
  });
});
