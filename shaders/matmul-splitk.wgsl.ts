import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';
import { linearWorkgroups } from './common';
import {
  boundedLoadsWGSL,
  checkEpilogues,
  matmulDeclarationsWGSL,
  matmulEpilogueWGSL,
  type MatmulDims,
  type MatmulOptions,
} from './matmul.wgsl';

/**
 * Split-K matmul: C[M,N] = op(A)·op(B) with K divided among the invocations of one workgroup,
 * for products whose outputs are too few to fill a GPU: fc21‖fc22 is 128×40 outputs over
 * K = 400, dz 128×20 over 400, the heads' dW 40×400 over 128. The register-tiled kernel
 * (matmul.wgsl.ts) gives those a few hundred invocations in all; here each output tile gets
 * S times as many, each doing 1/S of the dot products.
 *
 * A workgroup is S slices of wgX·wgY invocations (slice = index / (wgX·wgY), so on a GPU each
 * slice is whole warps and a slice's shorter loop diverges between warps, not within one). The
 * workgroup owns one output tile of TILE_M = wgY·tileM rows by TILE_N = wgX·tileN columns, and
 * every slice computes the whole tile: invocation (x, y) of a slice holds tileM×tileN sums in
 * registers, rows row0..row0+tileM−1 and columns col0 + j·wgX (strided, as in the register
 * kernel, so neighbouring invocations read neighbouring columns of B).
 *
 * K is split STRIDED, in chunks of STEP (4 on the vec4 path, else 1): slice s takes the chunks
 * k = s·STEP, (s + S)·STEP, (s + 2S)·STEP, … Chosen over contiguous slices because
 *   - the S slices sweep K as one front: at any moment a workgroup's reads of a row of A (or of
 *     a transposed B) fall in the same one or two cache lines for every slice, instead of S
 *     streams K/S apart;
 *   - it needs no slice-boundary arithmetic: K < S or K not a multiple of S (or of 4·S) just
 *     gives some slices one chunk fewer, or none (a partial of 0), and vec4 chunks stay aligned.
 *
 * Then each invocation writes its partial sums to workgroup memory, laid out (S, TILE_M, TILE_N)
 * so that consecutive invocations write consecutive words, and after one barrier the tile's
 * outputs are dealt out over all S·wgX·wgY invocations (output e of the tile to invocations
 * e mod S·wgX·wgY, so consecutive invocations store consecutive columns of C). Each sums its
 * outputs' S partials in the FIXED order s = 0, 1, …, S−1 and applies the epilogue: the result
 * does not depend on scheduling, and two runs give identical bits. No atomics. rowSum (the bias
 * gradient) is reduced the same way from per-slice row sums.
 *
 * Operand layouts, binding order and epilogue semantics are the register kernel's
 * (matmul.wgsl.ts, `matmulBindings`): A(m,k) = transA ? A[k·M + m] : A[m·K + k],
 * B(k,n) = transB ? B[n·K + k] : B[k·N + n]; bias, relu, reluMask, rowSum, reparamBackward.
 * `vec4` (M, N and K multiples of 4) loads A — and B when transposed — as vec4s; otherwise every
 * load is bounds-checked, branch-free, and any shape is correct. Out-of-range rows and columns
 * read clamped, valid addresses and are never stored.
 *
 * The tiles are numbered over a grid folded into y when there are more than 65,535 of them
 * (`linearWorkgroups`), so any M×N fits one dispatch; surplus workgroups return at once.
 */
export interface SplitKSizes {
  /** S: slices of K per workgroup, each a group of wgX·wgY invocations. */
  slices: number;
  /** Invocations of a slice along N (columns). */
  wgX: number;
  /** Invocations of a slice along M (rows). */
  wgY: number;
  /** Rows of C per invocation (contiguous). */
  tileM: number;
  /** Columns of C per invocation (strided by wgX). */
  tileN: number;
}

/**
 * The one source of the split-K sizes: 4 slices of 16×4 invocations (256 in a workgroup, the
 * most WebGPU guarantees), 4×1 outputs each, so a workgroup owns a 16×16 tile of C. Small
 * tiles are the point: fc21‖fc22 (128×40) becomes 24 workgroups, 6,144 invocations, where the
 * register kernel launches 256.
 */
export const SPLITK_SIZES: Readonly<SplitKSizes> = { slices: 4, wgX: 16, wgY: 4, tileM: 4, tileN: 1 };

/** WebGPU's default limits, which the engine does not raise for this kernel. */
const MAX_INVOCATIONS = 256;
const MAX_WORKGROUP_BYTES = 16384;

export interface SplitKOptions extends Omit<MatmulOptions, 'tileM' | 'tileN' | 'quad' | 'quadLayout'>, SplitKSizes {}

