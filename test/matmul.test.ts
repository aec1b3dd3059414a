/**
 * The three matmul kernels against the float64 reference, on each WebGPU implementation: the
 * register-tiled kernel (shaders/matmul.wgsl.ts), the workgroup-memory tiled one with its 64×64
 * and 32×32 tiles (shaders/matmul-tiled.wgsl.ts) and split-K (shaders/matmul-splitk.wgsl.ts).
 *
 * What they have in common is one suite, `describe.each` over implementations × kernels: every
 * transpose and epilogue on awkward shapes (1×1×1, primes, one either side of a 32 or 64 tile
 * edge, K shorter than a tile step or than split-K's slice count, vec4-aligned shapes), the VAE's
 * real products, extreme values, Inf and NaN, and determinism. C is NaN before each run (or
 * dmulv's prior contents) and followed by sentinels, so an output left unwritten fails the
 * comparison and a write past C shows up. What only one kernel has is in a describe of its own
 * at the end of each implementation's suite; what needs no GPU is at the end of the file.
 *
 * Each shared test compiles one or two pipelines (one product on every shape at once, sharing its
 * WGSL): lavapipe compiles a pipeline with LLVM at its first dispatch, seconds of CPU each for
 * the tiled kernel, so a test holding many variants can outlast its timeout on a loaded machine.
 */
import { describe, expect, it } from 'vitest';
import {
  SPLITK_SIZES,
  splitKShape,
  splitKWGSL,
  splitKWorkgroups,
  type SplitKSizes,
} from '../shaders/matmul-splitk.wgsl';
import {
  chooseTiledTile,
  TILE_32,
  TILE_64,
  tiledInvocations,
  tiledWGSL,
  tiledWorkgroups,
} from '../shaders/matmul-tiled.wgsl';
import { plannedMatmulKernel } from '../src/gpu/ops';
import type { MatmulChoice } from '../src/gpu/plan';
import { matmul, reparamBackward } from '../src/reference/ops';
import type { OpSpec } from './harness/harness';
import { errorReport, expectClose, f32, implementations, rng, useHarness, type KernelRequest } from './gpu';
import { rowSums, tolerance } from './matmul';

type Dims = { M: number; N: number; K: number };
type Options = { transA: boolean; transB: boolean; relu?: boolean };
type Names = {
  A: string;
  B: string;
  C: string;
  bias?: string;
  mask?: string;
  rowSum?: string;
  mulv?: string;
  eps?: string;
};

interface Kernel {
  name: string;
  op: (dims: Dims, options: Options, names: Names) => OpSpec;
}

const KERNELS: Kernel[] = [
  { name: 'register', op: (dims, options, names) => ({ op: 'matmul', dims, options, ...names }) },
  {
    name: 'tiled 64×64',
    op: (dims, options, names) => ({ op: 'matmulTiled', dims, options: { ...options, tile: TILE_64 }, ...names }),
  },
  {
    name: 'tiled 32×32',
    op: (dims, options, names) => ({ op: 'matmulTiled', dims, options: { ...options, tile: TILE_32 }, ...names }),
  },
  { name: 'split-K', op: (dims, options, names) => ({ op: 'matmulSplitK', dims, options, ...names }) },
];

/** What a product does after the K sum: C's epilogue, or the row sums of op(A) beside it. */
type Epilogue = 'none' | 'bias' | 'bias+relu' | 'relu' | 'mask' | 'rowSum' | 'reparam';
const trans = (transA: boolean, transB: boolean) => `${transA ? 'T' : 'N'}${transB ? 'T' : 'N'}`;

/** The products every kernel runs on every awkward shape: all four transposes, each epilogue. */
const PRODUCTS: { transA: boolean; transB: boolean; epilogue: Epilogue }[] = [
  { transA: false, transB: true, epilogue: 'bias+relu' },
  { transA: false, transB: true, epilogue: 'bias' },
  { transA: false, transB: false, epilogue: 'relu' },
  { transA: false, transB: false, epilogue: 'mask' },
  { transA: true, transB: false, epilogue: 'rowSum' },
  { transA: false, transB: true, epilogue: 'rowSum' },
  { transA: true, transB: true, epilogue: 'none' },
  { transA: false, transB: false, epilogue: 'reparam' },
];

