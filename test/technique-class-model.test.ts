import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import technique, { type ClassModelData } from '../pipelines/techniques/class-model';
import { runTechnique, tinyReport } from './helpers/tiny-report';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('class-model', () => {
  it('one image per class; the loss falls within 5 steps; no leaked tensors', async () => {
    const { model, dataset } = await tinyReport();
    const before = tf.memory().numTensors;
    // jitter off: the per-step loss is then exact, not a random transform's
    const { data, files } = await runTechnique(technique, { model, dataset, params: { steps: 5, jitter: 0, blurEvery: 0 } });
    expect(tf.memory().numTensors).toBe(before);
    const d = data as ClassModelData;
    expect(d.logitsLayer).toBe('logits');
    expect(d.classes).toHaveLength(3);
    expect(files).toContain(d.grid);
    expect(d.losses[5]).toBeLessThan(d.losses[0]);
    model.dispose();
  });

  it('with blur and jitter (defaults) the objective still improves; without priors every class wins its own image', async () => {
    const { model, dataset } = await tinyReport();
    const d = (await runTechnique(technique, { model, dataset, params: { steps: 40 } })).data as ClassModelData;
    expect(d.losses.at(-1)!).toBeLessThan(d.losses[0]);
    // the tiny model's stripes have a 4-px period, which the blur prior suppresses; without it
    // each class's own image is classified as that class
    const plain = (await runTechnique(technique, { model, dataset, params: { steps: 40, blurEvery: 0, jitter: 0 } })).data as ClassModelData;
    for (const c of plain.classes) expect(c.probability).toBeGreaterThan(0.5);
    model.dispose();
  });
});
