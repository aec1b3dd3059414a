/**
 * The workgroup-memory tiled matmul (shaders/matmul-tiled.wgsl.ts) against the float64
 * reference, with both tile options (64×64 and 32×32): awkward shapes (1×1×1, primes, shapes one
 * either side of a tile edge, K shorter than one tile step), every product of the VAE's training
 * step at batch 128, each epilogue, extreme values, determinism, a grid folded past 65,535
 * workgroups, and (no GPU) the kernel a plan choosing it compiles. Shapes are M×N×K. C is filled
 * with NaN and followed by sentinels before each run, so an output left unwritten fails the
 * comparison and a write past C shows up.
 */
import { afterAll, describe, expect, it } from 'vitest';
import {
  chooseTiledTile,
  TILE_32,
  TILE_64,
  tiledInvocations,
  tiledWGSL,
  tiledWorkgroups,
  type MatmulTile,
  type TiledMatmulOptions,
} from '../shaders/matmul-tiled.wgsl';
import { plannedMatmulKernel } from '../src/gpu/ops';
import type { MatmulChoice } from '../src/gpu/plan';
import { matmul, reparamBackward } from '../src/reference/ops';
import type { OpSpec } from './harness/harness';
import { errorReport, expectClose, f32, harnessPage, rng } from './gpu';
import { rowSums, tolerance } from './matmul';

const gpu = harnessPage();

const TILES: [string, MatmulTile][] = [
  ['64×64', TILE_64],
  ['32×32', TILE_32],
];
const tileName = (t: MatmulTile) => `tile ${t.BM}×${t.BN} (BK ${t.BK})`;
const TRANSPOSES: [transA: boolean, transB: boolean][] = [
  [false, false],
  [false, true],
  [true, false],
  [true, true],
];
const SENTINEL = 7.25;
const PAD = 4; // sentinel floats after each output

const record = errorReport('matmul-tiled');
const launches: string[] = [];
afterAll(() => console.log(`matmul-tiled launches at the VAE's real shapes (batch 128):\n${launches.join('\n')}`));

/** An output buffer of `count` floats, NaN-filled, followed by PAD sentinels. */
const output = (count: number) => Float32Array.from({ length: count + PAD }, (_, i) => (i < count ? NaN : SENTINEL));
const expectSentinels = (name: string, out: Uint8Array, count: number) =>
  expect([...f32(out).subarray(count, count + PAD)], `${name}: written past its end`).toEqual(
    Array(PAD).fill(SENTINEL),
  );

type Epilogue = { bias?: string; mask?: string; rowSum?: string; mulv?: string; eps?: string };
const tiledOp = (
  dims: { M: number; N: number; K: number },
  options: Partial<TiledMatmulOptions> & Pick<TiledMatmulOptions, 'transA' | 'transB'>,
  A: string,
  B: string,
  C: string,
  epilogue: Epilogue = {},
): OpSpec => ({ op: 'matmulTiled', dims, options, A, B, C, ...epilogue });

describe('launch geometry (no GPU)', () => {
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
        const tiles = Math.ceil(M / tile.BM) * Math.ceil(N / tile.BN);
        const [x, y, z] = tiledWorkgroups({ tile }, { M, N, K: 1 });
        expect(Math.max(x, y, z), `${M}×${N}`).toBeLessThanOrEqual(65535);
        expect(x * y * z, `${M}×${N}: covers every tile`).toBeGreaterThanOrEqual(tiles);
        expect(x * y * z - tiles, `${M}×${N}: idle workgroups`).toBeLessThan(x);
      }
    }
  });

  it("the WGSL declares tiledInvocations per workgroup, and tiles past WebGPU's limits are refused", () => {
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
});

