/**
 * End to end: build the training page with Vite, serve the static site from a plain file
 * server, and use it in the shared headless Chromium like a person would — refuse bad input,
 * train a short run on a subset, check the loss and the images' pixels, drive the latent
 * explorer, download / restore / re-load a checkpoint, survive malformed files — and open it
 * in a Chromium without WebGPU. Screenshots go to test/artifacts/.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer, { type Browser, type BrowserContext, type ElementHandle, type Page } from 'puppeteer';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { MAX_IDX_FILE_BYTES } from '../src/data/idx';
import { writeSafetensors } from '../src/io/safetensors';
import { decodeCheckpoint, encodeCheckpoint } from '../src/model/checkpoint';
import { arenaLayout, initArena } from '../src/model/graph';
import { launchBrowser } from '../src/node/browser';
import { mnistDir } from '../src/node/datasets';
import { projectRoot } from '../src/node/server';
import { serveStatic, type StaticServer } from './page/static-server';
import { NAVIGATION_TIMEOUT_MS } from './gpu';
import { gzipOfZeros } from './gzip';

// A CI-sized run: 4096 images in batches of 64 for 3 epochs is 192 steps, which the
// software adapter trains in well under a minute, and enough to draw recognisable digits.
const RUN = { limit: 4096, testLimit: 1000, epochs: '3', batchSize: '64', lr: '0.002' };
const ARTIFACTS = join(projectRoot, 'test/artifacts');

type Gray = { width: number; height: number; pixels: number[] };

let work: string;
let site: StaticServer;
let browser: Browser;
let context: BrowserContext;
let page: Page;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'webgpu-vae-page-'));
  mkdirSync(ARTIFACTS, { recursive: true });
  mkdirSync(join(work, 'downloads'));
  await build({
    root: projectRoot,
    configFile: join(projectRoot, 'vite.config.ts'),
    logLevel: 'warn',
    build: { outDir: join(work, 'dist'), emptyOutDir: true },
  });
  site = await serveStatic(join(work, 'dist'));
  browser = await puppeteer.connect({ browserWSEndpoint: inject('wsEndpoint'), protocolTimeout: 0 });
  // Its own context: empty browser storage, and downloads into our folder.
  context = await browser.createBrowserContext({
    downloadBehavior: { policy: 'allow', downloadPath: join(work, 'downloads') },
  });
  page = await context.newPage();
  await page.setViewport({ width: 1200, height: 1000 });
  page.on('pageerror', (e) => console.error(`[page] ${e}`));
  page.on('console', (m) => {
    if (m.type() === 'error') console.error(`[page console] ${m.text()}`);
  });
}, 120_000);

afterAll(async () => {
  await context?.close().catch(() => {});
  browser?.disconnect();
  await site?.close();
  rmSync(work, { recursive: true, force: true });
});

// ---- helpers -----------------------------------------------------------------------------------

async function waitReady(epochsDone?: number, timeout = 240_000): Promise<void> {
  await page.waitForFunction(
    (n) => {
      const p = window.vaePage;
      return p?.phase === 'ready' && (n === null || p.epochsDone === n);
    },
    { timeout, polling: 250 },
    epochsDone ?? null,
  );
}

const text = (selector: string) => page.$eval(selector, (e) => e.textContent ?? '');

async function type(id: string, value: string): Promise<void> {
  await page.click(`#${id}`, { count: 3 });
  await page.keyboard.press('Backspace');
  await page.type(`#${id}`, value);
}

async function canvas(id: string): Promise<Gray> {
  return page.$eval(`#${id}`, (c) => {
    const el = c as HTMLCanvasElement;
    const data = el.getContext('2d')!.getImageData(0, 0, el.width, el.height).data;
    const pixels: number[] = [];
    for (let i = 0; i < data.length; i += 4) pixels.push(data[i]);
    return { width: el.width, height: el.height, pixels };
  });
}

/** Image k (28×28, in [0, 1]) of a torchvision-style grid `nrow` wide with 2-pixel padding. */
function cell(g: Gray, k: number, nrow: number): number[] {
  const top = Math.floor(k / nrow) * 30 + 2;
  const left = (k % nrow) * 30 + 2;
  const out: number[] = [];
  for (let r = 0; r < 28; r++) for (let c = 0; c < 28; c++) out.push(g.pixels[(top + r) * g.width + left + c] / 255);
  return out;
}

function corr(a: number[], b: number[]): number {
  const mean = (x: number[]) => x.reduce((s, v) => s + v, 0) / x.length;
  const ma = mean(a),
    mb = mean(b);
  let ab = 0,
    aa = 0,
    bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += (a[i] - ma) * (b[i] - mb);
    aa += (a[i] - ma) ** 2;
    bb += (b[i] - mb) ** 2;
  }
  return aa > 0 && bb > 0 ? ab / Math.sqrt(aa * bb) : 0;
}

/**
 * What separates a digit from noise or a blank: ink (some bright pixels), a dark border,
 * and smoothness (a pixel correlates with its neighbours; for noise that is near 0).
 */
