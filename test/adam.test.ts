/**
 * The Adam kernel (shaders/adam.wgsl.ts) against the float64 reference `adam`, over several
 * steps recorded as a training step records them: the op list [adam, loss_finalize] run
 * `repeat` times, one submit each, with loss_finalize advancing the GPU-resident step counter
 * state[0] (its partials and out are dummies here). The gradient buffer is re-read every step;
 * the test keeps it fixed. Arenas: 4 and 64 floats, and 652,864 (the VAE's, padded to vec4s).
 * Gradients include 0, ±1e-30 and ±1e20; learning rates 1e-3 and 1e-2; runs resuming with
 * non-zero moments at t = 1000, across t = 500 and at t = 200,000. Each of params, m and v has
 * a sentinel vec4 past `length`.
 *
 * Both layouts (adam.wgsl.ts): every case runs the default ('blocked', called with no options,
 * as the engine calls it) and 'gridStride' with its own workgroup count and with a few given
 * ones, each against the reference, and gridStride's bits must equal blocked's. Arena lengths
 * are chosen off both strides: 1, 15, 17, 257 and 773 vec4s, and the real 163,216. The
 * default is pinned to the kernel from before the variant: its WGSL text (by SHA-256) and its
 * dispatch.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decodeCheckpoint, encodeCheckpoint } from '../src/model/checkpoint';
import { arenaLayout, initArena, type VaeSizes } from '../src/model/graph';
import { LOG_SIGMA_RANGE } from '../src/model/settings';
import { adam } from '../src/reference/ops';
import { ELEMENTWISE_WG, linearWorkgroups } from '../shaders/common';
import {
  ADAM_DEFAULT,
  ADAM_GRID_MAX_WORKGROUPS,
  ADAM_VEC4_PER_INVOCATION,
  adamWGSL,
  adamWorkgroups,
  type AdamClamp,
  type AdamOptions,
} from '../shaders/adam.wgsl';
import { LOSS_GROUPS } from '../shaders/loss.wgsl';
import { expectClose, f32, implementations, rng, errorReport, useHarness } from './gpu';

const describeOptions = (o: AdamOptions) =>
  o.layout === 'blocked' ? 'blocked' : `gridStride ${o.workgroups ?? 'auto'}`;

describe.each(implementations)('$name', (implementation) => {
  const gpu = useHarness(implementation);

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

  const record = errorReport(`adam on ${implementation.name}`);

  /** Largest relative error where |ref| ≥ FLT_MIN (below it, underflow to 0 is expected). */
  function maxRel(gpuValues: ArrayLike<number>, ref: ArrayLike<number>): number {
    let worst = 0;
    for (let i = 0; i < ref.length; i++) {
      if (Math.abs(ref[i]!) >= FLT_MIN) worst = Math.max(worst, Math.abs(gpuValues[i]! - ref[i]!) / Math.abs(ref[i]!));
    }
    return worst;
  }

  interface Case {
    length: number;
    lr: number;
    t0: number;
    warm: boolean;
    /** gridStride workgroup counts to run besides its own choice. */
    workgroups?: number[];
  }

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

  /** `options` undefined: the op's default, as the engine calls it; `clamp`: a span kept in range. */
  async function adamGpu(c: Case, inputs: ReturnType<typeof makeInputs>, options?: AdamOptions, clamp?: AdamClamp) {
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
        {
          op: 'adam',
          length,
          hyper: { lr, beta1: BETA1, beta2: BETA2, eps: EPS },
          state: 'state',
          params: 'params',
          grads: 'grads',
          m: 'm',
          v: 'v',
          options,
          clamp,
        },
        { op: 'lossFinalize', state: 'state', partials: 'partials', out: 'out' },
      ],
      repeat: STEPS,
      read: ['params', 'm', 'v', 'state'],
    });
    expect([...new Uint32Array(out.state.buffer, out.state.byteOffset, 4)], 'state after the steps').toEqual([
      t0 + STEPS,
      STEPS,
      0,
      0,
    ]);
    const result: Record<'params' | 'm' | 'v', Float32Array> = {
      params: f32(out.params),
      m: f32(out.m),
      v: f32(out.v),
    };
    for (const [name, values] of Object.entries(result)) {
      expect([...values.subarray(length, length + 4)], `${name} written past length`).toEqual([
        SENTINEL,
        SENTINEL,
        SENTINEL,
        SENTINEL,
      ]);
      const bad = values.findIndex((x, i) => i < length && !Number.isFinite(x));
      expect(bad, `${name}[${bad}] = ${values[bad]} (grad ${inputs.grads[bad]})`).toBe(-1);
    }
    return {
      params: result.params.subarray(0, length),
      m: result.m.subarray(0, length),
      v: result.v.subarray(0, length),
    };
  }

  function adamRef(
    c: Case,
    inputs: ReturnType<typeof makeInputs>,
    hyper: { beta1: number; beta2: number; eps: number },
  ) {
    const params = Float64Array.from(inputs.params);
    const m = Float64Array.from(inputs.m);
    const v = Float64Array.from(inputs.v);
    for (let s = 1; s <= STEPS; s++) adam(params, inputs.grads, m, v, c.t0 + s, { lr: c.lr, ...hyper });
    return { params, m, v };
  }

  /** adamRef with elements [clamp.offset, clamp.offset + clamp.length) clamped to [min, max] after each update. */
  function adamRefClamped(c: Case, inputs: ReturnType<typeof makeInputs>, clamp: AdamClamp) {
    const params = Float64Array.from(inputs.params);
    const m = Float64Array.from(inputs.m);
    const v = Float64Array.from(inputs.v);
    const end = clamp.offset + clamp.length;
    // Adam is elementwise: the span and the rest step as three separate tensors.
    const pieces = [
      [0, clamp.offset],
      [clamp.offset, end],
      [end, c.length],
    ] as const;
    for (let s = 1; s <= STEPS; s++) {
      for (const [from, to] of pieces) {
        adam(
          params.subarray(from, to),
          inputs.grads.subarray(from, to),
          m.subarray(from, to),
          v.subarray(from, to),
          c.t0 + s,
          {
            lr: c.lr,
            beta1: BETA1,
            beta2: BETA2,
            eps: EPS,
            range: from === clamp.offset ? [clamp.min, clamp.max] : undefined,
          },
        );
      }
    }
    return { params, m, v };
  }

  const CASES: Case[] = [
    { length: 4, lr: 1e-3, t0: 0, warm: false, workgroups: [1, 3] },
    { length: 64, lr: 1e-3, t0: 0, warm: false },
    { length: 64, lr: 1e-2, t0: 0, warm: false },
    // 15 and 17 vec4s: one blocked invocation short of its 16, and one past it.
    { length: 60, lr: 1e-3, t0: 0, warm: true, workgroups: [1] },
    { length: 68, lr: 1e-3, t0: 0, warm: false, workgroups: [1] },
    // 257 vec4s: gridStride's own choice is 2 groups, 255 lanes idle; with 1 group lane 0 loops twice.
    { length: 1028, lr: 1e-3, t0: 0, warm: false, workgroups: [1] },
    // 773 = 3·256 + 5 vec4s over one group: lanes 0–4 loop 4 times, the rest 3.
    { length: 4 * 773, lr: 1e-2, t0: 0, warm: true, workgroups: [1, 2] },
    { length: 652_864, lr: 1e-3, t0: 0, warm: false, workgroups: [7] },
    { length: 652_864, lr: 1e-2, t0: 0, warm: false },
    { length: 652_864, lr: 1e-3, t0: 1000, warm: true, workgroups: [1000] },
    // t·ln β2 crosses −0.5 between t = 499 and 500: the bias correction switches from its
    // series to 1 − exp; and a step count where β2ᵗ underflows.
    { length: 64, lr: 1e-3, t0: 497, warm: true, workgroups: [1] },
    { length: 64, lr: 1e-2, t0: 200_000, warm: true },
  ];

  type AdamResult = Awaited<ReturnType<typeof adamGpu>>;

  /** Everything a layout's result must satisfy against the reference. */
  function checkAgainstReference(
    c: Case,
    inputs: ReturnType<typeof makeInputs>,
    got: AdamResult,
    exact: ReturnType<typeof adamRef>,
    layout: string,
  ) {
    const { rtol, atol } = paramTol(c.lr);
    const p = expectClose(`${layout} params`, got.params, exact.params, rtol, atol);
    record(
      `${layout} params (abs)`,
      p.maxAbs,
      `atol ${UPDATE_REL.toExponential(2)}·${STEPS}·lr + rtol ${rtol.toExponential(1)}·|p|`,
    );
    // Where a parameter started at 0 its final value is the sum of the 5 updates alone.
    let update = 0;
    for (let i = 7; i < c.length; i += 8)
      update = Math.max(update, Math.abs(got.params[i]! - exact.params[i]!) / (STEPS * c.lr));
    record(
      `${layout} update error, relative to ${STEPS}·lr (params from 0)`,
      update,
      `atol ${UPDATE_REL.toExponential(2)}`,
    );

    expectClose(`${layout} m`, got.m, exact.m, MOMENT_RTOL, 0);
    expectClose(`${layout} v`, got.v, exact.v, MOMENT_RTOL, FLT_MIN);
    record(`${layout} m (rel)`, maxRel(got.m, exact.m), `rtol ${MOMENT_RTOL.toExponential(2)}`);
    record(`${layout} v (rel, |v| ≥ FLT_MIN)`, maxRel(got.v, exact.v), `rtol ${MOMENT_RTOL.toExponential(2)}`);

    // The special gradients, from zero moments: 0 leaves everything alone; ±1e20 moves its parameter by ≈ lr per step.
    if (c.length >= 8 && c.t0 === 0 && !c.warm) {
      expect(got.params[0]).toBe(inputs.params[0]);
      expect(got.m[0]).toBe(0);
      expect(got.v[0]).toBe(0);
      for (const at of [3, 4]) {
        const moved = (inputs.params[at]! - got.params[at]!) / (STEPS * c.lr);
        expect(
          Math.abs(moved - Math.sign(inputs.grads[at]!)),
          `${layout}: huge grad at ${at} moved the parameter by ${moved}·${STEPS}·lr`,
        ).toBeLessThan(1e-3);
      }
    }
  }

  /** Bit for bit (compared as u32, so −0 ≠ 0 and NaN payloads count); names the first differences. */
  function expectSameBits(name: string, actual: Float32Array, expected: Float32Array) {
    expect(actual.length, `${name}: length`).toBe(expected.length);
    const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
    const e = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
    const differ: number[] = [];
    for (let i = 0; i < e.length; i++) if (a[i] !== e[i]) differ.push(i);
    expect(
      differ.length,
      `${name}: ${differ.length} of ${e.length} differ in bits, first ${differ
        .slice(0, 6)
        .map((i) => `[${i}] ${actual[i]} vs ${expected[i]}`)
        .join(', ')}`,
    ).toBe(0);
  }

  describe.each(CASES)('adam, arena of $length, lr $lr, from t = $t0', (c) => {
    // The inputs, the reference and the default's run are shared by this case's tests (run in order).
    let shared:
      | Promise<{ inputs: ReturnType<typeof makeInputs>; exact: ReturnType<typeof adamRef>; blocked: AdamResult }>
      | undefined;
    const setup = () =>
      (shared ??= (async () => {
        const inputs = makeInputs(c, c.length + c.t0 + Math.round(1 / c.lr));
        const exact = adamRef(c, inputs, { beta1: BETA1, beta2: BETA2, eps: EPS });
        return { inputs, exact, blocked: await adamGpu(c, inputs) };
      })());

    it(`blocked (the default): ${STEPS} steps of [adam, loss_finalize] match ${STEPS} reference steps`, async () => {
      const { inputs, exact, blocked } = await setup();
      checkAgainstReference(c, inputs, blocked, exact, 'blocked');
    });

    const variants: AdamOptions[] = [
      { layout: 'gridStride' },
      ...(c.workgroups ?? []).map((workgroups) => ({ layout: 'gridStride' as const, workgroups })),
    ];
    it.each(variants.map((options) => [describeOptions(options), options] as const))(
      '%s: matches the reference, and blocked bit for bit',
      async (name, options) => {
        const { inputs, exact, blocked } = await setup();
        const got = await adamGpu(c, inputs, options);
        checkAgainstReference(c, inputs, got, exact, 'gridStride');
        for (const k of ['params', 'm', 'v'] as const) expectSameBits(`${name} ${k} vs blocked`, got[k], blocked[k]);
      },
    );
  });

  describe("a clamped span (the learned σ's log_sigma, kept in LOG_SIGMA_RANGE)", () => {
    // 128 floats = 32 vec4s (2 blocked invocations); the span 21…84 starts and ends inside a vec4
    // and crosses the invocations' boundary at float 64. Parameters start across [−7.5, 7.5] and
    // lr 1 moves them by up to 5: some of the span end on each bound, some between, and some
    // outside the span leave the range (they must not be clamped).
    const c: Case = { length: 128, lr: 1, t0: 0, warm: false };
    const clamp: AdamClamp = { offset: 21, length: 64, min: LOG_SIGMA_RANGE[0], max: LOG_SIGMA_RANGE[1] };
    const inputs = makeInputs(c, 31);
    inputs.params.set(
      Float32Array.from(rng(32).uniform(c.length, -7.5, 7.5), (p, i) => (i === 0 ? inputs.params[0]! : p)),
    );
    const exact = adamRefClamped(c, inputs, clamp);

    it.each([
      ['blocked', undefined],
      ['gridStride 1', { layout: 'gridStride', workgroups: 1 } as AdamOptions],
    ] as const)(
      '%s: the span stays in range, matching the reference; the rest is not clamped',
      async (name, options) => {
        const got = await adamGpu(c, inputs, options, clamp);
        checkAgainstReference(c, inputs, got, exact, name);
        const span = got.params.subarray(clamp.offset, clamp.offset + clamp.length);
        const outsideRange = span.findIndex((p) => !(p >= clamp.min && p <= clamp.max));
        expect(outsideRange, `span[${outsideRange}] = ${span[outsideRange]}`).toBe(-1);
        expect(span.filter((p) => p === clamp.min).length, 'span elements on the lower bound').toBeGreaterThan(0);
        expect(span.filter((p) => p === clamp.max).length, 'span elements on the upper bound').toBeGreaterThan(0);
        expect(
          span.filter((p) => p > clamp.min && p < clamp.max).length,
          'span elements between the bounds',
        ).toBeGreaterThan(0);
        const rest = [...got.params.subarray(0, clamp.offset), ...got.params.subarray(clamp.offset + clamp.length)];
        expect(
          rest.filter((p) => Math.abs(p) > clamp.max).length,
          'elements outside the span past the range',
        ).toBeGreaterThan(0);
      },
    );
  });

  it('a training step of a learned-σ model at lr 10 keeps log_sigma in LOG_SIGMA_RANGE, and writes a loadable checkpoint', async () => {
    const sizes: VaeSizes = { D: 13, hidden: [7], L: 3, likelihood: { kind: 'gaussian', sigma: 'learned' } };
    const layout = arenaLayout(sizes);
    const r = rng(5);
    const rows = 6;
    const images = Uint8Array.from({ length: rows * sizes.D }, () => Math.floor(256 * r.next()));
    const out = await gpu.trainSteps({
      sizes,
      batchSize: rows,
      seed: 5,
      lr: 10,
      count: rows,
      steps: 3,
      sameBatch: true,
      images: Buffer.from(images).toString('base64'),
      params: Buffer.from(initArena(layout, () => r.next()).buffer).toString('base64'),
    });
    const span = layout.logSigma!;
    const got = (step: number, key: string) => f32(new Uint8Array(Buffer.from(out[step]![key]!, 'base64')));
    for (let step = 0; step < out.length; step++) {
      const logSigma = got(step, 'params').subarray(span.offset, span.offset + span.length);
      const bad = logSigma.findIndex((x) => !(x >= LOG_SIGMA_RANGE[0] && x <= LOG_SIGMA_RANGE[1]));
      expect(bad, `step ${step + 1}: log_sigma[${bad}] = ${logSigma[bad]}`).toBe(-1);
    }
    // lr 10 moves log σ by about 10 a step: the clamp held it on a bound.
    const last = got(out.length - 1, 'params');
    expect(
      last
        .subarray(span.offset, span.offset + span.length)
        .some((x) => x === LOG_SIGMA_RANGE[0] || x === LOG_SIGMA_RANGE[1]),
    ).toBe(true);
    // What the engine trained, it loads.
    const bytes = encodeCheckpoint(layout, {
      params: last,
      m: got(out.length - 1, 'm'),
      v: got(out.length - 1, 'v'),
      step: 3,
      metadata: {},
    });
    expect(decodeCheckpoint(bytes, layout).params).toEqual(last);
  });
});

