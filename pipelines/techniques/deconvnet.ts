/**
 * `deconvnet` (Zeiler & Fergus 2014): one activation of a hidden layer projected back to pixel
 * space through the explicit deconvnet (unpooling switches, rectification, transposed filters),
 * checked against its gradient-rule form; next to it, the class logit's saliency, deconvnet and
 * guided-backprop images, to show how the three ReLU rules differ.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import {
  channelSum, commonParams, convLayers, deconvnetProject, inputGradient, runAttribution, strongestUnits, unitGradient,
} from '../engines/attribution';
import { ConvlensError } from '../errors';
import { defineTechnique } from '../technique';

export default defineTechnique({
  id: 'deconvnet',
  title: 'Deconvnet',
  summary: 'Projects one hidden activation back to pixels the way Zeiler and Fergus did, and compares saliency, deconvnet and guided backpropagation.',
  family: 'attribution',
  version: 2, // 2: correct max-pool switches on wasm (all-negative windows)
  needs: ['features'],
  params: z.object({
    ...commonParams,
    layer: z.string().optional().describe('layer whose activation is projected; default: the last convolutional layer'),
    channel: z.number().int().min(0).optional().describe('project the strongest unit of this channel; default: the strongest unit of any channel'),
  }),
  async run(ctx) {
    const ex = ctx.model.executor;
    const layer = ctx.params.layer ? ex.node(ctx.params.layer).name : convLayers(ex).at(-1);
    if (!layer) throw new ConvlensError('the model has no convolutional layer to project from.', { field: 'techniques.deconvnet.layer' });
    const shape = ex.node(layer).outputShape;
    let worst = 0;
    const data = await runAttribution(ctx, {
      technique: 'deconvnet',
      kinds: [
        { name: 'projection', title: `deconvnet projection of the strongest '${layer}' unit (sum over channels)`, signed: true, layer, faithfulness: false },
        { name: 'saliency', title: 'saliency: plain gradient of the logit (sum over channels)', signed: true, faithfulness: false },
        { name: 'deconvnet', title: 'deconvnet rule: gradient of the logit, ReLU on the backward signal (sum over channels)', signed: true },
        { name: 'guided', title: 'guided backprop: both ReLU masks (sum over channels)', signed: true, faithfulness: false },
      ],
      compute: (x, targets) => {
        const { units, values } = strongestUnits(ex, x, layer, ctx.params.channel);
        const explicit = deconvnetProject(ctx.model, x, layer, units, values);
        // the same projection as a gradient with the deconvnet ReLU rule: it must agree
        const viaRule = tf.mul(unitGradient(ex, x, layer, units, 'deconvnet'), tf.reshape(values, [-1, 1, 1, 1]));
        return {
          maps: {
            projection: channelSum(explicit),
            saliency: channelSum(inputGradient(ex, x, targets, 'plain')),
            deconvnet: channelSum(inputGradient(ex, x, targets, 'deconvnet')),
            guided: channelSum(inputGradient(ex, x, targets, 'guided')),
          },
          // numbers for the info below, read by the runner after the tidy (webgpu cannot read inside it)
          read: { units, values, diffs: tf.max(tf.abs(tf.sub(explicit, viaRule)), [1, 2, 3]), scales: tf.max(tf.abs(viaRule), [1, 2, 3]) },
          info: ({ units: u, values: v, diffs, scales }) => u.map((unit, i) => {
            const c = shape[2];
            const rel = scales[i] > 0 ? diffs[i] / scales[i] : diffs[i];
            worst = Math.max(worst, rel);
            return { unit: { layer, y: Math.floor(unit / (shape[1] * c)), x: Math.floor(unit / c) % shape[1], channel: unit % c, activation: v[i] }, ruleRelativeDifference: rel };
          }),
        };
      },
      notes: ['the projection starts from the unit\'s own activation value; it does not depend on the class, so rows of the same image repeat it'],
    });
    return { ...data, layer, explicitVsRuleMaxRelativeDifference: worst };
  },
});
