/**
 * The one training driver: every host (the CLI's headless page, the training page, the
 * library's `fit`, the bench) runs its epochs through `runTraining`, and none keeps a loop of
 * its own. A run is: for each epoch, train it (losses stream back as they arrive), then — if
 * it completed — the test pass, the images and the checkpoint the host asked for, reported in
 * one event. Pause, stop and abort act between GPU submits through a `RunGate`.
 *
 * The test pass's noise is keyed by the epoch (`Trainer.testPass(epoch)`), so a resumed run
 * reports the same test losses as an uninterrupted one, whichever host ran it.
 */
import { encodeRunCheckpoint, type RunMetadata } from './checkpoint';
import type { BatchLosses, Trainer } from './trainer';

/** Where a run is: `stopping` lasts until the steps already queued are done. */
export type RunState = 'running' | 'paused' | 'stopping' | 'finished';

/**
 * Pause, resume and stop for a run, polled by the trainer between submits. `extraStop`
 * (an aborted signal, a destroyed model) ends a run too, paused or not.
 */
export class RunGate {
  private current: RunState = 'running';
  private wake: (() => void) | null = null;

  constructor(
    private readonly extraStop: () => boolean = () => false,
    private readonly onPaused?: (paused: boolean) => void,
  ) {}

  get state(): RunState {
    return this.current;
  }

  pause(): void {
    if (this.current === 'running') this.current = 'paused';
  }

  resume(): void {
    if (this.current === 'paused') {
      this.current = 'running';
      this.wakeUp();
    }
  }

  stop(): void {
    if (this.current === 'running' || this.current === 'paused') {
      this.current = 'stopping';
      this.wakeUp();
    }
  }

  finish(): void {
    this.current = 'finished';
  }

  /** True once the run should end. */
  get ending(): boolean {
    return this.current === 'stopping' || this.extraStop();
  }

  /** Between submits: waits while paused, then says whether to end. */
  async gate(): Promise<boolean> {
    if (this.current === 'paused' && !this.ending) {
      this.onPaused?.(true);
      while (this.current === 'paused' && !this.ending)
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
      this.onPaused?.(false);
    }
    return this.ending;
  }

  /** Wakes a paused gate (resume, stop, and whatever made `extraStop` true). */
  wakeUp(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }
}

export interface RunPlan {
  /** The first epoch to train (1-based, counted over the model's life: it seeds the shuffle). */
  firstEpoch: number;
  /** The last epoch to train; a function is read before each epoch (the page lets it change). */
  lastEpoch: number | (() => number);
  /** Evaluate the test set after each completed epoch. */
  test: boolean;
  /** Read back the reconstruction and sample images after each completed epoch (after the test pass, whose batch they show). */
  images: boolean;
  /** Write a checkpoint after each completed epoch, with this run's metadata. */
  checkpoint?: Omit<RunMetadata, 'epoch' | 'plan'>;
}

/** What one epoch produced. */
export interface EpochReport {
  epoch: number;
  /** Summed batch losses ÷ images trained: the reference's "Average loss". */
  trainLoss: number;
  /** The objective optimized (recon + β_t·KL), when it is not the loss (β ≠ 1, a warm-up, or the Gaussian). */
  trainObjective?: number;
  /** Batches trained (fewer than an epoch's when the run was stopped in it). */
  batches: number;
  /** Wall time of the epoch's training, in seconds. */
  seconds: number;
  /** False when the run was stopped during the epoch; such an epoch has no test pass, images or checkpoint. */
  completed: boolean;
  test?: { loss: number; seconds: number; objective?: number };
  images?: { recon: Float32Array; samples: Float32Array };
  checkpoint?: Uint8Array;
}

export interface RunEvents {
  /** Before each epoch starts training. */
  onEpochStart?(epoch: number, lastEpoch: number): void;
  /** Batch losses, in order, as they come back from the GPU. */
  onLosses?(losses: BatchLosses): void;
  /** After each epoch (and its test pass, images and checkpoint); a promise is awaited before the next. */
  onEpoch?(report: EpochReport): void | Promise<void>;
}

export interface RunResult {
  /** One report per epoch begun; the last one incomplete when the run was stopped in it. */
  epochs: EpochReport[];
  /** True when the gate ended the run before its last epoch was complete. */
  stopped: boolean;
}

export async function runTraining(
  trainer: Trainer,
  plan: RunPlan,
  gate: RunGate,
  events: RunEvents = {},
): Promise<RunResult> {
  const { model } = trainer;
  const last = () => (typeof plan.lastEpoch === 'function' ? plan.lastEpoch() : plan.lastEpoch);
  const epochs: EpochReport[] = [];
  let stopped = false;
  for (let epoch = plan.firstEpoch; epoch <= last(); epoch++) {
    if (await gate.gate()) {
      stopped = true;
      break;
    }
    events.onEpochStart?.(epoch, last());
    const result = await trainer.trainEpoch(epoch, events.onLosses, () => gate.gate());
    if (result.batches === 0) {
      // stopped before the epoch's first step: it never began
      stopped = true;
      break;
    }
    const report: EpochReport = {
      epoch,
      trainLoss: result.averageLoss,
      batches: result.batches,
      seconds: result.seconds,
      completed: result.completed,
    };
    if (result.averageObjective !== undefined) report.trainObjective = result.averageObjective;
    if (result.completed) {
      if (plan.test) {
        const t = await trainer.testPass(epoch);
        report.test = { loss: t.averageLoss, seconds: t.seconds };
        if (t.averageObjective !== undefined) report.test.objective = t.averageObjective;
      }
      if (plan.images) report.images = await trainer.images();
      if (plan.checkpoint) {
        report.checkpoint = encodeRunCheckpoint(model.layout, await model.exportState(), {
          ...plan.checkpoint,
          epoch,
          plan: model.plan,
        });
      }
    }
    epochs.push(report);
    await events.onEpoch?.(report);
    if (!result.completed) {
      stopped = true;
      break;
    }
  }
  return { epochs, stopped: stopped || gate.ending };
}
