/**
 * The opt-in start-up autotuner: for each product (matmul or conv) it times a few candidate choices and
 * returns a plan that takes a candidate only where it clearly beats the base plan's choice, and
 * only when a short end-to-end run with the new plan reproduces the base plan's losses.
 *
 * The products are the step's matmuls and convolutions alike, each under its plan key (matmulKey,
 * convKey) with its own kind of candidates. The tuner is scheduling and arithmetic only. The GPU work reaches it as two callbacks the
 * caller runs on scratch buffers of its own — `time` (dispatch one product `repeats` times back
 * to back and say how long that took) and `check` (a 16-step run under a plan) — so it cannot
 * touch a model's weights, Adam state or step, and its tests need no GPU.
 *
 * The rules, each there because a timing without it misleads:
 * - **Spans of at least MIN_SPAN_MS.** A timer has a resolution (Chrome rounds timestamps to
 *   100 µs without developer features; performance.now() is coarser still in some pages), and a
 *   single dispatch is often shorter. So `repeats` is doubled, from 1, until every candidate's
 *   span lasts MIN_SPAN_MS, and that count is kept for every sample of the product: each
 *   sample compared is a span that long, never one below the resolution. These calibration spans
 *   also serve as each candidate's warm-up (pipeline creation, caches) and are not samples.
 * - **Interleaved.** Samples are taken round-robin — one span of each candidate, then the next
 *   round — so a clock boost, a thermal drop or another tab's work lands on every candidate
 *   alike instead of on whichever was being timed at the time.
 * - **Median of SAMPLES spans** per candidate: one preempted or boosted span does not decide.
 * - **Obvious losers are not sampled.** A candidate whose last calibration span took at least
 *   DROP_FACTOR times the base choice's could only win if its samples came out several times
 *   faster than its warm span, so it is dropped before sampling: on a software adapter a split-K
 *   or workgroup-memory kernel can take tens of times the register kernel's time, and sampling it
 *   five times would make start-up minutes long for nothing. The report lists it as dropped.
 * - **A margin.** A candidate replaces the base choice only when its median beats the base
 *   choice's median by at least MIN_GAIN; below that the difference is within what reruns vary
 *   by, and a change is not free (a different plan sums in a different order).
 * - **An end-to-end check.** The tuned plan is accepted only if `check(plan)` says its losses
 *   match the base plan's; otherwise the base plan is kept and the report says why.
 *
 * The base choice of a product is `candidates[0]`: the tuner is given keys, not shapes, so it
 * cannot call chooseMatmul or chooseConv itself. `productToTune` and `convProductToTune` build a
 * product that way from a shape.
 */
import type { ConvGeometry, ConvProduct } from '../../shaders/conv.wgsl';
import { chooseConv, convChoiceOf, convKey } from './conv-plan';
import {
  chooseMatmul,
  decodePlan,
  encodePlan,
  isPlanOverride,
  matmulKey,
  type ConvChoice,
  type KernelPlan,
  type MatmulShape,
  type PlanChoice,
} from './plan';

/** The shortest span a sample may be: comfortably above a 100 µs timer resolution. */
export const MIN_SPAN_MS = 2;
/** Spans timed per candidate; the median decides. */
export const SAMPLES = 5;
/** How much faster (as a fraction of the base choice's median) a candidate must be to be taken. */
export const MIN_GAIN = 0.05;
/** A candidate whose calibration span is this many times the base choice's is not sampled. */
export const DROP_FACTOR = 3;
/**
 * The most back-to-back dispatches of a span. 2 ms over this many dispatches is 30 ns each, below
 * any WebGPU dispatch's cost: a clock that still reads less is not advancing, and the tuner stops.
 */
export const MAX_REPEATS = 1 << 16;

export type TuneClock = 'timestamp' | 'wall';