describe('under a kernel plan (no GPU)', () => {
  it('a plan choosing the tiled kernel (or split-K, or a register tile) keeps every option of the product, reparamConditioned included', () => {
    // A conditional decoder's dz→dmulv product: (rows, L + C) with only L columns going on.
    const dims = { M: 24, N: 11, K: 48 };
    const epilogues = { bias: false, relu: false, reluMask: false, rowSum: false, reparamBackward: true };
    const choices: MatmulChoice[] = [
      { variant: 'tiled', tileM: 64, tileN: 64 },
      { variant: 'tiled', tileM: 32, tileN: 32 },
      { variant: 'splitK', tileM: 4, tileN: 1 },
      { variant: 'register', tileM: 8, tileN: 4 },
    ];
    for (const choice of choices) {
      const k = plannedMatmulKernel(
        dims,
        { transA: false, transB: false, reparamConditioned: true },
        epilogues,
        choice,
        false,
      );
      expect(k.options.reparamConditioned, choice.variant).toBe(true);
      expect(k.code, `${choice.variant}: the uniform carries L`).toMatch(
        /struct Dims \{ M: u32, N: u32, K: u32, L: u32 \}/,
      );
      expect(k.code, `${choice.variant}: the conditioned store`).toContain('if (n >= dims.L) { return; }');
    }
    const tiled = plannedMatmulKernel(
      dims,
      { transA: false, transB: false, reparamConditioned: true },
      epilogues,
      choices[1],
      false,
    );
    expect(tiled.code).toBe(
      tiledWGSL({ transA: false, transB: false, ...epilogues, reparamConditioned: true, tile: TILE_32 }),
    );
  });
});

/** The product alone, all four transposes in one run, against the reference. */
async function checkProduct(M: number, N: number, K: number, tile: MatmulTile, name: string) {
  const r = rng(M * 7919 + N * 104729 + K);
  const A = r.uniform(M * K);
  const B = r.uniform(K * N);
  const ops = TRANSPOSES.map(([transA, transB], t) =>
    tiledOp({ M, N, K }, { transA, transB, tile }, 'A', 'B', `C${t}`),
  );
  const buffers = Object.fromEntries([['A', A], ['B', B], ...TRANSPOSES.map((_, t) => [`C${t}`, output(M * N)])]);
  const out = await gpu.run({ buffers, ops, read: TRANSPOSES.map((_, t) => `C${t}`) });
  const { rtol, atol } = tolerance(K);
  TRANSPOSES.forEach(([transA, transB], t) => {
    const label = `${name} ${M}×${N}×${K} ${transA ? 'T' : 'N'}${transB ? 'T' : 'N'} ${tileName(tile)}`;
    const e = expectClose(label, f32(out[`C${t}`], M * N), matmul(A, B, M, N, K, { transA, transB }), rtol, atol);
    expectSentinels(label, out[`C${t}`], M * N);
    record(`${name} ${tileName(tile)}`, e.maxAbs, atol);
  });
}

// 63/65, 31/33 straddle the 64 and 32 edges; K = 13, 17 < one tile step; 130 = two tiles + 2.
const AWKWARD: [number, number, number][] = [
  [1, 1, 1],
  [3, 5, 7],
  [45, 65, 33],
  [64, 99, 13],
  [63, 65, 17],
  [65, 63, 31],
  [64, 64, 16],
  [32, 32, 32],
  [33, 31, 65],
  [31, 97, 47],
  [129, 1, 130],
  [1, 130, 3],
];

describe.each(AWKWARD)('awkward %i×%i×%i', (M, N, K) => {
  it.each(TILES)('%s tile, all four transposes', async (_, tile) => {
    await checkProduct(M, N, K, tile, 'awkward');
  });
});