// M×N×K. 63/65, 31/33 straddle the 64 and 32 tile edges; 130 = two 64-tiles + 2; K = 2, 3 are
// below split-K's 4 slices, and 6, 13, 17, 20, 52 not multiples of them (or of 4 of them on the
// vec4 path); 8×8×4, 8×4×4, 4×4×8, 12×8×20, 16×20×52, 64×64×16, 32×32×32, 128×40×36 take the vec4 paths.
const AWKWARD: [number, number, number][] = [
  [1, 1, 1],
  [3, 5, 7],
  [5, 13, 7],
  [7, 9, 2],
  [5, 3, 3],
  [13, 17, 6],
  [45, 65, 33],
  [45, 33, 65],
  [64, 99, 13],
  [63, 65, 17],
  [65, 63, 31],
  [33, 31, 65],
  [31, 97, 47],
  [129, 1, 130],
  [1, 130, 3],
  [8, 8, 4],
  [8, 4, 4],
  [4, 4, 8],
  [12, 8, 20],
  [16, 20, 52],
  [64, 64, 16],
  [32, 32, 32],
  [128, 40, 36],
];

interface RealProduct extends Dims {
  name: string;
  transA: boolean;
  transB: boolean;
  epilogue: Epilogue;
  /** Runs on the register kernel (the default) only. */
  registerOnly?: boolean;
}

/**
 * Every matmul of a training step of the reference VAE (784-400-20) at batch 128, and the
 * products whose rows or K are the batch again at the last batch of 96. The largest of those
 * (fc4 and fc1's big products at 96) run on the register kernel only, to spare CI time: each is
 * seconds on a software adapter, and the batch-128 ones already cover those shapes' tiling on
 * every kernel.
 */
const REAL: RealProduct[] = [
  ...[128, 96].flatMap((b): RealProduct[] => {
    const big = b === 96 ? { registerOnly: true } : {};
    return [
      { name: 'fc1 forward', M: b, N: 400, K: 784, transA: false, transB: true, epilogue: 'bias+relu', ...big },
      { name: 'fc21‖fc22 forward', M: b, N: 40, K: 400, transA: false, transB: true, epilogue: 'bias' },
      { name: 'fc4 forward', M: b, N: 784, K: 400, transA: false, transB: true, epilogue: 'bias', ...big },
      { name: 'fc4 dW, db', M: 784, N: 400, K: b, transA: true, transB: false, epilogue: 'rowSum', ...big },
      { name: 'fc4 dX (dH3)', M: b, N: 400, K: 784, transA: false, transB: false, epilogue: 'mask', ...big },
      { name: 'fc3 dX→dmulv', M: b, N: 20, K: 400, transA: false, transB: false, epilogue: 'reparam' },
      { name: 'fc21‖fc22 dW, db', M: 40, N: 400, K: b, transA: true, transB: false, epilogue: 'rowSum' },
      { name: 'fc1 dW, db', M: 400, N: 784, K: b, transA: true, transB: false, epilogue: 'rowSum', ...big },
    ];
  }),
  { name: 'fc3 forward', M: 128, N: 400, K: 20, transA: false, transB: true, epilogue: 'bias+relu' },
  { name: 'fc3 dW, db', M: 400, N: 20, K: 128, transA: true, transB: false, epilogue: 'rowSum' },
  { name: 'fc21‖fc22 dX (dH1)', M: 128, N: 400, K: 40, transA: false, transB: false, epilogue: 'mask' },
];

const SENTINEL = 7.25;
const PAD = 4; // sentinel floats after each output

/** `count` floats of `initial` (NaN when absent), followed by PAD sentinels. */
const output = (count: number, initial?: ArrayLike<number>) =>
  Float32Array.from({ length: count + PAD }, (_, i) => (i < count ? (initial ? initial[i]! : NaN) : SENTINEL));
const expectSentinels = (name: string, out: Uint8Array, count: number) =>
  expect([...f32(out).subarray(count, count + PAD)], `${name}: written past its end`).toEqual(
    Array(PAD).fill(SENTINEL),
  );

/** A product's operands and epilogue inputs: a mask with negative values and exact zeros (a ReLU output's) to cut at. */
function inputs({ M, N, K }: Dims, seed: number) {
  const r = rng(seed);
  return {
    A: r.uniform(M * K),
    B: r.uniform(K * N),
    bias: r.uniform(N),
    mask: Float32Array.from(r.uniform(M * N), (v, i) => (i % 3 === 0 ? 0 : v)),
    mulv: r.uniform(M * 2 * N, -3, 3),
    eps: r.uniform(M * N, -2, 2),
    dmulvIn: r.uniform(M * 2 * N),
  };
}
type Inputs = ReturnType<typeof inputs>;