function digitLike(img: number[]): { ink: number; border: number; smooth: number } {
  let ink = 0,
    border = 0,
    borderN = 0;
  const here: number[] = [],
    next: number[] = [];
  for (let r = 0; r < 28; r++) {
    for (let c = 0; c < 28; c++) {
      const v = img[r * 28 + c];
      if (v > 0.5) ink++;
      if (r < 3 || r > 24 || c < 3 || c > 24) {
        border += v;
        borderN++;
      }
      if (c < 27) {
        here.push(v);
        next.push(img[r * 28 + c + 1]);
      }
      if (r < 27) {
        here.push(v);
        next.push(img[(r + 1) * 28 + c]);
      }
    }
  }
  return { ink: ink / 784, border: border / borderN, smooth: corr(here, next) };
}

function expectDigit(img: number[], what: string, minInk = 0.03): void {
  const d = digitLike(img);
  expect(d.ink, `${what}: bright pixels`).toBeGreaterThanOrEqual(minInk);
  expect(d.border, `${what}: dark border`).toBeLessThan(0.08);
  expect(d.smooth, `${what}: smooth strokes, not noise`).toBeGreaterThan(0.6);
}

const shot = (name: string, element?: ElementHandle | null) =>
  (element ?? page).screenshot({ path: join(ARTIFACTS, `page-${name}.png`), ...(element ? {} : { fullPage: true }) });

/** A small idx file: the first `count` records of an MNIST file. */
function idxSlice(file: string, count: number, recordBytes: number, headerBytes: number): Buffer {
  const bytes = readFileSync(join(mnistDir(), file));
  const out = Buffer.from(bytes.subarray(0, headerBytes + count * recordBytes));
  out.writeUInt32BE(count, 4);
  return out;
}

/** Picks a checkpoint file and waits for the page's verdict on it. */
async function loadCheckpointFile(path: string): Promise<string> {
  const name = path.split('/').pop()!;
  const input = (await page.$('#checkpoint-file')) as ElementHandle<HTMLInputElement>;
  await input.uploadFile(path);
  await page.waitForFunction(
    (n) =>
      new RegExp(`^(Loaded|Could not load) ${n.replace(/\./g, '\\.')}`).test(
        document.getElementById('message')!.textContent!,
      ),
    { timeout: 120_000 },
    name,
  );
  await waitReady();
  return text('#message');
}

/** The run the page keeps in IndexedDB, read from outside the page's code. */
const storedRun = () =>
  page.evaluate(
    () =>
      new Promise<{ epoch: number; checkpoint: number[] } | null>((resolve, reject) => {
        const open = indexedDB.open('webgpu-vae');
        open.onsuccess = () => {
          const get = open.result.transaction('saves').objectStore('saves').get('latest');
          get.onsuccess = () => {
            open.result.close();
            resolve(
              get.result
                ? { epoch: get.result.epoch, checkpoint: [...(get.result.checkpoint as Uint8Array).subarray(0, 4096)] }
                : null,
            );
          };
          get.onerror = () => reject(get.error);
        };
        open.onerror = () => reject(open.error);
      }),
  );

// ---- the tests (in order: they share one page) -------------------------------------------------

