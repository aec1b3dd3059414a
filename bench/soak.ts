/**
 * `npm run soak`: long-run checks that nothing grows (not a CI test; see bench/README.md).
 *
 *   --epochs N   trains N epochs through the CLI's own code path (`npm run train`: full MNIST,
 *                test pass, images and an atomically written checkpoint every epoch) and
 *                samples memory after each epoch's checkpoint
 *   --cycles N   runs the library's create → fit (1 epoch) → sample → destroy cycle N times in
 *                one page, each model on its own device, sampling every --every cycles
 *
 * Memory sampled each time, after a forced garbage collection in the page:
 *   gpuBuffers/gpuBytes  the engine's live GPU buffers (tracked by src/gpu/device.ts)
 *   jsHeap               the page's used JS heap (CDP Performance.getMetrics)
 *   private.*            private memory (Private_Clean + Private_Dirty) of each Chromium process
 *                        type; with SwiftShader GPU memory lives in the gpu-process, so its figure
 *                        is the "VRAM" one. (PSS and RSS move whenever another Chromium on the
 *                        machine maps the same libraries; private memory does not.)
 *   nodeHeap             this Node process's used heap (the CLI side)
 *   GPUDevice, GPUBuffer…  (cycles) how many WebGPU objects the page's JS can still reach
 *                        (CDP queryObjects): the just-destroyed model's while it is in scope, no more
 * The report fits a line to the samples after the first tenth (warm-up) and prints its slope.
 * It is rewritten after every sample, so a run stopped early still leaves its figures.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Page } from 'puppeteer';
import { train } from '../src/cli/train';
import { DEFAULT_SETTINGS } from '../src/model/settings';
import { describeAdapter, launchBrowser, reportAdapter } from '../src/node/browser';
import { writeAtomic } from '../src/node/files';
import { integerOption, UsageError } from '../src/node/options';
import { startServer } from '../src/node/server';
import type { CycleSample } from './soak-page';

const HELP = `Usage: npm run soak -- (--epochs N | --cycles N) [--every N] [--images N] [--out FILE]

  --epochs N   train N epochs headlessly (the CLI's path) and sample memory after each
  --cycles N   N library create → fit → destroy cycles in one page
  --every N    cycles between samples (default 50)
  --images N   training images per cycle, from MNIST's test set (default 256: 2 steps of 128)
  --out FILE   JSON report (default bench/results/soak-<mode>-<start time>-<pid>.json)`;

type ByProcess = Record<string, number>;

interface Sample {
  index: number;
  seconds: number;
  gpuBuffers: number;
  gpuBytes: number;
  jsHeap: number;
  private: ByProcess;
  nodeHeap: number;
  extra?: Record<string, number>;
}

/** Private memory in bytes of the browser and its children, summed by Chromium process type. */
function chromiumPrivate(rootPid: number): ByProcess {
  if (!existsSync('/proc')) return {}; // Linux only; elsewhere the GPU and JS figures still stand
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(name)]);
    } catch {
      /* the process ended meanwhile */
    }
  }
  const bytes: ByProcess = {};
  const visit = (pid: number) => {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      const type = /--type=([\w-]+)/.exec(cmdline)?.[1] ?? 'browser';
      const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
      const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(rollup)?.[1] ?? 0);
      bytes[type] = (bytes[type] ?? 0) + (kb('Private_Clean') + kb('Private_Dirty')) * 1024;
    } catch {
      /* ended */
    }
    for (const child of children.get(pid) ?? []) visit(child);
  };
  visit(rootPid);
  return bytes;
}

/** JS wrappers of WebGPU objects the page can still reach (call after a GC): a retained model shows here. */
async function gpuObjectCensus(page: Page): Promise<Record<string, number>> {
  const census: Record<string, number> = {};
  for (const name of ['GPUDevice', 'GPUBuffer', 'GPUComputePipeline', 'GPUBindGroup']) {
    const prototype = await page.evaluateHandle(
      (n) => (globalThis as unknown as Record<string, { prototype: object }>)[n].prototype,
      name,
    );
    const objects = await page.queryObjects(prototype);
    census[name] = await page.evaluate((a) => (a as unknown as unknown[]).length, objects);
    await objects.dispose(); // an undisposed handle would itself keep them alive
    await prototype.dispose();
  }
  return census;
}

