/**
 * The page's model picker and colour image folders, used as a person would (each page in its own
 * browser context, so its storage is empty): a spec that does not chain is refused beside its field
 * with the layer's name and Start stays disabled; the `leaky` preset trains, its downloaded
 * checkpoint holds its spec, and a reload brings it back as `leaky`; a checkpoint of a model no
 * preset makes is shown as custom JSON; a colour folder trains and draws in colour. Runs against
 * the shared Vite server (the page's own modules, no build).
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import puppeteer, { type Browser, type ElementHandle, type Page } from 'puppeteer';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { readSafetensors } from '../src/io/safetensors';
import { encodeCheckpoint } from '../src/model/checkpoint';
import { arenaLayout, initArena } from '../src/model/graph';
import { parseSpec, specSizes } from '../src/model/spec';
import { NAVIGATION_TIMEOUT_MS } from './gpu';
import { writeColourShapeFolder } from './shapes';
import { fileTempDir } from './temp';

let browser: Browser;
const work = fileTempDir('page-model');

beforeAll(async () => {
  browser = await puppeteer.connect({ browserWSEndpoint: inject('wsEndpoint'), protocolTimeout: 0 });
}, 60_000);

afterAll(() => browser?.disconnect());

/** A page of its own (empty browser storage, downloads into `downloads`), ready, for `run`; closed after. */
async function ownPage(query: string, downloads: string, run: (p: Page) => Promise<void>): Promise<void> {
  const own = await browser.createBrowserContext({ downloadBehavior: { policy: 'allow', downloadPath: downloads } });
  try {
    const p = await own.newPage();
    p.on('pageerror', (e) => console.error(`[page] ${e}`));
    p.on('console', (m) => {
      if (m.type() === 'error') console.error(`[page console] ${m.text()}`);
    });
    await p.goto(`${inject('serverUrl')}/${query}`, { timeout: NAVIGATION_TIMEOUT_MS });
    await ready(p);
    await run(p);
  } finally {
    await own.close();
  }
}

const ready = (p: Page, epochsDone?: number) =>
  p.waitForFunction(
    (n) => window.vaePage?.phase === 'ready' && (n === null || window.vaePage.epochsDone === n),
    { timeout: 600_000, polling: 250 },
    epochsDone ?? null,
  );

/** Sets a field's text as typing would end, one input event. */
const type = (p: Page, id: string, value: string) =>
  p.$eval(
    `#${id}`,
    (e, v) => {
      (e as HTMLInputElement).value = v as string;
      e.dispatchEvent(new Event('input'));
    },
    value,
  );

const text = (p: Page, selector: string) => p.$eval(selector, (e) => (e as HTMLElement).textContent ?? '');
const disabled = (p: Page, id: string) => p.$eval(`#${id}`, (e) => (e as HTMLInputElement).disabled);

