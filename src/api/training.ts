/**
 * The handle `VAE.fit` returns: a promise of the result that can also pause, resume and stop
 * the run. Control takes effect between GPU submits, i.e. every `stepsPerSubmit` steps: the
 * steps already queued on the GPU finish (their losses are still reported), then the loop
 * waits (pause) or ends (stop, abort). The weights are always those after a whole step.
 */
import { RunGate, type EpochReport, type RunState } from '../model/driver';
import type { ImageArray } from './inputs';

/** One training step's loss, reported as the losses come back from the GPU (in order, a few steps behind). */
export interface StepEvent {
  /** 1-based epoch number, counted over the model's life (it seeds the epoch's shuffle). */
  epoch: number;
  /** 0-based batch index within the epoch. */
  batch: number;
  /** Batches in an epoch. */
  batches: number;
  /** Adam steps taken by the model, this one included (PyTorch's optimizer `step`). */
  step: number;
  /** The batch's loss divided by its number of images, as the reference prints `loss.item() / len(data)`. */
  loss: number;
  /** With β ≠ 1, a KL warm-up or the Gaussian likelihood: the objective optimized, recon + β_t·KL, per image. */
  objective?: number;
}

/** An epoch's summary. */
export interface EpochEvent {
  /** 1-based epoch number, counted over the model's life. */
  epoch: number;
  /** Summed loss over the epoch's batches ÷ images trained on: the reference's "Average loss". */
  trainLoss: number;
  /** The reference's "Test set loss" on `testImages` after the epoch (z sampled), when given. */
  testLoss?: number;
  /** The objective (recon + β_t·KL) per image, when it is not the loss: over the epoch, and on `testImages` at β. */
  trainObjective?: number;
  testObjective?: number;
  /** Steps taken in this epoch. */
  steps: number;
  /** Wall time of the epoch's training, in seconds (the test pass excluded). */
  seconds: number;
  /** False when the run was stopped or aborted during the epoch. */
  completed: boolean;
}

/** The driver's report of an epoch as the caller sees it (the objectives only when the run had them). */
export function epochEvent(r: EpochReport): EpochEvent {
  return {
    epoch: r.epoch,
    trainLoss: r.trainLoss,
    testLoss: r.test?.loss,
    steps: r.batches,
    seconds: r.seconds,
    completed: r.completed,
    ...(r.trainObjective !== undefined ? { trainObjective: r.trainObjective } : {}),
    ...(r.test?.objective !== undefined ? { testObjective: r.test.objective } : {}),
  };
}

/** What a finished `fit` resolves with. */
export interface FitResult {
  /** One entry per epoch begun, the last one possibly incomplete. */
  epochs: EpochEvent[];
  /** True when `stop()` ended the run before its last epoch was complete. */
  stopped: boolean;
  /** Adam steps taken by the model in total after the run. */
  step: number;
}

/** Options of `VAE.fit`. Defaults are the PyTorch example's. */
export interface FitOptions {
  /** Epochs to train (default 1). Epoch numbers continue from earlier runs and checkpoints. */
  epochs?: number;
  /** Images per step (default 128; a smaller last batch is kept, like DataLoader with drop_last=False). */
  batchSize?: number;
  /** Adam learning rate (default 1e-3). */
  lr?: number;
  /** Adam (beta1, beta2) (default [0.9, 0.999]). */
  betas?: readonly [number, number];
  /** Adam epsilon (default 1e-8). */
  eps?: number;
  /**
   * β on the KL term (0 to 1000): the objective is recon + β·KL. The step and epoch events then
   * carry the objective beside the loss. Default: the previous fit's β, or the loaded
   * checkpoint's; 1 (the reference's loss) for a new model.
   */
  beta?: number;
  /**
   * Adam steps of a linear KL warm-up (a whole number, 0 to 1,000,000): step s (1-based, over
   * the model's life) uses β·min(1, s/klWarmup). Default: the previous fit's, or the loaded
   * checkpoint's; 0 (none) for a new model.
   */
  klWarmup?: number;
  /** Images to compute the test loss on after each epoch (reported in {@link EpochEvent.testLoss}). */
  testImages?: ImageArray;
  /** A conditional model's class of each training image (integers 0 … classes − 1), in the images' order. */
  labels?: ArrayLike<number>;
  /** A conditional model's class of each test image. */
  testLabels?: ArrayLike<number>;
  /** Aborting stops training between submits; `fit` then rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Called for every step's loss as it comes back from the GPU. */
  onStep?: (event: StepEvent) => void;
  /** Called after every epoch (and its test pass); a returned promise is awaited before the next epoch. */
  onEpoch?: (event: EpochEvent) => void | Promise<void>;
  /**
   * Steps recorded into one GPU submit (default 16, as every host): larger is slightly faster,
   * smaller makes pause and stop (which act between submits) and loss reports more immediate.
   */
  stepsPerSubmit?: number;
}

