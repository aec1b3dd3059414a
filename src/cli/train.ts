/**
 * `npm run train`: trains the VAE headlessly. Node reads and checks the data, launches
 * Chromium with WebGPU, runs the engine inside the page (src/cli/headless.ts), prints the
 * reference program's log line for line, and writes the images and checkpoints it produces.
 *
 * Like llm.c's main, in order: the options (options.ts), the run folder (run-folder.ts), the
 * data (data.ts), the resume decision (resume.ts), the loop in the page, and the sink its
 * events go to (sink.ts).
 */
import { resolve } from 'node:path';
import type { Page } from 'puppeteer';
import { LOST_DEVICE_ADVICE } from '../gpu/device';
import { sizesName } from '../model/graph';
import { SAMPLES_PER_CLASS } from '../model/vae';
import { describeAdapter, launchBrowser, reportAdapter } from '../node/browser';
import { UsageError } from '../node/options';
import { ENGINE_FOLDERS, startServer } from '../node/server';
import { printableConsole } from '../node/terminal';
import { fileCache, tuneCacheDir } from '../node/tune-cache';
import { loadRunData, type RunData } from './data';
import { HELP, parseOptions, type TrainOptions } from './options';
import type { RunConfig } from './protocol';
import { decideResume, type ResumeDecision } from './resume';
import { checkOutFolder, takeOutFolder } from './run-folder';
import { RunSink } from './sink';

export { parseOptions, type TrainOptions } from './options';
export { RUN_FILES } from './run-folder';

/** Errors thrown in the page arrive wrapped by puppeteer ("Error: …"); the engine's message is what matters. */
const pageMessage = (error: unknown) => (error as Error).message.replace(/^Error: /, '');

/** Seams for tools built on the CLI (`npm run soak`). */
export interface TrainHooks {
  /** Awaited after each epoch's checkpoint is on disk, while the page waits. */
  afterEpoch?(page: Page, epoch: number): Promise<void>;
}

export async function train(o: TrainOptions, hooks: TrainHooks = {}): Promise<void> {
  const release = takeOutFolder(o.out); // first: two runs into one folder must not both pass the checks below
  try {
    checkOutFolder(o);
    const data = await loadRunData(o);
    const start = decideResume(o, data);
    if (start) await trainInBrowser(o, data, start, hooks);
  } finally {
    release();
  }
}