/** One product to tune. `candidates[0]` is the base plan's choice, chooseMatmul(base, shape, quad) or chooseConv(base, …). */
export interface ProductToTune {
  /** matmulKey or convKey of the product: the key of the tuned plan's override. */
  key: string;
  candidates: PlanChoice[];
}

export interface TuneInput {
  base: KernelPlan;
  products: readonly ProductToTune[];
  /**
   * Milliseconds for `repeats` back-to-back dispatches of the product `key` under `choice`,
   * on scratch buffers (never a model's), measured with `clock`.
   */
  time: (key: string, choice: PlanChoice, repeats: number) => Promise<number>;
  /** What `time` measures with: GPU timestamp queries, or the wall clock when the adapter has no timestamp-query. */
  clock: TuneClock;
  /** True when a 16-step end-to-end run under `plan` (on scratch state) matches the base plan's losses. */
  check: (plan: KernelPlan) => Promise<boolean>;
}

export interface CandidateReport {
  choice: PlanChoice;
  /** Not sampled: its last calibration span took ≥ DROP_FACTOR × the base choice's (samplesMs is then that one span). */
  dropped?: boolean;
  /** The SAMPLES spans, in the order taken, each of the product's `repeats` dispatches (ms). */
  samplesMs: number[];
  medianMs: number;
  /** medianMs / repeats (a dropped candidate's: its span / the calibration's repeats, which sampling may since have doubled). */
  perDispatchMs: number;
}

export interface ProductReport {
  key: string;
  /** Dispatches per span, the same for every sample of every candidate of this product (a dropped candidate's one span may have had fewer). */
  repeats: number;
  /** candidates[0] is the base choice. */
  candidates: CandidateReport[];
  /** The fastest candidate (by median) and how much faster than the base choice it is (a fraction; 0 when it is the base). */
  fastest: PlanChoice;
  gain: number;
  /** What the tuned plan runs: the fastest when gain ≥ MIN_GAIN, else the base choice. */
  chosen: PlanChoice;
  changed: boolean;
}

export interface TuneReport {
  clock: TuneClock;
  /** The clock in words, for a log line. */
  timing: string;
  products: ProductReport[];
  /** Keys of the products the tuned plan changed (whether or not it was accepted). */
  changed: string[];
  /** Whether the returned plan is the tuned one (false: the base plan, see `reason`). */
  accepted: boolean;
  /** Whether `check` ran, and what it said (null when nothing changed and it was not needed). */
  checkPassed: boolean | null;
  reason: string;
}

export interface TuneResult {
  plan: KernelPlan;
  report: TuneReport;
}

/** Choices compare by content, whatever order their fields were written in. */
function sameChoice(a: PlanChoice, b: PlanChoice): boolean {
  const canonical = (c: PlanChoice) =>
    JSON.stringify(Object.entries(c).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)));
  return canonical(a) === canonical(b);
}

