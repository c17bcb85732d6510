/**
 * A user-facing error: the CLI prints `message` on one line and exits non-zero, no stack trace.
 * Every bad input (config, model files, dataset) must surface as one of these, naming the file,
 * the field and the fix.
 */
export class ConvlensError extends Error {
  readonly file?: string;
  readonly field?: string;
  readonly fix?: string;

  constructor(problem: string, where: { file?: string; field?: string; fix?: string } = {}) {
    const location = [where.file, where.field].filter(Boolean).join(': ');
    const fix = where.fix ? ` Fix: ${where.fix}` : '';
    super(`${location ? `${location}: ` : ''}${problem}${fix}`);
    this.name = 'ConvlensError';
    this.file = where.file;
    this.field = where.field;
    this.fix = where.fix;
  }
}

export function isConvlensError(e: unknown): e is ConvlensError {
  return e instanceof ConvlensError;
}
