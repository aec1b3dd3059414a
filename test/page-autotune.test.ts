/**
 * The training page's "Autotune kernels at start-up" checkbox, in the dev server's page on the
 * real adapter: off by default; checked, a start tunes (the report goes to the console) and
 * leaves the plan in the page's IndexedDB, read here from outside the page's code; the next
 * start with the same sizes takes it from there without timing anything.
 */
import type { BrowserContext, Page } from 'puppeteer';
import { afterAll, beforeAll, expect, it } from 'vitest';
import puppeteer from 'puppeteer';
import { inject } from 'vitest';
import { NAVIGATION_TIMEOUT_MS } from './gpu';

let context: BrowserContext;
let page: Page;
const logged: string[] = [];

beforeAll(async () => {
  const browser = await puppeteer.connect({ browserWSEndpoint: inject('wsEndpoint'), protocolTimeout: 0 });
  context = await browser.createBrowserContext(); // storage of its own, gone when it closes
  page = await context.newPage();
  page.on('console', (m) => logged.push(m.text()));
});
afterAll(async () => { await context?.close(); });

const ready = (epochsDone: number) => page.waitForFunction((n) => window.vaePage?.phase === 'ready' && window.vaePage.epochsDone === n,
  { timeout: 300_000, polling: 250 }, epochsDone);

async function type(id: string, value: string): Promise<void> {
  await page.click(`#${id}`, { count: 3 });
  await page.keyboard.press('Backspace');
  await page.type(`#${id}`, value);
}

/** The records the page keeps in IndexedDB, by name. */
const storedKeys = () => page.evaluate(() => new Promise<string[]>((resolve, reject) => {
  const open = indexedDB.open('webgpu-vae');
  open.onsuccess = () => {
    const keys = open.result.transaction('saves').objectStore('saves').getAllKeys();
    keys.onsuccess = () => { open.result.close(); resolve(keys.result.map(String)); };
    keys.onerror = () => reject(keys.error);
  };
  open.onerror = () => reject(open.error);
}));

/** A fresh page on a small model, the box checked, one epoch trained. */
async function trainOnce(): Promise<void> {
  await page.goto(`${inject('serverUrl')}/?limit=256&testLimit=64`, { timeout: NAVIGATION_TIMEOUT_MS });
  await page.waitForFunction(() => window.vaePage?.phase === 'ready', { timeout: 120_000 });
  expect(await page.$eval('#autotune', (e) => (e as HTMLInputElement).checked)).toBe(false); // off by default
  for (const [id, value] of [['epochs', '1'], ['batchSize', '64'], ['hidden', '32'], ['latent', '4']]) await type(id, value);
  await page.click('#autotune');
  await page.click('#start');
  await ready(1);
}

it('checked, a start tunes and keeps the plan in IndexedDB; the next start with the same sizes takes it from there', async () => {
  await trainOnce();
  const tuned = logged.filter((l) => /^webgpu-vae: kernel tuner, timed by/.test(l));
  expect(tuned, logged.join('\n')).toHaveLength(1);
  const plans = (await storedKeys()).filter((k) => k.startsWith('tuned-plan '));
  expect(plans).toHaveLength(1);

  // A new session with the same sizes: drop the kept run (from outside the page), reload, start again.
  await page.evaluate(() => new Promise<void>((resolve, reject) => {
    const open = indexedDB.open('webgpu-vae');
    open.onsuccess = () => {
      const tx = open.result.transaction('saves', 'readwrite');
      tx.objectStore('saves').delete('latest');
      tx.oncomplete = () => { open.result.close(); resolve(); };
      tx.onerror = () => reject(tx.error);
    };
  }));
  logged.length = 0;
  await trainOnce();
  expect(logged.filter((l) => /^webgpu-vae: kernel tuner, timed by/.test(l))).toHaveLength(0);
  expect(logged.some((l) => /^webgpu-vae: kernel plan from the tune cache/.test(l)), logged.join('\n')).toBe(true);
  expect((await storedKeys()).filter((k) => k.startsWith('tuned-plan '))).toEqual(plans);
}, 600_000);
