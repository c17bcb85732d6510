/**
 * Per-filter cache of derived filters (transposed, flipped, stride-phase filters) for the wasm
 * gradient kernels (issue 7). During a gradient the filters are constants (model weights, or the
 * executor's folded BatchNorm weights, which it keeps), yet every Conv2DBackpropInput call
 * rebuilt its transposed filter: wasm's Transpose of a [1,1,1024,1024] filter alone took ~23 ms,
 * four times the backprop's own matMul.
 *
 * Keyed on the filter's dataId (tensors are immutable, so same dataId = same values). The derived
 * data lives on the backend only (one backend reference held by the cache, no engine Tensor), so
 * `tf.memory().numTensors` does not change; it is freed when the filter's data is freed: the
 * backend's disposeData is wrapped once per backend for that (also a WeakMap, so nothing keeps a
 * dataId alive). Only on wasm: elsewhere derivedFilter just computes.
 */
import * as tf from '@tensorflow/tfjs-core';

interface CachingBackend {
  incRef(dataId: tf.DataId): void;
  disposeData(dataId: tf.DataId, force?: boolean): boolean;
}
interface Entry { dataId: tf.DataId; shape: number[]; dtype: tf.DataType }

const stores = new WeakMap<object, WeakMap<object, Map<string, Entry>>>();
let enabled = true;

/** Turns the cache off (every call recomputes; entries already made stay until their filter is freed) or on, for before/after benchmarks. */
export function useFilterCache(on: boolean): void {
  enabled = on;
}

/** The cache of the active backend, wrapping its disposeData on first use; undefined off wasm. */
function storeOf(): { be: CachingBackend; store: WeakMap<object, Map<string, Entry>> } | undefined {
  if (!enabled || tf.getBackend() !== 'wasm') return undefined;
  const be = tf.backend() as unknown as CachingBackend;
  let store = stores.get(be);
  if (!store) {
    const s = new WeakMap<object, Map<string, Entry>>();
    const own = be.disposeData.bind(be);
    be.disposeData = (dataId: tf.DataId, force?: boolean): boolean => {
      const freed = own(dataId, force);
      if (freed) {
        const derived = s.get(dataId as object);
        if (derived) {
          s.delete(dataId as object);
          for (const e of derived.values()) be.disposeData(e.dataId);
        }
      }
      return freed;
    };
    stores.set(be, s);
    store = s;
  }
  return { be, store };
}

/**
 * `make()` (a tensor computed from `filter` alone, with ops) for this filter's data, computed once
 * per (filter data, key) on wasm. Call inside a tf.tidy: the returned Tensor is a fresh wrapper
 * that the tidy disposes; the cache keeps its own reference to the data.
 */
export function derivedFilter(filter: tf.Tensor, key: string, make: () => tf.Tensor): tf.Tensor {
  const c = storeOf();
  if (!c) return make();
  const { be, store } = c;
  const id = filter.dataId as object;
  const hit = store.get(id)?.get(key);
  if (hit) {
    be.incRef(hit.dataId); // balanced when the surrounding tidy disposes the wrapper
    return tf.engine().makeTensorFromTensorInfo({ dataId: hit.dataId, shape: hit.shape.slice(), dtype: hit.dtype });
  }
  const t = make();
  // A result sharing the filter's own data (a reshape) would keep the filter alive forever.
  if (t.dataId === filter.dataId) return t;
  be.incRef(t.dataId);
  let m = store.get(id);
  if (!m) store.set(id, (m = new Map()));
  m.set(key, { dataId: t.dataId, shape: t.shape.slice(), dtype: t.dtype });
  return t;
}

/** Number of filters with cached derived data on the active backend's cache (for tests). */
export function derivedFilterCount(filter: tf.Tensor): number {
  return stores.get(tf.backend() as unknown as object)?.get(filter.dataId as object)?.size ?? 0;
}
