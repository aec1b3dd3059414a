/**
 * `npm run bench`: the engine's kernels and training measured (bench/measure.ts) in headless
 * Chromium's page or, with `--runtime node`, on Dawn's WebGPU in this process (no browser),
 * printed as a table and written as JSON with the adapter, the runtime and the date. With
 * `--compare`, peers (TensorFlow.js, PyTorch) run in the same sitting and are reported as ratios
 * to this engine.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Page } from 'puppeteer';
import { Gpu } from '../src/gpu/device';
import { HARDWARE_MIN_INVOCATIONS } from '../src/gpu/plan';
import type { TuneCache } from '../src/gpu/tuner';
import { describeAdapter, launchBrowser, reportAdapter, type AdapterReport } from '../src/node/browser';
import { findDataset, loadDataset, verifyMnist } from '../src/node/datasets';
import { integerOption } from '../src/node/options';
import { startServer, type PageServer } from '../src/node/server';
import { fileCache, tuneCacheDir, tuneCacheFile } from '../src/node/tune-cache';
import { ADAPTER_ENV, DEFAULT_DRIVER, nodeWebGpu, VULKAN_DRIVERS } from '../src/node/webgpu';
import { BENCH_MODELS, EngineBench, type BenchModel, type ConvLaunch, type MatmulCase, type Timing } from './measure';

/** --model conv's defaults: a step takes seconds on a software adapter, so short runs. */
const CONV_DEFAULTS = { steps: 4, repeat: 3, rounds: 3, blockSteps: 2 } as const;
/** Steps per interleaved block of the mlp. */
const MLP_BLOCK_STEPS = 16;

const HELP = `Usage: npm run bench -- [options]

  --model NAME      the model trained: ${BENCH_MODELS.join(' or ')} (default mlp, the reference model; conv is the
                    conv preset on 1×28×28, whose steps take seconds on a software adapter: its
                    defaults are --steps ${CONV_DEFAULTS.steps} --repeat ${CONV_DEFAULTS.repeat})
  --kernel NAME     only kernels whose label contains NAME (e.g. fc1, fc1 dW, adam, bce)
  --shape MxKxN     also time the three matmul variants at this shape (M rows, K inner, N columns)
  --steps N         end-to-end training steps to time (default: one epoch, 469); 0 skips it
  --repeat N        timing samples per kernel (default 7); the median and 10–90% spread are reported
  --no-kernels      skip the per-kernel timings, the launch table and the test pass (training
                    steps and peers only: short blocks for interleaved comparisons)
  --compare         also run the peers (TensorFlow.js WebGPU/WASM, PyTorch) and report ratios
  --rounds N        with --compare: time the engine and the tfjs VAE peers interleaved, N rounds of
                    one short block each, and report each ratio's median and range over the rounds
                    (default 0, one pass each, for mlp; ${CONV_DEFAULTS.rounds} for conv, which has no other)
  --block-steps N   training steps per block of --rounds, the same on every side (default
                    ${MLP_BLOCK_STEPS} for mlp, ${CONV_DEFAULTS.blockSteps} for conv)
  --autotune        tune the kernel plan at start-up first (as npm run train -- --autotune does,
                    with the same cache) and print the tuner's report; everything after runs under it
  --runtime NAME    chromium (default: headless Chromium's WebGPU) or node (Dawn's WebGPU, the npm
                    package webgpu, in this process: no browser; not with --compare, whose tfjs
                    peers live in a page)
  --adapter NAME    --runtime node's Vulkan driver: ${VULKAN_DRIVERS.join(' or ')}; default $${ADAPTER_ENV}, else ${DEFAULT_DRIVER}
  --out FILE        where the JSON goes (default bench/results/<date>.json)
  -h, --help        this text`;

/**
 * Limits every run checks: the scheduler's promises to real GPUs, checked against what the
 * runtime measured at its WebGPU calls during the epoch (Gpu.counters()).
 */
