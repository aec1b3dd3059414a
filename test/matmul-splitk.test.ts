/**
 * The split-K matmul (shaders/matmul-splitk.wgsl.ts) against the float64 reference: awkward
 * shapes (1×1×1, primes, K not a multiple of the slice count, K smaller than it), the VAE's
 * real products with their epilogues, extreme values, every epilogue alone, other sizes from
 * the one option, a grid folded past 65,535 workgroups, and determinism (identical bits).
 * Shapes with M, N and K multiples of 4 take the vec4 path, the others the bounds-checked one.
 * The real-shape tests print the workgroups × invocations each dispatch launches.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { MATMUL_WG_X, MATMUL_WG_Y } from '../shaders/matmul.wgsl';
import {
  SPLITK_SIZES,
  splitKShape,
  splitKWGSL,
  splitKWorkgroups,
  type SplitKOptions,
  type SplitKSizes,
} from '../shaders/matmul-splitk.wgsl';
import { chooseMatmul, planFor } from '../src/gpu/plan';
import { linearBackward, linearForward, matmul, reparamBackward } from '../src/reference/ops';
import { errorReport, expectClose, f32, harnessPage, rng } from './gpu';
import { rowSums, tolerance } from './matmul';

const gpu = harnessPage();

const record = errorReport('matmul split-K');

type Options = Partial<SplitKOptions> & Pick<SplitKOptions, 'transA' | 'transB'>;
interface Product {
  dims: { M: number; N: number; K: number };
  options: Options;
  A: Float32Array;
  B: Float32Array;
  bias?: Float32Array;
  mask?: Float32Array;
  rowSum?: boolean;
  /** The reparamBackward epilogue: C is dmulv (M, 2N), starting as dmulvIn. */
  reparam?: { mulv: Float32Array; eps: Float32Array; dmulvIn: Float32Array };
  /** C's contents before the dispatch (NaN when absent). */
  C0?: Float32Array;
  repeat?: number;
}

/** Runs one split-K product in the browser; C (and rowSum) as float32. */
async function splitK(p: Product): Promise<{ C: Float32Array; rowSum: Float32Array }> {
  const { M, N } = p.dims;
  const Csize = (p.reparam ? 2 : 1) * M * N;
  // C starts as NaN unless given, so an output the kernel forgets to store cannot pass.
  const C = p.reparam?.dmulvIn ?? p.C0 ?? new Float32Array(Csize).fill(NaN);
  const buffers: Record<string, ArrayBufferView | number> = { A: p.A, B: p.B, C };
  if (p.bias) buffers.bias = p.bias;
  if (p.mask) buffers.mask = p.mask;
  if (p.rowSum) buffers.rowSum = M * 4;
  if (p.reparam) Object.assign(buffers, { mulv: p.reparam.mulv, eps: p.reparam.eps });
  const out = await gpu.run({
    buffers,
    ops: [
      {
        op: 'matmulSplitK',
        dims: p.dims,
        options: p.options,
        A: 'A',
        B: 'B',
        C: 'C',
        bias: p.bias && 'bias',
        mask: p.mask && 'mask',
        rowSum: p.rowSum ? 'rowSum' : undefined,
        mulv: p.reparam && 'mulv',
        eps: p.reparam && 'eps',
      },
    ],
    repeat: p.repeat,
    read: p.rowSum ? ['C', 'rowSum'] : ['C'],
  });
  return { C: f32(out.C, Csize), rowSum: p.rowSum ? f32(out.rowSum, M) : new Float32Array(0) };
}

/** Workgroups × invocations of the split-K dispatch, and what the register kernel would launch. */
function launch(
  M: number,
  N: number,
  K: number,
  transA: boolean,
  transB: boolean,
  sizes: SplitKSizes = SPLITK_SIZES,
): string {
  const [x, y, z] = splitKWorkgroups(sizes, { M, N, K });
  const per = splitKShape(sizes).invocations;
  const register = (kind: 'software' | 'hardware') => {
    const { tileM, tileN } = chooseMatmul(planFor(kind === 'software'), { M, N, K, transA, transB }, false);
    return Math.ceil(N / (tileN * MATMUL_WG_X)) * Math.ceil(M / (tileM * MATMUL_WG_Y)) * MATMUL_WG_X * MATMUL_WG_Y;
  };
  return (
    `${x * y * z} workgroups × ${per} = ${(x * y * z * per).toLocaleString('en')} invocations ` +
    `(register kernel without quads: ${register('software').toLocaleString('en')} under the software plan, ${register('hardware').toLocaleString('en')} under the hardware plan)`
  );
}

