import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import technique, { type InversionData } from '../pipelines/techniques/feature-inversion';
import { runTechnique, tinyReport } from './helpers/tiny-report';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('feature-inversion', () => {
  it('inverts every conv stage and the logits; loss falls within 5 steps; no leaked tensors', async () => {
    const { model, dataset } = await tinyReport();
    const before = tf.memory().numTensors;
    const { data, files } = await runTechnique(technique, { model, dataset, params: { steps: 5, images: 3 } });
    expect(tf.memory().numTensors).toBe(before);
    const d = data as InversionData;
    expect(d.images.map((i) => i.label)).toEqual([0, 1, 2]);
    expect(d.layers.map((l) => l.layer)).toEqual(['c1', 'c2', 'c3', 'logits']);
    expect(files).toContain(d.originals);
    for (const l of d.layers) {
      expect(l.losses[5]).toBeLessThan(l.losses[0]);
      expect(l.relativeError).toHaveLength(3);
    }
    model.dispose();
  });

  it('a shallow layer is matched closely after a few dozen steps', async () => {
    const { model, dataset } = await tinyReport();
    const d = (await runTechnique(technique, { model, dataset, params: { steps: 60, images: 2, layers: ['c1'] } })).data as InversionData;
    for (const e of d.layers[0].relativeError) expect(e).toBeLessThan(0.2);
    model.dispose();
  });
});