/** The float64 reference of C (and of the row sums, for the rowSum epilogue). */
function reference(x: Inputs, { M, N, K }: Dims, transA: boolean, transB: boolean, epilogue: Epilogue) {
  const P = matmul(x.A, x.B, M, N, K, { transA, transB });
  const C = {
    none: () => P,
    rowSum: () => P,
    bias: () => P.map((v, i) => v + x.bias[i % N]!),
    'bias+relu': () => P.map((v, i) => Math.max(v + x.bias[i % N]!, 0)),
    relu: () => P.map((v) => Math.max(v, 0)),
    mask: () => P.map((v, i) => (x.mask[i]! > 0 ? v : 0)),
    reparam: () => reparamBackward(x.mulv, x.eps, P, x.dmulvIn, M, N),
  }[epilogue]();
  return { C, rowSum: epilogue === 'rowSum' ? rowSums(x.A, M, K, transA) : undefined };
}

/**
 * One product on `kernel` with its buffers suffixed `s` (several share a run): the op, its
 * buffers, and the check of what it read back, returning its largest error over its tolerance.
 */
function product(kernel: Kernel, x: Inputs, dims: Dims, transA: boolean, transB: boolean, epilogue: Epilogue, s = '') {
  const { M, N } = dims;
  const cCount = epilogue === 'reparam' ? M * 2 * N : M * N;
  const buffers: KernelRequest['buffers'] = {
    [`A${s}`]: x.A,
    [`B${s}`]: x.B,
    [`C${s}`]: output(cCount, epilogue === 'reparam' ? x.dmulvIn : undefined),
  };
  const names: Names = { A: `A${s}`, B: `B${s}`, C: `C${s}` };
  const input = (name: 'bias' | 'mask' | 'mulv' | 'eps') => {
    buffers[`${name}${s}`] = x[name];
    names[name] = `${name}${s}`;
  };
  if (epilogue.startsWith('bias')) input('bias');
  if (epilogue === 'mask') input('mask');
  if (epilogue === 'reparam') {
    input('mulv');
    input('eps');
  }
  if (epilogue === 'rowSum') {
    names.rowSum = `s${s}`;
    buffers[`s${s}`] = output(M);
  }
  const op = kernel.op(dims, { transA, transB, relu: epilogue.endsWith('relu') }, names);
  const read = [`C${s}`, ...(names.rowSum ? [names.rowSum] : [])];
  const check = (
    out: Record<string, Uint8Array>,
    label: string,
    ref = reference(x, dims, transA, transB, epilogue),
  ) => {
    const { rtol, atol } = tolerance(dims.K);
    const cAtol = epilogue === 'reparam' ? atol * 10 : atol;
    const e = expectClose(label, f32(out[`C${s}`]!, cCount), ref.C, rtol, cAtol);
    expectSentinels(label, out[`C${s}`]!, cCount);
    let ratio = e.maxAbs / cAtol;
    if (ref.rowSum) {
      const r = expectClose(`${label} rowSum`, f32(out[`s${s}`]!, M), ref.rowSum, rtol, atol);
      expectSentinels(`${label} rowSum`, out[`s${s}`]!, M);
      ratio = Math.max(ratio, r.maxAbs / atol);
    }
    return ratio;
  };
  return { op, buffers, read, check };
}

type Product = ReturnType<typeof product>;
const runOf = (products: Product[], repeat?: number) => ({
  buffers: Object.assign({}, ...products.map((p) => p.buffers)) as KernelRequest['buffers'],
  ops: products.map((p) => p.op),
  read: products.flatMap((p) => p.read),
  repeat,
});

/** The real products' inputs and references, made once for every kernel and implementation. */
const realCache = new Map<RealProduct, { x: Inputs; ref: ReturnType<typeof reference> }>();
function realCase(p: RealProduct) {
  let c = realCache.get(p);
  if (!c) {
    const x = inputs(p, p.M * 1000003 + p.N * 1009 + p.K);
    c = { x, ref: reference(x, p, p.transA, p.transB, p.epilogue) };
    realCache.set(p, c);
  }
  return c;
}

const TRANSPOSES: [transA: boolean, transB: boolean][] = [
  [false, false],
  [false, true],
  [true, false],
  [true, true],
];

/**
 * Elements ±(½…1)·2^e with e per element in [−60, 60]: products span 2^±120 (normal float32
 * throughout; K ≤ 65 keeps sums below 2^127), with heavy cancellation.
 */