const launches: string[] = [];
afterAll(() =>
  console.log(
    `matmul split-K launches at the real shapes (sizes ${JSON.stringify(SPLITK_SIZES)}):\n${launches.join('\n')}`,
  ),
);

// [M, N, K]: K < S (= 4), K not a multiple of S (or of 4·S on the vec4 path), primes, 1×1×1.
const AWKWARD: [number, number, number][] = [
  [1, 1, 1],
  [3, 5, 7],
  [45, 65, 33],
  [7, 9, 2],
  [5, 3, 3],
  [13, 17, 6],
  [64, 99, 13],
  [8, 4, 4],
  [12, 8, 20],
  [16, 20, 52],
  [4, 4, 8],
];

describe.each(AWKWARD)('awkward shape %i×%i×%i', (M, N, K) => {
  const r = rng(M * 7919 + N * 104729 + K);
  const { rtol, atol } = tolerance(K);

  it('forward C = relu(A·Bᵀ + bias) (B transposed, as X·Wᵀ)', async () => {
    const X = r.uniform(M * K);
    const W = r.uniform(N * K);
    const bias = r.uniform(N);
    const { C } = await splitK({
      dims: { M, N, K },
      options: { transA: false, transB: true, relu: true },
      A: X,
      B: W,
      bias,
    });
    record(
      `awkward forward ${M}×${N}×${K}`,
      expectClose('C', C, linearForward(X, W, bias, M, K, N, true), rtol, atol).maxAbs,
      atol,
    );
  });

  it('input grad C = (A·B) ⊙ relu′ (reluMask)', async () => {
    const dY = r.uniform(M * K);
    const W = r.uniform(K * N);
    const mask = Float32Array.from(r.uniform(M * N), (v, i) => (i % 3 === 0 ? 0 : Math.max(v, 0))); // a ReLU output: zeros cut
    const { C } = await splitK({ dims: { M, N, K }, options: { transA: false, transB: false }, A: dY, B: W, mask });
    const ref = linearBackward(dY, new Float32Array(M * N), W, M, N, K, mask).dX;
    record(`awkward reluMask ${M}×${N}×${K}`, expectClose('C', C, ref, rtol, atol).maxAbs, atol);
  });

  it('weight grad C = Aᵀ·B with rowSum = Σ_k Aᵀ (A transposed, as dYᵀ·X with db)', async () => {
    const dY = r.uniform(K * M);
    const X = r.uniform(K * N);
    const { C, rowSum } = await splitK({
      dims: { M, N, K },
      options: { transA: true, transB: false },
      A: dY,
      B: X,
      rowSum: true,
    });
    const ref = linearBackward(dY, X, new Float32Array(M * N), K, N, M);
    record(`awkward dW ${M}×${N}×${K}`, expectClose('dW', C, ref.dW, rtol, atol).maxAbs, atol);
    record(`awkward db ${M}×${N}×${K}`, expectClose('db', rowSum, ref.db, rtol, atol).maxAbs, atol);
  });

  it('both transposed, no epilogue', async () => {
    const A = r.uniform(K * M);
    const B = r.uniform(N * K);
    const { C } = await splitK({ dims: { M, N, K }, options: { transA: true, transB: true }, A, B });
    expectClose('C', C, matmul(A, B, M, N, K, { transA: true, transB: true }), rtol, atol);
  });

  it('dz continuing through the reparameterization into dmulv', async () => {
    const A = r.uniform(M * K);
    const B = r.uniform(K * N);
    const reparam = { mulv: r.uniform(M * 2 * N, -3, 3), eps: r.uniform(M * N, -2, 2), dmulvIn: r.uniform(M * 2 * N) };
    const { C } = await splitK({ dims: { M, N, K }, options: { transA: false, transB: false }, A, B, reparam });
    const dz = matmul(A, B, M, N, K, { transA: false, transB: false });
    expectClose('dmulv', C, reparamBackward(reparam.mulv, reparam.eps, dz, reparam.dmulvIn, M, N), rtol, atol * 10);
  });
});

