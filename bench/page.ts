/**
 * The bench's page in headless Chromium: the engine's measurements (bench/measure.ts) on the
 * browser's WebGPU, reached by bench.ts through `window.bench`. Data arrives by URL from the
 * bench's server; results go back to Node as JSON.
 */
import { Gpu } from '../src/gpu/device';
import { browserMajor } from '../src/model/autotune';
import { EngineBench, type BenchModel } from './measure';

export type { BenchModel, MatmulCase, Timing } from './measure';

let engine: Promise<EngineBench> | null = null;
const bench = () => (engine ??= Gpu.create().then((g) => new EngineBench(g)));

async function fetchBytes(url: string): Promise<Uint8Array> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`fetching ${url}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

const pageBench = {
  matmul: async (...args: Parameters<EngineBench['matmul']>) => (await bench()).matmul(...args),
  step: async (c: Parameters<EngineBench['step']>[0]) => (await bench()).step(c),
  async endToEnd(c: {
    trainUrl: string;
    trainCount: number;
    testUrl: string;
    testCount: number;
    batchSize: number;
    stepsPerSubmit: number;
    testPass?: boolean;
    model?: BenchModel;
  }) {
    const [train, test] = await Promise.all([fetchBytes(c.trainUrl), fetchBytes(c.testUrl)]);
    const { trainUrl: _t, testUrl: _u, ...rest } = c;
    return (await bench()).endToEnd({ ...rest, train, test });
  },
  /** Interleaved blocks (bench/peers/index.ts): the model opened once, then one timed block per call. */
  async openBlocks(c: { trainUrl: string; trainCount: number; batchSize: number; model?: BenchModel }) {
    const train = await fetchBytes(c.trainUrl);
    const { trainUrl: _t, ...rest } = c;
    return (await bench()).openBlocks({ ...rest, train });
  },
  block: async () => (await bench()).block(),
  closeBlocks: async () => (await bench()).closeBlocks(),
  /** `--autotune`, through the Node side's file cache (exposed by bench.ts). */
  async autotune(c: { trainUrl: string; count: number; batchSize: number; model?: BenchModel }) {
    const images = await fetchBytes(c.trainUrl);
    return (await bench()).autotune(
      { images, count: c.count, batchSize: c.batchSize, model: c.model },
      {
        browserMajor: browserMajor(navigator.userAgent),
        cache: {
          get: async (key) => (await window.benchTuneCacheGet(key)) ?? undefined,
          put: (key, text) => window.benchTuneCachePut(key, text),
        },
      },
    );
  },
  matmulWallClock: async (c: Parameters<EngineBench['matmulWallClock']>[0]) => (await bench()).matmulWallClock(c),
};

declare global {
  interface Window {
    bench: typeof pageBench;
    /** The Node side's tune cache (src/node/tune-cache.ts), exposed by bench.ts for --autotune. */
    benchTuneCacheGet(key: string): Promise<string | null>;
    benchTuneCachePut(key: string, text: string): Promise<void>;
  }
}
window.bench = pageBench;
