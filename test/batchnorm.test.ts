/**
 * The BatchNorm2d kernels (shaders/batchnorm.wgsl.ts) against their float64 twins
 * (src/reference/batchnorm.ts) and PyTorch (test/fixtures/batchnorm.json, from
 * scripts/batchnorm_fixtures.py): the training forward with its saved and running statistics,
 * the evaluation forward, and the backward, each bare and with ReLU or LeakyReLU fused.
 *
 * Shapes: one channel and odd channel counts, odd H and W, a batch of 1, H = W = 1, channels of
 * more values than a workgroup has invocations (HW below and above it), and one at the conv
 * presets' size (128×32×14×14). Every run binds buffers one sample longer than the batch, NaN in
 * the inputs' extra sample and a sentinel in the outputs', as a partial last batch sees them.
 * Values: channels with mean 1e4 and spread 0.01 (where E[x²] − E[x]² in float32 has no digit
 * left), constant channels (variance 0), values of 1e18 (whose squares' sum overflows float32
 * unless scaled) and of 1e-20 (variance far below eps), and an outlier.
 *
 * Tolerances are error bounds derived for each output from the reference's own quantities (the
 * comments at `channelBounds` give the derivation); every check logs its largest error as a
 * fraction of its bound.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { BATCHNORM_EPS, BATCHNORM_MOMENTUM, BATCHNORM_WG } from '../shaders/batchnorm.wgsl';
import type { BatchnormActivation, BatchnormDims } from '../src/gpu/batchnorm-ops';
import {
  batchnormBackward,
  batchnormEvalForward,
  batchnormTrainForward,
  batchStats,
  type RunningStats,
} from '../src/reference/batchnorm';
import { errorReport, f32, implementations, rng, useHarness, type KernelHarness } from './gpu';

const u = 2 ** -24; // unit roundoff of float32: a correctly rounded operation's relative error
const FLT_MIN = 2 ** -126; // outputs below it may be flushed to zero
const SENTINEL = 7.25;

const count = (d: BatchnormDims) => d.N * d.C * d.H * d.W;
const perChannel = (d: BatchnormDims) => d.N * d.H * d.W;

// ---- inputs ------------------------------------------------------------------------------------

/** How a channel's values are drawn: offset + spread·U(−1, 1), or a special kind. */
type ChannelKind = { offset: number; spread: number } | 'constant' | 'outlier';

/** x (N, C, H, W) with each channel drawn by its kind, followed by one sample of NaN. */
function inputs(d: BatchnormDims, kinds: ChannelKind[], seed: number): Float32Array {
  const r = rng(seed);
  const HW = d.H * d.W;
  const x = new Float32Array(count(d) + d.C * HW).fill(NaN);
  for (let c = 0; c < d.C; c++) {
    const kind = kinds[c % kinds.length]!;
    for (let n = 0; n < d.N; n++) {
      for (let s = 0; s < HW; s++) {
        const i = (n * d.C + c) * HW + s;
        if (kind === 'constant') x[i] = 0.1;
        else if (kind === 'outlier') x[i] = n === 0 && s === 0 ? 1e6 : 2 * r.next() - 1;
        else x[i] = kind.offset + kind.spread * (2 * r.next() - 1);
      }
    }
  }
  return x;
}

const ORDINARY: ChannelKind[] = [
  { offset: 0.5, spread: 1 },
  { offset: -3, spread: 0.2 },
  { offset: 2, spread: 5 },
];

/** The awkward channels, one each. */
const AWKWARD: ChannelKind[] = [
  { offset: 0.5, spread: 1 },
  { offset: 1e4, spread: 0.01 },
  'constant',
  { offset: 0, spread: 1e18 },
  { offset: 3e-20, spread: 1e-20 },
  'outlier',
  { offset: -1e4, spread: 3 },
];

interface Params {
  gamma: Float32Array;
  beta: Float32Array;
  /** (2, C): running_mean, running_var */
  running: Float32Array;
}

function params(C: number, seed: number): Params {
  const r = rng(seed);
  // γ of both signs (every third negative), β in ±1, running stats away from their (0, 1) start.
  const gamma = Float32Array.from({ length: C }, (_, c) => (c % 3 === 2 ? -1 : 1) * (0.5 + r.next()));
  const running = new Float32Array(2 * C);
  for (let c = 0; c < C; c++) [running[c], running[C + c]] = [2 * r.next() - 1, 0.5 + 1.5 * r.next()];
  return { gamma, beta: r.uniform(C), running };
}

// ---- error bounds ------------------------------------------------------------------------------