describe('the VAE’s real products', () => {
  it.each([128, 96])('fc21‖fc22 forward [mu ‖ logvar] = H1·W2ᵀ + b2: %i×40×400', async (rows) => {
    const r = rng(rows + 21);
    const [M, N, K] = [rows, 40, 400];
    const H1 = Float32Array.from(r.uniform(M * K), (v) => Math.max(v, 0));
    const W2 = r.uniform(N * K, -0.05, 0.05);
    const b2 = r.uniform(N, -0.05, 0.05);
    const { C } = await splitK({ dims: { M, N, K }, options: { transA: false, transB: true }, A: H1, B: W2, bias: b2 });
    const { rtol, atol } = tolerance(K);
    record(
      `fc21‖fc22 ${M}×${N}×${K}`,
      expectClose('mulv', C, linearForward(H1, W2, b2, M, K, N, false), rtol, atol).maxAbs,
      atol,
    );
    launches.push(`  NT ${M}×${N}×${K} (fc21‖fc22 forward): ${launch(M, N, K, false, true)}`);
  });

  it.each([128, 96])('dz = dH3·W3 into dmulv through the reparameterization: %i×20×400', async (rows) => {
    const r = rng(rows + 3);
    const [M, N, K] = [rows, 20, 400];
    const dH3 = r.uniform(M * K);
    const W3 = r.uniform(K * N);
    const reparam = { mulv: r.uniform(M * 2 * N, -3, 3), eps: r.uniform(M * N, -2, 2), dmulvIn: r.uniform(M * 2 * N) };
    const { C } = await splitK({
      dims: { M, N, K },
      options: { transA: false, transB: false },
      A: dH3,
      B: W3,
      reparam,
    });
    const dz = matmul(dH3, W3, M, N, K, { transA: false, transB: false });
    const { rtol, atol } = tolerance(K);
    const e = expectClose(
      'dmulv',
      C,
      reparamBackward(reparam.mulv, reparam.eps, dz, reparam.dmulvIn, M, N),
      rtol,
      atol * 10,
    );
    record(`dz→dmulv ${M}×${N}×${K}`, e.maxAbs, atol * 10);
    launches.push(`  NN ${M}×${N}×${K} (dz, reparam epilogue): ${launch(M, N, K, false, false)}`);
  });

  it.each([128, 96])('heads’ weight grad dW2 = dMULVᵀ·H1 with db2 (rowSum): 40×400×%i', async (rows) => {
    const r = rng(rows + 2);
    const [M, N, K] = [40, 400, rows];
    const dMULV = r.uniform(K * M);
    const H1 = Float32Array.from(r.uniform(K * N), (v) => Math.max(v, 0));
    const { C, rowSum } = await splitK({
      dims: { M, N, K },
      options: { transA: true, transB: false },
      A: dMULV,
      B: H1,
      rowSum: true,
    });
    const ref = linearBackward(dMULV, H1, new Float32Array(M * N), K, N, M);
    const { rtol, atol } = tolerance(K);
    record(`dW2 ${M}×${N}×${K}`, expectClose('dW2', C, ref.dW, rtol, atol).maxAbs, atol);
    record(`db2 ${M}×${K} rows`, expectClose('db2', rowSum, ref.db, rtol, atol).maxAbs, atol);
    launches.push(`  TN ${M}×${N}×${K} (heads' dW, rowSum): ${launch(M, N, K, true, false)}`);
  });

  it('fc1 forward H1 = relu(X·W1ᵀ + b1): 128×400×784', async () => {
    const r = rng(1);
    const [M, N, K] = [128, 400, 784];
    const X = Float32Array.from(r.uniform(M * K), (v) => Math.max(v, 0)); // pixels in [0, 1]
    const W1 = r.uniform(N * K, -0.036, 0.036);
    const b1 = r.uniform(N, -0.036, 0.036);
    const { C } = await splitK({
      dims: { M, N, K },
      options: { transA: false, transB: true, relu: true },
      A: X,
      B: W1,
      bias: b1,
    });
    const { rtol, atol } = tolerance(K);
    record(
      `fc1 ${M}×${N}×${K}`,
      expectClose('H1', C, linearForward(X, W1, b1, M, K, N, true), rtol, atol).maxAbs,
      atol,
    );
    launches.push(`  NT ${M}×${N}×${K} (fc1 forward, relu): ${launch(M, N, K, false, true)}`);
  });

  it('input grad (dY·W) ⊙ relu′ (reluMask): 128×784×400', async () => {
    const r = rng(4);
    const [M, N, K] = [128, 784, 400];
    const dY = r.uniform(M * K);
    const W = r.uniform(K * N);
    const mask = Float32Array.from(r.uniform(M * N), (v) => Math.max(v, 0));
    const { C } = await splitK({ dims: { M, N, K }, options: { transA: false, transB: false }, A: dY, B: W, mask });
    const { rtol, atol } = tolerance(K);
    const ref = linearBackward(dY, new Float32Array(M * N), W, M, N, K, mask).dX;
    record(`dX ${M}×${N}×${K}`, expectClose('dX', C, ref, rtol, atol).maxAbs, atol);
    launches.push(`  NN ${M}×${N}×${K} (dX, reluMask): ${launch(M, N, K, false, false)}`);
  });
});

