/**
 * Two tabs of the training page in one browser profile share its one saved run. The first tab
 * owns it; a second tab opened meanwhile must neither overwrite nor delete it (Reset), and takes
 * it over, restored, once the first tab closes. The run kept in IndexedDB is read from outside
 * the page's code.
 */
import puppeteer, { type Browser, type BrowserContext, type Page } from 'puppeteer';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { NAVIGATION_TIMEOUT_MS } from './gpu';

let browser: Browser;
let context: BrowserContext;

beforeAll(async () => {
  browser = await puppeteer.connect({ browserWSEndpoint: inject('wsEndpoint'), protocolTimeout: 0 });
  context = await browser.createBrowserContext(); // one profile's storage for both tabs, gone when it closes
});
afterAll(async () => {
  await context?.close().catch(() => {});
  browser?.disconnect();
});

const URL_QUERY = '?limit=256&testLimit=64';

async function openTab(): Promise<Page> {
  const p = await context.newPage();
  p.on('pageerror', (e) => console.error(`[page] ${e}`));
  await p.goto(`${inject('serverUrl')}/${URL_QUERY}`, { timeout: NAVIGATION_TIMEOUT_MS });
  return p;
}

const message = (p: Page) => p.$eval('#message', (e) => e.textContent ?? '');

/** The epoch of the run the profile keeps in IndexedDB (null: none), read in `p` without the page's code. */
const storedEpoch = (p: Page) =>
  p.evaluate(
    () =>
      new Promise<number | null>((resolve, reject) => {
        const open = indexedDB.open('webgpu-vae');
        open.onsuccess = () => {
          const get = open.result.transaction('saves').objectStore('saves').get('latest');
          get.onsuccess = () => {
            open.result.close();
            resolve(get.result ? get.result.epoch : null);
          };
          get.onerror = () => reject(get.error);
        };
        open.onerror = () => reject(open.error);
      }),
  );

it("a second tab leaves the first tab's saved run alone while the first is open, then restores it once the first closes", async () => {
  const first = await openTab();
  await first.waitForFunction(() => window.vaePage?.phase === 'ready', { timeout: 120_000 });
  for (const [id, value] of [
    ['epochs', '1'],
    ['batchSize', '64'],
    ['hidden', '32'],
    ['latent', '4'],
  ]) {
    await first.$eval(
      `#${id}`,
      (e, v) => {
        (e as HTMLInputElement).value = v as string;
        e.dispatchEvent(new Event('input'));
      },
      value,
    );
  }
  await first.click('#start');
  await first.waitForFunction(() => window.vaePage?.phase === 'ready' && window.vaePage.epochsDone === 1, {
    timeout: 300_000,
    polling: 250,
  });
  expect(await storedEpoch(first)).toBe(1);

  // A second tab: once it has started (waiting for the first, or with the run restored), press
  // Reset if it lets us, as a person might.
  const second = await openTab();
  await second.waitForFunction(
    () => window.vaePage?.phase === 'waiting' || (window.vaePage?.phase === 'ready' && window.vaePage.epochsDone === 1),
    { timeout: 300_000, polling: 250 },
  );
  if (!(await second.$eval('#reset', (b) => (b as HTMLButtonElement).disabled))) {
    await second.click('#reset');
    await second.waitForFunction(() => /^Reset: /.test(document.getElementById('message')!.textContent!), {
      timeout: 60_000,
    });
  }
  expect(await storedEpoch(second), "the first tab's run, after the second tab started").toBe(1);
  expect(await second.evaluate(() => window.vaePage!.phase)).toBe('waiting');
  expect(await message(second)).toMatch(
    /^This page is open in another tab, which owns the run saved in this browser\./,
  );
  for (const id of ['start', 'reset', 'checkpoint-file', 'dataset']) {
    expect(await second.$eval(`#${id}`, (b) => (b as HTMLButtonElement).disabled), `#${id} in the waiting tab`).toBe(
      true,
    );
  }
  // The first tab goes on as before: it still owns the run and trains further. (In front, as a
  // person would have it: a background tab's frames and timers are throttled.)
  await first.bringToFront();
  await first.$eval('#epochs', (e) => {
    (e as HTMLInputElement).value = '2';
    e.dispatchEvent(new Event('input'));
  });
  await first.click('#start');
  await first.waitForFunction(() => window.vaePage?.phase === 'ready' && window.vaePage.epochsDone === 2, {
    timeout: 300_000,
    polling: 250,
  });
  expect(await storedEpoch(first)).toBe(2);
  expect(await second.evaluate(() => window.vaePage!.phase)).toBe('waiting');

  // Closing the first tab hands the run to the second, which restores the epoch the first saved last.
  await first.close();
  await second.waitForFunction(() => window.vaePage?.phase === 'ready' && window.vaePage.epochsDone === 2, {
    timeout: 300_000,
    polling: 250,
  });
  expect(await message(second)).toMatch(/^Restored the run saved after epoch 2\./);
  await second.close();
}, 900_000);
