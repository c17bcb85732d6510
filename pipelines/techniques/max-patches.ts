/**
 * `max-patches` (dataset): for chosen conv channels, the test images that excite the channel
 * most (top-k from the streamed `channel-stats` pass), each cropped to the receptive field of the
 * unit where the maximum sits: the input pixels that can influence that unit at all.
 *
 * Field of unit (y, x): centre = start + jump·(y, x), `size` pixels wide (receptive-field.ts).
 * Near the border part of the field lies outside the image (it saw zero padding); that part is
 * drawn as a grey checkerboard, never stretched or shifted, and recorded as `clip` in the data.
 */
import { z } from 'zod';
import { ConvlensError } from '../errors';
import { imageGrid, type RasterImage } from '../images';
import { fieldBounds } from '../model/receptive-field';
import { defineTechnique } from '../technique';
import type { ReceptiveField } from '../types';
import { isConvNode, spatialLayers, type ChannelStatsData } from './channel-stats';

export interface Box { top: number; bottom: number; left: number; right: number }

export interface Patch {
  /** test-split index, dataset id and label of the image. */
  index: number;
  id: string;
  label: number;
  /** unit position in the layer's grid and the channel's value there (its maximum on this image). */
  y: number;
  x: number;
  value: number;
  /** inclusive field bounds in input pixels, before clipping (may leave the image). */
  box: Box;
  /** pixels of the field cut off on each side by the image border (0 = none). */
  clip: Box;
  clipped: boolean;
}

export interface Unit {
  channel: number;
  /** grid PNG of the patches, best first, row by row in `columns` columns. */
  file: string;
  width: number;
  height: number;
  columns: number;
  /** zero on ≥ 99 % of test images (channel-stats). */
  dead: boolean;
  /** top images whose maximum was exactly 0 (the channel stayed silent) are left out; how many. */
  silent: number;
  patches: Patch[];
}

export interface MaxPatchesLayer {
  name: string;
  className: string;
  receptiveField: ReceptiveField;
  /** [h, w] of every patch in input pixels (the field size) and the upscale applied. */
  patchSize: [number, number];
  upscale: number;
  units: Unit[];
}

export interface MaxPatchesData {
  k: number;
  /** the padding drawn for clipped parts: two greys in `cell`-pixel squares. */
  checker: { light: number; dark: number };
  layers: MaxPatchesLayer[];
}

const CHECKER = { light: 176, dark: 112 };

/**
 * Crops `box` (inclusive, input pixels, may leave the image) out of an HWC uint8 image into an
 * RGB patch of the box's full size; pixels outside the image become a checkerboard of `cell`-px
 * squares (anchored at the box's corner). Returns how much was cut off on each side.
 */
export function cropPatch(pixels: Uint8Array, size: [number, number], channels: number, box: Box, cell = 1): { image: RasterImage; clip: Box } {
  const [h, w] = size;
  const ph = box.bottom - box.top + 1;
  const pw = box.right - box.left + 1;
  const out = new Uint8Array(ph * pw * 3);
  for (let r = 0; r < ph; r++) {
    const y = box.top + r;
    for (let c = 0; c < pw; c++) {
      const x = box.left + c;
      const d = (r * pw + c) * 3;
      if (y < 0 || y >= h || x < 0 || x >= w) {
        const v = (Math.floor(r / cell) + Math.floor(c / cell)) % 2 === 0 ? CHECKER.light : CHECKER.dark;
        out[d] = out[d + 1] = out[d + 2] = v;
        continue;
      }
      const s = (y * w + x) * channels;
      for (let k = 0; k < 3; k++) out[d + k] = pixels[s + (channels === 1 ? 0 : k)];
    }
  }
  const clip = {
    top: Math.max(0, Math.min(ph, -box.top)),
    bottom: Math.max(0, Math.min(ph, box.bottom - (h - 1))),
    left: Math.max(0, Math.min(pw, -box.left)),
    right: Math.max(0, Math.min(pw, box.right - (w - 1))),
  };
  return { image: { pixels: out, width: pw, height: ph, channels: 3 }, clip };
}

/**
 * Default layers: the last conv layer of each stage, a stage being the conv layers whose output
 * sits on the same grid (same jump), i.e. those between two pooling / strided steps.
 */
export function stageEnds(nodes: { name: string; jump?: [number, number]; conv: boolean }[]): string[] {
  const last = new Map<string, string>();
  for (const n of nodes) if (n.conv && n.jump) last.set(n.jump.join('x'), n.name);
  return [...last.values()];
}

const params = z.object({
  layers: z.array(z.string()).optional().describe('layers to show; default: the last conv layer of each stage (layers on one grid between pooling / stride-2 steps)'),
  channels: z.union([z.number().int().min(1), z.array(z.number().int().min(0))]).default(16).describe('a count (the first N channels of each layer) or a list of channel indices'),
  k: z.number().int().min(1).max(100).default(9).describe('patches per channel (at most channel-stats’ k)'),
  upscale: z.number().int().min(1).max(64).optional().describe('nearest-neighbour upscale of the patches; default: about 64 px per patch'),
  batchSize: z.number().int().min(1).max(4096).default(64).describe('images read at a time'),
});

