/**
 * The start-up autotuner (src/gpu/tuner.ts) with a fake clock: `time` returns spans from a table
 * (ms per dispatch × repeats, with the noise a test asks for) and records every call, so each
 * rule is checked by what the tuner asked for and what it chose. No GPU, no browser.
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { encodePlan, planFor, type KernelPlan, type MatmulChoice, type PlanChoice } from '../src/gpu/plan';
import {
  DROP_FACTOR,
  formatTuneReport,
  MIN_SPAN_MS,
  productToTune,
  SAMPLES,
  tuneCacheKey,
  tunePlan,
  tuneWithCache,
  type ProductToTune,
  type TuneClock,
  type TuneInput,
  type TuneResult,
} from '../src/gpu/tuner';
import { fileCache, tuneCacheFile } from '../src/node/tune-cache';

const tile = (tileM: number, tileN: number): MatmulChoice => ({ variant: 'register', tileM, tileN });
const T84 = tile(8, 4),
  T44 = tile(4, 4),
  T42 = tile(4, 2);
const label = (c: PlanChoice) => `${c.tileM}×${c.tileN}`;

const FC1 = 'NT 128×400×784';
const FC4 = 'NT 128×784×400';

interface Call {
  key: string;
  choice: string;
  repeats: number;
  ms: number;
}

/**
 * A fake `time`: `perDispatchMs[key][choice]` × repeats, times `factor(key, choice, n)` where n
 * counts that choice's calls for that key (0 = its first), floored to `quantumMs` when given
 * (a coarse wall clock). Every call is recorded.
 */
function fakeClock(
  perDispatchMs: Record<string, Record<string, number>>,
  options: {
    factor?: (key: string, choice: string, n: number) => number;
    quantumMs?: number;
  } = {},
) {
  const calls: Call[] = [];
  const time = vi.fn(async (key: string, choice: PlanChoice, repeats: number) => {
    const name = label(choice);
    const n = calls.filter((c) => c.key === key && c.choice === name).length;
    let ms = perDispatchMs[key][name] * repeats * (options.factor?.(key, name, n) ?? 1);
    if (options.quantumMs) ms = Math.floor(ms / options.quantumMs) * options.quantumMs;
    calls.push({ key, choice: name, repeats, ms });
    return ms;
  });
  return { time, calls };
}

const base = planFor(false);

function input(time: TuneInput['time'], products: ProductToTune[], extra: Partial<TuneInput> = {}): TuneInput {
  return { base, products, time, clock: 'timestamp' as TuneClock, check: vi.fn(async () => true), ...extra };
}

/** The calls of `key` after its calibration: the last SAMPLES × candidates. */
const sampleCalls = (calls: Call[], key: string, candidates: number) =>
  calls.filter((c) => c.key === key).slice(-SAMPLES * candidates);

