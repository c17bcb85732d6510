/**
 * The diagram primitives, handed to every method page's MDX as `components` (see
 * src/pages/methods/[id].astro), so content/methods/<id>.mdx uses <Diagram>, <Flow>, <Box>,
 * <Arrow>, <Grid> and <Label> without imports and a technique still needs only its one page.
 * Every .astro file of this folder is one primitive, named after its file.
 */
// Eager glob (as in lib/result-components): .astro modules are typed only inside Vite.
const modules = import.meta.glob<{ default: unknown }>('./*.astro', { eager: true });

export const diagramComponents: Record<string, any> = Object.fromEntries(
  Object.entries(modules).map(([file, mod]) => [file.replace(/^.*\//, '').replace(/\.astro$/, ''), mod.default]),
);
