/**
 * The training page with an image folder, used as a person would: choose "Your own images", set
 * the size and fit, pick a folder of drawn shapes (with bad files among them) through the folder
 * input, read what the page says it used and skipped, train an epoch, look at the grids and the
 * legend, and reload: the run and its folder come back from browser storage; and drop a folder on
 * the page as a drag from the desktop delivers it. Runs against the
 * shared Vite server (the page's own modules, no build).
 */
import { join } from 'node:path';
import { mkdirSync, readFileSync } from 'node:fs';
import puppeteer, { type Browser, type BrowserContext, type ElementHandle, type Page } from 'puppeteer';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { HELD_OUT_RULE } from '../src/data/image-folder';
import { projectRoot } from '../src/node/server';
import { fileTempDir, tempDir, train } from './cli';
import { BAD_FILES, FORTY_AT_16, shapeRunArgs, writeShapeFolder } from './shapes';
import { NAVIGATION_TIMEOUT_MS } from './gpu';

let browser: Browser;
let context: BrowserContext;
let page: Page;
let dir: string;

beforeAll(async () => {
  dir = join(fileTempDir('shapes'), 'shapes');
  writeShapeFolder(dir, 40);
  browser = await puppeteer.connect({ browserWSEndpoint: inject('wsEndpoint'), protocolTimeout: 0 });
  context = await browser.createBrowserContext(); // empty browser storage
  page = await context.newPage();
  page.on('pageerror', (e) => console.error(`[page] ${e}`));
  await page.goto(`${inject('serverUrl')}/index.html`, { timeout: NAVIGATION_TIMEOUT_MS });
  await ready();
}, 120_000);

afterAll(async () => {
  await context?.close().catch(() => {});
  browser?.disconnect();
});

async function ready(epochsDone?: number): Promise<void> {
  await page.waitForFunction(
    (n) => window.vaePage?.phase === 'ready' && (n === null || window.vaePage.epochsDone === n),
    { timeout: 240_000, polling: 250 },
    epochsDone ?? null,
  );
}

const text = (selector: string) => page.$eval(selector, (e) => (e as HTMLElement).innerText ?? '');

async function type(id: string, value: string): Promise<void> {
  await page.click(`#${id}`, { count: 3 });
  await page.keyboard.press('Backspace');
  await page.type(`#${id}`, value);
}

