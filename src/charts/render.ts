/**
 * Build-time rendering of the vega-lite specs: compile to vega (collecting warnings instead of
 * printing them) and draw to an SVG string in Node with the headless renderer.
 */
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

export interface Compiled {
  vg: vega.Spec;
  warnings: string[];
}

/** A vega logger that keeps warnings and errors, so tests can insist on none. */
function collectingLogger(sink: string[]): vega.LoggerInterface {
  let level = vega.Warn;
  const keep = (kind: string) => (...args: readonly unknown[]) => {
    sink.push(`${kind}: ${args.map(String).join(' ')}`);
    return logger;
  };
  const logger: vega.LoggerInterface = {
    level(l?: number) {
      if (l === undefined) return level;
      level = l;
      return logger;
    },
    error: keep('error'),
    warn: keep('warn'),
    info: () => logger,
    debug: () => logger,
  } as vega.LoggerInterface;
  return logger;
}

export function compileChart(spec: TopLevelSpec): Compiled {
  const warnings: string[] = [];
  const { spec: vg } = compile(spec, { logger: collectingLogger(warnings) });
  return { vg, warnings };
}

/** SVG text of the chart as vega draws it (vega escapes every text it writes). */
export async function renderSvg(spec: TopLevelSpec): Promise<{ svg: string; warnings: string[] }> {
  const { vg, warnings } = compileChart(spec);
  const runtime: string[] = [];
  const view = new vega.View(vega.parse(vg), { renderer: 'none', logger: collectingLogger(runtime) });
  try {
    const svg = await view.toSVG();
    // Zoom listens on `window`, which Node does not have; that is expected here, not a fault.
    warnings.push(...runtime.filter((w) => !w.includes('event source: window')));
    return { svg, warnings };
  } finally {
    view.finalize();
  }
}