/**
 * What the kernel's error in channel c is bounded by, from the float64 statistics:
 * - a sum over the channel's M values is a run of ⌈M/WG⌉ terms per invocation, then a tree of
 *   log₂ WG levels: its error is at most k·u·Σ|terms|, k = ⌈M/WG⌉ + log₂ WG.
 * - μ₀ = Σ fl(x·(1/M)): |μ₀ − μ| ≤ δ₀ = (k + 2)·u·mean|x|. The deviations d = x − μ₀ then have
 *   rms σd ≤ σ + δ₀.
 * - μ꜀ = fl(Σd)/M, each d rounded once: |(μ₀ + μ꜀) − μ| ≤ eMu = (k + 1)·u·σd + u·δ₀ (mean|d| ≤ σd).
 * - σ² = Σd²/M − μ꜀²: d² carries 3u, the sum k·u, the division u; μ꜀² costs 2·|μ꜀|·eMu ≤
 *   2(k + 2)u·σd². eVar = (3k + 10)·u·σd².
 * - invstd = 1/√(σ² + eps): relative eInv = ½·eVar/(σ² + eps) + 6u (eps's own rounding and the
 *   sum: 1u each, halved by the root; inverseSqrt's 2 ulp = 4u; one spare u).
 */
interface ChannelBounds {
  M: number;
  mean: number;
  var: number;
  invstd: number;
  eMu: number;
  eVar: number;
  eInv: number;
  delta0: number;
}

function channelBounds(x: ArrayLike<number>, d: BatchnormDims): ChannelBounds[] {
  const M = perChannel(d);
  const k = Math.ceil(M / BATCHNORM_WG) + Math.log2(BATCHNORM_WG);
  const stats = batchStats(x, d);
  const HW = d.H * d.W;
  return Array.from({ length: d.C }, (_, c) => {
    let absSum = 0;
    for (let n = 0; n < d.N; n++) for (let s = 0; s < HW; s++) absSum += Math.abs(x[(n * d.C + c) * HW + s]!);
    const delta0 = (k + 2) * u * (absSum / M);
    const sigmaD = Math.sqrt(stats.var[c]!) + delta0;
    const eVar = (3 * k + 10) * u * sigmaD ** 2;
    const v = stats.var[c]!;
    return {
      M,
      mean: stats.mean[c]!,
      var: v,
      invstd: 1 / Math.sqrt(v + BATCHNORM_EPS),
      eMu: (k + 1) * u * sigmaD + u * delta0,
      eVar,
      eInv: (0.5 * eVar) / (v + BATCHNORM_EPS) + 6 * u,
      delta0,
    };
  });
}

const slopeOf = (a?: BatchnormActivation) => (a?.kind === 'leakyRelu' ? a.negativeSlope : 0);

/**
 * The training forward's output: with x̂ formed as ((x − μ₀) − μ꜀)·invstd (two roundings of
 * |x − μ| each, plus eMu), scale = γ·invstd (u), the product (u) and + β (u·|y|):
 *   |Δy| ≤ |γ|·invstd·(eMu + u·δ₀) + |γx̂|·(eInv + 4u) + u·|γx̂ + β|,
 * then the activation: ReLU is 1-Lipschitz, LeakyReLU scales by its slope and rounds once more.
 */
function trainForwardBounds(
  x: ArrayLike<number>,
  gamma: ArrayLike<number>,
  beta: ArrayLike<number>,
  d: BatchnormDims,
  a?: BatchnormActivation,
): Float64Array {
  const b = channelBounds(x, d);
  const HW = d.H * d.W;
  const lip = Math.max(1, slopeOf(a));
  return Float64Array.from({ length: count(d) }, (_, i) => {
    const c = Math.floor(i / HW) % d.C;
    const s = b[c]!;
    const gx = gamma[c]! * (x[i]! - s.mean) * s.invstd;
    const pre =
      Math.abs(gamma[c]!) * s.invstd * (s.eMu + u * s.delta0) +
      Math.abs(gx) * (s.eInv + 4 * u) +
      u * Math.abs(gx + beta[c]!);
    return lip * pre + u * Math.abs(gx + beta[c]!) + FLT_MIN;
  });
}

/**
 * The evaluation forward, y = (x − rm)·γ/√(rv + eps) + β: x − rm (u), rv + eps (u, halved),
 * inverseSqrt (4u), γ· (u), the product (u), + β (u·|y|): |Δy| ≤ 7.5u·|γx̂| + u·|y|, then the
 * activation. `runningErr`: how far the running statistics used may be from the reference's,
 * which moves y by |γ|/√(rv + eps)·Δrm + ½|γx̂|·Δrv/(rv + eps) (first order).
 */
