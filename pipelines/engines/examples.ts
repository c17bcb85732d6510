/**
 * What the shared `features` pass (techniques/features.ts) records, and the choice of example
 * images that per-image techniques (activations, attribution) show: per class, correctly and
 * wrongly classified test images, so every page shows both successes and failures.
 */

/** result.json of the internal `features` technique. Arrays are in split index order. */
export interface FeaturesData {
  /** the node whose output is the feature vector (by default the input of the last Dense layer). */
  layer: string;
  dim: number;
  classes: number;
  splits: {
    test: SplitFeatures;
    /** absent when the dataset has no training split. */
    train?: SplitFeatures;
  };
}

export interface SplitFeatures {
  count: number;
  labels: number[];
  predicted: number[];
  /** softmax probability of the predicted class. */
  confidence: number[];
  /** file (in the features result folder) with count × dim float32 little-endian features. */
  featuresFile: string;
  /** file with count × classes float32 logits. */
  logitsFile: string;
}

export interface Example {
  split: 'test';
  index: number;
  label: number;
  predicted: number;
  correct: boolean;
}

/**
 * Per class: the first `correct` correctly classified and the first `wrong` misclassified
 * test images (index order, so the choice is stable across runs). A class with no mistakes
 * simply has fewer examples.
 */
export function chooseExamples(features: FeaturesData, opts: { correct?: number; wrong?: number } = {}): Example[] {
  const wantCorrect = opts.correct ?? 1;
  const wantWrong = opts.wrong ?? 1;
  const { labels, predicted } = features.splits.test;
  const out: Example[] = [];
  for (let k = 0; k < features.classes; k++) {
    let c = 0;
    let w = 0;
    for (let i = 0; i < labels.length && (c < wantCorrect || w < wantWrong); i++) {
      if (labels[i] !== k) continue;
      const correct = predicted[i] === k;
      if (correct && c < wantCorrect) c++;
      else if (!correct && w < wantWrong) w++;
      else continue;
      out.push({ split: 'test', index: i, label: k, predicted: predicted[i], correct });
    }
  }
  return out;
}