const wide = (r: ReturnType<typeof rng>, n: number) =>
  Float32Array.from(
    { length: n },
    () => (r.next() < 0.5 ? -1 : 1) * (0.5 + 0.5 * r.next()) * 2 ** Math.round(120 * r.next() - 60),
  );
const normalize = (v: ArrayLike<number>, by: ArrayLike<number>) => Float64Array.from(v, (x, i) => x / by[i]!);
const sameBits = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));

describe.each(implementations)('$name', (implementation) => {
  const gpu = useHarness(implementation);
  const record = errorReport(`matmul on ${implementation.name} (error / tolerance)`);

  describe.each(KERNELS)('$name', (kernel) => {
    it.each(PRODUCTS)(
      '$epilogue, transA $transA transB $transB, on every awkward shape',
      async ({ transA, transB, epilogue }) => {
        const products = AWKWARD.map(([M, N, K], i) => {
          const dims = { M, N, K };
          const x = inputs(dims, M * 7919 + N * 104729 + K);
          return { dims, ...product(kernel, x, dims, transA, transB, epilogue, `${i}`) };
        });
        const out = await gpu.run(runOf(products));
        for (const p of products) {
          const label = `${kernel.name} ${trans(transA, transB)} ${epilogue} ${p.dims.M}×${p.dims.N}×${p.dims.K}`;
          record(`${kernel.name} awkward`, p.check(out, label), 1);
        }
      },
    );

    it.each(REAL.filter((p) => !p.registerOnly || kernel.name === 'register'))(
      '$name $M×$N×$K ($epilogue)',
      async (p) => {
        const { x, ref } = realCase(p);
        const one = product(kernel, x, p, p.transA, p.transB, p.epilogue);
        const out = await gpu.run(runOf([one]));
        record(`${kernel.name} real products`, one.check(out, `${kernel.name} ${p.name} ${p.M}×${p.N}×${p.K}`, ref), 1);
      },
    );

    /**
     * A float32 sum of K products in any order is within K·2^-24·Σ|a·b| of the exact one (plus
     * one rounding of the result), so each output is compared after dividing by its
     * Σ_k |A(m,k)|·|B(k,n)|, and each row sum by its Σ_k |A(m,k)|.
     */
    it('magnitudes 2^±60, all four transposes with rowSum', async () => {
      const shapes: Dims[] = [
        { M: 45, N: 65, K: 33 },
        { M: 31, N: 33, K: 65 },
        { M: 8, N: 12, K: 16 },
      ];
      const cases = shapes.flatMap((dims, d) => {
        const r = rng(dims.M + dims.N + dims.K);
        const x = { ...inputs(dims, d), A: wide(r, dims.M * dims.K), B: wide(r, dims.K * dims.N) };
        return TRANSPOSES.map(([transA, transB], t) => ({
          dims,
          x,
          transA,
          transB,
          ...product(kernel, x, dims, transA, transB, 'rowSum', `${d}_${t}`),
        }));
      });
      const out = await gpu.run(runOf(cases));
      for (const c of cases) {
        const { M, N, K } = c.dims;
        const bound = K * 2 ** -23;
        const absA = c.x.A.map(Math.abs);
        const S = matmul(absA, c.x.B.map(Math.abs), M, N, K, c);
        const label = `${kernel.name} ${trans(c.transA, c.transB)} ${M}×${N}×${K}`;
        const e = expectClose(
          `${label}: C / Σ|a·b|`,
          normalize(f32(out[c.read[0]!]!, M * N), S),
          normalize(matmul(c.x.A, c.x.B, M, N, K, c), S),
          0,
          bound,
        );
        const sumAbs = rowSums(absA, M, K, c.transA);
        expectClose(
          `${label}: rowSum / Σ|a|`,
          normalize(f32(out[c.read[1]!]!, M), sumAbs),
          normalize(rowSums(c.x.A, M, K, c.transA), sumAbs),
          0,
          bound,
        );
        expectSentinels(label, out[c.read[0]!]!, M * N);
        record(`${kernel.name} extreme C/Σ|a·b|`, e.maxAbs / bound, 1);
      }
    });

    /**
     * Out-of-range loads must read 0, not a neighbour: a clamped-but-unmasked load of A at k ≥ K
     * reads the next row's first elements (or A's last element when transposed), and for finite
     * values the other operand's zero hides that. Inf and NaN do not hide: A(20, 0) = NaN,
     * A(M−1, K−1) = +Inf, B(0, 30) = NaN, B(K−1, N−1) = −Inf must stay in their own rows and
     * columns, with K = 33 leaving a partial last tile or slice. (WGSL lets an implementation
     * assume no Inf or NaN; on one that does not propagate them, this test says so.)
     */
    it('Inf and NaN stay in their own rows and columns, all four transposes', async () => {
      const dims = { M: 45, N: 65, K: 33 };
      const { M, N, K } = dims;
      const r = rng(77);
      const cases = TRANSPOSES.map(([transA, transB], t) => {
        const x = inputs(dims, t);
        x.A = r.uniform(M * K);
        x.B = r.uniform(K * N);
        for (const [m, k, v] of [
          [20, 0, NaN],
          [M - 1, K - 1, Infinity],
        ])
          x.A[transA ? k * M + m : m * K + k] = v;
        for (const [k, n, v] of [
          [0, 30, NaN],
          [K - 1, N - 1, -Infinity],
        ])
          x.B[transB ? n * K + k : k * N + n] = v;
        return { x, transA, transB, ...product(kernel, x, dims, transA, transB, 'none', `${t}`) };
      });
      const out = await gpu.run(runOf(cases));
      const { rtol, atol } = tolerance(K);
      for (const c of cases) {
        const ref = matmul(c.x.A, c.x.B, M, N, K, c);
        const gpuC = f32(out[c.read[0]!]!, M * N);
        const clean = [...ref.keys()].filter((i) => Number.isFinite(ref[i]));
        expect(clean.length, 'poisoned outputs').toBe(M * N - 2 * (M + N) + 4);
        expectClose(
          `${kernel.name} ${trans(c.transA, c.transB)}: unpoisoned outputs`,
          clean.map((i) => gpuC[i]!),
          clean.map((i) => ref[i]!),
          rtol,
          atol,
        );
        const propagated = [...ref.keys()]
          .filter((i) => !Number.isFinite(ref[i]))
          .every((i) => !Number.isFinite(gpuC[i]));
        expect(
          propagated,
          'this adapter did not propagate Inf/NaN through the product (WGSL allows that), so leaks would be invisible',
        ).toBe(true);
      }
    });

    it('bias ±1e±30 through the ReLU, logvar ±20 in the reparam epilogue, and A = 0 giving exactly the bias', async () => {
      const dims = { M: 45, N: 65, K: 33 };
      const { M, N, K } = dims;
      const r = rng(9);
      const x = inputs(dims, 9);
      x.bias = Float32Array.from({ length: N }, () => (r.next() < 0.5 ? -1 : 1) * 10 ** (60 * r.next() - 30));
      x.mulv = Float32Array.from({ length: M * 2 * N }, (_, i) =>
        i % (2 * N) < N ? r.next() : r.next() < 0.5 ? -20 : 20,
      );
      const zero = { ...x, A: new Float32Array(M * K) };
      const relu = product(kernel, x, dims, false, true, 'bias+relu', 'r');
      const reparam = product(kernel, x, dims, false, false, 'reparam', 'p');
      const biasOnly = product(kernel, zero, dims, false, true, 'bias', 'z');
      const out = await gpu.run(runOf([relu, reparam, biasOnly]));
      relu.check(out, `${kernel.name} relu(C + bias ±1e±30)`);
      // dz's error reaches dmulv's logvar half scaled by |ε·½·exp(½·logvar)| (up to 3.3e4):
      // compare each element divided by 1 + that.
      const scale = Float64Array.from({ length: M * 2 * N }, (_, i) => {
        const [m, j] = [Math.floor(i / (2 * N)), i % (2 * N)];
        return j < N ? 1 : 1 + Math.abs(x.eps[m * N + j - N]! * 0.5 * Math.exp(0.5 * x.mulv[i]!));
      });
      const { rtol, atol } = tolerance(K);
      expectClose(
        `${kernel.name} dmulv / (1 + |ε·½σ|)`,
        normalize(f32(out.Cp!, M * 2 * N), scale),
        normalize(reference(x, dims, false, false, 'reparam').C, scale),
        rtol,
        atol * 10,
      );
      const C = f32(out.Cz!, M * N);
      const wrong = [...C.keys()].filter((i) => C[i] !== x.bias[i % N]);
      expect(wrong.slice(0, 5), 'A = 0: C must be exactly the bias').toEqual([]);
    });

    it.each([
      { M: 128, N: 40, K: 400, transA: false, transB: true },
      { M: 40, N: 400, K: 128, transA: true, transB: false },
      { M: 45, N: 65, K: 33, transA: true, transB: true },
    ])(
      '$M×$N×$K: bit-identical C and rowSum across runs and submits, over C full of NaN',
      async ({ M, N, K, transA, transB }) => {
        const dims = { M, N, K };
        const x = inputs(dims, M * N + K);
        const twice = [0, 1].map((i) => product(kernel, x, dims, transA, transB, 'rowSum', `${i}`));
        // The same dispatch twice in a submit, the pair submitted three times, then a second run.
        const first = await gpu.run(runOf(twice, 3));
        const second = await gpu.run(runOf(twice));
        twice[0]!.check(first, `${kernel.name} ${M}×${N}×${K}`);
        for (const name of ['C', 's']) {
          for (const [label, run, at] of [
            ['same run', first, 1],
            ['second run', second, 0],
            ['second run', second, 1],
          ] as const)
            expect(sameBits(run[`${name}${at}`]!, first[`${name}0`]!), `${name}${at}, ${label}`).toBe(true);
        }
      },
    );
  });

  describe('register kernel only', () => {
    it.each([4, 8])('tileM %i gives the same product on an odd and an aligned shape', async (tileM) => {
      for (const [M, N, K] of [
        [45, 33, 65],
        [128, 400, 784],
      ] as const) {
        const dims = { M, N, K };
        const x = inputs(dims, tileM + M);
        const one = product(
          { name: 'register', op: (d, o, n) => ({ op: 'matmul', dims: d, options: { ...o, tileM }, ...n }) },
          x,
          dims,
          false,
          false,
          'none',
        );
        one.check(await gpu.run(runOf([one])), `tileM ${tileM} ${M}×${N}×${K}`);
      }
    });

    it.each([
      [128, 784, 400],
      [96, 400, 784],
      [128, 400, 40],
    ])(
      'the path for adapters without subgroups (no quad sharing of A): %i×%i→%i, all three products',
      async (rows, inF, outF) => {
        const noQuad: Kernel = {
          name: 'register',
          op: (d, o, n) => ({ op: 'matmul', dims: d, options: { ...o, quad: false }, ...n }),
        };
        const fwd = { M: rows, N: outF, K: inF };
        const dX = { M: rows, N: inF, K: outF };
        const dW = { M: outF, N: inF, K: rows };
        const products = [
          product(noQuad, inputs(fwd, 1), fwd, false, true, 'none', 'f'),
          product(noQuad, inputs(dX, 2), dX, false, false, 'none', 'x'),
          product(noQuad, inputs(dW, 3), dW, true, false, 'none', 'w'),
        ];
        const out = await gpu.run(runOf(products));
        products.forEach((p, i) => p.check(out, `no quads, product ${i}`));
      },
    );
  });

  describe('tiled kernel only', () => {
    it.each([
      { M: 128, N: 400, K: 784, transA: false, transB: true },
      { M: 784, N: 400, K: 128, transA: true, transB: false },
      { M: 45, N: 65, K: 33, transA: true, transB: true },
    ])('$M×$N×$K: both tiles give the same bits (each K sum in ascending k)', async ({ M, N, K, transA, transB }) => {
      const dims = { M, N, K };
      const x = inputs(dims, M + N + K);
      const [a, b] = [KERNELS[1]!, KERNELS[2]!].map((k, i) => product(k, x, dims, transA, transB, 'rowSum', `${i}`));
      const out = await gpu.run(runOf([a!, b!]));
      a!.check(out, `tiled ${M}×${N}×${K}`);
      expect(sameBits(out.C0!, out.C1!), 'C').toBe(true);
      expect(sameBits(out.s0!, out.s1!), 'rowSum').toBe(true);
    });

    it('1×2,097,160×2 with the 32×32 tile: the grid folds into y and every column is computed once', async () => {
      const dims = { M: 1, N: 32 * 65535 + 40, K: 2 };
      const [x, y] = tiledWorkgroups({ tile: TILE_32 }, dims);
      expect(y, 'the grid should fold').toBeGreaterThan(1);
      expect(x * y).toBeGreaterThan(65535);
      const one = product(KERNELS[2]!, inputs(dims, 5), dims, false, false, 'bias');
      one.check(await gpu.run(runOf([one])), 'folded grid');
    });
  });

  describe('split-K only', () => {
    const withSizes = (sizes: SplitKSizes): Kernel => ({
      name: 'split-K',
      op: (dims, options, names) => ({ op: 'matmulSplitK', dims, options: { ...options, ...sizes }, ...names }),
    });

    // S from 1 to 16, outputs per invocation 1 to 16, rows not a multiple of 4, tile outputs that
    // do not divide evenly among the invocations, tile rows more than the invocations.
    it.each([
      { slices: 8, wgX: 8, wgY: 4, tileM: 2, tileN: 2 },
      { slices: 2, wgX: 8, wgY: 8, tileM: 8, tileN: 2 },
      { slices: 16, wgX: 4, wgY: 4, tileM: 1, tileN: 1 },
      { slices: 1, wgX: 16, wgY: 16, tileM: 4, tileN: 1 },
      { slices: 3, wgX: 5, wgY: 3, tileM: 3, tileN: 3 },
      { slices: 3, wgX: 2, wgY: 1, tileM: 5, tileN: 1 },
      { slices: 1, wgX: 1, wgY: 2, tileM: 8, tileN: 1 },
    ])('sizes %o: products and row sums on an odd and a vec4 shape', async (sizes) => {
      const products = (
        [
          [45, 65, 33],
          [40, 36, 28],
        ] as const
      ).flatMap(([M, N, K], i) => {
        const dims = { M, N, K };
        const x = inputs(dims, M + sizes.slices * 17 + sizes.tileM);
        return [
          product(withSizes(sizes), x, dims, true, true, 'rowSum', `${i}t`),
          product(withSizes(sizes), x, dims, false, true, 'bias+relu', `${i}f`),
        ];
      });
      const out = await gpu.run(runOf(products));
      products.forEach((p, i) => p.check(out, `split-K ${JSON.stringify(sizes)} product ${i}`));
    });

    it('69,000 one-output tiles (2 rows of workgroups) give the whole product', async () => {
      const sizes = { slices: 2, wgX: 1, wgY: 1, tileM: 1, tileN: 1 };
      const dims = { M: 300, N: 230, K: 5 };
      expect(splitKWorkgroups(sizes, dims)[1]).toBeGreaterThan(1);
      const one = product(withSizes(sizes), inputs(dims, 65535), dims, false, true, 'bias');
      one.check(await gpu.run(runOf([one])), 'folded grid');
    });

    it('128×20×400 dz into dmulv: rows computed by other workgroups give the same bits', async () => {
      // Each output depends on its row of A and column of B only, not on which workgroup or
      // invocation computed it: rows moved by 37 (to other tiles and other rows within a tile)
      // give the same bits. An order that changed with the tile or the lane would not.
      const dims = { M: 128, N: 20, K: 400 };
      const x = inputs(dims, 7);
      const rows = (v: Float32Array, width: number) =>
        Float32Array.from(
          { length: dims.M * width },
          (_, i) => v[((Math.floor(i / width) + 37) % dims.M) * width + (i % width)]!,
        );
      const moved = {
        ...x,
        A: rows(x.A, dims.K),
        mulv: rows(x.mulv, 2 * dims.N),
        eps: rows(x.eps, dims.N),
        dmulvIn: rows(x.dmulvIn, 2 * dims.N),
      };
      const a = product(KERNELS[3]!, x, dims, false, false, 'reparam', 'a');
      const b = product(KERNELS[3]!, moved, dims, false, false, 'reparam', 'b');
      const out = await gpu.run(runOf([a, b]));
      a.check(out, 'dmulv');
      const count = dims.M * 2 * dims.N;
      expect(
        Buffer.from(rows(f32(out.Ca!, count), 2 * dims.N).buffer).equals(
          Buffer.from(f32(out.Cb!, count).slice().buffer),
        ),
      ).toBe(true);
    });
  });
});

