/**
 * The Adam kernel (shaders/adam.wgsl.ts) against the float64 reference `adam`, over several
 * steps recorded as a training step records them: the op list [adam, loss_finalize] run
 * `repeat` times, one submit each, with loss_finalize advancing the GPU-resident step counter
 * state[0] (its partials and out are dummies here). The gradient buffer is re-read every step;
 * the test keeps it fixed. Arenas: 4 and 64 floats, and 652,864 (the VAE's, padded to vec4s).
 * Gradients include 0, ±1e-30 and ±1e20; learning rates 1e-3 and 1e-2; runs resuming with
 * non-zero moments at t = 1000, across t = 500 and at t = 200,000. Each of params, m and v has
 * a sentinel vec4 past `length`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adam } from '../src/reference/ops';
import { LOSS_GROUPS } from '../shaders/loss.wgsl';
import { expectClose, f32, openHarness, rng, type GpuPage, errorReport } from './gpu';

let gpu: GpuPage;
beforeAll(async () => { gpu = await openHarness(); });
afterAll(async () => { await gpu?.close(); });

const ULP = 2 ** -24; // relative error of one correctly rounded float32 operation
const FLT_MIN = 2 ** -126;
const SENTINEL = 123.5;
const STEPS = 5;
const BETA1 = 0.9;
const BETA2 = 0.999;
const EPS = 1e-8;

/**
 * Tolerances, all against the reference on the exact hyperparameters. The kernel receives
 * 1 − β and ln β computed in float64 (so 1 − 0.999 is not the float32 subtraction, 1.3e-5 off)
 * and forms the bias corrections as −expm1(t·ln β), so nothing cancels:
 * - m and v: per step 3 roundings on the update and float32 β and 1 − β (≤ 1 ulp each),
 *   compounded over 5 steps with β < 1 damping earlier errors: rtol 20 ulp = 1.2e-6. atol
 *   FLT_MIN for v, where g = 1e-30 makes g² underflow to 0 (the reference keeps 1e-63).
 * - params: each step moves a parameter by ≈ lr·m̂/√v̂; that ratio carries the moments' error
 *   (≤ 20 ulp for m̂, 10 for √v̂) plus the bias corrections and the divisions, ~40 ulp = 2.4e-6
 *   of the step, so atol = STEPS·lr·UPDATE_REL; plus one rounding of the stored parameter per
 *   step, rtol = STEPS·ULP.
 */
const MOMENT_RTOL = 20 * ULP;
const UPDATE_REL = 40 * ULP;
const paramTol = (lr: number) => ({ rtol: STEPS * ULP, atol: STEPS * lr * UPDATE_REL });

const record = errorReport('adam');

/** Largest relative error where |ref| ≥ FLT_MIN (below it, underflow to 0 is expected). */
function maxRel(gpuValues: ArrayLike<number>, ref: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < ref.length; i++) {
    if (Math.abs(ref[i]!) >= FLT_MIN) worst = Math.max(worst, Math.abs(gpuValues[i]! - ref[i]!) / Math.abs(ref[i]!));
  }
  return worst;
}

interface Case { length: number; lr: number; t0: number; warm: boolean }

/**
 * Parameters in [−0.05, 0.05] (the VAE's initial scale, 1/√400), every eighth exactly 0 so the
 * update itself can be measured there; gradients of mixed scales (1e-6 … 100) with 0, ±1e-30,
 * ±1e20 at the front.
 */
function makeInputs({ length, warm }: Case, seed: number) {
  const r = rng(seed);
  const params = Float32Array.from(r.uniform(length, -0.05, 0.05), (p, i) => (i % 8 === 7 ? 0 : p));
  const grads = Float32Array.from(r.uniform(length, -1, 1), (g) => g * 10 ** Math.floor(-6 + 8 * r.next()));
  grads.set([0, 1e-30, -1e-30, 1e20, -1e20, 1e-3, -3e18, 0].slice(0, length));
  // A resumed run: moments as a few hundred steps of similar gradients leave them.
  const m = warm ? Float32Array.from(grads, (g) => 0.5 * g) : new Float32Array(length);
  // (capped where 0.8·g² would overflow float32: g = ±1e20)
  const v = warm ? Float32Array.from(grads, (g) => Math.min(0.8 * g * g, 1e37)) : new Float32Array(length);
  return { params, grads, m, v };
}

const withSentinel = (a: Float32Array) => Float32Array.from([...a, SENTINEL, SENTINEL, SENTINEL, SENTINEL]);

