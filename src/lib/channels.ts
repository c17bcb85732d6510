/**
 * Stable per-channel URLs and the cross links between what several techniques show about one
 * channel of one layer: its filter (filters), its max-activating patches (max-patches) and its
 * activation-maximisation image (activation-maximization). A link is offered only where the
 * target result really holds that layer and channel, so no link leads to an empty anchor.
 */
import { findTechnique, href, type ReportManifest } from '../site-data';

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/** Layer names as URL fragments: anything outside [A-Za-z0-9_-] becomes '-'. */
export const layerSlug = (s: string): string => s.replace(/[^A-Za-z0-9_-]/g, '-');
/** `layer-<layer>-ch-<c>`: the anchor every per-channel technique page gives a channel. */
export const channelAnchor = (layer: string, channel: number): string => `layer-${layerSlug(layer)}-ch-${channel}`;

/** The channels of each layer a technique's result shows, read from its data. */
function channelsOf(report: ReportManifest, technique: string): Map<string, Set<number>> {
  const out = new Map<string, Set<number>>();
  const e = report.results[technique];
  if (e?.status !== 'ok' || !isObj(e.data)) return out;
  for (const l of arr(e.data.layers)) {
    if (!isObj(l)) continue;
    const name = typeof l.name === 'string' ? l.name : typeof l.layer === 'string' ? l.layer : undefined;
    if (!name) continue;
    const set = new Set<number>();
    if (technique === 'filters') {
      for (const k of arr(l.kernels)) if (isObj(k) && typeof k.channel === 'number') set.add(k.channel);
      if (isObj(l.grid)) for (const c of arr(l.grid.outChannels)) if (typeof c === 'number') set.add(c);
    } else if (technique === 'max-patches') {
      for (const u of arr(l.units)) if (isObj(u) && typeof u.channel === 'number') set.add(u.channel);
    } else if (technique === 'activation-maximization') {
      for (const c of arr(l.channels)) if (typeof c === 'number') set.add(c);
    }
    out.set(name, set);
  }
  return out;
}

export const CHANNEL_TECHNIQUES = ['filters', 'activation-maximization', 'max-patches'] as const;

export interface ChannelLink {
  technique: string;
  title: string;
  url: string;
}

/** Where else this channel is shown, other than on `from`'s page. */
export function channelLinks(report: ReportManifest, from: string, layer: string, channel: number): ChannelLink[] {
  return CHANNEL_TECHNIQUES.filter((t) => t !== from && channelsOf(report, t).get(layer)?.has(channel)).map((t) => ({
    technique: t,
    title: findTechnique(t)?.title ?? t,
    url: href(`reports/${report.id}/${t}/#${channelAnchor(layer, channel)}`),
  }));
}

export interface TopChannelRow {
  layer: string;
  channel: number;
  mean: number;
  links: ChannelLink[];
}

/**
 * The channels that respond most to one test image (the activations result records the top few
 * per layer), each with the pages that show that channel. Empty when activations did not cover it.
 */
export function topChannelsOf(report: ReportManifest, index: number): TopChannelRow[] {
  const e = report.results.activations;
  if (e?.status !== 'ok' || !isObj(e.data)) return [];
  const image = arr(e.data.images).find((i) => isObj(i) && i.index === index);
  if (!isObj(image)) return [];
  return arr(image.layers).flatMap((l) => {
    if (!isObj(l) || typeof l.layer !== 'string') return [];
    const layer = l.layer;
    return arr(l.top).flatMap((t) =>
      isObj(t) && typeof t.channel === 'number' && typeof t.mean === 'number'
        ? [{ layer, channel: t.channel, mean: t.mean, links: channelLinks(report, 'activations', layer, t.channel) }]
        : []);
  });
}
