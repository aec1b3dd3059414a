/**
 * The general objective (shaders/loss.wgsl.ts: `elbo`, `elbo_finalize`, `gaussian_dlogsigma`,
 * `mean_clamp`) against the float64 `elbo` (src/reference/loss.ts): β on the KL term and its
 * warm-up read from the GPU-resident step state, and the Gaussian likelihood with a fixed σ or
 * a learned one per pixel. Shapes 1×1, odd ones, the VAE's batch and one whose latents exceed
 * the grid stride; extremes: logits ±200 and ±1e30, σ from 1e-3 to 1e3, log σ per pixel ±6.9,
 * means far outside [0, 1], logvar ±20.
 */
import { describe, expect, it } from 'vitest';
import { betaAt, elbo, HALF_LOG_2PI } from '../src/reference/loss';
import { sigmoid } from '../src/reference/ops';
import type { ElboParams } from '../src/gpu/ops';
import { expectClose, f32, implementations, rng, errorReport, useHarness } from './gpu';

describe.each(implementations)('$name', (implementation) => {
  const gpu = useHarness(implementation);

  const ULP = 2 ** -24;
  const SENTINEL = -4.75;
  const record = errorReport(`elbo on ${implementation.name}`);

  interface Inputs {
    rows: number;
    D: number;
    L: number;
    out: Float32Array;
    x: Float32Array;
    mulv: Float32Array;
    logSigma?: Float32Array;
  }

  /** Pixels as MNIST's (60% 0, 10% 1, the rest k/255), decoder outputs in [lo, hi], mu ∈ [−3, 3], logvar ∈ [−4, 4]. */
  function makeInputs(rows: number, D: number, L: number, seed: number, lo = -8, hi = 8): Inputs {
    const r = rng(seed);
    const x = Float32Array.from({ length: rows * D }, () => {
      const u = r.next();
      return u < 0.6 ? 0 : u < 0.7 ? 1 : Math.floor(r.next() * 256) / 255;
    });
    const mulv = new Float32Array(rows * 2 * L);
    for (let row = 0; row < rows; row++) {
      mulv.set(r.uniform(L, -3, 3), row * 2 * L);
      mulv.set(r.uniform(L, -4, 4), row * 2 * L + L);
    }
    return { rows, D, L, out: r.uniform(rows * D, lo, hi), x, mulv };
  }

  /** elbo then elbo_finalize (and gaussian_dlogsigma for a learned σ) at state (t, batch). */
  async function runElbo(inputs: Inputs, params: ElboParams, t: number, batch = 3, groups?: number) {
    const { rows, D, L, out, x, mulv, logSigma } = inputs;
    const partialCount = 2 * (groups ?? 8);
    const ring = batch + 2;
    const got = await gpu.run({
      buffers: {
        out,
        x,
        mulv,
        ...(logSigma ? { logSigma } : {}),
        state: Uint32Array.from([t, batch, 0, 0]),
        dlogits: new Float32Array(rows * D + 4).fill(SENTINEL),
        dmulv: new Float32Array(rows * 2 * L + 4).fill(SENTINEL),
        partials: new Float32Array(partialCount + 4).fill(SENTINEL),
        loss: new Float32Array(ring).fill(SENTINEL),
        objective: new Float32Array(ring).fill(SENTINEL),
        dlogSigma: new Float32Array(D + 4).fill(SENTINEL),
      },
      ops: [
        {
          op: 'elbo',
          dims: { rows, D, L },
          params,
          state: 'state',
          logits: 'out',
          x: 'x',
          mulv: 'mulv',
          logSigma: logSigma ? 'logSigma' : undefined,
          dlogits: 'dlogits',
          dmulv: 'dmulv',
          partials: 'partials',
          groups,
        },
        ...(logSigma
          ? [
              {
                op: 'gaussianDlogSigma' as const,
                dims: { rows, D },
                mean: 'out',
                x: 'x',
                logSigma: 'logSigma',
                dlogSigma: 'dlogSigma',
              },
            ]
          : []),
        {
          op: 'elboFinalize',
          params,
          state: 'state',
          partials: 'partials',
          out: 'loss',
          objective: 'objective',
          groups,
        },
      ],
      read: ['state', 'dlogits', 'dmulv', 'partials', 'loss', 'objective', 'dlogSigma'],
    });
    const dlogits = f32(got.dlogits, rows * D + 4);
    const dmulv = f32(got.dmulv, rows * 2 * L + 4);
    const loss = f32(got.loss, ring);
    const objective = f32(got.objective, ring);
    const dlogSigma = f32(got.dlogSigma);
    expect([...new Uint32Array(got.state.buffer, got.state.byteOffset, 4)], 'state advanced').toEqual([
      t + 1,
      batch + 1,
      0,
      0,
    ]);
    expect([...dlogits.subarray(rows * D)], 'dlogits past rows·D').toEqual([SENTINEL, SENTINEL, SENTINEL, SENTINEL]);
    expect([...dmulv.subarray(rows * 2 * L)], 'dmulv past rows·2L').toEqual([SENTINEL, SENTINEL, SENTINEL, SENTINEL]);
    expect([...f32(got.partials, partialCount + 4).subarray(partialCount)], 'partials past 2·groups').toEqual([
      SENTINEL,
      SENTINEL,
      SENTINEL,
      SENTINEL,
    ]);
    for (const ringValues of [loss, objective]) {
      expect(
        [...ringValues].map((v, i) => (i === batch ? 'set' : v)),
        'only out[batch] written',
      ).toEqual([...ringValues].map((_, i) => (i === batch ? 'set' : SENTINEL)));
    }
    for (const [name, values] of [
      ['dlogits', dlogits],
      ['dmulv', dmulv],
      ['loss', loss],
      ['objective', objective],
    ] as const) {
      const bad = values.findIndex((v) => !Number.isFinite(v));
      expect(bad, `${name}[${bad}] = ${values[bad]}`).toBe(-1);
    }
    return {
      loss: loss[batch]!,
      objective: objective[batch]!,
      dlogits: dlogits.subarray(0, rows * D),
      dmulv: dmulv.subarray(0, rows * 2 * L),
      dlogSigma: logSigma ? dlogSigma.subarray(0, D) : undefined,
    };
  }

  /** Sum of the magnitudes of every term of recon + β·KL: the scale a float32 sum's error is relative to (terms may cancel). */
  function termScale(inputs: Inputs, params: ElboParams, beta: number): number {
    const { rows, D, L, out, x, mulv, logSigma } = inputs;
    let scale = 0;
    for (let i = 0; i < rows * D; i++) {
      if (params.likelihood === 'bernoulli')
        scale += Math.abs(out[i]!) + 1; // each BCE term ≤ |l| + log 2
      else {
        const s = logSigma ? logSigma[i % D]! : params.logSigma!;
        scale += HALF_LOG_2PI + Math.abs(s) + 0.5 * (out[i]! - x[i]!) ** 2 * Math.exp(-2 * s);
      }
    }
    for (let r = 0; r < rows; r++) {
      for (let j = 0; j < L; j++) {
        const mu = mulv[r * 2 * L + j]!,
          lv = mulv[r * 2 * L + L + j]!;
        scale += Math.max(1, beta) * 0.5 * (1 + Math.abs(lv) + mu * mu + Math.exp(lv));
      }
    }
    return scale;
  }

  function check(
    label: string,
    inputs: Inputs,
    params: ElboParams,
    t: number,
    got: Awaited<ReturnType<typeof runElbo>>,
  ) {
    const { rows, D, L, out, x, mulv, logSigma } = inputs;
    const beta = betaAt(params.beta, params.warmup, t + 1);
    const ref = elbo(out, x, mulv, rows, D, L, {
      likelihood: params.likelihood,
      beta,
      logSigma: logSigma ?? params.logSigma,
    });
    // The loss and objective: ~1e-7 of the terms' magnitudes in practice; 1e-5 allows for
    // WGSL's log and exp error bounds (see test/loss.test.ts for the Bernoulli terms' budget).
    const scale = termScale(inputs, params, beta);
    record(
      'loss / Σ|terms|',
      expectClose(`${label} loss`, [got.loss], [ref.loss], 0, 1e-5 * scale).maxAbs / scale,
      1e-5,
    );
    record(
      'objective / Σ|terms|',
      expectClose(`${label} objective`, [got.objective], [ref.objective], 0, 1e-5 * scale).maxAbs / scale,
      1e-5,
    );

    if (params.likelihood === 'bernoulli') {
      // σ(l) − x relative to σ(l) + |x|, as in test/loss.test.ts (exp's error grows with |l|).
      const tol = (6 + 2 * 88) * ULP;
      const err = expectClose(
        `${label} dlogits`,
        Array.from(got.dlogits, (g, i) => g / Math.max(sigmoid(out[i]!) + Math.abs(x[i]!), 2 ** -100)),
        Array.from(ref.dlogits, (g, i) => g / Math.max(sigmoid(out[i]!) + Math.abs(x[i]!), 2 ** -100)),
        0,
        tol,
      );
      record('bernoulli dlogits (relative to σ + |x|)', err.maxAbs, tol);
    } else {
      // (μ − x)·e^(−2s): the subtraction rounds once, exp loses up to 3 + 2·|2s| ulp, the product once.
      const maxS = logSigma ? Math.max(...Array.from(logSigma, Math.abs)) : Math.abs(params.logSigma!);
      const tol = (5 + 4 * maxS) * ULP;
      record(
        'gaussian dlogits (relative)',
        expectClose(`${label} dlogits`, got.dlogits, ref.dlogits, tol, 0).maxRel,
        tol,
      );
    }
    // dmu = β_t·mu (one rounding of β_t's own few ulp), dlogvar = β_t·½(e^lv − 1), relative to β_t·½(e^lv + 1).
    const muAt = [...mulv.keys()].filter((i) => i % (2 * L) < L);
    const lvAt = [...mulv.keys()].filter((i) => i % (2 * L) >= L);
    const muTol = 6 * ULP;
    record(
      'dmu (relative)',
      expectClose(
        `${label} dmu`,
        muAt.map((i) => got.dmulv[i]!),
        muAt.map((i) => ref.dmulv[i]!),
        muTol,
        0,
      ).maxRel,
      muTol,
    );
    const lvScale = lvAt.map((i) => beta * 0.5 * (Math.exp(mulv[i]!) + 1) || 1);
    const lvTol = (10 + 2 * 20) * ULP;
    record(
      'dlogvar (relative to β·½(e^lv + 1))',
      expectClose(
        `${label} dlogvar`,
        lvAt.map((i, k) => got.dmulv[i]! / lvScale[k]!),
        lvAt.map((i, k) => ref.dmulv[i]! / lvScale[k]!),
        0,
        lvTol,
      ).maxAbs,
      lvTol,
    );
    if (got.dlogSigma) {
      // Σ_rows (1 − diff²·e^(−2s)) cancels: its error is relative to Σ_rows (1 + diff²·e^(−2s)).
      const colScale = Array.from({ length: D }, (_, d) => {
        let sum = 0;
        for (let r = 0; r < rows; r++) sum += 1 + (out[r * D + d]! - x[r * D + d]!) ** 2 * Math.exp(-2 * logSigma![d]!);
        return sum;
      });
      const tol = 1e-5;
      record(
        'dlog_sigma (relative to Σ|terms|)',
        expectClose(
          `${label} dlog_sigma`,
          Array.from(got.dlogSigma, (g, d) => g / colScale[d]!),
          Array.from(ref.dlogSigma!, (g, d) => g / colScale[d]!),
          0,
          tol,
        ).maxAbs,
        tol,
      );
    }
    return { ref, beta };
  }

  const SHAPES: [rows: number, D: number, L: number][] = [
    [1, 1, 1],
    [3, 13, 5],
    [45, 65, 7],
    [128, 784, 20],
    [900, 5, 20],
  ];

  describe('β on the KL term (Bernoulli)', () => {
    // (β, warm-up N, steps taken t): β_t = β·min(1, (t + 1)/N). t = 0 is the first Adam step: β/N.
    const CASES: [beta: number, warmup: number, t: number][] = [
      [4, 0, 7],
      [0.5, 10, 0],
      [2, 100, 41],
      [2, 5, 4],
      [3, 5, 1000],
      [0, 0, 3],
    ];
    it.each(SHAPES)('%i×%i, L = %i at each (β, warm-up, t): loss, objective, gradients', async (rows, D, L) => {
      const inputs = makeInputs(rows, D, L, rows * 7 + D * 3 + L);
      for (const [b, warmup, t] of CASES) {
        const params: ElboParams = { likelihood: 'bernoulli', beta: b, warmup };
        check(`β ${b} N ${warmup} t ${t} ${rows}×${D}`, inputs, params, t, await runElbo(inputs, params, t));
      }
    });

    it('the warm-up rule on the GPU: β_t = β·min(1, (t + 1)/N), so objective − recon = β_t·KL', async () => {
      const inputs = makeInputs(4, 9, 3, 11);
      const ref0 = elbo(inputs.out, inputs.x, inputs.mulv, 4, 9, 3, { likelihood: 'bernoulli', beta: 0 });
      for (const t of [0, 1, 3, 4, 9]) {
        const got = await runElbo(inputs, { likelihood: 'bernoulli', beta: 2, warmup: 4 }, t);
        const expected = 2 * Math.min(1, (t + 1) / 4); // 0.5, 1, 2, 2, 2
        expect((got.objective - ref0.recon) / ref0.kl, `t = ${t}`).toBeCloseTo(expected, 4);
        expect(got.dmulv[0]! / inputs.mulv[0]!, `dmu / mu at t = ${t}`).toBeCloseTo(expected, 5);
      }
    });

    it('1, 64 and 128 loss groups agree with the reference', async () => {
      const inputs = makeInputs(128, 784, 20, 77);
      for (const groups of [1, 64, 128]) {
        const params: ElboParams = { likelihood: 'bernoulli', beta: 0.25, warmup: 3 };
        check(`${groups} groups`, inputs, params, 1, await runElbo(inputs, params, 1, 3, groups));
      }
    });

    it('extreme logits (±200, ±1e30, 0) and latents (mu ±10, logvar ±20): finite, matches', async () => {
      const logits = [200, -200, 1e30, -1e30, 0, 88, -88, 17, -17];
      const pixels = [0, 1, 0.5];
      const latents: [number, number][] = [
        [0, 20],
        [0, -20],
        [10, 0],
        [-10, 20],
        [0, 0],
      ];
      const rows = pixels.length,
        D = logits.length,
        L = latents.length;
      const mulv = new Float32Array(rows * 2 * L);
      for (let r = 0; r < rows; r++)
        latents.forEach(([mu, lv], j) => {
          mulv[r * 2 * L + j] = mu;
          mulv[r * 2 * L + L + j] = lv;
        });
      const inputs: Inputs = {
        rows,
        D,
        L,
        mulv,
        out: Float32Array.from({ length: rows * D }, (_, i) => logits[i % D]!),
        x: Float32Array.from({ length: rows * D }, (_, i) => pixels[Math.floor(i / D)]!),
      };
      const params: ElboParams = { likelihood: 'bernoulli', beta: 8, warmup: 2 };
      check('extremes', inputs, params, 0, await runElbo(inputs, params, 0));
    });
  });

  describe('the Gaussian likelihood', () => {
    it.each(SHAPES)(
      '%i×%i, L = %i with σ fixed at 1e-3, 0.1, 1 and 1e3: loss in nats, objective, gradients',
      async (rows, D, L) => {
        const inputs = makeInputs(rows, D, L, rows * 5 + D + L, -0.5, 1.5);
        for (const sigma of [1e-3, 0.1, 1, 1e3]) {
          const params: ElboParams = {
            likelihood: 'gaussian',
            beta: 1,
            warmup: 0,
            logSigma: Math.fround(Math.log(sigma)),
          };
          check(`σ ${sigma} ${rows}×${D}`, inputs, params, 5, await runElbo(inputs, params, 5));
        }
      },
    );

    it.each(SHAPES)(
      '%i×%i, L = %i with σ learned per pixel (log σ ∈ [−6.9, 6.9]) and β = 0.5 warmed up: dlog_sigma too',
      async (rows, D, L) => {
        const inputs = makeInputs(rows, D, L, rows * 3 + D + 2 * L, -0.5, 1.5);
        inputs.logSigma = rng(D).uniform(D, -6.9, 6.9);
        const params: ElboParams = { likelihood: 'gaussian', beta: 0.5, warmup: 20 };
        check(`learned σ ${rows}×${D}`, inputs, params, 2, await runElbo(inputs, params, 2));
      },
    );

    it('means far outside [0, 1] (±100) at tiny and huge σ stay finite and match', async () => {
      const inputs = makeInputs(16, 33, 4, 9, -100, 100);
      for (const logSigma of [Math.fround(Math.log(1e-3)), Math.fround(Math.log(1e3))]) {
        const params: ElboParams = { likelihood: 'gaussian', beta: 2, warmup: 0, logSigma };
        check(`means ±100, log σ ${logSigma}`, inputs, params, 0, await runElbo(inputs, params, 0));
      }
      inputs.logSigma = Float32Array.from({ length: 33 }, (_, d) => (d % 2 ? -6.9 : 6.9));
      check(
        'means ±100, learned σ at ±6.9',
        inputs,
        { likelihood: 'gaussian', beta: 1, warmup: 0 },
        0,
        await runElbo(inputs, { likelihood: 'gaussian', beta: 1, warmup: 0 }, 0),
      );
    });

    it('a perfect mean at σ = 1 costs exactly ½·log(2π) per pixel (nats, constants included)', async () => {
      const inputs = makeInputs(2, 5, 1, 3);
      inputs.out = Float32Array.from(inputs.x);
      inputs.mulv.fill(0); // KL = 0
      const got = await runElbo(inputs, { likelihood: 'gaussian', beta: 1, warmup: 0, logSigma: 0 }, 0);
      expect(got.loss).toBeCloseTo(10 * HALF_LOG_2PI, 5);
      expect([...got.dlogits]).toEqual(new Array(10).fill(0));
    });

    it('mean_clamp shows the mean clamped to [0, 1]', async () => {
      const mean = Float32Array.from([-1e30, -1, -0, 0, 0.25, 1, 1.5, 1e30, 0.999]);
      const got = await gpu.run({
        buffers: { mean, image: new Float32Array(mean.length + 1).fill(SENTINEL) },
        ops: [{ op: 'meanClamp', count: mean.length, mean: 'mean', image: 'image' }],
        read: ['image'],
      });
      expect([...f32(got.image, mean.length + 1)]).toEqual([0, 0, 0, 0, 0.25, 1, 1, 1, Math.fround(0.999), SENTINEL]);
    });
  });

  describe("the general kernel at the reference model's settings", () => {
    it('Bernoulli, β = 1: the same gradients as bce_kl bit for bit, the loss within 1e-6 relative, 8 to 17 float32 ulp (only the summation order differs)', async () => {
      const inputs = makeInputs(128, 784, 20, 2024);
      const { rows, D, L, out, x, mulv } = inputs;
      const general = await runElbo(inputs, { likelihood: 'bernoulli', beta: 1, warmup: 0 }, 7);
      const reference = await gpu.run({
        buffers: {
          out,
          x,
          mulv,
          dlogits: rows * D * 4,
          dmulv: rows * 2 * L * 4,
          partials: 8 * 4,
          state: Uint32Array.from([7, 3, 0, 0]),
          loss: 16,
        },
        ops: [
          {
            op: 'bceKl',
            dims: { rows, D, L },
            logits: 'out',
            x: 'x',
            mulv: 'mulv',
            dlogits: 'dlogits',
            dmulv: 'dmulv',
            partials: 'partials',
          },
          { op: 'lossFinalize', state: 'state', partials: 'partials', out: 'loss' },
        ],
        read: ['dlogits', 'dmulv', 'loss'],
      });
      const bits = (v: Float32Array) => [...new Uint32Array(v.buffer, v.byteOffset, v.length)];
      expect(bits(general.dlogits)).toEqual(bits(f32(reference.dlogits, rows * D)));
      expect(bits(general.dmulv)).toEqual(bits(f32(reference.dmulv, rows * 2 * L)));
      const referenceLoss = f32(reference.loss, 4)[3]!;
      expect(Math.abs(general.loss - referenceLoss) / referenceLoss).toBeLessThan(1e-6);
      expect(general.objective).toBe(general.loss);
    });
  });
});
