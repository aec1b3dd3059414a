/**
 * The run's data, read and checked in Node before any GPU browser starts: MNIST, Fashion-MNIST,
 * a --data folder of idx files, CIFAR-10's binary files (--dataset cifar10 --data DIR) or an
 * --images folder, cut to --train-limit and --test-limit,
 * with the labels a conditional VAE needs.
 */
import { join, resolve } from 'node:path';
import { describeImageFolder } from '../data/image-folder';
import type { IdxImages } from '../data/idx';
import { classCountOf, labelsReason } from '../model/labels';
import { CHANNELS_DEFAULT, FIT_DEFAULT, IMAGE_SIZE_DEFAULT, type FitRule } from '../model/settings';
import { CIFAR10 } from '../data/cifar';
import { findDataset, loadCifar10, loadDataset, verifyMnist } from '../node/datasets';
import { loadImageFolder } from '../node/image-folder';
import { UsageError } from '../node/options';
import type { TrainOptions } from './options';

export interface RunData {
  train: IdxImages;
  test: IdxImages;
  trainCount: number;
  testCount: number;
  /** The first trainCount and testCount labels. */
  trainLabels: Uint8Array;
  testLabels: Uint8Array;
  rows: number;
  cols: number;
  /** 1 (grayscale) or 3 (planar R, G, B: each image's planes of rows×cols in turn). */
  channels: number;
  /** Values per image, channels × rows × cols: the model's D. */
  pixels: number;
  /** --conditional: the number of classes the labels use (0 without it). */
  classes: number;
  /** What checkpoints record as their dataset, and warnings compare: an absolute path, valid from any folder. */
  dataset: string;
  /** How the data is named in the adapter line. */
  title: string;
  /** How an --images folder is decoded: what checkpoints record and a resume compares. */
  images?: { size: number; fit: FitRule };
  /**
   * An --images folder's sorted class names, or CIFAR-10's from batches.meta.txt (label k is
   * classNames[k]): checkpoints record them, a resume checks them.
   */
  classNames?: string[];
}

export async function loadRunData(o: TrainOptions): Promise<RunData> {
  const images =
    o.images === undefined ? undefined : { size: o.imageSize ?? IMAGE_SIZE_DEFAULT, fit: o.fit ?? FIT_DEFAULT };
  const channels = o.dataset === 'cifar10' && !o.images ? CIFAR10.channels : (o.channels ?? CHANNELS_DEFAULT);
  const folder = images ? await loadImageFolder(o.images!, { ...images, channels }) : null;
  if (folder) {
    for (const s of folder.skipped) console.error(`webgpu-vae: skipped ${join(o.images!, s.path)}: ${s.reason}`);
    const { train: tr, test: te, trainLabels, testLabels } = folder;
    console.log(
      `webgpu-vae: ${resolve(o.images!)}: ` +
        describeImageFolder(
          {
            ...folder,
            rows: tr.rows,
            cols: tr.cols,
            channels,
            train: { count: tr.count, labels: trainLabels.labels },
            test: { count: te.count, labels: testLabels.labels },
          },
          images!.fit,
        ),
    );
  }
  const cifar = !folder && o.dataset === 'cifar10' ? await loadCifar10(o.data!) : null;
  if (cifar) {
    const names = cifar.classNames ? ` (${cifar.classNames.join(', ')})` : '';
    console.log(
      `webgpu-vae: ${cifar.dir}: CIFAR-10, ${cifar.train.count} training and ${cifar.test.count} test colour images of 32×32${names}`,
    );
  }
  const files = folder || cifar ? null : findDataset({ dataset: o.dataset, dataDir: o.data });
  if (files && o.dataset === 'mnist' && !o.data) verifyMnist(files);
  const data = folder ?? cifar ?? (await loadDataset(files!));
  const { rows, cols } = data.train;
  const trainCount = Math.min(data.train.count, o.trainLimit ?? Infinity);
  const testCount = Math.min(data.test.count, o.testLimit ?? Infinity);
  const dataset = o.images ? resolve(o.images) : o.data ? resolve(o.data) : o.dataset;
  // A conditional VAE: one class per label value the dataset uses, checked before launching anything.
  const trainLabels = data.trainLabels.labels.subarray(0, trainCount);
  const testLabels = data.testLabels.labels.subarray(0, testCount);
  const classes = o.conditional ? classCountOf(data.trainLabels.labels, data.testLabels.labels) : 0;
  if (o.conditional) {
    if (classes < 2)
      throw new UsageError(
        `--conditional needs labelled images of at least 2 classes; ${dataset} has ${classes} class${classes === 1 ? '' : 'es'}`,
      );
    const bad =
      labelsReason('train', trainLabels, trainCount, classes) ?? labelsReason('test', testLabels, testCount, classes);
    if (bad) throw new UsageError(`--conditional: ${bad}`);
  }
  return {
    train: data.train,
    test: data.test,
    trainCount,
    testCount,
    trainLabels,
    testLabels,
    rows,
    cols,
    channels,
    pixels: channels * rows * cols,
    classes,
    dataset,
    title: cifar ? `CIFAR-10 ${cifar.dir}` : !files ? dataset : o.dataset === 'mnist' && !o.data ? 'MNIST' : files.dir,
    ...(images ? { images } : {}),
    ...(folder ? { classNames: folder.classNames } : cifar?.classNames ? { classNames: cifar.classNames } : {}),
  };
}
