import { defineReport } from '../../pipelines/config';

export default defineReport({
  title: 'Fashion-MNIST CNN',
  description:
    'A small convolutional network trained by convlens itself (see train.ts) on Fashion-MNIST: ' +
    '28×28 grey images of ten kinds of clothing. Every figure on these pages was computed on this model.',
  model: './model',
  dataset: { type: 'fashion-mnist' },
  preprocessing: { range: [0, 1] },
  samplesPerClass: 8,
  techniques: {},
});
