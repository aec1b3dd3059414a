/**
 * The convolution kernels (shaders/conv.wgsl.ts through src/gpu/conv-ops.ts) against the
 * float64 references (src/reference/conv.ts), forward, dX and dW with db, for Conv2d and
 * ConvTranspose2d, under both plans (the software tiles and the hardware tiles with split K)
 * on every WebGPU implementation. Shapes are awkward on purpose: a batch of 1, 1, 3 and odd
 * channel counts, odd sizes, kernels 1/3/4/5, strides 1 and 2, padding 0–2, output_padding,
 * a stride-2 conv without padding whose last input rows no output reads (their dX is 0), and
 * images so small that some stride phases of the up product (see the shader) hold no pixel.
 * One case per layer kind has the conv preset's real channels and image sizes. Every output
 * buffer is one vec4 longer, filled with a sentinel, so a store past the end shows up.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  conv2dBackward,
  conv2dForward,
  convOutput,
  convTranspose2dBackward,
  convTranspose2dForward,
  type ConvShape,
} from '../src/reference/conv';
import {
  CONV_LANES,
  convInvocations,
  convProductShape,
  convWorkgroups,
  type ConvActivation,
} from '../shaders/conv.wgsl';
import { convGeometry, type ConvLayer } from '../src/gpu/conv-ops';
import { chooseConv } from '../src/gpu/conv-plan';
import { planFor } from '../src/gpu/plan';
import { expectClose, f32, implementations, rng, useHarness, type KernelHarness } from './gpu';
import { tolerance } from './matmul';

interface Case extends ConvShape {
  transpose: boolean;
  /** The activation after this layer (forward epilogue) and before it (dX's mask). */
  act: ConvActivation;
  /** Multiplies the inputs: large magnitudes test the relative tolerance. */
  scale?: number;
}

const CASES: Case[] = [
  { transpose: false, batch: 1, inC: 1, H: 1, W: 1, outC: 1, kernel: 1, stride: 1, padding: 0, act: 'none' },
  { transpose: false, batch: 2, inC: 3, H: 7, W: 5, outC: 5, kernel: 3, stride: 1, padding: 1, act: 'relu' },
  { transpose: false, batch: 3, inC: 3, H: 9, W: 8, outC: 7, kernel: 4, stride: 2, padding: 1, act: 'leakyRelu' },
  { transpose: false, batch: 2, inC: 5, H: 11, W: 9, outC: 3, kernel: 5, stride: 2, padding: 2, act: 'relu' },
  { transpose: false, batch: 1, inC: 1, H: 6, W: 7, outC: 9, kernel: 3, stride: 2, padding: 0, act: 'none' },
  {
    transpose: false,
    batch: 2,
    inC: 3,
    H: 6,
    W: 5,
    outC: 4,
    kernel: 3,
    stride: 1,
    padding: 2,
    act: 'relu',
    scale: 1e4,
  },
  { transpose: true, batch: 2, inC: 5, H: 4, W: 3, outC: 3, kernel: 4, stride: 2, padding: 1, act: 'relu' },
  {
    transpose: true,
    batch: 3,
    inC: 3,
    H: 5,
    W: 4,
    outC: 1,
    kernel: 3,
    stride: 2,
    padding: 1,
    outputPadding: 1,
    act: 'leakyRelu',
  },
  { transpose: true, batch: 1, inC: 1, H: 3, W: 3, outC: 6, kernel: 5, stride: 1, padding: 2, act: 'none' },
  {
    transpose: true,
    batch: 2,
    inC: 2,
    H: 3,
    W: 3,
    outC: 5,
    kernel: 1,
    stride: 2,
    padding: 0,
    outputPadding: 1,
    act: 'leakyRelu',
    scale: 1e3,
  },
  // The conv preset's second conv and last transpose on MNIST, at a small batch.
  { transpose: false, batch: 4, inC: 32, H: 14, W: 14, outC: 64, kernel: 4, stride: 2, padding: 1, act: 'relu' },
  { transpose: true, batch: 4, inC: 32, H: 14, W: 14, outC: 1, kernel: 4, stride: 2, padding: 1, act: 'none' },
  // Stride phases with no pixel: the transpose's 3×1 output has none with (ix + 2) odd, the
  // conv's 1×1 input none with (iy + 1) even.
  {
    transpose: true,
    batch: 1,
    inC: 3,
    H: 2,
    W: 1,
    outC: 2,
    kernel: 4,
    stride: 2,
    padding: 2,
    outputPadding: 1,
    act: 'relu',
  },
  { transpose: false, batch: 3, inC: 3, H: 1, W: 1, outC: 2, kernel: 3, stride: 2, padding: 1, act: 'leakyRelu' },
];

const SLOPE = 0.2;
const SENTINEL = 7.25;

