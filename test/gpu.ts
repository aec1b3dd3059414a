/**
 * Node side of the GPU tests: a page of the shared headless browser with the kernel harness
 * loaded, plus the comparison helper every kernel test uses.
 */
import puppeteer, { type Browser, type Page } from 'puppeteer';
import { afterAll, beforeAll, expect, inject } from 'vitest';
import type { RunRequest } from './harness/harness';

export interface GpuPage {
  page: Page;
  browser: Browser;
  run(request: Omit<RunRequest, 'buffers'> & { buffers: Record<string, ArrayBufferView | number> }): Promise<Record<string, Uint8Array>>;
  close(): Promise<void>;
}

/**
 * How long a test page may take to load. Puppeteer's default, 30 s, is too short on a loaded
 * 2-core CI machine: Vite transforms the page's modules on first request while other test files'
 * GPU work (a software adapter's, on the same cores) runs, and a fresh clone has no cache.
 */
export const NAVIGATION_TIMEOUT_MS = 120_000;

/** A page of the shared browser at `path`, once the page has defined `window[ready]`. */
export async function openHarness(path = '/test/harness/index.html', ready = 'harness'): Promise<GpuPage> {
  const browser = await puppeteer.connect({ browserWSEndpoint: inject('wsEndpoint'), protocolTimeout: 0 });
  const page = await browser.newPage();
  page.on('console', (m) => { if (m.type() === 'error') console.error(`[browser] ${m.text()}`); });
  page.on('pageerror', (e) => console.error(`[browser] ${e}`));
  await page.goto(`${inject('serverUrl')}${path}`, { timeout: NAVIGATION_TIMEOUT_MS });
  await page.waitForFunction((name) => name in window, { timeout: 60_000 }, ready);
  return {
    page,
    browser,
    async run(request) {
      const buffers: RunRequest['buffers'] = {};
      for (const [name, v] of Object.entries(request.buffers)) {
        buffers[name] = typeof v === 'number'
          ? { bytes: v }
          : { data: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') };
      }
      const out = await page.evaluate((r: RunRequest) => window.harness.run(r), { ...request, buffers });
      return Object.fromEntries(Object.entries(out).map(([k, b64]) => [k, new Uint8Array(Buffer.from(b64, 'base64'))]));
    },
    async close() {
      await page.close();
      browser.disconnect();
    },
  };
}

/** The library's test page (test/harness/api.ts): the engine's public API, loaded as `window.vaeTest`. */
export const API_HARNESS = ['/test/harness/api.html', 'vaeTest'] as const;

/**
 * A harness page for the tests of the file or describe block this is called in: opened before
 * them (beforeAll) and closed after them (afterAll), whether they pass or fail. Use it inside tests
 * and hooks only; it opens when they start.
 */
export function harnessPage(path?: string, ready?: string): GpuPage {
  let opened: GpuPage | undefined;
  beforeAll(async () => { opened = await openHarness(path, ready); });
  afterAll(async () => { await opened?.close(); });
  const open = () => {
    if (!opened) throw new Error(`the harness page ${path ?? ''} is not open: it opens in beforeAll, for the tests and hooks`);
    return opened;
  };
  return {
    get page() { return open().page; },
    get browser() { return open().browser; },
    run: (request) => open().run(request),
    close: () => open().close(),
  };
}

export const f32 = (bytes: Uint8Array, count?: number) =>
  new Float32Array(bytes.buffer, bytes.byteOffset, count ?? bytes.byteLength / 4);

export interface Closeness {
  maxAbs: number;
  maxRel: number;
}

/**
 * |actual − expected| ≤ atol + rtol·|expected| elementwise; NaN or Inf never passes. On
 * failure the message lists the first mismatches and the largest error.
 */
export function expectClose(name: string, actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, atol: number): Closeness {
  expect(actual.length, `${name}: length`).toBeGreaterThanOrEqual(expected.length);
  let maxAbs = 0;
  let maxRel = 0;
  const bad: string[] = [];
  let badCount = 0;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i];
    const e = expected[i];
    const err = Math.abs(a - e);
    if (!Number.isFinite(a) || !(err <= atol + rtol * Math.abs(e))) {
      badCount++;
      if (bad.length < 8) bad.push(`  [${i}] gpu ${a} ref ${e} (err ${err.toExponential(2)})`);
    }
    if (Number.isFinite(err)) {
      maxAbs = Math.max(maxAbs, err);
      if (e !== 0) maxRel = Math.max(maxRel, err / Math.abs(e));
    } else maxAbs = Infinity;
  }
  if (badCount > 0) {
    expect.fail(`${name}: ${badCount} of ${expected.length} outside atol ${atol} + rtol ${rtol}·|ref|; max abs err ${maxAbs.toExponential(3)}\n${bad.join('\n')}`);
  }
  return { maxAbs, maxRel };
}

/** Deterministic test inputs (mulberry32), so a failure reproduces. */
export function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    uniform: (n: number, lo = -1, hi = 1) => Float32Array.from({ length: n }, () => lo + (hi - lo) * next()),
  };
}

/** A Fisher–Yates shuffle of 0 … n−1, drawn from rng(seed). */
export function permutation(n: number, seed: number): Uint32Array {
  const r = rng(seed);
  const p = Uint32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r.next() * (i + 1));
    [p[i], p[j]] = [p[j]!, p[i]!];
  }
  return p;
}

/**
 * Collects the largest error seen per check and logs them after the file's tests, so the
 * figures (and the tolerance each was held to) can be quoted. Returns `record`.
 */
export function errorReport(title: string): (name: string, err: number, tol: number | string) => void {
  const figures = new Map<string, { err: number; tol: number | string; runs: number }>();
  afterAll(() => console.log(`${title} max errors:\n${[...figures]
    .map(([name, f]) => `  ${name}: ${f.err.toExponential(2)} (${typeof f.tol === 'number' ? `tol ${f.tol.toExponential(2)}` : f.tol}) over ${f.runs} runs`)
    .join('\n')}`));
  return (name, err, tol) => {
    const f = figures.get(name) ?? { err: 0, tol, runs: 0 };
    f.err = Math.max(f.err, err);
    if (typeof tol === 'number' && typeof f.tol === 'number') f.tol = Math.max(f.tol, tol);
    f.runs++;
    figures.set(name, f);
  };
}
