/**
 * A `fit` apart from the model object: its images and options read into a job, then its
 * epochs run through the engine's one training driver, with the model's step and epoch
 * counters advanced as the losses come back.
 */
import { runTraining } from '../model/driver';
import { SETTING_RANGES } from '../model/settings';
import { VaeError } from './errors';
import { checkBindable, imagesAsBytes, integerOption, labelsOption, type ImageArray } from './inputs';
import { fitSettings } from './options';
import type { Images, Runtime } from './runtime';
import { epochEvent, type EpochEvent, type FitOptions, type FitResult, type RunControl } from './training';

/** A model's counters over its life: Adam steps whose losses have come back, and epochs begun. */
export interface Progress {
  step: number;
  epoch: number;
}

/** What a fit reads of its model to check its inputs. */
export interface FitModel {
  readonly inputSize: number;
  readonly classes: number;
  readonly device: GPUDevice;
}

/**
 * The epochs, images and settings of a `fit` (β and its warm-up default to `objective`, the
 * model's last), each checked: a VaeError that names what is wrong, before the GPU is touched.
 */
export function fitJob(
  context: string,
  model: FitModel,
  images: ImageArray,
  options: FitOptions,
  objective: { beta: number; klWarmup: number },
) {
  const epochs = integerOption('epochs', options.epochs, 1, ...SETTING_RANGES.epochs);
  const train: Images = imagesAsBytes(images, model.inputSize, 'images');
  const test: Images | undefined =
    options.testImages === undefined ? undefined : imagesAsBytes(options.testImages, model.inputSize, 'testImages');
  train.labels = labelsOption(context, 'labels', options.labels, train.count, model.classes);
  if (test) test.labels = labelsOption(context, 'testLabels', options.testLabels, test.count, model.classes);
  else if (options.testLabels !== undefined)
    throw new VaeError('invalid-option', `${context}: testLabels given without testImages`);
  const settings = fitSettings(options, train.count, objective);
  checkBindable(train.bytes, model.device.limits, model.inputSize, 'images');
  if (test) checkBindable(test.bytes, model.device.limits, model.inputSize, 'testImages');
  return { epochs, train, test, settings };
}

/**
 * The epochs of a fit on the images `runtime` was configured with, reporting each step and
 * epoch to the caller's callbacks. `destroyed` ends the run between submits when it turns true.
 */
export async function trainEpochs(
  runtime: Runtime,
  progress: Progress,
  epochs: number,
  hasTest: boolean,
  options: FitOptions,
  control: RunControl,
  destroyed: () => boolean,
): Promise<FitResult> {
  const { model, trainer } = runtime;
  const batches = model.trainBatches;
  const count = model.train.count;
  control.extraStop = destroyed;
  let firstStep = progress.step;
  const result = await runTraining(
    trainer,
    { firstEpoch: progress.epoch + 1, lastEpoch: progress.epoch + epochs, test: hasTest, images: false },
    control.gate,
    {
      onEpochStart: () => {
        firstStep = progress.step;
      },
      onLosses: (l) => {
        for (let i = 0; i < l.losses.length; i++) {
          const batch = l.firstBatch + i;
          progress.step = firstStep + batch + 1;
          const rows = model.rowsOf(batch, count);
          options.onStep?.({
            epoch: l.epoch,
            batch,
            batches,
            step: progress.step,
            loss: l.losses[i] / rows,
            ...(l.objectives ? { objective: l.objectives[i] / rows } : {}),
          });
        }
      },
      onEpoch: async (r) => {
        progress.epoch = r.epoch;
        progress.step = firstStep + r.batches;
        await options.onEpoch?.(epochEvent(r));
      },
    },
  );
  if (destroyed()) throw new VaeError('destroyed', 'the model was destroyed during fit()');
  if (options.signal?.aborted) throw options.signal.reason;
  const done: EpochEvent[] = result.epochs.map(epochEvent);
  const completedAll = done.length === epochs && done.every((d) => d.completed);
  return { epochs: done, stopped: !completedAll, step: progress.step };
}