/** Where a training run is: `stopping` lasts until the queued steps are done. */
export type TrainingState = RunState;

/**
 * A training run: `await` it for the {@link FitResult}, or control it while it runs.
 * Pause, resume and stop act between GPU submits (every `stepsPerSubmit` steps).
 */
export interface TrainingRun extends PromiseLike<FitResult> {
  /** Where the run is now. */
  readonly state: TrainingState;
  /** The same promise as awaiting the run itself. */
  readonly finished: Promise<FitResult>;
  /** Holds training after the steps already queued; the model can be used (encode, sample, save …) meanwhile. */
  pause(): void;
  /** Continues a paused run. */
  resume(): void;
  /** Ends the run after the steps already queued; it then resolves with `stopped: true`. */
  stop(): void;
  /** Attaches a rejection handler, as on a promise. */
  catch<T = never>(onRejected?: ((reason: unknown) => T | PromiseLike<T>) | null): Promise<FitResult | T>;
}

/**
 * The handle's side of a run: a promise of its result, with the engine's RunGate (the one
 * pause/stop every host uses) behind pause, resume and stop. An aborted `signal` ends it too.
 */
export class RunControl implements TrainingRun {
  /** The gate the training loop polls; `extraStop` (the model was destroyed) is set by the model. */
  readonly gate: RunGate;
  /** The training loop's promise (see {@link TrainingRun.finished}). */
  readonly finished: Promise<FitResult>;
  extraStop: () => boolean = () => false;

  /** Starts `body` (the training loop) on a later tick; `signal` wakes a paused run when it aborts. */
  constructor(signal: AbortSignal | undefined, body: (control: RunControl) => Promise<FitResult>) {
    this.gate = new RunGate(() => !!signal?.aborted || this.extraStop());
    const onAbort = () => this.gate.wakeUp();
    signal?.addEventListener('abort', onAbort, { once: true });
    // Start on a later tick, so the caller holds the handle before any callback runs.
    this.finished = Promise.resolve()
      .then(() => body(this))
      .finally(() => {
        this.gate.finish();
        signal?.removeEventListener('abort', onAbort);
      });
  }

  /** See {@link TrainingRun.state}. */
  get state(): TrainingState {
    return this.gate.state;
  }

  /** See {@link TrainingRun.pause}. */
  pause(): void {
    this.gate.pause();
  }

  /** See {@link TrainingRun.resume}. */
  resume(): void {
    this.gate.resume();
  }

  /** See {@link TrainingRun.stop}. */
  stop(): void {
    this.gate.stop();
  }

  /** Awaiting the run awaits {@link RunControl.finished}. */
  then<A = FitResult, B = never>(
    onFulfilled?: ((value: FitResult) => A | PromiseLike<A>) | null,
    onRejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B> {
    return this.finished.then(onFulfilled, onRejected);
  }

  /** See {@link TrainingRun.catch}. */
  catch<T = never>(onRejected?: ((reason: unknown) => T | PromiseLike<T>) | null): Promise<FitResult | T> {
    return this.finished.catch(onRejected);
  }
}