describe('training page (built static site)', () => {
  it('reports the adapter, refuses invalid settings with a reason, and checks picked dataset files', async () => {
    await page.goto(`${site.url}/?limit=${RUN.limit}&testLimit=${RUN.testLimit}`, { timeout: NAVIGATION_TIMEOUT_MS });
    await waitReady(0, 60_000);
    expect(await text('#adapter')).toMatch(/^WebGPU adapter: .+/);
    // The page must say what the test run's own adapter is (global setup names it): software or not.
    const software = /\[software/.test(inject('adapter'));
    expect(await text('#adapter')).toMatch(software ? /software \(fallback\) adapter/ : /A hardware adapter\./);

    await type('lr', 'fast');
    expect(await text('#lr-reason')).toMatch(/must be a number above 0/);
    expect(await page.$eval('#start', (b) => (b as HTMLButtonElement).disabled)).toBe(true);
    await type('epochs', '0');
    expect(await text('#epochs-reason')).toMatch(/whole number from 1/);
    await type('latent', '1');
    expect(await text('#latent-reason')).toMatch(/explorer needs two axes/);
    // The objective's fields (β, warm-up, likelihood, σ), checked against the shared ranges.
    await type('beta', '-2');
    expect(await text('#beta-reason')).toMatch(/must be a number from 0 to 1000/);
    await type('klWarmup', '1.5');
    expect(await text('#klWarmup-reason')).toMatch(/whole number of steps/);
    expect(await page.$eval('#sigma', (i) => (i as HTMLInputElement).disabled), 'σ is for the Gaussian only').toBe(
      true,
    );
    await page.select('#likelihood', 'gaussian');
    await type('sigma', '0');
    expect(await text('#sigma-reason')).toMatch(/from 0.001 to 1000.*or "learned"/);
    await type('sigma', 'learned');
    expect(await text('#sigma-reason')).toBe('');
    await page.select('#likelihood', 'bernoulli');
    await type('beta', '1');
    await type('klWarmup', '0');
    expect((await text('#beta-reason')) + (await text('#klWarmup-reason'))).toBe('');
    await shot('invalid-settings');
    await type('epochs', RUN.epochs);
    await type('lr', RUN.lr);
    await type('batchSize', RUN.batchSize);
    await type('latent', '20');
    expect(await text('#lr-reason')).toBe('');
    expect(await page.$eval('#start', (b) => (b as HTMLButtonElement).disabled)).toBe(false);

    // Own idx files: a valid pick, then a malformed one — a clear error, and the valid pick stays.
    const files = join(work, 'files');
    mkdirSync(files);
    writeFileSync(join(files, 'train-images-idx3-ubyte'), idxSlice('train-images-idx3-ubyte', 300, 784, 16));
    writeFileSync(join(files, 'train-labels-idx1-ubyte'), idxSlice('train-labels-idx1-ubyte', 300, 1, 8));
    writeFileSync(join(files, 't10k-images-idx3-ubyte'), idxSlice('t10k-images-idx3-ubyte', 100, 784, 16));
    writeFileSync(
      join(files, 'broken-images-idx3-ubyte'),
      idxSlice('t10k-images-idx3-ubyte', 100, 784, 16).subarray(0, 5000),
    );
    await page.select('#dataset', 'files');
    expect(await page.$eval('#start', (b) => (b as HTMLButtonElement).disabled)).toBe(true); // no files yet
    const input = (await page.$('#dataset-files')) as ElementHandle<HTMLInputElement>;
    await input.uploadFile(
      ...['train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte'].map((f) => join(files, f)),
    );
    await page.waitForFunction(() =>
      /300 training and 100 test images/.test(document.getElementById('dataset-status')!.textContent!),
    );
    await input.uploadFile(join(files, 'train-images-idx3-ubyte'), join(files, 'broken-images-idx3-ubyte'));
    await page.waitForFunction(() => /Not loaded/.test(document.getElementById('dataset-status')!.textContent!));
    const status = await text('#dataset-status');
    expect(status).toMatch(
      /broken-images-idx3-ubyte: truncated: the header declares 78416 bytes in total but the file has only 5000/,
    );
    expect(status).toMatch(
      /files chosen before are still in use: train-images-idx3-ubyte: 300 training and 100 test images/,
    );
    // A gzip bomb: a few hundred KB that claim more than any idx file may hold, refused as it inflates.
    writeFileSync(join(files, 'bomb-images-idx3-ubyte.gz'), await gzipOfZeros(MAX_IDX_FILE_BYTES + 2 ** 20));
    await input.uploadFile(join(files, 'train-images-idx3-ubyte'), join(files, 'bomb-images-idx3-ubyte.gz'));
    await page.waitForFunction(() => /bomb/.test(document.getElementById('dataset-status')!.textContent!), {
      timeout: 60_000,
    });
    expect(await text('#dataset-status')).toMatch(
      /^Not loaded: bomb-images-idx3-ubyte\.gz: decompresses to more than 209715200 bytes; refusing it/,
    );
    expect(await text('#dataset-status')).toMatch(
      /files chosen before are still in use: train-images-idx3-ubyte: 300 training/,
    );
    await shot('malformed-dataset', await page.$('#setup'));
    await page.select('#dataset', 'mnist');
  });

  it('trains a short run: the loss falls and the grids show real digits', async () => {
    const started = Date.now();
    await page.click('#start');
    await page.waitForFunction(
      () =>
        document.getElementById('pause')!.textContent === 'Pause' &&
        !(document.getElementById('pause') as HTMLButtonElement).disabled,
      { timeout: 60_000 },
    );
    // Pause and resume once mid-run: the page must come back to training.
    await page.waitForFunction(() => window.vaePage!.lossHistory.train.length >= 2 * 16, {
      timeout: 120_000,
      polling: 200,
    });
    await page.click('#pause');
    await page.waitForFunction(() => /^Paused/.test(document.getElementById('message')!.textContent!), {
      timeout: 60_000,
    });
    // Paused means nothing more is submitted to the GPU.
    const submits = () => page.evaluate(() => window.vaePage!.submits);
    const atPause = await submits();
    await new Promise((r) => setTimeout(r, 2000));
    expect(await submits()).toBe(atPause);
    expect(await text('#pause')).toBe('Resume');
    await page.click('#pause');
    // Responsive while training: timers fire on time (the GPU work never blocks the main thread).
    const lag = await page.evaluate(
      () =>
        new Promise<number>((resolve) => {
          let worst = 0;
          let last = performance.now();
          const timer = setInterval(() => {
            const now = performance.now();
            worst = Math.max(worst, now - last - 50);
            last = now;
          }, 50);
          setTimeout(() => {
            clearInterval(timer);
            resolve(worst);
          }, 3000);
        }),
    );
    console.log(`page: worst timer lag while training ${lag.toFixed(0)} ms`);
    expect(lag).toBeLessThan(250);
    await waitReady(Number(RUN.epochs));
    const seconds = (Date.now() - started) / 1000;
    const speed = await page.evaluate(() => window.vaePage!.imagesPerSecond);
    console.log(
      `page: ${RUN.epochs} epochs of ${RUN.limit} images in ${seconds.toFixed(1)} s; training ran at ${speed.toFixed(0)} images/s`,
    );
    await new Promise((r) => setTimeout(r, 600)); // the chart's throttled redraw
    await shot('trained');

    // The loss falls: the last steps are far below the first ones, and the test loss drops every epoch.
    const history = await page.evaluate(() => window.vaePage!.lossHistory);
    const train = history.train.filter((_, i) => i % 2 === 1);
    const test = history.test.filter((_, i) => i % 2 === 1);
    expect(train.length).toBe(3 * (RUN.limit / 64));
    expect(test.length).toBe(3);
    const mean = (x: number[]) => x.reduce((a, b) => a + b, 0) / x.length;
    expect(mean(train.slice(-5))).toBeLessThan(0.4 * mean(train.slice(0, 3)));
    expect(test[2]).toBeLessThan(test[1]);
    expect(test[1]).toBeLessThan(test[0]);
    expect(test[2]).toBeLessThan(170);

    // Reconstructions: each bottom image is a digit and matches the test digit above it better
    // than it matches the other test digits.
    const recon = await canvas('recon');
    expect([recon.width, recon.height]).toEqual([242, 62]);
    let matched = 0,
      mismatched = 0;
    for (let k = 0; k < 8; k++) {
      const input = cell(recon, k, 8);
      const output = cell(recon, 8 + k, 8);
      expectDigit(input, `test digit ${k}`);
      expectDigit(output, `reconstruction ${k}`);
      matched += corr(input, output) / 8;
      for (let j = 0; j < 8; j++) if (j !== k) mismatched += corr(cell(recon, j, 8), output) / 56;
    }
    console.log(
      `reconstruction vs its input: mean correlation ${matched.toFixed(2)}; vs the other inputs ${mismatched.toFixed(2)}`,
    );
    expect(matched).toBeGreaterThan(0.6);
    expect(matched).toBeGreaterThan(mismatched + 0.2);

    // Samples: 64 digit-like images that are not all the same.
    const samples = await canvas('samples');
    expect([samples.width, samples.height]).toEqual([242, 242]);
    const images = Array.from({ length: 64 }, (_, k) => cell(samples, k, 8));
    // A short run draws some faint samples: each must be smooth with a dark border, and on average inked.
    images.forEach((img, k) => expectDigit(img, `sample ${k}`, 0));
    const stats = images.map(digitLike);
    const inkMean = stats.reduce((a, d) => a + d.ink, 0) / 64;
    console.log(
      `samples: mean ink ${inkMean.toFixed(3)}, least smooth ${Math.min(...stats.map((d) => d.smooth)).toFixed(2)}, darkest border ${Math.max(...stats.map((d) => d.border)).toFixed(3)}`,
    );
    expect(inkMean).toBeGreaterThan(0.04);
    let pairs = 0;
    for (let k = 1; k < 64; k++) pairs += corr(images[0], images[k]) / 63;
    expect(pairs).toBeLessThan(0.8);
  });

  it('explores the latent space: scatter by label, dragging decodes, interpolation between two digits', async () => {
    expect(await page.$eval('#explorer-body', (e) => (e as HTMLElement).hidden)).toBe(false);
    // The scatter: dots in (nearly) every label's colour.
    const colours = await page.$eval('#plane', (c) => {
      const el = c as HTMLCanvasElement;
      const d = el.getContext('2d')!.getImageData(0, 0, el.width, el.height).data;
      const seen = new Set<string>();
      for (let i = 0; i < d.length; i += 4) {
        const [r, g, b] = [d[i], d[i + 1], d[i + 2]];
        if (Math.max(r, g, b) - Math.min(r, g, b) > 60) seen.add(`${r >> 4},${g >> 4},${b >> 4}`);
      }
      return seen.size;
    });
    expect(colours).toBeGreaterThanOrEqual(8);

    // Drag from one side of the plane to the other: the decoded image follows the pointer.
    const plane = (await page.$('#plane'))!;
    await plane.scrollIntoView();
    const box = (await plane.boundingBox())!;
    const decodedAt = async (fx: number, fy: number, down: boolean) => {
      const before = await canvas('decoded');
      await page.mouse.move(box.x + fx * box.width, box.y + fy * box.height, { steps: 4 });
      if (down) await page.mouse.down();
      await page.waitForFunction(
        (b) => {
          const el = document.getElementById('decoded') as HTMLCanvasElement;
          const d = el.getContext('2d')!.getImageData(0, 0, el.width, el.height).data;
          for (let i = 0; i < d.length; i += 4) if (d[i] !== b[i / 4]) return true;
          return false;
        },
        { timeout: 60_000, polling: 100 },
        before.pixels,
      );
      await new Promise((r) => setTimeout(r, 300)); // let a coalesced decode of the final point land
      const decoded = await canvas('decoded');
      expect([decoded.width, decoded.height]).toEqual([32, 32]); // one image with the grid's 2-pixel frame
      return cell(decoded, 0, 1);
    };
    const a = await decodedAt(0.2, 0.5, true);
    const b = await decodedAt(0.8, 0.5, false);
    await page.mouse.up();
    expect(await text('#plane-readout')).toMatch(/^pc1 = [\d.-]+, pc2 = [\d.-]+$/);
    expectDigit(a, 'decoded point A');
    expectDigit(b, 'decoded point B');
    expect(corr(a, b)).toBeLessThan(0.9);
    await shot('explorer', await page.$('#explorer-panel'));

    // Two latent axes instead of principal directions.
    await page.select('#plane-mode', 'axes');
    await page.select('#axis-x', '3');
    await page.waitForFunction(() => /^z3 = /.test(document.getElementById('plane-readout')!.textContent!));

    // Interpolation from test digit 0 (a 7) to test digit 1 (a 2): the decodes near each end resemble that end.
    await type('interp-a', '0');
    await type('interp-b', '1');
    await page.$eval('#interp-b', (e) => e.dispatchEvent(new Event('change')));
    await new Promise((r) => setTimeout(r, 1000));
    const strip = await canvas('interp-strip');
    expect(strip.width).toBe(12 * 30 + 2);
    const [start, first, last, end] = [0, 1, 10, 11].map((k) => cell(strip, k, 12));
    expect(corr(first, start)).toBeGreaterThan(corr(first, end));
    expect(corr(last, end)).toBeGreaterThan(corr(last, start));
    for (let k = 1; k <= 10; k++) expect(digitLike(cell(strip, k, 12)).smooth).toBeGreaterThan(0.6);
  });

  it('downloads a checkpoint, restores the run after a reload, and loads the file after Reset', async () => {
    const samples = await canvas('samples');
    await page.click('#download');
    const downloads = join(work, 'downloads');
    const deadline = Date.now() + 30_000;
    let file: string | undefined;
    while (!file && Date.now() < deadline) {
      file = readdirSync(downloads).find((f) => f.endsWith('.safetensors'));
      if (!file) await new Promise((r) => setTimeout(r, 200));
    }
    expect(file).toBe('vae-mnist-784-400-20-epoch3.safetensors');
    const bytes = readFileSync(join(downloads, file!));
    const ckpt = decodeCheckpoint(bytes, arenaLayout({ D: 784, hidden: [400], L: 20 }));
    expect(ckpt.metadata.epoch).toBe('3');
    expect(ckpt.step).toBe(3 * (RUN.limit / 64));
    expect(ckpt.m).toBeDefined();

    // Reload: the latest epoch comes back from browser storage, with identical weights.
    await page.reload();
    await waitReady(3);
    expect(await text('#message')).toMatch(/Restored the run saved after epoch 3/);
    expect(await text('#start')).toBe('Continue');
    expect((await canvas('samples')).pixels).toEqual(samples.pixels);
    expect((await page.evaluate(() => window.vaePage!.lossHistory)).test.length).toBe(6);
    await new Promise((r) => setTimeout(r, 600));
    await shot('restored');

    // Reset, then load the downloaded file: the same model again.
    await page.click('#reset');
    await waitReady(0);
    expect(await text('#start')).toBe('Start');
    const input = (await page.$('#checkpoint-file')) as ElementHandle<HTMLInputElement>;
    await input.uploadFile(join(downloads, file!));
    await page.waitForFunction(() => /^Loaded /.test(document.getElementById('message')!.textContent!), {
      timeout: 120_000,
    });
    await waitReady(3);
    expect(await text('#message')).toMatch(
      /Loaded vae-mnist-784-400-20-epoch3\.safetensors: a 784-400-20 model after 3 epochs \(192 steps\)/,
    );
    expect((await canvas('samples')).pixels).toEqual(samples.pixels);
  });

  it('a malformed checkpoint file gives a clear error and loses nothing', async () => {
    const samples = await canvas('samples');
    const bad = join(work, 'not-a-checkpoint.safetensors');
    writeFileSync(
      bad,
      Buffer.concat([
        Buffer.from([40, 0, 0, 0, 0, 0, 0, 0]),
        Buffer.from('{"fc1.weight": {"dtype": "F32", "shape": [400, 784], "data_offsets": [0, 99]}}'.slice(0, 40)),
      ]),
    );
    const input = (await page.$('#checkpoint-file')) as ElementHandle<HTMLInputElement>;
    await input.uploadFile(bad);
    await page.waitForFunction(() => /^Could not load/.test(document.getElementById('message')!.textContent!), {
      timeout: 30_000,
    });
    await waitReady(3);
    const message = await text('#message');
    expect(message).toMatch(/^Could not load not-a-checkpoint\.safetensors: .*header.*Nothing was changed\.$/);
    expect(await page.$eval('#message', (e) => e.className)).toMatch(/error/);
    await shot('malformed-checkpoint', await page.$('#setup'));
    // Still the same model, still saved.
    expect((await canvas('samples')).pixels).toEqual(samples.pixels);
    const saved = await page.evaluate(
      () =>
        new Promise<number>((resolve, reject) => {
          const open = indexedDB.open('webgpu-vae');
          open.onsuccess = () => {
            const get = open.result.transaction('saves').objectStore('saves').get('latest');
            get.onsuccess = () => resolve(get.result.epoch);
            get.onerror = () => reject(get.error);
          };
        }),
    );
    expect(saved).toBe(3);
    expect(await page.$eval('#download', (b) => (b as HTMLButtonElement).disabled)).toBe(false);
  });

  it('a checkpoint whose header declares sizes its bytes or this page cannot hold is refused before anything is allocated', async () => {
    const samples = await canvas('samples');
    const before = await storedRun();
    const zeros = (shapes: Record<string, number[]>) =>
      writeSafetensors(
        Object.fromEntries(
          Object.entries(shapes).map(([name, shape]) => [
            name,
            { dtype: 'F32' as const, shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) },
          ]),
        ),
      );
    const files = {
      // 150 bytes whose fc21.weight of 2^31 × 0 takes no bytes but implies a model of 40 GB.
      'huge-sizes.safetensors': zeros({ 'fc1.weight': [1, 1], 'fc21.weight': [2 ** 31, 0] }),
      // fc1 and fc21 of a 784-1-1024 model, without the rest of its weights.
      'thin.safetensors': zeros({ 'fc1.weight': [1, 784], 'fc21.weight': [1024, 1] }),
      // A whole, valid checkpoint of a 784-1-1 model: one latent fewer than the page trains.
      'latent-1.safetensors': (() => {
        const layout = arenaLayout({ D: 784, hidden: [1], L: 1 });
        return encodeCheckpoint(layout, { params: initArena(layout, Math.random), step: 0, metadata: {} });
      })(),
    };
    expect(files['huge-sizes.safetensors'].length).toBeLessThan(160);
    const messages: Record<string, string> = {};
    const kinds: Record<string, string> = {};
    for (const [name, bytes] of Object.entries(files)) {
      writeFileSync(join(work, name), bytes);
      messages[name] = await loadCheckpointFile(join(work, name));
      kinds[name] = await page.$eval('#message', (e) => e.className);
    }
    console.log(`page, lying checkpoints:\n  ${Object.values(messages).join('\n  ')}`);
    for (const name of Object.keys(files)) {
      expect(kinds[name], name).toMatch(/error/);
      expect(messages[name], name).toMatch(/Nothing was changed\.$/);
    }
    expect(messages['huge-sizes.safetensors']).toMatch(
      /^Could not load huge-sizes\.safetensors: checkpoint declares a 1-1-2147483648 model, which this engine cannot build: size L \(latent dimensions\) must be a whole number from 1 to 1024, got 2147483648/,
    );
    expect(messages['thin.safetensors']).toMatch(
      /^Could not load thin\.safetensors: checkpoint declares a 784-1-1024 model, whose weights take \d+ bytes, but the file holds only \d+/,
    );
    expect(messages['latent-1.safetensors']).toMatch(
      /^Could not load latent-1\.safetensors: its latent size is 1, and this page's latent size must be a whole number from 2 to 1024/,
    );
    // The model, its images and the stored run are as they were.
    expect(await page.evaluate(() => window.vaePage!.epochsDone)).toBe(3);
    expect((await canvas('samples')).pixels).toEqual(samples.pixels);
    expect(await storedRun()).toEqual(before);
  });

  it('loading a file to look at it keeps the stored run, and says so; a reload restores that run', async () => {
    const samples = await canvas('samples');
    const before = await storedRun();
    expect(before?.epoch).toBe(3);
    // Another run's checkpoint: fresh weights, as after one epoch.
    const layout = arenaLayout({ D: 784, hidden: [400], L: 20 });
    writeFileSync(
      join(work, 'other-run.safetensors'),
      encodeCheckpoint(layout, { params: initArena(layout, Math.random), step: 64, metadata: { epoch: '1' } }),
    );
    const message = await loadCheckpointFile(join(work, 'other-run.safetensors'));
    expect(message).toBe(
      'Loaded other-run.safetensors: a 784-400-20 model after 1 epoch (64 steps). ' +
        'It is not saved in this browser: storage keeps the run saved after epoch 3 until Continue completes an epoch of this model.',
    );
    expect(await text('#saved')).toMatch(
      /^other-run\.safetensors is not saved in this browser: storage keeps the run saved after epoch 3, which a reload restores/,
    );
    expect(await page.evaluate(() => window.vaePage!.epochsDone)).toBe(1);
    expect((await canvas('samples')).pixels).not.toEqual(samples.pixels);
    expect(await storedRun()).toEqual(before);

    await page.reload();
    await waitReady(3);
    expect(await text('#message')).toMatch(/^Restored the run saved after epoch 3/);
    expect((await canvas('samples')).pixels).toEqual(samples.pixels);
  });

  it('a device lost mid-epoch: the page says so and keeps the saved epoch; a reload continues from it', async () => {
    // Keep a handle on every device the page makes, to lose it from outside as a driver reset would.
    const grab = await page.evaluateOnNewDocument(() => {
      const devices: GPUDevice[] = ((window as unknown as { devices: GPUDevice[] }).devices = []);
      const request = GPUAdapter.prototype.requestDevice;
      GPUAdapter.prototype.requestDevice = async function (this: GPUAdapter, descriptor?: GPUDeviceDescriptor) {
        const device = await request.call(this, descriptor);
        devices.push(device);
        return device;
      };
    });
    await page.reload();
    await waitReady(3);
    await type('epochs', '4');
    const steps = () => page.evaluate(() => window.vaePage!.lossHistory.train.length / 2);
    const before = await steps(); // the restored history (its steps depend on how epoch 3 was reached)
    await page.click('#start');
    await page.waitForFunction(
      (n) => window.vaePage!.lossHistory.train.length / 2 >= n + 8,
      { timeout: 120_000, polling: 100 },
      before,
    );
    await page.evaluate(() => (window as unknown as { devices: GPUDevice[] }).devices.forEach((d) => d.destroy()));
    await page.waitForFunction(() => window.vaePage!.phase === 'failed', { timeout: 60_000 });
    expect(await steps()).toBeLessThan(before + 64); // lost inside epoch 4 (64 steps)
    const message = await text('#message');
    console.log(`page, device lost: ${message}`);
    expect(message).toMatch(
      /^The GPU device was lost \(destroyed: .*\)\. Training stopped; reload the page: epoch 3, saved in this browser, is restored\.$/s,
    );
    expect(await page.$eval('#message', (e) => e.className)).toMatch(/error/);
    for (const id of ['start', 'pause', 'stop', 'reset', 'download']) {
      expect(await page.$eval(`#${id}`, (b) => (b as HTMLButtonElement).disabled), id).toBe(true);
    }
    await shot('device-lost', await page.$('#setup'));

    // A reload: a new device, epoch 3 from browser storage, and Continue trains epoch 4 through.
    await page.removeScriptToEvaluateOnNewDocument(grab.identifier);
    await page.reload();
    await waitReady(3);
    expect(await text('#message')).toMatch(/Restored the run saved after epoch 3/);
    await type('epochs', '4');
    await page.click('#start');
    await waitReady(4);
    const test = (await page.evaluate(() => window.vaePage!.lossHistory.test)).filter((_, i) => i % 2 === 1);
    expect(test.at(-1)).toBeLessThan(170);
  });

  it('asks for persistent storage; a stored record of an older page or a damaged one is reported, and Reset clears it with no model loaded', async () => {
    // Count the page's requests for persistent storage, and refuse them, as a browser may.
    const stub = await page.evaluateOnNewDocument(() => {
      const w = window as unknown as { persistCalls: number };
      w.persistCalls = 0;
      navigator.storage.persist = async () => {
        w.persistCalls++;
        return false;
      };
    });
    await page.reload();
    await waitReady(4);
    expect(await page.evaluate(() => (window as unknown as { persistCalls: number }).persistCalls)).toBe(1);
    await page.waitForFunction(() =>
      /did not grant persistent storage/.test(document.getElementById('saved')!.textContent!),
    );
    expect(await text('#saved')).toMatch(
      /^Restored epoch 4 from this browser's storage\. The browser did not grant persistent storage, so it may clear this when disk space runs low: download checkpoints you want to keep\.$/,
    );
    await page.removeScriptToEvaluateOnNewDocument(stub.identifier);

    /** Rewrites the stored record in the page (as another version of it, or a damaged disk, would) and reloads. */
    const rewriteAndReload = async (edit: string) => {
      await page.evaluate(
        (edit) =>
          new Promise<void>((resolve, reject) => {
            const open = indexedDB.open('webgpu-vae');
            open.onsuccess = () => {
              const store = open.result.transaction('saves', 'readwrite').objectStore('saves');
              const get = store.get('latest');
              get.onsuccess = () => {
                const record = get.result;
                new Function('record', edit)(record);
                const put = store.put(record, 'latest');
                put.onsuccess = () => {
                  open.result.close();
                  resolve();
                };
                put.onerror = () => reject(put.error);
              };
            };
            open.onerror = () => reject(open.error);
          }),
        edit,
      );
      await page.reload();
      await page.waitForFunction(() => /cannot be restored/.test(document.getElementById('message')!.textContent!), {
        timeout: 60_000,
      });
      await waitReady(0);
      expect(await page.$eval('#message', (e) => e.className)).toMatch(/error/);
      expect(await text('#saved')).toBe('Browser storage holds a run this page cannot restore; Reset deletes it.');
      expect(await page.$eval('#reset', (b) => (b as HTMLButtonElement).disabled)).toBe(false);
      expect(await page.$eval('#download', (b) => (b as HTMLButtonElement).disabled)).toBe(true);
      return text('#message');
    };
    // The previous page's format had no version field.
    expect(await rewriteAndReload('delete record.version;')).toBe(
      'The run saved in this browser cannot be restored: it was saved by an older version ' +
        'of this page (format 1; this page reads format 3). Reset deletes it; a model you train replaces it after its first epoch.',
    );
    expect(await rewriteAndReload('record.version = 3; record.history = null;')).toMatch(
      /^The run saved in this browser cannot be restored: its loss history is damaged\./,
    );
    expect(
      await rewriteAndReload(
        'record.history = { train: [], test: [] }; record.checkpoint = record.checkpoint.slice(0, 100);',
      ),
    ).toMatch(/^The run saved in this browser cannot be restored: checkpoint is truncated: .*\. Reset deletes it;/);
    await shot('unrestorable-run', await page.$('#setup'));

    await page.click('#reset');
    await page.waitForFunction(() => /^Reset: /.test(document.getElementById('message')!.textContent!));
    await waitReady(0);
    expect(await storedRun()).toBeNull();
    await page.reload();
    await waitReady(0);
    expect(await text('#message')).toBe('');
    expect(await text('#start')).toBe('Start');
  });

  it("trains a Gaussian model (σ learned) with β = 2 warmed up, from the page's fields; its checkpoint names them and a reload restores them", async () => {
    await page.goto(`${site.url}/?limit=${RUN.limit}&testLimit=${RUN.testLimit}`, { timeout: NAVIGATION_TIMEOUT_MS });
    await waitReady(undefined, 60_000);
    if ((await text('#start')) === 'Continue') {
      await page.click('#reset');
      await waitReady(0);
    }
    await type('epochs', '1');
    await page.select('#likelihood', 'gaussian');
    await type('sigma', 'learned');
    await type('beta', '2');
    await type('klWarmup', '3');
    // The epoch's message names the objective beside the losses, in the CLI's words (caught as it appears: "Done" follows it).
    const epochMessage = page.waitForFunction(
      () => {
        const m = document.getElementById('message')!.textContent!;
        return /^Epoch 1:/.test(m) ? m : false;
      },
      { polling: 'mutation', timeout: 240_000 },
    );
    await page.click('#start');
    expect(await (await epochMessage).jsonValue()).toMatch(
      /^Epoch 1: training loss -?\d+\.\d\d, test loss -?\d+\.\d\d per image \(objective recon \+ β·KL, β = 2, warmed up over 3 steps: -?\d+\.\d\d and -?\d+\.\d\d\)/,
    );
    await waitReady(1);
    // The stored checkpoint's header, read from outside the page's code.
    const header = await page.evaluate(
      () =>
        new Promise<string>((resolve, reject) => {
          const open = indexedDB.open('webgpu-vae');
          open.onsuccess = () => {
            const get = open.result.transaction('saves').objectStore('saves').get('latest');
            get.onsuccess = () => {
              open.result.close();
              const bytes = get.result.checkpoint as Uint8Array;
              const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
              resolve(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
            };
            get.onerror = () => reject(get.error);
          };
          open.onerror = () => reject(open.error);
        }),
    );
    const parsed = JSON.parse(header) as Record<string, { shape?: number[] }> & {
      __metadata__: Record<string, string>;
    };
    expect(parsed.__metadata__).toMatchObject({
      likelihood: 'gaussian',
      sigma: 'learned',
      beta: '2',
      kl_warmup: '3',
      epoch: '1',
    });
    expect(parsed.log_sigma?.shape).toEqual([784]);
    const samples = await canvas('samples');
    expect(
      samples.pixels.some((v) => v > 0),
      'the samples grid shows the clamped means',
    ).toBe(true);

    // A reload restores the run with its objective: the fields show the file's, locked while the model exists.
    await page.reload();
    await waitReady(1);
    const field = (id: string) =>
      page.$eval(`#${id}`, (e) => [(e as HTMLInputElement).value, (e as HTMLInputElement).disabled] as const);
    expect(await field('likelihood')).toEqual(['gaussian', true]);
    expect(await field('sigma')).toEqual(['learned', true]);
    expect(await field('beta')).toEqual(['2', true]);
    expect(await field('klWarmup')).toEqual(['3', true]);
    await page.click('#reset');
    await waitReady(0);
    expect((await field('beta'))[1], 'unlocked with no model').toBe(false);
    await page.select('#likelihood', 'bernoulli');
    await type('beta', '1');
    await type('klWarmup', '0');
  });

  it('without WebGPU the page says what to do', async () => {
    const plain = await launchBrowser({ webgpu: false });
    try {
      const p = await plain.browser.newPage();
      await p.goto(site.url, { timeout: NAVIGATION_TIMEOUT_MS });
      await p.waitForFunction(() => !document.getElementById('no-webgpu')!.hidden, { timeout: 30_000 });
      const message = await p.$eval('#no-webgpu', (e) => e.textContent ?? '');
      expect(message).toMatch(/does not offer WebGPU/);
      expect(message).toMatch(/Chrome or Edge 113/);
      expect(message).toMatch(/--enable-unsafe-webgpu/);
      expect(await p.$eval('#no-webgpu-detail', (e) => e.textContent)).toMatch(/navigator\.gpu|requestAdapter/);
      expect(await p.$eval('#app', (e) => (e as HTMLElement).hidden)).toBe(true);
      await p.screenshot({ path: join(ARTIFACTS, 'page-no-webgpu.png'), fullPage: true });
    } finally {
      await plain.close();
    }
  });
});

describe('static site', () => {
  it('ships MNIST compressed beside the page, with relative URLs', () => {
    const dist = join(work, 'dist');
    for (const f of [
      'train-images-idx3-ubyte',
      'train-labels-idx1-ubyte',
      't10k-images-idx3-ubyte',
      't10k-labels-idx1-ubyte',
    ]) {
      const gz = readFileSync(join(dist, 'mnist', `${f}.gz`));
      expect([gz[0], gz[1]]).toEqual([0x1f, 0x8b]);
    }
    expect(existsSync(join(dist, 'index.html'))).toBe(true);
    expect(readFileSync(join(dist, 'index.html'), 'utf8')).toMatch(/src="\.\/assets\/index-[\w-]+\.js"/);
  });
});