const name = (c: Case) =>
  `${c.transpose ? 'ConvTranspose2d' : 'Conv2d'}(${c.inC}, ${c.outC}, ${c.kernel}, s${c.stride}, p${c.padding}` +
  `${c.outputPadding ? `, op${c.outputPadding}` : ''}) on ${c.batch}×${c.inC}×${c.H}×${c.W}` +
  `${c.act === 'none' ? '' : ` + ${c.act}`}${c.scale ? ` ×${c.scale}` : ''}`;

const layerOf = (c: ConvShape & { transpose: boolean }): ConvLayer => ({
  transpose: c.transpose,
  inC: c.inC,
  outC: c.outC,
  kernel: c.kernel,
  stride: c.stride,
  padding: c.padding,
  outputPadding: c.outputPadding ?? 0,
});

const activate = (act: ConvActivation, v: number) =>
  act === 'relu' ? Math.max(v, 0) : act === 'leakyRelu' && v <= 0 ? v * SLOPE : v;
const slopeOf = (act: ConvActivation, mask: number) =>
  mask > 0 ? 1 : act === 'relu' ? 0 : act === 'leakyRelu' ? SLOPE : 1;

/** Room for `n` floats and one sentinel vec4 after them. */
const withSentinel = (n: number) => new Float32Array(n + 4).fill(SENTINEL);

function expectSentinel(label: string, out: Float32Array, n: number) {
  expect(Array.from(out.subarray(n, n + 4)), `${label}: written past its end`).toEqual([
    SENTINEL,
    SENTINEL,
    SENTINEL,
    SENTINEL,
  ]);
}

/** Inputs for a case: X the previous activation's output (so exact zeros where ReLU cut), dY with zeros too. */
function inputs(c: Case) {
  const r = rng(
    c.batch * 7919 + c.inC * 104729 + c.H * 1009 + c.W * 31 + c.outC * 3 + c.kernel + (c.transpose ? 1 : 0),
  );
  const [Ho, Wo] = convOutput(c, c.transpose);
  const s = c.scale ?? 1;
  const wCount = c.inC * c.outC * c.kernel * c.kernel;
  const X = Float32Array.from(r.uniform(c.batch * c.inC * c.H * c.W, -s, s), (v) => activate(c.act, v));
  const W = r.uniform(wCount, -1, 1);
  const bias = r.uniform(c.outC, -s, s);
  const dY = Float32Array.from(r.uniform(c.batch * c.outC * Ho * Wo, -s, s), (v, i) => (i % 5 === 0 ? 0 : v));
  return { X, W, bias, dY, Ho, Wo, wCount };
}

function reference(c: Case, X: Float32Array, W: Float32Array, bias: Float32Array, dY: Float32Array) {
  const Y = (c.transpose ? convTranspose2dForward : conv2dForward)(X, W, bias, c).map((v) => activate(c.act, v));
  const g = (c.transpose ? convTranspose2dBackward : conv2dBackward)(dY, X, W, c);
  // dX through the activation whose output X is.
  const dX = g.dX.map((v, i) => v * slopeOf(c.act, X[i]!));
  return { Y, dX, dW: g.dW, db: g.db };
}

/** Runs a case's three passes under `plan` and returns Y, dX, dW, db as read back. */
async function runCase(
  gpu: KernelHarness,
  c: Case,
  plan: 'software' | 'hardware',
  data: Omit<ReturnType<typeof inputs>, never>,
  slope = SLOPE,
) {
  const { X, W, bias, dY, Ho, Wo, wCount } = data;
  const yCount = c.batch * c.outC * Ho * Wo;
  const layer = layerOf(c);
  const input = { batch: c.batch, H: c.H, W: c.W };
  const epilogue = { activation: c.act, slope };
  const out = await gpu.run({
    buffers: {
      X,
      W,
      bias,
      dY,
      Y: withSentinel(yCount),
      dX: withSentinel(X.length),
      dW: withSentinel(wCount),
      db: withSentinel(c.outC),
    },
    ops: [
      { op: 'conv', layer, input, pass: 'forward', buffers: { X: 'X', W: 'W', Y: 'Y', bias: 'bias' }, epilogue, plan },
      {
        op: 'conv',
        layer,
        input,
        pass: 'dX',
        buffers: { dY: 'dY', W: 'W', dX: 'dX', ...(c.act === 'none' ? {} : { mask: 'X' }) },
        epilogue: { mask: c.act, slope },
        plan,
      },
      { op: 'conv', layer, input, pass: 'dW', buffers: { dY: 'dY', X: 'X', dW: 'dW', db: 'db' }, plan },
    ],
    read: ['Y', 'dX', 'dW', 'db'],
  });
  const read = (k: string, n: number) => {
    const all = f32(out[k]!);
    expectSentinel(k, all, n);
    return all.subarray(0, n);
  };
  return { Y: read('Y', yCount), dX: read('dX', X.length), dW: read('dW', wCount), db: read('db', c.outC) };
}

