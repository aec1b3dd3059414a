/**
 * The Adam kernel (shaders/adam.wgsl.ts) against the float64 reference `adam`, over several
 * steps recorded as a training step records them: the op list [adam, loss_finalize] run
 * `repeat` times, one submit each, with loss_finalize advancing the GPU-resident step counter
 * state[0] (its partials and out are dummies here). The gradient buffer is re-read every step;
 * the test keeps it fixed. Arenas: 4 and 64 floats, and 652,864 (the VAE's, padded to vec4s).
 * Gradients include 0, ±1e-30 and ±1e20; learning rates 1e-3 and 1e-2; a run resuming at
 * t = 1000 with non-zero moments. Each of params, m and v has a sentinel vec4 past `length`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adam } from '../src/reference/ops';
import { LOSS_GROUPS } from '../shaders/loss.wgsl';
import { expectClose, f32, openHarness, rng, type GpuPage } from './gpu';

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
 * Tolerances. The kernel receives β1, β2 and eps as float32 (β2 = 0.999 becomes 0.99900001,
 * so its 1 − β2 is 1.3e-5 off), and computes its bias corrections 1 − βᵗ with float32 pow.
 * - m and v are compared with the reference run on those same float32-rounded hyperparameters,
 *   which isolates the kernel's arithmetic: per step, 3 roundings on each update and the
 *   rounding of the stored value, compounded over 5 steps (β < 1 damps earlier errors):
 *   rtol 20 ulp = 1.2e-6. atol FLT_MIN for v, where g = 1e-30 makes g² underflow to 0.
 * - params are compared with the reference on the exact hyperparameters (the quantity that
 *   matters): each step moves a parameter by ≤ lr·(update ratio), and the update's relative
 *   error is dominated by 1 − pow(β2, t): float32 β2 and pow's error there (1 − β2ᵗ cancels
 *   ~10 bits at t = 1) reach ~1e-4 of the step, so atol = STEPS·lr·2e-4; plus the rounding of
 *   the stored parameter each step, rtol = STEPS·ULP.
 */
const MOMENT_RTOL = 20 * ULP;
const UPDATE_REL = 2e-4;
const paramTol = (lr: number) => ({ rtol: STEPS * ULP, atol: STEPS * lr * UPDATE_REL });

const figures: Record<string, { err: number; tol: string; runs: number }> = {};
function record(name: string, err: number, tol: string) {
  const f = (figures[name] ??= { err: 0, tol, runs: 0 });
  f.err = Math.max(f.err, err);
  f.runs++;
}
afterAll(() => console.log(`adam max errors:\n${Object.entries(figures)
  .map(([name, f]) => `  ${name}: ${f.err.toExponential(2)} (${f.tol}) over ${f.runs} runs`).join('\n')}`));

interface Case { length: number; lr: number; t0: number; warm: boolean }

/** Parameters in [−1, 1]; gradients of mixed scales with 0, ±1e-30, ±1e20 at the front. */
function makeInputs({ length, warm }: Case, seed: number) {
  const r = rng(seed);
  const params = r.uniform(length, -1, 1);
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
];

describe.each(CASES)('adam, arena of $length, lr $lr, from t = $t0', (c) => {
  it(`${STEPS} steps of [adam, loss_finalize] match ${STEPS} reference steps`, async () => {
    const inputs = makeInputs(c, c.length + c.t0 + Math.round(1 / c.lr));
    const got = await adamGpu(c, inputs);

    const exact = adamRef(c, inputs, { beta1: BETA1, beta2: BETA2, eps: EPS });
    const { rtol, atol } = paramTol(c.lr);
    const p = expectClose('params', got.params, exact.params, rtol, atol);
    record(`params (abs, in units of ${STEPS}·lr)`, p.maxAbs / (STEPS * c.lr), `atol ${UPDATE_REL} + rtol ${rtol.toExponential(1)}·|p|`);

    const asGpu = adamRef(c, inputs, { beta1: Math.fround(BETA1), beta2: Math.fround(BETA2), eps: Math.fround(EPS) });
    record('m (rel)', expectClose('m', got.m, asGpu.m, MOMENT_RTOL, 0).maxRel, `rtol ${MOMENT_RTOL.toExponential(2)}`);
    record('v (rel)', expectClose('v', got.v, asGpu.v, MOMENT_RTOL, FLT_MIN).maxRel, `rtol ${MOMENT_RTOL.toExponential(2)}`);

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
