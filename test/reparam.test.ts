/**
 * The reparameterization kernels (shaders/reparam.wgsl.ts, shaders/philox.wgsl.ts) against the
 * float64 references: ε from Philox4x32-10 + Box–Muller must be the reference's
 * normal(seed, t, stream, e) up to float32 rounding; z = mu + exp(½·logvar)·ε and the backward
 * accumulation into dmulv must match reparamForward / reparamBackward; and a million draws of
 * `randn` must look like N(0, 1) (moments, Kolmogorov–Smirnov), be deterministic, and change
 * with seed, step and stream. Every output buffer has a sentinel-filled vec4 past its end.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { reparamBackward, reparamForward } from '../src/reference/ops';
import { normal, normals } from '../src/reference/philox';
import { expectClose, f32, implementations, rng, errorReport, useHarness } from './gpu';

describe.each(implementations)('$name', (implementation) => {
  const gpu = useHarness(implementation);

  const ULP = 2 ** -24; // relative error of one correctly rounded float32 operation
  const SENTINEL = -9.5;

  /**
   * ε tolerance, |gpu − ref| ≤ EPS_ATOL + EPS_RTOL·|ref|. The uniforms are identical (24-bit
   * grids, exact in float32), and philox.wgsl.ts computes ln, cos and sin with its own
   * polynomials after exact range reduction, so the float32 error is a few roundings:
   * - relative: ln u1 (exponent exact, one division, a short series), the sqrt, the polynomial
   *   and the product each within an ulp or two: rtol 1e-6 (≈ 8 ulp at 2^-23);
   * - absolute: the reduced angle 2π·u (float32 2π and one product) is off by ≤ 1e-7 rad, and
   *   cos near π/2 (1 − x²/2·…) cancels to ~1 ulp of 1 = 1.2e-7; both scale with the radius,
   *   ≤ √(2·ln 2^24) = 5.77: ≈ 1.3e-6, hence atol 1.5e-6.
   * This is far tighter than WGSL's own sin/cos (2^-11 absolute) would allow, which is why the
   * kernel does not use them.
   */
  const EPS_ATOL = 1.5e-6;
  const EPS_RTOL = 1e-6;

  /**
   * z and dmulv tolerance, relative to the magnitudes summed: |gpu − ref| ≤ tol·(|a| + |b|) for
   * a result a + b. exp(½·logvar) carries WGSL's exp bound of 3 + 2·|½·logvar| ulp (ulp taken as
   * 2^-24, the relative size at the top of a binade), the other operations one rounding each:
   * (6 + 2·10) ulp = 1.5e-6 at the extreme logvar = ±20 that the tests include.
   */
  const SUM_TOL = (6 + 2 * 10) * ULP;

  const record = errorReport(`reparam on ${implementation.name}`);

  /** expectClose on values divided by the magnitudes that were summed, so one tolerance fits every element. */
  function expectCloseScaled(
    name: string,
    gpuValues: ArrayLike<number>,
    ref: ArrayLike<number>,
    scale: ArrayLike<number>,
    tol: number,
  ) {
    const s = (i: number) => scale[i]! || 1;
    const e = expectClose(
      name,
      Array.from(ref, (_, i) => gpuValues[i]! / s(i)),
      Array.from(ref, (v, i) => v / s(i)),
      0,
      tol,
    );
    return e.maxAbs;
  }

  function expectSentinels(name: string, all: Float32Array, count: number) {
    expect([...all.subarray(count, count + 4)], `${name}: written past ${count}`).toEqual([
      SENTINEL,
      SENTINEL,
      SENTINEL,
      SENTINEL,
    ]);
  }

  const padded = (n: number) => new Float32Array(n + 4).fill(SENTINEL);

  /** (rows, 2L) = [mu ‖ logvar] per row, mu in [−3, 3], logvar in [−4, 4], extremes on the first rows. */
  function makeMulv(rows: number, L: number, seed: number): Float32Array {
    const r = rng(seed);
    const mulv = new Float32Array(rows * 2 * L);
    for (let row = 0; row < rows; row++) {
      mulv.set(r.uniform(L, -3, 3), row * 2 * L);
      mulv.set(r.uniform(L, -4, 4), row * 2 * L + L);
    }
    const extremes: [mu: number, logvar: number][] = [
      [0, 20],
      [10, -20],
      [-10, 20],
      [0.5, -20],
      [-1, 0],
    ];
    extremes.forEach(([mu, logvar], k) => {
      const at = k * (2 * L + 1); // walks across rows and columns
      if (Math.floor(at / (2 * L)) >= rows || at % (2 * L) >= L) return;
      mulv[at] = mu;
      mulv[at + L] = logvar;
    });
    return mulv;
  }

  // [rows, L, seed, step t, stream]
  const CASES: [number, number, number, number, number][] = [
    [1, 1, 0, 0, 0],
    [5, 3, 1, 1, 0],
    [3, 7, 0xffffffff, 23_456, 1],
    [45, 65, 42, 0xffffffff, 2],
    [128, 20, 2024, 468, 0],
    [96, 20, 2024, 469, 0],
    [96, 20, 77, 10_000, 1],
  ];

  describe.each(CASES)('reparam %i×%i (seed %i, t %i, stream %i)', (rows, L, seed, t, stream) => {
    const count = rows * L;
    const mulv = makeMulv(rows, L, rows * 131 + L);
    const r = rng(seed ^ t);
    const dz = r.uniform(count, -2, 2);
    const dmulvIn = r.uniform(rows * 2 * L, -1, 1); // the KL gradient the loss kernel wrote

    it('reparam_forward: ε is normal(seed, t, stream, e); z = mu + exp(½·logvar)·ε', async () => {
      const out = await gpu.run({
        buffers: { state: Uint32Array.from([t, 3, 0, 0]), mulv, z: padded(count), eps: padded(count) },
        ops: [
          {
            op: 'reparam',
            entry: 'reparam_forward',
            params: [rows, L, seed, stream],
            buffers: ['state', 'mulv', 'z', 'eps'],
          },
        ],
        read: ['z', 'eps'],
      });
      const eps = f32(out.eps, count + 4);
      const z = f32(out.z, count + 4);
      expectSentinels('eps', eps, count);
      expectSentinels('z', z, count);
      const epsRef = Float64Array.from({ length: count }, (_, e) => normal(seed, t, stream, e));
      const e = expectClose('eps', eps.subarray(0, count), epsRef, EPS_RTOL, EPS_ATOL);
      record('eps vs normal() (abs)', e.maxAbs, `atol ${EPS_ATOL} + rtol ${EPS_RTOL}`);

      // z from the GPU's own ε, so this isolates the reparameterization arithmetic.
      const zRef = reparamForward(mulv, rows, L, eps);
      const scale = Float64Array.from({ length: count }, (_, i) => {
        const at = Math.floor(i / L) * 2 * L + (i % L);
        return Math.abs(mulv[at]!) + Math.exp(0.5 * mulv[at + L]!) * Math.abs(eps[i]!);
      });
      record(
        'z (relative to |mu| + |σ·ε|)',
        expectCloseScaled('z', z, zRef, scale, SUM_TOL),
        `tol ${SUM_TOL.toExponential(2)}`,
      );
    });

    it('reparam_backward adds [dz, dz·ε·½·exp(½·logvar)] into a non-zero dmulv', async () => {
      const eps = Float32Array.from(normals(count, seed, t, stream));
      const out = await gpu.run({
        buffers: { mulv, eps, dz, dmulv: Float32Array.from([...dmulvIn, SENTINEL, SENTINEL, SENTINEL, SENTINEL]) },
        ops: [
          {
            op: 'reparam',
            entry: 'reparam_backward',
            params: [rows, L, seed, stream],
            buffers: ['mulv', 'eps', 'dz', 'dmulv'],
          },
        ],
        read: ['dmulv'],
      });
      const dmulv = f32(out.dmulv, rows * 2 * L + 4);
      expectSentinels('dmulv', dmulv, rows * 2 * L);
      const ref = reparamBackward(mulv, eps, dz, dmulvIn, rows, L);
      const scale = Float64Array.from(dmulvIn, (v, i) => {
        const col = i % (2 * L);
        const e = Math.floor(i / (2 * L)) * L + (col % L);
        const added = col < L ? dz[e]! : dz[e]! * eps[e]! * 0.5 * Math.exp(0.5 * mulv[i]!);
        return Math.abs(v) + Math.abs(added);
      });
      record(
        'dmulv (relative to |dmulv_in| + |added|)',
        expectCloseScaled('dmulv', dmulv, ref, scale, SUM_TOL),
        `tol ${SUM_TOL.toExponential(2)}`,
      );
    });
  });

  /** Φ(x) via erf (Abramowitz–Stegun 7.1.26, |error| ≤ 1.5e-7: far below the KS bound of 1.6e-3). */
  function Phi(x: number): number {
    const z = Math.abs(x) / Math.SQRT2;
    const t = 1 / (1 + 0.3275911 * z);
    const poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    const erf = 1 - poly * Math.exp(-z * z);
    return x >= 0 ? 0.5 * (1 + erf) : 0.5 * (1 - erf);
  }

  async function randn(count: number, step: number, seed: number, stream: number): Promise<Float32Array> {
    const out = await gpu.run({
      buffers: { out: padded(count) },
      ops: [{ op: 'reparam', entry: 'randn', params: [count, step, seed, stream], buffers: ['out'] }],
      read: ['out'],
    });
    const all = f32(out.out, count + 4);
    expectSentinels('randn', all, count);
    return all.slice(0, count);
  }

  describe('randn', () => {
    const N = 1_000_003; // not a multiple of 4: the last Philox block is partial
    const SEED = 0x5eed;
    const STEP = 31;
    const STREAM = 2;
    let draws: Float32Array;
    beforeAll(async () => {
      draws = await randn(N, STEP, SEED, STREAM);
    });

    it.each([1, 5, 257])('%i draws match normals() of the reference', async (n) => {
      const got = await randn(n, 9, 1234, 0);
      record(
        'randn vs normals() (abs)',
        expectClose(`randn(${n})`, got, normals(n, 1234, 9, 0), EPS_RTOL, EPS_ATOL).maxAbs,
        `atol ${EPS_ATOL} + rtol ${EPS_RTOL}`,
      );
    });

    it('1,000,003 draws match normals() of the reference, the partial last block included', () => {
      const e = expectClose('randn(1e6+3)', draws, normals(N, SEED, STEP, STREAM), EPS_RTOL, EPS_ATOL);
      record('randn vs normals() (abs)', e.maxAbs, `atol ${EPS_ATOL} + rtol ${EPS_RTOL}`);
    });

    it('mean, variance, skewness and kurtosis within 5σ of N(0, 1)', () => {
      let s1 = 0,
        s2 = 0,
        s3 = 0,
        s4 = 0;
      for (const v of draws) {
        s1 += v;
        s2 += v * v;
        s3 += v ** 3;
        s4 += v ** 4;
      }
      const mean = s1 / N;
      // Central moments from raw ones (the mean is ~1e-3, so nothing cancels badly in float64).
      const variance = s2 / N - mean ** 2;
      const m3 = s3 / N - 3 * mean * (s2 / N) + 2 * mean ** 3;
      const m4 = s4 / N - 4 * mean * (s3 / N) + 6 * mean ** 2 * (s2 / N) - 3 * mean ** 4;
      const skew = m3 / variance ** 1.5;
      const exKurt = m4 / variance ** 2 - 3;
      console.log(
        `randn moments over ${N}: mean ${mean.toExponential(2)}, var ${variance.toFixed(5)}, skew ${skew.toExponential(2)}, excess kurtosis ${exKurt.toExponential(2)}`,
      );
      // Standard errors under N(0, 1): mean 1/√n, variance √(2/n), skewness √(6/n), excess kurtosis √(24/n).
      expect(Math.abs(mean)).toBeLessThan(5 / Math.sqrt(N));
      expect(Math.abs(variance - 1)).toBeLessThan(5 * Math.sqrt(2 / N));
      expect(Math.abs(skew)).toBeLessThan(5 * Math.sqrt(6 / N));
      expect(Math.abs(exKurt)).toBeLessThan(5 * Math.sqrt(24 / N));
    });

    it('Kolmogorov–Smirnov statistic against Φ below the 1% critical value 1.63/√n', () => {
      const sorted = Float64Array.from(draws).sort();
      let ks = 0;
      for (let i = 0; i < N; i++) {
        const F = Phi(sorted[i]!);
        ks = Math.max(ks, (i + 1) / N - F, F - i / N);
      }
      console.log(
        `randn KS statistic over ${N}: ${ks.toExponential(3)} (1% critical ${(1.63 / Math.sqrt(N)).toExponential(3)})`,
      );
      expect(ks).toBeLessThan(1.63 / Math.sqrt(N));
      // Box–Muller's radius is capped at √(2·ln 2^24) = 5.768 by the 24-bit u1.
      expect(sorted[N - 1]!).toBeLessThanOrEqual(5.7684);
      expect(sorted[0]!).toBeGreaterThanOrEqual(-5.7684);
    });

    it('is deterministic: a second run is bit-identical', async () => {
      const again = await randn(N, STEP, SEED, STREAM);
      expect(Buffer.compare(Buffer.from(again.buffer), Buffer.from(draws.buffer))).toBe(0);
    });

    it.each([
      ['seed', SEED + 1, STEP, STREAM],
      ['step', SEED, STEP + 1, STREAM],
      ['stream', SEED, STEP, STREAM + 1],
    ])('a different %s gives different, uncorrelated draws', async (_, seed, step, stream) => {
      const n = 100_000;
      const other = await randn(n, step, seed, stream);
      let same = 0;
      let dot = 0;
      for (let i = 0; i < n; i++) {
        if (other[i] === draws[i]) same++;
        dot += other[i]! * draws[i]!;
      }
      expect(same, 'identical draws').toBeLessThan(10);
      expect(Math.abs(dot / n), 'correlation').toBeLessThan(5 / Math.sqrt(n));
    });
  });
});
