/**
 * The start-up autotune on the real adapter (src/model/autotune.ts): what a host can observe of
 * it from outside — its plan, its live buffers and a model's weights are as they were, the cache
 * holds the plan and a second start reuses it — the end-to-end check's tolerance against the
 * honest differences of every candidate and against a slightly wrong run, and `--autotune` in
 * the CLI: the report printed, the cache file written, reused by a second run, the losses of
 * a run under the tuned plan against a run without autotune, the tuned plan in the checkpoint, and a
 * resume that keeps it.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConvProductOf } from '../src/gpu/conv-ops';
import { CONV_SPLIT_ALTERNATIVES, CONV_TUNE_ALTERNATIVES } from '../src/gpu/conv-plan';
import { decodePlan, encodePlan } from '../src/gpu/plan';
import type { MatmulProduct } from '../src/gpu/ops';
import { CHECK_RTOL, engineVersion, largestDifference, lossesMatch, TUNE_ALTERNATIVES } from '../src/model/autotune';
import { parseSpec, specSizes } from '../src/model/spec';
import { tempDir, toolEnv, tsx } from './cli';
import { openHarness, type GpuPage } from './gpu';

/** A small model, so that tuning it takes seconds on a software adapter. */
const SMALL = { sizes: { D: 64, hidden: [48], L: 6 }, batchSize: 24 };
const CONDITIONAL = { sizes: { ...SMALL.sizes, classes: 5 }, batchSize: 24 };
/**
 * The smallest conv VAE with all three conv products (down, up, weight): one Conv2d, one
 * ConvTranspose2d and no hidden Linear, so the tuner has few matmuls to time beside them.
 */
const TINY_CONV = {
  sizes: specSizes(
    parseSpec({
      input: [1, 8, 8],
      latent: 4,
      encoder: [['Conv2d', 1, 4, 4, 2, 1], ['ReLU'], ['Flatten']],
      decoder: [['Linear', 4, 64], ['ReLU'], ['Unflatten', 1, [4, 4, 4]], ['ConvTranspose2d', 4, 1, 4, 2, 1]],
      likelihood: 'bernoulli',
    }),
  ),
  batchSize: 8,
};

/**
 * Its conv products' keys, one per product and geometry: the ConvTranspose2d(4, 1) is the
 * Conv2d(1, 4)'s join read the other way, so its dX is the Conv2d's forward, and their dW share a key.
 */
const TINY_CONV_KEYS = [
  'conv down I 8×1×8×8 O 4×4×4 k4×4 s2 p1',
  'conv up I 8×1×8×8 O 4×4×4 k4×4 s2 p1',
  'conv weight I 8×1×8×8 O 4×4×4 k4×4 s2 p1',
];

describe('the engine version in the tune cache key (no GPU)', () => {
  // A conditional model's dz→dmulv product (N = L + C columns, L of them going on) and the
  // unconditional one of the same shape.
  const dz = (conditioned: boolean): MatmulProduct => ({
    dims: { M: 24, N: 11, K: 48, ...(conditioned ? { L: 6 } : {}) },
    options: { transA: false, transB: false, ...(conditioned ? { reparamConditioned: true } : {}) },
    epilogues: { bias: false, relu: false, reluMask: false, rowSum: false, reparamBackward: true },
  });
  const version = (product: MatmulProduct, candidates = TUNE_ALTERNATIVES) =>
    engineVersion([{ product, quad: false, candidates }]);

  it('digests the kernels each product compiles under each candidate, the conditioned epilogue included', () => {
    expect(version(dz(true))).not.toBe(version(dz(false)));
    for (const choice of TUNE_ALTERNATIVES)
      expect(version(dz(true), [choice]), JSON.stringify(choice)).not.toBe(version(dz(false), [choice]));
    // Order does not matter; the same products give the same version.
    expect(version(dz(true), [...TUNE_ALTERNATIVES].reverse())).toBe(version(dz(true)));
    // The conv kernels too: the same conv product with another epilogue compiles other WGSL.
    const dX = (mask: 'relu' | 'leakyRelu'): ConvProductOf => ({
      layer: { transpose: false, inC: 32, outC: 64, kernel: 4, stride: 2, padding: 1, outputPadding: 0 },
      input: { batch: 8, H: 4, W: 4 },
      pass: 'dX',
      epilogue: { activation: 'none', mask, slope: 0.2 },
      bias: false,
      db: false,
    });
    const all = [...CONV_TUNE_ALTERNATIVES, ...CONV_SPLIT_ALTERNATIVES];
    const withConv = (mask: 'relu' | 'leakyRelu', candidates = all) =>
      engineVersion(
        [{ product: dz(false), quad: false, candidates: TUNE_ALTERNATIVES }],
        [{ product: dX(mask), candidates }],
      );
    expect(withConv('relu')).not.toBe(withConv('leakyRelu'));
    for (const choice of all)
      expect(withConv('relu', [choice]), JSON.stringify(choice)).not.toBe(withConv('leakyRelu', [choice]));
    expect(withConv('relu', [...all].reverse())).toBe(withConv('relu'));
    expect(
      engineVersion([
        { product: dz(true), quad: false, candidates: TUNE_ALTERNATIVES },
        { product: dz(false), quad: false, candidates: TUNE_ALTERNATIVES },
      ]),
    ).toBe(
      engineVersion([
        { product: dz(false), quad: false, candidates: TUNE_ALTERNATIVES },
        { product: dz(true), quad: false, candidates: TUNE_ALTERNATIVES },
      ]),
    );
  });
});