function evalForwardBounds(
  x: ArrayLike<number>,
  p: Params,
  d: BatchnormDims,
  a: BatchnormActivation | undefined,
  runningErr?: { mean: number[]; var: number[] },
): Float64Array {
  const HW = d.H * d.W;
  const lip = Math.max(1, slopeOf(a));
  return Float64Array.from({ length: count(d) }, (_, i) => {
    const c = Math.floor(i / HW) % d.C;
    const rv = p.running[d.C + c]! + BATCHNORM_EPS;
    const gx = (p.gamma[c]! * (x[i]! - p.running[c]!)) / Math.sqrt(rv);
    const moved = runningErr
      ? (Math.abs(p.gamma[c]!) / Math.sqrt(rv)) * runningErr.mean[c]! + (0.5 * Math.abs(gx) * runningErr.var[c]!) / rv
      : 0;
    const pre = 7.5 * u * Math.abs(gx) + u * Math.abs(gx + p.beta[c]!) + moved;
    return lip * pre + u * Math.abs(gx + p.beta[c]!) + FLT_MIN;
  });
}

/**
 * The running statistics after a step from `old`: keep·r + m·v with keep, m, v, the products and
 * the sum each rounded once: m·(v's error) + 5u·(|keep·r| + |m·v|), v's error being eMu (+ u·|μ|
 * for forming μ₀ + μ꜀) for the mean and eVar·M/(M − 1) for the unbiased variance. `carried`: the
 * old values' own error, which keep scales.
 */
function runningBounds(
  b: ChannelBounds[],
  old: ArrayLike<number>,
  momentum: number,
  carried?: { mean: number[]; var: number[] },
): { mean: number[]; var: number[] } {
  const C = b.length;
  const keep = 1 - momentum;
  return {
    mean: b.map(
      (s, c) =>
        keep * (carried?.mean[c] ?? 0) +
        momentum * (s.eMu + u * Math.abs(s.mean)) +
        5 * u * (keep * Math.abs(old[c]!) + momentum * Math.abs(s.mean)) +
        FLT_MIN,
    ),
    var: b.map((s, c) => {
      const unbiased = s.M / (s.M - 1);
      return (
        keep * (carried?.var[c] ?? 0) +
        momentum * unbiased * s.eVar +
        5 * u * (keep * Math.abs(old[C + c]!) + momentum * unbiased * s.var) +
        FLT_MIN
      );
    }),
  };
}

/**
 * The backward, from g (dy through the activation's mask, one rounding for LeakyReLU's slope):
 * - x̂'s error: eX = invstd·(eMu + u·δ₀) + |x̂|·(eInv + 3u);
 * - dβ = Σg: eB = (k + 1)·u·Σ|g|;  dγ = Σg·x̂: eG = Σ|g|·eX + (k + 2)·u·Σ|g·x̂|;
 * - dx = a·(g − dβ/M − x̂·dγ/M), a = γ·invstd (eInv + u): the bracket's error is
 *   eB/M + eX·|dγ|/M + |x̂|·eG/M + 3u·(|g| + |dβ/M| + |x̂·dγ/M|), and a's relative error and the
 *   last product add (eInv + 2u)·|dx|.
 */
function backwardBounds(
  x: ArrayLike<number>,
  dy: ArrayLike<number>,
  y: ArrayLike<number>,
  gamma: ArrayLike<number>,
  d: BatchnormDims,
  a: BatchnormActivation | undefined,
) {
  const b = channelBounds(x, d);
  const HW = d.H * d.W;
  const M = perChannel(d);
  const k = Math.ceil(M / BATCHNORM_WG) + Math.log2(BATCHNORM_WG);
  const g = Float64Array.from({ length: count(d) }, (_, i) =>
    !a || y[i]! > 0 ? dy[i]! : a.kind === 'relu' ? 0 : a.negativeSlope * dy[i]!,
  );
  const at = (c: number, j: number) => (Math.floor(j / HW) * d.C + c) * HW + (j % HW);
  const dx = new Float64Array(count(d));
  const dgamma = new Float64Array(d.C);
  const dbeta = new Float64Array(d.C);
  for (let c = 0; c < d.C; c++) {
    const s = b[c]!;
    const xhat = (i: number) => (x[i]! - s.mean) * s.invstd;
    const eX = (i: number) => s.invstd * (s.eMu + u * s.delta0) + Math.abs(xhat(i)) * (s.eInv + 3 * u);
    let B = 0;
    let G = 0;
    let absG = 0;
    let absGX = 0;
    let gEx = 0;
    for (let j = 0; j < M; j++) {
      const i = at(c, j);
      B += g[i]!;
      G += g[i]! * xhat(i);
      absG += Math.abs(g[i]!);
      absGX += Math.abs(g[i]! * xhat(i));
      gEx += Math.abs(g[i]!) * eX(i);
    }
    const eB = (k + 1) * u * absG;
    const eG = gEx + (k + 2) * u * absGX;
    dbeta[c] = eB + FLT_MIN;
    dgamma[c] = eG + FLT_MIN;
    const scale = Math.abs(gamma[c]!) * s.invstd;
    for (let j = 0; j < M; j++) {
      const i = at(c, j);
      const t = g[i]! - B / M - (xhat(i) * G) / M;
      const bracket =
        eB / M +
        (eX(i) * Math.abs(G)) / M +
        (Math.abs(xhat(i)) * eG) / M +
        3 * u * (Math.abs(g[i]!) + Math.abs(B / M) + Math.abs((xhat(i) * G) / M));
      dx[i] = scale * bracket + (s.eInv + 2 * u) * scale * Math.abs(t) + FLT_MIN;
    }
  }
  return { dx, dgamma, dbeta };
}

