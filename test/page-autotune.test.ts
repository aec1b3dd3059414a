/**
 * The training page's "Autotune kernels at start-up" checkbox, in the dev server's page on the
 * real adapter: off by default; checked, a start tunes (the report goes to the console) and
 * leaves the plan in the page's IndexedDB, read here from outside the page's code; the next
 * start with the same sizes takes it from there without timing anything. A plan that storage
 * refuses to keep (a full quota) is used all the same, with one warning.
 */
import type { Browser, BrowserContext, Page } from 'puppeteer';
import { afterAll, beforeAll, expect, it } from 'vitest';
import puppeteer from 'puppeteer';
import { inject } from 'vitest';
import { NAVIGATION_TIMEOUT_MS } from './gpu';

let browser: Browser;
let context: BrowserContext;
let page: Page;
const logged: string[] = [];

beforeAll(async () => {
  browser = await puppeteer.connect({ browserWSEndpoint: inject('wsEndpoint'), protocolTimeout: 0 });
  context = await browser.createBrowserContext(); // storage of its own, gone when it closes
  page = await context.newPage();
  page.on('console', (m) => logged.push(m.text()));
});
afterAll(async () => {
  await context?.close();
  browser?.disconnect();
});

const ready = (epochsDone: number) =>
  page.waitForFunction(
    (n) => window.vaePage?.phase === 'ready' && window.vaePage.epochsDone === n,
    { timeout: 300_000, polling: 250 },
    epochsDone,
  );

async function type(id: string, value: string): Promise<void> {
  await page.click(`#${id}`, { count: 3 });
  await page.keyboard.press('Backspace');
  await page.type(`#${id}`, value);
}

/** The records the page keeps in IndexedDB, by name. */
const storedKeys = (p = page) =>
  p.evaluate(
    () =>
      new Promise<string[]>((resolve, reject) => {
        const open = indexedDB.open('webgpu-vae');
        open.onsuccess = () => {
          const keys = open.result.transaction('saves').objectStore('saves').getAllKeys();
          keys.onsuccess = () => {
            open.result.close();
            resolve(keys.result.map(String));
          };
          keys.onerror = () => reject(keys.error);
        };
        open.onerror = () => reject(open.error);
      }),
  );

/** A fresh page on a small model, the box checked, one epoch trained. */
async function trainOnce(): Promise<void> {
  await page.goto(`${inject('serverUrl')}/?limit=256&testLimit=64`, { timeout: NAVIGATION_TIMEOUT_MS });
  await page.waitForFunction(() => window.vaePage?.phase === 'ready', { timeout: 120_000 });
  expect(await page.$eval('#autotune', (e) => (e as HTMLInputElement).checked)).toBe(false); // off by default
  for (const [id, value] of [
    ['epochs', '1'],
    ['batchSize', '64'],
    ['hidden', '32'],
    ['latent', '4'],
  ])
    await type(id, value);
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
  await page.evaluate(
    () =>
      new Promise<void>((resolve, reject) => {
        const open = indexedDB.open('webgpu-vae');
        open.onsuccess = () => {
          const tx = open.result.transaction('saves', 'readwrite');
          tx.objectStore('saves').delete('latest');
          tx.oncomplete = () => {
            open.result.close();
            resolve();
          };
          tx.onerror = () => reject(tx.error);
        };
      }),
  );
  logged.length = 0;
  await trainOnce();
  expect(logged.filter((l) => /^webgpu-vae: kernel tuner, timed by/.test(l))).toHaveLength(0);
  expect(
    logged.some((l) => /^webgpu-vae: kernel plan from the tune cache/.test(l)),
    logged.join('\n'),
  ).toBe(true);
  expect((await storedKeys()).filter((k) => k.startsWith('tuned-plan '))).toEqual(plans);
}, 600_000);

