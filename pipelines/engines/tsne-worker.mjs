// @ts-check
/**
 * Worker thread of the parallel t-SNE gradient (tsne.ts, GradientPool). Plain JS so that it loads
 * under tsx, vitest and plain node alike. It sleeps on a shared control word; the main thread
 * posts what changed (buffers on SharedArrayBuffers, scalars) on a MessagePort, bumps GEN and
 * wakes it; the worker takes work items from the shared counter (runItems), then counts itself
 * done. Synchronous on both sides (Atomics.wait), so the optimiser stays a plain loop.
 */
import { receiveMessageOnPort, workerData } from 'node:worker_threads';
import { DONE, FAILED, GEN, READY, runItems } from './tsne-kernels.mjs';

/** @type {{ ctrl: Int32Array, port: import('node:worker_threads').MessagePort }} */
const { ctrl, port } = workerData;
/** @type {any} */
let view = null;
/** @type {Float64Array} */
let list = new Float64Array(3 * 1024);
let seen = 0;
Atomics.add(ctrl, READY, 1);
Atomics.notify(ctrl, READY);
for (;;) {
  Atomics.wait(ctrl, GEN, seen);
  seen = Atomics.load(ctrl, GEN);
  // every bump of GEN follows exactly one message
  const msg = receiveMessageOnPort(port)?.message;
  if (!msg || msg.exit) break;
  try {
    if (msg.setup) view = { ...msg.setup, tree: null };
    if (msg.tree) view.tree = msg.tree;
    view.tree.count = msg.count;
    view.tree.leafCount = msg.leafCount;
    view.theta2 = msg.theta2;
    view.exaggeration = msg.exaggeration;
    list = runItems(view, ctrl, list);
  } catch (e) {
    port.postMessage(String(/** @type {Error} */ (e)?.stack ?? e));
    Atomics.store(ctrl, FAILED, 1);
  }
  Atomics.add(ctrl, DONE, 1);
  Atomics.notify(ctrl, DONE);
}
port.close();
