/** THE list of techniques. Adding one: its file in techniques/, one line here, content/methods/<id>.mdx. */
import type { Technique } from './technique';

export const techniques: Technique[] = [];

export function findTechnique(id: string): Technique | undefined {
  return techniques.find((t) => t.id === id);
}