it('a tuned plan that browser storage refuses to keep (a full quota) is used all the same: the page warns once and trains', async () => {
  const own = await browser.createBrowserContext();
  try {
    const p = await own.newPage();
    const lines: string[] = [];
    p.on('console', (m) => lines.push(m.text()));
    // What a full quota does to IndexedDB, from outside the page's code: the transaction that
    // writes a tuned plan is aborted. The saved run and every read are left alone.
    await p.evaluateOnNewDocument(() => {
      const put = IDBObjectStore.prototype.put;
      IDBObjectStore.prototype.put = function (this: IDBObjectStore, value: unknown, key?: IDBValidKey) {
        const request = put.call(this, value, key);
        if (typeof key === 'string' && key.startsWith('tuned-plan ')) this.transaction.abort();
        return request;
      };
      // Every line the message area shows, for the test to read after the fact.
      const shown: string[] = ((window as unknown as { shownMessages: string[] }).shownMessages = []);
      document.addEventListener('DOMContentLoaded', () => {
        const message = document.getElementById('message')!;
        new MutationObserver(() => shown.push(message.textContent ?? '')).observe(message, {
          childList: true,
          characterData: true,
          subtree: true,
        });
      });
    });
    await p.goto(`${inject('serverUrl')}/?limit=256&testLimit=64`, { timeout: NAVIGATION_TIMEOUT_MS });
    await p.waitForFunction(() => window.vaePage?.phase === 'ready', { timeout: 120_000 });
    for (const [id, value] of [
      ['epochs', '1'],
      ['batchSize', '64'],
      ['hidden', '32'],
      ['latent', '4'],
    ]) {
      await p.$eval(
        `#${id}`,
        (e, v) => {
          (e as HTMLInputElement).value = v as string;
          e.dispatchEvent(new Event('input'));
        },
        value,
      );
    }
    await p.click('#autotune');
    const trainedOrFailed = () =>
      p.waitForFunction(
        () =>
          window.vaePage?.phase === 'ready' &&
          (window.vaePage.epochsDone === 1 || /failed/.test(document.getElementById('message')!.textContent!)),
        { timeout: 600_000, polling: 250 },
      );
    const message = () => p.$eval('#message', (e) => e.textContent ?? '');
    const shown = () => p.evaluate(() => (window as unknown as { shownMessages: string[] }).shownMessages.splice(0));
    const warnings = () => lines.filter((l) => /^webgpu-vae: the tuned plan cannot be kept in browser storage/.test(l));

    // Twice: a second model tunes again (nothing was kept), and the page does not warn again.
    for (const start of [1, 2]) {
      await shown();
      await p.click('#start');
      await trainedOrFailed();
      expect(await p.evaluate(() => window.vaePage!.epochsDone), `start ${start}: ${await message()}`).toBe(1);
      const autotuned = (await shown()).filter((m) => /^Autotuned /.test(m));
      expect(autotuned, `start ${start}`).toHaveLength(1);
      expect(autotuned[0]).toMatch(
        /The report is in the console\. The plan could not be kept in this browser's storage \(.+\): the next start tunes again\.$/,
      );
      expect(
        lines.filter((l) => /^webgpu-vae: kernel tuner, timed by/.test(l)),
        `start ${start}`,
      ).toHaveLength(start);
      expect(warnings(), lines.join('\n')).toHaveLength(1);
      const keys = await storedKeys(p);
      expect(keys.filter((k) => k.startsWith('tuned-plan '))).toEqual([]);
      expect(keys).toContain('latest'); // the epoch was saved: only the plan's write failed
      if (start === 1) {
        await p.click('#reset');
        await p.waitForFunction(() => window.vaePage?.phase === 'ready' && window.vaePage.epochsDone === 0, {
          timeout: 60_000,
        });
        expect(await p.$eval('#autotune', (e) => (e as HTMLInputElement).checked)).toBe(true);
      }
    }
  } finally {
    await own.close();
  }
}, 900_000);
