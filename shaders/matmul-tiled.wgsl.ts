import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';
import {
  boundedLoadsWGSL,
  checkEpilogues,
  matmulBindings,
  matmulDeclarationsWGSL,
  matmulEpilogueWGSL,
  type MatmulDims,
  type MatmulOptions,
} from './matmul.wgsl';

/**
 * Workgroup-memory tiled matmul: C[M,N] = op(A)·op(B), the classic GPU kernel (tfjs-backend-webgpu's
 * packed matmul, CUTLASS's and every CUDA tutorial's shared-memory GEMM), with the same epilogues,
 * operand layouts and binding order as the register-tiled kernel in matmul.wgsl.ts.
 *
 * A workgroup owns a BM×BN block of C. For each step of BK along K:
 *   1. its WG = (BM/TM)·(BN/TN) invocations copy op(A)'s BM×BK tile and op(B)'s BK×BN tile from
 *      global into workgroup memory, walking each operand in its own storage order — flat index
 *      i = local_invocation_index + l·WG mapped so that consecutive invocations read consecutive
 *      addresses (k fastest for A and for Bᵀ, m fastest for Aᵀ, n fastest for B): coalesced;
 *   2. workgroupBarrier: the tiles are complete;
 *   3. each invocation does BK·TM·TN FMAs from the tiles into a TM×TN micro-tile held in named
 *      scalars (registers), reading TM values of A and TN of B per k — each value it loads from
 *      workgroup memory is used TN (or TM) times, each value the workgroup loads from global
 *      memory is used BN (or BM) times;
 *   4. workgroupBarrier: nobody still reads the tiles when the next step overwrites them.
 * The micro-tile's rows and columns are strided by the workgroup's height and width
 * (rows ty + i·BM/TM, columns tx + j·BN/TN), like the register kernel's columns: neighbouring
 * invocations read neighbouring words of the tiles (no bank conflicts) and store neighbouring
 * columns of C (coalesced stores).
 *
 * Workgroup memory holds both tiles k-major, tileA[k][m] and tileB[k][n], so step 3 reads a row
 * of each. A tile whose global walk runs along k (A not transposed, B transposed) is written
 * with a stride of one row per k, and its rows are padded by one word so those writes fall in
 * different banks.
 *
 * Bounds: every global load is clamped to the array and masked, so rows, columns and k past the
 * matrix read 0 and any shape is correct; store() drops outputs outside C.
 *
 * Determinism: each output is one accumulator that adds its K products in ascending k (tile
 * after tile, k within a tile), so the result is fixed for a given compiled kernel and — as the
 * order does not depend on the tile — the same for every tile option. No atomics.
 *
 * rowSum (the bias gradient: Σ_k op(A)(m,k)) is read from the A tiles already in workgroup
 * memory, costing no extra global traffic: in the workgroups of the first column block,
 * invocation r < BM adds tileA[k][r] over the tile's k after its FMAs, in ascending k. That is
 * BK adds beside BK·TM·TN FMAs (1/16 at 4×4) for a quarter of one workgroup column; the other
 * column blocks hold the same rows of A and skip it.
 *
 * The grid is one-dimensional in tiles, row of tiles by row (consecutive workgroups share an A
 * panel), and folded into y past 65,535 workgroups: workgroup (x, y) takes tile
 * x + y·num_workgroups.x, and the workgroups past the last tile return before any barrier
 * (a whole workgroup at once, so the barriers stay in uniform control flow).
 */
export interface MatmulTile {
  /** Rows of C per workgroup. */
  BM: number;
  /** Columns of C per workgroup. */
  BN: number;
  /** K per step: the depth of the tiles staged in workgroup memory. */
  BK: number;
  /** Rows of C per invocation (strided by BM/TM). */
  TM: number;
  /** Columns of C per invocation (strided by BN/TN). */
  TN: number;
}

/** 64×64 outputs per workgroup of 16×16 invocations, 4×4 each: the GPU default for large outputs. */
export const TILE_64: MatmulTile = { BM: 64, BN: 64, BK: 16, TM: 4, TN: 4 };
/** 32×32 outputs per workgroup of 8×8 invocations, 4×4 each (tfjs's packed 32×32 tile): small outputs. */
export const TILE_32: MatmulTile = { BM: 32, BN: 32, BK: 32, TM: 4, TN: 4 };

