/**
 * The results dispatcher: a technique's page renders `src/components/results/<id>.astro` when
 * that file exists, so adding a technique's view means adding one file and nothing else.
 */
import type { ReportManifest, ResultEntry } from '../site-data';

export interface ResultComponentProps {
  entry: ResultEntry;
  report: ReportManifest;
}

/** An .astro module's default export, as far as the page needs to know it. */
export type ResultComponent = (props: ResultComponentProps) => unknown;

// Eager: every component is compiled into the build; there is no lazy page-level loading to gain.
const modules = import.meta.glob<{ default: ResultComponent }>('../components/results/*.astro', { eager: true });

const byId = new Map<string, ResultComponent>(
  Object.entries(modules).map(([file, mod]) => [file.replace(/^.*\//, '').replace(/\.astro$/, ''), mod.default]),
);

/** The technique's own result view, or undefined to fall back to the generic file listing. */
export function resultComponent(techniqueId: string): ResultComponent | undefined {
  return byId.get(techniqueId);
}

/** Technique ids that have a component (for tests and diagnostics). */
export const componentIds = (): string[] => [...byId.keys()].sort();
