/**
 * The site's cross-link helpers on hand-made manifests: which results count as per-image entries,
 * which channel pages link each other, where a t-SNE sprite cell lies, and the scatter points
 * (test index, page link, thumbnail) of an embedding.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { channelAnchor, channelLinks, topChannelsOf } from '../src/lib/channels';
import { mentionsIn, testImages } from '../src/lib/test-images';
import { embedding, scatterPoints, spriteCells, spriteOnly, thumbnails } from '../src/lib/thumbnails';
import type { ReportManifest, ResultEntry } from '../src/site-data';

// Technique titles come from the site manifest: read the committed fixture's, not a local build's
// (a clean clone has no .convlens/).
process.env.CONVLENS_SITE_DATA = path.resolve(import.meta.dirname, 'fixtures/site');

const entry = (technique: string, data: unknown, files: string[] = []): ResultEntry =>
  ({ technique, status: 'ok', key: technique, assetBase: `/results/${technique}/`, files, provenance: {} as never, data }) as ResultEntry;

function report(results: Record<string, ResultEntry>): ReportManifest {
  return { id: 'r', title: 'R', dataset: { classNames: ['a', 'b', 'c'] }, results } as unknown as ReportManifest;
}

describe('per-image entries', () => {
  it('an index with a label is a test image; an index alone (class-model classes) is not', () => {
    const cls = entry('class-model', { classes: [{ index: 0, logit: 1 }, { index: 1, logit: 2 }] });
    expect(mentionsIn('class-model', cls)).toEqual([]);
    const inv = entry('feature-inversion', { images: [{ split: 'test', index: 7, label: 2 }] });
    expect(mentionsIn('feature-inversion', inv).map((m) => m.index)).toEqual([7]);
    expect(testImages(report({ 'class-model': cls, 'feature-inversion': inv })).map((i) => i.index)).toEqual([7]);
  });
});

describe('channel cross links', () => {
  const r = report({
    filters: entry('filters', { layers: [{ name: 'conv 1', kernels: [{ channel: 0 }, { channel: 1 }] }, { name: 'conv2', grid: { outChannels: [0, 5] } }] }),
    'max-patches': entry('max-patches', { layers: [{ name: 'conv 1', units: [{ channel: 1 }] }, { name: 'conv2', units: [{ channel: 5 }] }] }),
    'activation-maximization': entry('activation-maximization', { layers: [{ layer: 'conv2', channels: [0, 4] }] }),
  });

  it('links only to pages that hold the same layer and channel, never to itself', () => {
    expect(channelAnchor('conv 1', 3)).toBe('layer-conv-1-ch-3');
    expect(channelLinks(r, 'filters', 'conv 1', 1).map((l) => l.url)).toEqual(['/reports/r/max-patches/#layer-conv-1-ch-1']);
    expect(channelLinks(r, 'filters', 'conv 1', 0)).toEqual([]);
    expect(channelLinks(r, 'max-patches', 'conv2', 5).map((l) => l.technique)).toEqual(['filters']);
    expect(channelLinks(r, 'activation-maximization', 'conv2', 0).map((l) => l.technique)).toEqual(['filters']);
    expect(channelLinks(r, 'filters', 'conv2', 4).map((l) => l.technique)).toEqual(['activation-maximization']);
  });

  it("lists an image's top activating channels with the pages that show each", () => {
    const acts = entry('activations', { images: [{ index: 3, layers: [{ layer: 'conv2', top: [{ channel: 5, mean: 2.5 }, { channel: 4, mean: 1 }] }, { layer: 'conv 1', top: [{ channel: 2, mean: 0.5 }] }] }] });
    const rows = topChannelsOf({ ...r, results: { ...r.results, activations: acts } }, 3);
    expect(rows.map((x) => [x.layer, x.channel, x.links.map((l) => l.technique)])).toEqual([
      ['conv2', 5, ['filters', 'max-patches']],
      ['conv2', 4, ['activation-maximization']],
      ['conv 1', 2, []],
    ]);
    expect(topChannelsOf({ ...r, results: { ...r.results, activations: acts } }, 4)).toEqual([]);
    expect(topChannelsOf(r, 3)).toEqual([]);
  });
});

describe('scatter thumbnails and points', () => {
  // 3 columns of 10 × 8 cells, 2 px apart: cell c sits at ((c % 3) · 12, ⌊c / 3⌋ · 10)
  const tsne = entry('tsne', {
    x: [0, 1, 2, 3], y: [3, 2, 1, 0], labels: [0, 1, 2, 0], predicted: [0, 2, 2, 0],
    grid: { file: 'grid.png', cols: 3, rows: 2, cellWidth: 10, cellHeight: 8, gap: 2, cells: [3, -1, 0, 1, 2, -1] },
  }, ['grid.png']);
  const attribution = entry('saliency', { images: [{ index: 2, label: 2, input: 'in/2.png' }] }, ['in/2.png']);
  const r = report({ tsne, saliency: attribution });

  it('finds each image in the sprite by row-major cell, skipping empty cells', () => {
    const cells = spriteCells(r);
    expect([...cells.keys()].sort()).toEqual([0, 1, 2, 3]);
    expect(cells.get(3)).toMatchObject({ left: 0, top: 0, width: 10, height: 8 });
    expect(cells.get(0)).toMatchObject({ left: 24, top: 0 });
    expect(cells.get(1)).toMatchObject({ left: 0, top: 10 });
    expect(cells.get(2)).toMatchObject({ left: 12, top: 10 });
  });

  it('prefers an image of its own to a sprite crop, and links only images with a page', () => {
    const th = thumbnails(r);
    expect(th.get(2)).toBe('/results/saliency/in/2.png');
    expect(th.get(0)).toBe('/reports/r/thumbs/test-0.png');
    const pts = scatterPoints(r, 'tsne');
    expect(pts.map((p) => [p.index, p.label, p.predicted, p.href ?? null])).toEqual([
      [0, 0, 0, null], [1, 1, 2, null], [2, 2, 2, '/reports/r/images/test-2/'], [3, 0, 0, null],
    ]);
  });

  it('uses the thumbnails result for the images it covers; the sprite only for the rest', () => {
    const own = entry('thumbnails', { split: 'test', count: 2, width: 8, height: 8, pattern: 'thumbs/test-{index}.png' });
    const both = report({ tsne, saliency: attribution, thumbnails: own });
    const th = thumbnails(both);
    expect(th.get(0)).toBe('/results/thumbnails/thumbs/test-0.png');
    expect(th.get(1)).toBe('/results/thumbnails/thumbs/test-1.png');
    expect(th.get(2)).toBe('/results/saliency/in/2.png'); // its own input picture still wins
    expect(th.get(3)).toBe('/reports/r/thumbs/test-3.png'); // beyond count: the sprite crop
    expect([...spriteOnly(both).keys()]).toEqual([3]);
  });

  it('reads PCA points from data.points and refuses ragged arrays', () => {
    expect(embedding('pca', entry('pca', { points: { x: [1], y: [2], label: [0], predicted: [1] } }))).toEqual({ x: [1], y: [2], labels: [0], predicted: [1] });
    expect(embedding('umap', entry('umap', { x: [1, 2], y: [2], labels: [0, 0] }))).toBeUndefined();
  });
});
