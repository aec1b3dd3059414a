/**
 * The standalone activation kernels (shaders/activations.wgsl.ts) against the float64
 * references: ReLU and sigmoid, forward and backward (backward takes the forward *output* y).
 * Counts: 1, a few odd ones (5×3, 257 = one workgroup + 1, 45×65), the VAE's real activations
 * (128×400, 96×784, 128×784 = 100,352), each with the extreme inputs written over its first
 * elements; the output buffer is one sentinel-filled vec4 longer than `count`, so a write past
 * the bounds check shows up.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reluBackward, reluForward, sigmoid, sigmoidBackward, sigmoidForward } from '../src/reference/ops';
import type { ActivationEntry } from '../shaders/activations.wgsl';
import { expectClose, f32, openHarness, rng, type Closeness, type GpuPage } from './gpu';

let gpu: GpuPage;
beforeAll(async () => { gpu = await openHarness(); });
afterAll(async () => { await gpu?.close(); });

const FLT_MIN = 2 ** -126; // smallest normal float32
const SENTINEL = 7.25;

/**
 * Tolerances, float32 kernel vs float64 reference on the same float32 inputs:
 * - ReLU forward and backward select or copy a value: bit-exact, tolerance 0.
 * - σ forward: 1/(1 + exp(−x)) is three float32 roundings plus exp's own error; exp's relative
 *   error carries into σ scaled by (1 − σ) ≤ 1. rtol 1e-6 (≈ 8 ulp) leaves room for an exp a
 *   few ulp off; atol FLT_MIN because σ(x) for x ≤ −87.3 is a float32 denormal (σ(−88) ≈
 *   6.1e−39) that a GPU may flush to zero, and σ(−300) ≈ 5e−131 is below float32 altogether.
 * - σ backward: dy·y·(1 − y) is three roundings from exact float32 inputs (1 − y is exact for
 *   y ≥ ½ and one rounding below): rtol 5e-7 (≈ 4 ulp); atol FLT_MIN for products that land in
 *   the denormal range.
 */
const TOL: Record<ActivationEntry, { rtol: number; atol: number }> = {
  relu_forward: { rtol: 0, atol: 0 },
  relu_backward: { rtol: 0, atol: 0 },
  sigmoid_forward: { rtol: 1e-6, atol: FLT_MIN },
  sigmoid_backward: { rtol: 5e-7, atol: FLT_MIN },
};

const worst = new Map<ActivationEntry, Closeness & { tests: number }>();
function record(entry: ActivationEntry, e: Closeness) {
  const w = worst.get(entry) ?? { maxAbs: 0, maxRel: 0, tests: 0 };
  worst.set(entry, { maxAbs: Math.max(w.maxAbs, e.maxAbs), maxRel: Math.max(w.maxRel, e.maxRel), tests: w.tests + 1 });
}
afterAll(() => {
  const lines = [...worst].map(([entry, w]) =>
    `  ${entry}: max abs ${w.maxAbs.toExponential(2)}, max rel ${w.maxRel.toExponential(2)} over ${w.tests} runs (rtol ${TOL[entry].rtol}, atol ${TOL[entry].atol.toExponential(1)})`);
  console.log(`activation max errors:\n${lines.join('\n')}`);
});

/** Runs one activation over `count` elements; returns the count outputs after checking the sentinels past them. */
async function activate(entry: ActivationEntry, inputs: Float32Array[], count: number): Promise<Float32Array> {
  const names = inputs.length === 1 ? ['x'] : ['dy', 'y'];
  const padded = count + 4;
  const out = await gpu.run({
    buffers: { ...Object.fromEntries(names.map((n, i) => [n, inputs[i]!])), out: new Float32Array(padded).fill(SENTINEL) },
    ops: [{ op: 'activation', entry, count, inputs: names, out: 'out' }],
    read: ['out'],
  });
  const all = f32(out.out, padded);
  expect([...all.subarray(count)], `${entry}: written past count ${count}`).toEqual([SENTINEL, SENTINEL, SENTINEL, SENTINEL]);
  return all.slice(0, count);
}

// Written over the first elements of every input (as many as fit).
const SIGMOID_EXTREMES = [0, -0, 300, -300, 88, -88, 1e30, -1e30, 87.5, -87.5, 17, -17, 40, -40, 1e-30, -1e-30, 3.4e38, -3.4e38];
const RELU_EXTREMES = [0, -0, 1e-45, -1e-45, 1e30, -1e30, 3.4e38, -3.4e38, FLT_MIN, -FLT_MIN];