/** The one .safetensors file the page downloads into `dir`. */
async function downloaded(p: Page, dir: string): Promise<{ name: string; bytes: Uint8Array }> {
  await p.click('#download');
  const deadline = Date.now() + 30_000;
  for (;;) {
    const name = readdirSync(dir).find((f) => f.endsWith('.safetensors'));
    if (name) return { name, bytes: new Uint8Array(readFileSync(join(dir, name))) };
    if (Date.now() > deadline) throw new Error('no checkpoint was downloaded');
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The `leaky` preset on MNIST as issue's example writes it, PyTorch's defaults filled in. */
const LEAKY = {
  input: [1, 28, 28],
  latent: 20,
  encoder: [
    ['Flatten', 1, -1],
    ['Linear', 784, 512],
    ['LeakyReLU', 0.2],
    ['Linear', 512, 256],
    ['LeakyReLU', 0.2],
  ],
  decoder: [
    ['Linear', 20, 256],
    ['LeakyReLU', 0.2],
    ['Linear', 256, 784],
  ],
  likelihood: 'bernoulli',
};

describe('page: the model picker', () => {
  it('refuses a spec that does not chain beside its field, naming the layer, and keeps Start disabled', async () => {
    await ownPage('?limit=256&testLimit=64', work, async (p) => {
      expect(await disabled(p, 'start')).toBe(false);
      expect(await p.$eval('#model-json-row', (e) => (e as HTMLElement).hidden)).toBe(true);
      await p.select('#model', 'custom');
      // The text area starts from a preset's spec at MNIST's shape: valid, and Start stays enabled.
      expect(await p.$eval('#model-json-row', (e) => (e as HTMLElement).hidden)).toBe(false);
      const start = await p.$eval('#model-json', (e) => (e as HTMLTextAreaElement).value);
      expect(JSON.parse(start)).toMatchObject({ input: [1, 28, 28] });
      expect(await text(p, '#model-json-reason')).toBe('');
      expect(await disabled(p, 'start')).toBe(false);
      // A spec names its own widths and latent size: those fields are disabled, saying why.
      expect(await disabled(p, 'hidden')).toBe(true);
      expect(await text(p, '#hidden-reason')).toMatch(/^not used: the spec's layers give its widths/);
      expect(await disabled(p, 'latent')).toBe(true);

      const bad = { ...LEAKY, encoder: [['Flatten'], ['Linear', 784, 512], ['ReLU'], ['Linear', 500, 256], ['ReLU']] };
      await type(p, 'model-json', JSON.stringify(bad));
      expect(await text(p, '#model-json-reason')).toMatch(/encoder\[3\] \(Linear\).*500.*512/);
      expect(await p.$eval('#model-json', (e) => e.getAttribute('aria-invalid'))).toBe('true');
      expect(await disabled(p, 'start')).toBe(true);

      await type(p, 'model-json', '{"input": [1, 28, 28], "latent": 20,');
      expect(await text(p, '#model-json-reason')).toMatch(/^not JSON: /);
      expect(await disabled(p, 'start')).toBe(true);

      // A spec for other images than the dataset's is refused before Start, too.
      await type(
        p,
        'model-json',
        JSON.stringify({
          ...LEAKY,
          input: [1, 16, 16],
          encoder: [['Flatten'], ['Linear', 256, 32]],
          decoder: [['Linear', 20, 256]],
        }),
      );
      expect(await text(p, '#model-json-reason')).toMatch(/256 features, the images 784/);
      expect(await disabled(p, 'start')).toBe(true);

      // A conv spec whose output does not chain: 28 → 14 → 6 (kernel 5, stride 2), so 8·6·6 = 288
      // features reach a Linear written for 8·7·7 = 392; the Linear is named.
      await type(
        p,
        'model-json',
        JSON.stringify({
          ...LEAKY,
          encoder: [
            ['Conv2d', 1, 4, 4, 2, 1],
            ['ReLU'],
            ['Conv2d', 4, 8, 5, 2, 1],
            ['ReLU'],
            ['Flatten'],
            ['Linear', 392, 16],
          ],
        }),
      );
      expect(await text(p, '#model-json-reason')).toMatch(
        /encoder\[5\] \(Linear\) reads 392 features, got shape \[288\]/,
      );
      expect(await disabled(p, 'start')).toBe(true);

      // Back to the mlp: its fields apply again and Start is enabled.
      await p.select('#model', 'mlp');
      expect(await disabled(p, 'hidden')).toBe(false);
      expect(await text(p, '#hidden-reason')).toBe('');
      expect(await disabled(p, 'start')).toBe(false);
    });
  }, 300_000);

  it('trains the leaky preset, downloads a checkpoint holding its spec, and a reload restores it as leaky', async () => {
    const downloads = fileTempDir('page-model-downloads');
    await ownPage('?limit=256&testLimit=64', downloads, async (p) => {
      await p.select('#model', 'leaky');
      expect(await disabled(p, 'hidden')).toBe(true);
      expect(await text(p, '#hidden-reason')).toMatch(/leaky preset's layers/);
      expect(await disabled(p, 'latent')).toBe(false); // a preset takes the latent size
      await type(p, 'epochs', '1');
      await type(p, 'batchSize', '64');
      await p.click('#start');
      await ready(p, 1);
      expect(await text(p, '#message')).toMatch(/^Done: 1 epoch/);
      const reports = await p.evaluate(() => window.vaePage!.epochReports);
      expect(reports).toHaveLength(1);
      expect(Number.isFinite(reports[0].trainLoss) && reports[0].trainLoss > 0).toBe(true);
      expect((await p.evaluate(() => window.vaePage!.lossHistory)).train.length).toBeGreaterThan(0);
      expect(await disabled(p, 'model')).toBe(true); // fixed while the model exists

      const file = await downloaded(p, downloads);
      expect(file.name).toBe('vae-mnist-leaky-epoch1.safetensors');
      const { tensors, metadata } = readSafetensors(file.bytes);
      expect(JSON.parse(metadata.model)).toEqual(LEAKY);
      expect([...tensors.keys()]).toEqual(
        expect.arrayContaining([
          'encoder.1.weight',
          'encoder.3.bias',
          'fc_mu.weight',
          'fc_logvar.bias',
          'decoder.2.weight',
        ]),
      );
      expect(tensors.has('fc1.weight')).toBe(false);

      await p.reload();
      await ready(p, 1);
      expect(await text(p, '#message')).toMatch(/Restored the run saved after epoch 1/);
      expect(await p.$eval('#model', (e) => (e as HTMLSelectElement).value)).toBe('leaky');
      expect(await disabled(p, 'hidden')).toBe(true);
    });
  }, 900_000);

  it('shows a loaded checkpoint of a model no preset makes as custom JSON', async () => {
    const spec = parseSpec({
      input: [1, 28, 28],
      latent: 3,
      encoder: [['Flatten'], ['Linear', 784, 24], ['LeakyReLU', 0.1]],
      decoder: [['Linear', 3, 24], ['ReLU'], ['Linear', 24, 784]],
      likelihood: 'bernoulli',
    });
    const layout = arenaLayout(specSizes(spec));
    const file = join(work, 'custom.safetensors');
    writeFileSync(
      file,
      encodeCheckpoint(layout, {
        params: initArena(layout, Math.random),
        step: 0,
        metadata: { epoch: '1', model: JSON.stringify(spec) },
      }),
    );
    await ownPage('?limit=256&testLimit=64', work, async (p) => {
      const input = (await p.$('#checkpoint-file')) as ElementHandle<HTMLInputElement>;
      await input.uploadFile(file);
      await p.waitForFunction(
        () => /^(Loaded|Could not load) /.test(document.getElementById('message')!.textContent!),
        {
          timeout: 300_000,
        },
      );
      await ready(p, 1);
      expect(await text(p, '#message')).toMatch(
        /^Loaded custom\.safetensors: a custom model .*its spec is shown under Model/,
      );
      expect(await p.$eval('#model', (e) => (e as HTMLSelectElement).value)).toBe('custom');
      const shown = await p.$eval('#model-json', (e) => (e as HTMLTextAreaElement).value);
      expect(parseSpec(JSON.parse(shown))).toEqual(spec);
      expect(await p.$eval('#latent', (e) => (e as HTMLInputElement).value)).toBe('3');
    });
  }, 600_000);
});

describe('page: a colour image folder', () => {
  it('decodes the folder as RGB, trains an epoch of the conv preset, draws colour grids and records the channels', async () => {
    const dir = join(work, 'colour-shapes');
    writeColourShapeFolder(dir, 40);
    const downloads = fileTempDir('page-colour-downloads');
    await ownPage('', downloads, async (p) => {
      await p.select('#dataset', 'images');
      await type(p, 'image-size', '16');
      await p.select('#image-channels', '3');
      const input = (await p.$('#dataset-folder')) as ElementHandle<HTMLInputElement>;
      await input.uploadFile(dir);
      await p.waitForFunction(
        () => /training and|Not loaded/.test(document.getElementById('dataset-status')!.textContent ?? ''),
        {
          timeout: 60_000,
        },
      );
      expect(await text(p, '#dataset-status')).toMatch(/training and \d+ test colour images of 16×16/);
      // The picker offers the conv preset, made for the folder's 3×16×16.
      expect(await p.$$eval('#model option', (os) => os.map((o) => (o as HTMLOptionElement).value))).toContain('conv');
      await p.select('#model', 'conv');
      expect(await text(p, '#model-reason')).toBe('');
      await type(p, 'epochs', '1');
      await type(p, 'batchSize', '8');
      await p.click('#start');
      await ready(p, 1);
      expect(await text(p, '#message')).toMatch(/^Done: 1 epoch/);
      // The top row of the reconstruction grid is the test images themselves: coloured shapes on coloured backgrounds.
      const colourful = await p.$eval('#recon', (c) => {
        const el = c as HTMLCanvasElement;
        const d = el.getContext('2d')!.getImageData(0, 0, el.width, el.height / 2).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4)
          if (Math.max(Math.abs(d[i]! - d[i + 1]!), Math.abs(d[i + 1]! - d[i + 2]!)) > 40) n++;
        return n / (d.length / 4);
      });
      expect(colourful).toBeGreaterThan(0.3);
      // The model's own images, the samples and the reconstructions, are RGB too: a grayscale
      // drawing would have every pixel's three channels equal.
      for (const [id, rows] of [
        ['#samples', [0, 1]],
        ['#recon', [0.5, 1]],
      ] as const) {
        const tinted = await p.$eval(
          id,
          (c, [from, to]) => {
            const el = c as HTMLCanvasElement;
            const y = Math.floor(el.height * from!);
            const d = el.getContext('2d')!.getImageData(0, y, el.width, Math.floor(el.height * to!) - y).data;
            let n = 0;
            for (let i = 0; i < d.length; i += 4) if (d[i] !== d[i + 1] || d[i + 1] !== d[i + 2]) n++;
            return n / (d.length / 4);
          },
          rows,
        );
        expect(tinted, id).toBeGreaterThan(0.5);
      }
      const { metadata } = readSafetensors((await downloaded(p, downloads)).bytes);
      expect(metadata).toMatchObject({ channels: '3', image_size: '16' });
      expect(JSON.parse(metadata.model!).encoder[0]).toEqual(['Conv2d', 3, 32, 4, 2, 1]);
    });
  }, 900_000);
});