/** |gpu − ref| ≤ bound elementwise, NaN never passing; lists the first failures. Returns max |err|/bound. */
function expectWithin(name: string, gpu: ArrayLike<number>, ref: ArrayLike<number>, bound: ArrayLike<number>): number {
  let worst = 0;
  const bad: string[] = [];
  let badCount = 0;
  for (let i = 0; i < ref.length; i++) {
    const err = Math.abs(gpu[i]! - ref[i]!);
    const ratio = err / bound[i]!;
    if (!(ratio <= 1)) {
      badCount++;
      if (bad.length < 8)
        bad.push(
          `  [${i}] gpu ${gpu[i]} ref ${ref[i]} err ${err.toExponential(2)} bound ${bound[i]!.toExponential(2)}`,
        );
    }
    if (Number.isFinite(ratio)) worst = Math.max(worst, ratio);
  }
  if (badCount > 0) expect.fail(`${name}: ${badCount} of ${ref.length} outside their bounds\n${bad.join('\n')}`);
  return worst;
}

// ---- runs --------------------------------------------------------------------------------------

interface TrainRun {
  y: Float32Array;
  saved: Float32Array;
  running: Float32Array;
  tracked: Uint32Array;
  dx: Float32Array;
  dgamma: Float32Array;
  dbeta: Float32Array;
}

/**
 * One training step, forward then backward, on buffers one sample longer than the batch (NaN in
 * the inputs' extra sample, SENTINEL in the outputs'). `tail: false` drops the outputs' extra
 * sample and their upload, for the large case (a page receives its data as base64, slowly).
 */
async function trainStep(
  gpu: KernelHarness,
  d: BatchnormDims,
  x: Float32Array,
  dy: Float32Array,
  p: Params,
  activation: BatchnormActivation | undefined,
  tracked: Uint32Array = new Uint32Array([7, 0]),
  momentum?: number,
  tail = true,
): Promise<TrainRun> {
  const padded = count(d) + (tail ? d.C * d.H * d.W : 0);
  const output = () => (tail ? new Float32Array(padded).fill(SENTINEL) : 4 * padded);
  const options = { activation, ...(momentum === undefined ? {} : { momentum }) };
  const out = await gpu.run({
    buffers: {
      x,
      dy,
      gamma: p.gamma,
      beta: p.beta,
      running: p.running,
      tracked,
      y: output(),
      saved: 3 * d.C * 4,
      dx: output(),
      dgamma: d.C * 4,
      dbeta: d.C * 4,
    },
    ops: [
      {
        op: 'batchnormTrain',
        dims: d,
        options,
        x: 'x',
        gamma: 'gamma',
        beta: 'beta',
        running: 'running',
        tracked: 'tracked',
        y: 'y',
        saved: 'saved',
      },
      {
        op: 'batchnormBackward',
        dims: d,
        options: { activation },
        x: 'x',
        saved: 'saved',
        gamma: 'gamma',
        dy: 'dy',
        ...(activation ? { y: 'y' } : {}),
        dx: 'dx',
        dgamma: 'dgamma',
        dbeta: 'dbeta',
      },
    ],
    read: ['y', 'saved', 'running', 'tracked', 'dx', 'dgamma', 'dbeta'],
  });
  const y = f32(out.y!, padded);
  const dx = f32(out.dx!, padded);
  // Nothing past the batch is written: a partial last batch leaves the rest of its buffers alone.
  for (const [name, v] of [
    ['y', y],
    ['dx', dx],
  ] as const) {
    expect(
      [...v.subarray(count(d))].every((e) => e === SENTINEL),
      `${name} written past the batch`,
    ).toBe(true);
  }
  const t = out.tracked!;
  return {
    y: y.slice(0, count(d)),
    saved: f32(out.saved!, 3 * d.C),
    running: f32(out.running!, 2 * d.C),
    tracked: new Uint32Array(t.buffer, t.byteOffset, 2),
    dx: dx.slice(0, count(d)),
    dgamma: f32(out.dgamma!, d.C),
    dbeta: f32(out.dbeta!, d.C),
  };
}