async function adamGpu(c: Case, inputs: ReturnType<typeof makeInputs>) {
  const { length, lr, t0 } = c;
  const out = await gpu.run({
    buffers: {
      params: withSentinel(inputs.params),
      grads: inputs.grads,
      m: withSentinel(inputs.m),
      v: withSentinel(inputs.v),
      state: Uint32Array.from([t0, 0, 0, 0]),
      partials: new Float32Array(LOSS_GROUPS),
      out: new Float32Array(STEPS + 3),
    },
    ops: [
      { op: 'adam', length, hyper: { lr, beta1: BETA1, beta2: BETA2, eps: EPS }, state: 'state', params: 'params', grads: 'grads', m: 'm', v: 'v' },
      { op: 'lossFinalize', state: 'state', partials: 'partials', out: 'out' },
    ],
    repeat: STEPS,
    read: ['params', 'm', 'v', 'state'],
  });
  expect([...new Uint32Array(out.state.buffer, out.state.byteOffset, 4)], 'state after the steps').toEqual([t0 + STEPS, STEPS, 0, 0]);
  const result: Record<'params' | 'm' | 'v', Float32Array> = { params: f32(out.params), m: f32(out.m), v: f32(out.v) };
  for (const [name, values] of Object.entries(result)) {
    expect([...values.subarray(length, length + 4)], `${name} written past length`).toEqual([SENTINEL, SENTINEL, SENTINEL, SENTINEL]);
    const bad = values.findIndex((x, i) => i < length && !Number.isFinite(x));
    expect(bad, `${name}[${bad}] = ${values[bad]} (grad ${inputs.grads[bad]})`).toBe(-1);
  }
  return { params: result.params.subarray(0, length), m: result.m.subarray(0, length), v: result.v.subarray(0, length) };
}

function adamRef(c: Case, inputs: ReturnType<typeof makeInputs>, hyper: { beta1: number; beta2: number; eps: number }) {
  const params = Float64Array.from(inputs.params);
  const m = Float64Array.from(inputs.m);
  const v = Float64Array.from(inputs.v);
  for (let s = 1; s <= STEPS; s++) adam(params, inputs.grads, m, v, c.t0 + s, { lr: c.lr, ...hyper });
  return { params, m, v };
}

const CASES: Case[] = [
  { length: 4, lr: 1e-3, t0: 0, warm: false },
  { length: 64, lr: 1e-3, t0: 0, warm: false },
  { length: 64, lr: 1e-2, t0: 0, warm: false },
  { length: 652_864, lr: 1e-3, t0: 0, warm: false },
  { length: 652_864, lr: 1e-2, t0: 0, warm: false },
  { length: 652_864, lr: 1e-3, t0: 1000, warm: true },
  // t·ln β2 crosses −0.5 between t = 499 and 500: the bias correction switches from its
  // series to 1 − exp; and a step count where β2ᵗ underflows.
  { length: 64, lr: 1e-3, t0: 497, warm: true },
  { length: 64, lr: 1e-2, t0: 200_000, warm: true },
];

describe.each(CASES)('adam, arena of $length, lr $lr, from t = $t0', (c) => {
  it(`${STEPS} steps of [adam, loss_finalize] match ${STEPS} reference steps`, async () => {
    const inputs = makeInputs(c, c.length + c.t0 + Math.round(1 / c.lr));
    const got = await adamGpu(c, inputs);

    const exact = adamRef(c, inputs, { beta1: BETA1, beta2: BETA2, eps: EPS });
    const { rtol, atol } = paramTol(c.lr);
    const p = expectClose('params', got.params, exact.params, rtol, atol);
    record('params (abs)', p.maxAbs, `atol ${UPDATE_REL.toExponential(2)}·${STEPS}·lr + rtol ${rtol.toExponential(1)}·|p|`);
    // Where a parameter started at 0 its final value is the sum of the 5 updates alone.
    let update = 0;
    for (let i = 7; i < c.length; i += 8) update = Math.max(update, Math.abs(got.params[i]! - exact.params[i]!) / (STEPS * c.lr));
    record(`update error, relative to ${STEPS}·lr (params from 0)`, update, `atol ${UPDATE_REL.toExponential(2)}`);

    expectClose('m', got.m, exact.m, MOMENT_RTOL, 0);
    expectClose('v', got.v, exact.v, MOMENT_RTOL, FLT_MIN);
    record('m (rel)', maxRel(got.m, exact.m), `rtol ${MOMENT_RTOL.toExponential(2)}`);
    record('v (rel, |v| ≥ FLT_MIN)', maxRel(got.v, exact.v), `rtol ${MOMENT_RTOL.toExponential(2)}`);

    // The special gradients: 0 leaves everything alone; ±1e20 moves its parameter by ≈ lr per step.
    if (c.length >= 8 && c.t0 === 0) {
      expect(got.params[0]).toBe(inputs.params[0]);
      expect(got.m[0]).toBe(0);
      expect(got.v[0]).toBe(0);
      for (const at of [3, 4]) {
        const moved = (inputs.params[at]! - got.params[at]!) / (STEPS * c.lr);
        expect(Math.abs(moved - Math.sign(inputs.grads[at]!)), `huge grad at ${at} moved the parameter by ${moved}·${STEPS}·lr`).toBeLessThan(1e-3);
      }
    }
  });
});
