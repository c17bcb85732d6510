/** `guided-grad-cam` (Selvaraju et al. 2017): guided backprop × the upsampled Grad-CAM map. */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { camLayer, camLayerParam, channelSum, commonParams, gradCamMaps, inputGradient, runAttribution, upsample } from '../engines/attribution';
import { defineTechnique } from '../technique';

export default defineTechnique({
  id: 'guided-grad-cam',
  title: 'Guided Grad-CAM',
  summary: 'Guided backpropagation masked by Grad-CAM: fine detail, but only where the layer places the class evidence.',
  family: 'attribution',
  version: 1,
  needs: ['features'],
  params: z.object({
    ...commonParams,
    layer: camLayerParam.describe('Grad-CAM layer; default: the last layer with a spatial output'),
  }),
  async run(ctx) {
    const ex = ctx.model.executor;
    const layer = camLayer(ex, ctx.params.layer);
    const [H, W] = ctx.dataset.imageShape;
    const data = await runAttribution(ctx, {
      technique: 'guided-grad-cam',
      kinds: [{ name: 'guided-grad-cam', title: `guided backprop × Grad-CAM at '${layer}' (sum over channels)`, signed: true }],
      compute: (x, targets) => {
        const cam = upsample(gradCamMaps(ex, x, layer, targets), [H, W]);
        return { maps: { 'guided-grad-cam': tf.mul(channelSum(inputGradient(ex, x, targets, 'guided')), cam) } };
      },
      notes: ['Grad-CAM is upsampled bilinearly to the input size before the product'],
    });
    return { ...data, layer };
  },
});