describe('each epilogue alone', () => {
  // One odd shape (bounds-checked loads) and one vec4 shape, K not a multiple of 4·S in either.
  describe.each([
    [45, 33, 65],
    [128, 40, 36],
  ])('%i×%i×%i', (M, N, K) => {
    const r = rng(M + N + K);
    const { rtol, atol } = tolerance(K);
    const A = r.uniform(M * K);
    const At = r.uniform(K * M);
    const B = r.uniform(K * N);
    const bias = r.uniform(N);
    const plain = matmul(A, B, M, N, K, { transA: false, transB: false });

    it('none', async () => {
      const { C } = await splitK({ dims: { M, N, K }, options: { transA: false, transB: false }, A, B });
      expectClose('C', C, plain, rtol, atol);
    });
    it('bias', async () => {
      const { C } = await splitK({ dims: { M, N, K }, options: { transA: false, transB: false }, A, B, bias });
      expectClose(
        'C',
        C,
        plain.map((v, i) => v + bias[i % N]!),
        rtol,
        atol,
      );
    });
    it('relu without bias', async () => {
      const { C } = await splitK({ dims: { M, N, K }, options: { transA: false, transB: false, relu: true }, A, B });
      const ref = plain.map((v) => Math.max(v, 0));
      expectClose('C', C, ref, rtol, atol);
      expect(C.filter((v) => v === 0).length, 'relu should cut about half').toBeGreaterThan((M * N) / 4);
    });
    it('reluMask (mask ≤ 0 cuts, including negative mask values)', async () => {
      const mask = r.uniform(M * N);
      const { C } = await splitK({ dims: { M, N, K }, options: { transA: false, transB: false }, A, B, mask });
      expectClose(
        'C',
        C,
        plain.map((v, i) => (mask[i]! > 0 ? v : 0)),
        rtol,
        atol,
      );
    });
    it('rowSum of A not transposed, and of A transposed', async () => {
      const one = await splitK({ dims: { M, N, K }, options: { transA: false, transB: false }, A, B, rowSum: true });
      expectClose('C', one.C, plain, rtol, atol);
      expectClose('rowSum', one.rowSum, rowSums(A, M, K, false), rtol, atol);
      const two = await splitK({ dims: { M, N, K }, options: { transA: true, transB: false }, A: At, B, rowSum: true });
      expectClose('C (transA)', two.C, matmul(At, B, M, N, K, { transA: true, transB: false }), rtol, atol);
      expectClose('rowSum (transA)', two.rowSum, rowSums(At, M, K, true), rtol, atol);
    });
    it('reparamBackward', async () => {
      const reparam = {
        mulv: r.uniform(M * 2 * N, -3, 3),
        eps: r.uniform(M * N, -2, 2),
        dmulvIn: r.uniform(M * 2 * N),
      };
      const { C } = await splitK({ dims: { M, N, K }, options: { transA: false, transB: false }, A, B, reparam });
      expectClose(
        'dmulv',
        C,
        reparamBackward(reparam.mulv, reparam.eps, plain, reparam.dmulvIn, M, N),
        rtol,
        atol * 10,
      );
    });
  });

  it('refuses relu with reluMask, and reparamBackward with another epilogue', () => {
    const o = {
      ...SPLITK_SIZES,
      transA: false,
      transB: false,
      vec4: false,
      bias: false,
      relu: true,
      reluMask: true,
      rowSum: false,
    };
    expect(() => splitKWGSL(o)).toThrow(/exclude each other/);
    expect(() => splitKWGSL({ ...o, relu: false, reluMask: false, bias: true, reparamBackward: true })).toThrow(
      /no other epilogue/,
    );
  });
});