export const LIMITS = {
  dispatchesPerStep: 16,
  bytesUploadedPerStep: 0,
  cpuWaitsPerEpoch: 'loss readbacks only',
} as const;

/**
 * The conv preset's limits: its step's 30 dispatches (4 conv layers' forward, dX and dW, the two
 * transposes' bias sums, 5 Linears', the gather, reparameterize, loss, Adam) and no upload.
 */
export const CONV_LIMITS = { ...LIMITS, dispatchesPerStep: 30 } as const;

interface KernelRow {
  label: string;
  cost: { flops?: number; bytes?: number };
  median: number;
  p10: number;
  p90: number;
  source: Timing['source'];
}

function parse(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      model: { type: 'string' },
      rounds: { type: 'string' },
      'block-steps': { type: 'string' },
      kernel: { type: 'string' },
      shape: { type: 'string' },
      steps: { type: 'string' },
      repeat: { type: 'string' },
      compare: { type: 'boolean' },
      autotune: { type: 'boolean' },
      'no-kernels': { type: 'boolean' },
      runtime: { type: 'string' },
      adapter: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  let shape: { M: number; K: number; N: number } | undefined;
  if (values.shape) {
    const m = /^(\d+)x(\d+)x(\d+)$/.exec(values.shape);
    if (!m) throw new Error(`--shape must look like 128x784x400 (M x K x N), got "${values.shape}"`);
    shape = { M: Number(m[1]), K: Number(m[2]), N: Number(m[3]) };
  }
  const runtime = values.runtime ?? 'chromium';
  if (runtime !== 'chromium' && runtime !== 'node')
    throw new Error(`--runtime must be chromium or node, got "${runtime}"`);
  if (values.adapter !== undefined && runtime !== 'node')
    throw new Error('--adapter picks the Vulkan driver of --runtime node: pass --runtime node with it');
  if (values.adapter !== undefined && !(VULKAN_DRIVERS as readonly string[]).includes(values.adapter))
    throw new Error(`--adapter must be ${VULKAN_DRIVERS.join(' or ')}, got "${values.adapter}"`);
  const model = (values.model ?? 'mlp') as BenchModel;
  if (!(BENCH_MODELS as readonly string[]).includes(model))
    throw new Error(
      `--model must be ${BENCH_MODELS.join(' or ')} (the models the tfjs peer has), got "${values.model}"`,
    );
  const conv = model === 'conv';
  if ((values.rounds !== undefined || values['block-steps'] !== undefined) && !values.compare)
    throw new Error('--rounds and --block-steps interleave the engine with the peers: pass --compare with them');
  if (values.compare && runtime === 'node')
    throw new Error(
      "--compare runs the tfjs peers in a browser page beside the engine's: use --runtime chromium (the default) for it",
    );
  return {
    help: !!values.help,
    model,
    runtime: runtime as 'chromium' | 'node',
    adapter: values.adapter,
    kernel: values.kernel,
    shape,
    compare: !!values.compare,
    autotune: !!values.autotune,
    kernels: !values['no-kernels'],
    out: values.out,
    steps: integerOption('steps', values.steps, conv ? CONV_DEFAULTS.steps : 469, 0, 1e7),
    repeat: integerOption('repeat', values.repeat, conv ? CONV_DEFAULTS.repeat : 7, 1, 1e4),
    rounds: integerOption('rounds', values.rounds, conv ? CONV_DEFAULTS.rounds : 0, conv ? 1 : 0, 1e4),
    blockSteps: integerOption(
      'block-steps',
      values['block-steps'],
      conv ? CONV_DEFAULTS.blockSteps : MLP_BLOCK_STEPS,
      1,
      469,
    ),
  };
}

const fmt = (v: number, digits = 2) => v.toFixed(digits);

