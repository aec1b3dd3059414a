/**
 * `npm run bench` exercised with tiny runs, so the benchmark's own code cannot rot, on both
 * runtimes (headless Chromium, and Dawn in Node): the JSON records the adapter, every kernel's
 * timing, the scheduler counts (measured by the runtime) within their limits and, with
 * --compare, an entry per peer (or an explicit skip notice).
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodePlan } from '../src/gpu/plan';
import { tempDir, toolEnv, tsx } from './cli';

function bench(args: string[], env: Record<string, string> = {}, timeoutMs = 240_000) {
  const out = join(tempDir('bench'), 'bench.json');
  return new Promise<{ code: number | null; stdout: string; stderr: string; json: Record<string, any> }>(
    (resolve, reject) => {
      const child = spawn(tsx, ['bench/bench.ts', ...args, '--out', out], {
        env: toolEnv(env),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
      child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
      const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
      child.on('error', reject);
      child.on('close', (code) => {
        clearTimeout(timer);
        let json: Record<string, any> = {};
        try {
          json = JSON.parse(readFileSync(out, 'utf8'));
        } catch {
          // asserted below through the exit code and stderr
        }
        resolve({ code, stdout, stderr, json });
      });
    },
  );
}

function expectEngineResults(json: Record<string, any>, steps: number) {
  expect(typeof json.adapter.vendor).toBe('string');
  expect(typeof json.adapter.architecture).toBe('string');
  expect(typeof json.adapter.isFallbackAdapter).toBe('boolean');
  if (json.runtime.name === 'chromium') expect(json.browser).toMatch(/Chrom/);
  else expect(json.browser).toBeUndefined();
  expect(Number.isNaN(Date.parse(json.date))).toBe(false);

  const kernels = json.kernels as {
    label: string;
    median: number;
    p10: number;
    p90: number;
    share: number;
    reps: number;
    gflops?: number;
    gbps?: number;
  }[];
  expect(kernels.length).toBeGreaterThanOrEqual(8);
  for (const k of kernels) {
    expect(k.median, k.label).toBeGreaterThan(0);
    expect(k.p10).toBeLessThanOrEqual(k.median);
    expect(k.p90).toBeGreaterThanOrEqual(k.median);
    expect(k.gflops ?? k.gbps ?? 1, k.label).toBeGreaterThan(0);
  }
  expect(kernels.filter((k) => k.gflops !== undefined).length).toBeGreaterThanOrEqual(8); // the matmuls
  expect(kernels.reduce((s, k) => s + k.share, 0)).toBeCloseTo(1, 5);
  // No time below the timer's resolution: every kernel's median span lasted ≥ 2 ms (MIN_SPAN_MS).
  for (const k of kernels) {
    expect(k.reps * k.median, `${k.label}: ${k.reps} × ${k.median} ms`).toBeGreaterThanOrEqual(2 - 1e-9);
  }
  // The occupancy table: every dispatch of the step, under the plan in use and the hardware plan.
  expect(json.occupancy.inUse.map((d: { label: string }) => d.label)).toEqual(kernels.map((k) => k.label));
  expect(json.occupancy.hardware).toHaveLength(kernels.length);
  for (const d of json.occupancy.hardware as { label: string; workgroups: number[]; invocations: number }[]) {
    expect(d.invocations, d.label).toBeGreaterThan(0);
    expect(
      d.workgroups.every((w) => Number.isInteger(w) && w >= 1 && w <= 65_535),
      d.label,
    ).toBe(true);
  }
  expect(json.step.median).toBeGreaterThan(0);
  expect(json.step.dispatchesPerStep).toBeLessThanOrEqual(16);

  expect(json.endToEnd.steps).toBe(steps);
  expect(json.endToEnd.msPerStep).toBeGreaterThan(0);
  expect(json.endToEnd.testSeconds).toBeGreaterThan(0);
  expect(Number.isFinite(json.endToEnd.averageLoss)).toBe(true);
  expect(json.endToEnd.efficiency).toBeGreaterThan(0);
  // The scheduler's figures are the runtime's measurements over the epoch (Gpu.counters()), so
  // these are checks of the program, not of a tally kept beside it.
  const c = json.counts;
  expect(c.dispatchesPerStep).toBeLessThanOrEqual(16);
  expect(c.bytesUploadedPerStep).toBe(0);
  const trainCount = steps * 128;
  expect(c.bytesUploadedPerEpoch).toBe(4 * trainCount + 4); // the shuffle and the batch-index reset, nothing else
  expect(c.submitsPerEpoch).toBe(2 * Math.ceil(steps / 16)); // each submit of 16 steps, and the copy of its losses
  expect(c.bytesReadBackPerEpoch).toBe(4 * steps); // one loss per batch
  expect(c.withinLimits).toBe(true);
}

describe('npm run bench', () => {
  it('--steps 5 --repeat 1: adapter, kernel timings and scheduler counts within limits in the JSON', async () => {
    const r = await bench(['--steps', '5', '--repeat', '1']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/webgpu-vae bench on /);
    expect(r.stdout).toMatch(/one step, recorded whole/);
    expect(r.stdout).toMatch(/within limits/);
    expectEngineResults(r.json, 5);
    expect(r.json.peers).toBeUndefined();
  }, 300_000);

  it('--runtime node: the same measurements on Dawn in Node, with no browser anywhere', async () => {
    // A browser the bench tried to launch would not be found: only Dawn can have run this.
    const r = await bench(['--runtime', 'node', '--steps', '2', '--repeat', '1'], {
      WEBGPU_VAE_CHROME: '/nonexistent',
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.split('\n')[0]).toMatch(/^webgpu-vae bench on .+\S.* Dawn on (swiftshader|lavapipe)\]$/);
    expect(r.json.runtime.name).toBe('node');
    expect(r.json.runtime.version).toMatch(/Dawn \(npm webgpu \d/);
    expectEngineResults(r.json, 2);
  }, 300_000);

  it("--autotune: prints the tuner's report and caches the plan in a file; a second run takes it from the file", async () => {
    const cache = tempDir('tune-cache');
    // The tuner and its cache only: --no-kernels skips the kernel timings the other tests check.
    const first = await bench(['--autotune', '--no-kernels', '--steps', '0', '--repeat', '1'], {
      WEBGPU_VAE_TUNE_CACHE: cache,
    });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/kernel tuner, timed by (GPU timestamp queries|wall clock)/);
    expect(first.json.autotune.from).toBe('tuner');
    expect(readdirSync(cache)).toEqual([basename(first.json.autotune.file)]);
    expect(decodePlan(readFileSync(first.json.autotune.file, 'utf8'))).toEqual(first.json.autotune.plan);
    const second = await bench(['--autotune', '--no-kernels', '--steps', '0', '--repeat', '1'], {
      WEBGPU_VAE_TUNE_CACHE: cache,
    });
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toContain('kernel plan from the tune cache');
    expect(second.stdout).not.toMatch(/kernel tuner, timed by/);
    expect(second.json.autotune).toMatchObject({
      from: 'cache',
      file: first.json.autotune.file,
      plan: first.json.autotune.plan,
    });
  }, 600_000);

  it('--model conv --compare --rounds 1: the conv launch table, its counts, and one interleaved block per side', async () => {
    // One step everywhere (a conv step takes seconds on a software adapter), tfjs-WASM on one thread.
    const r = await bench(
      ['--model', 'conv', '--steps', '1', '--repeat', '1', '--compare', '--rounds', '1', '--block-steps', '1'],
      { WEBGPU_VAE_PEERS: 'tfjs-wasm', WEBGPU_VAE_WASM_THREADS: '1' },
      900_000,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.model).toBe('conv');
    // Every conv product the step runs (4 layers × forward, dX, dW, less the first layer's dX), with
    // its tile; the hardware plan's invocations as the tile gives them and as its built dispatch launches.
    const convs = (r.json.occupancy.inUse as { label: string; conv?: Record<string, any> }[]).filter((d) => d.conv);
    expect(convs.map((d) => d.label.replace(/^train\[128\] /, '')).sort()).toEqual(
      ['decoder.5', 'decoder.7', 'encoder.0', 'encoder.2']
        .flatMap((l) => [l, `${l} dW`, `${l} dX`])
        .filter((l) => l !== 'encoder.0 dX')
        .sort(),
    );
    for (const d of convs) {
      const built = (r.json.occupancy.hardware as { label: string; invocations: number }[]).find(
        (h) => h.label === d.label,
      )!;
      expect(d.conv!.hardwareInvocations, d.label).toBe(built.invocations);
      expect(built.invocations, d.label).toBeGreaterThanOrEqual(8192);
      expect(d.conv!.tile.tileM * d.conv!.tile.tileN, d.label).toBeGreaterThanOrEqual(1);
    }
    expect(r.stdout).toMatch(/encoder\.2 dX .* up 32×25088×1024, tile \d+×\d+/);
    // The scheduler's counts, measured by the runtime over the epoch and over the interleaved block.
    const c = r.json.counts;
    expect(c.dispatchesPerStep).toBe(c.programDispatchesPerStep);
    expect(c.dispatchesPerStep).toBeLessThanOrEqual(c.limits.dispatchesPerStep);
    expect(c.bytesUploadedPerStep).toBe(0);
    expect(c.withinLimits).toBe(true);
    const { sides, engineCounts } = r.json.interleaved;
    expect(engineCounts).toEqual([
      expect.objectContaining({ dispatchesPerStep: c.dispatchesPerStep, bytesUploadedPerStep: 0 }),
    ]);
    expect(sides.map((s: { name: string }) => s.name)).toEqual(['engine', expect.stringMatching(/^tfjs .* WASM/)]);
    const [engine, wasm] = sides;
    expect(wasm.skipped).toBeUndefined();
    expect(wasm.msPerStep).toHaveLength(1);
    expect(engine.msPerStep[0]).toBeGreaterThan(0);
    expect(engine.engineTimesFaster).toBeUndefined();
    expect(wasm.engineTimesFaster.median).toBeCloseTo(wasm.msPerStep[0] / engine.msPerStep[0], 6);
    expect(r.stdout).toMatch(/engine ×faster within each round/);
  }, 900_000);

  it('--compare with tiny peers: an entry for every peer, with ratios to the engine, or a skip notice', async () => {
    // One timed tfjs step per backend, one sample per matMul shape, two PyTorch batches.
    const r = await bench(['--steps', '5', '--repeat', '1', '--kernel', 'fc1', '--compare'], {
      WEBGPU_VAE_PEER_STEPS: '2',
    });
    expect(r.code, r.stderr).toBe(0);
    expectEngineResults(r.json, 5);
    expect(r.stdout).toMatch(/engine ×faster/);

    const peers = r.json.peers as Record<string, any>[];
    const named = (pattern: RegExp) => peers.filter((p) => pattern.test(p.name));
    for (const [pattern, backend] of [
      [/^tfjs WebGPU VAE$/, 'webgpu'],
      [/^tfjs WASM .*VAE$/, 'wasm'],
    ] as const) {
      const [vae] = named(pattern);
      expect(vae, `${pattern}: ${JSON.stringify(peers.filter((p) => p.skipped))}`).toBeDefined();
      expect(vae.skipped).toBeUndefined();
      expect(vae.backend.backend).toBe(backend);
      expect(vae.timedSteps).toBe(2);
      expect(vae.msPerStep).toBeGreaterThan(0);
      expect(vae.epochSeconds).toBeCloseTo((vae.msPerStep * 469) / 1000, 6);
      expect(vae.engineTimesFaster).toBeCloseTo(vae.msPerStep / r.json.endToEnd.msPerStep, 6);
      // The same model and loss as the reference: an untrained VAE starts near 550 per image.
      expect(vae.lossFirst).toBeGreaterThan(450);
      expect(vae.lossFirst).toBeLessThan(650);
      expect(vae.lossLast).toBeLessThan(vae.lossFirst);
    }
    const [wasm] = named(/^tfjs WASM/);
    expect(typeof wasm.backend.wasm.simd).toBe('boolean');
    expect(wasm.backend.wasm.variant).toMatch(/SIMD|plain/);

    // tf.matMul at every VAE product, each matched to the engine's kernel of the same name.
    const matmuls = named(/^tfjs WebGPU matMul /);
    expect(matmuls).toHaveLength(11);
    for (const m of matmuls) {
      expect(m.gflops, m.name).toBeGreaterThan(0);
      expect(m.engineKernel, `${m.name} has no engine kernel to compare with`).toMatch(/^train\[128\] /);
      expect(m.engineTimesFaster, m.name).toBeGreaterThan(0);
      // Both sides on one clock, each span ≥ 2 ms, and the output says where each side waits.
      expect(m.engineTimesFaster, m.name).toBeCloseTo(m.ms / m.engineWallMs, 6);
      expect(m.engineWallMs * m.engineWallReps, m.name).toBeGreaterThanOrEqual(2);
      expect(m.clock).toMatch(
        /engine: .*one mapAsync readback of C per span.*tfjs: .*one data\(\) of the last result per span/,
      );
    }
    expect(r.stdout).toMatch(/Waits — engine: .* tfjs: /);

    // PyTorch with both BLAS libraries, or a notice saying why not.
    const torch = named(/^PyTorch reference program/);
    expect(torch.length).toBeGreaterThanOrEqual(1);
    for (const t of torch) {
      if (t.skipped) {
        expect(t.skipped).toMatch(/\w/);
        continue;
      }
      expect(t.trainBatches).toBe(2);
      expect(t.extrapolated).toBe(true);
      expect(t.epochSeconds).toBeGreaterThan(0);
      expect(t.testPassSeconds).toBeGreaterThan(0);
      expect(t.blasVerified, `${t.name}: ${t.blasLibraries}`).toBe(true);
    }
  }, 300_000);
});
