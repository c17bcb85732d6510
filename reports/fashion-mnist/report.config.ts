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
  techniques: {
    // Two networks side by side now (random multi-scale + MobileNetV2 backbone: about the same
    // cost per step at 128 px, bench/optimize.ts), so 2 sources × 2 networks × 300 steps keeps
    // this step at its old cost (4 sources × 1 network × 300). At 100 steps the gravel was still
    // noise on both networks: fewer steps would not look good. Steps (300) and size (128 px) are
    // the technique defaults, left unset so that `--quick` can still shrink them.
    'texture-synthesis': { textures: ['images/gravel.png', 'images/scream.png'] },
    // style-transfer: its defaults (MobileNetV2 backbone, Fourier parameterisation from noise,
    // 128 px, 300 steps; the page says why)
  },
});