/**
 * Tolerances as the matmuls' (test/matmul.ts): each output is a float32 dot product over its
 * K terms, error ~ √K·ε·|partial sums|; the absolute part scales with the product of the two
 * operands' magnitudes (the weights are within ±1, the images and gradients within ±scale,
 * dW and db multiply two of those). K per pass: forward, every tap of every input channel;
 * dX, every tap of every output channel; dW and db, every pixel of the batch on the summed side.
 */
function tolerances(c: Case) {
  const [Ho, Wo] = convOutput(c, c.transpose);
  const s = c.scale ?? 1;
  const taps = c.kernel * c.kernel;
  const scaled = (K: number, magnitude: number) => {
    const t = tolerance(K);
    return { rtol: t.rtol, atol: t.atol * magnitude };
  };
  const pixels = c.batch * (c.transpose ? Math.max(c.H * c.W, Ho * Wo) : Ho * Wo);
  return {
    Y: scaled(c.inC * taps, s),
    dX: scaled(c.outC * taps, s),
    dW: scaled(pixels, s * s),
    db: scaled(pixels, s),
  };
}

const errors = new Map<string, number>();
afterAll(() =>
  console.log(`conv max abs error / atol:\n${[...errors].map(([k, v]) => `  ${k}: ${v.toFixed(3)}`).join('\n')}`),
);

describe.each(implementations)('$name', (implementation) => {
  const gpu = useHarness(implementation);

  describe.each(['software', 'hardware'] as const)('%s plan', (plan) => {
    // Each case compiles its own pipelines, most of the file's time on a software adapter: the
    // hardware plan, whose kernels differ only in their tiles, runs every other awkward case and both presets.
    const cases = plan === 'software' ? CASES : CASES.filter((c, i) => i % 2 === 1 || c.batch === 4);
    it.each(cases.map((c) => [name(c), c] as const))('%s', async (_, c) => {
      const data = inputs(c);
      const got = await runCase(gpu, c, plan, data);
      const ref = reference(c, data.X, data.W, data.bias, data.dY);
      const tol = tolerances(c);
      for (const k of ['Y', 'dX', 'dW', 'db'] as const) {
        const e = expectClose(`${name(c)} ${k}`, got[k], ref[k], tol[k].rtol, tol[k].atol);
        const key = `${plan} ${c.transpose ? 'ConvTranspose2d' : 'Conv2d'} ${k}`;
        errors.set(key, Math.max(errors.get(key) ?? 0, e.maxAbs / tol[k].atol));
      }
    });
  });
});

/** PyTorch's numbers for one layer between two activations (scripts/conv_fixtures.py). */
interface Fixture {
  layer: ConvLayer;
  input: { batch: number; H: number; W: number };
  output: [number, number];
  activation: ConvActivation;
  slope: number;
  X0: number[];
  X: number[];
  weight: number[];
  bias: number[];
  dY: number[];
  Y: number[];
  dX0: number[];
  dW: number[];
  db: number[];
}

const FIXTURES = join(__dirname, 'fixtures', 'conv');
const fixtures = readdirSync(FIXTURES)
  .filter((f) => f.endsWith('.json'))
  .map((f) => [f, JSON.parse(readFileSync(join(FIXTURES, f), 'utf8')) as Fixture] as const);

/** The fixture as a test case of this file (its own slope kept apart: the kernels get it through the uniform). */
function fixtureCase(fx: Fixture): Case {
  const { layer, input } = fx;
  return { ...layer, ...input, act: fx.activation };
}

describe('PyTorch parity fixtures', () => {
  it('exist for both layer kinds', () => {
    expect(fixtures.some(([, fx]) => fx.layer.transpose)).toBe(true);
    expect(fixtures.some(([, fx]) => !fx.layer.transpose)).toBe(true);
  });

  /**
   * The float64 reference on PyTorch's float32 inputs against PyTorch's float32 outputs: within
   * the matmuls' tolerance for float32 sums of K terms (test/matmul.ts).
   */
  it.each(fixtures)('%s: the float64 reference matches PyTorch', (_, fx) => {
    const c = fixtureCase(fx);
    const act = (v: number) =>
      fx.activation === 'relu' ? Math.max(v, 0) : fx.activation === 'leakyRelu' && v <= 0 ? v * fx.slope : v;
    const forward = c.transpose ? convTranspose2dForward : conv2dForward;
    const backward = c.transpose ? convTranspose2dBackward : conv2dBackward;
    const tol = tolerances(c);
    expectClose('Y', forward(fx.X, fx.weight, fx.bias, c).map(act), fx.Y, tol.Y.rtol, tol.Y.atol);
    const g = backward(fx.dY, fx.X, fx.weight, c);
    const through = (v: number, i: number) =>
      v * (fx.X0[i]! > 0 ? 1 : fx.activation === 'leakyRelu' ? fx.slope : fx.activation === 'relu' ? 0 : 1);
    expectClose('dX0', g.dX.map(through), fx.dX0, tol.dX.rtol, tol.dX.atol);
    expectClose('dW', g.dW, fx.dW, tol.dW.rtol, tol.dW.atol);
    expectClose('db', g.db, fx.db, tol.db.rtol, tol.db.atol);
  });
});

