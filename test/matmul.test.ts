/**
 * The three products of a Linear layer on the GPU against the float64 reference, on awkward
 * shapes (1×1, primes, not multiples of any tile) and the VAE's real ones (batch 128 and the
 * last batch of 96; 784, 400, 40, 20). Shapes with every dimension a multiple of 4 take the
 * vec4 path, the others the bounds-checked scalar path; both are covered.
 */
import { afterAll, describe, it } from 'vitest';
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
