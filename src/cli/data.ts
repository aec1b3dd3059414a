/**
 * The run's data, read and checked in Node before any GPU browser starts: MNIST, Fashion-MNIST,
 * a --data folder of idx files or an --images folder, cut to --train-limit and --test-limit,
 * with the labels a conditional VAE needs.
 */
import { join, resolve } from 'node:path';
import { describeImageFolder } from '../data/image-folder';
import type { IdxImages } from '../data/idx';
import { classCountOf, labelsReason } from '../model/labels';
import { FIT_DEFAULT, IMAGE_SIZE_DEFAULT, type FitRule } from '../model/settings';
import { findDataset, loadDataset, verifyMnist } from '../node/datasets';
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
  pixels: number;
  /** --conditional: the number of classes the labels use (0 without it). */
  classes: number;
  /** What checkpoints record as their dataset, and warnings compare: an absolute path, valid from any folder. */
  dataset: string;
  /** How the data is named in the adapter line. */
  title: string;
  /** How an --images folder is decoded: what checkpoints record and a resume compares. */
  images?: { size: number; fit: FitRule };
  /** An --images folder's sorted class names (label k is classNames[k]): checkpoints record them, a resume checks them. */
  classNames?: string[];
}

export async function loadRunData(o: TrainOptions): Promise<RunData> {
  const images =
    o.images === undefined ? undefined : { size: o.imageSize ?? IMAGE_SIZE_DEFAULT, fit: o.fit ?? FIT_DEFAULT };
  const folder = images ? await loadImageFolder(o.images!, images) : null;
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
            train: { count: tr.count, labels: trainLabels.labels },
            test: { count: te.count, labels: testLabels.labels },
          },
          images!.fit,
        ),
    );
  }
  const files = folder ? null : findDataset({ dataset: o.dataset, dataDir: o.data });
  if (files && o.dataset === 'mnist' && !o.data) verifyMnist(files);
  const data = folder ?? (await loadDataset(files!));
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
    pixels: rows * cols,
    classes,
    dataset,
    title: !files ? dataset : o.dataset === 'mnist' && !o.data ? 'MNIST' : files.dir,
    ...(images ? { images } : {}),
    ...(folder ? { classNames: folder.classNames } : {}),
  };
}
