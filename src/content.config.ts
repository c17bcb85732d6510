/**
 * `methods`: one MDX teaching page per registered technique. The entry id is the file name, and
 * it must name a technique in the manifest's registry, so a page for a technique that does not
 * exist (or was renamed) fails the build instead of publishing an orphan.
 */
import fs from 'node:fs';
import path from 'node:path';
import { defineCollection, z } from 'astro:content';
import { glob, type Loader } from 'astro/loaders';
import { techniqueIds, techniques } from './site-data';

const methodsDir = process.env.CONVLENS_METHODS_DIR ?? './content/methods';

const schema = z.object({
  title: z.string(),
  summary: z.string(),
  family: z.enum(['dataset', 'weights', 'attribution', 'optimization']),
  order: z.number().optional(),
});

/** The id check: a zod refine over the manifest's technique ids, read when the collection loads. */
function registeredId(ids: Set<string>, file: string) {
  return z.string().superRefine((id, ctx) => {
    if (ids.has(id)) return;
    const known = ids.size ? [...ids].sort().join(', ') : 'none yet';
    ctx.addIssue({
      code: z.ZodIssueCode.custom,
      message: `${file} names technique '${id}', which is not registered (registered: ${known}); rename the file to a technique id or register the technique in pipelines/registry.ts`,
    });
  });
}

/** The glob loader, with every entry's id checked before its frontmatter is parsed. */
function methodsLoader(): Loader {
  return {
    name: 'convlens-methods',
    load: async (context) => {
      const ids = techniqueIds();
      // A page written before its technique is registered (or a manifest older than the
      // registry) must not break the whole site: skip it with a warning. CONVLENS_STRICT_METHODS=1
      // turns that into the error, for CI over a fresh manifest.
      const files = fs.existsSync(methodsDir) ? fs.readdirSync(methodsDir).filter((f) => f.endsWith('.mdx')) : [];
      const orphans = files.filter((f) => !ids.has(f.replace(/\.mdx$/, '')));
      if (orphans.length > 0) {
        const message = registeredId(ids, path.join(methodsDir, orphans[0])).safeParse(orphans[0].replace(/\.mdx$/, '')).error?.issues[0]?.message ?? '';
        if (process.env.CONVLENS_STRICT_METHODS === '1') throw new Error(message);
        context.logger.warn(`skipping ${orphans.length} method page(s) for unregistered techniques (${orphans.join(', ')}); e.g. ${message}`);
      }
      const wanted = files.filter((f) => !orphans.includes(f));
      if (wanted.length === 0) {
        context.store.clear();
        return;
      }
      const inner = glob({ pattern: wanted, base: methodsDir });
      await inner.load({
        ...context,
        parseData: async (props) => {
          const result = registeredId(ids, props.filePath ?? `${methodsDir}/${props.id}.mdx`).safeParse(props.id);
          if (!result.success) throw new Error(result.error.issues[0]?.message ?? `unregistered technique '${props.id}'`);
          const data = await context.parseData(props);
          // The family groups the methods index; the registry is the authority, so they must agree.
          const registered = techniques().find((t) => t.id === props.id);
          if (registered && data.family !== registered.family) {
            throw new Error(`${props.filePath ?? props.id}: family '${String(data.family)}' differs from the registered technique's '${registered.family}'`);
          }
          return data;
        },
      });
    },
  };
}

export const collections = {
  methods: defineCollection({ loader: methodsLoader(), schema }),
};