describe.each(implementations)('$name: PyTorch parity', (implementation) => {
  const gpu = useHarness(implementation);

  /** GPU and PyTorch each carry the float32 error of a K-term sum: twice the matmuls' tolerance. */
  it.each(
    fixtures.flatMap(([f, fx]) =>
      (['software', 'hardware'] as const).map((plan) => [`${f} ${plan}`, fx, plan] as const),
    ),
  )('%s', async (_, fx, plan) => {
    const c = fixtureCase(fx);
    const [Ho, Wo] = fx.output;
    const data = {
      X: Float32Array.from(fx.X),
      W: Float32Array.from(fx.weight),
      bias: Float32Array.from(fx.bias),
      dY: Float32Array.from(fx.dY),
      Ho,
      Wo,
      wCount: fx.weight.length,
    };
    const got = await runCase(gpu, c, plan, data, fx.slope);
    const tol = tolerances(c);
    const expected = { Y: fx.Y, dX: fx.dX0, dW: fx.dW, db: fx.db };
    for (const k of ['Y', 'dX', 'dW', 'db'] as const)
      expectClose(k, got[k], expected[k], 2 * tol[k].rtol, 2 * tol[k].atol);
  });
});

describe('the conv plan', () => {
  const preset: [ConvLayer, number][] = [
    [layerOf({ transpose: false, batch: 128, inC: 1, H: 28, W: 28, outC: 32, kernel: 4, stride: 2, padding: 1 }), 28],
    [layerOf({ transpose: false, batch: 128, inC: 32, H: 14, W: 14, outC: 64, kernel: 4, stride: 2, padding: 1 }), 14],
    [layerOf({ transpose: true, batch: 128, inC: 64, H: 7, W: 7, outC: 32, kernel: 4, stride: 2, padding: 1 }), 7],
    [layerOf({ transpose: true, batch: 128, inC: 32, H: 14, W: 14, outC: 1, kernel: 4, stride: 2, padding: 1 }), 14],
  ];

  it('launches at least 8,192 invocations for every product of the conv preset at batch 128 on hardware', () => {
    for (const [layer, H] of preset) {
      const g = convGeometry(layer, { batch: 128, H, W: H });
      for (const product of ['down', 'up', 'weight'] as const) {
        const tile = chooseConv(planFor(false), product, g);
        expect(convInvocations({ ...tile, product }, g), `${JSON.stringify(layer)} ${product}`).toBeGreaterThanOrEqual(
          8192,
        );
      }
    }
  });

  it('computes no output it drops on software, for every product of the conv preset at batch 128', () => {
    // The thin weight gradients (32×16) are where a fixed 8×4 tile computed 4 columns for each one kept.
    for (const [layer, H] of preset) {
      const g = convGeometry(layer, { batch: 128, H, W: H });
      for (const product of ['down', 'up', 'weight'] as const) {
        const tile = chooseConv(planFor(true), product, g);
        const { rows, cols } = convProductShape(product, g);
        const computed = convInvocations({ ...tile, product }, g) * tile.tileM * tile.tileN;
        expect(computed, `${JSON.stringify(layer)} ${product} ${tile.tileM}×${tile.tileN}`).toBe(rows * cols);
      }
    }
  });

  it('folds column blocks past 65,535 workgroups into z, covering every column', () => {
    // 4096 images of 64×64: 16.8 M columns, 65,536 blocks of 256 at 1×4 in 64 lanes.
    const g = convGeometry(
      layerOf({ transpose: false, batch: 4096, inC: 1, H: 64, W: 64, outC: 1, kernel: 1, stride: 1, padding: 0 }),
      {
        batch: 4096,
        H: 64,
        W: 64,
      },
    );
    const tile = chooseConv(planFor(true), 'down', g);
    const [x, y, z] = convWorkgroups({ ...tile, product: 'down' }, g);
    expect(x).toBeLessThanOrEqual(65535);
    expect(z).toBeGreaterThan(1);
    expect(x * z * (CONV_LANES / tile.wgY) * tile.tileN).toBeGreaterThanOrEqual(4096 * 64 * 64);
    expect(y).toBe(1);
  });
});
