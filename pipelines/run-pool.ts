/**
 * Worker processes for the runner's `jobs` > 1 (run.ts). Each worker is a forked Node process
 * (tsx loader, its own TF.js backend instance) that loads the report's model and dataset itself,
 * computes one step at a time and writes the result into the cache (`<key>.tmp-<its pid>`, then
 * renamed), so nothing but small JSON messages crosses the process boundary.
 *
 * Child processes rather than worker_threads: a crash (process.exit, a wasm abort, an
 * out-of-memory kill) then ends only that process, and the wasm and Dawn modules get a whole
 * process each, as they do in a plain run.
 */
import { fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Provenance } from './manifest';
import type { Progress } from './progress';
import type { BackendName } from './types';

/** Everything a worker needs to compute one step; all of it plain JSON. */
export interface WorkerJob {
  /** absolute path of the report's report.config.ts */
  configFile: string;
  /** the backend the runner resolved ('auto' already decided), so every process uses the same one */
  backend: BackendName;
  techniquesModule?: string;
  /** technique id, or the overview's name */
  step: string;
  overview: boolean;
  key: string;
  cacheRoot: string;
  quick: boolean;
  /** built by the runner: the seed comes from the key, so it is the same in any process */
  provenance: Provenance;
  /** result folders of the steps this one needs (the worker reads their result.json) */
  depDirs: Record<string, string>;
}

export type ToWorker = { type: 'job'; job: WorkerJob };
export type FromWorker =
  | { type: 'log'; line: string }
  | { type: 'progress'; done: number; total: number }
  | { type: 'progress-done'; summary: string }
  | { type: 'result'; ok: true; maxRssKb: number }
  | { type: 'result'; ok: false; message: string; stack?: string; maxRssKb: number };

export interface JobHooks {
  log: (line: string) => void;
  /** called when a worker takes the job (not when it is queued): the step's clock starts here */
  started: () => Progress;
}

interface Queued {
  job: WorkerJob;
  hooks: JobHooks;
  progress?: Progress;
  resolve: () => void;
  reject: (e: Error) => void;
}

interface Worker {
  child: ChildProcess;
  current?: Queued;
  steps: number;
  peakRssKb: number;
  exited: Promise<void>;
}

/** Error of a step whose worker process died while computing it. */
export class WorkerCrash extends Error {}

const require = createRequire(import.meta.url);
const WORKER_FILE = fileURLToPath(new URL('./worker.ts', import.meta.url));

export class WorkerPool {
  private readonly workers: Worker[] = [];
  private readonly queue: Queued[] = [];
  private closing = false;
  /** set by kill(): an interrupted step is not a failure, so it gets no `.err` */
  private killing = false;
  private readonly stats: { pid: number; steps: number; peakRssKb: number }[] = [];

  constructor(
    readonly size: number,
    private readonly opts: { log: (line: string) => void },
  ) {}

