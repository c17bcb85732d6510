/** `saliency` (Simonyan et al. 2014): the input gradient of a class logit, and gradient × input. */
import { z } from 'zod';
import { absMax, commonParams, inputGradient, runAttribution, timesInput } from '../engines/attribution';
import { defineTechnique } from '../technique';

export default defineTechnique({
  id: 'saliency',
  title: 'Saliency maps',
  summary: 'Which input pixels the class score is most sensitive to: the gradient of the logit with respect to the image, and gradient × input.',
  family: 'attribution',
  version: 1,
  needs: ['features'],
  params: z.object({ ...commonParams }),
  async run(ctx) {
    return runAttribution(ctx, {
      technique: 'saliency',
      kinds: [
        { name: 'gradient', title: '|∂ logit / ∂ input| (max over channels)', signed: false },
        { name: 'gradient-x-input', title: 'gradient × input (sum over channels)', signed: true },
      ],
      compute: (x, targets) => {
        const g = inputGradient(ctx.model.executor, x, targets);
        return { maps: { gradient: absMax(g), 'gradient-x-input': timesInput(g, x) } };
      },
    });
  },
});