async function evalForward(
  gpu: KernelHarness,
  d: BatchnormDims,
  x: Float32Array,
  p: Params,
  activation: BatchnormActivation | undefined,
): Promise<Float32Array> {
  const padded = count(d) + d.C * d.H * d.W;
  const out = await gpu.run({
    buffers: { x, gamma: p.gamma, beta: p.beta, running: p.running, y: new Float32Array(padded).fill(SENTINEL) },
    ops: [
      {
        op: 'batchnormEval',
        dims: d,
        options: { activation },
        x: 'x',
        gamma: 'gamma',
        beta: 'beta',
        running: 'running',
        y: 'y',
      },
    ],
    read: ['y'],
  });
  const y = f32(out.y!, padded);
  expect(
    [...y.subarray(count(d))].every((e) => e === SENTINEL),
    'y written past the batch',
  ).toBe(true);
  return y.slice(0, count(d));
}

/**
 * A training step's every output against the reference within its bounds: y, the saved
 * statistics (μ₀ + μ꜀ and invstd), the running statistics and the counter, dx, dγ and dβ.
 * The backward's reference masks on the GPU's own y, so a value the two round to opposite
 * sides of 0 does not count as a gradient error.
 */
function checkTrainStep(
  record: (name: string, err: number, tol: string) => void,
  name: string,
  d: BatchnormDims,
  x: Float32Array,
  dy: Float32Array,
  p: Params,
  a: BatchnormActivation | undefined,
  run: TrainRun,
  tracked: number,
  momentum = BATCHNORM_MOMENTUM,
) {
  const C = d.C;
  const ref = batchnormTrainForward(
    x,
    p.gamma,
    p.beta,
    { mean: p.running.subarray(0, C), var: p.running.subarray(C), tracked },
    d,
    { eps: BATCHNORM_EPS, momentum, activation: a },
  );
  const b = channelBounds(x, d);
  const check = (what: string, gpu: ArrayLike<number>, r: ArrayLike<number>, bound: ArrayLike<number>) =>
    record(what, expectWithin(`${name}: ${what}`, gpu, r, bound), 'of bound');
  check('train y', run.y, ref.y, trainForwardBounds(x, p.gamma, p.beta, d, a));
  const mean = Array.from({ length: C }, (_, c) => run.saved[c]! + run.saved[C + c]!);
  check(
    'saved mean',
    mean,
    ref.mean,
    b.map((s) => s.eMu + FLT_MIN),
  );
  check(
    'saved invstd',
    run.saved.subarray(2 * C),
    ref.invstd,
    b.map((s) => s.eInv * s.invstd),
  );
  const rb = runningBounds(b, p.running, momentum);
  check('running_mean', run.running.subarray(0, C), ref.running.mean, rb.mean);
  check('running_var', run.running.subarray(C), ref.running.var, rb.var);
  expect(run.tracked[0]! + run.tracked[1]! * 2 ** 32, `${name}: num_batches_tracked`).toBe(ref.running.tracked);
  const back = batchnormBackward(x, dy, p.gamma, d, { eps: BATCHNORM_EPS, activation: a, y: run.y });
  const bounds = backwardBounds(x, dy, run.y, p.gamma, d, a);
  check('dx', run.dx, back.dx, bounds.dx);
  check('dgamma', run.dgamma, back.dgamma, bounds.dgamma);
  check('dbeta', run.dbeta, back.dbeta, bounds.dbeta);
}

const ACTIVATIONS: [string, BatchnormActivation | undefined][] = [
  ['bare', undefined],
  ['ReLU', { kind: 'relu' }],
  ['LeakyReLU(0.2)', { kind: 'leakyRelu', negativeSlope: 0.2 }],
];

/** [N, C, H, W]: the smallest trainable channel, a batch of 1, odd sizes, H = W = 1, M > WG with HW < WG and HW > WG. */
const SHAPES: [number, number, number, number][] = [
  [2, 1, 1, 1],
  [1, 3, 5, 7],
  [5, 3, 7, 5],
  [3, 7, 1, 1],
  [9, 3, 17, 13],
  [2, 5, 19, 17],
];

const dimsOf = ([N, C, H, W]: number[]): BatchnormDims => ({ N: N!, C: C!, H: H!, W: W! });

interface FixtureStep {
  x: number[];
  dy: number[];
  y: number[];
  y_float32: number[];
  dx: number[];
  dgamma: number[];
  dbeta: number[];
  running_mean: number[];
  running_var: number[];
  num_batches_tracked: number;
}