describe.each([
  [45, 65, 33],
  [65, 63, 31],
  [3, 5, 7],
  [1, 1, 1],
])('epilogues on %i×%i×%i', (M, N, K) => {
  const r = rng(M * 31 + N * 17 + K);
  const A = r.uniform(M * K);
  const B = r.uniform(K * N);
  const bias = r.uniform(N, -2, 2);
  // A ReLU output with exact zeros where the mask must cut.
  const mask = Float32Array.from(r.uniform(M * N), (v) => Math.max(v, 0));
  const { rtol, atol } = tolerance(K);

  it.each(TILES)('%s tile: bias, bias + relu, and relu alone (forward)', async (_, tile) => {
    const opts = { transA: false, transB: true, tile };
    const out = await gpu.run({
      buffers: { A, B, bias, C0: output(M * N), C1: output(M * N), C2: output(M * N) },
      ops: [
        tiledOp({ M, N, K }, opts, 'A', 'B', 'C0', { bias: 'bias' }),
        tiledOp({ M, N, K }, { ...opts, relu: true }, 'A', 'B', 'C1', { bias: 'bias' }),
        tiledOp({ M, N, K }, { ...opts, relu: true }, 'A', 'B', 'C2'),
      ],
      read: ['C0', 'C1', 'C2'],
    });
    const C = matmul(A, B, M, N, K, { transA: false, transB: true });
    const withBias = C.map((v, i) => v + bias[i % N]);
    expectClose('C + bias', f32(out.C0, M * N), withBias, rtol, atol);
    expectClose(
      'relu(C + bias)',
      f32(out.C1, M * N),
      withBias.map((v) => Math.max(v, 0)),
      rtol,
      atol,
    );
    expectClose(
      'relu(C)',
      f32(out.C2, M * N),
      C.map((v) => Math.max(v, 0)),
      rtol,
      atol,
    );
    for (const c of ['C0', 'C1', 'C2']) expectSentinels(c, out[c], M * N);
    // Both signs were there to cut.
    expect(withBias.some((v) => v < 0) || M * N === 1).toBe(true);
  });

  it.each(TILES)('%s tile: reluMask (input grad through a ReLU)', async (_, tile) => {
    const out = await gpu.run({
      buffers: { A, B, mask, C: output(M * N) },
      ops: [tiledOp({ M, N, K }, { transA: false, transB: false, tile }, 'A', 'B', 'C', { mask: 'mask' })],
      read: ['C'],
    });
    const ref = matmul(A, B, M, N, K, { transA: false, transB: false }).map((v, i) => (mask[i] > 0 ? v : 0));
    expectClose('C ⊙ (mask > 0)', f32(out.C, M * N), ref, rtol, atol);
    expectSentinels('C', out.C, M * N);
  });

  it.each(TILES)('%s tile: rowSum of op(A), A transposed and not', async (_, tile) => {
    const out = await gpu.run({
      buffers: { A, B, C0: output(M * N), C1: output(M * N), s0: output(M), s1: output(M) },
      ops: [
        tiledOp({ M, N, K }, { transA: true, transB: false, tile }, 'A', 'B', 'C0', { rowSum: 's0' }),
        tiledOp({ M, N, K }, { transA: false, transB: true, tile }, 'A', 'B', 'C1', { rowSum: 's1' }),
      ],
      read: ['C0', 'C1', 's0', 's1'],
    });
    expectClose('C (transA)', f32(out.C0, M * N), matmul(A, B, M, N, K, { transA: true, transB: false }), rtol, atol);
    expectClose('C (transB)', f32(out.C1, M * N), matmul(A, B, M, N, K, { transA: false, transB: true }), rtol, atol);
    expectClose('rowSum (transA)', f32(out.s0, M), rowSums(A, M, K, true), rtol, atol);
    expectClose('rowSum', f32(out.s1, M), rowSums(A, M, K, false), rtol, atol);
    for (const [b, n] of [
      ['C0', M * N],
      ['C1', M * N],
      ['s0', M],
      ['s1', M],
    ] as const)
      expectSentinels(b, out[b], n);
  });

  it.each(TILES)('%s tile: reparamBackward (dmulv += [dz, dz·ε·½·exp(½·logvar)])', async (_, tile) => {
    const mulv = r.uniform(M * 2 * N, -3, 3);
    const eps = r.uniform(M * N, -2, 2);
    const dmulvIn = r.uniform(M * 2 * N);
    const dmulv = Float32Array.from({ length: M * 2 * N + PAD }, (_, i) => (i < M * 2 * N ? dmulvIn[i] : SENTINEL));
    const out = await gpu.run({
      buffers: { A, B, dmulv, mulv, eps },
      ops: [
        tiledOp({ M, N, K }, { transA: false, transB: false, tile }, 'A', 'B', 'dmulv', { mulv: 'mulv', eps: 'eps' }),
      ],
      read: ['dmulv'],
    });
    const dz = matmul(A, B, M, N, K, { transA: false, transB: false });
    expectClose('dmulv', f32(out.dmulv, M * 2 * N), reparamBackward(mulv, eps, dz, dmulvIn, M, N), rtol, atol * 10);
    expectSentinels('dmulv', out.dmulv, M * 2 * N);
  });
});