/** "register 8×4"; a conv choice "conv 8×4", or "conv 2×4 K/4" when K is split four ways. */
export function describeChoice(c: PlanChoice): string {
  if (c.variant === 'conv' && Object.keys(c).length === 4)
    return `conv ${c.tileM}×${c.tileN}${c.slices > 1 ? ` K/${c.slices}` : ''}`;
  const { variant, tileM, tileN, ...rest } = c as PlanChoice & Record<string, unknown>;
  const extra = Object.entries(rest)
    .map(([k, v]) => ` ${k}=${String(v)}`)
    .join('');
  return `${variant} ${tileM}×${tileN}${extra}`;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/**
 * A product to tune from its shape: the base plan's choice first (as `quad` makes it), then the
 * alternatives that differ from it.
 */
export function productToTune(
  base: KernelPlan,
  shape: MatmulShape,
  quad: boolean,
  alternatives: readonly PlanChoice[],
): ProductToTune {
  return { key: matmulKey(shape), candidates: withAlternatives(chooseMatmul(base, shape, quad), alternatives) };
}

/** A conv product to tune: the base plan's choice first (chooseConv), then the alternatives that differ from it. */
export function convProductToTune(
  base: KernelPlan,
  product: ConvProduct,
  g: ConvGeometry,
  alternatives: readonly ConvChoice[],
): ProductToTune {
  return {
    key: convKey(product, g),
    candidates: withAlternatives(convChoiceOf(chooseConv(base, product, g)), alternatives),
  };
}

function withAlternatives(baseChoice: PlanChoice, alternatives: readonly PlanChoice[]): PlanChoice[] {
  const candidates = [baseChoice];
  for (const c of alternatives) if (!candidates.some((d) => sameChoice(c, d))) candidates.push(c);
  return candidates;
}

function checkProducts(base: KernelPlan, products: readonly ProductToTune[]): void {
  const keys = new Set<string>();
  for (const { key, candidates } of products) {
    if (keys.has(key)) throw new Error(`tuner: product ${key} is listed twice`);
    keys.add(key);
    if (candidates.length === 0)
      throw new Error(`tuner: product ${key} has no candidates (the first must be the base plan's choice)`);
    candidates.forEach((c, i) => {
      if (candidates.findIndex((d) => sameChoice(c, d)) !== i)
        throw new Error(`tuner: product ${key} lists ${describeChoice(c)} twice`);
      // A plan that held it could not be read back from the cache or a checkpoint.
      if (!isPlanOverride(key, c))
        throw new Error(
          `tuner: product ${key}: ${describeChoice(c)} is not one of the plan's choices ` +
            (key.startsWith('conv ')
              ? '(CONV_PLAN_CHOICES in src/gpu/conv-plan.ts)'
              : '(PLAN_CHOICES in src/gpu/plan.ts)'),
        );
    });
    // The one part of "candidates[0] is the base choice" the tuner can verify without the shape.
    const override = base.overrides[key];
    if (override && !sameChoice(override, candidates[0])) {
      throw new Error(
        `tuner: product ${key}: the base plan runs ${describeChoice(override)}, but candidates[0] is ` +
          `${describeChoice(candidates[0])}; candidates[0] must be chooseMatmul or chooseConv (base, …) (see productToTune)`,
      );
    }
  }
}

/** One span, checked: a negative, NaN or infinite time is a broken timer, not a fast kernel. */
async function span(time: TuneInput['time'], key: string, choice: PlanChoice, repeats: number): Promise<number> {
  const ms = await time(key, choice, repeats);
  if (!Number.isFinite(ms) || ms < 0) {
    throw new Error(`tuner: timing ${key} under ${describeChoice(choice)} (${repeats} dispatches) returned ${ms} ms`);
  }
  return ms;
}

function tooManyRepeats(key: string, repeats: number, clock: TuneClock): Error {
  return new Error(
    `tuner: ${key}: ${repeats} back-to-back dispatches still took less than ${MIN_SPAN_MS} ms by the ` +
      `${clock === 'wall' ? 'wall clock' : 'GPU timestamps'}; the clock is not advancing (are timestamps being returned as 0?)`,
  );
}

/** Times one product's candidates by the rules above. */
async function tuneProduct(input: TuneInput, product: ProductToTune): Promise<ProductReport> {
  const { key, candidates } = product;
  // Calibration, round-robin: the count at which even the fastest candidate's span reaches MIN_SPAN_MS.
  let repeats = 1;
  let calibration: number[];
  for (;;) {
    calibration = [];
    for (const c of candidates) calibration.push(await span(input.time, key, c, repeats));
    if (Math.min(...calibration) >= MIN_SPAN_MS) break;
    repeats *= 2;
    if (repeats > MAX_REPEATS) throw tooManyRepeats(key, repeats / 2, input.clock);
  }
  // A dropped candidate's one span was taken at this count; sampling may double `repeats` later.
  const calibrationRepeats = repeats;
  // Samples, round-robin. Noise can still bring a span under MIN_SPAN_MS; then the count is
  // doubled and the samples start over, so every sample compared is a span that long.
  const dropped = calibration.map((ms, i) => i > 0 && ms >= DROP_FACTOR * calibration[0]);
  let samples: number[][];
  sampling: for (;;) {
    samples = candidates.map(() => []);
    for (let round = 0; round < SAMPLES; round++) {
      for (let i = 0; i < candidates.length; i++) {
        if (dropped[i]) continue;
        const ms = await span(input.time, key, candidates[i], repeats);
        if (ms < MIN_SPAN_MS) {
          repeats *= 2;
          if (repeats > MAX_REPEATS) throw tooManyRepeats(key, repeats / 2, input.clock);
          continue sampling;
        }
        samples[i].push(ms);
      }
    }
    break;
  }
  const reports: CandidateReport[] = candidates.map((choice, i) => {
    if (dropped[i])
      return {
        choice,
        dropped: true,
        samplesMs: [calibration[i]],
        medianMs: calibration[i],
        perDispatchMs: calibration[i] / calibrationRepeats,
      };
    const medianMs = median(samples[i]);
    return { choice, samplesMs: samples[i], medianMs, perDispatchMs: medianMs / repeats };
  });
  let best = 0;
  reports.forEach((r, i) => {
    if (!r.dropped && r.medianMs < reports[best].medianMs) best = i;
  });
  const baseMs = reports[0].medianMs;
  const gain = (baseMs - reports[best].medianMs) / baseMs;
  // Compared as a product, not the gain's quotient, so that exactly MIN_GAIN faster counts.
  const changed = best !== 0 && reports[best].medianMs <= baseMs * (1 - MIN_GAIN);
  return {
    key,
    repeats,
    candidates: reports,
    fastest: reports[best].choice,
    gain,
    chosen: changed ? reports[best].choice : reports[0].choice,
    changed,
  };
}

const TIMING: Record<TuneClock, string> = {
  timestamp: 'GPU timestamp queries',
  wall: 'wall clock (the adapter has no timestamp-query; each span includes submit and completion overhead)',
};

/**
 * Tunes `input.base` over `input.products`, one product after another. The tuned plan is the
 * base plan with the changed products' choices as overrides (the base plan's own overrides are
 * kept, so with a rule-only base plan the overrides are exactly the changed products).
 */
export async function tunePlan(input: TuneInput): Promise<TuneResult> {
  const { base } = input;
  checkProducts(base, input.products);
  const products: ProductReport[] = [];
  for (const p of input.products) products.push(await tuneProduct(input, p));

  const changedProducts = products.filter((p) => p.changed);
  const changed = changedProducts.map((p) => p.key);
  const basePlan: KernelPlan = { ...base, overrides: { ...base.overrides } };
  const report = (accepted: boolean, checkPassed: boolean | null, reason: string): TuneReport => ({
    clock: input.clock,
    timing: TIMING[input.clock],
    products,
    changed,
    accepted,
    checkPassed,
    reason,
  });

  if (changedProducts.length === 0) {
    return {
      plan: basePlan,
      report: report(
        false,
        null,
        `no candidate beat the base choice by ≥ ${MIN_GAIN * 100} % in any of the ` +
          `${products.length} products: the base plan is kept (no end-to-end check needed)`,
      ),
    };
  }
  const tuned: KernelPlan = {
    ...base,
    overrides: { ...base.overrides, ...Object.fromEntries(changedProducts.map((p) => [p.key, p.chosen])) },
  };
  const changes = changedProducts
    .map(
      (p) =>
        `${p.key}: ${describeChoice(p.candidates[0].choice)} → ${describeChoice(p.chosen)} (${(p.gain * 100).toFixed(1)} % faster)`,
    )
    .join('; ');
  if (!(await input.check(tuned))) {
    return {
      plan: basePlan,
      report: report(
        false,
        false,
        `the tuned plan (${changes}) failed the end-to-end check: 16 training steps under it ` +
          `did not match the base plan's losses, so the base plan is kept`,
      ),
    };
  }
  return {
    plan: tuned,
    report: report(
      true,
      true,
      `${changedProducts.length} of ${products.length} products changed (${changes}); ` + `the end-to-end check passed`,
    ),
  };
}

/** The report as log lines: the clock, each product's candidates and the verdict. */
export function formatTuneReport(report: TuneReport): string {
  const lines = [
    `kernel tuner, timed by ${report.timing}; median of ${SAMPLES} spans of ≥ ${MIN_SPAN_MS} ms, interleaved`,
  ];
  for (const p of report.products) {
    lines.push(`  ${p.key} (${p.repeats} dispatches per span)${p.changed ? ` → ${describeChoice(p.chosen)}` : ''}`);
    p.candidates.forEach((c, i) =>
      lines.push(
        `    ${describeChoice(c.choice).padEnd(16)} ${(c.perDispatchMs * 1000).toFixed(1)} µs` +
          `${i === 0 ? '  (base)' : c.dropped ? `  (one warm span; ≥ ${DROP_FACTOR}× the base, not sampled)` : ''}`,
      ),
    );
  }
  lines.push(`  ${report.reason}`);
  return lines.join('\n');
}

/** What tuned plans are cached in: Node files (src/node/tune-cache.ts) or IndexedDB (src/page/tune-cache.ts). */
export interface TuneCache {
  get(key: string): Promise<string | undefined>;
  put(key: string, text: string): Promise<void>;
}

export interface TuneCacheKeyParts {
  adapter: { vendor: string; architecture: string; device: string; description: string };
  browserMajor: number;
  /** The browser's full version (browserVersion in ./adapter): a minor update is another WGSL compiler and driver path. */
  browserVersion: string;
  engineVersion: string;
  /** matmulKey or convKey of each product tuned; order and repeats do not matter. */
  shapes: string[];
}

/**
 * The key a tuned plan is cached under: everything that can change which choice is fastest or
 * what the candidates are — the adapter (its description names the driver where the browser
 * exposes it), the browser's major and full version (its WGSL compiler: a cache hit skips the
 * end-to-end check, so an update must not reuse a plan checked under another), the engine's
 * version (its kernels and candidates) and the shapes. Field order is fixed and the
 * shapes are sorted by code unit (not locale), so the same parts always give the same text.
 */
export function tuneCacheKey(parts: TuneCacheKeyParts): string {
  if (!Number.isInteger(parts.browserMajor))
    throw new Error(`tuneCacheKey: browserMajor ${parts.browserMajor} is not an integer`);
  const { vendor, architecture, device, description } = parts.adapter;
  const shapes = [...new Set(parts.shapes)].sort();
  return `webgpu-vae tuned plan v1 ${JSON.stringify({
    adapter: [vendor, architecture, device, description],
    browserMajor: parts.browserMajor,
    browserVersion: parts.browserVersion,
    engineVersion: parts.engineVersion,
    shapes,
  })}`;
}

export type CachedTune =
  | { from: 'cache'; plan: KernelPlan }
  /** `replaced`: the cache held something under the key that was not a plan (it is overwritten). */
  | { from: 'tuner'; plan: KernelPlan; report: TuneReport; replaced: boolean };

/**
 * The plan cached under `key`, or else `run()`'s plan, stored under `key` for the next start.
 * A plan kept because the check failed is stored too: the next start with the same adapter,
 * browser, engine and shapes would time the same candidates and fail the same check.
 */
export async function tuneWithCache(
  key: string,
  cache: TuneCache,
  run: () => Promise<TuneResult>,
): Promise<CachedTune> {
  const text = await cache.get(key);
  const cached = text === undefined ? null : decodePlan(text);
  if (cached) return { from: 'cache', plan: cached };
  const { plan, report } = await run();
  await cache.put(key, encodePlan(plan));
  return { from: 'tuner', plan, report, replaced: text !== undefined };
}
