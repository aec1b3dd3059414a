/**
 * The training page with "Conditional on the labels" ticked, used as a person would (in its own
 * browser context, so its storage is empty): a short run on an MNIST subset, then the per-class
 * sample grid (10 rows of 8), the "Draw digits of class k" control and the explorer's class
 * picker, each checked on the canvases' pixels, not the page's bookkeeping. Screenshot in
 * test/artifacts/page-conditional.png.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import puppeteer, { type Browser, type BrowserContext, type Page } from 'puppeteer';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { projectRoot } from '../src/node/server';

let browser: Browser;
let context: BrowserContext;
let page: Page;

beforeAll(async () => {
  browser = await puppeteer.connect({ browserWSEndpoint: inject('wsEndpoint'), protocolTimeout: 0 });
  context = await browser.createBrowserContext();
  page = await context.newPage();
  await page.setViewport({ width: 1200, height: 1000 });
  page.on('pageerror', (e) => console.error(`[page] ${e}`));
  page.on('console', (m) => { if (m.type() === 'error') console.error(`[page console] ${m.text()}`); });
  await page.goto(`${inject('serverUrl')}/?limit=1024&testLimit=256`);
  await page.waitForFunction(() => window.vaePage?.phase === 'ready', { timeout: 120_000 });
}, 180_000);

afterAll(async () => {
  await context?.close().catch(() => {});
  browser?.disconnect();
});

async function type(id: string, value: string): Promise<void> {
  await page.$eval(`#${id}`, (e, v) => {
    (e as HTMLInputElement).value = v as string;
    e.dispatchEvent(new Event('input'));
  }, value);
}

/** A canvas's size and a digest of its gray levels. */
const canvas = (id: string) => page.$eval(`#${id}`, (c) => {
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
    await page.waitForFunction(() => window.vaePage!.epochsDone >= 1 && window.vaePage!.phase === 'ready', { timeout: 600_000, polling: 500 });
    expect(await page.$eval('#message', (e) => e.textContent)).toMatch(/^Done: 1 epoch/);

    // 10 rows of 8 digits of 28 px with 2 px borders.
    const samples = await canvas('samples');
    expect([samples.width, samples.height]).toEqual([8 * 30 + 2, 10 * 30 + 2]);
    expect(Math.max(...samples.gray)).toBeGreaterThan(128); // something was drawn
    expect(await page.$eval('#samples-caption', (e) => e.textContent)).toMatch(/^One row per class \(0, 1, 2, 3, 4, 5, 6, 7, 8, 9\)/);

    expect(await page.$eval('#class-draw', (e) => (e as HTMLElement).hidden)).toBe(false);
    expect(await page.$$eval('#draw-class option', (o) => o.length)).toBe(10);
    const asZero = await canvas('class-samples');
    expect([asZero.width, asZero.height]).toEqual([8 * 30 + 2, 2 * 30 + 2]);
    await page.select('#draw-class', '7');
    await page.waitForFunction((before) => {
      const el = document.getElementById('class-samples') as HTMLCanvasElement;
      const d = el.getContext('2d')!.getImageData(0, 0, el.width, el.height).data;
      let sum = 0;
      for (let i = 0; i < d.length; i += 4) sum += d[i]!;
      return sum !== before;
    }, { timeout: 30_000 }, asZero.gray.reduce((a, b) => a + b, 0));

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
