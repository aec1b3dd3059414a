import { wgsl } from 'wgsl-preprocessor';

/**
 * Register-tiled matmul: C[M,N] = op(A)·op(B), with the epilogues a Linear layer needs.
 *
 * Each invocation owns a TILE_M×4 block of C: TILE_M rows, one vec4 of columns. The K loop
 * steps by 4: it loads a TILE_M×4 block of A and a 4×4 block of B into registers and does
 * 4·TILE_M vec4 FMAs, so each loaded value is used 4 or TILE_M times. No workgroup memory:
 * on SwiftShader (and on many GPUs for these small K) the barriers cost more than the reuse
 * they buy, and neighbouring invocations share their loads through the cache anyway.
 *
 * Operand layouts (row-major storage):
 *   A(m,k) = transA ? A[k·M + m] : A[m·K + k]
 *   B(k,n) = transB ? B[n·K + k] : B[k·N + n]
 * The three products of a Linear layer with W stored (out, in) as PyTorch does:
 *   forward   Y  = X·Wᵀ   A = X (B×in),  B = W, transB
 *   input grad dX = dY·W  A = dY (B×out), B = W
 *   weight grad dW = dYᵀ·X A = dY, transA, B = X; and db = Σ_b dY[b,:] = the row sums of op(A)
 *
 * `vec4` storage (every one of M, N, K a multiple of 4) loads whole vec4s; otherwise every
 * scalar load is bounds-checked, which makes any shape correct.
 */
export interface MatmulOptions {
  transA: boolean;
  transB: boolean;
  /** M, N and K are all multiples of 4: operands are read and written as vec4. */
  vec4: boolean;
  /** C += bias[n] (forward). */
  bias: boolean;
  /** C = max(C, 0) after the bias (forward through a ReLU). */
  relu: boolean;
  /** C *= (mask[m,n] > 0): the gradient through a ReLU whose output was `mask` (backward). */
  reluMask: boolean;
  /** Also write rowSum[m] = Σ_k A(m,k): the bias gradient when A = dYᵀ. */
  rowSum: boolean;
  /** Rows of C per invocation: a multiple of 4. */
  tileM: number;
  /** Columns of C per invocation: a multiple of 4 (whole vec4s). */
  tileN: number;
}

/** Invocations per workgroup along N (columns) and M (rows). */
export const MATMUL_WG_X = 8;
export const MATMUL_WG_Y = 8;

export interface MatmulDims {
  M: number;
  N: number;
  K: number;
}

/** Binding order: 0 dims (uniform), 1 A, 2 B, 3 C, then bias, mask, rowSum as enabled. */
export function matmulBindings(o: MatmulOptions): ('uniform' | 'read' | 'storage')[] {
  const b: ('uniform' | 'read' | 'storage')[] = ['uniform', 'read', 'read', 'storage'];
  if (o.bias) b.push('read');
  if (o.reluMask) b.push('read');
  if (o.rowSum) b.push('storage');
  return b;
}

export function matmulWorkgroups(o: MatmulOptions, d: MatmulDims): [number, number, number] {
  return [Math.ceil(d.N / (o.tileN * MATMUL_WG_X)), Math.ceil(d.M / (o.tileM * MATMUL_WG_Y)), 1];
}

