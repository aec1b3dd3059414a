/**
 * Datasets for the page: MNIST fetched from the site (`mnist/*.gz`, see vite-plugin-mnist.ts),
 * idx files the user picks from disk (Fashion-MNIST or their own), plain or gzipped, CIFAR-10's
 * binary batch files, or an image folder.
 * Everything is checked before it is returned, so a bad file changes nothing.
 */
import { decodeImageFolder } from '../data/image-decode';
import { describeImageFolder, type SkippedFile } from '../data/image-folder';
import { classCountOf } from '../model/labels';
import type { Channels, FitRule } from '../model/settings';
import { CIFAR10, CifarError, parseCifarBatch, parseCifarMeta, type CifarBatch } from '../data/cifar';
import {
  gunzipBounded,
  IdxError,
  isGzip,
  parseIdxImages,
  parseIdxLabels,
  type IdxImages,
  type IdxLabels,
} from '../data/idx';

export type DatasetKind = 'mnist' | 'fashion' | 'files' | 'cifar10' | 'images';

/** How an image folder is decoded: the side, the fit rule, and 1 (grayscale) or 3 (R, G, B) channels, as the CLI's --channels. */
export interface ImageOptions {
  size: number;
  fit: FitRule;
  channels: Channels;
}

export interface Split {
  count: number;
  /** count × channels × rows × cols bytes (a colour image's R, G and B planes in turn). */
  pixels: Uint8Array;
  /** One class index per image, when a labels file was given. */
  labels?: Uint8Array;
}

export interface Dataset {
  kind: DatasetKind;
  /** What the page calls it ("MNIST", "Fashion-MNIST", or the training file's name). */
  name: string;
  rows: number;
  cols: number;
  /** 1 (grayscale), or 3 for planar R, G, B (CIFAR-10, a colour image folder); absent: 1. */
  channels?: number;
  train: Split;
  test: Split;
  /** Names of the label values, for the scatter's legend. */
  classNames: string[];
  /**
   * Classes the files' labels use (classCountOf over both whole splits; 0 without labels): a new
   * conditional model's class count, as the CLI counts the same files. limitDataset keeps it.
   */
  labelClasses: number;
  /** An image folder ('images'): how it was decoded, the files it skipped and the line that says what it became. */
  images?: ImageOptions & { skipped: SkippedFile[]; summary: string };
}

/** Values per image, channels × rows × cols: the model's D. */
export function valuesPerImage(d: { rows: number; cols: number; channels?: number }): number {
  return (d.channels ?? 1) * d.rows * d.cols;
}

/** A file as picked (kept in browser storage so a reload can rebuild the dataset). */
export interface PickedFile {
  name: string;
  bytes: Uint8Array;
}

const DIGITS = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];
const FASHION = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
];

/** Inflates gzip bytes (up to MAX_IDX_FILE_BYTES); other bytes are returned as they are (a host may have inflated them already). */
export async function gunzipIfNeeded(bytes: Uint8Array, name: string): Promise<Uint8Array> {
  return isGzip(bytes) ? gunzipBounded(bytes, name) : bytes;
}

async function fetchBytes(url: string): Promise<Uint8Array> {
  let response: Response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new Error(`fetching ${url} failed (${(e as Error).message}); is the page's server still running?`, {
      cause: e,
    });
  }
  if (!response.ok) {
    throw new Error(
      `fetching ${url}: HTTP ${response.status}. The site must ship the mnist/ folder that \`npm run build\` writes beside index.html.`,
    );
  }
  return new Uint8Array(await response.arrayBuffer());
}

/** MNIST from the site's `mnist/` folder (about 11 MB compressed). */
export async function loadMnist(base: string): Promise<Dataset> {
  const get = async (name: string) => gunzipIfNeeded(await fetchBytes(`${base}mnist/${name}.gz`), name);
  const [trainImages, trainLabels, testImages, testLabels] = await Promise.all([
    get('train-images-idx3-ubyte'),
    get('train-labels-idx1-ubyte'),
    get('t10k-images-idx3-ubyte'),
    get('t10k-labels-idx1-ubyte'),
  ]);
  return assemble(
    'mnist',
    'MNIST',
    parseIdxImages(trainImages, 'train-images-idx3-ubyte'),
    parseIdxLabels(trainLabels, 'train-labels-idx1-ubyte'),
    parseIdxImages(testImages, 't10k-images-idx3-ubyte'),
    parseIdxLabels(testLabels, 't10k-labels-idx1-ubyte'),
  );
}