async function jsHeapAfterGc(page: Page): Promise<number> {
  const session = await page.createCDPSession();
  await session.send('HeapProfiler.collectGarbage');
  await session.detach();
  return (await page.metrics()).JSHeapUsedSize ?? NaN;
}

/** Least-squares slope of y over x. */
function slope(x: number[], y: number[]): number {
  const n = x.length;
  const mx = x.reduce((a, b) => a + b, 0) / n;
  const my = y.reduce((a, b) => a + b, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (let i = 0; i < n; i++) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) ** 2;
  }
  return sxx === 0 ? 0 : sxy / sxx;
}

const MB = 2 ** 20;

/** The figures a person watches while a soak runs. */
const memoryLine = (s: Sample) =>
  `JS heap ${(s.jsHeap / MB).toFixed(1)} MB, gpu-process ${((s.private['gpu-process'] ?? 0) / MB).toFixed(1)} MB, ` +
  `renderer ${((s.private.renderer ?? 0) / MB).toFixed(1)} MB private`;

/** Per series: first, last, min, max, and the slope after warm-up (per sample index unit). */
function summarize(samples: Sample[], unit: string) {
  const series: Record<string, number[]> = {
    gpuBuffers: samples.map((s) => s.gpuBuffers),
    'gpuBytes (MB)': samples.map((s) => s.gpuBytes / MB),
    'jsHeap (MB)': samples.map((s) => s.jsHeap / MB),
    'nodeHeap (MB)': samples.map((s) => s.nodeHeap / MB),
  };
  for (const type of Object.keys(samples.at(-1)?.private ?? {}))
    series[`private ${type} (MB)`] = samples.map((s) => (s.private[type] ?? 0) / MB);
  const warm = Math.floor(samples.length / 10);
  const x = samples.slice(warm).map((s) => s.index);
  return Object.entries(series).map(([name, y]) => ({
    name,
    first: y[0],
    last: y.at(-1)!,
    min: Math.min(...y),
    max: Math.max(...y),
    [`slope per ${unit} after warm-up`]: slope(x, y.slice(warm)),
  }));
}

/** Called after every sample: the report is rewritten each time, so a run cut short keeps its figures. */
type OnSample = (samples: Sample[]) => void;

