import { getCollection, type CollectionEntry } from 'astro:content';
import { techniques } from '../site-data';

export type MethodEntry = CollectionEntry<'methods'>;

/**
 * The MDX teaching pages. With no technique registered there can be no valid page, so the
 * collection is not queried (Astro warns on every query of an empty collection).
 */
export async function methodEntries(): Promise<MethodEntry[]> {
  return techniques().length === 0 ? [] : getCollection('methods');
}
