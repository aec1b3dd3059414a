/**
 * One engine behind every host: the CLI, the library and the training page train the same
 * model (a deeper MLP, 784-32-16-4) with the same seed on the same MNIST subset, and must report
 * bit-identical training and test losses for every epoch — they share one driver, one settings
 * source and one test-pass convention.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { tempDir, train } from './cli';
import { NAVIGATION_TIMEOUT_MS, harnessPage, API_HARNESS } from './gpu';

const RUN = {
  epochs: 2,
  trainCount: 600,
  testCount: 300,
  batchSize: 100,
  lr: 2e-3,
  hidden: [32, 16],
  latent: 4,
  seed: 4,
};
type EpochLosses = { epoch: number; trainLoss: number; testLoss: number }[];

const harness = harnessPage(...API_HARNESS);

function viaCli(): EpochLosses {
  const out = tempDir();
  const r = train([
    '--epochs',
    String(RUN.epochs),
    '--train-limit',
    String(RUN.trainCount),
    '--test-limit',
    String(RUN.testCount),
    '--batch-size',
    String(RUN.batchSize),
    '--lr',
    String(RUN.lr),
    '--hidden',
    RUN.hidden.join(','),
    '--latent',
    String(RUN.latent),
    '--seed',
    String(RUN.seed),
    '--out',
    out,
  ]);
  expect(r.status, r.stderr).toBe(0);
  return readFileSync(join(out, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line));
}

async function viaLibrary(): Promise<EpochLosses> {
  return harness.page.evaluate(async (run) => {
    const { lib } = window.vaeTest;
    const images = async (name: string, count: number) =>
      (await lib.readIdxImages(await (await fetch(`/mnist/${name}.gz`)).arrayBuffer(), name)).pixels.slice(
        0,
        count * 784,
      );
    const [trainImages, testImages] = [
      await images('train-images-idx3-ubyte', run.trainCount),
      await images('t10k-images-idx3-ubyte', run.testCount),
    ];
    const vae = await lib.VAE.create({ hiddenSize: run.hidden, latentSize: run.latent, seed: run.seed });
    const result = await vae.fit(trainImages, { epochs: run.epochs, batchSize: run.batchSize, lr: run.lr, testImages });
    vae.destroy();
    return result.epochs.map((e) => ({ epoch: e.epoch, trainLoss: e.trainLoss, testLoss: e.testLoss! }));
  }, RUN);
}

async function viaPage(): Promise<EpochLosses> {
  const page = await harness.browser.newPage();
  try {
    await page.goto(`${inject('serverUrl')}/index.html?limit=${RUN.trainCount}&testLimit=${RUN.testCount}`, {
      timeout: NAVIGATION_TIMEOUT_MS,
    });
    await page.waitForFunction(() => !(document.getElementById('start') as HTMLButtonElement).disabled, {
      timeout: 60_000,
    });
    const settings: Record<string, string> = {
      epochs: String(RUN.epochs),
      batchSize: String(RUN.batchSize),
      lr: String(RUN.lr),
      hidden: RUN.hidden.join(','),
      latent: String(RUN.latent),
      seed: String(RUN.seed),
    };
    for (const [id, value] of Object.entries(settings)) {
      await page.$eval(
        `#${id}`,
        (input, v) => {
          (input as HTMLInputElement).value = v;
          input.dispatchEvent(new Event('input', { bubbles: true }));
        },
        value,
      );
    }
    await page.click('#start');
    await page.waitForFunction(
      (n) => (window.vaePage?.epochReports.length ?? 0) >= n,
      { timeout: 300_000 },
      RUN.epochs,
    );
    return page.evaluate(() =>
      window.vaePage!.epochReports.map((e) => ({ epoch: e.epoch, trainLoss: e.trainLoss, testLoss: e.testLoss })),
    );
  } finally {
    await page.close();
  }
}

describe('every host trains through one driver', () => {
  it('the CLI, the library and the page report bit-identical losses for the same seed and data', async () => {
    const cli = viaCli();
    const library = await viaLibrary();
    const page = await viaPage();
    console.log(
      `784-${RUN.hidden.join('-')}-${RUN.latent}, seed ${RUN.seed}, per epoch (train, test):\n` +
        cli.map((e) => `  epoch ${e.epoch}: ${e.trainLoss} ${e.testLoss}`).join('\n'),
    );
    expect(cli.map((e) => e.epoch)).toEqual([1, 2]);
    expect(cli.every((e) => Number.isFinite(e.trainLoss) && Number.isFinite(e.testLoss))).toBe(true);
    expect(library).toEqual(cli); // toEqual on numbers is Object.is: every bit
    expect(page).toEqual(cli);
  });
});