describe('tuner: which choice wins', () => {
  it('takes a candidate ≥ 5 % faster than the base choice (exactly 5 % too), not one 4 % faster; overrides hold only changes', async () => {
    for (const [candidateMs, wins] of [
      [1.9, true],
      [1.88, true],
      [1.92, false],
    ] as const) {
      const { time } = fakeClock({ [FC1]: { '8×4': 2, '4×4': candidateMs }, [FC4]: { '8×4': 2, '4×4': 2.2 } });
      const { plan, report } = await tunePlan(
        input(time, [
          { key: FC1, candidates: [T84, T44] },
          { key: FC4, candidates: [T84, T44] },
        ]),
      );
      const gain = `${((1 - candidateMs / 2) * 100).toFixed(0)} % faster`;
      expect(plan.overrides, gain).toEqual(wins ? { [FC1]: T44 } : {});
      expect(plan.kind).toBe(base.kind);
      expect(report.products[0].changed, gain).toBe(wins);
      expect(report.products[0].fastest, gain).toEqual(T44); // the fastest, even when not fast enough
      expect(report.products[1].changed).toBe(false); // FC4: the candidate is slower
      expect(report.changed).toEqual(wins ? [FC1] : []);
      expect(report.accepted).toBe(wins);
    }
  });

  it('the fastest of several winners is taken', async () => {
    const { time } = fakeClock({ [FC1]: { '8×4': 4, '4×4': 3, '4×2': 2.5 } });
    const { plan } = await tunePlan(input(time, [{ key: FC1, candidates: [T84, T44, T42] }]));
    expect(plan.overrides).toEqual({ [FC1]: T42 });
  });

  it('median of 5: one outlier span does not flip the choice either way', async () => {
    // 10 % faster, but its third sample (its call 3: call 0 is the calibration span) is preempted: 3× slower.
    // A mean (1.26× the base) would keep the base; the median takes the candidate.
    // (Spans of ≥ 2 ms at one dispatch, so that the outliers too are spans the rules compare.)
    const slowOutlier = fakeClock(
      { [FC1]: { '8×4': 5, '4×4': 4.5 } },
      { factor: (_k, c, n) => (c === '4×4' && n === 3 ? 3 : 1) },
    );
    const a = await tunePlan(input(slowOutlier.time, [{ key: FC1, candidates: [T84, T44] }]));
    expect(a.report.products[0].candidates[1].samplesMs).toEqual([4.5, 4.5, 13.5, 4.5, 4.5]);
    expect(a.plan.overrides).toEqual({ [FC1]: T44 });
    // 2 % slower, but one sample is half as long (a boost, or a timer glitch). A mean (0.92×) or
    // the minimum would switch; the median does not.
    const fastOutlier = fakeClock(
      { [FC1]: { '8×4': 5, '4×4': 5.1 } },
      { factor: (_k, c, n) => (c === '4×4' && n === 2 ? 0.5 : 1) },
    );
    const b = await tunePlan(input(fastOutlier.time, [{ key: FC1, candidates: [T84, T44] }]));
    expect(b.report.products[0].candidates[1].samplesMs).toEqual([5.1, 2.55, 5.1, 5.1, 5.1]);
    expect(b.plan.overrides).toEqual({});
  });
});

