/**
 * Picks, registers and activates the TF.js backend a run computes on (DESIGN.md §4), and
 * describes it for the report's provenance.
 *
 * Backend packages are imported lazily: each registers itself on import, and
 * tfjs-backend-webgpu registers only if `navigator.gpu` already exists at that moment.
 */
import * as tf from '@tensorflow/tfjs-core';
// tfjs-core's Node bundle registers no gradients (the @tensorflow/tfjs union does, but it
// prints a banner); tfjs-layers' Node bundle registers all of core's into the global
// registry. Static so that it happens before registerWasmKernels() can override any.
import '@tensorflow/tfjs-layers';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { ConvlensError } from './errors';
import { registerGradientFixes, registerWasmKernels } from './kernels/index';
import { registerWebGpuKernels } from './kernels/webgpu-pool';
import type { BackendInfo, BackendName, BackendRequest } from './types';

type Log = (msg: string) => void;
export interface InitOptions {
  log?: Log;
}

const require = createRequire(import.meta.url);

/** One init per backend per process; a failed init is forgotten so that it can be retried. */
const pending = new Map<BackendName, Promise<BackendInfo>>();
/** Infos of the backends initialised so far, keyed by name (describeBackend looks them up). */
const infos = new Map<BackendName, BackendInfo>();
let autoChoice: Promise<BackendInfo> | undefined;

/**
 * Registers (once) and activates a backend. Calling it again with the same request only
 * re-activates it, so the CLI, tests and techniques can all call it freely.
 */
export async function initBackend(request: BackendRequest, opts: InitOptions = {}): Promise<BackendInfo> {
  const log: Log = opts.log ?? (() => {});
  let info: BackendInfo;
  if (request === 'auto') {
    autoChoice ??= pickAuto(log).catch((e: unknown) => {
      autoChoice = undefined;
      throw e;
    });
    info = await autoChoice;
  } else {
    info = await prepare(request, log);
  }
  await activate(info.name);
  return info;
}

/** The active backend's description, for provenance. */
export function describeBackend(): BackendInfo {
  const name = tf.getBackend() as BackendName | undefined;
  const info = name ? infos.get(name) : undefined;
  if (!info) {
    throw new Error(`describeBackend(): the active TF.js backend (${name ?? 'none'}) was not set up by initBackend()`);
  }
  return info;
}

/** Runs `fn` on the requested backend, then switches back to the backend that was active before. */
export async function withBackend<T>(
  request: BackendRequest,
  fn: (info: BackendInfo) => T | Promise<T>,
  opts: InitOptions = {},
): Promise<T> {
  const before = tf.getBackend();
  const info = await initBackend(request, opts);
  try {
    return await fn(info);
  } finally {
    if (before && before !== info.name) await tf.setBackend(before);
  }
}

/**
 * Releases the GPU device at the end of a run. Dawn does not keep Node alive on its own
 * (checked with Mesa lavapipe: the process exits once the work is done), so this is
 * tidiness, not a requirement. WebGPU cannot be initialised again in this process afterwards.
 */
export async function shutdownBackend(): Promise<void> {
  if (!infos.has('webgpu')) return;
  const be = tf.findBackend('webgpu') as { device?: GPUDevice } | null;
  if (tf.getBackend() === 'webgpu') await tf.ready();
  tf.removeBackend('webgpu');
  be?.device?.destroy();
  infos.delete('webgpu');
  pending.delete('webgpu');
  if (autoChoice && (await autoChoice).name === 'webgpu') autoChoice = undefined;
}

// ---------------------------------------------------------------------------------------

async function activate(name: BackendName): Promise<void> {
  if (tf.getBackend() === name) return;
  if (!(await tf.setBackend(name))) {
    throw new ConvlensError(`the TF.js backend '${name}' could not be activated.`, { fix: 'use --backend auto' });
  }
}

