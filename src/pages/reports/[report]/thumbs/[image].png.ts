/**
 * `/reports/<id>/thumbs/test-<i>.png`: one test image cropped out of the t-SNE grid sprite, for
 * the scatter tooltips of images that no result saved on their own (src/lib/thumbnails.ts).
 */
import type { APIRoute, GetStaticPaths } from 'astro';
import sharp, { type OutputInfo } from 'sharp';
import { imageSlug } from '../../../../lib/test-images';
import { localFile, spriteOnly, type SpriteCell } from '../../../../lib/thumbnails';
import { reports } from '../../../../site-data';

export const getStaticPaths = (() =>
  reports().flatMap((report) => [...spriteOnly(report)].map(([index, cell]) => ({ params: { report: report.id, image: imageSlug(index) }, props: { cell } })))) satisfies GetStaticPaths;

/** Each sprite decoded once per build, not once per thumbnail (1,000 crops per report). */
const decoded = new Map<string, Promise<{ data: Buffer; info: OutputInfo }>>();
function raw(file: string) {
  let p = decoded.get(file);
  if (!p) decoded.set(file, (p = sharp(file).raw().toBuffer({ resolveWithObject: true })));
  return p;
}

export const GET: APIRoute = async ({ props }) => {
  const { cell } = props as { cell: SpriteCell };
  const file = localFile(cell.entry, cell.file);
  try {
    const { data, info } = await raw(file);
    if (cell.left + cell.width > info.width || cell.top + cell.height > info.height) throw new Error(`the sprite is only ${info.width}×${info.height}`);
    const ch = info.channels;
    const out = Buffer.alloc(cell.width * cell.height * ch);
    for (let y = 0; y < cell.height; y++) {
      const from = ((cell.top + y) * info.width + cell.left) * ch;
      data.copy(out, y * cell.width * ch, from, from + cell.width * ch);
    }
    const png = await sharp(out, { raw: { width: cell.width, height: cell.height, channels: ch } }).png().toBuffer();
    return new Response(new Uint8Array(png), { headers: { 'Content-Type': 'image/png' } });
  } catch (e) {
    throw new Error(`${file}: cannot crop the ${cell.width}×${cell.height} cell at (${cell.left}, ${cell.top}) for a thumbnail (${(e as Error).message}); run \`npx convlens run --only tsne\` again`);
  }
};
