/**
 * Adapter acquisition (src/gpu/adapter.ts): the default adapter first, the fallback one when the
 * default is null, and an error that lists what was tried when both are. The browser's own
 * navigator.gpu answers; the wrappers only withhold its answers, as a browser update might.
 */
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { BrowserHostError, launchBrowser, reportAdapter } from '../src/node/browser';
import { harnessPage, NAVIGATION_TIMEOUT_MS } from './gpu';

declare global {
  interface Window {
    adapterModule: typeof import('../src/gpu/adapter');
  }
}

const gpu = harnessPage();
beforeAll(async () => {
  // Loaded by the page itself (a string, not a function: vitest would rewrite a function's import()).
  await gpu.page.evaluate(`import('/src/gpu/adapter.ts').then((m) => { window.adapterModule = m; })`);
});

/** Runs acquireAdapter in the page with navigator.gpu wrapped: `withhold` says which requests get null. */
async function acquireWith(withhold: 'default' | 'both') {
  const warnings: string[] = [];
  const onConsole = (m: { type(): string; text(): string }) => {
    if (m.type() === 'warn') warnings.push(m.text());
  };
  gpu.page.on('console', onConsole);
  try {
    const result = await gpu.page.evaluate(async (withhold) => {
      const { acquireAdapter } = window.adapterModule;
      const requests: GPURequestAdapterOptions[] = [];
      const wrapped = {
        requestAdapter(options: GPURequestAdapterOptions = {}) {
          requests.push(options);
          // The forced request gets the browser's default adapter, so this runs the same on a
          // machine whose browser has a GPU and no fallback adapter.
          return withhold === 'both' || !options.forceFallbackAdapter
            ? Promise.resolve(null)
            : navigator.gpu.requestAdapter();
        },
      };
      try {
        const { summary } = await acquireAdapter(wrapped);
        return { requests, summary };
      } catch (e) {
        return {
          requests,
          error: { name: (e as Error).name, kind: (e as { kind?: string }).kind, message: (e as Error).message },
        };
      }
    }, withhold);
    await new Promise((r) => setTimeout(r, 100)); // console events arrive asynchronously
    return { ...result, warnings };
  } finally {
    gpu.page.off('console', onConsole);
  }
}

describe('adapter acquisition', () => {
  it('asks for the default adapter first and takes it', async () => {
    const summary = await gpu.page.evaluate(async () => (await window.adapterModule.acquireAdapter()).summary);
    expect(summary.forcedFallback).toBe(false);
    // The test run's own adapter, as global setup named it (software or hardware, whichever this machine has).
    expect(summary.software).toBe(/\[software/.test(inject('adapter')));
  });

  it('asks again with forceFallbackAdapter when the default is null, and says it is a software adapter', async () => {
    const r = await acquireWith('default');
    expect(r.requests).toEqual([{ powerPreference: 'high-performance' }, { forceFallbackAdapter: true }]);
    expect(r.summary).toMatchObject({ forcedFallback: true, software: true });
    expect(r.warnings.filter((w) => /fallback adapter.*software adapter/.test(w))).toHaveLength(1);
  });

  it('with no adapter at all, lists what was tried and the browser', async () => {
    const r = await acquireWith('both');
    expect(r.error).toMatchObject({ name: 'GpuError', kind: 'unsupported' });
    expect(r.error!.message).toContain("requestAdapter({ powerPreference: 'high-performance' }) → null");
    expect(r.error!.message).toContain('requestAdapter({ forceFallbackAdapter: true }) → null');
    expect(r.error!.message).toMatch(/Browser: Mozilla\/5\.0 .*Chrome\/\d+/);
  });

  it('the headless host names the flags and the browser version when the browser gives no adapter', async () => {
    const plain = await launchBrowser({ webgpu: false }); // WebGPU stays off on Linux without --enable-unsafe-webgpu
    try {
      const page = await plain.browser.newPage();
      await page.goto(`${inject('serverUrl')}/test/harness/index.html`, { timeout: NAVIGATION_TIMEOUT_MS });
      const error = await reportAdapter(page).then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(BrowserHostError);
      const message = (error as Error).message;
      expect(message).toMatch(/Tried: .*→ null; .*→ null/);
      const flags = new RegExp(`Launched ${await plain.browser.version()} with ([^.]*)\\.`).exec(message)?.[1];
      expect(flags).toContain('--disable-background-networking');
      expect(flags).not.toContain('--enable-unsafe-webgpu'); // the flags this browser really had
    } finally {
      await plain.close();
    }
  });
});
