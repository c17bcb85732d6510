/**
 * Content-addressed result store (DESIGN.md §6).
 *
 * `<root>/<key>/` holds one finished result: `result.json` ({ data, provenance }) and its files.
 * A result is written into `<key>.tmp-<pid>` and renamed into place only when complete, so a
 * crash or Ctrl-C never leaves a half result; the next build simply computes it again.
 * A failure leaves `<key>.err` holding the one-line message (removed when the key later succeeds).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Provenance } from './manifest';

export interface StoredResult<T = unknown> {
  key: string;
  dir: string;
  data: T;
  provenance: Provenance;
  files: string[];
}

/** JSON with object keys sorted at every depth, so equal values always hash equally. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[k];
      if (v !== undefined) out[k] = sortKeys(v);
    }
    return out;
  }
  return value;
}

export function cacheKey(parts: unknown): string {
  return createHash('sha256').update(canonicalJson(parts)).digest('hex').slice(0, 32);
}

export class ResultCache {
  constructor(readonly root: string) {
    fs.mkdirSync(root, { recursive: true });
  }

  dirOf(key: string): string {
    return path.join(this.root, key);
  }

  has(key: string): boolean {
    return fs.existsSync(path.join(this.dirOf(key), 'result.json'));
  }

  read<T = unknown>(key: string): StoredResult<T> {
    const dir = this.dirOf(key);
    const { data, provenance } = JSON.parse(fs.readFileSync(path.join(dir, 'result.json'), 'utf8'));
    return { key, dir, data, provenance, files: listFiles(dir).filter((f) => f !== 'result.json') };
  }

  /** The message of the last failure for this key, if any. */
  error(key: string): string | undefined {
    const file = path.join(this.root, `${key}.err`);
    return fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : undefined;
  }

  /**
   * Runs `compute` in a fresh temp folder and publishes the folder atomically under `key`.
   * On failure the temp folder is removed, `<key>.err` records the message, and the error is rethrown.
   */
  async write<T>(
    key: string,
    compute: (tmpDir: string) => Promise<{ data: T; provenance: Provenance }>,
  ): Promise<StoredResult<T>> {
    const tmp = path.join(this.root, `${key}.tmp-${process.pid}`);
    const errFile = path.join(this.root, `${key}.err`);
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.mkdirSync(tmp, { recursive: true });
    try {
      const { data, provenance } = await compute(tmp);
      fs.writeFileSync(path.join(tmp, 'result.json'), JSON.stringify({ data, provenance }));
      const final = this.dirOf(key);
      // Same key = same content: an existing folder (another process won the race) is kept.
      if (fs.existsSync(final)) fs.rmSync(tmp, { recursive: true, force: true });
      else fs.renameSync(tmp, final);
      fs.rmSync(errFile, { force: true });
      return this.read<T>(key);
    } catch (e) {
      fs.rmSync(tmp, { recursive: true, force: true });
      fs.writeFileSync(errFile, e instanceof Error ? e.message : String(e));
      throw e;
    }
  }

  /** Removes every entry (results, errors, stale temp folders) whose key is not in `keep`. */
  gc(keep: Set<string>): { removed: string[] } {
    const removed: string[] = [];
    for (const name of fs.readdirSync(this.root)) {
      const key = name.replace(/\.(err|tmp-\d+)$/, '');
      const isLiveTemp = /\.tmp-(\d+)$/.test(name) && processAlive(Number(name.split('.tmp-')[1]));
      if (keep.has(key) && !name.includes('.tmp-')) continue;
      if (isLiveTemp) continue;
      fs.rmSync(path.join(this.root, name), { recursive: true, force: true });
      removed.push(name);
    }
    return { removed };
  }
}

function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Relative paths of all files under `dir`, sorted. */
export function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const entry of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const child = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) walk(child);
      else out.push(child);
    }
  };
  walk('');
  return out.sort();
}