async function main() {
  let o: ReturnType<typeof parse>;
  try {
    o = parse(process.argv.slice(2));
  } catch (e) {
    console.error(`webgpu-vae bench: ${(e as Error).message}`);
    process.exit(2);
  }
  if (o.help) {
    console.log(HELP);
    return;
  }
  const batchSize = 128;
  const files = findDataset({ dataset: 'mnist' });
  verifyMnist(files);
  const data = await loadDataset(files);

  const runtime = o.runtime === 'node' ? await nodeRuntime(o.adapter) : await chromiumRuntime();
  try {
    const { adapter } = runtime;
    console.log(`webgpu-vae bench on ${describeAdapter(adapter)}`);
    const result: Record<string, unknown> = {
      date: new Date().toISOString(),
      adapter: {
        vendor: adapter.vendor,
        architecture: adapter.architecture,
        device: adapter.device,
        description: adapter.description,
        isFallbackAdapter: adapter.isFallbackAdapter,
      },
      model: o.model,
      runtime: { name: o.runtime, version: runtime.version },
      ...(o.runtime === 'chromium' ? { browser: adapter.browserVersion } : {}),
      node: process.version,
    };

    // 0. The start-up autotune, when asked for: the hosts' one autotune, through the file cache.
    if (o.autotune) {
      const cache = fileCache(tuneCacheDir());
      const count = Math.min(data.train.count, 16 * batchSize);
      console.log('\nautotune at the real shapes (batch 128)…');
      const t = await runtime.autotune(
        { images: data.train.pixels.subarray(0, count * 784), count, batchSize, model: o.model },
        cache,
      );
      console.log(t.text);
      const file = tuneCacheFile(tuneCacheDir(), t.key);
      console.log(t.from === 'cache' ? `(cached in ${file}; delete it to tune again)` : `tuned plan cached in ${file}`);
      result.autotune = { from: t.from, plan: t.plan, file, report: t.text };
    }

    // 1. Every kernel of one training step at the VAE's real shapes (its flops and best rate feed the end-to-end figures).
    let stepFlops: number | undefined;
    let bestGflops: number | undefined;
    if (o.kernels) {
      console.log(`\nkernels of one ${o.model} training step (batch ${batchSize}), ${o.repeat} samples each…`);
      // A conv dispatch lasts tens of milliseconds or more on a software adapter: one per span is
      // already far above the timer's resolution (time() still grows it to MIN_SPAN_MS).
      const step = await runtime.step({
        batchSize,
        reps: o.model === 'conv' ? 1 : 5,
        samples: o.repeat,
        model: o.model,
      });
      const rows: KernelRow[] = step.perDispatch.filter((d) => !o.kernel || d.label.includes(o.kernel));
      const total = step.perDispatch.reduce((s, d) => s + d.median, 0);
      console.log(
        `${'kernel'.padEnd(28)} ${'median ms'.padStart(10)} ${'p10–p90'.padStart(16)} ${'share'.padStart(6)}  rate`,
      );
      for (const d of rows) {
        const rate = d.cost.flops
          ? `${fmt(d.cost.flops / d.median / 1e6)} GFLOP/s`
          : d.cost.bytes
            ? `${fmt(d.cost.bytes / d.median / 1e6)} GB/s`
            : '';
        console.log(
          `${d.label.padEnd(28)} ${fmt(d.median, 3).padStart(10)} ${`${fmt(d.p10, 3)}–${fmt(d.p90, 3)}`.padStart(16)} ${`${fmt((100 * d.median) / total, 1)}%`.padStart(6)}  ${rate}${d.source === 'wall' ? ' (wall time)' : ''}`,
        );
      }
      console.log(
        `${'one step, recorded whole'.padEnd(28)} ${fmt(step.whole.median, 3).padStart(10)} ${`${fmt(step.whole.p10, 3)}–${fmt(step.whole.p90, 3)}`.padStart(16)}  (${step.dispatchesPerStep} dispatches)`,
      );
      const matmuls = step.perDispatch.filter((d) => d.cost.flops);
      bestGflops = Math.max(...matmuls.map((d) => d.cost.flops! / d.median / 1e6));
      stepFlops = matmuls.reduce((s, d) => s + d.cost.flops!, 0);
      result.kernels = step.perDispatch.map((d) => ({
        ...d,
        share: d.median / total,
        gflops: d.cost.flops ? d.cost.flops / d.median / 1e6 : undefined,
        gbps: d.cost.bytes ? d.cost.bytes / d.median / 1e6 : undefined,
      }));
      result.step = { ...step.whole, dispatchesPerStep: step.dispatchesPerStep, flops: stepFlops };
      result.timing = step.whole.source === 'timestamp' ? 'GPU timestamp queries' : 'wall time (no timestamp-query)';

      // Occupancy: what each dispatch launches under the plan in use and under the hardware default.
      // A GPU wants ≥ HARDWARE_MIN_INVOCATIONS per matmul to hide memory latency; a software adapter
      // cannot measure that, so the launch sizes are the evidence it can give.
      // A conv product's rows also name its implicit product (rows×cols×K) and each plan's tile
      // (tileM×tileN outputs per invocation, K/n when n invocations split K; "(tuned)" when the
      // plan in use overrides the rule's tile for it).
      console.log(`\nlaunch sizes: the ${step.plan} plan in use, and the hardware plan (workgroups → invocations)`);
      console.log(`${'dispatch'.padEnd(28)} ${`${step.plan} plan`.padStart(24)} ${'hardware plan'.padStart(24)}`);
      const launch = (l: { workgroups: readonly number[]; invocations: number }) =>
        `${l.workgroups.join('×')} → ${l.invocations}`;
      const tile = (t: ConvLaunch['tile']) => `${t.tileM}×${t.tileN}${t.slices > 1 ? ` K/${t.slices}` : ''}`;
      step.perDispatch.forEach((d, i) => {
        const h = step.hardwarePlan[i];
        const short = d.cost.flops && h.invocations < HARDWARE_MIN_INVOCATIONS ? '  (all its outputs allow)' : '';
        const conv = 'conv' in d ? (d.conv as ConvLaunch) : undefined;
        const product = conv
          ? `  ${conv.product} ${conv.rows}×${conv.cols}×${conv.K}, tile ${tile(conv.tile)}${conv.tuned ? ' (tuned)' : ''} → hardware ${tile(conv.hardwareTile)}`
          : '';
        console.log(`${d.label.padEnd(28)} ${launch(d).padStart(24)} ${launch(h).padStart(24)}${short}${product}`);
      });
      result.occupancy = {
        plan: step.plan,
        inUse: step.perDispatch.map((d) => ({
          label: d.label,
          workgroups: d.workgroups,
          invocations: d.invocations,
          ...('conv' in d ? { conv: d.conv } : {}),
        })),
        hardware: step.hardwarePlan,
      };
    }

    // 2. A matmul shape of the caller's choosing, in all three variants.
    if (o.shape) {
      const { M, K, N } = o.shape;
      const variants = [
        { name: 'X·Wᵀ (forward)', M, N, K, options: { transA: false, transB: true } },
        { name: 'dY·W (input grad)', M, N, K, options: { transA: false, transB: false } },
        { name: 'dYᵀ·X (weight grad)', M, N, K, options: { transA: true, transB: false } },
      ];
      result.shape = [];
      for (const v of variants) {
        const t = await runtime.matmul(v, 10, o.repeat);
        console.log(`${M}x${K}x${N} ${v.name.padEnd(22)} ${fmt(t.median, 3)} ms  ${fmt(t.gflops)} GFLOP/s`);
        (result.shape as unknown[]).push({ ...v, ...t });
      }
    }

    // 3. End to end on real MNIST.
    if (o.steps > 0) {
      // The conv preset's test pass over 10,000 images takes minutes on a software adapter: not run.
      const testPass = o.kernels && o.model !== 'conv';
      const trainCount = Math.min(data.train.count, o.steps * batchSize);
      console.log(
        `\nend to end: ${o.steps} ${o.model} training steps on MNIST${testPass ? ', then the test pass' : ''}…`,
      );
      const e = await runtime.endToEnd({
        train: data.train.pixels.subarray(0, trainCount * 784),
        trainCount,
        test: data.test.pixels,
        testCount: data.test.count,
        batchSize,
        stepsPerSubmit: 16,
        testPass,
        model: o.model,
      });
      const msPerStep = (1000 * e.trainSeconds) / e.steps;
      const epochSeconds = (msPerStep * Math.ceil(data.train.count / batchSize)) / 1000;
      const epochFlops = stepFlops === undefined ? undefined : (stepFlops * data.train.count) / batchSize;
      const efficiency =
        epochFlops === undefined || bestGflops === undefined ? undefined : epochFlops / epochSeconds / 1e9 / bestGflops;
      console.log(
        `training: ${fmt(msPerStep, 1)} ms/step, ${fmt(1000 / msPerStep, 2)} steps/s, ${fmt((batchSize * 1000) / msPerStep, 0)} images/s`,
      );
      console.log(
        `epoch (60,000 images): ${fmt(epochSeconds, 1)} s${e.steps < 469 ? ' (extrapolated)' : ''}; test pass (10,000): ${e.testSeconds === undefined ? `not run (${o.kernels ? '--model conv' : '--no-kernels'})` : `${fmt(e.testSeconds, 2)} s`}`,
      );
      if (epochFlops !== undefined && efficiency !== undefined)
        console.log(
          `adapter efficiency: ${fmt(epochFlops / epochSeconds / 1e9)} GFLOP/s achieved ÷ ${fmt(bestGflops!)} best matmul = ${fmt(efficiency)}`,
        );
      // Measured by the runtime over the epoch: every dispatch recorded, submit made and byte
      // written or read back, counted where it calls WebGPU.
      const counts = {
        dispatchesPerStep: e.counters.dispatches / e.steps,
        /** The length of the training step's dispatch list, which the measurement must match. */
        programDispatchesPerStep: e.counters.dispatchesPerStep,
        submitsPerEpoch: e.counters.submits,
        bytesUploadedPerStep: (e.counters.bytesUploaded - 4 * trainCount - 4) / e.steps, // the per-epoch shuffle and batch reset are not a step's
        bytesUploadedPerEpoch: e.counters.bytesUploaded,
        bytesReadBackPerEpoch: e.counters.bytesReadBack,
        buffersCreatedPerEpoch: e.counters.buffersCreated,
      };
      const limits = o.model === 'conv' ? CONV_LIMITS : LIMITS;
      const within =
        counts.dispatchesPerStep <= limits.dispatchesPerStep &&
        counts.dispatchesPerStep === counts.programDispatchesPerStep &&
        counts.bytesUploadedPerStep === limits.bytesUploadedPerStep;
      console.log(
        `scheduler, measured by the runtime: ${counts.dispatchesPerStep} dispatches/step (limit ${limits.dispatchesPerStep}; ` +
          `the step's list has ${counts.programDispatchesPerStep}), ${counts.submitsPerEpoch} submits/epoch, ` +
          `${counts.bytesUploadedPerStep} B uploaded/step, ${counts.bytesReadBackPerEpoch} B read back/epoch — ${within ? 'within limits' : 'OVER LIMITS'}`,
      );
      result.endToEnd = {
        ...e,
        msPerStep,
        imagesPerSecond: (batchSize * 1000) / msPerStep,
        epochSeconds,
        epochFlops,
        bestMatmulGflops: bestGflops,
        efficiency,
      };
      result.counts = { ...counts, limits, withinLimits: within };
    }

    // 4. Peers, in the same sitting.
    if (o.compare && runtime.page) {
      const { runInterleaved, runPeers } = await import('./peers/index');
      const ctx = { ...runtime.page, data, batchSize, engine: result };
      if (o.rounds > 0)
        result.interleaved = await runInterleaved({
          ...ctx,
          model: o.model,
          rounds: o.rounds,
          blockSteps: o.blockSteps,
        });
      else result.peers = await runPeers(ctx);
    }

    const out = o.out ?? join('bench', 'results', `${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, JSON.stringify(result, null, 2));
    console.log(`\nwrote ${out}`);
  } finally {
    await runtime.close();
  }
}

type Measured<K extends keyof EngineBench> = EngineBench[K] extends (...args: never[]) => infer R ? R : never;

/** Where the engine is measured: headless Chromium's page, or Dawn's WebGPU in this process. */
interface BenchRuntime {
  /** The adapter, as the first line names it (its browserVersion: the browser, or Node with Dawn and the driver). */
  adapter: AdapterReport;
  /** The WebGPU implementation's full version. */
  version: string;
  autotune(
    c: { images: Uint8Array; count: number; batchSize: number; model: BenchModel },
    cache: TuneCache,
  ): Measured<'autotune'>;
  step(c: Parameters<EngineBench['step']>[0]): Measured<'step'>;
  matmul(c: MatmulCase, reps: number, samples: number): Measured<'matmul'>;
  endToEnd(c: Parameters<EngineBench['endToEnd']>[0]): Measured<'endToEnd'>;
  /** The page and its server (--runtime chromium), where the peers run. */
  page?: { page: Page; server: PageServer };
  close(): Promise<void>;
}

async function chromiumRuntime(): Promise<BenchRuntime> {
  const browser = await launchBrowser();
  const server = await startServer({ crossOriginIsolated: true }); // for tfjs-WASM's threads (--compare)
  const close = async () => {
    await browser.close();
    await server.close();
  };
  try {
    const page = await browser.browser.newPage();
    page.on('pageerror', (e) => console.error(`[browser] ${e}`));
    await page.goto(`${server.url}/bench/page.html`);
    await page.waitForFunction(() => 'bench' in window, { timeout: 60_000 });
    const adapter = await reportAdapter(page);
    return {
      adapter,
      version: adapter.browserVersion,
      page: { page, server },
      close,
      async autotune(c, cache) {
        await page.exposeFunction('benchTuneCacheGet', async (key: string) => (await cache.get(key)) ?? null);
        await page.exposeFunction('benchTuneCachePut', (key: string, text: string) => cache.put(key, text));
        return page.evaluate((a) => window.bench.autotune(a), {
          trainUrl: server.serveFile('autotune', c.images),
          count: c.count,
          batchSize: c.batchSize,
          model: c.model,
        });
      },
      step: (c) => page.evaluate((a) => window.bench.step(a), c),
      matmul: (c, reps, samples) =>
        page.evaluate((a) => window.bench.matmul(a.c, a.reps, a.samples), { c, reps, samples }),
      endToEnd: ({ train, test, ...c }) =>
        page.evaluate((a) => window.bench.endToEnd(a), {
          ...c,
          trainUrl: server.serveFile('train', train),
          testUrl: server.serveFile('test', test),
        }),
    };
  } catch (error) {
    await close();
    throw error;
  }
}

/** --runtime node: the same measurements on Dawn's WebGPU over the chosen Vulkan driver, in this process. */
async function nodeRuntime(driver: string | undefined): Promise<BenchRuntime> {
  const dawn = await nodeWebGpu(driver);
  const gpu = await Gpu.create({ gpu: dawn.gpu });
  const bench = new EngineBench(gpu);
  return {
    adapter: { ...gpu.adapter!, browserVersion: `Node ${process.versions.node}, Dawn on ${dawn.driver}` },
    version: dawn.version,
    autotune: (c, cache) => bench.autotune(c, { browserMajor: 0, runtimeVersion: dawn.version, cache }),
    step: (c) => bench.step(c),
    matmul: (c, reps, samples) => bench.matmul(c, reps, samples),
    endToEnd: (c) => bench.endToEnd(c),
    async close() {
      gpu.destroy();
      gpu.device.destroy();
    },
  };
}

void main().catch((e) => {
  console.error(`webgpu-vae bench: ${(e as Error).message}`);
  process.exit(1);
});
