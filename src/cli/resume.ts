/**
 * What `npm run train -- --resume FILE` may continue: the checkpoint's epoch and step must be
 * counts the run can carry on from, and a seed, learning rate or dataset other than the one it
 * was trained with is said out loud (it is allowed: fine-tuning at a lower rate, say).
 */
import { readFileSync } from 'node:fs';
import { checkpointSizes, decodeCheckpoint, readRunMetadata } from '../model/checkpoint';
import { arenaLayout, classesOf, type Likelihood, type VaeSizes } from '../model/graph';
import { labelsReason } from '../model/labels';
import { DEFAULT_OBJECTIVE, type FitRule } from '../model/settings';
import type { RunData } from './data';
import type { TrainOptions } from './options';

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

/** How a run starts: fresh, or from --resume's checkpoint with the settings it carries. */
export interface ResumeDecision {
  /** The model's classes: --conditional's, or on --resume the checkpoint's. */
  modelClasses: number;
  /** The checkpoint's bytes, base64, for the page. */
  resume?: string;
  firstEpoch: number;
  likelihood?: Likelihood;
  beta?: number;
  klWarmup?: number;
}

/**
 * The resume rules: the checkpoint's likelihood, classes, β and warm-up continue unless given;
 * what must match it is refused with the reason, what may differ is said. Returns null when the
 * checkpoint already reached --epochs (it says "Nothing to do").
 */
export function decideResume(o: TrainOptions, d: RunData): ResumeDecision | null {
  const { pixels, classes, trainLabels, testLabels, trainCount, testCount, dataset, images } = d;
  // The model's classes: --conditional's, or on --resume the checkpoint's (as its likelihood, below).
  let modelClasses = classes;
  let resume: string | undefined;
  let firstEpoch = 1;
  let likelihood = o.likelihood;
  let beta = o.beta;
  let klWarmup = o.klWarmup;
  if (o.resume) {
    const bytes = readFileSync(o.resume);
    // Check it here, before launching anything, for a clear error.
    let ckpt;
    try {
      // β, the warm-up and the likelihood come from the checkpoint unless given: a resume continues the same objective.
      const stored = checkpointSizes(bytes).sizes;
      likelihood ??= stored.likelihood;
      // So do the classes: a conditional checkpoint continues as one, with or without --conditional.
      modelClasses = classesOf(stored);
      if (o.conditional && modelClasses === 0) {
        throw new Error('it is an unconditional VAE, and --conditional makes a conditional one: drop --conditional to continue it');
      }
      const sizes: VaeSizes = { D: pixels, hidden: o.hidden, L: o.latent, ...(modelClasses > 0 ? { classes: modelClasses } : {}) };
      ckpt = decodeCheckpoint(bytes, arenaLayout({ ...sizes, ...(likelihood ? { likelihood } : {}) }));
      const was = readRunMetadata(ckpt.metadata);
      for (const [flag, given, before, fallback] of [['--beta', beta, was.beta, DEFAULT_OBJECTIVE.beta], ['--kl-warmup', klWarmup, was.klWarmup, DEFAULT_OBJECTIVE.klWarmup]] as const) {
        if (given !== undefined && given !== (before ?? fallback)) {
          console.error(`webgpu-vae train: warning: ${o.resume} was trained with ${flag} ${before ?? fallback}; this run uses ${flag} ${given} (pass ${flag} ${before ?? fallback} to continue it as it was)`);
        }
      }
      beta ??= was.beta;
      klWarmup ??= was.klWarmup;
    } catch (e) {
      throw new Error(`${o.resume}: ${(e as Error).message}${imageSizeHint(bytes, o, pixels)}`, { cause: e });
    }
    if (modelClasses > 0) {
      const bad = labelsReason('train', trainLabels, trainCount, modelClasses) ?? labelsReason('test', testLabels, testCount, modelClasses);
      if (bad) throw new Error(`${o.resume} is a conditional VAE of ${modelClasses} classes, and ${dataset}'s labels do not fit it: ${bad}`);
      if (modelClasses !== classes) {
        console.log(`webgpu-vae: ${o.resume} is a conditional VAE of ${modelClasses} classes: this run continues it as one, on ${dataset}'s labels`);
      }
    }
    const { epoch, warnings } = checkResume(o.resume, ckpt, { ...o, dataset, trainCount, images });
    if (epoch >= o.epochs) {
      console.log(`Nothing to do: the checkpoint is at epoch ${epoch}; pass --epochs ${epoch + o.epochs} to train ${o.epochs} more.`);
      return null;
    }
    for (const w of warnings) console.error(`webgpu-vae train: ${w}`);
    firstEpoch = epoch + 1;
    resume = Buffer.from(bytes).toString('base64');
  }
  return { modelClasses, resume, firstEpoch, likelihood, beta, klWarmup };
}

/**
 * A checkpoint of an --images run records the side its images had: when that is not this
 * run's, the sizes cannot match, and the flag that makes them match is the useful part.
 */
function imageSizeHint(bytes: Uint8Array, o: TrainOptions, pixels: number): string {
  let size: number | undefined;
  try {
    size = readRunMetadata(checkpointSizes(bytes).metadata).imageSize;
  } catch {
    return ''; // the error being reported says what is wrong with the file
  }
  if (size === undefined || size * size === pixels) return '';
  return o.images !== undefined
    ? ` (it was trained on ${size}×${size} images: pass --image-size ${size} to continue it)`
    : ` (it was trained on an --images folder of ${size}×${size} images: pass --images DIR --image-size ${size} to continue it)`;
}
