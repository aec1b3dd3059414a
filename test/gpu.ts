/**
 * Node side of the GPU tests: the WebGPU implementations the kernel suites run on (a page of the
 * shared headless Chromium, and Dawn in this process on lavapipe), each driving the same kernel
 * harness (test/harness/harness.ts), plus the comparison helper every kernel test uses.
 */
import puppeteer, { type Browser, type Page } from 'puppeteer';
import { afterAll, beforeAll, beforeEach, expect, inject } from 'vitest';
import type { QuadLayout } from '../shaders/matmul.wgsl';
import { nodeWebGpu, NodeWebGpuError, type VulkanDriver } from '../src/node/webgpu';
import type { RunRequest, TrainStepsRequest } from './harness/harness';

/** A run request as a test writes it: buffers as typed arrays (initial bytes) or byte counts (zeroed). */
export type KernelRequest = Omit<RunRequest, 'buffers'> & { buffers: Record<string, ArrayBufferView | number> };

/** The kernel harness on one WebGPU implementation. */
export interface KernelHarness {
  /** The implementation and the adapter it gave, one line. */
  adapter: string;
  run(request: KernelRequest): Promise<Record<string, Uint8Array>>;
  trainSteps(request: TrainStepsRequest): Promise<Record<string, string>[]>;
  quadCheck(layout: QuadLayout): Promise<boolean>;
  /** `work`'s result and the warnings containing `match` that the engine logged while it ran. */
  warnings<T>(match: string, work: () => Promise<T>): Promise<{ result: T; warnings: string[] }>;
  close(): Promise<void>;
}

export interface GpuPage extends KernelHarness {
  page: Page;
  browser: Browser;
}

/** A WebGPU implementation a kernel suite runs on: `describe.each(implementations)`. */
export interface GpuImplementation {
  name: string;
  open(): Promise<KernelHarness>;
}

export const implementations: readonly GpuImplementation[] = [
  { name: 'Chromium', open: () => openHarness() },
  { name: 'Node + Dawn + lavapipe', open: () => openDawnHarness('lavapipe') },
];

/**
 * The harness on `implementation` for the tests of the enclosing describe: opened before them
 * (printing the adapter) and closed after. Under CI an implementation that finds no adapter fails
 * every test; elsewhere a Node driver that is not installed skips them, saying why and how to
 * install it.
 */
export function useHarness(implementation: GpuImplementation): KernelHarness {
  let opened: KernelHarness | undefined;
  let failure: unknown;
  let missing = false;
  beforeAll(async () => {
    try {
      opened = await implementation.open();
    } catch (e) {
      // Kept for each test to throw, so every test counts as failed (a throwing hook skips them).
      failure = e;
      missing = !process.env.CI && e instanceof NodeWebGpuError;
      if (missing) console.warn(`${implementation.name}: skipped (outside CI only). ${(e as Error).message}`);
      return;
    }
    console.log(`${implementation.name} runs on: ${opened.adapter}`);
  });
  beforeEach((context) => {
    if (missing) context.skip(`${implementation.name} has no adapter here`);
    if (failure) throw failure;
  });
  afterAll(async () => {
    await opened?.close();
  });
  const current = () => {
    if (!opened) throw new Error(`${implementation.name} did not open`);
    return opened;
  };
  return {
    get adapter() {
      return current().adapter;
    },
    run: (request) => current().run(request),
    trainSteps: (request) => current().trainSteps(request),
    quadCheck: (layout) => current().quadCheck(layout),
    warnings: (match, work) => current().warnings(match, work),
    close: async () => {},
  };
}

/**
 * How long a test page may take to load. Puppeteer's default, 30 s, is too short on a loaded
 * 2-core CI machine: Vite transforms the page's modules on first request while other test files'
 * GPU work (a software adapter's, on the same cores) runs, and a fresh clone has no cache.
 */
export const NAVIGATION_TIMEOUT_MS = 120_000;

