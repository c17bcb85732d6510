/**
 * Progress for long steps: a redrawn bar with ETA on a terminal, plain log lines otherwise
 * (CI logs, pipes), at most one every few seconds.
 */
export interface Progress {
  update(done: number, total: number): void;
  done(summary: string): void;
}

export function createProgress(label: string, stream: NodeJS.WriteStream = process.stderr): Progress {
  const start = Date.now();
  const tty = Boolean(stream.isTTY) && !process.env.CI;
  let lastLine = 0;
  const eta = (done: number, total: number) => {
    const elapsed = (Date.now() - start) / 1000;
    if (done <= 0 || done >= total) return '';
    return ` ETA ${formatSeconds((elapsed * (total - done)) / done)}`;
  };
  return {
    update(done, total) {
      const now = Date.now();
      if (tty) {
        if (now - lastLine < 100 && done < total) return;
        lastLine = now;
        const width = 24;
        const filled = Math.round((width * done) / Math.max(total, 1));
        const bar = '█'.repeat(filled) + '░'.repeat(width - filled);
        stream.write(`\r\x1b[2K  ${label} ${bar} ${done}/${total}${eta(done, total)}`);
      } else if (now - lastLine > 5000) {
        lastLine = now;
        stream.write(`  ${label}: ${done}/${total}${eta(done, total)}\n`);
      }
    },
    done(summary) {
      if (tty) stream.write('\r\x1b[2K');
      stream.write(`  ${label}: ${summary} (${formatSeconds((Date.now() - start) / 1000)})\n`);
    },
  };
}

export function formatSeconds(s: number): string {
  if (s < 59.95) return `${s.toFixed(1)} s`; // 59.95 would print as "60.0 s"
  const whole = Math.round(s); // round once, so 299.6 s is "5 min 0 s", not "4 min 60 s"
  return `${Math.floor(whole / 60)} min ${whole % 60} s`;
}
