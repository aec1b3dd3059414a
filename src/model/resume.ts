/**
 * The resume rules, in one place for every host: what a checkpoint decides for the run that
 * continues it, what must match it, and what may differ with a warning. Pure functions over a
 * checkpoint's sizes and metadata (no GPU), so the CLI's Node side decides a resume before it
 * launches a browser, and the opener (./open.ts) applies the same rules where the model is built.
 *
 * - The checkpoint's kernel plan wins over an autotune and the adapter's default: a plan fixes
 *   the order products sum in, and an exact resume needs the order it trained with.
 * - Must match (refused): the sizes (the tensors' shapes, checked by decodeCheckpoint against the
 *   layout), the classes (a conditional checkpoint continues as one; an unconditional one cannot
 *   become conditional), and an image folder's class names (labels are indices into them).
 * - Continue unless given (the objective): the likelihood, β and the KL warm-up are the
 *   checkpoint's; a β or warm-up given that differs is used, with a warning.
 * - May differ, with a warning: the seed, the learning rate, the dataset, the fit rule, and the
 *   batch size (said through the step count when the run's image count is known).
 */
import type { KernelPlan } from '../gpu/plan';
import { readRunMetadata } from './checkpoint';
import { sizesName, type Likelihood, type VaeSizes } from './graph';
import { DEFAULT_OBJECTIVE, type FitRule } from './settings';

/** The GPU keeps Adam's step count as a u32 (the trainer's state buffer): past this it would wrap. */
const MAX_STEP = 0xffffffff;

/** Why a resumed run does not autotune (the hosts print it after their own prefix). */
export const AUTOTUNE_SKIPPED_ON_RESUME =
  'the checkpoint records its kernel plan, and a resumed run keeps it (so it sums in the order it trained with)';

/**
 * The plan a model opens under: a checkpoint's recorded plan, else the one the caller gives (a
 * tuned plan, an autotune candidate), else the adapter's default.
 */
export function openingPlan(
  recorded: KernelPlan | undefined,
  given: KernelPlan | undefined,
  adapterDefault: KernelPlan,
): KernelPlan {
  return recorded ?? given ?? adapterDefault;
}

/** Whether an autotune the user asked for runs: not when the checkpoint records a plan (it wins). */
export function autotuneRuns(asked: boolean, recorded: KernelPlan | undefined): boolean {
  return asked && recorded === undefined;
}

/** A resume refused: a setting that must match the checkpoint does not. The message says which and what to do. */
export class ResumeError extends Error {
  override name = 'ResumeError';
}

/**
 * An image folder's class names against the ones its checkpoint recorded. Labels are indices into
 * the sorted folder names, so a renamed or swapped folder would train a conditional model on
 * permuted labels. Checked when both sides name their classes (idx datasets have no names) and
 * the model is conditional; null when they agree, else the reason.
 */
export function classNamesReason(
  was: readonly string[] | undefined,
  is: readonly string[] | undefined,
  classes: number,
): string | null {
  if (classes === 0 || was === undefined || is === undefined) return null;
  const same = was.length === is.length && was.every((name, i) => name === is[i]);
  if (same) return null;
  const list = (names: readonly string[]) => names.map((n) => JSON.stringify(n)).join(', ');
  return (
    `it was trained on the classes ${list(was)} (label 0, 1, …), and this folder's classes are ${list(is)}: ` +
    'a label would mean another class. Name the class folders as they were when it was trained'
  );
}

/**
 * The classes a resumed model has: the checkpoint's (a conditional checkpoint continues as one,
 * asked or not). Throws ResumeError when the user asks for a conditional model and the
 * checkpoint is unconditional.
 */
export function resumedClasses(stored: VaeSizes, askedConditional: boolean): number {
  const classes = stored.classes ?? 0;
  if (askedConditional && classes === 0) {
    throw new ResumeError(
      'it is an unconditional VAE, and --conditional makes a conditional one: drop --conditional to continue it',
    );
  }
  return classes;
}

/**
 * A model asked for on a resume against the checkpoint's: the same preset or spec (the
 * likelihood aside, which continues unless given), else a ResumeError naming both. The mlp
 * preset's widths are compared where its tensors are read (decodeCheckpoint).
 */
export function checkResumedModel(stored: VaeSizes, asked: VaeSizes): void {
  const shape = (s: VaeSizes) => {
    if (!s.spec) return 'mlp';
    const { likelihood: _l, sigma: _s, ...rest } = s.spec;
    return JSON.stringify(rest);
  };
  if (shape(stored) === shape(asked)) return;
  const name = (s: VaeSizes) => (s.spec ? `the model ${sizesName(s)}` : `the mlp preset (${sizesName(s)})`);
  throw new ResumeError(
    `it is ${name(stored)}, and this run asks for ${name(asked)}: drop --model to continue the checkpoint's model`,
  );
}

/** The likelihood a resumed model has: the one given, else the checkpoint's. */
export function resumedLikelihood(stored: VaeSizes, given: Likelihood | undefined): Likelihood | undefined {
  return given ?? stored.likelihood;
}

/** One setting a run differs in from the checkpoint's. `why`: what the difference does, said after the values. */
export interface ResumeDifference {
  setting: 'beta' | 'klWarmup' | 'seed' | 'lr' | 'batchSize' | 'dataset' | 'fit';
  was: string | number;
  is: string | number;
  why: string;
  /** For the dataset: whether each side is an image folder (a checkpoint is one when it records its image size). */
  images?: { was: boolean; is: boolean };
}

