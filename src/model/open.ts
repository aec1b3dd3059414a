/**
 * The one way to open a model, for every host — the CLI's headless page, the page, the library,
 * the bench, a Node runtime — and for the autotune's scratch models: from a model description
 * (the sizes), a job (batch size, learning rate, objective, seed), the images to upload, and
 * optionally a checkpoint to continue, a plan, and an autotune request.
 *
 * It chooses the kernel plan by the resume rules (./resume.ts: a checkpoint's plan wins, then
 * the one given or tuned, then the adapter's), passes it to VaeModel.create (a plan is an
 * argument, never the runtime's state), uploads the images, imports the checkpoint after the
 * rules that must hold for it, and says what a host should show: the autotune's outcome and the
 * ways the job differs from the checkpoint's run.
 *
 * ```ts
 * const { model, trainer, plan, messages } = await openModel(gpu, {
 *   sizes: { D: 784, hidden: [400], L: 20 },
 *   job: { batchSize: 128, lr: 1e-3, seed: 1 },
 *   train: { pixels, count: 60000 }, test: { pixels: testPixels, count: 10000 },
 *   checkpoint: bytes, // optional: continues it
 * });
 * ```
 */
import type { Gpu } from '../gpu/device';
import type { AdamHyper } from '../gpu/ops';
import type { KernelPlan } from '../gpu/plan';
import type { TuneCache } from '../gpu/tuner';
import { autotunePlan, type AutotuneResult } from './autotune';
import { decodeCheckpoint, type CheckpointData } from './checkpoint';
import { arenaLayout, sameSizes, sizesName, type VaeSizes } from './graph';
import {
  AUTOTUNE_SKIPPED_ON_RESUME,
  autotuneRuns,
  decideResume,
  differenceWarnings,
  openingPlan,
  type ResumeDecision,
} from './resume';
import { adamAt, STEPS_PER_SUBMIT } from './settings';
import { Trainer } from './trainer';
import { uploadImages, VaeModel } from './vae';

/** Images as bytes (count·D, 4 pixels per u32 on the GPU) and, for a conditional model, one class per image. */
export interface ModelImages {
  pixels: Uint8Array;
  count: number;
  labels?: ArrayLike<number>;
}

/** What the model trains with. β and the warm-up, when absent, are a checkpoint's (else 1 and 0). */
export interface ModelJob {
  batchSize: number;
  seed: number;
  lr: number;
  /** Adam's hyper-parameters in full (default: adamAt(lr)). */
  adam?: AdamHyper;
  beta?: number;
  klWarmup?: number;
}

/** Tune the plan at start-up (src/model/autotune.ts); skipped when a checkpoint records its plan. */
export interface AutotuneRequest {
  /** navigator.userAgent's major version (browserMajor), for the cache key; 0 outside a browser. */
  browserMajor: number;
  /** For the cache key outside a browser: the WebGPU implementation's full version (AutotuneJob.runtimeVersion). */
  runtimeVersion?: string;
  /** Where tuned plans are kept between starts (omitted: tune every time). */
  cache?: TuneCache;
  /** Called just before tuning starts (a host may say it takes a while). */
  onStart?: () => void;
}

export interface OpenRequest {
  sizes: VaeSizes;
  job: ModelJob;
  train: ModelImages;
  test: ModelImages;
  /**
   * A checkpoint to continue: its bytes (decoded against `sizes`; a mismatch throws the
   * decoder's SafetensorsError) or a checkpoint decoded already, of the same sizes.
   */
  checkpoint?: Uint8Array | CheckpointData;
  /** An image folder's class names, label 0 first: checked against a checkpoint's (resume.ts classNamesReason). */
  classNames?: readonly string[];
  /** The plan to build under when no checkpoint records one (default: the adapter's, Gpu.defaultPlan). */
  plan?: KernelPlan;
  autotune?: AutotuneRequest;
  /** The trainer's steps per submit (default STEPS_PER_SUBMIT). */
  stepsPerSubmit?: number;
}

