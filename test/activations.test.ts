/**
 * The standalone activation kernels (shaders/activations.wgsl.ts) against the float64
 * references: ReLU and sigmoid, forward and backward (backward takes the forward *output* y).
 * Counts: 1, a few odd ones (5×3, 257 = one workgroup + 1, 45×65), the VAE's real activations
 * (128×400, 96×784, 128×784 = 100,352), each with the extreme inputs written over its first
 * elements; the output buffer is one sentinel-filled vec4 longer than `count`, so a write past
 * the bounds check shows up.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { reluBackward, reluForward, sigmoid, sigmoidBackward, sigmoidForward } from '../src/reference/ops';
import type { ActivationEntry } from '../shaders/activations.wgsl';
import { expectClose, f32, implementations, rng, useHarness } from './gpu';

describe.each(implementations)('$name', (implementation) => {
  const gpu = useHarness(implementation);

  const FLT_MIN = 2 ** -126; // smallest normal float32
  const SENTINEL = 7.25;

  /**
   * Tolerances, float32 kernel vs float64 reference on the same float32 inputs:
   * - ReLU forward and backward select or copy a value: bit-exact, tolerance 0.
   * - σ forward: 1/(1 + exp(−x)) is two float32 roundings plus exp's own error, which carries
   *   into σ scaled by (1 − σ) ≤ 1. WGSL bounds exp's error by 3 + 2·|x| ulp, and SwiftShader
   *   does grow with |x| (measured: 1.5e-7 near 0, 5e-7 at |x| ≈ 10, 3.7e-6 at x ≈ −85), so the
   *   relative tolerance is that bound plus 3 ulp for the rest, taken at the largest |x| of each
   *   band: 30 ulp (1.8e-6) for |x| ≤ 12, 182 ulp (1.1e-5) beyond, where the argument is
   *   clamped to ±88. atol FLT_MIN because σ(x) for x ≤ −87.3 is a float32 denormal (σ(−88) ≈
   *   6.1e−39) that a GPU may flush to zero, and σ(−300) ≈ 5e−131 is below float32 altogether.
   * - σ backward: dy·y·(1 − y) is three roundings from exact float32 inputs (1 − y is exact for
   *   y ≥ ½ and one rounding below): rtol 5e-7 (≈ 4 ulp); atol FLT_MIN for products that land in
   *   the denormal range.
   */
  const ULP = 2 ** -24; // relative half-gap of float32, the unit of a correctly rounded op
  const sigmoidRtol = (maxAbsX: number) => (6 + 2 * Math.min(maxAbsX, 88)) * ULP;
  const TOL: Record<ActivationEntry, { rtol: number; atol: number }> = {
    relu_forward: { rtol: 0, atol: 0 },
    relu_backward: { rtol: 0, atol: 0 },
    sigmoid_forward: { rtol: sigmoidRtol(88), atol: FLT_MIN }, // checkSigmoid tightens it for |x| ≤ 12
    sigmoid_backward: { rtol: 5e-7, atol: FLT_MIN },
  };

  /**
   * The figures logged: the largest relative error where |ref| ≥ FLT_MIN (below it the only
   * error is denormal flushing, which rtol does not govern), and how many outputs were flushed.
   */
  const worst = new Map<string, { rel: number; rtol: number; flushed: number; tests: number }>();
  function record(label: string, rtol: number, gpu: ArrayLike<number>, ref: ArrayLike<number>) {
    const w = worst.get(label) ?? { rel: 0, rtol, flushed: 0, tests: 0 };
    for (let i = 0; i < ref.length; i++) {
      const e = Math.abs(ref[i]!);
      if (e >= FLT_MIN) w.rel = Math.max(w.rel, Math.abs(gpu[i]! - ref[i]!) / e);
      else if (e > 0 && gpu[i] === 0) w.flushed++;
    }
    w.tests++;
    worst.set(label, w);
  }
  afterAll(() => {
    const lines = [...worst].map(
      ([label, w]) =>
        `  ${label}: max rel ${w.rel.toExponential(2)} (rtol ${w.rtol.toExponential(2)}), ${w.flushed} sub-FLT_MIN outputs flushed to 0, ${w.tests} runs`,
    );
    console.log(`activation max errors on ${implementation.name}:\n${lines.join('\n')}`);
  });

  function check(entry: ActivationEntry, name: string, gpu: Float32Array, ref: Float64Array) {
    expectClose(name, gpu, ref, TOL[entry].rtol, TOL[entry].atol);
    record(entry, TOL[entry].rtol, gpu, ref);
  }

  /** σ forward, compared band by band: |x| ≤ 12 at 30 ulp, the rest at the ±88 bound. */
  function checkSigmoid(name: string, x: Float32Array, gpu: Float32Array) {
    const ref = sigmoidForward(x);
    const near = [...x.keys()].filter((i) => Math.abs(x[i]!) <= 12);
    const far = [...x.keys()].filter((i) => Math.abs(x[i]!) > 12);
    for (const [band, at, rtol] of [
      ['|x| ≤ 12', near, sigmoidRtol(12)],
      ['|x| > 12', far, sigmoidRtol(88)],
    ] as const) {
      const g = at.map((i) => gpu[i]!);
      const r = at.map((i) => ref[i]!);
      expectClose(`${name}, ${band}`, g, r, rtol, FLT_MIN);
      record(`sigmoid_forward ${band}`, rtol, g, r);
    }
  }

  /** Runs one activation over `count` elements; returns the count outputs after checking the sentinels past them. */
  async function activate(entry: ActivationEntry, inputs: Float32Array[], count: number): Promise<Float32Array> {
    const names = inputs.length === 1 ? ['x'] : ['dy', 'y'];
    const padded = count + 4;
    const out = await gpu.run({
      buffers: {
        ...Object.fromEntries(names.map((n, i) => [n, inputs[i]!])),
        out: new Float32Array(padded).fill(SENTINEL),
      },
      ops: [{ op: 'activation', entry, count, inputs: names, out: 'out' }],
      read: ['out'],
    });
    const all = f32(out.out, padded);
    expect([...all.subarray(count)], `${entry}: written past count ${count}`).toEqual([
      SENTINEL,
      SENTINEL,
      SENTINEL,
      SENTINEL,
    ]);
    return all.slice(0, count);
  }

  // Written over the first elements of every input (as many as fit).
  const SIGMOID_EXTREMES = [
    0, -0, 300, -300, 88, -88, 1e30, -1e30, 87.5, -87.5, 17, -17, 40, -40, 1e-30, -1e-30, 3.4e38, -3.4e38,
  ];
  // No denormals here: WGSL lets an implementation flush them to zero (SwiftShader does), which
  // would make relu(1e-45) = 0 and block its gradient; the last test covers that case on its own.
  const RELU_EXTREMES = [0, -0, 1e30, -1e30, 3.4e38, -3.4e38, FLT_MIN, -FLT_MIN];

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
      check('relu_forward', 'relu(x)', y, reluForward(x));
      // max(−0, 0) may be either zero; what matters downstream is that it is not > 0.
      for (let i = 0; i < count; i++) if (x[i]! <= 0) expect(y[i], `relu(${x[i]}) at ${i}`).toBe(0);
    });

    it('relu_backward passes dy where y > 0', async () => {
      // A ReLU output: exact zeros, −0, the smallest normal and huge positives.
      const y = withExtremes(
        Float32Array.from(r.uniform(count, -3, 3), (v) => Math.max(v, 0)),
        [0, -0, FLT_MIN, 3.4e38, 0],
      );
      check('relu_backward', 'drelu', await activate('relu_backward', [dy, y], count), reluBackward(dy, y));
    });

    it('sigmoid_forward = 1/(1 + e^−x), finite at ±300, ±88, ±1e30', async () => {
      const x = withExtremes(r.uniform(count, -12, 12), SIGMOID_EXTREMES);
      const y = await activate('sigmoid_forward', [x], count);
      checkSigmoid('sigmoid(x)', x, y);
      for (let i = 0; i < count; i++) {
        expect(y[i]! >= 0 && y[i]! <= 1, `sigmoid(${x[i]}) = ${y[i]} at ${i}`).toBe(true);
      }
    });

    it('sigmoid_backward = dy·y·(1 − y)', async () => {
      // y from the float64 σ rounded to float32, with exact 0, ½ and 1 and a denormal.
      const y = withExtremes(Float32Array.from(r.uniform(count, -12, 12), sigmoid), [0, 1, 0.5, 1 - 2 ** -24, 6e-39]);
      check('sigmoid_backward', 'dsigmoid', await activate('sigmoid_backward', [dy, y], count), sigmoidBackward(dy, y));
    });
  });

  describe('extreme values, one by one', () => {
    it('sigmoid over a sweep of [−100, 100] stays within the band tolerances', async () => {
      const n = 200_001;
      const x = Float32Array.from({ length: n }, (_, i) => -100 + (200 * i) / (n - 1));
      checkSigmoid('sigmoid(sweep)', x, await activate('sigmoid_forward', [x], n));
    });

    it('sigmoid at ±300, ±88, ±1e30 and 0 gives the float32-rounded σ', async () => {
      const x = Float32Array.from(SIGMOID_EXTREMES);
      const y = await activate('sigmoid_forward', [x], x.length);
      checkSigmoid('sigmoid(extremes)', x, y);
      const at = (v: number) => y[SIGMOID_EXTREMES.indexOf(v)]!;
      expect(at(0)).toBe(0.5);
      expect(at(300)).toBe(1);
      expect(at(1e30)).toBe(1);
      expect(at(88)).toBe(1);
      // 1 + e^−17 rounds to 1 in float32, so σ(17) = 1 here, 6e-8 (one ulp) above the rounded
      // σ(17) = 1 − 6e-8: inside rtol, and the same saturation PyTorch's float32 σ has.
      expect(Math.abs(at(17) - sigmoid(17))).toBeLessThanOrEqual(2 ** -24);
      expect(at(-300)).toBeLessThan(FLT_MIN);
      expect(at(-1e30)).toBeLessThan(FLT_MIN);
    });

    it('relu at 0 and −0 is not positive, and relu_backward blocks both', async () => {
      const x = Float32Array.from([0, -0, FLT_MIN, -FLT_MIN]);
      expect([...(await activate('relu_forward', [x], 4))]).toEqual([0, 0, FLT_MIN, 0]);
      const dy = Float32Array.from([5, 5, 5, 5]);
      expect([...(await activate('relu_backward', [dy, x], 4))]).toEqual([0, 0, 5, 0]);
    });

    it('a denormal input is either kept or flushed to zero, consistently in forward and backward', async () => {
      // WGSL allows flushing denormals (SwiftShader does): relu(1e-45) is 1e-45 or 0, and its
      // gradient passes exactly when the forward value is positive.
      const x = Float32Array.from([1e-45, -1e-45, 1e-40, 0]);
      const y = await activate('relu_forward', [x], 4);
      expect([0, 1.401298464324817e-45]).toContain(y[0]);
      expect(y[1]).toBe(0);
      const dx = await activate('relu_backward', [Float32Array.from([5, 5, 5, 5]), y], 4);
      expect([...dx]).toEqual([...y].map((v) => (v > 0 ? 5 : 0)));
    });
  });
});