describe('without a GPU', () => {
  it('tiledWorkgroups covers every tile exactly once over, with at most 65,535 workgroups per dimension', () => {
    for (const tile of [TILE_64, TILE_32]) {
      for (const [M, N] of [
        [1, 1],
        [128, 400],
        [784, 400],
        [1, 32 * 65535],
        [1, 32 * 65535 + 1],
        [1, 2 ** 27],
        [65535 * 64, 64 * 3],
        [2 ** 20, 2 ** 12],
      ]) {
        const tiles = Math.ceil(M! / tile.BM) * Math.ceil(N! / tile.BN);
        const [x, y, z] = tiledWorkgroups({ tile }, { M: M!, N: N!, K: 1 });
        expect(Math.max(x, y, z), `${M}×${N}`).toBeLessThanOrEqual(65535);
        expect(x * y * z, `${M}×${N}: covers every tile`).toBeGreaterThanOrEqual(tiles);
        expect(x * y * z - tiles, `${M}×${N}: idle workgroups`).toBeLessThan(x);
      }
    }
    expect(chooseTiledTile({ M: 128, N: 40 })).toBe(TILE_32);
    expect(chooseTiledTile({ M: 784, N: 784 })).toBe(TILE_64);
  });

  it("the tiled WGSL declares tiledInvocations per workgroup, and tiles past WebGPU's limits are refused", () => {
    const base = { transA: false, transB: false, bias: false, relu: false, reluMask: false, rowSum: false };
    for (const tile of [TILE_64, TILE_32]) {
      expect(tiledWGSL({ ...base, tile })).toContain(`@workgroup_size(${tiledInvocations(tile)})`);
    }
    expect(tiledInvocations(TILE_64)).toBe(256);
    expect(tiledInvocations(TILE_32)).toBe(64);
    expect(() => tiledWGSL({ ...base, tile: { BM: 64, BN: 64, BK: 16, TM: 2, TN: 4 } })).toThrow(/512 invocations/);
    expect(() => tiledWGSL({ ...base, tile: { BM: 64, BN: 64, BK: 64, TM: 4, TN: 4 } })).toThrow(
      /bytes of workgroup memory/,
    );
    expect(() => tiledWGSL({ ...base, tile: { BM: 64, BN: 64, BK: 3, TM: 4, TN: 4 } })).toThrow(/split evenly/);
    expect(() => tiledWGSL({ ...base, rowSum: true, tile: { BM: 64, BN: 8, BK: 16, TM: 4, TN: 4 } })).toThrow(/rowSum/);
    expect(() => tiledWGSL({ ...base, tile: { BM: 64, BN: 64, BK: 16, TM: 3, TN: 4 } })).toThrow(/TM \| BM/);
  });

  it('a plan choosing any kernel keeps every option of the product, reparamConditioned included', () => {
    // A conditional decoder's dz→dmulv product: (rows, L + C) with only L columns going on.
    const dims = { M: 24, N: 11, K: 48 };
    const epilogues = { bias: false, relu: false, reluMask: false, rowSum: false, reparamBackward: true };
    const choices: MatmulChoice[] = [
      { variant: 'tiled', tileM: 64, tileN: 64 },
      { variant: 'tiled', tileM: 32, tileN: 32 },
      { variant: 'splitK', tileM: 4, tileN: 1 },
      { variant: 'register', tileM: 8, tileN: 4 },
    ];
    const request = { transA: false, transB: false, reparamConditioned: true };
    for (const choice of choices) {
      const k = plannedMatmulKernel(dims, request, epilogues, choice, false);
      expect(k.options.reparamConditioned, choice.variant).toBe(true);
      expect(k.code, `${choice.variant}: the uniform carries L`).toMatch(
        /struct Dims \{ M: u32, N: u32, K: u32, L: u32 \}/,
      );
      expect(k.code, `${choice.variant}: the conditioned store`).toContain('if (n >= dims.L) { return; }');
    }
    expect(plannedMatmulKernel(dims, request, epilogues, choices[1]!, false).code).toBe(
      tiledWGSL({ transA: false, transB: false, ...epilogues, reparamConditioned: true, tile: TILE_32 }),
    );
  });

  it('split-K refuses relu with reluMask, reparamBackward with another epilogue, and sizes WebGPU cannot launch', () => {
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

  it('split-K takes its workgroup size and arrays from its sizes, and folds its grid past 65,535 tiles', () => {
    for (const sizes of [SPLITK_SIZES, { slices: 3, wgX: 5, wgY: 3, tileM: 3, tileN: 3 }]) {
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
    for (const [M, N] of [
      [128, 40],
      [4096, 4096],
      [1, 1 << 24],
      [1 << 24, 1],
    ]) {
      const [x, y, z] = splitKWorkgroups(SPLITK_SIZES, { M: M!, N: N!, K: 1 });
      const { tileRows, tileCols } = splitKShape(SPLITK_SIZES);
      expect(Math.max(x, y, z)).toBeLessThanOrEqual(65535);
      expect(x * y * z).toBeGreaterThanOrEqual(Math.ceil(M! / tileRows) * Math.ceil(N! / tileCols));
    }
  });
});