  /** Computes a step in a worker: resolves when its result is in the cache, rejects with its error. */
  run(job: WorkerJob, hooks: JobHooks): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ job, hooks, resolve, reject });
      this.pump();
    });
  }

  /** Process ids of the workers alive now. */
  pids(): number[] {
    return this.workers.map((w) => w.child.pid).filter((p): p is number => p !== undefined);
  }

  /** Lets idle workers exit (they exit when the channel closes) and logs each one's peak memory. */
  async close(): Promise<void> {
    this.closing = true;
    for (const w of this.workers) if (w.child.connected) w.child.disconnect();
    await Promise.all(this.workers.map((w) => w.exited));
    if (this.stats.length) {
      const parts = this.stats.map((s) => `pid ${s.pid}: ${s.steps} step${s.steps === 1 ? '' : 's'}, peak RSS ${Math.round(s.peakRssKb / 1024)} MiB`);
      this.opts.log(`  workers: ${parts.join('; ')}`);
    }
  }

  /**
   * Stops every worker now (Ctrl-C): SIGTERM, then SIGKILL after `graceMs`; then removes the
   * temp folders they were writing, so no half result stays behind.
   */
  async kill(graceMs = 3000): Promise<void> {
    this.closing = true;
    this.killing = true;
    const busy = this.workers.filter((w) => w.current).map((w) => ({ pid: w.child.pid, job: w.current!.job }));
    for (const w of this.workers) w.child.kill('SIGTERM');
    const timer = setTimeout(() => this.workers.forEach((w) => w.child.kill('SIGKILL')), graceMs);
    await Promise.all(this.workers.map((w) => w.exited));
    clearTimeout(timer);
    for (const b of busy) fs.rmSync(path.join(b.job.cacheRoot, `${b.job.key}.tmp-${b.pid}`), { recursive: true, force: true });
  }

  private pump(): void {
    while (this.queue.length && !this.closing) {
      let w = this.workers.find((x) => !x.current && x.child.connected);
      if (!w) {
        if (this.workers.length >= this.size) return;
        w = this.spawn();
      }
      const q = this.queue.shift()!;
      w.current = q;
      q.progress = q.hooks.started();
      w.child.send({ type: 'job', job: q.job } satisfies ToWorker);
    }
  }

  private spawn(): Worker {
    // The tsx loader by absolute URL: the worker's cwd (a report project) may have no node_modules.
    const tsx = pathToFileURL(require.resolve('tsx')).href;
    const child = fork(WORKER_FILE, [], {
      execArgv: ['--import', tsx],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      // Ctrl-C reaches the whole process group; the runner stops the workers itself.
      env: { ...process.env, CONVLENS_WORKER: '1' },
    });
    let resolveExit!: () => void;
    const w: Worker = { child, steps: 0, peakRssKb: 0, exited: new Promise((r) => (resolveExit = r)) };
    this.workers.push(w);
    child.on('message', (m: FromWorker) => this.onMessage(w, m));
    const onGone = (why: string) => {
      if (this.workers.includes(w)) this.workers.splice(this.workers.indexOf(w), 1);
      if (w.steps && child.pid) this.stats.push({ pid: child.pid, steps: w.steps, peakRssKb: w.peakRssKb });
      const q = w.current;
      w.current = undefined;
      if (q) {
        // It died mid-step: record the failure as a technique error would be, drop its temp folder.
        const message = `its worker process (pid ${child.pid}) ${why} while computing it`;
        try {
          fs.rmSync(path.join(q.job.cacheRoot, `${q.job.key}.tmp-${child.pid}`), { recursive: true, force: true });
          if (!this.killing) fs.writeFileSync(path.join(q.job.cacheRoot, `${q.job.key}.err`), message);
        } catch (e) {
          // An event handler must not throw (the wasm module turns that into a crash of the runner).
          this.opts.log(`  warning: could not record the failure of ${q.job.step}: ${e instanceof Error ? e.message : e}`);
        }
        q.reject(new WorkerCrash(message));
      }
      resolveExit();
      this.pump();
    };
    let gone = false;
    child.on('exit', (code, signal) => {
      if (!gone) onGone(signal ? `was killed by ${signal}` : `exited with code ${code}`);
      gone = true;
    });
    child.on('error', (e) => {
      // A failed fork emits 'error' and no 'exit'.
      if (child.pid === undefined && !gone) {
        gone = true;
        onGone(`could not start (${e.message})`);
      }
    });
    return w;
  }

  private onMessage(w: Worker, m: FromWorker): void {
    const q = w.current;
    if (!q) return;
    if (m.type === 'log') q.hooks.log(m.line);
    else if (m.type === 'progress') q.progress?.update(m.done, m.total);
    else if (m.type === 'progress-done') q.progress?.done(m.summary);
    else if (m.type === 'result') {
      w.current = undefined;
      w.steps++;
      w.peakRssKb = Math.max(w.peakRssKb, m.maxRssKb);
      if (m.ok) q.resolve();
      else {
        const e = new Error(m.message);
        if (m.stack) e.stack = m.stack;
        q.reject(e);
      }
      this.pump();
    }
  }
}

/**
 * While workers run, Ctrl-C (SIGINT) or SIGTERM stops them, removes their temp folders and this
 * process's, and exits 130/143, as an interrupted plain run would. Returns the uninstaller.
 */
export function interruptOnSignal(pool: WorkerPool, cacheRoot: string): () => void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`\nconvlens: ${signal}: stopping the workers; finished results stay cached, the next run resumes\n`);
    void pool.kill().finally(() => {
      for (const name of safeReaddir(cacheRoot)) {
        if (name.endsWith(`.tmp-${process.pid}`)) fs.rmSync(path.join(cacheRoot, name), { recursive: true, force: true });
      }
      process.exit(signal === 'SIGINT' ? 130 : 143);
    });
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}

function safeReaddir(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}