/** Every epilogue of the register kernel, reparamConditioned included (the shared store() reads them all). */
export type TiledMatmulOptions = Pick<
  MatmulOptions,
  'transA' | 'transB' | 'bias' | 'relu' | 'reluMask' | 'slope' | 'rowSum' | 'reparamBackward' | 'reparamConditioned'
> & {
  tile: MatmulTile;
};

/** WebGPU's guaranteed limits, which the engine does not raise for this kernel. */
const MAX_INVOCATIONS = 256;
const MAX_WORKGROUP_BYTES = 16384;
const MAX_WORKGROUPS_PER_DIM = 65535;

/**
 * Below this many 64×64 workgroups the 32×32 tile is chosen: a GPU has tens of compute units,
 * each wanting several workgroups resident to hide memory latency, and a few big tiles leave
 * most of them idle (the smaller tile re-reads each operand twice as often, which matters less).
 */
export const TILE_64_MIN_WORKGROUPS = 64;

/** The default tile for an output of M×N. */
export function chooseTiledTile(d: Pick<MatmulDims, 'M' | 'N'>): MatmulTile {
  return tileCount(TILE_64, d) >= TILE_64_MIN_WORKGROUPS ? TILE_64 : TILE_32;
}

/** Invocations per workgroup. */
export function tiledInvocations(t: MatmulTile): number {
  return (t.BM / t.TM) * (t.BN / t.TN);
}

const tileCount = (t: MatmulTile, d: Pick<MatmulDims, 'M' | 'N'>) => Math.ceil(d.M / t.BM) * Math.ceil(d.N / t.BN);

/** One workgroup per BM×BN tile of C, in x, folded into y when x would pass 65,535. */
export function tiledWorkgroups(o: Pick<TiledMatmulOptions, 'tile'>, d: MatmulDims): [number, number, number] {
  if (!(d.M >= 1 && d.N >= 1 && d.K >= 1))
    throw new Error(`matmul-tiled: dimensions must be ≥ 1, got ${d.M}×${d.N}×${d.K}`);
  const tiles = tileCount(o.tile, d);
  if (tiles <= MAX_WORKGROUPS_PER_DIM) return [tiles, 1, 1];
  const y = Math.ceil(tiles / MAX_WORKGROUPS_PER_DIM);
  if (y > MAX_WORKGROUPS_PER_DIM) throw new Error(`matmul-tiled: ${tiles} tiles exceed one dispatch`);
  return [Math.ceil(tiles / y), y, 1];
}

/** The register-tiled kernel's binding order: 0 dims, 1 A, 2 B, 3 C, then bias, mask, rowSum, (mulv, eps). */
export function tiledBindings(o: TiledMatmulOptions): ('uniform' | 'read' | 'storage')[] {
  // matmulBindings reads only the epilogue flags; the register kernel's tile fields are filler.
  return matmulBindings({ ...o, vec4: false, tileM: 4, tileN: 1 });
}

function checkTile(o: TiledMatmulOptions, strideA: number, strideB: number) {
  const { BM, BN, BK, TM, TN } = o.tile;
  const name = `matmul-tiled: tile ${BM}×${BN}×${BK} with ${TM}×${TN} per invocation`;
  const positive = [BM, BN, BK, TM, TN].every((v) => Number.isInteger(v) && v >= 1);
  if (!positive || BM % TM !== 0 || BN % TN !== 0)
    throw new Error(`${name}: sizes must be positive integers with TM | BM and TN | BN`);
  const wg = tiledInvocations(o.tile);
  if (wg > MAX_INVOCATIONS) throw new Error(`${name}: ${wg} invocations per workgroup, more than ${MAX_INVOCATIONS}`);
  if ((BM * BK) % wg !== 0 || (BK * BN) % wg !== 0)
    throw new Error(`${name}: each tile (${BM}×${BK}, ${BK}×${BN}) must split evenly over ${wg} invocations`);
  const bytes = 4 * BK * (strideA + strideB);
  if (bytes > MAX_WORKGROUP_BYTES)
    throw new Error(`${name}: ${bytes} bytes of workgroup memory, more than ${MAX_WORKGROUP_BYTES}`);
  if (o.rowSum && BM > wg)
    throw new Error(`${name}: rowSum gives each of the BM rows an invocation, but there are only ${wg}`);
}