describe('tuner: how it measures', () => {
  it('interleaves: every round times each candidate once, in turn, for calibration and samples', async () => {
    const { time, calls } = fakeClock({
      [FC1]: { '8×4': 3, '4×4': 3.3, '4×2': 2.7 },
      [FC4]: { '8×4': 0.5, '4×4': 0.6 },
    });
    await tunePlan(
      input(time, [
        { key: FC1, candidates: [T84, T44, T42] },
        { key: FC4, candidates: [T84, T44] },
      ]),
    );
    const fc1 = calls.filter((c) => c.key === FC1).map((c) => c.choice);
    const fc4 = calls.filter((c) => c.key === FC4).map((c) => c.choice);
    expect(fc1).toEqual(Array.from({ length: fc1.length }, (_, i) => ['8×4', '4×4', '4×2'][i % 3]));
    expect(fc4).toEqual(Array.from({ length: fc4.length }, (_, i) => ['8×4', '4×4'][i % 2]));
    expect(fc1.length).toBe(3 * (1 + SAMPLES)); // one calibration round (3 ms ≥ 2 ms at 1 repeat), then the samples
    // One product at a time: FC4's calls all come after FC1's.
    expect(calls.map((c) => c.key)).toEqual([...fc1.map(() => FC1), ...fc4.map(() => FC4)]);
  });

  it('spans of ≥ 2 ms: a 0.1 ms kernel is repeated until its span reaches 2 ms, and every sample uses that count', async () => {
    const { time, calls } = fakeClock({ [FC1]: { '8×4': 0.1, '4×4': 0.12 } });
    const { report } = await tunePlan(input(time, [{ key: FC1, candidates: [T84, T44] }]));
    // 0.1 × 16 = 1.6 ms < 2; 0.1 × 32 = 3.2 ms: 32 dispatches per span, found by doubling from 1.
    expect(report.products[0].repeats).toBe(32);
    const calibration = calls.slice(0, calls.length - 2 * SAMPLES);
    expect(calibration.map((c) => c.repeats)).toEqual([1, 1, 2, 2, 4, 4, 8, 8, 16, 16, 32, 32]);
    const samples = sampleCalls(calls, FC1, 2);
    expect(samples.map((c) => c.repeats)).toEqual(Array(2 * SAMPLES).fill(32));
    for (const c of report.products[0].candidates) {
      expect(c.samplesMs).toHaveLength(SAMPLES);
      for (const ms of c.samplesMs) expect(ms).toBeGreaterThanOrEqual(MIN_SPAN_MS);
      expect(c.perDispatchMs).toBeCloseTo(c.medianMs / 32, 12);
    }
  });

  it('a sample that noise brings under 2 ms is not compared: the count doubles and the samples start over', async () => {
    // At 32 repeats the candidate's spans are 2.08 ms; its second sample (its call 7: calls 0–5 calibrate) comes in 25 % short.
    const { time, calls } = fakeClock(
      { [FC1]: { '8×4': 0.1, '4×4': 0.065 } },
      { factor: (_k, c, n) => (c === '4×4' && n === 7 ? 0.75 : 1) },
    );
    const { report } = await tunePlan(input(time, [{ key: FC1, candidates: [T84, T44] }]));
    expect(calls.some((c) => c.ms < MIN_SPAN_MS && c.repeats === 32)).toBe(true); // the short span happened
    expect(report.products[0].repeats).toBe(64);
    expect(sampleCalls(calls, FC1, 2).map((c) => c.repeats)).toEqual(Array(2 * SAMPLES).fill(64));
    for (const c of report.products[0].candidates)
      for (const ms of c.samplesMs) expect(ms).toBeGreaterThanOrEqual(MIN_SPAN_MS);
  });

  it("a dropped candidate reports its µs per dispatch at the calibration's count, even when sampling later doubles it", async () => {
    // Calibration ends at 32 repeats; 4×2 (0.35 ms ≥ 3 × 0.1) is dropped there. Then 4×4's second
    // sample comes in short, and the samples are taken again at 64.
    const { time } = fakeClock(
      { [FC1]: { '8×4': 0.1, '4×4': 0.065, '4×2': 0.35 } },
      { factor: (_k, c, n) => (c === '4×4' && n === 7 ? 0.75 : 1) },
    );
    const { report } = await tunePlan(input(time, [{ key: FC1, candidates: [T84, T44, T42] }]));
    expect(report.products[0].repeats).toBe(64);
    const dropped = report.products[0].candidates[2];
    expect(dropped).toMatchObject({ dropped: true, samplesMs: [0.35 * 32] });
    expect(dropped.perDispatchMs).toBeCloseTo(0.35, 12);
    expect(report.products[0].candidates[0].perDispatchMs).toBeCloseTo(0.1, 12);
    expect(formatTuneReport(report)).toMatch(/register 4×2\s+350\.0 µs/);
  });

  it(`a candidate ≥ ${DROP_FACTOR}× the base choice in its last calibration span is not sampled, one just under is`, async () => {
    const { time, calls } = fakeClock({ [FC1]: { '8×4': 2, '4×4': 2 * DROP_FACTOR, '4×2': 2 * DROP_FACTOR * 0.99 } });
    const { report } = await tunePlan(input(time, [{ key: FC1, candidates: [T84, T44, T42] }]));
    const sampled = calls.slice(3).map((c) => c.choice); // after one calibration round
    expect(sampled).not.toContain('4×4');
    expect(sampled.filter((c) => c === '4×2')).toHaveLength(SAMPLES);
    const [, dropped, kept] = report.products[0].candidates;
    expect(dropped).toMatchObject({ dropped: true, samplesMs: [2 * DROP_FACTOR] });
    expect(kept.dropped).toBeUndefined();
    expect(report.products[0].fastest).toEqual(T84);
    expect(formatTuneReport(report)).toMatch(/register 4×4 .*not sampled/);
  });

  it('a clock that does not advance is an error, not a plan', async () => {
    const time = vi.fn(async () => 0);
    await expect(tunePlan(input(time, [{ key: FC1, candidates: [T84, T44] }]))).rejects.toThrow(/not advancing/);
    const broken = vi.fn(async () => NaN);
    await expect(tunePlan(input(broken, [{ key: FC1, candidates: [T84] }]))).rejects.toThrow(/returned NaN ms/);
  });

  it("clock 'wall' (no timestamp-query): a coarse wall clock still finds the winner, and the report says so", async () => {
    // performance.now() at 100 µs: a 20 µs kernel can only be compared over many repeats.
    const { time, calls } = fakeClock({ [FC1]: { '8×4': 0.02, '4×4': 0.015 } }, { quantumMs: 0.1 });
    const { plan, report } = await tunePlan(input(time, [{ key: FC1, candidates: [T84, T44] }], { clock: 'wall' }));
    expect(plan.overrides).toEqual({ [FC1]: T44 });
    expect(report.clock).toBe('wall');
    expect(report.timing).toMatch(/wall clock/);
    expect(formatTuneReport(report)).toMatch(/timed by wall clock/);
    expect(sampleCalls(calls, FC1, 2).every((c) => c.ms >= MIN_SPAN_MS)).toBe(true);
    const stamped = await tunePlan(
      input(fakeClock({ [FC1]: { '8×4': 0.02, '4×4': 0.015 } }).time, [{ key: FC1, candidates: [T84, T44] }]),
    );
    expect(stamped.report.clock).toBe('timestamp');
    expect(formatTuneReport(stamped.report)).toMatch(/timed by GPU timestamp queries/);
    expect(formatTuneReport(stamped.report)).not.toMatch(/wall/);
  });
});

