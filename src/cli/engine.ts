/**
 * One `npm run train` run on a GPU runtime: opens the model (src/model/open.ts), trains it with
 * the engine's driver (src/model/driver.ts) and reports every result as a RunEvent. The headless
 * page (src/cli/headless.ts) calls it inside Chromium, and the CLI's Node runtime calls it on
 * Dawn's WebGPU: the same code, so both write the same log, images, metrics and checkpoints.
 */
import type { Gpu } from '../gpu/device';
import type { TuneCache } from '../gpu/tuner';
import { autotuneLines } from '../model/autotune';
import { toBase64, fromBase64 } from '../io/base64';
import { runTraining, type RunGate } from '../model/driver';
import type { VaeSizes } from '../model/graph';
import { openModel } from '../model/open';
import { specSizes } from '../model/spec';
import type { EngineRun, RunEvent } from './protocol';

/** The run's images (and a conditional VAE's labels), as bytes. */
export interface EngineData {
  trainPixels: Uint8Array;
  testPixels: Uint8Array;
  trainLabels?: Uint8Array;
  testLabels?: Uint8Array;
}

export interface EngineHost {
  /** Where the events go; awaited except for the losses, which must not hold up the GPU. */
  emit(event: RunEvent): Promise<void>;
  /**
   * --autotune: the host's cache of tuned plans, its browser's major version (0 outside a browser)
   * and, outside a browser, the WebGPU implementation's full version for the cache key.
   */
  autotune?: { browserMajor: number; runtimeVersion?: string; cache: TuneCache };
}

export async function runEngine(
  gpu: Gpu,
  c: EngineRun,
  data: EngineData,
  host: EngineHost,
  gate: RunGate,
): Promise<void> {
  const sizes: VaeSizes = c.model
    ? specSizes(c.model)
    : {
        D: c.pixels,
        hidden: c.hidden,
        L: c.latent,
        ...(c.classes ? { classes: c.classes } : {}),
        ...(c.likelihood ? { likelihood: c.likelihood } : {}),
      };
  // The Node side decided the resume (and printed its warnings) by the same rules; the opener keeps the checkpoint's plan.
  const { model, trainer, tune } = await openModel(gpu, {
    sizes,
    job: { batchSize: c.batchSize, seed: c.seed, lr: c.lr, beta: c.beta, klWarmup: c.klWarmup },
    train: { pixels: data.trainPixels, count: c.trainCount, labels: data.trainLabels },
    test: { pixels: data.testPixels, count: c.testCount, labels: data.testLabels },
    checkpoint: c.resume ? fromBase64(c.resume) : undefined,
    classNames: c.classNames,
    stepsPerSubmit: c.stepsPerSubmit,
    autotune: c.autotune ? host.autotune : undefined,
  });
  if (tune)
    await host.emit(
      tune.from === 'skipped'
        ? { type: 'tune', from: 'skipped', text: tune.text }
        : { type: 'tune', from: tune.from, text: autotuneLines(tune), key: tune.key },
    );
  // The run's traffic as the runtime measured it, from here on: the datasets, the initial
  // weights and a resumed checkpoint are set-up, not the run.
  const before = gpu.counters();
  const result = await runTraining(
    trainer,
    {
      firstEpoch: c.firstEpoch,
      lastEpoch: c.epochs,
      test: true,
      images: true,
      checkpoint: {
        seed: c.seed,
        lr: c.lr,
        batchSize: c.batchSize,
        dataset: c.dataset,
        beta: c.beta,
        klWarmup: c.klWarmup,
        ...(c.images ? { imageSize: c.images.size, fit: c.images.fit } : {}),
        ...(c.channels !== undefined && c.channels !== 1 ? { channels: c.channels } : {}),
        ...(c.classNames ? { classNames: c.classNames } : {}),
      },
    },
    gate,
    {
      onLosses: (l) =>
        void host.emit({
          type: 'losses',
          epoch: l.epoch,
          firstBatch: l.firstBatch,
          losses: [...l.losses],
          ...(l.objectives ? { objectives: [...l.objectives] } : {}),
        }),
      async onEpoch(r) {
        if (!r.completed) return;
        await host.emit({
          type: 'epoch',
          epoch: r.epoch,
          averageLoss: r.trainLoss,
          seconds: r.seconds,
          averageObjective: r.trainObjective,
        });
        await host.emit({
          type: 'test',
          epoch: r.epoch,
          averageLoss: r.test!.loss,
          seconds: r.test!.seconds,
          averageObjective: r.test!.objective,
        });
        const { recon, samples } = r.images!;
        await host.emit({
          type: 'images',
          epoch: r.epoch,
          recon: toBase64(new Uint8Array(recon.buffer)),
          samples: toBase64(new Uint8Array(samples.buffer)),
        });
        await host.emit({ type: 'checkpoint', epoch: r.epoch, data: toBase64(r.checkpoint!) });
      },
    },
  );
  if (result.stopped) await host.emit({ type: 'stopped', epoch: result.epochs.at(-1)?.epoch ?? c.firstEpoch });
  const run = gpu.countersSince(before);
  await host.emit({
    type: 'done',
    counters: {
      dispatchesPerStep: model.trainStep(model.config.batchSize).length, // a fact of the program, not a count
      submits: run.submits,
      bytesUploaded: run.bytesWritten,
      bytesReadBack: run.bytesRead,
    },
  });
  model.destroy();
}