describe('the page with an image folder', () => {
  it('decodes a picked folder, names the bad files, trains an epoch on it, restores it after a reload, and matches the CLI bit for bit', async () => {
    await page.select('#dataset', 'images');
    expect(await page.$eval('#dataset-images-row', (e) => (e as HTMLElement).hidden)).toBe(false);
    await type('image-size', '3');
    expect(await text('#image-size-reason')).toMatch(/from 4 to 256/);
    await type('image-size', '16');
    await page.select('#image-fit', 'fit');
    const input = (await page.$('#dataset-folder')) as ElementHandle<HTMLInputElement>;
    await input.uploadFile(dir); // a folder, as the folder picker hands it over (webkitRelativePath "shapes/…")
    await page.waitForFunction(
      () =>
        /training and/.test(document.getElementById('dataset-status')!.textContent ?? '') ||
        /Not loaded/.test(document.getElementById('dataset-status')!.textContent ?? ''),
      { timeout: 60_000 },
    );
    const status = await text('#dataset-status');
    expect(status).toContain(`shapes: ${FORTY_AT_16}`);
    for (const [path, bad] of Object.entries(BAD_FILES)) {
      const line = status.split('\n').find((l) => l.startsWith(`skipped ${path}: `));
      expect(line, `${path} named in:\n${status}`).toBeDefined();
      expect(line).toMatch(bad.reason);
    }

    await type('epochs', '1');
    await type('batchSize', '32');
    await page.click('#start');
    await ready(1);
    const reports = await page.evaluate(() => window.vaePage!.epochReports);
    expect(reports).toHaveLength(1);
    expect(Number.isFinite(reports[0].trainLoss) && Number.isFinite(reports[0].testLoss)).toBe(true);
    expect(reports[0].testLoss).toBeLessThan(16 * 16 * Math.LN2 * 1.2); // learned past an untrained decoder's ≈ 177
    // Grids of 16×16 cells: 8 wide with 2-pixel padding.
    const size = (id: string) =>
      page.$eval(`#${id}`, (c) => [(c as HTMLCanvasElement).width, (c as HTMLCanvasElement).height]);
    expect(await size('recon')).toEqual([146, 38]);
    expect(await size('samples')).toEqual([146, 146]);
    // The top row of the reconstruction grid is 8 test images: drawn shapes, not blank cells.
    const inks = await page.$eval('#recon', (c) => {
      const data = (c as HTMLCanvasElement).getContext('2d')!.getImageData(0, 0, 146, 38).data;
      return Array.from({ length: 8 }, (_, k) => {
        let ink = 0;
        for (let y = 0; y < 16; y++)
          for (let x = 0; x < 16; x++) ink += Number(data[4 * ((2 + y) * 146 + 2 + k * 18 + x)] > 128);
        return ink;
      });
    });
    for (const [k, ink] of inks.entries()) expect(ink, `test image ${k}`).toBeGreaterThan(3);
    expect(await text('#legend')).toMatch(/circle.*cross.*square/s);
    mkdirSync(join(projectRoot, 'test/artifacts'), { recursive: true });
    await page.screenshot({ path: join(projectRoot, 'test/artifacts/page-images.png'), fullPage: true });

    // A reload restores the run, decoding the stored files again at the stored size and fit.
    await page.reload();
    await ready(1);
    expect(await text('#message')).toMatch(/Restored the run saved after epoch 1/);
    expect(await page.$eval('#image-size', (e) => (e as HTMLInputElement).value)).toBe('16');
    expect(await text('#dataset-status')).toContain(FORTY_AT_16);
    expect(await size('recon')).toEqual([146, 38]);

    // The CLI decodes the folder with the same module and trains through the same driver: the
    // same settings (the page's defaults, seed 1) give bit-identical losses.
    const out = tempDir();
    const cli = train(shapeRunArgs(dir, out));
    expect(cli.status, cli.stderr).toBe(0);
    const metrics = JSON.parse(readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim()) as {
      trainLoss: number;
      testLoss: number;
    };
    expect([metrics.trainLoss, metrics.testLoss]).toEqual([reports[0].trainLoss, reports[0].testLoss]);
  }, 300_000);

  it('takes a folder dropped on the page, whichever dataset was chosen', async () => {
    const own = await browser.createBrowserContext(); // storage of its own: nothing to restore
    try {
      page = await own.newPage();
      await page.goto(`${inject('serverUrl')}/index.html`, { timeout: NAVIGATION_TIMEOUT_MS });
      await ready();
      expect(await page.$eval('#dataset', (e) => (e as HTMLSelectElement).value)).toBe('mnist');
      // As the browser delivers a dragged folder: enter, over, drop (the folder's entries through webkitGetAsEntry).
      const box = (await (await page.$('#setup'))!.boundingBox())!;
      const point = { x: box.x + 50, y: box.y + 50 };
      const data = { items: [], files: [dir], dragOperationsMask: 1 };
      await page.mouse.dragEnter(point, data);
      await page.mouse.dragOver(point, data);
      await page.mouse.drop(point, data);
      await page.waitForFunction(
        () => /training and|Not loaded/.test(document.getElementById('dataset-status')!.textContent ?? ''),
        { timeout: 60_000 },
      );
      expect(await page.$eval('#dataset', (e) => (e as HTMLSelectElement).value)).toBe('images');
      const status = await text('#dataset-status');
      expect(status).toContain('shapes: 108 training and 12 test images of 28×28 (center-crop), 3 classes');
      for (const path of Object.keys(BAD_FILES)) expect(status).toContain(`skipped ${path}: `);
      expect(await page.$eval('#start', (b) => (b as HTMLButtonElement).disabled)).toBe(false);
    } finally {
      await own.close();
    }
  }, 120_000);

  it('keeps a folder picked while the size is invalid, and decodes it once the size is fixed; the hint states the held-out rule', async () => {
    const own = await browser.createBrowserContext(); // storage of its own: nothing to restore
    try {
      page = await own.newPage();
      await page.goto(`${inject('serverUrl')}/index.html`, { timeout: NAVIGATION_TIMEOUT_MS });
      await ready();
      await page.select('#dataset', 'images');
      // Both parts of the rule the split follows (isHeldOut): every 10th, and the last of a small class.
      expect(await text('#images-hint')).toContain(`otherwise the test images are ${HELD_OUT_RULE}.`);
      expect(HELD_OUT_RULE).toMatch(/every 10th usable image of each class .*last image of a class of 2 to 9/);
      await type('image-size', '300');
      const input = (await page.$('#dataset-folder')) as ElementHandle<HTMLInputElement>;
      await input.uploadFile(dir);
      await page.waitForFunction(
        () => /files picked/.test(document.getElementById('dataset-status')!.textContent ?? ''),
        { timeout: 60_000 },
      );
      expect(await text('#dataset-status')).toMatch(
        /^shapes: \d+ files picked, not decoded yet: the image size must be a whole number from 4 to 256; fix it to decode them\.$/,
      );
      expect(await page.$eval('#start', (b) => (b as HTMLButtonElement).disabled)).toBe(true);
      await type('image-size', '12');
      await page.keyboard.press('Tab'); // leaving the field is its change
      await page.waitForFunction(
        () => /training and|Not loaded/.test(document.getElementById('dataset-status')!.textContent ?? ''),
        { timeout: 60_000 },
      );
      expect(await text('#dataset-status')).toContain(
        'shapes: 108 training and 12 test images of 12×12 (center-crop), 3 classes',
      );
      expect(await page.$eval('#start', (b) => (b as HTMLButtonElement).disabled)).toBe(false);
    } finally {
      await own.close();
    }
  }, 120_000);
});