describe('extreme values', () => {
  it.each([
    [45, 33, 65],
    [128, 40, 400],
  ])('magnitudes 1e15 × 1e15 and 1e-15 × 1e-15 (%i×%i×%i), with db', async (M, N, K) => {
    for (const scale of [1e15, 1e-15]) {
      const r = rng(M + K);
      const A = r.uniform(K * M, -scale, scale);
      const B = r.uniform(K * N, -scale, scale);
      const { C, rowSum } = await splitK({
        dims: { M, N, K },
        options: { transA: true, transB: false },
        A,
        B,
        rowSum: true,
      });
      const { rtol, atol } = tolerance(K);
      const e = expectClose(
        `C at ${scale}`,
        C,
        matmul(A, B, M, N, K, { transA: true, transB: false }),
        rtol,
        atol * scale * scale,
      );
      record(`|C| ~ ${scale * scale} ${M}×${N}×${K} (error relative to scale²)`, e.maxAbs / (scale * scale), atol);
      expectClose(`rowSum at ${scale}`, rowSum, rowSums(A, M, K, true), rtol, atol * scale);
    }
  });

  it.each([
    [45, 33, 65],
    [128, 40, 400],
  ])('zeros: A = 0 gives exactly the bias (%i×%i×%i), zero rows give exactly zero', async (M, N, K) => {
    const r = rng(M * N);
    const B = r.uniform(N * K);
    const bias = r.uniform(N);
    const zero = await splitK({
      dims: { M, N, K },
      options: { transA: false, transB: true },
      A: new Float32Array(M * K),
      B,
      bias,
    });
    const wrong = [...zero.C].map((v, i) => [i, v] as const).filter(([i, v]) => v !== bias[i % N]);
    expect(wrong.slice(0, 5), 'C must be exactly the bias').toEqual([]);
    // Every third row of A zero: those rows of C exactly 0; the rest as the reference.
    const A = r.uniform(M * K).map((v, i) => (Math.floor(i / K) % 3 === 0 ? 0 : v));
    const { C } = await splitK({ dims: { M, N, K }, options: { transA: false, transB: true }, A, B });
    for (let m = 0; m < M; m += 3)
      expect(
        [...C.subarray(m * N, (m + 1) * N)].every((v) => v === 0),
        `row ${m}`,
      ).toBe(true);
    expectClose('C', C, matmul(A, B, M, N, K, { transA: false, transB: true }), tolerance(K).rtol, tolerance(K).atol);
  });

  it('reparamBackward at logvar ±20 (σ = e^±10) and large dz', async () => {
    const [M, N, K] = [128, 20, 400];
    const r = rng(20);
    const A = r.uniform(M * K, -10, 10);
    const B = r.uniform(K * N);
    const mulv = Float32Array.from({ length: M * 2 * N }, (_, i) => (i % (2 * N) < N ? 0 : i % 2 ? 20 : -20));
    const reparam = { mulv, eps: r.uniform(M * N, -3, 3), dmulvIn: new Float32Array(M * 2 * N) };
    const { C } = await splitK({ dims: { M, N, K }, options: { transA: false, transB: false }, A, B, reparam });
    const dz = matmul(A, B, M, N, K, { transA: false, transB: false });
    const ref = reparamBackward(mulv, reparam.eps, dz, reparam.dmulvIn, M, N);
    // dz's error (A spans ±10) is carried into the logvar half times ε·½σ ≤ 3·½·e^10.
    const { rtol, atol } = tolerance(K);
    const half = (a: ArrayLike<number>, logvar: boolean) =>
      Float64Array.from({ length: M * N }, (_, i) => a[Math.floor(i / N) * 2 * N + (logvar ? N : 0) + (i % N)]!);
    expectClose('dmulv, mu half', half(C, false), half(ref, false), rtol, atol * 10);
    expectClose('dmulv, logvar half', half(C, true), half(ref, true), rtol, atol * 10 * 1.5 * Math.exp(10));
  });
});