/** Every matmul of a training step of the reference VAE (784-400-20) at batch 128. */
const REAL: {
  name: string;
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
  epilogue: 'bias' | 'bias+relu' | 'mask' | 'rowSum' | 'reparam';
}[] = [
  { name: 'fc1 forward', M: 128, N: 400, K: 784, transA: false, transB: true, epilogue: 'bias+relu' },
  { name: 'fc21‖fc22 forward', M: 128, N: 40, K: 400, transA: false, transB: true, epilogue: 'bias' },
  { name: 'fc3 forward', M: 128, N: 400, K: 20, transA: false, transB: true, epilogue: 'bias+relu' },
  { name: 'fc4 forward', M: 128, N: 784, K: 400, transA: false, transB: true, epilogue: 'bias' },
  { name: 'fc4 dW, db', M: 784, N: 400, K: 128, transA: true, transB: false, epilogue: 'rowSum' },
  { name: 'fc4 dX (dH3)', M: 128, N: 400, K: 784, transA: false, transB: false, epilogue: 'mask' },
  { name: 'fc3 dW, db', M: 400, N: 20, K: 128, transA: true, transB: false, epilogue: 'rowSum' },
  { name: 'fc3 dX→dmulv', M: 128, N: 20, K: 400, transA: false, transB: false, epilogue: 'reparam' },
  { name: 'fc21‖fc22 dW, db', M: 40, N: 400, K: 128, transA: true, transB: false, epilogue: 'rowSum' },
  { name: 'fc21‖fc22 dX (dH1)', M: 128, N: 400, K: 40, transA: false, transB: false, epilogue: 'mask' },
  { name: 'fc1 dW, db', M: 400, N: 784, K: 128, transA: true, transB: false, epilogue: 'rowSum' },
];

describe("the VAE's real shapes", () => {
  it.each(REAL)('$name $M×$N×$K, $epilogue, both tiles', async ({ name, M, N, K, transA, transB, epilogue }) => {
    const r = rng(M * 1000003 + N * 1009 + K);
    const A = r.uniform(M * K);
    const B = r.uniform(K * N);
    const bias = r.uniform(N);
    const mask = Float32Array.from(r.uniform(M * N), (v) => Math.max(v, 0));
    const mulv = r.uniform(M * 2 * N, -3, 3);
    const eps = r.uniform(M * N, -2, 2);
    const dmulvIn = r.uniform(M * 2 * N);
    const cCount = epilogue === 'reparam' ? M * 2 * N : M * N;
    const initialC = () =>
      epilogue === 'reparam'
        ? Float32Array.from({ length: cCount + PAD }, (_, i) => (i < cCount ? dmulvIn[i] : SENTINEL))
        : output(cCount);
    const extra: Epilogue = {
      bias: epilogue.startsWith('bias') ? 'bias' : undefined,
      mask: epilogue === 'mask' ? 'mask' : undefined,
      mulv: epilogue === 'reparam' ? 'mulv' : undefined,
      eps: epilogue === 'reparam' ? 'eps' : undefined,
    };
    const ops = TILES.map(([, tile], t) =>
      tiledOp({ M, N, K }, { transA, transB, tile, relu: epilogue === 'bias+relu' }, 'A', 'B', `C${t}`, {
        ...extra,
        rowSum: epilogue === 'rowSum' ? `s${t}` : undefined,
      }),
    );
    const out = await gpu.run({
      buffers: { A, B, bias, mask, mulv, eps, C0: initialC(), C1: initialC(), s0: output(M), s1: output(M) },
      ops,
      read: ['C0', 'C1', 's0', 's1'],
    });

    const C = matmul(A, B, M, N, K, { transA, transB });
    let ref: Float64Array = C;
    if (epilogue === 'bias') ref = C.map((v, i) => v + bias[i % N]);
    if (epilogue === 'bias+relu') ref = C.map((v, i) => Math.max(v + bias[i % N], 0));
    if (epilogue === 'mask') ref = C.map((v, i) => (mask[i] > 0 ? v : 0));
    if (epilogue === 'reparam') ref = reparamBackward(mulv, eps, C, dmulvIn, M, N);
    const { rtol, atol } = tolerance(K);
    const cAtol = epilogue === 'reparam' ? atol * 10 : atol;
    TILES.forEach(([, tile], t) => {
      const label = `${name} ${M}×${N}×${K} ${tileName(tile)}`;
      const e = expectClose(label, f32(out[`C${t}`], cCount), ref, rtol, cAtol);
      expectSentinels(label, out[`C${t}`], cCount);
      record(label, e.maxAbs, cAtol);
      if (epilogue === 'rowSum') {
        const s = expectClose(`${label} rowSum`, f32(out[`s${t}`], M), rowSums(A, M, K, transA), rtol, atol);
        expectSentinels(`${label} rowSum`, out[`s${t}`], M);
        record(`${label} rowSum`, s.maxAbs, atol);
      }
      // The launch: from the functions matmulTiledOp dispatches with, and the WGSL's own @workgroup_size.
      const [x, y] = tiledWorkgroups({ tile }, { M, N, K });
      const wgsl = tiledWGSL({
        transA,
        transB,
        tile,
        bias: !!extra.bias,
        relu: epilogue === 'bias+relu',
        reluMask: !!extra.mask,
        rowSum: epilogue === 'rowSum',
        reparamBackward: epilogue === 'reparam',
      });
      const perWorkgroup = Number(wgsl.match(/@workgroup_size\((\d+)\)/)![1]);
      expect(perWorkgroup).toBe(tiledInvocations(tile));
      const chosen = chooseTiledTile({ M, N }) === tile ? ' (default)' : '';
      launches.push(
        `  ${`${name} ${M}×${N}×${K}`.padEnd(30)} ${tile.BM}×${tile.BN} tile${chosen.padEnd(10)}: ${x}×${y} workgroups × ${perWorkgroup} = ` +
          `${x * y * perWorkgroup} invocations, ${tile.TM * tile.TN} outputs each (${(((M * N) / (x * y * perWorkgroup * tile.TM * tile.TN)) * 100).toFixed(0)}% of them in C)`,
      );
    });
  });
});