describe('adam launch sizes', () => {
  const ARENA = 652_864; // the VAE's arena, 163,216 vec4s

  it('the default is the kernel from before the gridStride variant: same WGSL text, same dispatch', () => {
    // SHA-256 of adamWGSL() at 2f140eb. The reference model's figures depend on these bits: change
    // the default kernel only on purpose, and re-pin after checking them.
    const BEFORE = 'd9b1fb078e2f52dbf7df387552719bb22cf5ffcca56f41a22f5d2dd171d254b1';
    const sha = (text: string) => createHash('sha256').update(text).digest('hex');
    expect(sha(adamWGSL()), 'adamWGSL() changed').toBe(BEFORE);
    expect(sha(adamWGSL({ layout: 'blocked' }))).toBe(BEFORE);
    expect(ADAM_DEFAULT).toEqual({ layout: 'blocked' });
    // The dispatch before: linearWorkgroups(ceil(length / 64)).
    for (const length of [4, 60, 68, 1028, 4 * 773, 4 * 16 * 256 * 70_000, ARENA]) {
      expect(adamWorkgroups(ADAM_DEFAULT, length), `length ${length}`).toEqual(
        linearWorkgroups(Math.ceil(length / 64)),
      );
    }
    expect(adamWorkgroups(ADAM_DEFAULT, ARENA)).toEqual([40, 1, 1]);
    expect(sha(adamWGSL({ layout: 'gridStride' })), 'the variant is a different kernel').not.toBe(BEFORE);
  });

  it('gridStride: one row of min(ceil(count4 / 256), 1024) workgroups, or the number given; bad options throw', () => {
    expect(adamWorkgroups({ layout: 'gridStride' }, 4)).toEqual([1, 1, 1]);
    expect(adamWorkgroups({ layout: 'gridStride' }, 4 * 256)).toEqual([1, 1, 1]);
    expect(adamWorkgroups({ layout: 'gridStride' }, 4 * 257)).toEqual([2, 1, 1]);
    expect(adamWorkgroups({ layout: 'gridStride' }, ARENA)).toEqual([638, 1, 1]);
    expect(adamWorkgroups({ layout: 'gridStride' }, 4 * 256 * 5000)).toEqual([ADAM_GRID_MAX_WORKGROUPS, 1, 1]);
    expect(adamWorkgroups({ layout: 'gridStride', workgroups: 7 }, ARENA)).toEqual([7, 1, 1]);
    for (const workgroups of [0, -1, 2.5, 65536, NaN]) {
      expect(() => adamWorkgroups({ layout: 'gridStride', workgroups }, ARENA), `workgroups ${workgroups}`).toThrow(
        /workgroups/,
      );
      expect(() => adamWGSL({ layout: 'gridStride', workgroups })).toThrow(/workgroups/);
    }
    expect(() => adamWorkgroups({ layout: 'blocked', workgroups: 8 }, ARENA)).toThrow(/gridStride/);
    expect(() => adamWGSL({ layout: 'strided' as AdamOptions['layout'] })).toThrow(/layout/);
  });

  it(`prints what each layout launches for the real arena (${ARENA.toLocaleString('en')} floats)`, () => {
    const count4 = ARENA / 4;
    const lines = [
      ADAM_DEFAULT,
      { layout: 'gridStride' as const },
      { layout: 'gridStride' as const, workgroups: 7 },
    ].map((o) => {
      const [x, y, z] = adamWorkgroups(o, ARENA);
      const invocations = x * y * z * ELEMENTWISE_WG;
      const perLane = o.layout === 'blocked' ? ADAM_VEC4_PER_INVOCATION : Math.ceil(count4 / invocations);
      const active =
        o.layout === 'blocked' ? Math.ceil(count4 / ADAM_VEC4_PER_INVOCATION) : Math.min(invocations, count4);
      return (
        `  ${describeOptions(o).padEnd(16)} ${x}×${y}×${z} workgroups × ${ELEMENTWISE_WG} = ${invocations.toLocaleString('en')} invocations ` +
        `(${active.toLocaleString('en')} with work, ≤ ${perLane} vec4 each)`
      );
    });
    console.log(
      `adam launches for ${ARENA.toLocaleString('en')} floats = ${count4.toLocaleString('en')} vec4s:\n${lines.join('\n')}`,
    );
    expect(lines).toHaveLength(3);
  });
});
