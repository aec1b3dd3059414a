/**
 * What `npm run train -- --resume FILE` may continue: the checkpoint's epoch and step must be
 * counts the run can carry on from, and a seed, learning rate or dataset other than the one it
 * was trained with is said out loud (it is allowed: fine-tuning at a lower rate, say).
 */
import { readRunMetadata } from '../model/checkpoint';
import type { FitRule } from '../model/settings';

/** The GPU keeps Adam's step count as a u32 (the trainer's state buffer): past this it would wrap. */
const MAX_STEP = 0xffffffff;

export interface ResumeRun {
  /** The epoch to train up to (--epochs). */
  epochs: number;
  seed: number;
  lr: number;
  /** `mnist`, `fashion-mnist` or the absolute path of a --data or --images folder, as written in checkpoints. */
  dataset: string;
  /** An --images run: how its images are decoded. */
  images?: { size: number; fit: FitRule };
  batchSize: number;
  trainCount: number;
}

/**
 * How a dataset is named on the command line. A checkpoint of an --images run is one that
 * records its image size (older ones do not, and read as --data).
 */
const datasetFlag = (dataset: string, images: boolean) =>
  images ? `--images ${dataset}` : dataset === 'mnist' || dataset === 'fashion-mnist' ? `--dataset ${dataset}` : `--data ${dataset}`;

/**
 * Checks a decoded checkpoint's epoch and step against the run; throws an Error (the CLI prints
 * it and exits 1) when it cannot be continued. Returns its epoch (0 when it has none: weights
 * without a run) and one warning line for each way this run differs from the one that wrote it.
 */
export function checkResume(file: string, checkpoint: { metadata: Record<string, string>; step: number }, run: ResumeRun): { epoch: number; warnings: string[] } {
  const { metadata, step } = checkpoint;
  let was: ReturnType<typeof readRunMetadata>;
  try {
    was = readRunMetadata(metadata);
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`, { cause: e });
  }
  const { epoch } = was;
  const batches = Math.ceil(run.trainCount / run.batchSize);
  const lastStep = step + Math.max(0, run.epochs - epoch) * batches;
  if (lastStep > MAX_STEP) {
    throw new Error(`${file}: training from epoch ${epoch} (step ${step}) to epoch ${run.epochs} would take ${lastStep} Adam steps, more than the ${MAX_STEP} the engine counts: pass a smaller --epochs`);
  }

  const warnings: string[] = [];
  const warn = (was: string, is: string, why: string) =>
    warnings.push(`warning: ${file} was trained with ${was}; this run uses ${is}${why} (pass ${was} to continue it as it was)`);
  if (was.seed !== undefined && was.seed !== run.seed) {
    warn(`--seed ${was.seed}`, `--seed ${run.seed}`, ', so its shuffles and noise differ from the original run\'s');
  }
  if (was.lr !== undefined && was.lr !== run.lr) warn(`--lr ${was.lr}`, `--lr ${run.lr}`, '');
  if (was.dataset !== undefined && was.dataset !== run.dataset) {
    warn(datasetFlag(was.dataset, was.imageSize !== undefined), datasetFlag(run.dataset, run.images !== undefined), '');
  }
  // The same folder decoded by another rule is other images (a different --image-size cannot load: its sizes differ).
  if (was.fit !== undefined && run.images && was.fit !== run.images.fit) {
    warn(`--fit ${was.fit}`, `--fit ${run.images.fit}`, ', so the same files become other images');
  }
  // Every epoch of one run takes the same number of steps; when the count does not fit, the
  // checkpoint came from other batch sizes or image counts (or was saved mid-epoch): allowed, but said.
  if (step !== epoch * batches) {
    warnings.push(
      `warning: ${file} is at epoch ${epoch} after ${step} Adam steps, but ${epoch} epochs of this run take ${epoch * batches} ` +
        `(${batches} batches of ${run.batchSize} from ${run.trainCount} images): it was trained with another --batch-size, ` +
        `--train-limit or dataset, or saved mid-epoch; Adam continues from step ${step}`,
    );
  }
  return { epoch, warnings };
}
