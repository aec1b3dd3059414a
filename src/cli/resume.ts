/**
 * What `npm run train -- --resume FILE` may continue, by the resume rules every host applies
 * (src/model/resume.ts), said in the CLI's words: each setting by its flag. A seed, learning
 * rate, objective or dataset other than the one it was trained with is said out loud (it is
 * allowed: fine-tuning at a lower rate, say).
 */
import { readFileSync } from 'node:fs';
import { checkpointSizes, decodeCheckpoint, readRunMetadata } from '../model/checkpoint';
import { arenaLayout, type Likelihood, type VaeSizes } from '../model/graph';
import { checkResumedModel } from '../model/resume';
import { modelSizes } from '../model/spec';
import { labelsReason } from '../model/labels';
import {
  decideResume as decideByRules,
  differenceWarnings,
  resumedClasses,
  resumedLikelihood,
  type ResumeRun,
  type SettingName,
} from '../model/resume';
import type { RunData } from './data';
import type { TrainOptions } from './options';

/**
 * How a dataset is named on the command line. A checkpoint of an --images run is one that
 * records its image size (older ones do not, and read as --data).
 */
const datasetFlag = (dataset: string, images: boolean) =>
  images
    ? `--images ${dataset}`
    : dataset === 'mnist' || dataset === 'fashion-mnist'
      ? `--dataset ${dataset}`
      : `--data ${dataset}`;

const FLAGS = {
  beta: '--beta',
  klWarmup: '--kl-warmup',
  seed: '--seed',
  lr: '--lr',
  batchSize: '--batch-size',
  fit: '--fit',
} as const;

const flagOf: SettingName = (setting, value, images) =>
  setting === 'dataset' ? datasetFlag(String(value), !!images) : `${FLAGS[setting]} ${value}`;

/**
 * Checks a decoded checkpoint against the run; throws an Error (the CLI prints it and exits 1)
 * when it cannot be continued. Returns its epoch (0 when it has none: weights without a run),
 * the objective the run continues with, and one warning line for each way this run differs
 * from the one that wrote it.
 */