export interface OpenedModel {
  model: VaeModel;
  trainer: Trainer;
  /** The plan its programs are built under (model.plan). */
  plan: KernelPlan;
  /** What the autotune did (null: not asked); `skipped` when the checkpoint's plan won. */
  tune: AutotuneResult | { from: 'skipped'; text: string } | null;
  /** The checkpoint's decision (resume.ts decideResume): its epoch, plan, objective and differences. */
  resumed: (ResumeDecision & { step: number }) | null;
  /** Lines a host shows: the skipped autotune, and a warning for each way the job differs from the checkpoint's run. */
  messages: string[];
}

/**
 * Opens a model on `gpu` (see the file comment). Throws ResumeError for a checkpoint that must
 * not be continued with these images, the decoder's SafetensorsError for one that does not fit
 * the sizes; what it made before a failure is released.
 */
export async function openModel(gpu: Gpu, request: OpenRequest): Promise<OpenedModel> {
  const { sizes, job } = request;
  const checkpoint = request.checkpoint && checkpointFor(sizes, request.checkpoint);
  const resumed = checkpoint
    ? {
        ...decideResume(checkpoint, {
          seed: job.seed,
          lr: job.lr,
          batchSize: job.batchSize,
          beta: job.beta,
          klWarmup: job.klWarmup,
          classNames: request.classNames,
        }),
        step: checkpoint.step,
      }
    : null;
  const messages = resumed ? differenceWarnings('the checkpoint', resumed.differences) : [];
  // The objective trained (and tuned) with: a checkpoint's unless the job gives its own.
  const objective = resumed
    ? { beta: resumed.beta, klWarmup: resumed.klWarmup }
    : { beta: job.beta, klWarmup: job.klWarmup };
  const made: GPUBuffer[] = [];
  try {
    return await gpu.collecting(made, async () => {
      let tune: OpenedModel['tune'] = null;
      let given = request.plan;
      const asked = request.autotune;
      if (asked && !autotuneRuns(true, resumed?.plan)) {
        tune = { from: 'skipped', text: AUTOTUNE_SKIPPED_ON_RESUME };
        messages.unshift(`autotune skipped: ${AUTOTUNE_SKIPPED_ON_RESUME}`);
      } else if (asked) {
        asked.onStart?.();
        tune = await autotunePlan(
          gpu,
          {
            sizes,
            batchSize: job.batchSize,
            seed: job.seed,
            lr: job.lr,
            objective,
            images: request.train.pixels,
            labels: request.train.labels,
            count: request.train.count,
            browserMajor: asked.browserMajor,
            runtimeVersion: asked.runtimeVersion,
            cache: asked.cache,
          },
          given ?? gpu.defaultPlan,
        );
        given = tune.plan;
      }
      const plan = openingPlan(resumed?.plan, given, gpu.defaultPlan);
      const labelsIf = (labels?: ArrayLike<number>) => (sizes.classes ? labels : undefined);
      const model = await VaeModel.create(gpu, {
        sizes,
        plan,
        seed: job.seed,
        batchSize: job.batchSize,
        adam: job.adam ?? adamAt(job.lr),
        ...objective,
        train: uploadImages(gpu, 'train', request.train.pixels, request.train.count, labelsIf(request.train.labels)),
        test: uploadImages(gpu, 'test', request.test.pixels, request.test.count, labelsIf(request.test.labels)),
      });
      if (checkpoint) model.importState(checkpoint);
      const trainer = new Trainer(model, { stepsPerSubmit: request.stepsPerSubmit ?? STEPS_PER_SUBMIT });
      made.length = 0; // opened: the model owns them now
      return { model, trainer, plan: model.plan, tune, resumed, messages };
    });
  } finally {
    for (const b of made) gpu.release(b);
  }
}

/** The checkpoint decoded against `sizes`, or a decoded one checked to be of them. */
function checkpointFor(sizes: VaeSizes, checkpoint: Uint8Array | CheckpointData): CheckpointData {
  if (checkpoint instanceof Uint8Array) return decodeCheckpoint(checkpoint, arenaLayout(sizes));
  if (!sameSizes(checkpoint.sizes, sizes)) {
    throw new Error(
      `the checkpoint is a ${sizesName(checkpoint.sizes)} model, and the model to open is ${sizesName(sizes)}`,
    );
  }
  return checkpoint;
}
