/**
 * `grad-cam` (Selvaraju et al. 2017): a layer's feature maps weighted by the spatially averaged
 * gradient of the class logit, rectified. Also compares three layers on a couple of images.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import {
  camLayer, camLayerParam, commonParams, convLayers, gradCamMaps, itemTensor, prepareItems, renderKind, runAttribution, upsample,
  type KindEntry,
} from '../engines/attribution';
import { defineTechnique } from '../technique';

export default defineTechnique({
  id: 'grad-cam',
  title: 'Grad-CAM',
  summary: 'Where in the image a convolutional layer holds the evidence for a class: feature maps weighted by the averaged gradient of the class score.',
  family: 'attribution',
  version: 1,
  needs: ['features'],
  params: z.object({
    ...commonParams,
    layer: camLayerParam,
    compareLayers: z.number().int().min(0).max(6).default(3).describe('how many of the last convolutional layers to compare'),
    compareImages: z.number().int().min(0).max(8).default(2).describe('images (one right, one wrong first) in the layer comparison'),
  }),
  async run(ctx) {
    const ex = ctx.model.executor;
    const layer = camLayer(ex, ctx.params.layer);
    const { items } = await prepareItems(ctx);
    const data = await runAttribution(ctx, {
      technique: 'grad-cam',
      items,
      kinds: [{ name: 'grad-cam', title: `Grad-CAM at '${layer}'`, signed: false, layer }],
      compute: (x, targets) => ({ maps: { 'grad-cam': gradCamMaps(ex, x, layer, targets) } }),
    });

    // the layer comparison: the predicted-class rows of a right and a wrong image first
    const rows = items.map((it, r) => ({ it, r })).filter(({ it }) => it.role === 'predicted');
    const pick = [...rows.filter(({ it }) => it.example.correct).slice(0, 1), ...rows.filter(({ it }) => !it.example.correct).slice(0, 1)];
    for (const row of rows) if (pick.length < ctx.params.compareImages && !pick.includes(row)) pick.push(row);
    const chosen = pick.slice(0, ctx.params.compareImages).map(({ it }) => it);
    const layers = convLayers(ex).slice(-ctx.params.compareLayers);
    const compare: { layer: string; kind: KindEntry; files: { heat: string; overlay: string }[] }[] = [];
    if (chosen.length) {
      const [H, W] = ctx.dataset.imageShape;
      for (const l of layers) {
        // computed in a tidy, read after it with await (webgpu under Node cannot read synchronously)
        const maps = tf.tidy(() => {
          const m = gradCamMaps(ex, itemTensor(chosen, ctx.dataset.imageShape), l, chosen.map((c) => c.target));
          return [m, upsample(m, [H, W])];
        });
        let raw: Float32Array;
        let full: Float32Array;
        try {
          [raw, full] = (await Promise.all(maps.map((t) => t.data<'float32'>())));
        } finally {
          tf.dispose(maps);
        }
        const [h, w] = ex.node(l).outputShape;
        const r = await renderKind(ctx, { name: safeLayer(l), title: `Grad-CAM at '${l}'`, signed: false, layer: l }, full, { values: raw, shape: [chosen.length, h, w] }, chosen, 'compare/');
        compare.push({ layer: l, kind: r.entry, files: r.files });
      }
    }
    return {
      ...data,
      layer,
      comparison: { images: chosen.map((c) => ({ id: c.id, index: c.example.index, class: c.target })), layers: compare, scaleNote: 'each layer has its own fixed scale (its legend), shared by the images in its row' },
    };
  },
});

const safeLayer = (l: string) => `layer-${l.replace(/[^A-Za-z0-9._-]/g, '_')}`;
