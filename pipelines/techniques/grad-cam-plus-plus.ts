/** `grad-cam-plus-plus` (Chattopadhay et al. 2018): Grad-CAM with pixel-wise weighted positive gradients. */
import { z } from 'zod';
import { camLayer, camLayerParam, commonParams, gradCamPlusPlusMaps, runAttribution } from '../engines/attribution';
import { defineTechnique } from '../technique';

export default defineTechnique({
  id: 'grad-cam-plus-plus',
  title: 'Grad-CAM++',
  summary: 'A variant of Grad-CAM that weights each location\'s positive gradient, so several instances or parts of an object all show up.',
  family: 'attribution',
  version: 1,
  needs: ['features'],
  params: z.object({
    ...commonParams,
    layer: camLayerParam,
  }),
  async run(ctx) {
    const ex = ctx.model.executor;
    const layer = camLayer(ex, ctx.params.layer);
    const data = await runAttribution(ctx, {
      technique: 'grad-cam-plus-plus',
      kinds: [{ name: 'grad-cam-plus-plus', title: `Grad-CAM++ at '${layer}'`, signed: false, layer }],
      compute: (x, targets) => ({ maps: { 'grad-cam-plus-plus': gradCamPlusPlusMaps(ex, x, layer, targets) } }),
      notes: ['weights use the closed form for an exponential of the logit (the paper\'s eq. 19), as the reference implementations do'],
    });
    return { ...data, layer };
  },
});
