/**
 * `/reports/<id>/thumbs/test-<i>.png`: one test image cropped out of the t-SNE grid sprite, for
 * the scatter tooltips of images that no result saved on their own (src/lib/thumbnails.ts).
 */
import type { APIRoute, GetStaticPaths } from 'astro';
import sharp from 'sharp';
import { imageSlug } from '../../../../lib/test-images';
import { localFile, spriteOnly, type SpriteCell } from '../../../../lib/thumbnails';
import { reports } from '../../../../site-data';

export const getStaticPaths = (() =>
  reports().flatMap((report) => [...spriteOnly(report)].map(([index, cell]) => ({ params: { report: report.id, image: imageSlug(index) }, props: { cell } })))) satisfies GetStaticPaths;

export const GET: APIRoute = async ({ props }) => {
  const { cell } = props as { cell: SpriteCell };
  const file = localFile(cell.entry, cell.file);
  try {
    const png = await sharp(file).extract({ left: cell.left, top: cell.top, width: cell.width, height: cell.height }).png().toBuffer();
    return new Response(new Uint8Array(png), { headers: { 'Content-Type': 'image/png' } });
  } catch (e) {
    throw new Error(`${file}: cannot crop the ${cell.width}×${cell.height} cell at (${cell.left}, ${cell.top}) for a thumbnail (${(e as Error).message}); run \`npx convlens run --only tsne\` again`);
  }
};
