/**
 * The training page with "Conditional on the labels" ticked, used as a person would (in its own
 * browser context, so its storage is empty): a short run on an MNIST subset, then the per-class
 * sample grid (10 rows of 8), the "Draw digits of class k" control and the explorer's class
 * picker, each checked on the canvases' pixels, not the page's bookkeeping. Screenshot in
 * test/artifacts/page-conditional.png.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import puppeteer, { type Browser, type BrowserContext, type ElementHandle, type Page } from 'puppeteer';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { encodeCheckpoint } from '../src/model/checkpoint';
import { arenaLayout, initArena } from '../src/model/graph';
import { mnistDir } from '../src/node/datasets';
import { projectRoot } from '../src/node/server';
import { NAVIGATION_TIMEOUT_MS } from './gpu';
import { fileTempDir } from './temp';

let browser: Browser;
let context: BrowserContext;
let page: Page;

beforeAll(async () => {
  browser = await puppeteer.connect({ browserWSEndpoint: inject('wsEndpoint'), protocolTimeout: 0 });
  context = await browser.createBrowserContext();
  page = await context.newPage();
  await page.setViewport({ width: 1200, height: 1000 });
  page.on('pageerror', (e) => console.error(`[page] ${e}`));
  page.on('console', (m) => {
    if (m.type() === 'error') console.error(`[page console] ${m.text()}`);
  });
  await page.goto(`${inject('serverUrl')}/?limit=1024&testLimit=256`, { timeout: NAVIGATION_TIMEOUT_MS });
  await page.waitForFunction(() => window.vaePage?.phase === 'ready', { timeout: 120_000 });
}, 180_000);

afterAll(async () => {
  await context?.close().catch(() => {});
  browser?.disconnect();
});

async function type(id: string, value: string): Promise<void> {
  await page.$eval(
    `#${id}`,
    (e, v) => {
      (e as HTMLInputElement).value = v as string;
      e.dispatchEvent(new Event('input'));
    },
    value,
  );
}

/** A canvas's size and a digest of its gray levels. */
const canvas = (id: string) =>
  page.$eval(`#${id}`, (c) => {
    const el = c as HTMLCanvasElement;
    const data = el.getContext('2d')!.getImageData(0, 0, el.width, el.height).data;
    const gray: number[] = [];
    for (let i = 0; i < data.length; i += 4) gray.push(data[i]!);
    return { width: el.width, height: el.height, gray };
  });

describe('page: conditional VAE', () => {
  it('trains with labels, then shows one row per class, draws a chosen class, and decodes the explorer point as the picked class', async () => {
    await type('epochs', '1');
    await type('batchSize', '64');
    await type('lr', '0.003');
    await page.click('#conditional');
    await page.click('#start');
    await page.waitForFunction(() => window.vaePage!.epochsDone >= 1 && window.vaePage!.phase === 'ready', {
      timeout: 600_000,
      polling: 500,
    });
    expect(await page.$eval('#message', (e) => e.textContent)).toMatch(/^Done: 1 epoch/);

    // 10 rows of 8 digits of 28 px with 2 px borders.
    const samples = await canvas('samples');
    expect([samples.width, samples.height]).toEqual([8 * 30 + 2, 10 * 30 + 2]);
    expect(Math.max(...samples.gray)).toBeGreaterThan(128); // something was drawn
    expect(await page.$eval('#samples-caption', (e) => e.textContent)).toMatch(
      /^One row per class \(0, 1, 2, 3, 4, 5, 6, 7, 8, 9\)/,
    );

    expect(await page.$eval('#class-draw', (e) => (e as HTMLElement).hidden)).toBe(false);
    expect(await page.$$eval('#draw-class option', (o) => o.length)).toBe(10);
    const asZero = await canvas('class-samples');
    expect([asZero.width, asZero.height]).toEqual([8 * 30 + 2, 2 * 30 + 2]);
    await page.select('#draw-class', '7');
    await page.waitForFunction(
      (before) => {
        const el = document.getElementById('class-samples') as HTMLCanvasElement;
        const d = el.getContext('2d')!.getImageData(0, 0, el.width, el.height).data;
        let sum = 0;
        for (let i = 0; i < d.length; i += 4) sum += d[i]!;
        return sum !== before;
      },
      { timeout: 30_000 },
      asZero.gray.reduce((a, b) => a + b, 0),
    );

    expect(await page.$eval('#explorer-class-row', (e) => (e as HTMLElement).hidden)).toBe(false);
    expect(await page.$$eval('#explorer-class option', (o) => o.length)).toBe(10);
    const decodedAs = async (k: string) => {
      await page.select('#explorer-class', k);
      await new Promise((r) => setTimeout(r, 1500)); // the explorer redraws through its queue
      return (await canvas('decoded')).gray;
    };
    const one = await decodedAs('1');
    const eight = await decodedAs('8');
    expect(one).not.toEqual(eight); // the same point, decoded with another label
    expect(await decodedAs('1')).toEqual(one); // and the label alone decides it

    mkdirSync(join(projectRoot, 'test/artifacts'), { recursive: true });
    await page.screenshot({ path: join(projectRoot, 'test/artifacts/page-conditional.png'), fullPage: true });
  }, 900_000);
});