/** Invocations in one workgroup and outputs in its tile. */
export function splitKShape(s: SplitKSizes) {
  const perSlice = s.wgX * s.wgY;
  return {
    invocations: s.slices * perSlice,
    tileRows: s.wgY * s.tileM,
    tileCols: s.wgX * s.tileN,
    tileOutputs: perSlice * s.tileM * s.tileN,
  };
}

function check(o: SplitKSizes): void {
  const { slices, wgX, wgY, tileM, tileN } = o;
  for (const [name, v] of Object.entries({ slices, wgX, wgY, tileM, tileN })) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`matmul split-K: ${name} must be a positive integer, got ${v}`);
  }
  const { invocations, tileRows, tileOutputs } = splitKShape(o);
  if (invocations > MAX_INVOCATIONS) {
    throw new Error(
      `matmul split-K: slices·wgX·wgY = ${invocations} invocations exceed WebGPU's ${MAX_INVOCATIONS} per workgroup`,
    );
  }
  const bytes = 4 * slices * (tileOutputs + tileRows);
  if (bytes > MAX_WORKGROUP_BYTES) {
    throw new Error(
      `matmul split-K: the partial sums need ${bytes} bytes of workgroup memory, over WebGPU's ${MAX_WORKGROUP_BYTES}: fewer slices or a smaller tile`,
    );
  }
}

/** The dispatch: one workgroup per output tile, folded into y past 65,535. */
export function splitKWorkgroups(o: SplitKSizes, d: MatmulDims): [number, number, number] {
  check(o);
  const { tileRows, tileCols } = splitKShape(o);
  return linearWorkgroups(Math.ceil(d.N / tileCols) * Math.ceil(d.M / tileRows), 1);
}