/**
 * A dataset from picked idx files: two images files (the one with more images trains, or the
 * one named "train" when both are the same size) and optionally a labels file for each.
 */
export async function loadPicked(
  kind: 'fashion' | 'files' | 'cifar10',
  files: readonly PickedFile[],
): Promise<Dataset> {
  if (kind === 'cifar10') return loadCifar(files);
  if (files.length === 0)
    throw new IdxError('no files chosen: pick the training and test images files (labels optional)');
  const images: { file: string; idx: IdxImages }[] = [];
  const labels: { file: string; idx: IdxLabels }[] = [];
  for (const f of files) {
    const bytes = await gunzipIfNeeded(f.bytes, f.name);
    // Byte 3 of an idx header is the number of dimensions: 1 for labels, 3 for images.
    if (bytes.length >= 4 && bytes[0] === 0 && bytes[1] === 0 && bytes[3] === 1)
      labels.push({ file: f.name, idx: parseIdxLabels(bytes, f.name) });
    else images.push({ file: f.name, idx: parseIdxImages(bytes, f.name) });
  }
  if (images.length !== 2) {
    throw new IdxError(
      `found ${images.length} images file${images.length === 1 ? '' : 's'} (${images.map((i) => i.file).join(', ') || 'none'}); ` +
        'pick exactly two idx images files, the training set and the test set (plus their labels files if you have them)',
    );
  }
  const isTrain = (name: string) => /train/i.test(name);
  images.sort((a, b) => b.idx.count - a.idx.count || Number(isTrain(b.file)) - Number(isTrain(a.file)));
  const [train, test] = images;
  if (train.idx.rows !== test.idx.rows || train.idx.cols !== test.idx.cols) {
    throw new IdxError(
      `${train.file} holds ${train.idx.rows}×${train.idx.cols} images but ${test.file} holds ${test.idx.rows}×${test.idx.cols}; pick two files of the same dataset`,
    );
  }
  let trainLabels: IdxLabels | undefined;
  let testLabels: IdxLabels | undefined;
  for (const l of labels) {
    const n = l.idx.count;
    // When both sets are the same size, the file's name decides.
    const forTrain = n === train.idx.count && (n !== test.idx.count || isTrain(l.file));
    if (forTrain && !trainLabels) trainLabels = l.idx;
    else if (!forTrain && n === test.idx.count && !testLabels) testLabels = l.idx;
    else {
      throw new IdxError(
        `${l.file} holds ${n} labels, but the images files hold ${train.idx.count} and ${test.idx.count} images ` +
          '(or another labels file already matched); pick the labels files that belong to these images',
      );
    }
  }
  const name = kind === 'fashion' ? 'Fashion-MNIST' : train.file;
  return assemble(kind, name, train.idx, trainLabels, test.idx, testLabels);
}

function assemble(
  kind: DatasetKind,
  name: string,
  train: IdxImages,
  trainLabels: IdxLabels | undefined,
  test: IdxImages,
  testLabels: IdxLabels | undefined,
): Dataset {
  const maxLabel = Math.max(
    0,
    ...[trainLabels, testLabels].map((l) => (l ? l.labels.reduce((a, b) => Math.max(a, b), 0) : 0)),
  );
  const classNames =
    kind === 'fashion' && maxLabel < 10
      ? FASHION
      : maxLabel < 10
        ? DIGITS
        : Array.from({ length: maxLabel + 1 }, (_, i) => String(i));
  return {
    kind,
    name,
    rows: train.rows,
    cols: train.cols,
    classNames,
    labelClasses: classCountOf(trainLabels?.labels, testLabels?.labels),
    train: { count: train.count, pixels: train.pixels, labels: trainLabels?.labels },
    test: { count: test.count, pixels: test.pixels, labels: testLabels?.labels },
  };
}

