/** `cam` (Zhou et al. 2016): class activation maps of a global-average-pool + Dense head. */
import { z } from 'zod';
import { camHead, camMaps, commonParams, runAttribution } from '../engines/attribution';
import { defineTechnique } from '../technique';

export default defineTechnique({
  id: 'cam',
  title: 'Class activation maps (CAM)',
  summary: 'For networks ending in global average pooling and a dense layer: the last feature maps weighted by the class weights, showing where the evidence for a class lies.',
  family: 'attribution',
  version: 1,
  needs: ['features'],
  params: z.object({ ...commonParams }),
  async run(ctx) {
    const head = camHead(ctx.model);
    if (!head.ok) {
      // not an error: the page explains which architectures CAM needs
      return { technique: 'cam', applicable: false, reason: head.reason, images: [], kinds: [] };
    }
    const data = await runAttribution(ctx, {
      technique: 'cam',
      kinds: [{ name: 'cam', title: `CAM at '${head.feature}': Σ_k w_k A_k`, signed: true, layer: head.feature }],
      compute: (x, targets) => {
        const a = ctx.model.executor.run(x, { upTo: head.feature }).output;
        return { maps: { cam: camMaps(a, head.weights, targets) } };
      },
      notes: [`feature maps '${head.feature}' → global average pooling '${head.gap}' → Dense '${head.logits}'; the Dense bias is left out (it does not vary over the image); maps are not rectified, negative values are evidence against the class`],
    });
    return { ...data, applicable: true, layer: head.feature };
  },
});