export function tiledWGSL(o: TiledMatmulOptions): string {
  checkEpilogues(o, 'matmul-tiled');
  const { BM, BN, BK, TM, TN } = o.tile;
  // Tiles written along k get a padded row (see the top comment).
  const strideA = BM + (o.transA ? 0 : 1);
  const strideB = BN + (o.transB ? 1 : 0);
  checkTile(o, strideA, strideB);
  const WG = tiledInvocations(o.tile);
  const WGX = BN / TN; // invocations along n
  const WGY = BM / TM; // invocations along m

  // The micro-tile is unrolled into named scalars: compilers (SwiftShader's above all) keep
  // those in registers, but may put a dynamically indexed array in memory.
  const rows = Array.from({ length: TM }, (_, i) => i);
  const cols = Array.from({ length: TN }, (_, j) => j);
  const each = (f: (i: number, j: number) => string, sep = '\n') =>
    rows.map((i) => cols.map((j) => f(i, j)).join(sep)).join(sep);

  // Where flat load index `i` lands in each tile: the fastest-varying coordinate is the one
  // that is contiguous in the operand's storage.
  const placeA = o.transA ? `let k = i / ${BM}u; let m = i % ${BM}u;` : `let m = i / ${BK}u; let k = i % ${BK}u;`;
  const placeB = o.transB ? `let n = i / ${BK}u; let k = i % ${BK}u;` : `let k = i / ${BN}u; let n = i % ${BN}u;`;

  return wgsl`
${matmulDeclarationsWGSL(o, 'f32', 'f32')}
var<workgroup> tileA: array<f32, ${BK * strideA}>; // (BK, BM + pad): op(A)'s tile, k-major
var<workgroup> tileB: array<f32, ${BK * strideB}>; // (BK, BN + pad): op(B)'s tile, k-major

${boundedLoadsWGSL(o)}

${matmulEpilogueWGSL(o)}@compute @workgroup_size(${WG})
fn matmul_tiled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_index) index: u32) {
  // This workgroup's tile of C; the fold past 65,535 workgroups leaves a few with none.
  let tilesN = (dims.N + ${BN - 1}u) / ${BN}u;
  let tilesM = (dims.M + ${BM - 1}u) / ${BM}u;
  let tileIndex = wg.x + wg.y * groups.x;
  if (tileIndex >= tilesM * tilesN) { return; }
  let m0 = (tileIndex / tilesN) * ${BM}u;
  let n0 = (tileIndex % tilesN) * ${BN}u;
  let tx = index % ${WGX}u;
  let ty = index / ${WGX}u;
${each((i, j) => `  var c${i}_${j} = 0.0;`, ' ')}
#if ${o.rowSum}
  // Invocation r < BM of the first column block sums row m0 + r of op(A).
  let sumsRow = n0 == 0u && index < ${BM}u;
  var rowAcc = 0.0;
#endif

  for (var k0 = 0u; k0 < dims.K; k0 += ${BK}u) {
    for (var l = 0u; l < ${(BM * BK) / WG}u; l++) {
      let i = index + l * ${WG}u;
      ${placeA}
      tileA[k * ${strideA}u + m] = atA(m0 + m, k0 + k);
    }
    for (var l = 0u; l < ${(BK * BN) / WG}u; l++) {
      let i = index + l * ${WG}u;
      ${placeB}
      tileB[k * ${strideB}u + n] = atB(k0 + k, n0 + n);
    }
    workgroupBarrier();
    for (var k = 0u; k < ${BK}u; k++) {
${rows.map((i) => `      let a${i} = tileA[k * ${strideA}u + ty + ${i * WGY}u];`).join('\n')}
${cols.map((j) => `      let b${j} = tileB[k * ${strideB}u + tx + ${j * WGX}u];`).join('\n')}
${each((i, j) => `      c${i}_${j} += a${i} * b${j};`)}
    }
#if ${o.rowSum}
    if (sumsRow) {
      for (var k = 0u; k < ${BK}u; k++) { rowAcc += tileA[k * ${strideA}u + index]; }
    }
#endif
    workgroupBarrier();
  }

${each((i, j) => `  store(m0 + ty + ${i * WGY}u, n0 + tx + ${j * WGX}u, c${i}_${j});`)}
#if ${o.rowSum}
  if (sumsRow && m0 + index < dims.M) { rowSum[m0 + index] = rowAcc; }
#endif
}
`;
}
