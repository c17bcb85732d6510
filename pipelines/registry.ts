/** THE list of techniques. Adding one: its file in techniques/, one line here, content/methods/<id>.mdx. */
import type { Technique } from './technique';
// dataset pass
import features from './techniques/features';
import confusionMatrix from './techniques/confusion-matrix';
import knn from './techniques/knn';
import pca from './techniques/pca';
import tsne from './techniques/tsne';
import umap from './techniques/umap';
import channelStats from './techniques/channel-stats';
import thumbnails from './techniques/thumbnails';
import activations from './techniques/activations';
import maxPatches from './techniques/max-patches';
// weights
import filters from './techniques/filters';
// attribution
import saliency from './techniques/saliency';
import smoothgrad from './techniques/smoothgrad';
import guidedBackprop from './techniques/guided-backprop';
import deconvnet from './techniques/deconvnet';
import cam from './techniques/cam';
import gradCam from './techniques/grad-cam';
import gradCamPlusPlus from './techniques/grad-cam-plus-plus';
import guidedGradCam from './techniques/guided-grad-cam';
import occlusion from './techniques/occlusion';
// optimization
import activationMaximization from './techniques/activation-maximization';
import classModel from './techniques/class-model';
import featureInversion from './techniques/feature-inversion';
import textureSynthesis from './techniques/texture-synthesis';
import styleTransfer from './techniques/style-transfer';

export const techniques: Technique[] = [
  features,
  confusionMatrix,
  knn,
  pca,
  tsne,
  umap,
  thumbnails,
  channelStats,
  activations,
  maxPatches,
  filters,
  saliency,
  smoothgrad,
  guidedBackprop,
  deconvnet,
  cam,
  gradCam,
  gradCamPlusPlus,
  guidedGradCam,
  occlusion,
  activationMaximization,
  classModel,
  featureInversion,
  textureSynthesis,
  styleTransfer,
] as Technique[];

export function findTechnique(id: string): Technique | undefined {
  return techniques.find((t) => t.id === id);
}
