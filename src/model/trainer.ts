/**
 * Runs epochs: uploads the epoch's shuffle, records training steps into submits of
 * `stepsPerSubmit` steps, and reads the per-batch losses back asynchronously. The only time
 * the CPU waits for the GPU inside an epoch is for a loss readback, and then only when more
 * than `maxInFlight` submits are queued — which keeps progress reports current and lets a
 * pause or stop take effect within a few steps.
 */
import { shuffled } from './random';
import { RECON_COUNT, type VaeModel } from './vae';

export interface TrainerOptions {
  /** Training steps recorded into one submit (default 16). */
  stepsPerSubmit?: number;
  /** Submits queued before waiting for the oldest one's losses (default 2). */
  maxInFlight?: number;
}

export interface BatchLosses {
  epoch: number;
  /** Index of the first batch these losses belong to. */
  firstBatch: number;
  /** The summed (not averaged) loss of each batch, as the reference's `loss.item()`. */
  losses: Float32Array;
  /** With β ≠ 1, a KL warm-up or the Gaussian: recon + β_t·KL of each batch, what is optimized. */
  objectives?: Float32Array;
}

export interface EpochResult {
  epoch: number;
  /** Sum of the batch losses ÷ images: the reference's "Average loss". */
  averageLoss: number;
  /** The same for the objective (recon + β_t·KL), when it is not the loss. */
  averageObjective?: number;
  batches: number;
  seconds: number;
  /** False when `shouldStop` ended the epoch early. */
  completed: boolean;
}

/** A non-finite batch loss: the run stops there and writes nothing after it. */
export class DivergenceError extends Error {
  constructor(
    readonly epoch: number,
    readonly batch: number,
    readonly loss: number,
    lr: number,
  ) {
    super(
      `the loss became ${loss} at epoch ${epoch}, batch ${batch}: training diverged. The learning rate ` +
        `(${lr}) is the likely cause; try a smaller one (the reference uses 1e-3).`,
    );
    this.name = 'DivergenceError';
  }
}

export class Trainer {
  /** Training steps recorded into one submit (the library sets it per fit). */
  stepsPerSubmit: number;
  readonly maxInFlight: number;

  constructor(
    readonly model: VaeModel,
    options: TrainerOptions = {},
  ) {
    this.stepsPerSubmit = options.stepsPerSubmit ?? 16;
    this.maxInFlight = options.maxInFlight ?? 2;
  }

  /**
   * Trains one epoch (1-based `epoch` seeds its shuffle). `onLosses` receives the batch losses
   * in order as they come back; `shouldStop` is polled between submits. It may return a
   * promise, which is awaited: a host pauses training by settling it only on resume or stop.
   */
  async trainEpoch(
    epoch: number,
    onLosses?: (l: BatchLosses) => void,
    shouldStop?: () => boolean | Promise<boolean>,
  ): Promise<EpochResult> {
    const { model } = this;
    const { gpu } = model;
    const started = performance.now();
    const n = model.train.count;
    const perm = shuffled(n, model.config.seed, epoch);
    gpu.write(model.train.order, perm);
    gpu.write(model.trainState, new Uint32Array([0]), 4); // batch index ← 0; t keeps counting

    const batches = model.trainBatches;
    const pending: Promise<void>[] = [];
    let lossSum = 0;
    let objectiveSum = 0;
    let done = 0;
    let diverged: DivergenceError | null = null;
    try {
      for (let first = 0; first < batches; first += this.stepsPerSubmit) {
        if (diverged) break;
        if (await shouldStop?.()) break;
        gpu.assertAlive();
        const last = Math.min(batches, first + this.stepsPerSubmit);
        const dispatches = [];
        for (let b = first; b < last; b++) dispatches.push(...model.trainStep(model.rowsOf(b, n)));
        gpu.run(dispatches, `epoch ${epoch} steps ${first}-${last - 1}`);
        const objective = model.trainObjective;
        pending.push(
          Promise.all([
            gpu.readFloats(model.trainLoss, first, last - first),
            objective ? gpu.readFloats(objective, first, last - first) : undefined,
          ]).then(([losses, objectives]) => {
            const bad = losses.findIndex((l) => !Number.isFinite(l));
            if (bad >= 0) diverged ??= new DivergenceError(epoch, first + bad, losses[bad], model.config.adam.lr);
            for (const l of losses) lossSum += l;
            for (const o of objectives ?? []) objectiveSum += o;
            done = last;
            onLosses?.(
              objectives ? { epoch, firstBatch: first, losses, objectives } : { epoch, firstBatch: first, losses },
            );
          }),
        );
        if (pending.length > this.maxInFlight) await pending.shift();
      }
    } catch (e) {
      await Promise.allSettled(pending); // nothing left to reject unobserved
      throw e;
    }
    await Promise.all(pending);
    if (diverged) throw diverged;
    const images = Math.min(n, done * model.config.batchSize);
    return {
      epoch,
      averageLoss: lossSum / images,
      ...(model.trainObjective ? { averageObjective: objectiveSum / images } : {}),
      batches: done,
      seconds: (performance.now() - started) / 1000,
      completed: done === batches,
    };
  }