interface FixtureCase {
  name: string;
  N: number;
  C: number;
  H: number;
  W: number;
  activation: BatchnormActivation | null;
  eps: number;
  momentum: number;
  gamma: number[];
  beta: number[];
  steps: FixtureStep[];
  eval: { x: number[]; y: number[] };
}

const FIXTURE: { cases: FixtureCase[] } = JSON.parse(
  readFileSync(join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'batchnorm.json'), 'utf8'),
);

/** The fixture's batch as the kernels' input: one NaN sample after it. */
function fixtureInput(values: number[], d: BatchnormDims): Float32Array {
  const x = new Float32Array(count(d) + d.C * d.H * d.W).fill(NaN);
  x.set(values);
  return x;
}

describe('the float64 reference', () => {
  /** Central differences of L = Σ w·y(x, γ, β) against the reference's backward. */
  it.each(ACTIVATIONS)('backward matches central differences of its forward (%s)', (_, a) => {
    const d = dimsOf([3, 2, 3, 2]);
    const r = rng(11);
    const x = Float64Array.from(r.uniform(count(d), -2, 2));
    const gamma = Float64Array.from([1.3, -0.7]);
    const beta = Float64Array.from([0.2, -0.4]);
    const w = r.uniform(count(d));
    const running = { mean: [0, 0], var: [1, 1], tracked: 0 };
    const loss = () => {
      const { y } = batchnormTrainForward(x, gamma, beta, running, d, {
        eps: BATCHNORM_EPS,
        momentum: 0.1,
        activation: a,
      });
      return y.reduce((s, v, i) => s + v * w[i]!, 0);
    };
    const diff = (at: Float64Array) =>
      Float64Array.from(at, (_, i) => {
        const h = 1e-6;
        const orig = at[i]!;
        at[i] = orig + h;
        const up = loss();
        at[i] = orig - h;
        const down = loss();
        at[i] = orig;
        return (up - down) / (2 * h);
      });
    const { y } = batchnormTrainForward(x, gamma, beta, running, d, {
      eps: BATCHNORM_EPS,
      momentum: 0.1,
      activation: a,
    });
    const back = batchnormBackward(x, w, gamma, d, { eps: BATCHNORM_EPS, activation: a, y });
    for (const [name, analytic, numeric] of [
      ['dx', back.dx, diff(x)],
      ['dgamma', back.dgamma, diff(gamma)],
      ['dbeta', back.dbeta, diff(beta)],
    ] as const) {
      for (let i = 0; i < analytic.length; i++) expect(analytic[i], `${name}[${i}]`).toBeCloseTo(numeric[i]!, 6);
    }
  });

  it.each(FIXTURE.cases.map((c) => [c.name, c] as const))('matches PyTorch in float64: %s', (_, fc) => {
    const d = dimsOf([fc.N, fc.C, fc.H, fc.W]);
    const a = fc.activation ?? undefined;
    let running: RunningStats = { mean: new Float64Array(fc.C), var: new Float64Array(fc.C).fill(1), tracked: 0 };
    const close = (name: string, got: ArrayLike<number>, want: number[]) => {
      for (let i = 0; i < want.length; i++) {
        expect(Math.abs(got[i]! - want[i]!), `${fc.name} ${name}[${i}]`).toBeLessThanOrEqual(
          1e-9 * (1 + Math.abs(want[i]!)),
        );
      }
    };
    for (const [s, step] of fc.steps.entries()) {
      const f = batchnormTrainForward(step.x, fc.gamma, fc.beta, running, d, {
        eps: fc.eps,
        momentum: fc.momentum,
        activation: a,
      });
      const b = batchnormBackward(step.x, step.dy, fc.gamma, d, { eps: fc.eps, activation: a, y: f.y });
      close(`step ${s} y`, f.y, step.y);
      close(`step ${s} dx`, b.dx, step.dx);
      close(`step ${s} dgamma`, b.dgamma, step.dgamma);
      close(`step ${s} dbeta`, b.dbeta, step.dbeta);
      close(`step ${s} running_mean`, f.running.mean, step.running_mean);
      close(`step ${s} running_var`, f.running.var, step.running_var);
      expect(f.running.tracked).toBe(step.num_batches_tracked);
      running = f.running;
    }
    close(
      'eval y',
      batchnormEvalForward(fc.eval.x, fc.gamma, fc.beta, running, d, { eps: fc.eps, activation: a }),
      fc.eval.y,
    );
  });

  it('refuses to train on one value per channel, as PyTorch does, and evaluates it', () => {
    const d = dimsOf([1, 2, 1, 1]);
    const running = { mean: [0, 0], var: [1, 1], tracked: 0 };
    expect(() =>
      batchnormTrainForward([1, 2], [1, 1], [0, 0], running, d, { eps: BATCHNORM_EPS, momentum: 0.1 }),
    ).toThrow(/more than 1 value per channel/);
    expect([...batchnormEvalForward([1, 2], [1, 1], [0, 0], running, d, { eps: 0 })]).toEqual([1, 2]);
  });
});

