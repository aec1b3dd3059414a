/**
 * The three products of a Linear layer on the GPU against the float64 reference, on awkward
 * shapes (1×1, primes, not multiples of any tile) and the VAE's real ones (batch 128 and the
 * last batch of 96; 784, 400, 40, 20). Shapes with every dimension a multiple of 4 take the
 * vec4 path, the others the bounds-checked scalar path; both are covered.
 */
import type { ConsoleMessage } from 'puppeteer';
import { afterAll, describe, expect, it } from 'vitest';
import { QUAD_CHECK_DIMS } from '../src/gpu/quads';
import { linearBackward, linearForward, matmul, reparamBackward } from '../src/reference/ops';
import { expectClose, f32, harnessPage, rng } from './gpu';
import { tolerance } from './matmul';

const gpu = harnessPage();

const SHAPES: [rows: number, inF: number, outF: number][] = [
  [1, 1, 1],
  [3, 5, 7],
  [45, 65, 33],
  [64, 99, 13],
  [8, 8, 4],
  [128, 784, 400],
  [96, 784, 400],
  [128, 400, 40],
  [128, 20, 400],
  [128, 400, 784],
  [96, 400, 784],
  [5, 13, 7],
];

const errors: string[] = [];
afterAll(() => console.log(`matmul max errors:\n${errors.join('\n')}`));

describe.each(SHAPES)('linear %i×%i→%i', (rows, inF, outF) => {
  const r = rng(rows * 1000003 + inF * 1009 + outF);
  const X = r.uniform(rows * inF);
  const W = r.uniform(outF * inF);
  const bias = r.uniform(outF);
  const dY = r.uniform(rows * outF);
  // A ReLU output with exact zeros where the mask must cut.
  const mask = Float32Array.from(r.uniform(rows * inF), (v) => Math.max(v, 0));

  it('forward Y = relu(X·Wᵀ + b)', async () => {
    const out = await gpu.run({
      buffers: { X, W, bias, Y: rows * outF * 4 },
      ops: [
        {
          op: 'matmul',
          dims: { M: rows, N: outF, K: inF },
          options: { transA: false, transB: true, relu: true },
          A: 'X',
          B: 'W',
          C: 'Y',
          bias: 'bias',
        },
      ],
      read: ['Y'],
    });
    const { rtol, atol } = tolerance(inF);
    const e = expectClose('Y', f32(out.Y, rows * outF), linearForward(X, W, bias, rows, inF, outF, true), rtol, atol);
    errors.push(
      `  forward ${rows}×${inF}→${outF}: max abs ${e.maxAbs.toExponential(2)} (atol ${atol.toExponential(1)})`,
    );
  });

  it('forward without bias or ReLU', async () => {
    const out = await gpu.run({
      buffers: { X, W, Y: rows * outF * 4 },
      ops: [
        {
          op: 'matmul',
          dims: { M: rows, N: outF, K: inF },
          options: { transA: false, transB: true },
          A: 'X',
          B: 'W',
          C: 'Y',
        },
      ],
      read: ['Y'],
    });
    const { rtol, atol } = tolerance(inF);
    expectClose(
      'Y',
      f32(out.Y, rows * outF),
      matmul(X, W, rows, outF, inF, { transA: false, transB: true }),
      rtol,
      atol,
    );
  });

  it('input grad dX = (dY·W) ⊙ relu′', async () => {
    const out = await gpu.run({
      buffers: { dY, W, mask, dX: rows * inF * 4 },
      ops: [
        {
          op: 'matmul',
          dims: { M: rows, N: inF, K: outF },
          options: { transA: false, transB: false },
          A: 'dY',
          B: 'W',
          C: 'dX',
          mask: 'mask',
        },
      ],
      read: ['dX'],
    });
    const { rtol, atol } = tolerance(outF);
    const e = expectClose(
      'dX',
      f32(out.dX, rows * inF),
      linearBackward(dY, X, W, rows, inF, outF, mask).dX,
      rtol,
      atol,
    );
    errors.push(`  dX ${rows}×${inF}→${outF}: max abs ${e.maxAbs.toExponential(2)} (atol ${atol.toExponential(1)})`);
  });

  it('weight grad dW = dYᵀ·X with db = Σ_rows dY', async () => {
    const out = await gpu.run({
      buffers: { dY, X, dW: outF * inF * 4, db: outF * 4 },
      ops: [
        {
          op: 'matmul',
          dims: { M: outF, N: inF, K: rows },
          options: { transA: true, transB: false },
          A: 'dY',
          B: 'X',
          C: 'dW',
          rowSum: 'db',
        },
      ],
      read: ['dW', 'db'],
    });
    const ref = linearBackward(dY, X, W, rows, inF, outF);
    const { rtol, atol } = tolerance(rows);
    const e = expectClose('dW', f32(out.dW, outF * inF), ref.dW, rtol, atol);
    expectClose('db', f32(out.db, outF), ref.db, rtol, atol);
    errors.push(`  dW ${rows}×${inF}→${outF}: max abs ${e.maxAbs.toExponential(2)} (atol ${atol.toExponential(1)})`);
  });
});