function prepare(name: BackendName, log: Log): Promise<BackendInfo> {
  let p = pending.get(name);
  if (!p) {
    p = setUp[name](log).then(
      (info) => {
        infos.set(name, info);
        return info;
      },
      (e: unknown) => {
        pending.delete(name);
        throw e;
      },
    );
    pending.set(name, p);
  }
  return p;
}

const setUp: Record<BackendName, (log: Log) => Promise<BackendInfo>> = {
  cpu: setUpCpu,
  wasm: setUpWasm,
  webgpu: setUpWebGpu,
  tensorflow: setUpTensorflow,
};

async function pickAuto(log: Log): Promise<BackendInfo> {
  const probe = await probeWebGpu();
  if (!probe.ok) {
    log(`backend auto: skipped webgpu: ${probe.reason}`);
  } else if (!probe.hardware) {
    log(`backend auto: skipped webgpu: only a software adapter (${probe.adapter}); use --backend webgpu to force it`);
  } else {
    try {
      const info = await prepare('webgpu', log);
      log(`backend auto: chose webgpu on ${info.adapter}`);
      return info;
    } catch (e) {
      log(`backend auto: skipped webgpu: ${errorMessage(e)}`);
    }
  }

  const tfNode = findTfNode();
  if (!tfNode) {
    log('backend auto: skipped tensorflow: neither @tensorflow/tfjs-node nor @tensorflow/tfjs-node-gpu is installed');
  } else {
    try {
      const info = await prepare('tensorflow', log);
      log(`backend auto: chose tensorflow (${info.adapter})`);
      return info;
    } catch (e) {
      log(`backend auto: skipped tensorflow: ${errorMessage(e)}`);
    }
  }

  try {
    const info = await prepare('wasm', log);
    log(`backend auto: chose wasm (${info.adapter})`);
    return info;
  } catch (e) {
    // Last resort: the pure-JS backend always works, just slowly.
    log(`backend auto: skipped wasm: ${errorMessage(e)}; falling back to cpu`);
    return prepare('cpu', log);
  }
}

// ---------- cpu ----------

async function setUpCpu(): Promise<BackendInfo> {
  await import('@tensorflow/tfjs-backend-cpu');
  // After the import: it registers the cpu kernels that this replaces (broken resize gradients).
  registerGradientFixes('cpu');
  await activate('cpu');
  // Its first write prints a "install tfjs-node" banner on stderr; the CLI says that itself.
  (tf.backend() as { firstUse?: boolean }).firstUse = false;
  return {
    name: 'cpu',
    adapter: 'JavaScript (tfjs-backend-cpu)',
    hardware: false,
    versions: versionsOf('@tensorflow/tfjs-backend-cpu'),
  };
}

// ---------- wasm ----------