describe("the end-to-end check's loss comparison (no GPU)", () => {
  it('measures differences against the largest loss of the run, so a Gaussian loss passing near 0 does not fail an honest plan', () => {
    // A Gaussian with σ = 0.1 over 64 pixels: D·(½·log 2π + log σ) ≈ −89, so as the squared error falls the
    // batch loss crosses 0. An honest plan's rounding (~1e-7 of the loss's terms) moves a step
    // near 0 by far more than 1e-5 of that step's own loss.
    const base = Float32Array.from([2400, 900, 310, 95, 12, 0.004, -30, -52]);
    const honest = base.map((b) => b + 1e-7 * 2400);
    expect(lossesMatch(base, honest)).toBe(true);
    expect(largestDifference(base, honest)).toBeLessThan(2e-7); // 1e-7 of the largest loss, give or take float32 rounding
    // A wrong run is still told apart, at a step near 0 as anywhere else.
    const wrong = base.map((b, i) => (i === 5 ? b + 1e-3 * 2400 : b));
    expect(lossesMatch(base, wrong)).toBe(false);
    expect(largestDifference(base, wrong)).toBeGreaterThan(CHECK_RTOL);
    expect(
      lossesMatch(
        base,
        base.map((b, i) => (i === 2 ? NaN : b)),
      ),
    ).toBe(false);
    expect(lossesMatch(base, base.subarray(1))).toBe(false);
  });
});

let gpu: GpuPage;
beforeAll(async () => {
  gpu = await openHarness('/test/harness/autotune.html', 'autotune');
});
afterAll(async () => {
  await gpu?.close();
});