describe('extreme values', () => {
  /**
   * Elements ±(½…1)·2^e with e per element in [−60, 60]: products span 2^±120 (normal float32
   * throughout; K ≤ 65 keeps sums below 2^127), with heavy cancellation. A float32 sum of K
   * products in any order is within K·2^-24·Σ|a·b| of the exact one (plus one rounding of the
   * result), so each output is compared after dividing by its Σ_k |A(m,k)|·|B(k,n)|.
   */
  const wide = (r: ReturnType<typeof rng>, n: number) =>
    Float32Array.from(
      { length: n },
      () => (r.next() < 0.5 ? -1 : 1) * (0.5 + 0.5 * r.next()) * 2 ** Math.round(120 * r.next() - 60),
    );
  const normalize = (v: ArrayLike<number>, by: ArrayLike<number>) => Float64Array.from(v, (x, i) => x / by[i]);
  it.each(
    TILES.flatMap(([name, tile]) =>
      [
        [45, 65, 33],
        [64, 99, 13],
        [31, 33, 65],
      ].map(([M, N, K]) => [name, M, N, K, tile] as const),
    ),
  )('%s tile, %i×%i×%i, magnitudes 2^±60, all four transposes and rowSum', async (_, M, N, K, tile) => {
    const r = rng(M + N + K);
    const A = wide(r, M * K);
    const B = wide(r, K * N);
    const ops = TRANSPOSES.map(([transA, transB], t) =>
      tiledOp({ M, N, K }, { transA, transB, tile }, 'A', 'B', `C${t}`, { rowSum: `s${t}` }),
    );
    const buffers = Object.fromEntries([
      ['A', A],
      ['B', B],
      ...TRANSPOSES.flatMap((_, t) => [
        [`C${t}`, output(M * N)],
        [`s${t}`, output(M)],
      ]),
    ]);
    const out = await gpu.run({ buffers, ops, read: TRANSPOSES.flatMap((_, t) => [`C${t}`, `s${t}`]) });
    const bound = K * 2 ** -23;
    const absA = A.map(Math.abs);
    const absB = B.map(Math.abs);
    TRANSPOSES.forEach(([transA, transB], t) => {
      const S = matmul(absA, absB, M, N, K, { transA, transB });
      const e = expectClose(
        `C / Σ|a·b| ${transA ? 'T' : 'N'}${transB ? 'T' : 'N'}`,
        normalize(f32(out[`C${t}`], M * N), S),
        normalize(matmul(A, B, M, N, K, { transA, transB }), S),
        0,
        bound,
      );
      const sumAbs = rowSums(absA, M, K, transA);
      expectClose(
        'rowSum / Σ|a|',
        normalize(f32(out[`s${t}`], M), sumAbs),
        normalize(rowSums(A, M, K, transA), sumAbs),
        0,
        bound,
      );
      record(`extreme C/Σ|a·b| ${tileName(tile)}`, e.maxAbs, bound);
    });
  });

  /**
   * Out-of-range loads must read 0, not a neighbour: a clamped-but-unmasked load of A at k ≥ K
   * reads the next row's first elements (or A's last element when transposed), and for finite
   * values the other operand's zero hides that. Inf and NaN do not hide: A(20, 0) = NaN,
   * A(M−1, K−1) = +Inf, B(0, 30) = NaN, B(K−1, N−1) = −Inf must stay in their own rows and
   * columns, with K = 33 leaving a partial last tile for both tile depths. (WGSL lets an
   * implementation assume no Inf or NaN; on one that does not propagate them, this test says so.)
   */
  it.each(TILES)(
    '%s tile: Inf and NaN stay in their own rows and columns (out-of-range loads read 0), all four transposes',
    async (_, tile) => {
      const [M, N, K] = [45, 65, 33];
      const r = rng(77);
      const poisonA = [
        [20, 0, NaN],
        [M - 1, K - 1, Infinity],
      ];
      const poisonB = [
        [0, 30, NaN],
        [K - 1, N - 1, -Infinity],
      ];
      const operands = TRANSPOSES.map(([transA, transB]) => {
        const A = r.uniform(M * K);
        const B = r.uniform(K * N);
        for (const [m, k, v] of poisonA) A[transA ? k * M + m : m * K + k] = v;
        for (const [k, n, v] of poisonB) B[transB ? n * K + k : k * N + n] = v;
        return { A, B };
      });
      const ops = TRANSPOSES.map(([transA, transB], t) =>
        tiledOp({ M, N, K }, { transA, transB, tile }, `A${t}`, `B${t}`, `C${t}`),
      );
      const buffers = Object.fromEntries(
        operands.flatMap(({ A, B }, t) => [
          [`A${t}`, A],
          [`B${t}`, B],
          [`C${t}`, output(M * N)],
        ]),
      );
      const out = await gpu.run({ buffers, ops, read: TRANSPOSES.map((_, t) => `C${t}`) });
      const { rtol, atol } = tolerance(K);
      TRANSPOSES.forEach(([transA, transB], t) => {
        const ref = matmul(operands[t].A, operands[t].B, M, N, K, { transA, transB });
        const gpuC = f32(out[`C${t}`], M * N);
        const clean = [...ref.keys()].filter((i) => Number.isFinite(ref[i]));
        expect(clean.length, 'poisoned outputs').toBe(M * N - 2 * (M + N) + 4);
        expectClose(
          `unpoisoned outputs ${transA ? 'T' : 'N'}${transB ? 'T' : 'N'}`,
          clean.map((i) => gpuC[i]),
          clean.map((i) => ref[i]),
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
      });
    },
  );

  it.each(TILES)('%s tile: bias ±1e±30 through the ReLU, and logvar ±20 in the reparam epilogue', async (_, tile) => {
    const [M, N, K] = [45, 65, 33];
    const r = rng(9);
    const A = r.uniform(M * K);
    const B = r.uniform(K * N);
    const bias = Float32Array.from({ length: N }, () => (r.next() < 0.5 ? -1 : 1) * 10 ** (60 * r.next() - 30));
    const mulv = Float32Array.from({ length: M * 2 * N }, (_, i) =>
      i % (2 * N) < N ? r.next() : r.next() < 0.5 ? -20 : 20,
    );
    const eps = r.uniform(M * N, -3, 3);
    const dmulvIn = r.uniform(M * 2 * N);
    const out = await gpu.run({
      buffers: { A, B, bias, mulv, eps, C: output(M * N), dmulv: dmulvIn },
      ops: [
        tiledOp({ M, N, K }, { transA: false, transB: true, relu: true, tile }, 'A', 'B', 'C', { bias: 'bias' }),
        tiledOp({ M, N, K }, { transA: false, transB: false, tile }, 'A', 'B', 'dmulv', { mulv: 'mulv', eps: 'eps' }),
      ],
      read: ['C', 'dmulv'],
    });
    const { rtol, atol } = tolerance(K);
    const C = matmul(A, B, M, N, K, { transA: false, transB: true });
    expectClose(
      'relu(C + bias)',
      f32(out.C, M * N),
      C.map((v, i) => Math.max(v + bias[i % N], 0)),
      rtol,
      atol,
    );
    // dz's error reaches dmulv's logvar half scaled by |ε·½·exp(½·logvar)| (up to 3.3e4): compare each element divided by 1 + that.
    const dz = matmul(A, B, M, N, K, { transA: false, transB: false });
    const scale = Float64Array.from({ length: M * 2 * N }, (_, i) => {
      const [m, j] = [Math.floor(i / (2 * N)), i % (2 * N)];
      return j < N ? 1 : 1 + Math.abs(eps[m * N + j - N] * 0.5 * Math.exp(0.5 * mulv[i]));
    });
    expectClose(
      'dmulv / (1 + |ε·½σ|)',
      normalize(f32(out.dmulv, M * 2 * N), scale),
      normalize(reparamBackward(mulv, eps, dz, dmulvIn, M, N), scale),
      rtol,
      atol * 10,
    );
  });
});

describe('determinism', () => {
  it.each([
    { M: 128, N: 400, K: 784, transA: false, transB: true },
    { M: 784, N: 400, K: 128, transA: true, transB: false },
    { M: 45, N: 65, K: 33, transA: true, transB: true },
  ])(
    '$M×$N×$K: bit-identical across runs, submits and tile options (each K sum in ascending k)',
    async ({ M, N, K, transA, transB }) => {
      const r = rng(M * N + K);
      const A = r.uniform(M * K);
      const B = r.uniform(K * N);
      const ops = (t: number) =>
        TILES.map(([, tile], i) =>
          tiledOp({ M, N, K }, { transA, transB, tile }, 'A', 'B', `C${t}${i}`, { rowSum: `s${t}${i}` }),
        );
      const names = [0, 1].flatMap((t) => [0, 1].flatMap((i) => [`C${t}${i}`, `s${t}${i}`]));
      const buffers = () =>
        Object.fromEntries([['A', A], ['B', B], ...names.map((n) => [n, output(n[0] === 'C' ? M * N : M)])]);
      // The same dispatches twice in a submit, the whole list submitted three times, then a second run.
      const first = await gpu.run({ buffers: buffers(), ops: [...ops(0), ...ops(1)], repeat: 3, read: names });
      const second = await gpu.run({ buffers: buffers(), ops: [...ops(0), ...ops(1)], read: names });
      const { rtol, atol } = tolerance(K);
      expectClose('C', f32(first.C00, M * N), matmul(A, B, M, N, K, { transA, transB }), rtol, atol);
      for (const n of names) {
        const reference = n[0] === 'C' ? 'C00' : 's00';
        expect(
          Buffer.from(first[n]).equals(Buffer.from(first[reference])),
          `${n} differs from ${reference} (same run)`,
        ).toBe(true);
        expect(Buffer.from(second[n]).equals(Buffer.from(first[reference])), `${n} of the second run differs`).toBe(
          true,
        );
      }
    },
  );
});

describe('more than 65,535 tiles', () => {
  it('1×2,097,160×2 with the 32×32 tile: the grid folds into y and every column is computed once', async () => {
    const [M, N, K] = [1, 32 * 65535 + 40, 2];
    const [x, y] = tiledWorkgroups({ tile: TILE_32 }, { M, N, K });
    expect(y, 'the grid should fold').toBeGreaterThan(1);
    expect(x * y).toBeGreaterThan(65535);
    const r = rng(5);
    const A = r.uniform(M * K);
    const B = r.uniform(K * N);
    const bias = r.uniform(N);
    const out = await gpu.run({
      buffers: { A, B, bias, C: output(M * N), s: output(M) },
      ops: [
        tiledOp({ M, N, K }, { transA: false, transB: false, tile: TILE_32 }, 'A', 'B', 'C', {
          bias: 'bias',
          rowSum: 's',
        }),
      ],
      read: ['C', 's'],
    });
    const { rtol, atol } = tolerance(K);
    expectClose(
      'C',
      f32(out.C, M * N),
      matmul(A, B, M, N, K, { transA: false, transB: false }).map((v, i) => v + bias[i]),
      rtol,
      atol,
    );
    expectClose('rowSum', f32(out.s, M), rowSums(A, M, K, false), rtol, atol);
    expectSentinels('C', out.C, M * N);
  });
});