describe('tuner: the end-to-end check', () => {
  it('a failing check keeps the base plan and says why; a passing one accepts the tuned plan', async () => {
    const clock = () => fakeClock({ [FC1]: { '8×4': 2, '4×4': 1.5 } }).time;
    const failing = vi.fn(async (_plan: KernelPlan) => false);
    const kept = await tunePlan(input(clock(), [{ key: FC1, candidates: [T84, T44] }], { check: failing }));
    expect(failing).toHaveBeenCalledTimes(1);
    expect(failing.mock.calls[0][0]).toEqual({ ...base, overrides: { [FC1]: T44 } }); // it checked the tuned plan
    expect(kept.plan).toEqual(base);
    expect(kept.report.accepted).toBe(false);
    expect(kept.report.checkPassed).toBe(false);
    expect(kept.report.changed).toEqual([FC1]); // what it would have changed
    expect(kept.report.reason).toMatch(/failed the end-to-end check.*base plan's losses.*base plan is kept/);
    expect(kept.report.reason).toContain(`${FC1}: register 8×4 → register 4×4`);

    const passing = vi.fn(async () => true);
    const tuned = await tunePlan(input(clock(), [{ key: FC1, candidates: [T84, T44] }], { check: passing }));
    expect(tuned.plan).toEqual({ ...base, overrides: { [FC1]: T44 } });
    expect(tuned.report.accepted).toBe(true);
    expect(tuned.report.reason).toMatch(/check passed/);
  });

  it('nothing changed: the check is not run and the report says the base plan is kept', async () => {
    const check = vi.fn(async () => true);
    const { plan, report } = await tunePlan(
      input(fakeClock({ [FC1]: { '8×4': 2, '4×4': 2.5 } }).time, [{ key: FC1, candidates: [T84, T44] }], { check }),
    );
    expect(check).not.toHaveBeenCalled();
    expect(plan).toEqual(base);
    expect(report.checkPassed).toBeNull();
    expect(report.reason).toMatch(/no candidate beat the base choice.*base plan is kept/);
  });
});

describe('tuner: the base choice is candidates[0]', () => {
  it('productToTune puts chooseMatmul(base, …) first and drops alternatives equal to it', () => {
    const shape = { M: 784, N: 400, K: 128, transA: true, transB: false };
    const software = planFor(true);
    expect(productToTune(software, shape, false, [T84, T44, { tileN: 4, tileM: 4, variant: 'register' }, T42])).toEqual(
      { key: 'TN 784×400×128', candidates: [T44, T84, T42] },
    ); // 4×4: the software plan's weight-gradient tile without quads
    expect(productToTune(software, shape, true, [T44]).candidates).toEqual([T84, T44]);
  });

  it("refuses candidates[0] that is not the base plan's override, duplicates and empty lists", async () => {
    const { time } = fakeClock({ [FC1]: { '8×4': 2, '4×4': 2 } });
    const overridden: KernelPlan = { ...planFor(false), overrides: { [FC1]: T44 } };
    await expect(tunePlan(input(time, [{ key: FC1, candidates: [T84, T44] }], { base: overridden }))).rejects.toThrow(
      /candidates\[0\] must be/,
    );
    await expect(tunePlan(input(time, [{ key: FC1, candidates: [T84, T84] }]))).rejects.toThrow(/twice/);
    await expect(tunePlan(input(time, [{ key: FC1, candidates: [] }]))).rejects.toThrow(/no candidates/);
    expect(time).not.toHaveBeenCalled();
  });

  it("keeps the base plan's own overrides beside the changes", async () => {
    const overridden: KernelPlan = { ...planFor(false), overrides: { [FC4]: T42 } };
    const { time } = fakeClock({ [FC1]: { '8×4': 2, '4×4': 1 } });
    const { plan } = await tunePlan(input(time, [{ key: FC1, candidates: [T84, T44] }], { base: overridden }));
    expect(plan.overrides).toEqual({ [FC4]: T42, [FC1]: T44 });
  });
});

describe('tuner: it only receives time and check', () => {
  afterEach(() => vi.restoreAllMocks());

  it('reads only its inputs, calls only the two callbacks (with key, choice, repeats), mutates nothing, times nothing itself', async () => {
    const deepFreeze = <T>(x: T): T => {
      if (x && typeof x === 'object') {
        Object.values(x).forEach(deepFreeze);
        Object.freeze(x);
      }
      return x;
    };
    const frozenBase = deepFreeze<KernelPlan>({ ...planFor(false), overrides: { [FC4]: T42 } });
    const products = deepFreeze([{ key: FC1, candidates: [tile(8, 4), tile(4, 4)] }]);
    const { time } = fakeClock({ [FC1]: { '8×4': 2, '4×4': 1 } });
    const check = vi.fn(async (_plan: KernelPlan) => true);
    const read = new Set<string | symbol>();
    const spied = new Proxy(
      { base: frozenBase, products, time, check, clock: 'timestamp' as TuneClock },
      {
        get(target, property, receiver) {
          read.add(property);
          return Reflect.get(target, property, receiver);
        },
      },
    );
    const now = vi.spyOn(performance, 'now');
    const dateNow = vi.spyOn(Date, 'now');
    const timeout = vi.spyOn(globalThis, 'setTimeout');

    const { plan } = await tunePlan(spied);

    expect(
      [...read].every((p) => ['base', 'products', 'time', 'check', 'clock'].includes(String(p))),
      [...read].map(String).join(),
    ).toBe(true);
    for (const call of time.mock.calls) {
      expect(call).toHaveLength(3);
      expect([typeof call[0], typeof call[1], typeof call[2]]).toEqual(['string', 'object', 'number']);
    }
    expect(check).toHaveBeenCalledTimes(1);
    expect(check.mock.calls[0][0]).not.toBe(frozenBase);
    expect(now).not.toHaveBeenCalled(); // the caller's `time` is the only clock
    expect(dateNow).not.toHaveBeenCalled();
    expect(timeout).not.toHaveBeenCalled();
    expect(frozenBase).toEqual({ ...planFor(false), overrides: { [FC4]: T42 } }); // frozen: a write would have thrown
    expect(plan.overrides).not.toBe(frozenBase.overrides);
  });
});

describe('tuner: cache', () => {
  const parts = {
    adapter: { vendor: 'google', architecture: 'swiftshader', device: '', description: 'SwiftShader Device (Subzero)' },
    browserMajor: 156,
    browserVersion: 'Chromium 156.0.8078.129, Not_A Brand 24.0.0.0',
    engineVersion: '0.1.0',
    shapes: [FC1, FC4, 'TN 784×400×128'],
  };

  it('the key changes with each of adapter, browser major and full version, engine version and shapes, and not with shape order', () => {
    const key = tuneCacheKey(parts);
    expect(tuneCacheKey({ ...parts, shapes: [...parts.shapes].reverse() })).toBe(key);
    expect(tuneCacheKey({ ...parts, shapes: [...parts.shapes, FC1] })).toBe(key); // a shape listed twice is one shape
    const variants = [
      ...(['vendor', 'architecture', 'device', 'description'] as const).map((f) => ({
        ...parts,
        adapter: { ...parts.adapter, [f]: `${parts.adapter[f]}x` },
      })),
      { ...parts, browserMajor: 157 },
      // A minor browser update (another WGSL compiler) must check its plan again, not take the cached one.
      { ...parts, browserVersion: 'Chromium 156.0.8078.130, Not_A Brand 24.0.0.0' },
      { ...parts, engineVersion: '0.1.1' },
      { ...parts, shapes: parts.shapes.slice(1) },
      { ...parts, shapes: [...parts.shapes, 'NN 128×20×400'] },
      // Fields do not run into each other: moving text between two of them is another key.
      { ...parts, adapter: { ...parts.adapter, vendor: 'googles', architecture: 'wiftshader' } },
    ];
    const keys = variants.map(tuneCacheKey);
    for (const [i, k] of keys.entries()) expect(k, JSON.stringify(variants[i])).not.toBe(key);
    expect(new Set(keys).size).toBe(keys.length);
    expect(() => tuneCacheKey({ ...parts, browserMajor: 156.5 })).toThrow(/browserMajor/);
  });

  it('fileCache round-trips a plan; a second tuneWithCache does not run the tuner', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tune-cache-'));
    try {
      const key = tuneCacheKey(parts);
      const cache = fileCache(join(dir, 'nested'));
      expect(await cache.get(key)).toBeUndefined();
      const tunedPlan: KernelPlan = { ...planFor(true), overrides: { [FC1]: T44 } };
      let runs = 0;
      const run = vi.fn(async (): Promise<TuneResult> => {
        runs++;
        const { time } = fakeClock({ [FC1]: { '8×4': 2, '4×4': 1 } });
        return tunePlan({
          base: planFor(true),
          products: [{ key: FC1, candidates: [T84, T44] }],
          time,
          clock: 'timestamp',
          check: async () => true,
        });
      });
      const first = await tuneWithCache(key, cache, run);
      expect(first.from).toBe('tuner');
      expect(first.plan).toEqual(tunedPlan);
      expect(readdirSync(join(dir, 'nested'))).toEqual([basename(tuneCacheFile(join(dir, 'nested'), key))]);
      expect(readdirSync(join(dir, 'nested'))[0]).toMatch(/^[0-9a-f]{64}\.json$/);
      // Another process's cache over the same folder (the next start-up).
      const again = await tuneWithCache(key, fileCache(join(dir, 'nested')), run);
      expect(again).toEqual({ from: 'cache', plan: tunedPlan });
      expect(runs).toBe(1);
      // Another key misses.
      expect((await tuneWithCache(tuneCacheKey({ ...parts, browserMajor: 157 }), cache, run)).from).toBe('tuner');
      expect(runs).toBe(2);
      // A cache entry that is not a plan is replaced, not trusted.
      writeFileSync(tuneCacheFile(join(dir, 'nested'), key), '{"kind":"gpu"');
      const replaced = await tuneWithCache(key, cache, run);
      expect(replaced).toMatchObject({ from: 'tuner', replaced: true });
      expect(await cache.get(key)).toBe(encodePlan(tunedPlan));
      expect(runs).toBe(3);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
