/**
 * The engine inside headless Chromium for `npm run train`: the same code the page runs,
 * driven by the Node CLI through puppeteer. Events go back through `window.vaeEvent`.
 */
import { Gpu } from '../gpu/device';
import { toBase64, fromBase64 } from '../io/base64';
import { decodeCheckpoint, encodeCheckpoint } from '../model/checkpoint';
import { Trainer } from '../model/trainer';
import { uploadImages, VaeModel } from '../model/vae';
import type { RunConfig, RunEvent } from './protocol';

declare global {
  interface Window {
    vaeEvent(event: RunEvent): Promise<void>;
    vaeRun(config: RunConfig): Promise<void>;
    vaeStop(): void;
    /** The run's GPU buffers now (for `npm run soak`); zeros before a run starts. */
    vaeMemory(): { liveBuffers: number; liveBytes: number };
  }
}

let stopRequested = false;
let current: Gpu | null = null;
window.vaeStop = () => { stopRequested = true; };
window.vaeMemory = () => ({ liveBuffers: current?.liveBuffers ?? 0, liveBytes: current?.liveBytes ?? 0 });

async function fetchBytes(url: string): Promise<Uint8Array> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`fetching ${url}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

window.vaeRun = async (c: RunConfig) => {
  const gpu = (current = await Gpu.create());
  const [trainPixels, testPixels] = await Promise.all([fetchBytes(c.trainUrl), fetchBytes(c.testUrl)]);
  const train = uploadImages(gpu, 'train', trainPixels, c.trainCount);
  const test = uploadImages(gpu, 'test', testPixels, c.testCount);
  const model = await VaeModel.create(gpu, {
    sizes: { D: c.pixels, hidden: [c.hidden], L: c.latent },
    batchSize: c.batchSize,
    seed: c.seed,
    adam: { lr: c.lr, beta1: 0.9, beta2: 0.999, eps: 1e-8 },
  }, train, test);
  if (c.resume) model.importState(decodeCheckpoint(fromBase64(c.resume), model.layout));
  const trainer = new Trainer(model, { stepsPerSubmit: c.stepsPerSubmit });
  for (let epoch = c.firstEpoch; epoch <= c.epochs; epoch++) {
    const result = await trainer.trainEpoch(
      epoch,
      (l) => void window.vaeEvent({ type: 'losses', epoch, firstBatch: l.firstBatch, losses: [...l.losses] }),
      () => stopRequested,
    );
    if (!result.completed) {
      await window.vaeEvent({ type: 'stopped', epoch });
      break;
    }
    await window.vaeEvent({ type: 'epoch', epoch, averageLoss: result.averageLoss, seconds: result.seconds });
    const t = await trainer.testPass(epoch);
    await window.vaeEvent({ type: 'test', epoch, averageLoss: t.averageLoss, seconds: t.seconds });
    const images = await trainer.images();
    await window.vaeEvent({
      type: 'images', epoch,
      recon: toBase64(new Uint8Array(images.recon.buffer)), samples: toBase64(new Uint8Array(images.samples.buffer)),
    });
    const state = await model.exportState();
    const bytes = encodeCheckpoint(model.layout, { ...state, metadata: { epoch: String(epoch), seed: String(c.seed), lr: String(c.lr), dataset: c.dataset } });
    await window.vaeEvent({ type: 'checkpoint', epoch, data: toBase64(bytes) });
    if (stopRequested) {
      await window.vaeEvent({ type: 'stopped', epoch });
      break;
    }
  }
  await window.vaeEvent({ type: 'done', counters: trainer.counters });
  model.destroy();
};
