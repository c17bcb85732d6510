/**
 * A tiny hand-written WebAssembly SIMD module (simd.wat, assembled into simd-bytes.ts) that runs
 * in place on the tfjs-backend-wasm heap. tfjs 4.22 has no fused kernels for some elementwise
 * work we need (the Relu/Relu6 gradient is 2–5 native ops there), and JS loops over heap views
 * run ~6 ns/element; one SIMD pass over the same memory does not need either.
 *
 * The module imports the backend's own WebAssembly.Memory, so a tensor's pointer is simply
 * `typedArrayFromHeap(info).byteOffset`, and it keeps seeing the heap after it grows (only JS
 * views are detached by growth). Allocate outputs (makeOutput) before taking pointers anyway:
 * the allocation is what may grow the heap.
 */
import { SIMD_WASM_BASE64 } from './simd-bytes';

export interface SimdKernels {
  /** The heap the pointers refer to (the backend's Memory). */
  readonly memory: WebAssembly.Memory;
  /** out[i] = (x[i] > 0 && x[i] <= max) ? dy[i] : +0, n float32 elements; byte pointers. */
  reluGrad(dyPtr: number, xPtr: number, outPtr: number, n: number, max: number): void;
  /** out[p·C + c] = x[p·C + c]·scale[c] + shift[c] (f32 mul, then f32 add); byte pointers. */
  channelAffine(xPtr: number, scalePtr: number, shiftPtr: number, outPtr: number, nPixels: number, channels: number): void;
  /**
   * dx[first max of each window] += dy, NHWC float32, dx zeroed by the caller; byte pointers and
   * computePool2DInfo's geometry (n, h, w, c, outH, outW, effective filter h/w, strides, dilations, pads).
   */
  maxPoolGrad(
    xPtr: number, dyPtr: number, dxPtr: number, n: number, h: number, w: number, c: number, oh: number, ow: number,
    fh: number, fw: number, sh: number, sw: number, dh: number, dw: number, top: number, left: number,
  ): void;
  /** dst[b][j][i] = src[b][i][j]: `batch` row-major [rows, cols] matrices of 4-byte elements; byte pointers. */
  transposeLast2(srcPtr: number, dstPtr: number, batch: number, rows: number, cols: number): void;
}

/** Keyed by the Memory: one instance per heap; null remembers that instantiation failed. */
const instances = new WeakMap<WebAssembly.Memory, SimdKernels | null>();
let compiled: WebAssembly.Module | null | undefined;
let enabled = true;

/** false: simdKernels() returns undefined, so callers take their fallback (for A/B benchmarks). */
export function useSimdKernels(on: boolean): void {
  enabled = on;
}

/** The backend's exported Memory: tfjs-backend-wasm keeps its emscripten module in `backend.wasm`. */
export function wasmMemoryOf(backend: unknown): WebAssembly.Memory | undefined {
  const wasm = (backend as { wasm?: { asm?: { memory?: unknown }; wasmMemory?: unknown } } | null)?.wasm;
  const mem = wasm?.asm?.memory ?? wasm?.wasmMemory;
  return mem instanceof WebAssembly.Memory ? mem : undefined;
}

function decode(b64: string) {
  // atob exists in browsers and Node ≥ 16; the module is < 1 kB.
  const s = atob(b64);
  const bytes = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i);
  return bytes;
}

function compile(): WebAssembly.Module | null {
  if (compiled === undefined) {
    try {
      // Synchronous: the module is tiny, and kernels cannot await.
      compiled = new WebAssembly.Module(decode(SIMD_WASM_BASE64));
    } catch {
      compiled = null; // no wasm SIMD in this engine
    }
  }
  return compiled;
}

/**
 * The SIMD kernels bound to `backend`'s heap, or undefined when they are switched off, the
 * backend has no wasm Memory (cpu, webgpu), or instantiation fails (no SIMD support, or a
 * shared-memory threaded build, whose Memory does not match our non-shared import); callers
 * then fall back to their tf-op or JS form.
 */
export function simdKernels(backend: unknown): SimdKernels | undefined {
  if (!enabled) return undefined;
  const memory = wasmMemoryOf(backend);
  if (!memory) return undefined;
  const cached = instances.get(memory);
  if (cached !== undefined) return cached ?? undefined;
  let kernels: SimdKernels | null = null;
  const mod = compile();
  if (mod) {
    try {
      const inst = new WebAssembly.Instance(mod, { env: { memory } });
      const e = inst.exports as {
        relu_grad: SimdKernels['reluGrad'];
        channel_affine: SimdKernels['channelAffine'];
        max_pool_grad: SimdKernels['maxPoolGrad'];
        transpose_last2: SimdKernels['transposeLast2'];
      };
      kernels = {
        memory, reluGrad: e.relu_grad, channelAffine: e.channel_affine, maxPoolGrad: e.max_pool_grad, transposeLast2: e.transpose_last2,
      };
    } catch {
      kernels = null;
    }
  }
  instances.set(memory, kernels);
  return kernels ?? undefined;
}