export function checkResume(
  file: string,
  checkpoint: { sizes: VaeSizes; metadata: Record<string, string>; step: number },
  run: ResumeRun & { epochs: number; trainCount: number },
): { epoch: number; beta?: number; klWarmup?: number; warnings: string[] } {
  let decided: ReturnType<typeof decideByRules>;
  try {
    decided = decideByRules(checkpoint, run);
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`, { cause: e });
  }
  const { epoch, stepMismatch: m } = decided;
  const warnings = differenceWarnings(file, decided.differences, flagOf, 'pass');
  if (m) {
    warnings.push(
      `warning: ${file} is at epoch ${epoch} after ${m.step} Adam steps, but ${epoch} epochs of this run take ${m.expected} ` +
        `(${m.batches} batches of ${run.batchSize} from ${run.trainCount} images): it was trained with another --batch-size, ` +
        `--train-limit or dataset, or saved mid-epoch; Adam continues from step ${m.step}`,
    );
  }
  return { epoch, beta: decided.beta, klWarmup: decided.klWarmup, warnings };
}

/** How a run starts: fresh, or from --resume's checkpoint with the settings it carries. */
export interface ResumeDecision {
  /** The model: --model's (with --hidden, --latent, the classes and likelihood), or on --resume the checkpoint's. */
  sizes: VaeSizes;
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
  const { channels, rows, cols, pixels, classes, trainLabels, testLabels, trainCount, testCount, dataset, images } = d;
  // The model's classes: --conditional's, or on --resume the checkpoint's (as its likelihood, below).
  let modelClasses = classes;
  let resume: string | undefined;
  let firstEpoch = 1;
  let likelihood = o.likelihood;
  let beta = o.beta;
  let klWarmup = o.klWarmup;
  // The one path from the options to a model (src/model/spec.ts).
  const asked = (classes: number, l: Likelihood | undefined, model = o.model): VaeSizes =>
    modelSizes(model, {
      input: [channels, rows, cols],
      ...(model === undefined || model === 'mlp' || o.given?.hidden ? { hidden: o.hidden } : {}),
      ...(model === undefined || model === 'mlp' || o.given?.latent ? { latent: o.latent } : {}),
      classes,
      likelihood: l,
    });
  let sizes: VaeSizes | undefined;
  if (o.resume) {
    const bytes = readFileSync(o.resume);
    // Check it here, before launching anything, for a clear error, by the rules the headless page's opener applies (src/model/resume.ts).
    let ckpt;
    try {
      // A resume continues the checkpoint's model: its classes, with or without --conditional, and its likelihood unless given.
      const stored = checkpointSizes(bytes).sizes;
      likelihood = resumedLikelihood(stored, likelihood);
      modelClasses = resumedClasses(stored, !!o.conditional);
      // The checkpoint's model unless --model is given, which must then be the checkpoint's.
      if (o.model !== undefined) checkResumedModel(stored, asked(modelClasses, likelihood));
      sizes = asked(modelClasses, likelihood, o.model ?? stored.spec);
      ckpt = decodeCheckpoint(bytes, arenaLayout(sizes));
    } catch (e) {
      throw new Error(`${o.resume}: ${(e as Error).message}${imageSizeHint(bytes, o, pixels)}`, { cause: e });
    }
    if (modelClasses > 0) {
      const bad =
        labelsReason('train', trainLabels, trainCount, modelClasses) ??
        labelsReason('test', testLabels, testCount, modelClasses);
      if (bad)
        throw new Error(
          `${o.resume} is a conditional VAE of ${modelClasses} classes, and ${dataset}'s labels do not fit it: ${bad}`,
        );
      if (modelClasses !== classes) {
        console.log(
          `webgpu-vae: ${o.resume} is a conditional VAE of ${modelClasses} classes: this run continues it as one, on ${dataset}'s labels`,
        );
      }
    }
    // β and the warm-up continue the checkpoint's unless given.
    const decided = checkResume(o.resume, ckpt, {
      ...o,
      beta,
      klWarmup,
      dataset,
      trainCount,
      images,
      classNames: d.classNames,
    });
    ({ beta, klWarmup } = decided);
    const { epoch, warnings } = decided;
    if (epoch >= o.epochs) {
      console.log(
        `Nothing to do: the checkpoint is at epoch ${epoch}; pass --epochs ${epoch + o.epochs} to train ${o.epochs} more.`,
      );
      return null;
    }
    for (const w of warnings) console.error(`webgpu-vae train: ${w}`);
    firstEpoch = epoch + 1;
    resume = Buffer.from(bytes).toString('base64');
  }
  if (!sizes) {
    try {
      sizes = asked(modelClasses, likelihood);
    } catch (e) {
      throw new Error(`--model: ${(e as Error).message}`, { cause: e });
    }
  }
  return { sizes, modelClasses, resume, firstEpoch, likelihood, beta, klWarmup };
}

/**
 * A checkpoint of an --images run records the side its images had (and their channels when
 * colour): when that is not this run's, the sizes cannot match, and the flags that make them
 * match are the useful part.
 */
function imageSizeHint(bytes: Uint8Array, o: TrainOptions, pixels: number): string {
  let run: ReturnType<typeof readRunMetadata>;
  try {
    run = readRunMetadata(checkpointSizes(bytes).metadata);
  } catch {
    return ''; // the error being reported says what is wrong with the file
  }
  const { imageSize: size, channels = 1 } = run;
  if (size === undefined || channels * size * size === pixels) return '';
  const colour = channels === 1 ? '' : ` --channels ${channels}`;
  const what = `${channels === 1 ? '' : 'colour '}${size}×${size} images`;
  return o.images !== undefined
    ? ` (it was trained on ${what}: pass --image-size ${size}${colour} to continue it)`
    : ` (it was trained on an --images folder of ${what}: pass --images DIR --image-size ${size}${colour} to continue it)`;
}