export function splitKWGSL(o: SplitKOptions): string {
  check(o);
  checkEpilogues(o, 'matmul split-K');

  const { slices: S, wgX, wgY, tileM, tileN } = o;
  const { invocations, tileRows, tileCols, tileOutputs } = splitKShape(o);
  const step = o.vec4 ? 4 : 1;
  // A transposed is (K, M): a vec4 covers 4 rows, so vec4 loads need whole groups of 4 rows.
  const aVec4 = o.vec4 && (!o.transA || tileM % 4 === 0);
  const bVec4 = o.vec4 && o.transB;
  // Unrolled in TypeScript, not looped in WGSL: compilers keep named scalars in registers.
  const rows = Array.from({ length: tileM }, (_, i) => i);
  const cols = Array.from({ length: tileN }, (_, j) => j);
  const each = (f: (i: number, j: number) => string, sep = '\n') =>
    rows.map((i) => cols.map((j) => f(i, j)).join(sep)).join(sep);

  let loadA: string;
  if (aVec4 && o.transA) {
    // Four vec4 rows of A along m make a 4×4 block; its transpose gives each row's vec4 along k.
    loadA = rows
      .filter((i) => i % 4 === 0)
      .map(
        (
          q,
        ) => `    let t${q} = transpose(mat4x4<f32>(A[(k * dims.M + m${q}) / 4u], A[((k + 1u) * dims.M + m${q}) / 4u], A[((k + 2u) * dims.M + m${q}) / 4u], A[((k + 3u) * dims.M + m${q}) / 4u]));
    let a${q} = t${q}[0]; let a${q + 1} = t${q}[1]; let a${q + 2} = t${q}[2]; let a${q + 3} = t${q}[3];`,
      )
      .join('\n');
  } else if (aVec4) {
    loadA = rows.map((i) => `    let a${i} = A[(m${i} * dims.K + k) / 4u];`).join('\n');
  } else if (o.vec4) {
    // vec4 shapes, transposed A, tileM not a multiple of 4: four scalar loads per row.
    loadA = rows
      .map(
        (i) =>
          `    let a${i} = vec4<f32>(A[k * dims.M + m${i}], A[(k + 1u) * dims.M + m${i}], A[(k + 2u) * dims.M + m${i}], A[(k + 3u) * dims.M + m${i}]);`,
      )
      .join('\n');
  } else {
    loadA = rows.map((i) => `    let a${i} = atA(m${i}, k);`).join('\n');
  }
  let loadB: string;
  if (bVec4) {
    loadB = cols.map((j) => `    let b${j} = B[(n${j} * dims.K + k) / 4u];`).join('\n');
  } else if (o.vec4) {
    loadB = cols
      .map(
        (j) =>
          `    let b${j} = vec4<f32>(B[k * dims.N + n${j}], B[(k + 1u) * dims.N + n${j}], B[(k + 2u) * dims.N + n${j}], B[(k + 3u) * dims.N + n${j}]);`,
      )
      .join('\n');
  } else {
    loadB = cols.map((j) => `    let b${j} = atB(k, n${j});`).join('\n');
  }
  const fma = o.vec4
    ? (i: number, j: number) =>
        `    c${i}_${j} += a${i}.x * b${j}.x + a${i}.y * b${j}.y + a${i}.z * b${j}.z + a${i}.w * b${j}.w;`
    : (i: number, j: number) => `    c${i}_${j} += a${i} * b${j};`;
  const rowSumOf = (i: number) => (o.vec4 ? `(a${i}.x + a${i}.y) + (a${i}.z + a${i}.w)` : `a${i}`);
  // Σ_s part[s·stride + at] in the order s = 0..S−1, written out so the order is in the source.
  const fixedOrderSum = (part: string, stride: number, at: string) =>
    Array.from({ length: S }, (_, s) => (s === 0 ? `${part}[${at}]` : `${part}[${s * stride}u + ${at}]`)).join(' + ');
  // Outputs of the tile per invocation in the reduction; the last round may be partial.
  const rounds = Array.from({ length: Math.ceil(tileOutputs / invocations) }, (_, r) => r);
  const lastRoundPartial = tileOutputs % invocations !== 0;

  return wgsl`
${matmulDeclarationsWGSL(o, aVec4 ? 'vec4<f32>' : 'f32', bVec4 ? 'vec4<f32>' : 'f32')}
// Each slice's partial sums of the workgroup's tile: (S, TILE_M, TILE_N).
var<workgroup> partials: array<f32, ${S * tileOutputs}>;
#if ${o.rowSum}
// Each slice's partial row sums of op(A) over its chunks of K: (S, TILE_M).
var<workgroup> rowPartials: array<f32, ${S * tileRows}>;
#endif

${
  o.vec4
    ? ''
    : `${boundedLoadsWGSL(o)}
`
}
${matmulEpilogueWGSL(o)}@compute @workgroup_size(${invocations})
fn matmul_splitk(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                 @builtin(local_invocation_index) index: u32) {
  // This workgroup's tile (uniform across the workgroup, so returning is allowed before the barrier).
  let tilesX = (dims.N + ${tileCols - 1}u) / ${tileCols}u;
  let tile = wg.x + wg.y * groups.x;
  if (tile >= tilesX * ((dims.M + ${tileRows - 1}u) / ${tileRows}u)) { return; }
  let tileRow0 = (tile / tilesX) * ${tileRows}u;
  let tileCol0 = (tile % tilesX) * ${tileCols}u;

  let x = index % ${wgX}u;
  let y = (index / ${wgX}u) % ${wgY}u;
  let slice = index / ${wgX * wgY}u;
  let row0 = tileRow0 + y * ${tileM}u;
  let col0 = tileCol0 + x;
${rows.map((i) => `  let m${i} = min(row0 + ${i}u, dims.M - 1u);`).join('\n')}
${cols.map((j) => `  let n${j} = min(col0 + ${j * wgX}u, dims.N - 1u);`).join('\n')}
${each((i, j) => `  var c${i}_${j} = 0.0;`, ' ')}
#if ${o.rowSum}
${rows.map((i) => `  var sum${i} = 0.0;`).join('\n')}
#endif
  // This slice's chunks of K: every S-th, starting at its own.
  for (var k = slice * ${step}u; k < dims.K; k += ${S * step}u) {
${loadA}
${loadB}
${each(fma)}
#if ${o.rowSum}
${rows.map((i) => `    sum${i} += ${rowSumOf(i)};`).join('\n')}
#endif
  }
  let mine = slice * ${tileOutputs}u + y * ${tileM * tileCols}u + x;
${each((i, j) => `  partials[mine + ${i * tileCols + j * wgX}u] = c${i}_${j};`)}
#if ${o.rowSum}
  if (x == 0u) {
${rows.map((i) => `    rowPartials[slice * ${tileRows}u + y * ${tileM}u + ${i}u] = sum${i};`).join('\n')}
  }
#endif
  workgroupBarrier();

  // The tile's outputs dealt out over the whole workgroup, each summed over the slices in order.
${rounds
  .map((r) => {
    const e = r === 0 ? 'index' : `index + ${r * invocations}u`;
    const body = `    let e = ${e};
    store(tileRow0 + e / ${tileCols}u, tileCol0 + e % ${tileCols}u, ${fixedOrderSum('partials', tileOutputs, 'e')});`;
    return r === rounds.length - 1 && lastRoundPartial
      ? `  if (${e} < ${tileOutputs}u) {\n${body}\n  }`
      : `  {\n${body}\n  }`;
  })
  .join('\n')}
#if ${o.rowSum}
  // Every column tile computed the same row sums; the first one writes them.
  if (tileCol0 == 0u) {
    for (var r = index; r < ${tileRows}u; r += ${invocations}u) {
      if (tileRow0 + r < dims.M) { rowSum[tileRow0 + r] = ${fixedOrderSum('rowPartials', tileRows, 'r')}; }
    }
  }
#endif
}
`;
}