describe.each(implementations)('$name', (implementation) => {
  const gpu = useHarness(implementation);
  const record = errorReport(`batchnorm on ${implementation.name}`);

  describe.each(SHAPES)('N=%i C=%i H=%i W=%i', (...shape) => {
    const d = dimsOf(shape);
    it.each(ACTIVATIONS)('training step and evaluation, %s', async (name, a) => {
      const seed = shape.reduce((s, v) => s * 31 + v, 7);
      const x = inputs(d, ORDINARY, seed);
      const dy = rng(seed + 1).uniform(x.length);
      const p = params(d.C, seed + 2);
      const run = await trainStep(gpu, d, x, dy, p, a);
      checkTrainStep(record, `${shape} ${name}`, d, x, dy, p, a, run, 7);
      const y = await evalForward(gpu, d, x, p, a);
      record(
        'eval y',
        expectWithin(
          `${shape} ${name}: eval y`,
          y,
          batchnormEvalForward(
            x,
            p.gamma,
            p.beta,
            { mean: p.running.subarray(0, d.C), var: p.running.subarray(d.C) },
            d,
            { eps: BATCHNORM_EPS, activation: a },
          ),
          evalForwardBounds(x, p, d, a),
        ),
        'of bound',
      );
    });
  });

  it.each([
    [3, 7, 5, 7],
    [7, 7, 13, 13],
  ])(
    'awkward channels (mean 1e4 with spread 0.01, constant, 1e18, 1e-20, an outlier): N=%i C=%i H=%i W=%i',
    async (...shape) => {
      const d = dimsOf(shape);
      const a: BatchnormActivation = { kind: 'leakyRelu', negativeSlope: 0.2 };
      const x = inputs(d, AWKWARD, 5);
      const dy = rng(6).uniform(x.length);
      const p = params(d.C, 7);
      const run = await trainStep(gpu, d, x, dy, p, a);
      checkTrainStep(record, `awkward ${shape}`, d, x, dy, p, a, run, 7);
      // The bounds are tight where it matters: the spread-0.01 channel (normalized to values of
      // order 1) is held to better than 1e-4, where a one-pass variance would be off by far more than 1.
      const bounds = trainForwardBounds(x, p.gamma, p.beta, d, a);
      const HW = d.H * d.W;
      const channel1 = Array.from(
        { length: d.N * HW },
        (_, j) => bounds[(Math.floor(j / HW) * d.C + 1) * HW + (j % HW)]!,
      );
      expect(Math.max(...channel1)).toBeLessThan(1e-4);
    },
  );

  it('counts num_batches_tracked as an int64, carrying into the high word', async () => {
    const d = dimsOf([2, 1, 2, 2]);
    const x = inputs(d, ORDINARY, 3);
    const run = await trainStep(
      gpu,
      d,
      x,
      new Float32Array(x.length),
      params(1, 4),
      undefined,
      new Uint32Array([0xffffffff, 4]),
    );
    expect([...run.tracked]).toEqual([0, 5]);
  });

  it('momentum other than 0.1 reaches the running statistics', async () => {
    const d = dimsOf([4, 3, 3, 5]);
    const x = inputs(d, ORDINARY, 8);
    const dy = rng(9).uniform(x.length);
    const p = params(3, 10);
    const run = await trainStep(gpu, d, x, dy, p, undefined, undefined, 0.5);
    checkTrainStep(record, 'momentum 0.5', d, x, dy, p, undefined, run, 7, 0.5);
  });

  it('refuses a training step on one value per channel, a negative LeakyReLU slope and 65,536 channels', async () => {
    const d = dimsOf([1, 3, 1, 1]);
    const x = inputs(d, ORDINARY, 1);
    await expect(trainStep(gpu, d, x, x, params(3, 1), undefined)).rejects.toThrow(
      /more than 1 value per channel.*\[1, 3, 1, 1\]/,
    );
    // Evaluation is defined for it.
    const p = params(3, 2);
    const y = await evalForward(gpu, d, x, p, undefined);
    expectWithin(
      'eval of one value per channel',
      y,
      batchnormEvalForward(x, p.gamma, p.beta, { mean: p.running.subarray(0, 3), var: p.running.subarray(3) }, d, {
        eps: BATCHNORM_EPS,
      }),
      evalForwardBounds(x, p, d, undefined),
    );
    const e = dimsOf([2, 3, 1, 1]);
    await expect(
      trainStep(gpu, e, inputs(e, ORDINARY, 1), new Float32Array(12), p, { kind: 'leakyRelu', negativeSlope: -0.1 }),
    ).rejects.toThrow(/negative_slope -0.1/);
    // More channels than one dispatch dimension has workgroups, refused before anything runs.
    const wide = { N: 2, C: 65_536, H: 1, W: 1 };
    await expect(
      gpu.run({
        buffers: { x: 16, gamma: 16, beta: 16, running: 16, tracked: 16, y: 16, saved: 16 },
        ops: [
          {
            op: 'batchnormTrain',
            dims: wide,
            options: {},
            ...{ x: 'x', gamma: 'gamma', beta: 'beta', running: 'running', tracked: 'tracked', y: 'y', saved: 'saved' },
          },
        ],
        read: [],
      }),
    ).rejects.toThrow(/65536 channels exceed the 65535 workgroups/);
  });

  it.each(FIXTURE.cases.map((c) => [c.name, c] as const))(
    'PyTorch parity, two steps and evaluation: %s',
    async (_, fc) => {
      const d = dimsOf([fc.N, fc.C, fc.H, fc.W]);
      const a = fc.activation ?? undefined;
      const p: Params = {
        gamma: Float32Array.from(fc.gamma),
        beta: Float32Array.from(fc.beta),
        running: Float32Array.from([...new Array(fc.C).fill(0), ...new Array(fc.C).fill(1)]),
      };
      let tracked: Uint32Array = new Uint32Array(2);
      let runningErr: { mean: number[]; var: number[] } | undefined;
      for (const [s, step] of fc.steps.entries()) {
        const x = fixtureInput(step.x, d);
        const dy = fixtureInput(step.dy, d);
        const run = await trainStep(gpu, d, x, dy, p, a, tracked);
        // The engine's own bounds, against the float64 answer PyTorch gives.
        const b = channelBounds(x, d);
        const name = `${fc.name} step ${s + 1}`;
        record(
          'parity y',
          expectWithin(`${name} y`, run.y, step.y, trainForwardBounds(x, p.gamma, p.beta, d, a)),
          'of bound',
        );
        const bounds = backwardBounds(x, dy, run.y, p.gamma, d, a);
        record('parity dx', expectWithin(`${name} dx`, run.dx, step.dx, bounds.dx), 'of bound');
        record('parity dgamma', expectWithin(`${name} dgamma`, run.dgamma, step.dgamma, bounds.dgamma), 'of bound');
        record('parity dbeta', expectWithin(`${name} dbeta`, run.dbeta, step.dbeta, bounds.dbeta), 'of bound');
        // The running statistics carry the previous steps' error, scaled by 1 − momentum.
        const C = d.C;
        runningErr = runningBounds(b, p.running, fc.momentum, runningErr);
        const rm = expectWithin(`${name} running_mean`, run.running.subarray(0, C), step.running_mean, runningErr.mean);
        const rv = expectWithin(`${name} running_var`, run.running.subarray(C), step.running_var, runningErr.var);
        record('parity running_mean', rm, 'of bound');
        record('parity running_var', rv, 'of bound');
        expect(run.tracked[0], `${name} num_batches_tracked`).toBe(step.num_batches_tracked);
        // How PyTorch's own float32 forward fares on the same inputs, for the log.
        const pyErr = Math.max(...step.y_float32.map((v, i) => Math.abs(v - step.y[i]!)));
        const ourErr = Math.max(...step.y.map((v, i) => Math.abs(run.y[i]! - v)));
        record(`${fc.name}: max |y − float64| engine`, ourErr, `PyTorch float32 ${pyErr.toExponential(2)}`);
        p.running = run.running;
        tracked = run.tracked;
      }
      const x = fixtureInput(fc.eval.x, d);
      const y = await evalForward(gpu, d, x, p, a);
      record(
        'parity eval y',
        expectWithin(`${fc.name} eval y`, y, fc.eval.y, evalForwardBounds(x, p, d, a, runningErr)),
        'of bound',
      );
    },
  );

  it('the conv presets’ size, 128×32×14×14 with LeakyReLU(0.2)', async () => {
    const d = dimsOf([128, 32, 14, 14]);
    const a: BatchnormActivation = { kind: 'leakyRelu', negativeSlope: 0.2 };
    const x = inputs(d, AWKWARD, 12);
    const dy = rng(13).uniform(x.length);
    const p = params(d.C, 14);
    const run = await trainStep(gpu, d, x, dy, p, a, undefined, undefined, false);
    checkTrainStep(record, 'preset size', d, x, dy, p, a, run, 7);
  });
});
