/**
 * `npm run train`: trains the VAE headlessly. Node reads and checks the data, runs the engine
 * (src/cli/engine.ts) in headless Chromium's page (src/cli/headless.ts; the default) or, with
 * `--runtime node`, on Dawn's WebGPU in this process, prints the reference program's log line
 * for line, and writes the images and checkpoints it produces.
 *
 * Like llm.c's main, in order: the options (options.ts), the run folder (run-folder.ts), the
 * data (data.ts), the resume decision (resume.ts), the loop in the page, and the sink its
 * events go to (sink.ts).
 */
import { resolve } from 'node:path';
import type { Page } from 'puppeteer';
import { Gpu, LOST_DEVICE_ADVICE } from '../gpu/device';
import { RunGate } from '../model/driver';
import { sizesName } from '../model/graph';
import { SAMPLES_PER_CLASS } from '../model/vae';
import { describeAdapter, launchBrowser, reportAdapter } from '../node/browser';
import { UsageError } from '../node/options';
import { ENGINE_FOLDERS, startServer } from '../node/server';
import { printableConsole } from '../node/terminal';
import { fileCache, tuneCacheDir, type FileTuneCache } from '../node/tune-cache';
import { nodeWebGpu } from '../node/webgpu';
import { loadRunData, type RunData } from './data';
import { HELP, parseOptions, type TrainOptions } from './options';
import { runEngine } from './engine';
import type { EngineRun, RunConfig, RunEvent } from './protocol';
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
    if (start) await trainOn(o, data, start, hooks);
  } finally {
    release();
  }
}

/** Where the engine runs: headless Chromium's page, or Dawn's WebGPU in this process. */
interface EngineRuntime {
  /** The adapter, as the first line names it. */
  adapter: string;
  /** The page (--runtime chromium), for the hooks. */
  page?: Page;
  run(
    config: EngineRun,
    d: RunData,
    emit: (event: RunEvent) => Promise<void>,
    tuneCache?: FileTuneCache,
  ): Promise<void>;
  /** Stops after the current submit (the first Ctrl-C). */
  stop(): void;
  close(): Promise<void>;
}

async function chromiumRuntime(): Promise<EngineRuntime> {
  const browser = await launchBrowser();
  const server = await startServer({ allow: ENGINE_FOLDERS });
  const close = async () => {
    await browser.close();
    await server.close();
  };
  try {
    const page = await browser.browser.newPage();
    page.on('pageerror', (e) => console.error(`[browser] ${e}`));
    page.on('console', (m) => {
      if (m.type() === 'error') console.error(`[browser] ${m.text()}`);
    });
    await page.goto(`${server.url}/src/cli/headless.html`);
    await page.waitForFunction(() => 'vaeRun' in window, { timeout: 60_000 });
    const adapter = describeAdapter(await reportAdapter(page));
    return {
      adapter,
      page,
      close,
      stop: () => void page.evaluate(() => window.vaeStop()).catch(() => {}),
      async run(run, d, emit, tuneCache) {
        if (tuneCache) {
          await page.exposeFunction('vaeTuneCacheGet', async (key: string) => (await tuneCache.get(key)) ?? null);
          await page.exposeFunction('vaeTuneCachePut', (key: string, text: string) => tuneCache.put(key, text));
        }
        await page.exposeFunction('vaeEvent', emit);
        const config: RunConfig = {
          ...run,
          trainUrl: server.serveFile('train', d.train.pixels.subarray(0, d.trainCount * d.pixels)),
          testUrl: server.serveFile('test', d.test.pixels.subarray(0, d.testCount * d.pixels)),
          ...(run.classes
            ? {
                trainLabelsUrl: server.serveFile('train labels', d.trainLabels),
                testLabelsUrl: server.serveFile('test labels', d.testLabels),
              }
            : {}),
        };
        await page.evaluate((c: RunConfig) => window.vaeRun(c), config);
      },
    };
  } catch (error) {
    await close();
    throw error;
  }
}

/** --runtime node: Dawn's WebGPU on the chosen Vulkan driver, in this process; no browser. */
async function nodeRuntime(driver: string | undefined): Promise<EngineRuntime> {
  const dawn = await nodeWebGpu(driver);
  const gpu = await Gpu.create({ gpu: dawn.gpu });
  const gate = new RunGate();
  return {
    adapter: describeAdapter({
      ...gpu.adapter!,
      browserVersion: `Node ${process.versions.node}, Dawn on ${dawn.driver}`,
    }),
    stop: () => gate.stop(),
    run: (run, d, emit, tuneCache) =>
      runEngine(
        gpu,
        run,
        {
          trainPixels: d.train.pixels.subarray(0, d.trainCount * d.pixels),
          testPixels: d.test.pixels.subarray(0, d.testCount * d.pixels),
          ...(run.classes ? { trainLabels: d.trainLabels, testLabels: d.testLabels } : {}),
        },
        { emit, autotune: tuneCache ? { browserMajor: 0, runtimeVersion: dawn.version, cache: tuneCache } : undefined },
        gate,
      ),
    async close() {
      gpu.destroy();
      gpu.device.destroy();
    },
  };
}