  /**
   * The reference's test(): the average loss over the test set, with z sampled as in
   * training. The draws are keyed by `epoch`, so a resumed run evaluates exactly as an
   * uninterrupted one. The first batch's first RECON_COUNT inputs and reconstructions are kept
   * in `model.reconInputs` / `reconOutputs` for `images()`.
   */
  async testPass(epoch = 0): Promise<{ averageLoss: number; averageObjective?: number; seconds: number }> {
    const { model } = this;
    const { gpu } = model;
    const started = performance.now();
    const n = model.test.count;
    const D = model.config.sizes.D;
    // The first batch holds min(batch size, n) images: a batch smaller than RECON_COUNT keeps what there is.
    const keep = Math.min(RECON_COUNT, model.rowsOf(0, n)) * D * 4;
    gpu.write(model.evalState, new Uint32Array([epoch * model.testBatches, 0]));
    const encoder = gpu.device.createCommandEncoder({ label: 'test pass' });
    gpu.encode(encoder, model.evalStep(model.rowsOf(0, n)), 'test batch 0');
    encoder.copyBufferToBuffer(model.act.x, 0, model.reconInputs, 0, keep);
    encoder.copyBufferToBuffer(model.act.logits, 0, model.reconLogits, 0, keep);
    const rest = [];
    for (let b = 1; b < model.testBatches; b++) rest.push(...model.evalStep(model.rowsOf(b, n)));
    rest.push(...model.reconSigmoid());
    gpu.encode(encoder, rest, 'test batches');
    gpu.submit([encoder.finish()]); // through the runtime, which counts it
    const losses = await gpu.readFloats(model.testLoss, 0, model.testBatches);
    let sum = 0;
    for (const l of losses) sum += l;
    // The test objective uses β itself: the evaluation state counts test batches, not Adam steps.
    const objectives = model.testObjective
      ? await gpu.readFloats(model.testObjective, 0, model.testBatches)
      : undefined;
    const objective = objectives?.reduce((a, b) => a + b, 0);
    return {
      averageLoss: sum / n,
      ...(objective !== undefined ? { averageObjective: objective / n } : {}),
      seconds: (performance.now() - started) / 1000,
    };
  }

  /**
   * The last test pass's inputs above their reconstructions, (2·RECON_COUNT, D), and the
   * decodes of the fixed prior draw, (SAMPLE_COUNT, D).
   */
  async images(): Promise<{ recon: Float32Array; samples: Float32Array }> {
    const { model } = this;
    const { gpu } = model;
    gpu.run(model.sampleProgram(), 'samples');
    const [inputs, outputs, samples] = await Promise.all([
      gpu.readFloats(model.reconInputs),
      gpu.readFloats(model.reconOutputs),
      gpu.readFloats(model.samples),
    ]);
    const recon = new Float32Array(inputs.length + outputs.length);
    recon.set(inputs);
    recon.set(outputs, inputs.length);
    return { recon, samples };
  }
}