/** What a run continuing a checkpoint uses (undefined: not chosen; β and the warm-up then continue the checkpoint's). */
export interface ResumeRun {
  seed: number;
  lr: number;
  batchSize: number;
  beta?: number;
  klWarmup?: number;
  /** How the host names its dataset (the CLI: mnist, fashion-mnist or an absolute path). */
  dataset?: string;
  /** An image folder's run: how its images are decoded, and its classes' names. */
  images?: { size: number; fit: FitRule };
  classNames?: readonly string[];
  /** With `epochs`: the run's training images, so the step count can be checked (absent: the batch size is compared directly). */
  trainCount?: number;
  /** The epoch to train up to. */
  epochs?: number;
}

/** What a checkpoint decides for the run that continues it. */
export interface ResumeDecision {
  /** Epochs it completed (0: weights without a run). */
  epoch: number;
  /** The objective the run trains with: the given β and warm-up, else the checkpoint's. */
  beta?: number;
  klWarmup?: number;
  /** Its kernel plan, which the run keeps (undefined: it records none). */
  plan?: KernelPlan;
  differences: ResumeDifference[];
  /** A step count that does not fit this run's epochs (another batch size or image count, or saved mid-epoch). */
  stepMismatch?: { step: number; expected: number; batches: number };
}

/**
 * The rules above for one checkpoint and one run. Throws ResumeError when it cannot be continued
 * (class names, a step count past the u32), and the metadata reader's SafetensorsError for bad
 * metadata.
 */
export function decideResume(
  checkpoint: { sizes: VaeSizes; metadata: Record<string, string>; step: number },
  run: ResumeRun,
): ResumeDecision {
  const { step } = checkpoint;
  const was = readRunMetadata(checkpoint.metadata);
  const { epoch } = was;
  const namesBad = classNamesReason(was.classNames, run.classNames, checkpoint.sizes.classes ?? 0);
  if (namesBad) throw new ResumeError(namesBad);
  const differences: ResumeDifference[] = [];
  const differ = (
    setting: ResumeDifference['setting'],
    before: string | number | undefined,
    now: string | number | undefined,
    why = '',
  ) => {
    if (before !== undefined && now !== undefined && before !== now) {
      differences.push({
        setting,
        was: before,
        is: now,
        why,
        ...(setting === 'dataset'
          ? { images: { was: was.imageSize !== undefined, is: run.images !== undefined } }
          : {}),
      });
    }
  };
  differ('beta', was.beta ?? DEFAULT_OBJECTIVE.beta, run.beta);
  differ('klWarmup', was.klWarmup ?? DEFAULT_OBJECTIVE.klWarmup, run.klWarmup);
  differ('seed', was.seed, run.seed, ", so its shuffles and noise differ from the original run's");
  differ('lr', was.lr, run.lr);
  if (run.trainCount === undefined) differ('batchSize', was.batchSize, run.batchSize);
  differ('dataset', was.dataset, run.dataset);
  // The same folder decoded by another rule is other images (another image size cannot load: its sizes differ).
  if (run.images) differ('fit', was.fit, run.images.fit, ', so the same files become other images');
  const decision: ResumeDecision = {
    epoch,
    beta: run.beta ?? was.beta,
    klWarmup: run.klWarmup ?? was.klWarmup,
    plan: was.plan,
    differences,
  };
  if (run.trainCount !== undefined) {
    const batches = Math.ceil(run.trainCount / run.batchSize);
    const lastStep = step + Math.max(0, (run.epochs ?? epoch) - epoch) * batches;
    if (lastStep > MAX_STEP) {
      throw new ResumeError(
        `training from epoch ${epoch} (step ${step}) to epoch ${run.epochs} would take ${lastStep} Adam steps, ` +
          `more than the ${MAX_STEP} the engine counts: pass a smaller --epochs`,
      );
    }
    // Every epoch of one run takes the same number of steps; when the count does not fit, the
    // checkpoint came from other batch sizes or image counts (or was saved mid-epoch): allowed, but said.
    if (step !== epoch * batches) decision.stepMismatch = { step, expected: epoch * batches, batches };
  }
  return decision;
}

/** How a host names a setting and its value in a warning (the CLI: its flags). */
export type SettingName = (setting: ResumeDifference['setting'], value: string | number, images?: boolean) => string;

const WORDS: Record<ResumeDifference['setting'], string> = {
  beta: 'β',
  klWarmup: 'KL warm-up',
  seed: 'seed',
  lr: 'learning rate',
  batchSize: 'batch size',
  dataset: 'dataset',
  fit: 'fit rule',
};

/** Settings named in words ("learning rate 0.002"), for the hosts without flags. */
export const settingInWords: SettingName = (setting, value) => `${WORDS[setting]} ${value}`;

/**
 * One warning line per difference: `warning: {what} was trained with {was}; this run uses
 * {is}{why} ({verb} {was} to continue it as it was)`; the CLI names flags and says "pass".
 */
export function differenceWarnings(
  what: string,
  differences: readonly ResumeDifference[],
  name: SettingName = settingInWords,
  verb = 'use',
): string[] {
  return differences.map((d) => {
    const was = name(d.setting, d.was, d.images?.was);
    return `warning: ${what} was trained with ${was}; this run uses ${name(d.setting, d.is, d.images?.is)}${d.why} (${verb} ${was} to continue it as it was)`;
  });
}