/** Typed arrays as the harness's base64 buffer specs, so Float32 bits cross exactly. */
function encodeBuffers(buffers: KernelRequest['buffers']): RunRequest['buffers'] {
  const out: RunRequest['buffers'] = {};
  for (const [name, v] of Object.entries(buffers)) {
    out[name] =
      typeof v === 'number'
        ? { bytes: v }
        : { data: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') };
  }
  return out;
}

const decodeBuffers = (out: Record<string, string>) =>
  Object.fromEntries(Object.entries(out).map(([k, b64]) => [k, new Uint8Array(Buffer.from(b64, 'base64'))]));

/** A page of the shared browser at `path`, once the page has defined `window[ready]`. */
export async function openHarness(path = '/test/harness/index.html', ready = 'harness'): Promise<GpuPage> {
  const browser = await puppeteer.connect({ browserWSEndpoint: inject('wsEndpoint'), protocolTimeout: 0 });
  const page = await browser.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') console.error(`[browser] ${m.text()}`);
  });
  page.on('pageerror', (e) => console.error(`[browser] ${e}`));
  await page.goto(`${inject('serverUrl')}${path}`, { timeout: NAVIGATION_TIMEOUT_MS });
  await page.waitForFunction((name) => name in window, { timeout: 60_000 }, ready);
  return {
    page,
    browser,
    adapter: `${inject('adapter')} [Chromium]`,
    async run(request) {
      const out = await page.evaluate((r: RunRequest) => window.harness.run(r), {
        ...request,
        buffers: encodeBuffers(request.buffers),
      });
      return decodeBuffers(out);
    },
    trainSteps: (request) => page.evaluate((r) => window.harness.trainSteps(r), request),
    quadCheck: (layout) => page.evaluate((l) => window.harness.quadCheck(l), layout),
    async warnings(match, work) {
      const warnings: string[] = [];
      const listen = (m: { type(): string; text(): string }) => {
        if (m.type() === 'warn' && m.text().includes(match)) warnings.push(m.text());
      };
      page.on('console', listen);
      try {
        const result = await work();
        await new Promise((r) => setTimeout(r, 100)); // console events arrive asynchronously
        return { result, warnings };
      } finally {
        page.off('console', listen);
      }
    },
    async close() {
      await page.close();
      browser.disconnect();
    },
  };
}

/** The harness in this process, on Dawn's WebGPU over the `driver` Vulkan driver (src/node/webgpu.ts). */
export async function openDawnHarness(driver: VulkanDriver): Promise<KernelHarness> {
  const { gpu: entry, adapter } = await nodeWebGpu(driver);
  const harness = await import('./harness/harness');
  return {
    adapter: `${adapter} [Node + Dawn, ${driver}]`,
    run: async (request) =>
      decodeBuffers(await harness.run({ ...request, buffers: encodeBuffers(request.buffers) }, entry)),
    trainSteps: (request) => harness.trainSteps(request, entry),
    quadCheck: (layout) => harness.quadCheck(layout, entry),
    async warnings(match, work) {
      const warnings: string[] = [];
      const warn = console.warn;
      console.warn = (...args: unknown[]) => {
        const text = args.map(String).join(' ');
        if (text.includes(match)) warnings.push(text);
        warn(...args);
      };
      try {
        return { result: await work(), warnings };
      } finally {
        console.warn = warn;
      }
    },
    close: () => harness.releaseRuntime(entry),
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
  beforeAll(async () => {
    opened = await openHarness(path, ready);
  });
  afterAll(async () => {
    await opened?.close();
  });
  const open = () => {
    if (!opened)
      throw new Error(`the harness page ${path ?? ''} is not open: it opens in beforeAll, for the tests and hooks`);
    return opened;
  };
  return {
    get page() {
      return open().page;
    },
    get browser() {
      return open().browser;
    },
    get adapter() {
      return open().adapter;
    },
    run: (request) => open().run(request),
    trainSteps: (request) => open().trainSteps(request),
    quadCheck: (layout) => open().quadCheck(layout),
    warnings: (match, work) => open().warnings(match, work),
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
export function expectClose(
  name: string,
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  rtol: number,
  atol: number,
): Closeness {
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
    expect.fail(
      `${name}: ${badCount} of ${expected.length} outside atol ${atol} + rtol ${rtol}·|ref|; max abs err ${maxAbs.toExponential(3)}\n${bad.join('\n')}`,
    );
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
  afterAll(() =>
    console.log(
      `${title} max errors:\n${[...figures]
        .map(
          ([name, f]) =>
            `  ${name}: ${f.err.toExponential(2)} (${typeof f.tol === 'number' ? `tol ${f.tol.toExponential(2)}` : f.tol}) over ${f.runs} runs`,
        )
        .join('\n')}`,
    ),
  );
  return (name, err, tol) => {
    const f = figures.get(name) ?? { err: 0, tol, runs: 0 };
    f.err = Math.max(f.err, err);
    if (typeof tol === 'number' && typeof f.tol === 'number') f.tol = Math.max(f.tol, tol);
    f.runs++;
    figures.set(name, f);
  };
}