describe('tile heights', () => {
  it.each([4, 8])('tileM %i gives the same product on an odd and an aligned shape', async (tileM) => {
    for (const [M, N, K] of [
      [45, 33, 65],
      [128, 400, 784],
    ]) {
      const r = rng(tileM + M);
      const A = r.uniform(M * K);
      const B = r.uniform(K * N);
      const out = await gpu.run({
        buffers: { A, B, C: M * N * 4 },
        ops: [
          { op: 'matmul', dims: { M, N, K }, options: { transA: false, transB: false, tileM }, A: 'A', B: 'B', C: 'C' },
        ],
        read: ['C'],
      });
      const { rtol, atol } = tolerance(K);
      expectClose(
        `C ${M}×${N}×${K}`,
        f32(out.C, M * N),
        matmul(A, B, M, N, K, { transA: false, transB: false }),
        rtol,
        atol,
      );
    }
  });
});

describe('dz epilogue continuing through the reparameterization', () => {
  it.each([
    [128, 400, 20],
    [96, 400, 20],
    [5, 7, 3],
    [1, 1, 1],
  ])('rows %i, H %i, L %i', async (rows, H, L) => {
    const r = rng(rows + H + L);
    const dH3 = r.uniform(rows * H);
    const W3 = r.uniform(H * L);
    const mulv = r.uniform(rows * 2 * L, -3, 3);
    const eps = r.uniform(rows * L, -2, 2);
    const dmulvIn = r.uniform(rows * 2 * L);
    const out = await gpu.run({
      buffers: { dH3, W3, dmulv: dmulvIn, mulv, eps },
      ops: [
        {
          op: 'matmul',
          dims: { M: rows, N: L, K: H },
          options: { transA: false, transB: false },
          A: 'dH3',
          B: 'W3',
          C: 'dmulv',
          mulv: 'mulv',
          eps: 'eps',
        },
      ],
      read: ['dmulv'],
    });
    const dz = matmul(dH3, W3, rows, L, H, { transA: false, transB: false });
    const { rtol, atol } = tolerance(H);
    expectClose(
      'dmulv',
      f32(out.dmulv, rows * 2 * L),
      reparamBackward(mulv, eps, dz, dmulvIn, rows, L),
      rtol,
      atol * 10,
    );
  });
});

describe('the path for adapters without subgroups (no quad sharing of A)', () => {
  it.each([
    [128, 784, 400],
    [96, 400, 784],
    [128, 400, 40],
  ])('%i×%i→%i, all three products', async (rows, inF, outF) => {
    const r = rng(rows * 31 + inF);
    const X = r.uniform(rows * inF);
    const W = r.uniform(outF * inF);
    const dY = r.uniform(rows * outF);
    const out = await gpu.run({
      buffers: { X, W, dY, Y: rows * outF * 4, dX: rows * inF * 4, dW: outF * inF * 4 },
      ops: [
        {
          op: 'matmul',
          dims: { M: rows, N: outF, K: inF },
          options: { transA: false, transB: true, quad: false },
          A: 'X',
          B: 'W',
          C: 'Y',
        },
        {
          op: 'matmul',
          dims: { M: rows, N: inF, K: outF },
          options: { transA: false, transB: false, quad: false },
          A: 'dY',
          B: 'W',
          C: 'dX',
        },
        {
          op: 'matmul',
          dims: { M: outF, N: inF, K: rows },
          options: { transA: true, transB: false, quad: false },
          A: 'dY',
          B: 'X',
          C: 'dW',
        },
      ],
      read: ['Y', 'dX', 'dW'],
    });
    expectClose(
      'Y',
      f32(out.Y, rows * outF),
      matmul(X, W, rows, outF, inF, { transA: false, transB: true }),
      tolerance(inF).rtol,
      tolerance(inF).atol,
    );
    expectClose(
      'dX',
      f32(out.dX, rows * inF),
      matmul(dY, W, rows, inF, outF, { transA: false, transB: false }),
      tolerance(outF).rtol,
      tolerance(outF).atol,
    );
    expectClose(
      'dW',
      f32(out.dW, outF * inF),
      matmul(dY, X, outF, inF, rows, { transA: true, transB: false }),
      tolerance(rows).rtol,
      tolerance(rows).atol,
    );
  });
});