/** The loop: the engine trains on the chosen runtime, and its events go to the sink. */
async function trainOn(o: TrainOptions, d: RunData, start: ResumeDecision, hooks: TrainHooks): Promise<void> {
  const { sizes, modelClasses, firstEpoch, likelihood, beta, klWarmup } = start;
  const runtime = o.runtime === 'node' ? await nodeRuntime(o.adapter) : await chromiumRuntime();
  if (likelihood?.kind === 'gaussian')
    console.log(
      `webgpu-vae: ${sizesName(sizes.spec ? sizes : { D: d.pixels, hidden: o.hidden, L: o.latent, likelihood })}: losses are negative log-densities in nats`,
    );
  let interrupted = 0;
  let onSigint = () => {};
  try {
    console.log(`webgpu-vae: ${d.title} on ${runtime.adapter}`);
    const tuneCache = o.autotune ? fileCache(tuneCacheDir()) : undefined;
    const { page } = runtime;
    const sink = new RunSink({
      out: o.out,
      logInterval: o.logInterval,
      batchSize: o.batchSize,
      trainCount: d.trainCount,
      rows: d.rows,
      cols: d.cols,
      channels: d.channels,
      samples: modelClasses > 0 ? modelClasses * SAMPLES_PER_CLASS : 64,
      beta,
      klWarmup,
      firstEpoch,
      resume: o.resume,
      tuneCache,
      afterCheckpoint: (epoch) => (page && hooks.afterEpoch?.(page, epoch)) ?? Promise.resolve(),
    });
    const started = Date.now();
    onSigint = () => {
      if (++interrupted > 1) {
        // At once, but not before a browser has exited and its temporary profile is gone
        // (the run-folder lock goes with the process's exit).
        console.error('\nwebgpu-vae: quitting');
        void runtime.close().finally(() => process.exit(130));
        return;
      }
      console.error('\nwebgpu-vae: stopping after the current submit (Ctrl-C again to quit at once)…');
      runtime.stop();
    };
    process.on('SIGINT', onSigint);

    const run: EngineRun = {
      trainCount: d.trainCount,
      testCount: d.testCount,
      pixels: d.pixels,
      hidden: [...sizes.hidden],
      latent: sizes.L,
      ...(sizes.spec ? { model: sizes.spec } : {}),
      batchSize: o.batchSize,
      lr: o.lr,
      epochs: o.epochs,
      seed: o.seed,
      stepsPerSubmit: o.stepsPerSubmit,
      dataset: d.dataset,
      resume: start.resume,
      firstEpoch,
      autotune: o.autotune,
      ...(d.images ? { images: d.images } : {}),
      ...(d.channels !== 1 ? { channels: d.channels } : {}),
      ...(d.classNames ? { classNames: d.classNames } : {}),
      ...(modelClasses > 0 ? { classes: modelClasses } : {}),
      ...(beta !== undefined ? { beta } : {}),
      ...(klWarmup !== undefined ? { klWarmup } : {}),
      ...(likelihood ? { likelihood } : {}),
    };
    try {
      await runtime.run(run, d, sink.event, tuneCache);
    } catch (error) {
      const message = pageMessage(error);
      if (!/device was lost/.test(message)) throw error;
      // The engine's advice is for library users; a CLI user needs the file and the flag.
      const kept = sink.lastCheckpoint();
      throw new Error(
        `${message.replace(` ${LOST_DEVICE_ADVICE}`, '')} Training stopped; ` +
          (kept
            ? `${kept.file} holds epoch ${kept.epoch}, intact: run the same command with --resume ${kept.file} to continue from it.`
            : 'no epoch had finished, so there is no checkpoint yet: run the command again.'),
        { cause: error },
      );
    }
    if (sink.done) {
      console.error(
        `webgpu-vae: ${((Date.now() - started) / 1000).toFixed(1)} s; ${sink.done.dispatchesPerStep} dispatches per step, ` +
          `${sink.done.submits} submits, ${sink.done.bytesUploaded} bytes uploaded and ${sink.done.bytesReadBack} read back after the datasets`,
      );
    }
  } finally {
    process.off('SIGINT', onSigint);
    await runtime.close();
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
    if (/diverged/.test(message))
      console.error(
        'webgpu-vae train: nothing was written after the divergence; the last checkpoint is the last good epoch.',
      );
    process.exit(1);
  }
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(new URL(import.meta.url).pathname)) void main();
