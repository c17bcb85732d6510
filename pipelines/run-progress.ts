/**
 * Progress of steps that run at the same time (runner with --jobs > 1). On a terminal: one
 * status line, redrawn, holding every running step with its count and ETA; log lines are
 * printed above it. Otherwise (CI logs, pipes): plain lines, at most one per step every 5 s.
 * Each step closes with the same `  <label>: <summary> (<time>)` line as createProgress.
 */
import { formatSeconds, type Progress } from './progress';

interface Running {
  label: string;
  start: number;
  done: number;
  total: number;
  lastLine: number;
}

export class ProgressBoard {
  private readonly running = new Map<number, Running>();
  private readonly tty: boolean;
  private next = 0;
  private lastDraw = 0;

  constructor(private readonly stream: NodeJS.WriteStream = process.stderr) {
    this.tty = Boolean(stream.isTTY) && !process.env.CI;
  }

  /** Prints a log line without tearing the status line. */
  log(line: string, write: (line: string) => void): void {
    if (this.tty && this.running.size) this.stream.write('\r\x1b[2K');
    write(line);
    if (this.tty) this.draw(true);
  }

  /** A running step's progress; cancel() drops it from the status line without a closing line (it failed). */
  start(label: string): Progress & { cancel(): void } {
    const id = this.next++;
    const entry: Running = { label, start: Date.now(), done: 0, total: 0, lastLine: Date.now() };
    this.running.set(id, entry);
    return {
      update: (done, total) => {
        entry.done = done;
        entry.total = total;
        if (this.tty) this.draw(false);
        else if (Date.now() - entry.lastLine > 5000) {
          entry.lastLine = Date.now();
          this.stream.write(`  ${label}: ${done}/${total}${eta(entry)}\n`);
        }
      },
      done: (summary) => {
        if (!this.running.delete(id)) return;
        if (this.tty) this.stream.write('\r\x1b[2K');
        this.stream.write(`  ${label}: ${summary} (${formatSeconds((Date.now() - entry.start) / 1000)})\n`);
        if (this.tty) this.draw(true);
      },
      cancel: () => {
        if (this.running.delete(id) && this.tty) {
          this.stream.write('\r\x1b[2K');
          this.draw(true);
        }
      },
    };
  }

  private draw(force: boolean): void {
    const now = Date.now();
    if (!force && now - this.lastDraw < 100) return;
    this.lastDraw = now;
    if (!this.running.size) return;
    const parts = [...this.running.values()].map((r) => `${r.label} ${r.total ? `${r.done}/${r.total}${eta(r)}` : '…'}`);
    // One line only: cut to the terminal width so that \r can redraw it.
    const width = Math.max(20, (this.stream.columns ?? 100) - 1);
    const line = `  ${parts.join(' │ ')}`;
    this.stream.write(`\r\x1b[2K${line.length > width ? `${line.slice(0, width - 1)}…` : line}`);
  }
}

function eta(r: Running): string {
  if (r.done <= 0 || r.done >= r.total) return '';
  const elapsed = (Date.now() - r.start) / 1000;
  return ` ETA ${formatSeconds((elapsed * (r.total - r.done)) / r.done)}`;
}