export default defineTechnique({
  id: 'max-patches',
  title: 'Maximally activating patches',
  summary: 'For each chosen channel, the test-image patches that excite it most, cropped to the receptive field of the unit.',
  family: 'dataset',
  version: 1,
  needs: ['channel-stats'],
  params,
  async run(ctx): Promise<MaxPatchesData> {
    const { executor } = ctx.model;
    const stats = ctx.deps['channel-stats'] as ChannelStatsData | undefined;
    if (!stats) throw new Error('max-patches: the channel-stats result is missing (it is listed in needs)');
    const fieldOf = new Map(ctx.model.layers.map((l) => [l.name, l.receptiveField]));
    const names = ctx.params.layers ?? stageEnds(spatialLayers(executor).map((n) => ({ name: n.name, jump: fieldOf.get(n.name)?.jump, conv: isConvNode(n) })));
    const [h, w, c] = ctx.dataset.imageShape;
    const k = Math.min(ctx.params.k, stats.k);

    // what to crop: per layer and unit, the top entries (image, y, x, value)
    const plan = names.map((name) => {
      const node = executor.node(name);
      const stat = stats.layers.find((s) => s.name === node.name);
      if (!stat) {
        throw new ConvlensError(`layer '${name}' is not in the channel-stats pass.`, {
          field: 'techniques.max-patches.layers', fix: `choose from: ${stats.layers.map((s) => `'${s.name}'`).join(', ')}, or add it to techniques.channel-stats.layers.`,
        });
      }
      const field = fieldOf.get(node.name);
      if (!field) throw new ConvlensError(`layer '${name}' has no receptive field (its output is not an image grid).`, { field: 'techniques.max-patches.layers' });
      const count = stat.shape[2];
      const channels = typeof ctx.params.channels === 'number' ? Array.from({ length: Math.min(count, ctx.params.channels) }, (_, i) => i) : ctx.params.channels;
      for (const ch of channels) {
        if (ch >= count) throw new ConvlensError(`layer '${name}' has ${count} channels; there is no channel ${ch}.`, { field: 'techniques.max-patches.channels' });
      }
      const units = channels.map((ch) => {
        const top = stat.top[ch].slice(0, k);
        const kept = top.filter((e) => e[3] !== 0);
        return { channel: ch, dead: stat.dead.includes(ch), silent: top.length - kept.length, top: kept, images: new Array<RasterImage | undefined>(kept.length), patches: [] as Patch[] };
      });
      return { node, field, units };
    });

    // read only the images that some patch needs, in index order, a batch at a time
    const wanted = new Map<number, { l: number; u: number; j: number }[]>();
    plan.forEach((p, l) => p.units.forEach((unit, u) => unit.top.forEach((e, j) => {
      if (!wanted.has(e[0])) wanted.set(e[0], []);
      wanted.get(e[0])!.push({ l, u, j });
    })));
    const indices = Int32Array.from([...wanted.keys()].sort((a, b) => a - b));
    let done = 0;
    if (indices.length) {
      for await (const batch of ctx.dataset.batches('test', ctx.params.batchSize, { indices })) {
        for (let i = 0; i < batch.size; i++) {
          const index = batch.indices[i];
          const px = batch.pixels.subarray(i * h * w * c, (i + 1) * h * w * c);
          const { id, label } = ctx.dataset.describeImage('test', index);
          for (const { l, u, j } of wanted.get(index) ?? []) {
            const { field } = plan[l];
            const unit = plan[l].units[u];
            const [, y, x, value] = unit.top[j];
            const box = fieldBounds(field, [y, x]);
            const cell = Math.max(1, Math.round(Math.max(...field.size) / 8));
            const { image, clip } = cropPatch(px, [h, w], c, box, cell);
            unit.images[j] = image;
            unit.patches[j] = { index, id, label, y, x, value, box, clip, clipped: clip.top + clip.bottom + clip.left + clip.right > 0 };
          }
        }
        ctx.progress((done += batch.size), indices.length);
      }
    }

    const layers: MaxPatchesLayer[] = [];
    for (const [l, { node, field, units }] of plan.entries()) {
      const upscale = ctx.params.upscale ?? Math.max(1, Math.round(64 / Math.max(...field.size)));
      const safe = `${l}-${node.name.replace(/[^A-Za-z0-9_.-]/g, '_')}`;
      const out: Unit[] = [];
      for (const unit of units) {
        const columns = 3;
        const file = `${safe}/channel-${unit.channel}.png`;
        let width = 0;
        let height = 0;
        if (unit.images.length) {
          const grid = imageGrid(unit.images as RasterImage[], columns, { upscale, gap: 3 });
          await ctx.out.png(file, grid.pixels, grid.width, grid.height, grid.channels);
          ({ width, height } = grid);
        }
        out.push({ channel: unit.channel, file: width ? file : '', width, height, columns, dead: unit.dead, silent: unit.silent, patches: unit.patches });
      }
      layers.push({ name: node.name, className: node.className, receptiveField: field, patchSize: [field.size[0], field.size[1]], upscale, units: out });
    }
    return { k, checker: CHECKER, layers };
  },
});