describe('sizes from the one option', () => {
  // S from 1 to 16, outputs per invocation 1 to 16, rows not a multiple of 4, tile outputs that
  // do not divide evenly among the invocations, tile rows more than the invocations.
  const SIZES: SplitKSizes[] = [
    { slices: 8, wgX: 8, wgY: 4, tileM: 2, tileN: 2 },
    { slices: 2, wgX: 8, wgY: 8, tileM: 8, tileN: 2 },
    { slices: 16, wgX: 4, wgY: 4, tileM: 1, tileN: 1 },
    { slices: 1, wgX: 16, wgY: 16, tileM: 4, tileN: 1 },
    { slices: 3, wgX: 5, wgY: 3, tileM: 3, tileN: 3 },
    { slices: 3, wgX: 2, wgY: 1, tileM: 5, tileN: 1 },
    { slices: 1, wgX: 1, wgY: 2, tileM: 8, tileN: 1 },
  ];
  it.each(SIZES)('%o: products and row sums on an odd and a vec4 shape', async (sizes) => {
    for (const [M, N, K] of [
      [45, 65, 33],
      [40, 36, 28],
    ] as const) {
      const r = rng(M + sizes.slices * 17 + sizes.tileM);
      const A = r.uniform(K * M);
      const B = r.uniform(N * K);
      const bias = r.uniform(N);
      const { rtol, atol } = tolerance(K);
      const dW = await splitK({
        dims: { M, N, K },
        options: { transA: true, transB: true, ...sizes },
        A,
        B,
        rowSum: true,
      });
      expectClose(`C ${M}×${N}×${K}`, dW.C, matmul(A, B, M, N, K, { transA: true, transB: true }), rtol, atol);
      expectClose(`rowSum ${M}×${N}×${K}`, dW.rowSum, rowSums(A, M, K, true), rtol, atol);
      const X = r.uniform(M * K);
      const fwd = await splitK({
        dims: { M, N, K },
        options: { transA: false, transB: true, relu: true, ...sizes },
        A: X,
        B,
        bias,
      });
      expectClose(`forward ${M}×${N}×${K}`, fwd.C, linearForward(X, B, bias, M, K, N, true), rtol, atol);
    }
  });

  it('the WGSL takes its workgroup size and workgroup arrays from the sizes', () => {
    for (const sizes of [SPLITK_SIZES, ...SIZES]) {
      const code = splitKWGSL({
        ...sizes,
        transA: true,
        transB: false,
        vec4: false,
        bias: false,
        relu: false,
        reluMask: false,
        rowSum: true,
      });
      const { invocations, tileOutputs, tileRows } = splitKShape(sizes);
      expect(code).toContain(`@workgroup_size(${invocations})`);
      expect(code).toContain(`var<workgroup> partials: array<f32, ${sizes.slices * tileOutputs}>`);
      expect(code).toContain(`var<workgroup> rowPartials: array<f32, ${sizes.slices * tileRows}>`);
    }
  });

  it('refuses sizes WebGPU cannot launch, saying which limit', () => {
    expect(() => splitKWorkgroups({ ...SPLITK_SIZES, slices: 8 }, { M: 1, N: 1, K: 1 })).toThrow(
      /512 invocations exceed WebGPU's 256/,
    );
    expect(() => splitKWorkgroups({ slices: 4, wgX: 8, wgY: 8, tileM: 8, tileN: 4 }, { M: 1, N: 1, K: 1 })).toThrow(
      /workgroup memory/,
    );
    expect(() => splitKWorkgroups({ ...SPLITK_SIZES, tileN: 0 }, { M: 1, N: 1, K: 1 })).toThrow(
      /tileN must be a positive integer/,
    );
  });
});