/** The loop: the engine trains in a headless page, and its events go to the sink. */
async function trainInBrowser(o: TrainOptions, d: RunData, start: ResumeDecision, hooks: TrainHooks): Promise<void> {
  const { modelClasses, firstEpoch, likelihood, beta, klWarmup } = start;
  const browser = await launchBrowser();
  const server = await startServer({ allow: ENGINE_FOLDERS });
  if (likelihood?.kind === 'gaussian') console.log(`webgpu-vae: ${sizesName({ D: d.pixels, hidden: o.hidden, L: o.latent, likelihood })}: losses are negative log-densities in nats`);
  let interrupted = 0;
  let onSigint = () => {};
  try {
    const page = await browser.browser.newPage();
    page.on('pageerror', (e) => console.error(`[browser] ${e}`));
    page.on('console', (m) => { if (m.type() === 'error') console.error(`[browser] ${m.text()}`); });
    await page.goto(`${server.url}/src/cli/headless.html`);
    await page.waitForFunction(() => 'vaeRun' in window, { timeout: 60_000 });
    const adapter = await reportAdapter(page);
    console.log(`webgpu-vae: ${d.title} on ${describeAdapter(adapter)}`);

    const tuneCache = o.autotune ? fileCache(tuneCacheDir()) : undefined;
    if (tuneCache) {
      await page.exposeFunction('vaeTuneCacheGet', async (key: string) => (await tuneCache.get(key)) ?? null);
      await page.exposeFunction('vaeTuneCachePut', (key: string, text: string) => tuneCache.put(key, text));
    }
    const sink = new RunSink({
      out: o.out, logInterval: o.logInterval, batchSize: o.batchSize, trainCount: d.trainCount, rows: d.rows, cols: d.cols,
      samples: modelClasses > 0 ? modelClasses * SAMPLES_PER_CLASS : 64, beta, klWarmup, firstEpoch, resume: o.resume, tuneCache,
      afterCheckpoint: (epoch) => hooks.afterEpoch?.(page, epoch) ?? Promise.resolve(),
    });
    const started = Date.now();
    await page.exposeFunction('vaeEvent', sink.event);
    onSigint = () => {
      if (++interrupted > 1) {
        // At once, but not before the browser has exited and its temporary profile is gone
        // (the run-folder lock goes with the process's exit).
        console.error('\nwebgpu-vae: quitting');
        void browser.close().finally(() => process.exit(130));
        return;
      }
      console.error('\nwebgpu-vae: stopping after the current submit (Ctrl-C again to quit at once)…');
      void page.evaluate(() => window.vaeStop()).catch(() => {});
    };
    process.on('SIGINT', onSigint);

    const config: RunConfig = {
      trainUrl: server.serveFile('train', d.train.pixels.subarray(0, d.trainCount * d.pixels)),
      testUrl: server.serveFile('test', d.test.pixels.subarray(0, d.testCount * d.pixels)),
      trainCount: d.trainCount, testCount: d.testCount, pixels: d.pixels,
      hidden: o.hidden, latent: o.latent, batchSize: o.batchSize, lr: o.lr, epochs: o.epochs, seed: o.seed,
      stepsPerSubmit: o.stepsPerSubmit, dataset: d.dataset, resume: start.resume, firstEpoch, autotune: o.autotune,
      ...(d.images ? { images: d.images } : {}), ...(d.classNames ? { classNames: d.classNames } : {}),
      ...(modelClasses > 0 ? {
        classes: modelClasses, trainLabelsUrl: server.serveFile('train labels', d.trainLabels), testLabelsUrl: server.serveFile('test labels', d.testLabels),
      } : {}),
      ...(beta !== undefined ? { beta } : {}), ...(klWarmup !== undefined ? { klWarmup } : {}), ...(likelihood ? { likelihood } : {}),
    };
    try {
      await page.evaluate((c: RunConfig) => window.vaeRun(c), config);
    } catch (error) {
      const message = pageMessage(error);
      if (!/device was lost/.test(message)) throw error;
      // The engine's advice is for library users; a CLI user needs the file and the flag.
      const kept = sink.lastCheckpoint();
      throw new Error(`${message.replace(` ${LOST_DEVICE_ADVICE}`, '')} Training stopped; ` + (kept
        ? `${kept.file} holds epoch ${kept.epoch}, intact: run the same command with --resume ${kept.file} to continue from it.`
        : 'no epoch had finished, so there is no checkpoint yet: run the command again.'));
    }
    if (sink.done) {
      console.error(
        `webgpu-vae: ${((Date.now() - started) / 1000).toFixed(1)} s; ${sink.done.dispatchesPerStep} dispatches per step, ` +
          `${sink.done.submits} submits, ${sink.done.bytesUploaded} bytes uploaded and ${sink.done.bytesReadBack} read back after the datasets`,
      );
    }
  } finally {
    process.off('SIGINT', onSigint);
    await browser.close();
    await server.close();
  }
}

async function main() {
  printableConsole();
  let options: TrainOptions | 'help';
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (e) {
    console.error(`webgpu-vae train: ${(e as Error).message}`);
    process.exit(2);
  }
  if (options === 'help') {
    console.log(HELP);
    return;
  }
  try {
    await train(options);
    process.exit(0);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`webgpu-vae train: ${e.message}`);
      process.exit(2);
    }
    const message = pageMessage(e);
    console.error(`webgpu-vae train: ${message}`);
    if (/diverged/.test(message)) console.error('webgpu-vae train: nothing was written after the divergence; the last checkpoint is the last good epoch.');
    process.exit(1);
  }
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(new URL(import.meta.url).pathname)) void main();
