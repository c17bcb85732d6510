/**
 * `thumbnails` (internal): one small PNG per test image, `thumbs/test-<i>.png`, so the site's
 * interactive PCA / t-SNE / UMAP scatters can show any point's image in its tooltip. Computed
 * once and cached like any result (about 0.3 KB per 28-px image); images larger than
 * `thumbSize` are box-downscaled by an integer factor. Streams the split: memory is one batch.
 */
import { z } from 'zod';
import { boxDownscale, type Channels } from '../images';
import { defineTechnique } from '../technique';

export interface ThumbnailsData {
  split: 'test';
  /** thumbnails written: test images 0 … count − 1. */
  count: number;
  width: number;
  height: number;
  /** file name of test image i's thumbnail: `{index}` replaced by i. */
  pattern: string;
}

const PATTERN = 'thumbs/test-{index}.png';
export const thumbnailFile = (pattern: string, index: number): string => pattern.replace('{index}', String(index));

const params = z.object({
  thumbSize: z.number().int().min(8).max(128).default(32).describe('largest side of a thumbnail in pixels (larger images are box-downscaled by an integer factor)'),
  maxImages: z.number().int().min(0).default(20_000).describe('thumbnails for at most this many test images (the first ones); scatter points beyond get none'),
});

export default defineTechnique({
  id: 'thumbnails',
  title: 'Test-image thumbnails',
  summary: 'One small picture per test image, for the tooltips of the embedding scatters.',
  family: 'dataset',
  version: 1,
  needs: [],
  internal: true,
  params,
  quick: { maxImages: 200 },
  async run(ctx): Promise<ThumbnailsData> {
    const [h, w, c] = ctx.dataset.imageShape;
    const count = Math.min(ctx.dataset.splitSizes.test, ctx.params.maxImages);
    const f = Math.max(1, Math.ceil(Math.max(h, w) / ctx.params.thumbSize));
    const size = h * w * c;
    let done = 0;
    const indices = Int32Array.from({ length: count }, (_, i) => i);
    for await (const batch of ctx.dataset.batches('test', 256, { indices })) {
      for (let b = 0; b < batch.size; b++) {
        const t = boxDownscale(batch.pixels.subarray(b * size, (b + 1) * size), w, h, c, f);
        await ctx.out.png(thumbnailFile(PATTERN, batch.indices[b]), t.pixels, t.width, t.height, c as Channels);
      }
      ctx.progress((done += batch.size), count);
    }
    // boxDownscale's output size
    const width = Math.max(1, Math.floor(w / f));
    const height = Math.max(1, Math.floor(h / f));
    return { split: 'test', count, width, height, pattern: PATTERN };
  },
});