/**
 * CIFAR-10 from its picked binary files: data_batch_1.bin … data_batch_5.bin train, test_batch.bin
 * tests, batches.meta.txt (optional) names the classes; the images are 3×32×32, planar. Every
 * batch file must be among the picked ones: a training set missing one is another dataset.
 */
async function loadCifar(files: readonly PickedFile[]): Promise<Dataset> {
  const byName = new Map(files.map((f) => [f.name, f.bytes]));
  const missing = [...CIFAR10.trainFiles, CIFAR10.testFile].filter((n) => !byName.has(n));
  if (missing.length > 0) {
    throw new CifarError(
      `missing ${missing.join(', ')}: pick all six batch files of CIFAR-10's binary version ` +
        `(the ${CIFAR10.archiveFolder} folder), and ${CIFAR10.metaFile} for the class names`,
    );
  }
  const batches = CIFAR10.trainFiles.map((n) => parseCifarBatch(byName.get(n)!, n));
  const test: CifarBatch = parseCifarBatch(byName.get(CIFAR10.testFile)!, CIFAR10.testFile);
  const join = (parts: Uint8Array[]) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
    return out;
  };
  const trainLabels = join(batches.map((b) => b.labels));
  const meta = byName.get(CIFAR10.metaFile);
  return {
    kind: 'cifar10',
    name: 'CIFAR-10',
    rows: CIFAR10.side,
    cols: CIFAR10.side,
    channels: CIFAR10.channels,
    classNames: meta
      ? parseCifarMeta(new TextDecoder().decode(meta), CIFAR10.metaFile)
      : Array.from({ length: CIFAR10.classes }, (_, i) => String(i)),
    labelClasses: classCountOf(trainLabels, test.labels),
    train: { count: trainLabels.length, pixels: join(batches.map((b) => b.pixels)), labels: trainLabels },
    test: { count: test.count, pixels: test.pixels, labels: test.labels },
  };
}

/**
 * An ImageFolder-style dataset from a folder's files (`name`: paths relative to the folder),
 * decoded by this browser to size×size grayscale or colour (src/data/image-decode.ts, which the CLI's
 * headless page runs too). `skipped` are files refused before reading (too large).
 */
export async function loadImages(
  folder: string,
  files: readonly PickedFile[],
  options: ImageOptions,
  skipped: readonly SkippedFile[] = [],
): Promise<Dataset> {
  const d = await decodeImageFolder(
    files.map((f) => ({ path: f.name, bytes: f.bytes })),
    options,
    folder,
  );
  const all = { ...d, skipped: [...skipped, ...d.skipped] };
  return {
    kind: 'images',
    name: folder,
    rows: d.rows,
    cols: d.cols,
    ...(d.channels !== 1 ? { channels: d.channels } : {}),
    classNames: d.classNames,
    labelClasses: classCountOf(d.train.labels, d.test.labels),
    train: d.train,
    test: d.test,
    images: { ...options, skipped: all.skipped, summary: describeImageFolder(all, options.fit) },
  };
}

/** The first `trainLimit` / `testLimit` images (quick runs; the URL's `?limit=` and `?testLimit=`). */
export function limitDataset(d: Dataset, trainLimit?: number, testLimit?: number): Dataset {
  const cut = (s: Split, limit?: number): Split => {
    const count = Math.min(s.count, limit ?? Infinity);
    if (count === s.count) return s;
    const D = valuesPerImage(d);
    return { count, pixels: s.pixels.subarray(0, count * D), labels: s.labels?.subarray(0, count) };
  };
  return { ...d, train: cut(d.train, trainLimit), test: cut(d.test, testLimit) };
}

/** One line about a dataset, for the status area. */
export function describeDataset(d: Dataset): string {
  if (d.images) {
    const skipped = d.images.skipped.map((f) => `skipped ${f.path}: ${f.reason}`);
    return [`${d.name}: ${d.images.summary}.`, ...skipped].join('\n');
  }
  const labels = d.train.labels && d.test.labels ? 'with labels' : d.test.labels ? 'test labels only' : 'no labels';
  const colour = (d.channels ?? 1) === 3 ? 'colour ' : '';
  return `${d.name}: ${d.train.count.toLocaleString('en')} training and ${d.test.count.toLocaleString('en')} test ${colour}images of ${d.rows}×${d.cols}, ${labels}`;
}