async function soakEpochs(epochs: number, adapterLine: (line: string) => void, onSample: OnSample): Promise<Sample[]> {
  const out = mkdtempSync(join(tmpdir(), 'webgpu-vae-soak-'));
  const samples: Sample[] = [];
  const started = Date.now();
  try {
    await train(
      { ...DEFAULT_SETTINGS, epochs, dataset: 'mnist', out, logInterval: 1e9, stepsPerSubmit: 16 },
      {
        async afterEpoch(page, epoch) {
          if (epoch === 1) adapterLine(describeAdapter(await reportAdapter(page)));
          const memory = await page.evaluate(() => window.vaeMemory());
          const jsHeap = await jsHeapAfterGc(page);
          const pid = page.browser().process()?.pid;
          samples.push({
            index: epoch,
            seconds: (Date.now() - started) / 1000,
            gpuBuffers: memory.liveBuffers,
            gpuBytes: memory.liveBytes,
            jsHeap,
            private: pid ? chromiumPrivate(pid) : {},
            nodeHeap: process.memoryUsage().heapUsed,
          });
          const s = samples.at(-1)!;
          console.error(
            `soak: epoch ${epoch}: ${s.gpuBuffers} buffers, ${(s.gpuBytes / MB).toFixed(1)} MB GPU, ${memoryLine(s)}, ${s.seconds.toFixed(0)} s`,
          );
          onSample(samples);
        },
      },
    );
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
  return samples;
}

async function soakCycles(
  cycles: number,
  every: number,
  images: number,
  adapterLine: (line: string) => void,
  onSample: OnSample,
): Promise<Sample[]> {
  const browser = await launchBrowser();
  const server = await startServer();
  const samples: Sample[] = [];
  const started = Date.now();
  try {
    const page = await browser.browser.newPage();
    page.on('pageerror', (e) => console.error(`[browser] ${e}`));
    await page.goto(`${server.url}/bench/soak.html`);
    await page.waitForFunction(() => 'soakCycles' in window, { timeout: 60_000 });
    adapterLine(describeAdapter(await reportAdapter(page)));
    const pid = browser.browser.process()!.pid!;
    await page.exposeFunction('soakSample', async (c: CycleSample) => {
      const jsHeap = await jsHeapAfterGc(page);
      samples.push({
        index: c.cycle,
        seconds: (Date.now() - started) / 1000,
        gpuBuffers: c.liveBuffersAfterDestroy,
        gpuBytes: 0,
        jsHeap,
        private: chromiumPrivate(pid),
        nodeHeap: process.memoryUsage().heapUsed,
        extra: {
          liveBuffersAlive: c.liveBuffersAlive,
          lastLoss: c.lastLoss,
          msPerCycle: c.msPerCycle,
          ...(await gpuObjectCensus(page)),
        },
      });
      const s = samples.at(-1)!;
      console.error(
        `soak: cycle ${c.cycle}: ${c.liveBuffersAlive} buffers alive → ${c.liveBuffersAfterDestroy} after destroy, ` +
          `${memoryLine(s)}, reachable ${s.extra!.GPUDevice} GPUDevice / ${s.extra!.GPUBuffer} GPUBuffer objects, ${c.msPerCycle.toFixed(0)} ms/cycle`,
      );
      onSample(samples);
    });
    await page.evaluate((n, e, k) => window.soakCycles(n, e, k), cycles, every, images);
  } finally {
    await browser.close();
    await server.close();
  }
  return samples;
}

async function main() {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    strict: true,
    options: {
      epochs: { type: 'string' },
      cycles: { type: 'string' },
      every: { type: 'string' },
      images: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const count = (name: 'epochs' | 'cycles') =>
    values[name] === undefined ? undefined : integerOption(name, values[name], 0, 1, 1e6);
  const epochs = count('epochs');
  const cycles = count('cycles');
  if (values.help || (epochs === undefined) === (cycles === undefined)) {
    console.log(HELP);
    process.exit(values.help ? 0 : 2);
  }
  const mode = epochs ? 'epochs' : 'cycles';
  const every = integerOption('every', values.every, 50, 1, 1e6);
  const images = integerOption('images', values.images, 256, 1, 10_000);
  let adapter = '';
  const onAdapter = (line: string) => {
    adapter = line;
    console.error(`soak: ${line}`);
  };
  const started = new Date();
  // One report per run: two soaks on one day (or at once) must not share a file.
  const stamp = started
    .toISOString()
    .replace(/:/g, '-')
    .replace(/\.\d+Z$/, 'Z');
  const out = values.out ?? join('bench', 'results', `soak-${mode}-${stamp}-${process.pid}.json`);
  mkdirSync(dirname(out), { recursive: true });
  const unit = mode === 'epochs' ? 'epoch' : 'cycle';
  // Rewritten after every sample, atomically: a soak killed mid-write keeps its previous report.
  const write = (samples: Sample[]) =>
    writeAtomic(
      out,
      new TextEncoder().encode(
        JSON.stringify(
          {
            mode,
            requested: epochs ?? cycles,
            done: samples.at(-1)?.index ?? 0,
            every: mode === 'cycles' ? every : 1,
            images: mode === 'cycles' ? images : undefined,
            adapter,
            date: started.toISOString(),
            seconds: (Date.now() - started.getTime()) / 1000,
            summary: summarize(samples, unit),
            samples,
          },
          null,
          1,
        ),
      ),
    );
  const samples = epochs
    ? await soakEpochs(epochs, onAdapter, write)
    : await soakCycles(cycles!, every, images, onAdapter, write);
  write(samples);
  console.table(summarize(samples, unit));
  console.error(`soak: wrote ${out}`);
  process.exit(0);
}

main().catch((e) => {
  console.error(`webgpu-vae soak: ${(e as Error).message}`);
  process.exit(e instanceof UsageError ? 2 : 1);
});