describe('autotune on the real adapter', () => {
  it("leaves the runtime's live buffers and a model's weights, moments and step as they were; a second start takes the cached plan", async () => {
    const r = await gpu.page.evaluate((c) => window.autotune.twice(c), SMALL);
    console.log(`autotune of a small model: ${r.first.report!.reason}`);
    // Every buffer tuning made is released. What stays is the runtime's pool of readback staging
    // buffers, one per readback size it has seen (the timestamps, the check's losses), which are
    // reused; a second start, from the cache, adds nothing.
    expect(r.afterFirst.liveBuffers - r.before.liveBuffers).toBeLessThanOrEqual(2);
    expect(r.afterSecond.liveBuffers).toBe(r.afterFirst.liveBuffers);
    expect(r.stateUnchanged).toBe(true);
    expect(r.first.from).toBe('tuner');
    expect(r.first.report!.clock).toBe(r.hasTimestamps ? 'timestamp' : 'wall');
    // Every product of the step (4 linears: 4 forward, 4 dW, 3 dX) was timed, each sampled span ≥ 2 ms.
    expect(r.first.report!.products).toHaveLength(11);
    for (const p of r.first.report!.products) {
      for (const c of p.candidates)
        if (!c.dropped) for (const ms of c.samplesMs) expect(ms, p.key).toBeGreaterThanOrEqual(2);
    }
    expect(r.calls).toEqual(['get', 'put', 'get']);
    expect(r.cached).toHaveLength(1);
    expect(r.cached[0][0]).toBe(r.first.key);
    expect(decodePlan(r.cached[0][1])).toEqual(JSON.parse(r.first.plan));
    expect(r.second).toEqual({ from: 'cache', key: r.first.key, plan: r.first.plan });
    // The key names the browser's full version (its user-agent string says only the major), so
    // a browser update checks its plan again instead of taking the cached one.
    const version = /\/([\d.]+)$/.exec(await gpu.browser.version())![1];
    expect(version).toMatch(/^\d+\.\d+\.[1-9]\d*\.\d+$/);
    expect(r.first.key).toContain(version);
  });

  it('a conv model: its conv products are timed under their conv keys, and the plan it chose is cached and decodes back', async () => {
    const r = await gpu.page.evaluate((c) => window.autotune.twice(c), TINY_CONV);
    const report = r.first.report!;
    console.log(`autotune of a small conv model on 8×8 images: ${report.reason}`);
    expect(r.stateUnchanged).toBe(true);
    const convs = report.products.filter((p) => p.key.startsWith('conv '));
    expect(convs.map((p) => p.key).sort()).toEqual(TINY_CONV_KEYS);
    for (const p of convs) {
      // The base choice first, then every candidate besides it.
      expect(p.candidates[0].choice.variant, p.key).toBe('conv');
      const alternatives = r.software
        ? CONV_TUNE_ALTERNATIVES
        : [...CONV_TUNE_ALTERNATIVES, ...CONV_SPLIT_ALTERNATIVES];
      for (const c of alternatives)
        expect(
          p.candidates.map((d) => d.choice),
          p.key,
        ).toContainEqual(c);
      for (const c of p.candidates)
        if (!c.dropped) for (const ms of c.samplesMs) expect(ms, p.key).toBeGreaterThanOrEqual(2);
    }
    const plan = decodePlan(r.first.plan);
    expect(plan).not.toBeNull();
    expect(encodePlan(plan!)).toBe(r.first.plan);
    // Whatever the timings chose: each changed product's override is in the plan, conv ones included.
    for (const p of report.products.filter((q) => q.changed)) expect(plan!.overrides[p.key], p.key).toEqual(p.chosen);
    expect(r.cached).toEqual([[r.first.key, r.first.plan]]);
    expect(r.second).toEqual({ from: 'cache', key: r.first.key, plan: r.first.plan });
  });

  it(`a conv model: the check's tolerance (${CHECK_RTOL}) passes every conv candidate forced on every conv product, which runs that candidate's kernel`, async () => {
    const r = await gpu.page.evaluate((c) => window.autotune.checkConvDifferences(c), TINY_CONV);
    console.log(
      `16-step loss differences from the base plan (${r.keys.length} conv products): ` +
        r.candidates.map((c) => `${c.choice} ${c.difference.toExponential(1)}`).join(', '),
    );
    expect(r.keys.sort()).toEqual(TINY_CONV_KEYS);
    expect(r.candidates).toHaveLength(r.alternatives);
    expect(r.baseLosses.every(Number.isFinite)).toBe(true);
    for (const c of r.candidates) {
      // The Conv2d's forward and dW, the ConvTranspose2d's forward, dX and dW.
      expect(c.kernels, c.choice).toHaveLength(5);
      for (const [label, forced] of c.kernels)
        expect(forced, `${c.choice}: ${label} runs the forced tile's kernel`).toBe(true);
      expect(c.difference, c.choice).toBeLessThanOrEqual(CHECK_RTOL);
      expect(c.match, c.choice).toBe(true);
    }
  });

  it.each([
    ['unconditional', SMALL],
    // The conditioned dz→dmulv product (its epilogue passes only L of its L + C columns on) under
    // every kernel: a kernel that dropped reparamConditioned would write wrong gradients.
    ['conditional, 5 classes', CONDITIONAL],
  ])(
    `%s: the check's tolerance (${CHECK_RTOL}) passes every candidate forced on every product, and fails a run at a learning rate 1 % off`,
    async (_, model) => {
      const r = await gpu.page.evaluate((c) => window.autotune.checkDifferences(c), model);
      console.log(
        `16-step loss differences from the base plan (${r.products} products): ` +
          `${r.candidates.map((c) => `${c.choice} ${c.difference.toExponential(1)}`).join(', ')}; lr 1 % off ${r.lrOff.difference.toExponential(1)}`,
      );
      expect(r.baseLosses.every(Number.isFinite)).toBe(true);
      for (const c of r.candidates) {
        expect(c.difference, c.choice).toBeLessThanOrEqual(CHECK_RTOL);
        expect(c.match, c.choice).toBe(true);
      }
      expect(r.lrOff.difference).toBeGreaterThan(CHECK_RTOL);
      expect(r.lrOff.match).toBe(false);
    },
  );
});