describe('more output tiles than one grid dimension holds', () => {
  it('the tile grid is folded: every dimension ≤ 65,535 and every tile covered', () => {
    for (const [M, N] of [
      [128, 40],
      [4096, 4096],
      [1, 1 << 24],
      [1 << 24, 1],
    ]) {
      const [x, y, z] = splitKWorkgroups(SPLITK_SIZES, { M, N, K: 1 });
      const { tileRows, tileCols } = splitKShape(SPLITK_SIZES);
      expect(Math.max(x, y, z)).toBeLessThanOrEqual(65535);
      expect(x * y * z).toBeGreaterThanOrEqual(Math.ceil(M / tileRows) * Math.ceil(N / tileCols));
    }
  });

  it('69,000 one-output tiles on the GPU (2 rows of workgroups) give the whole product', async () => {
    const sizes = { slices: 2, wgX: 1, wgY: 1, tileM: 1, tileN: 1 };
    const [M, N, K] = [300, 230, 5];
    expect(splitKWorkgroups(sizes, { M, N, K })[1]).toBeGreaterThan(1);
    const r = rng(65535);
    const A = r.uniform(M * K);
    const B = r.uniform(N * K);
    const bias = r.uniform(N);
    const { C } = await splitK({ dims: { M, N, K }, options: { transA: false, transB: true, ...sizes }, A, B, bias });
    expectClose('C', C, linearForward(A, B, bias, M, K, N, false), tolerance(K).rtol, tolerance(K).atol);
  });
});

describe('determinism: the slices are summed in a fixed order', () => {
  const bits = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);
  const expectSameBits = (name: string, a: Float32Array, b: Float32Array) => {
    const [x, y] = [bits(a), bits(b)];
    const differ = x.reduce<number[]>((at, v, i) => (v !== y[i] ? [...at, i] : at), []);
    expect(
      differ.length,
      `${name}: ${differ.length} of ${x.length} words differ, first at ${differ.slice(0, 4).join(', ')}`,
    ).toBe(0);
  };

  it.each([
    [45, 65, 33],
    [128, 40, 400],
    [40, 400, 128],
  ])(
    '%i×%i×%i: two runs, and three back to back over a C full of NaN, give identical bits (C and rowSum)',
    async (M, N, K) => {
      const r = rng(M * K);
      const A = r.uniform(K * M);
      const B = r.uniform(K * N);
      const bias = r.uniform(N);
      const p: Product = { dims: { M, N, K }, options: { transA: true, transB: false }, A, B, bias, rowSum: true };
      const first = await splitK(p);
      const second = await splitK(p);
      const third = await splitK({ ...p, C0: new Float32Array(M * N).fill(NaN), repeat: 3 });
      expectSameBits('C, second run', first.C, second.C);
      expectSameBits('C, over NaN, 3 runs', first.C, third.C);
      expectSameBits('rowSum, second run', first.rowSum, second.rowSum);
      expectSameBits('rowSum, 3 runs', first.rowSum, third.rowSum);
      // And the bits are a right answer, not just a repeatable one.
      const { rtol, atol } = tolerance(K);
      expectClose(
        'C',
        first.C,
        matmul(A, B, M, N, K, { transA: true, transB: false }).map((v, i) => v + bias[i % N]!),
        rtol,
        atol,
      );
    },
  );

  it('128×20×400 dz into dmulv: two runs give identical bits, and so do the rows computed by other workgroups', async () => {
    const [M, N, K] = [128, 20, 400];
    const r = rng(7);
    const A = r.uniform(M * K);
    const B = r.uniform(K * N);
    const reparam = { mulv: r.uniform(M * 2 * N, -3, 3), eps: r.uniform(M * N, -2, 2), dmulvIn: r.uniform(M * 2 * N) };
    const p: Product = { dims: { M, N, K }, options: { transA: false, transB: false }, A, B, reparam };
    const first = (await splitK(p)).C;
    expectSameBits('dmulv, second run', first, (await splitK(p)).C);
    // Each output depends on its row of A and column of B only, not on which workgroup or
    // invocation computed it: rows moved by 37 (to other tiles and other rows within a tile)
    // give the same bits. An order that changed with the tile or the lane would not.
    const shift = 37;
    const rows = (x: Float32Array, width: number) =>
      Float32Array.from(
        { length: M * width },
        (_, i) => x[((Math.floor(i / width) + shift) % M) * width + (i % width)]!,
      );
    const moved = await splitK({
      ...p,
      A: rows(A, K),
      reparam: { mulv: rows(reparam.mulv, 2 * N), eps: rows(reparam.eps, N), dmulvIn: rows(reparam.dmulvIn, 2 * N) },
    });
    expectSameBits('dmulv, rows moved', rows(first, 2 * N), moved.C);
  });
});
