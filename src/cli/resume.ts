/**
 * What `npm run train -- --resume FILE` may continue, by the resume rules every host applies
 * (src/model/resume.ts), said in the CLI's words: each setting by its flag. A seed, learning
 * rate, objective or dataset other than the one it was trained with is said out loud (it is
 * allowed: fine-tuning at a lower rate, say).
 */
import { decideResume, differenceWarnings, type ResumeRun, type SettingName } from '../model/resume';
import type { VaeSizes } from '../model/graph';

/**
 * How a dataset is named on the command line. A checkpoint of an --images run is one that
 * records its image size (older ones do not, and read as --data).
 */
const datasetFlag = (dataset: string, images: boolean) =>
  images ? `--images ${dataset}` : dataset === 'mnist' || dataset === 'fashion-mnist' ? `--dataset ${dataset}` : `--data ${dataset}`;

const FLAGS = { beta: '--beta', klWarmup: '--kl-warmup', seed: '--seed', lr: '--lr', batchSize: '--batch-size', fit: '--fit' } as const;

const flagOf: SettingName = (setting, value, images) =>
  setting === 'dataset' ? datasetFlag(String(value), !!images) : `${FLAGS[setting]} ${value}`;

/**
 * Checks a decoded checkpoint against the run; throws an Error (the CLI prints it and exits 1)
 * when it cannot be continued. Returns its epoch (0 when it has none: weights without a run),
 * the objective the run continues with, and one warning line for each way this run differs
 * from the one that wrote it.
 */
export function checkResume(
  file: string, checkpoint: { sizes: VaeSizes; metadata: Record<string, string>; step: number },
  run: ResumeRun & { epochs: number; trainCount: number },
): { epoch: number; beta?: number; klWarmup?: number; warnings: string[] } {
  let decided: ReturnType<typeof decideResume>;
  try {
    decided = decideResume(checkpoint, run);
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