describe('npm run train -- --autotune', () => {
  const run = (out: string, cache: string, extra: string[]) =>
    spawnSync(
      tsx,
      [
        'src/cli/train.ts',
        '--epochs',
        '1',
        '--train-limit',
        '96',
        '--test-limit',
        '48',
        '--batch-size',
        '24',
        '--hidden',
        '48',
        '--latent',
        '6',
        '--out',
        out,
        ...extra,
      ],
      { encoding: 'utf8', timeout: 240_000, env: toolEnv({ WEBGPU_VAE_TUNE_CACHE: cache }) },
    );
  /** The kernel_plan a checkpoint's safetensors header records (read here, not by the engine's reader). */
  const checkpointPlan = (file: string) => {
    const bytes = readFileSync(file);
    const header = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString('utf8'));
    return header.__metadata__.kernel_plan as string;
  };
  const metrics = (out: string) =>
    JSON.parse(readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim()) as { trainLoss: number; testLoss: number };

  it("prints the tuner's report and writes the cache file; a second run reuses the file; the losses are the untuned run's under an unchanged plan", () => {
    const dir = tempDir();
    const cache = join(dir, 'cache');
    const tuned = run(join(dir, 'tuned'), cache, ['--autotune']);
    expect(tuned.status, tuned.stderr).toBe(0);
    expect(tuned.stdout).toMatch(/kernel tuner, timed by (GPU timestamp queries|wall clock)/);
    const file = /tuned plan cached in (\S+\.json)/.exec(tuned.stdout)?.[1];
    expect(file, tuned.stdout).toBeDefined();
    expect(readdirSync(cache)).toEqual([file!.split('/').at(-1)]);
    const plan = decodePlan(readFileSync(file!, 'utf8'));
    expect(plan).not.toBeNull();
    const written = statSync(file!).mtimeMs;

    const again = run(join(dir, 'again'), cache, ['--autotune']);
    expect(again.status, again.stderr).toBe(0);
    expect(again.stdout).toContain('kernel plan from the tune cache');
    expect(again.stdout).toContain(file!);
    expect(again.stdout).not.toMatch(/kernel tuner, timed by/);
    expect(statSync(file!).mtimeMs).toBe(written);
    expect(metrics(join(dir, 'again'))).toEqual(metrics(join(dir, 'tuned'))); // one plan, one result

    const plain = run(join(dir, 'plain'), cache, []);
    expect(plain.status, plain.stderr).toBe(0);
    expect(plain.stdout).not.toMatch(/tune/);
    const [a, b] = [metrics(join(dir, 'tuned')), metrics(join(dir, 'plain'))];
    if (Object.keys(plan!.overrides).length === 0) {
      // The tuner kept the default plan: tuning must not have touched anything the run uses.
      expect(a).toEqual(b);
    } else {
      expect(Math.abs(a.trainLoss - b.trainLoss)).toBeLessThanOrEqual(CHECK_RTOL * b.trainLoss);
    }

    // The tuned run's checkpoint records the tuned plan; resuming it with --autotune keeps that
    // plan (its next checkpoint records it again) and tunes nothing.
    const checkpoint = join(dir, 'tuned', 'checkpoint.safetensors');
    expect(decodePlan(checkpointPlan(checkpoint))).toEqual(plan);
    const resumed = run(join(dir, 'tuned'), join(dir, 'cache-for-resume'), [
      '--epochs',
      '2',
      '--resume',
      checkpoint,
      '--autotune',
    ]);
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(/--autotune skipped: the checkpoint records its kernel plan/);
    expect(resumed.stdout).not.toMatch(/kernel tuner, timed by/);
    expect(resumed.stdout).toMatch(/Epoch: 2 Average loss/);
    expect(decodePlan(checkpointPlan(checkpoint))).toEqual(plan);
    expect(existsSync(join(dir, 'cache-for-resume')) && readdirSync(join(dir, 'cache-for-resume')).length > 0).toBe(
      false,
    );
  }, 600_000);
});