export function matmulWGSL(o: MatmulOptions): string {
  if (o.tileM % 4 !== 0 || o.tileN % 4 !== 0) throw new Error(`matmul tiles must be multiples of 4, got ${o.tileM}×${o.tileN}`);
  if (o.relu && o.reluMask) throw new Error('matmul: relu (forward) and reluMask (backward) exclude each other');
  const T = o.vec4 ? 'vec4<f32>' : 'f32';
  let binding = 4;
  const biasBinding = o.bias ? binding++ : -1;
  const maskBinding = o.reluMask ? binding++ : -1;
  const rowSumBinding = o.rowSum ? binding++ : -1;
  const vecTransA = o.vec4 && o.transA;
  const vecTransB = o.vec4 && o.transB;
  // The tile's rows are unrolled here rather than looped over in WGSL: compilers (SwiftShader's
  // above all) keep named vec4 accumulators in registers, but a dynamically indexed array in memory.
  const rows = Array.from({ length: o.tileM }, (_, i) => i);
  const cols = Array.from({ length: o.tileN / 4 }, (_, c) => c);
  const quads = rows.filter((i) => i % 4 === 0);
  return wgsl`
struct Dims { M: u32, N: u32, K: u32 }
@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> A: array<${T}>;
@group(0) @binding(2) var<storage, read> B: array<${T}>;
@group(0) @binding(3) var<storage, read_write> C: array<${T}>;
#if ${o.bias}
@group(0) @binding(${biasBinding}) var<storage, read> bias: array<${T}>;
#endif
#if ${o.reluMask}
@group(0) @binding(${maskBinding}) var<storage, read> mask: array<${T}>;
#endif
#if ${o.rowSum}
@group(0) @binding(${rowSumBinding}) var<storage, read_write> rowSum: array<f32>;
#endif


#if ${o.vec4}
// vec4 storage: M, N, K are multiples of 4, so a vec4 whose first element is in range is
// entirely in range, and only the first element's index needs a check.

// A(m, k..k+3)
fn rowA(m: u32, k: u32) -> vec4<f32> {
  if (m >= dims.M) { return vec4<f32>(0.0); }
  return A[(m * dims.K + k) / 4u];
}
// A(m..m+3, k) when A is stored transposed (K×M)
fn colA(k: u32, m: u32) -> vec4<f32> {
  if (m >= dims.M) { return vec4<f32>(0.0); }
  return A[(k * dims.M + m) / 4u];
}
// B(k, n..n+3)
fn rowB(k: u32, n: u32) -> vec4<f32> {
  if (n >= dims.N) { return vec4<f32>(0.0); }
  return B[(k * dims.N + n) / 4u];
}
// B(k..k+3, n) when B is stored transposed (N×K)
fn colB(k: u32, n: u32) -> vec4<f32> {
  if (n >= dims.N) { return vec4<f32>(0.0); }
  return B[(n * dims.K + k) / 4u];
}
#else
fn atA(m: u32, k: u32) -> f32 {
  if (m >= dims.M || k >= dims.K) { return 0.0; }
#if ${o.transA}
  return A[k * dims.M + m];
#else
  return A[m * dims.K + k];
#endif
}
fn atB(k: u32, n: u32) -> f32 {
  if (k >= dims.K || n >= dims.N) { return 0.0; }
#if ${o.transB}
  return B[n * dims.K + k];
#else
  return B[k * dims.N + n];
#endif
}
fn rowA(m: u32, k: u32) -> vec4<f32> {
  return vec4<f32>(atA(m, k), atA(m, k + 1u), atA(m, k + 2u), atA(m, k + 3u));
}
fn rowB(k: u32, n: u32) -> vec4<f32> {
  return vec4<f32>(atB(k, n), atB(k, n + 1u), atB(k, n + 2u), atB(k, n + 3u));
}
#endif

// The epilogue for one row of the tile: bias, ReLU or ReLU mask, then the store.
fn store(m: u32, n0: u32, acc: vec4<f32>${o.rowSum ? ', sum: f32, writeSum: bool' : ''}) {
  if (m >= dims.M) { return; }
#if ${o.rowSum}
  // Every column block computed the same row sums; the first one writes them.
  if (writeSum) { rowSum[m] = sum; }
#endif
#if ${o.vec4}
  let at = (m * dims.N + n0) / 4u;
  var v = acc;
#if ${o.bias}
  v += bias[n0 / 4u];
#endif
#if ${o.relu}
  v = max(v, vec4<f32>(0.0));
#endif
#if ${o.reluMask}
  v = select(vec4<f32>(0.0), v, mask[at] > vec4<f32>(0.0));
#endif
  C[at] = v;
#else
  for (var j = 0u; j < 4u; j++) {
    let n = n0 + j;
    if (n >= dims.N) { return; }
    let at = m * dims.N + n;
    var v = acc[j];
#if ${o.bias}
    v += bias[n];
#endif
#if ${o.relu}
    v = max(v, 0.0);
#endif
#if ${o.reluMask}
    v = select(0.0, v, mask[at] > 0.0);
#endif
    C[at] = v;
  }
#endif
}

@compute @workgroup_size(${MATMUL_WG_X}, ${MATMUL_WG_Y})
fn matmul(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n0 = gid.x * ${o.tileN}u;
  let m0 = gid.y * ${o.tileM}u;
  if (n0 >= dims.N || m0 >= dims.M) { return; }
${rows.map((i) => cols.map((c) => `  var acc${i}_${c} = vec4<f32>(0.0);`).join(' ')).join('\n')}
#if ${o.rowSum}
${rows.map((i) => `  var sum${i} = 0.0;`).join('\n')}
#endif
  for (var k = 0u; k < dims.K; k += 4u) {
    // b{c}[j] = B(k+j, n0+4c .. n0+4c+3)
${cols.map((c) => vecTransB
    ? `    let b${c} = transpose(mat4x4<f32>(colB(k, n0 + ${4 * c}u), colB(k, n0 + ${4 * c + 1}u), colB(k, n0 + ${4 * c + 2}u), colB(k, n0 + ${4 * c + 3}u)));`
    : `    let b${c} = mat4x4<f32>(rowB(k, n0 + ${4 * c}u), rowB(k + 1u, n0 + ${4 * c}u), rowB(k + 2u, n0 + ${4 * c}u), rowB(k + 3u, n0 + ${4 * c}u));`).join('\n')}
    // a{i} = A(m0+i, k..k+3)
${vecTransA
    ? quads.map((q) => `    let t${q} = transpose(mat4x4<f32>(colA(k, m0 + ${q}u), colA(k + 1u, m0 + ${q}u), colA(k + 2u, m0 + ${q}u), colA(k + 3u, m0 + ${q}u)));
    let a${q} = t${q}[0]; let a${q + 1} = t${q}[1]; let a${q + 2} = t${q}[2]; let a${q + 3} = t${q}[3];`).join('\n')
    : rows.map((i) => `    let a${i} = rowA(m0 + ${i}u, k);`).join('\n')}
${rows.map((i) => cols.map((c) => `    acc${i}_${c} += a${i}.x * b${c}[0] + a${i}.y * b${c}[1] + a${i}.z * b${c}[2] + a${i}.w * b${c}[3];`).join('\n')).join('\n')}
#if ${o.rowSum}
${rows.map((i) => `    sum${i} += (a${i}.x + a${i}.y) + (a${i}.z + a${i}.w);`).join('\n')}
#endif
  }
${rows.map((i) => cols.map((c) => `  store(m0 + ${i}u, n0 + ${4 * c}u, acc${i}_${c}${o.rowSum ? `, sum${i}, ${c === 0 ? 'gid.x == 0u' : 'false'}` : ''});`).join('\n')).join('\n')}
}
`;
}