async function setUpWasm(): Promise<BackendInfo> {
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  // The .wasm binaries sit next to the package's main file; a file path makes emscripten
  // read them with fs instead of fetching anything.
  const dist = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm'));
  wasm.setWasmPaths(dist + path.sep);
  if (!(await tf.setBackend('wasm'))) {
    throw new ConvlensError(`the wasm backend failed to initialise (binaries looked up in ${dist}).`, {
      fix: 'reinstall @tensorflow/tfjs-backend-wasm, or use --backend cpu',
    });
  }
  // Our gradient kernels (e.g. Conv2DBackpropFilter) go in once the backend exists.
  registerWasmKernels();
  registerGradientFixes('wasm');
  const simd = (await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')) === true;
  // tfjs-backend-wasm disables threads under Node (tfjs#3830), so this is normally 1.
  const threads = wasm.getThreadsCount();
  return {
    name: 'wasm',
    adapter: `wasm ${simd ? 'SIMD' : 'no SIMD'}, ${threads} thread${threads === 1 ? '' : 's'}`,
    hardware: false,
    versions: versionsOf('@tensorflow/tfjs-backend-wasm'),
  };
}

// ---------- webgpu ----------

type WebGpuProbe =
  | { ok: true; gpu: GPU; adapter: string; hardware: boolean }
  | { ok: false; reason: string };
let webGpuProbe: Promise<WebGpuProbe> | undefined;

// Seen on an H200 container: nvidia_icd.json present but the driver's Vulkan part not mounted
// (NVIDIA_DRIVER_CAPABILITIES without "graphics"), so Dawn finds no adapter at all.
const NO_ADAPTER_FIX =
  'install a Vulkan driver (any GPU vendor driver; in Docker set NVIDIA_DRIVER_CAPABILITIES=all; on CPU-only ' +
  'machines Mesa 25 lavapipe: on Debian `apt-get install -t bookworm-backports mesa-vulkan-drivers`), or use --backend wasm';

/** Loads Dawn and asks for an adapter, once per process; decides whether it is real hardware. */
function probeWebGpu(): Promise<WebGpuProbe> {
  webGpuProbe ??= (async (): Promise<WebGpuProbe> => {
    // Dawn's Wayland/X11 probing complains when this is unset (headless servers, CI).
    process.env.XDG_RUNTIME_DIR ??= os.tmpdir();
    let dawn: typeof import('webgpu');
    try {
      dawn = await import('webgpu');
    } catch (e) {
      return { ok: false, reason: `the webgpu (Dawn) package failed to load: ${errorMessage(e)}` };
    }
    // GPUBufferUsage, GPUMapMode, … are globals in browsers and tfjs-backend-webgpu uses them.
    Object.assign(globalThis, dawn.globals);
    const gpu = dawn.create([]);
    let adapter: GPUAdapter | null = null;
    try {
      // Same preference as tfjs-backend-webgpu's own request, so we describe the adapter it gets.
      adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
    } catch (e) {
      return { ok: false, reason: `WebGPU adapter request failed: ${errorMessage(e)}` };
    }
    if (!adapter) return { ok: false, reason: 'WebGPU found no adapter' };
    const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
    const words = [info.vendor, info.architecture].filter(Boolean).join(' / ');
    const name = info.description || info.device || 'unknown adapter';
    const software =
      info.isFallbackAdapter === true ||
      /llvmpipe|lavapipe|swiftshader|softpipe|software|\bcpu\b/i.test(
        [info.vendor, info.architecture, info.device, info.description].join(' '),
      );
    const via = /llvmpipe/i.test(name) ? ' via lavapipe' : '';
    return { ok: true, gpu, adapter: `${name}${words ? ` (${words})` : ''}${via}`, hardware: !software };
  })();
  return webGpuProbe;
}

async function setUpWebGpu(): Promise<BackendInfo> {
  const probe = await probeWebGpu();
  if (!probe.ok) throw new ConvlensError(`${probe.reason}.`, { fix: NO_ADAPTER_FIX });
  installNavigatorGpu(probe.gpu);
  await import('@tensorflow/tfjs-backend-webgpu');
  if (!tf.findBackendFactory('webgpu')) {
    throw new ConvlensError(
      '@tensorflow/tfjs-backend-webgpu was imported before navigator.gpu existed, so it did not register.',
      { fix: 'import the webgpu backend only through pipelines/backend.ts (initBackend)' },
    );
  }
  registerGradientFixes('webgpu'); // the StridedSlice gradient (scatterND) serves webgpu too
  registerWebGpuKernels(); // MaxPoolGrad: first maximum of a tied window, as on cpu / wasm
  if (!(await tf.setBackend('webgpu'))) {
    throw new ConvlensError(`the WebGPU backend failed to initialise on ${probe.adapter}.`, {
      fix: 'update the GPU driver (Vulkan on Linux), or use --backend wasm',
    });
  }
  return {
    name: 'webgpu',
    adapter: probe.adapter,
    hardware: probe.hardware,
    versions: { ...versionsOf('@tensorflow/tfjs-backend-webgpu'), webgpu: packageVersion('webgpu') },
  };
}

/** tfjs-backend-webgpu reads `navigator.gpu`; Node ≥ 21 has a read-only `navigator` of its own. */
function installNavigatorGpu(gpu: GPU): void {
  const g = globalThis as { navigator?: object };
  if (g.navigator && (g.navigator as { gpu?: unknown }).gpu) return;
  if (g.navigator && Object.isExtensible(g.navigator)) {
    Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true });
  } else {
    Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  }
}