const COUNTS = [1, 15, 257, 2925, 51_200, 75_264, 100_352];

describe.each(COUNTS)('count %i', (count) => {
  const r = rng(count * 7919 + 1);
  const withExtremes = (values: Float32Array, extremes: number[]) => {
    values.set(extremes.slice(0, count));
    return values;
  };
  const dy = withExtremes(r.uniform(count, -2, 2), [1, -1, 3e30, -3e30]);

  it('relu_forward = max(x, 0)', async () => {
    const x = withExtremes(r.uniform(count, -3, 3), RELU_EXTREMES);
    const y = await activate('relu_forward', [x], count);
    record('relu_forward', expectClose('relu(x)', y, reluForward(x), 0, 0));
    // max(−0, 0) may be either zero; what matters downstream is that it is not > 0.
    for (let i = 0; i < count; i++) if (x[i]! <= 0) expect(y[i], `relu(${x[i]}) at ${i}`).toBe(0);
  });

  it('relu_backward passes dy where y > 0', async () => {
    // A ReLU output: exact zeros, −0, the smallest denormal and huge positives.
    const y = withExtremes(Float32Array.from(r.uniform(count, -3, 3), (v) => Math.max(v, 0)), [0, -0, 1e-45, 3.4e38, FLT_MIN]);
    record('relu_backward', expectClose('drelu', await activate('relu_backward', [dy, y], count), reluBackward(dy, y), 0, 0));
  });

  it('sigmoid_forward = 1/(1 + e^−x), finite at ±300, ±88, ±1e30', async () => {
    const x = withExtremes(r.uniform(count, -12, 12), SIGMOID_EXTREMES);
    const { rtol, atol } = TOL.sigmoid_forward;
    const y = await activate('sigmoid_forward', [x], count);
    record('sigmoid_forward', expectClose('sigmoid(x)', y, sigmoidForward(x), rtol, atol));
    for (let i = 0; i < count; i++) {
      expect(y[i]! >= 0 && y[i]! <= 1, `sigmoid(${x[i]}) = ${y[i]} at ${i}`).toBe(true);
    }
  });

  it('sigmoid_backward = dy·y·(1 − y)', async () => {
    // y from the float64 σ rounded to float32, with exact 0, ½ and 1 and a denormal.
    const y = withExtremes(Float32Array.from(r.uniform(count, -12, 12), sigmoid), [0, 1, 0.5, 1 - 2 ** -24, 6e-39]);
    const { rtol, atol } = TOL.sigmoid_backward;
    record('sigmoid_backward', expectClose('dsigmoid', await activate('sigmoid_backward', [dy, y], count), sigmoidBackward(dy, y), rtol, atol));
  });
});

describe('extreme values, one by one', () => {
  it('sigmoid at ±300, ±88, ±1e30 and 0 gives the float32-rounded σ', async () => {
    const x = Float32Array.from(SIGMOID_EXTREMES);
    const y = await activate('sigmoid_forward', [x], x.length);
    const { rtol, atol } = TOL.sigmoid_forward;
    record('sigmoid_forward', expectClose('sigmoid(extremes)', y, sigmoidForward(x), rtol, atol));
    const at = (v: number) => y[SIGMOID_EXTREMES.indexOf(v)]!;
    expect(at(0)).toBe(0.5);
    expect(at(300)).toBe(1);
    expect(at(1e30)).toBe(1);
    expect(at(88)).toBe(1);
    expect(at(17)).toBe(Math.fround(sigmoid(17))); // below 1: the float32 gap under 1 is 6e-8, σ(17) = 1 − 4e-8
    expect(at(-300)).toBeLessThan(FLT_MIN);
    expect(at(-1e30)).toBeLessThan(FLT_MIN);
  });

  it('relu at 0 and −0 is not positive, and relu_backward blocks both', async () => {
    const x = Float32Array.from([0, -0, 1e-45, -1e-45]);
    expect([...await activate('relu_forward', [x], 4)].map((v) => v > 0)).toEqual([false, false, true, false]);
    const dy = Float32Array.from([5, 5, 5, 5]);
    expect([...await activate('relu_backward', [dy, x], 4)]).toEqual([0, 0, 5, 0]);
  });
});