describe('the quad self-check (src/gpu/quads.ts)', () => {
  /** `f`'s result and the browser's console warnings about quads while it ran. */
  async function withQuadWarnings<T>(f: () => Promise<T>): Promise<{ result: T; warnings: string[] }> {
    const warnings: string[] = [];
    const listen = (m: ConsoleMessage) => {
      if (m.type() === 'warn' && m.text().includes('quad')) warnings.push(m.text());
    };
    gpu.page.on('console', listen);
    try {
      return { result: await f(), warnings };
    } finally {
      gpu.page.off('console', listen);
    }
  }

  it('passes with quad lanes from subgroup_invocation_id and fails with 2×2-block quads that mix two rows', async () => {
    const right = await withQuadWarnings(() => gpu.page.evaluate(() => window.harness.quadCheck('subgroup')));
    expect(right).toEqual({ result: true, warnings: [] });
    const wrong = await withQuadWarnings(() => gpu.page.evaluate(() => window.harness.quadCheck('blocks2x2')));
    expect(wrong.result, 'the self-check missed quads spanning two rows').toBe(false);
    expect(wrong.warnings).toHaveLength(1);
    expect(wrong.warnings[0]).toMatch(
      /quad-shared matmul loads gave a different product .* so matmuls use plain loads/,
    );
    // Every output of both products (A transposed and not) was compared, and most were wrong.
    const [, differ, outputs] = wrong.warnings[0].match(/\((\d+) of (\d+) outputs/)!.map(Number);
    expect(outputs).toBe(2 * QUAD_CHECK_DIMS.M * QUAD_CHECK_DIMS.N);
    expect(differ).toBeGreaterThan(outputs / 2);
  });

  // Forward (quad loads of A along k) and weight grad (transA: quad loads of A's rows along m).
  const [rows, inF, outF] = [64, 96, 40];
  const r = rng(4242);
  const X = r.uniform(rows * inF);
  const W = r.uniform(outF * inF);
  const dY = r.uniform(rows * outF);
  const products = (quadLayout: 'blocks2x2', quad?: boolean) => [
    {
      op: 'matmul' as const,
      dims: { M: rows, N: outF, K: inF },
      options: { transA: false, transB: true, quad, quadLayout },
      A: 'X',
      B: 'W',
      C: 'Y',
    },
    {
      op: 'matmul' as const,
      dims: { M: outF, N: inF, K: rows },
      options: { transA: true, transB: false, quad, quadLayout },
      A: 'dY',
      B: 'X',
      C: 'dW',
    },
  ];
  const expectRight = (out: Record<string, Uint8Array>) => {
    expectClose(
      'Y',
      f32(out.Y, rows * outF),
      matmul(X, W, rows, outF, inF, { transA: false, transB: true }),
      tolerance(inF).rtol,
      tolerance(inF).atol,
    );
    expectClose(
      'dW',
      f32(out.dW, outF * inF),
      matmul(dY, X, outF, inF, rows, { transA: true, transB: false }),
      tolerance(rows).rtol,
      tolerance(rows).atol,
    );
  };
  const buffers = { X, W, dY, Y: rows * outF * 4, dW: outF * inF * 4 };

  it('after a failed check matmulOp defaults to the plain path, and says so once', async () => {
    // The wrong layout forced on: its products really are wrong.
    const forced = await gpu.run({ buffers, ops: products('blocks2x2', true), read: ['Y'] });
    const ref = matmul(X, W, rows, outF, inF, { transA: false, transB: true });
    const worst = Math.max(...f32(forced.Y, rows * outF).map((v, i) => Math.abs(v - ref[i])));
    expect(worst, 'blocks2x2 quads should mix rows of A').toBeGreaterThan(0.1);
    // Left to the default, both products run the check (once, for this new Gpu), fail it, and take plain loads.
    const { result, warnings } = await withQuadWarnings(() =>
      gpu.run({ buffers, ops: products('blocks2x2'), freshGpu: {}, read: ['Y', 'dW'] }),
    );
    expectRight(result);
    expect(warnings).toHaveLength(1);
  });

  it('on a hardware adapter quads start off, without running the check', async () => {
    const { result, warnings } = await withQuadWarnings(() =>
      gpu.run({ buffers, ops: products('blocks2x2'), freshGpu: { software: false }, read: ['Y', 'dW'] }),
    );
    expectRight(result);
    expect(warnings).toEqual([]);
  });
});
