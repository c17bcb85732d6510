import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import technique, { type AmData } from '../pipelines/techniques/activation-maximization';
import { convStageLayers } from '../pipelines/engines/optimize-image';
import { runTechnique, tinyReport } from './helpers/tiny-report';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('activation-maximization', () => {
  it('runs on the tiny report: conv stages, both variants, activation raised, no leaked tensors', async () => {
    const { model, dataset } = await tinyReport();
    expect(convStageLayers(model.executor)).toEqual(['c1', 'c2', 'c3']);
    const before = tf.memory().numTensors;
    const { data, files } = await runTechnique(technique, { model, dataset, params: { steps: 5, channels: 2 } });
    expect(tf.memory().numTensors).toBe(before);
    const d = data as AmData;
    expect(d.layers.map((l) => l.layer)).toEqual(['c1', 'c2', 'c3']);
    for (const l of d.layers) {
      expect(l.channels).toHaveLength(2);
      for (const id of ['priors', 'plain']) {
        const r = l.runs[id];
        expect(files).toContain(r.grid);
        expect(r.losses).toHaveLength(6);
        expect(r.activation).toHaveLength(2);
      }
      // without transforms the per-step loss is exact: it must fall within 5 steps
      expect(l.runs.plain.losses[5]).toBeLessThan(l.runs.plain.losses[0]);
    }
    model.dispose();
  });

  it('same seed → same images', async () => {
    const { model, dataset } = await tinyReport();
    const a = (await runTechnique(technique, { model, dataset, params: { steps: 3, channels: 1, layers: ['c2'] }, seed: 4 })).data as AmData;
    const b = (await runTechnique(technique, { model, dataset, params: { steps: 3, channels: 1, layers: ['c2'] }, seed: 4 })).data as AmData;
    expect(a.layers[0].runs.priors.activation).toEqual(b.layers[0].runs.priors.activation);
    model.dispose();
  });
});