/** A page of its own (empty browser storage), ready, for `run`; closed after. */
async function ownPage(query: string, run: (p: Page) => Promise<void>): Promise<void> {
  const own = await browser.createBrowserContext();
  try {
    const p = await own.newPage();
    p.on('pageerror', (e) => console.error(`[page] ${e}`));
    await p.goto(`${inject('serverUrl')}/${query}`, { timeout: NAVIGATION_TIMEOUT_MS });
    await p.waitForFunction(() => window.vaePage?.phase === 'ready', { timeout: 120_000 });
    await run(p);
  } finally {
    await own.close();
  }
}

const work = fileTempDir('page-conditional');

describe('page: the class count of a conditional VAE', () => {
  it('refuses a conditional checkpoint of 3 classes on MNIST (labels up to 9), names the dataset to choose, and trains nothing', async () => {
    // 784 pixels, as MNIST's: only the labels tell the two apart.
    const layout = arenaLayout({ D: 784, hidden: [16], L: 4, classes: 3 });
    const file = join(work, 'three-classes.safetensors');
    writeFileSync(
      file,
      encodeCheckpoint(layout, { params: initArena(layout, Math.random), step: 0, metadata: { epoch: '1' } }),
    );
    await ownPage('?limit=256&testLimit=64', async (p) => {
      const input = (await p.$('#checkpoint-file')) as ElementHandle<HTMLInputElement>;
      await input.uploadFile(file);
      await p.waitForFunction(
        () => /^(Loaded|Could not load) /.test(document.getElementById('message')!.textContent!),
        { timeout: 120_000 },
      );
      await p.waitForFunction(() => window.vaePage!.phase === 'ready', { timeout: 60_000 });
      const message = await p.$eval('#message', (e) => e.textContent!);
      expect(message).toBe(
        'Could not load three-classes.safetensors: this checkpoint is a conditional VAE of 3 classes (labels 0 … 2); ' +
          "MNIST's labels go up to 9: choose the dataset it was trained on. Nothing was changed.",
      );
      expect(message).not.toMatch(/untick/);
      expect(await p.evaluate(() => window.vaePage!.epochsDone)).toBe(0);
      expect(await p.$eval('#start', (b) => b.textContent)).toBe('Start'); // no model was made
      expect(await p.$eval('#class-draw', (e) => (e as HTMLElement).hidden)).toBe(true);
    });
  }, 300_000);

  it('makes as many classes as the labels use, as the CLI counts them: idx files labelled 0 … 2 give a 3-class model', async () => {
    // The first MNIST images with their labels taken mod 3: 0, 1 and 2 only.
    const slice = (name: string, count: number, record: number, header: number, relabel: boolean) => {
      const bytes = readFileSync(join(mnistDir(), name));
      const out = Buffer.from(bytes.subarray(0, header + count * record));
      out.writeUInt32BE(count, 4);
      if (relabel) for (let i = header; i < out.length; i++) out[i] = out[i]! % 3;
      const path = join(work, name);
      writeFileSync(path, out);
      return path;
    };
    const files = [
      slice('train-images-idx3-ubyte', 256, 784, 16, false),
      slice('train-labels-idx1-ubyte', 256, 1, 8, true),
      slice('t10k-images-idx3-ubyte', 64, 784, 16, false),
      slice('t10k-labels-idx1-ubyte', 64, 1, 8, true),
    ];
    await ownPage('', async (p) => {
      await p.select('#dataset', 'files');
      const input = (await p.$('#dataset-files')) as ElementHandle<HTMLInputElement>;
      await input.uploadFile(...files);
      await p.waitForFunction(() => /with labels/.test(document.getElementById('dataset-status')!.textContent ?? ''), {
        timeout: 60_000,
      });
      await p.$eval('#epochs', (e) => {
        (e as HTMLInputElement).value = '1';
        e.dispatchEvent(new Event('input'));
      });
      await p.$eval('#batchSize', (e) => {
        (e as HTMLInputElement).value = '64';
        e.dispatchEvent(new Event('input'));
      });
      await p.click('#conditional');
      await p.click('#start');
      await p.waitForFunction(() => window.vaePage!.epochsDone >= 1 && window.vaePage!.phase === 'ready', {
        timeout: 600_000,
        polling: 500,
      });
      expect(await p.$eval('#message', (e) => e.textContent)).toMatch(/^Done: 1 epoch/);
      // 3 rows of 8, not the 10 of the digits' names.
      expect(
        await p.$eval('#samples', (c) => [(c as HTMLCanvasElement).width, (c as HTMLCanvasElement).height]),
      ).toEqual([8 * 30 + 2, 3 * 30 + 2]);
      expect(await p.$eval('#samples-caption', (e) => e.textContent)).toMatch(/^One row per class \(0, 1, 2\)/);
      expect(await p.$$eval('#draw-class option', (o) => o.map((e) => e.textContent))).toEqual(['0', '1', '2']);
    });
  }, 900_000);
});