// ---------- tensorflow (libtensorflow through tfjs-node) ----------

const TF_NODE_PACKAGES = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'] as const;

function findTfNode(): string | undefined {
  return TF_NODE_PACKAGES.find((pkg) => packageVersion(pkg) !== 'unknown');
}

/*
 * tfjs-node 4.22.0 depends on @tensorflow/tfjs 4.22.0 exactly, which pins tfjs-core 4.22.0,
 * so with our tfjs-core at 4.22.0 npm dedupes to one copy. Even with a second, nested copy
 * its registration still reaches us: tfjs-core keeps the engine and the kernel registry on
 * the global object (`globalThis._tfengine`, `_tfGlobals`), and Tensor's instanceof is
 * duck-typed. On import tfjs-node calls registerBackend('tensorflow') and setBackend itself.
 * A version mismatch would still mix kernel sets of two releases, hence the warning below.
 * Not exercised in CI: installing tfjs-node downloads libtensorflow.
 */
async function setUpTensorflow(log: Log): Promise<BackendInfo> {
  const pkg = findTfNode();
  if (!pkg) {
    throw new ConvlensError("backend 'tensorflow' needs @tensorflow/tfjs-node (or -gpu), and neither is installed.", {
      fix: 'npm install @tensorflow/tfjs-node — or use --backend auto',
    });
  }
  try {
    await import(pkg);
  } catch (e) {
    throw new ConvlensError(`${pkg} is installed but failed to load: ${errorMessage(e)}`, {
      fix: `npm rebuild ${pkg}, or use --backend auto`,
    });
  }
  const core = packageVersion('@tensorflow/tfjs-core');
  const theirs = dependencyVersion(pkg, '@tensorflow/tfjs');
  if (theirs && theirs !== core) {
    log(`warning: ${pkg} was built against @tensorflow/tfjs ${theirs}, convlens uses tfjs-core ${core}`);
  }
  if (!tf.findBackendFactory('tensorflow')) {
    throw new ConvlensError(`${pkg} loaded but registered no 'tensorflow' backend with this tfjs-core.`, {
      fix: `install a ${pkg} whose version matches @tensorflow/tfjs-core ${core}`,
    });
  }
  await activate('tensorflow');
  const be = tf.backend() as { isUsingGpuDevice?: boolean; binding?: { TF_Version?: string } };
  const gpu = be.isUsingGpuDevice === true;
  const libtf = be.binding?.TF_Version ? ` ${be.binding.TF_Version}` : '';
  return {
    name: 'tensorflow',
    adapter: `libtensorflow${libtf} on ${gpu ? 'GPU (CUDA)' : 'CPU'} via ${pkg}`,
    hardware: gpu,
    versions: versionsOf(pkg),
  };
}

// ---------- versions ----------

function versionsOf(backendPackage: string): Record<string, string> {
  return {
    '@tensorflow/tfjs-core': packageVersion('@tensorflow/tfjs-core'),
    [backendPackage]: packageVersion(backendPackage),
    node: process.versions.node,
  };
}

function readPackageJson(pkg: string): { version?: string; dependencies?: Record<string, string> } | undefined {
  try {
    return require(`${pkg}/package.json`) as { version?: string; dependencies?: Record<string, string> };
  } catch {
    return undefined;
  }
}

function packageVersion(pkg: string): string {
  return readPackageJson(pkg)?.version ?? 'unknown';
}

function dependencyVersion(pkg: string, dep: string): string | undefined {
  return readPackageJson(pkg)?.dependencies?.[dep];
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
