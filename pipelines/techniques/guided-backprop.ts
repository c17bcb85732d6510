/**
 * `guided-backprop` (Springenberg et al. 2015): the input gradient of a class logit where every
 * ReLU passes back only positive signal at positive inputs.
 */
import { z } from 'zod';
import { channelSum, commonParams, inputGradient, runAttribution } from '../engines/attribution';
import { defineTechnique } from '../technique';

export default defineTechnique({
  id: 'guided-backprop',
  title: 'Guided backpropagation',
  summary: 'A gradient in which every ReLU lets back only positive signal where its input was positive: crisp, edge-like pictures of the evidence.',
  family: 'attribution',
  version: 1,
  needs: ['features'],
  params: z.object({ ...commonParams }),
  async run(ctx) {
    return runAttribution(ctx, {
      technique: 'guided-backprop',
      kinds: [{ name: 'guided', title: 'guided backprop (sum over channels)', signed: true }],
      compute: (x, targets) => ({ maps: { guided: channelSum(inputGradient(ctx.model.executor, x, targets, 'guided')) } }),
    });
  },
});
