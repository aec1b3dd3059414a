/**
 * The engine inside headless Chromium for `npm run train`: the same code the page runs,
 * driven by the Node CLI through puppeteer. Events go back through `window.vaeEvent`.
 */
import { decodeImageFolder } from '../data/image-decode';
import { Gpu } from '../gpu/device';
import { autotuneLines, browserMajor } from '../model/autotune';
import { toBase64, fromBase64 } from '../io/base64';
import { RunGate, runTraining } from '../model/driver';
import type { VaeSizes } from '../model/graph';
import { openModel } from '../model/open';
import type { ImageFolderReply, ImageFolderRequest, RunConfig, RunEvent } from './protocol';

declare global {
  interface Window {
    vaeEvent(event: RunEvent): Promise<void>;
    vaeRun(config: RunConfig): Promise<void>;
    vaeStop(): void;
    /** `--images DIR`: decodes the folder's files with the page's own image decoders. */
    vaeDecodeImages(request: ImageFolderRequest): Promise<ImageFolderReply>;
    /** The Node side's tune cache (src/node/tune-cache.ts), exposed for --autotune. */
    vaeTuneCacheGet(key: string): Promise<string | null>;
    vaeTuneCachePut(key: string, text: string): Promise<void>;
    /** The run's GPU buffers now (for `npm run soak`); zeros before a run starts. */
    vaeMemory(): { liveBuffers: number; liveBytes: number };
  }
}

const gate = new RunGate();
let current: Gpu | null = null;
window.vaeStop = () => gate.stop();
window.vaeMemory = () => ({ liveBuffers: current?.liveBuffers ?? 0, liveBytes: current?.liveBytes ?? 0 });

async function fetchBytes(url: string): Promise<Uint8Array> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`fetching ${url}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

window.vaeDecodeImages = async (r: ImageFolderRequest) => {
  const all = await fetchBytes(r.url);
  const files = r.files.map((f) => ({ path: f.path, bytes: all.subarray(f.offset, f.offset + f.length) }));
  const d = await decodeImageFolder(files, { size: r.size, fit: r.fit }, r.where, r.skipped);
  const split = (s: typeof d.train) => ({ count: s.count, pixels: toBase64(s.pixels), labels: toBase64(s.labels) });
  return { layout: d.layout, classNames: d.classNames, train: split(d.train), test: split(d.test), skipped: d.skipped };
};

window.vaeRun = async (c: RunConfig) => {
  const gpu = (current = await Gpu.create());
  const [trainPixels, testPixels] = await Promise.all([fetchBytes(c.trainUrl), fetchBytes(c.testUrl)]);
  // A conditional VAE's labels (checked by the CLI), uploaded once like the pixels.
  const [trainLabels, testLabels] = c.classes
    ? await Promise.all([fetchBytes(c.trainLabelsUrl!), fetchBytes(c.testLabelsUrl!)])
    : [undefined, undefined];
  const sizes: VaeSizes = {
    D: c.pixels, hidden: c.hidden, L: c.latent,
    ...(c.classes ? { classes: c.classes } : {}), ...(c.likelihood ? { likelihood: c.likelihood } : {}),
  };
  // The Node side decided the resume (and printed its warnings) by the same rules; the opener keeps the checkpoint's plan.
  const { model, trainer, tune } = await openModel(gpu, {
    sizes, job: { batchSize: c.batchSize, seed: c.seed, lr: c.lr, beta: c.beta, klWarmup: c.klWarmup },
    train: { pixels: trainPixels, count: c.trainCount, labels: trainLabels }, test: { pixels: testPixels, count: c.testCount, labels: testLabels },
    checkpoint: c.resume ? fromBase64(c.resume) : undefined, classNames: c.classNames, stepsPerSubmit: c.stepsPerSubmit,
    autotune: c.autotune ? {
      browserMajor: browserMajor(navigator.userAgent),
      cache: { get: async (key) => (await window.vaeTuneCacheGet(key)) ?? undefined, put: (key, text) => window.vaeTuneCachePut(key, text) },
    } : undefined,
  });
  if (tune) await window.vaeEvent(tune.from === 'skipped' ? { type: 'tune', from: 'skipped', text: tune.text } : { type: 'tune', from: tune.from, text: autotuneLines(tune), key: tune.key });
  // The run's traffic as the runtime measured it, from here on: the datasets, the initial
  // weights and a resumed checkpoint are set-up, not the run.
  const before = gpu.counters();
  const result = await runTraining(trainer, {
    firstEpoch: c.firstEpoch, lastEpoch: c.epochs, test: true, images: true,
    checkpoint: {
      seed: c.seed, lr: c.lr, batchSize: c.batchSize, dataset: c.dataset, beta: c.beta, klWarmup: c.klWarmup,
      ...(c.images ? { imageSize: c.images.size, fit: c.images.fit } : {}), ...(c.classNames ? { classNames: c.classNames } : {}),
    },
  }, gate, {
    onLosses: (l) => void window.vaeEvent({
      type: 'losses', epoch: l.epoch, firstBatch: l.firstBatch, losses: [...l.losses], ...(l.objectives ? { objectives: [...l.objectives] } : {}),
    }),
    async onEpoch(r) {
      if (!r.completed) return;
      await window.vaeEvent({ type: 'epoch', epoch: r.epoch, averageLoss: r.trainLoss, seconds: r.seconds, averageObjective: r.trainObjective });
      await window.vaeEvent({ type: 'test', epoch: r.epoch, averageLoss: r.test!.loss, seconds: r.test!.seconds, averageObjective: r.test!.objective });
      const { recon, samples } = r.images!;
      await window.vaeEvent({
        type: 'images', epoch: r.epoch,
        recon: toBase64(new Uint8Array(recon.buffer)), samples: toBase64(new Uint8Array(samples.buffer)),
      });
      await window.vaeEvent({ type: 'checkpoint', epoch: r.epoch, data: toBase64(r.checkpoint!) });
    },
  });
  if (result.stopped) await window.vaeEvent({ type: 'stopped', epoch: result.epochs.at(-1)?.epoch ?? c.firstEpoch });
  const run = gpu.countersSince(before);
  await window.vaeEvent({
    type: 'done',
    counters: {
      dispatchesPerStep: model.trainStep(model.config.batchSize).length, // a fact of the program, not a count
      submits: run.submits,
      bytesUploaded: run.bytesWritten,
      bytesReadBack: run.bytesRead,
    },
  });
  model.destroy();
};
