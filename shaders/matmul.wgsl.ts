import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';

/**
 * Register-tiled matmul: C[M,N] = op(A)·op(B), with the epilogues a Linear layer needs.
 *
 * Each invocation owns a tileM×tileN block of C held in scalar registers: rows m0..m0+tileM−1
 * and the columns n = nBase + lane + j·WG_X, strided by the workgroup's width. The stride
 * makes neighbouring invocations read neighbouring columns of B, so a row of B is one
 * contiguous (coalesced) read across the workgroup, while A is read as vec4s along k that
 * every invocation of a row shares (a broadcast). The K loop steps by 4: it loads tileM vec4s
 * of A and 4·tileN values of B and does 4·tileM·tileN FMAs. No workgroup memory: measured on
 * SwiftShader this beat both a workgroup-memory tiled kernel and a vec4-per-invocation tiling
 * (bench/README.md has the figures).
 *
 * Operand layouts (row-major storage):
 *   A(m,k) = transA ? A[k·M + m] : A[m·K + k]
 *   B(k,n) = transB ? B[n·K + k] : B[k·N + n]
 * The three products of a Linear layer with W stored (out, in) as PyTorch does:
 *   forward    Y  = X·Wᵀ   A = X (B×in),  B = W, transB
 *   input grad dX = dY·W   A = dY (B×out), B = W
 *   weight grad dW = dYᵀ·X  A = dY, transA, B = X; and db = Σ_b dY[b,:] = the row sums of op(A)
 *
 * `vec4` (every one of M, N, K a multiple of 4) reads A — and B when transposed — as vec4s,
 * clamping out-of-range rows and columns to valid ones whose results are never stored;
 * otherwise every scalar load is bounds-checked, which makes any shape correct.
 *
 * Workgroups are 1-D (MATMUL_WG_X·MATMUL_WG_Y invocations) and an invocation's column x and row
 * y come from local_invocation_index, x fastest. With `quad` (software adapters with subgroups,
 * after the start-up self-check in src/gpu/quads.ts) the four invocations of a quad share their
 * loads of A, and WGSL defines a quad by subgroup_invocation_id, not by the local id: the lane
 * is subgroup_invocation_id % 4, and the sharing is right only when a quad's four invocations
 * lie in one row. Nothing in WGSL promises that (D3D12 before SM 6.6 leaves compute quads to the
 * driver; 6.6 makes them 2×2 blocks of a 2-D workgroup, two rows), so the self-check compares
 * the quad path with the plain one on the real adapter and turns quads off when they differ.
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
  /**
   * With relu or reluMask: a LeakyReLU of this float32 slope instead, C = C > 0 ? C : slope·C
   * (forward) or C *= mask > 0 ? 1 : slope (backward). Absent: the ReLU, text for text.
   */
  slope?: number;
  /** Also write rowSum[m] = Σ_k A(m,k): the bias gradient when A = dYᵀ. */
  rowSum: boolean;
  /**
   * The product is dz (rows, L) = dh3·W3, and instead of storing it the epilogue continues the
   * backward pass through the reparameterization: C is dmulv (rows, 2L) and gets
   * += [dz, dz·ε·½·exp(½·logvar)], reading [mu ‖ logvar] and ε. Saves a dispatch and dz's buffer.
   */
  reparamBackward?: boolean;
  /**
   * With reparamBackward, for a conditional decoder: the product is (rows, L+C), the gradient
   * of [z ‖ onehot(y)], and only its first L columns (dz; L is a fourth field of the uniform)
   * continue into dmulv — the one-hot columns are inputs, with nothing to pass back to.
   */
  reparamConditioned?: boolean;
  /** Rows of C per invocation: a multiple of 4. */
  tileM: number;
  /** Columns of C per invocation (strided by the workgroup width). */
  tileN: number;
  /**
   * Share A's loads within quads of invocations (needs the `subgroups` feature): the four
   * invocations of a quad need the same rows of A, so each loads a quarter and quadBroadcast
   * hands the values round, instead of all four loading everything.
   */
  quad?: boolean;
  /**
   * Tests only: where the quads fall. 'subgroup' (the default) is the real layout. 'blocks2x2'
   * deliberately lays (x, y) out the way D3D12 SM 6.6 lays out a 2-D workgroup's quads — each
   * quad a 2×2 block, so two rows of A get mixed — to show the self-check catches it.
   */
  quadLayout?: QuadLayout;
}

export type QuadLayout = 'subgroup' | 'blocks2x2';

/** Invocations per workgroup along N (columns) and M (rows), in one 1-D workgroup of WG_X·WG_Y. */
export const MATMUL_WG_X = 8;
export const MATMUL_WG_Y = 8;

export interface MatmulDims {
  M: number;
  N: number;
  K: number;
}

/** Binding order: 0 dims (uniform), 1 A, 2 B, 3 C, then bias, mask, rowSum, (mulv, eps) as enabled. */
export function matmulBindings(o: MatmulOptions): ('uniform' | 'read' | 'storage')[] {
  const b: ('uniform' | 'read' | 'storage')[] = ['uniform', 'read', 'read', 'storage'];
  if (o.bias) b.push('read');
  if (o.reluMask) b.push('read');
  if (o.rowSum) b.push('storage');
  if (o.reparamBackward) b.push('read', 'read');
  return b;
}

export function matmulWorkgroups(o: MatmulOptions, d: MatmulDims): [number, number, number] {
  return [Math.ceil(d.N / (o.tileN * MATMUL_WG_X)), Math.ceil(d.M / (o.tileM * MATMUL_WG_Y)), 1];
}

export function matmulWGSL(o: MatmulOptions): string {
  if (o.tileM % 4 !== 0 || o.tileN < 1)
    throw new Error(`matmul: tileM must be a multiple of 4 and tileN ≥ 1, got ${o.tileM}×${o.tileN}`);
  checkEpilogues(o, 'matmul');
  // A quad of consecutive indices must lie in one row: whole quads along x.
  if (o.quad && (!o.vec4 || MATMUL_WG_X % 4 !== 0))
    throw new Error('matmul: quad sharing needs vec4 shapes and whole quads along x');
  // Quad-shared loads of a non-transposed A read scalars; everything else reads A as vec4s.
  const aType = o.vec4 && !(o.quad && !o.transA) ? 'vec4<f32>' : 'f32';
  const bType = o.vec4 && o.transB ? 'vec4<f32>' : 'f32';
  // The tile is unrolled here rather than looped over in WGSL: compilers (SwiftShader's above
  // all) keep named scalars in registers, but a dynamically indexed array in memory.
  const rows = Array.from({ length: o.tileM }, (_, i) => i);
  const cols = Array.from({ length: o.tileN }, (_, j) => j);
  const quads = rows.filter((i) => i % 4 === 0);
  const each = (f: (i: number, j: number) => string, sep = '\n') =>
    rows.map((i) => cols.map((j) => f(i, j)).join(sep)).join(sep);

  let loadA: string;
  if (o.quad && o.vec4 && o.transA) {
    // Quad lane q loads A's row k+q (along m) for the 4×4 block; broadcasts assemble it.
    loadA = quads
      .map(
        (q) => `    let c${q} = A[((k + quadLane) * dims.M + m${q}) / 4u];
    let t${q} = transpose(mat4x4<f32>(quadBroadcast(c${q}, 0u), quadBroadcast(c${q}, 1u), quadBroadcast(c${q}, 2u), quadBroadcast(c${q}, 3u)));
    let a${q} = t${q}[0]; let a${q + 1} = t${q}[1]; let a${q + 2} = t${q}[2]; let a${q + 3} = t${q}[3];`,
      )
      .join('\n');
  } else if (o.quad && o.vec4) {
    // Quad lane q loads A(m, k+q); broadcasts give every lane the vec4 A(m, k..k+3).
    loadA = rows
      .map(
        (i) => `    let v${i} = A[m${i} * dims.K + k + quadLane];
    let a${i} = vec4<f32>(quadBroadcast(v${i}, 0u), quadBroadcast(v${i}, 1u), quadBroadcast(v${i}, 2u), quadBroadcast(v${i}, 3u));`,
      )
      .join('\n');
  } else if (o.vec4 && o.transA) {
    // A is (K, M): four vec4 rows along m make a 4×4 block; its transpose gives rows along k.
    loadA = quads
      .map(
        (
          q,
        ) => `    let t${q} = transpose(mat4x4<f32>(A[(k * dims.M + m${q}) / 4u], A[((k + 1u) * dims.M + m${q}) / 4u], A[((k + 2u) * dims.M + m${q}) / 4u], A[((k + 3u) * dims.M + m${q}) / 4u]));
    let a${q} = t${q}[0]; let a${q + 1} = t${q}[1]; let a${q + 2} = t${q}[2]; let a${q + 3} = t${q}[3];`,
      )
      .join('\n');
  } else if (o.vec4) {
    loadA = rows.map((i) => `    let a${i} = A[(m${i} * dims.K + k) / 4u];`).join('\n');
  } else {
    // Any shape: one k per iteration, bounds-checked scalar loads.
    loadA = rows.map((i) => `    let a${i} = atA(m${i}, k);`).join('\n');
  }
  let loadB: string;
  if (o.vec4 && o.transB) {
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

  return wgsl`
#if ${!!o.quad}
enable subgroups;
#endif
${matmulDeclarationsWGSL(o, aType, bType)}
${
  o.vec4
    ? ''
    : `${boundedLoadsWGSL(o)}
`
}
${matmulEpilogueWGSL(o)}@compute @workgroup_size(${MATMUL_WG_X * MATMUL_WG_Y})
fn matmul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) index: u32${o.quad ? ', @builtin(subgroup_invocation_id) subgroupLane: u32' : ''}) {
#if ${o.quadLayout === 'blocks2x2'}
  // The wrong layout, for the self-check's test: invocations 4j..4j+3 (a quad on SwiftShader)
  // take a 2×2 block of (x, y).
  let block = index / 4u;
  let x = (block % ${MATMUL_WG_X / 2}u) * 2u + index % 2u;
  let y = (block / ${MATMUL_WG_X / 2}u) * 2u + (index / 2u) % 2u;
#else
  let x = index % ${MATMUL_WG_X}u;
  let y = index / ${MATMUL_WG_X}u;
#endif
  let row0 = (wg.y * ${MATMUL_WG_Y}u + y) * ${o.tileM}u;
  let col0 = wg.x * ${MATMUL_WG_X * o.tileN}u + x;
#if ${!!o.quad}
  // No early return: quad operations need all four invocations, and the rows are clamped anyway.
  let quadLane = subgroupLane % 4u;
#else
  if (row0 >= dims.M) { return; }
#endif
  // Out-of-range rows and columns read row M−1 / column N−1 (valid memory); store() drops them.
${rows.map((i) => `  let m${i} = min(row0 + ${i}u, dims.M - 1u);`).join('\n')}
${cols.map((j) => `  let n${j} = min(col0 + ${j * MATMUL_WG_X}u, dims.N - 1u);`).join('\n')}
${each((i, j) => `  var c${i}_${j} = 0.0;`, ' ')}
#if ${o.rowSum}
${rows.map((i) => `  var sum${i} = 0.0;`).join('\n')}
#endif
  for (var k = 0u; k < dims.K; k += ${o.vec4 ? 4 : 1}u) {
${loadA}
${loadB}
${each(fma)}
#if ${o.rowSum}
${rows.map((i) => `    sum${i} += ${rowSumOf(i)};`).join('\n')}
#endif
  }
${each((i, j) => `  store(row0 + ${i}u, col0 + ${j * MATMUL_WG_X}u, c${i}_${j});`)}
#if ${o.rowSum}
  // Every column block computed the same row sums; the first invocation of the row writes them.
  if (col0 == 0u) {
${rows.map((i) => `    if (row0 + ${i}u < dims.M) { rowSum[row0 + ${i}u] = sum${i}; }`).join('\n')}
  }
#endif
}
`;
}

/** The epilogue flags and layouts every matmul kernel shares (the register, split-K and tiled ones). */
type Epilogues = Pick<
  MatmulOptions,
  'transA' | 'transB' | 'bias' | 'relu' | 'reluMask' | 'slope' | 'rowSum' | 'reparamBackward' | 'reparamConditioned'
>;

/** Throws for epilogues that exclude each other, naming the kernel. */
export function checkEpilogues(o: Epilogues, kernel: string): void {
  if (o.relu && o.reluMask) throw new Error(`${kernel}: relu (forward) and reluMask (backward) exclude each other`);
  if (o.reparamBackward && (o.bias || o.relu || o.reluMask))
    throw new Error(`${kernel}: reparamBackward takes no other epilogue`);
  if (o.slope !== undefined && !(o.relu || o.reluMask))
    throw new Error(`${kernel}: slope is a form of relu or reluMask`);
  if (o.slope !== undefined && !(Math.fround(o.slope) >= 0 && Math.fround(o.slope) < Infinity))
    throw new Error(`${kernel}: slope must be a finite float32 ≥ 0, got ${o.slope}`);
  if (o.reparamConditioned && !o.reparamBackward)
    throw new Error(`${kernel}: reparamConditioned is a form of reparamBackward`);
}

/** The bindings of a matmul kernel, in matmulBindings' order, with A and B read as `aType` / `bType`. */
export function matmulDeclarationsWGSL(o: Epilogues, aType: string, bType: string): string {
  let binding = 4;
  const biasBinding = o.bias ? binding++ : -1;
  const maskBinding = o.reluMask ? binding++ : -1;
  const rowSumBinding = o.rowSum ? binding++ : -1;
  const mulvBinding = o.reparamBackward ? binding++ : -1;
  const epsBinding = o.reparamBackward ? binding : -1; // the last binding, so no `++`
  return wgsl`struct Dims { M: u32, N: u32, K: u32${o.reparamConditioned ? ', L: u32' : ''} }
@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> A: array<${aType}>;
@group(0) @binding(2) var<storage, read> B: array<${bType}>;
@group(0) @binding(3) var<storage, read_write> C: array<f32>;
#if ${o.bias}
@group(0) @binding(${biasBinding}) var<storage, read> bias: array<f32>;
#endif
#if ${o.reluMask}
@group(0) @binding(${maskBinding}) var<storage, read> mask: array<f32>;
#endif
#if ${o.rowSum}
@group(0) @binding(${rowSumBinding}) var<storage, read_write> rowSum: array<f32>;
#endif
#if ${!!o.reparamBackward}
@group(0) @binding(${mulvBinding}) var<storage, read> mulv: array<f32>; // (M, 2N)
@group(0) @binding(${epsBinding}) var<storage, read> eps: array<f32>;   // (M, N)
#endif

`;
}

/** atA / atB: bounds-checked scalar loads of op(A) and op(B), for shapes that are not vec4. */
export function boundedLoadsWGSL(o: Epilogues): string {
  return wgsl`// Bounds-checked loads, branch-free: the index is clamped to the array and the value masked.
// (With an early return instead, Chromium 156's SwiftShader crashed compiling this kernel.)
fn atA(m: u32, k: u32) -> f32 {
#if ${o.transA}
  let v = A[min(k * dims.M + m, arrayLength(&A) - 1u)];
#else
  let v = A[min(m * dims.K + k, arrayLength(&A) - 1u)];
#endif
  return select(0.0, v, m < dims.M && k < dims.K);
}
fn atB(k: u32, n: u32) -> f32 {
#if ${o.transB}
  let v = B[min(n * dims.K + k, arrayLength(&B) - 1u)];
#else
  let v = B[min(k * dims.N + n, arrayLength(&B) - 1u)];
#endif
  return select(0.0, v, k < dims.K && n < dims.N);
}
`;
}

/** store(): the epilogue for one element, then the store. */
export function matmulEpilogueWGSL(o: Epilogues): string {
  const slope = o.slope === undefined ? '' : f32Literal(o.slope);
  return wgsl`// The epilogue for one element: bias, then ReLU or the ReLU mask, then the store.
fn store(m: u32, n: u32, acc: f32) {
  if (m >= dims.M || n >= dims.N) { return; }
#if ${!!o.reparamConditioned}
  // acc is the gradient of [z ‖ onehot(y)] at (m, n); columns from L on are the one-hot's.
  if (n >= dims.L) { return; }
  let muAt = m * 2u * dims.L + n;
  C[muAt] += acc;
  C[muAt + dims.L] += acc * eps[m * dims.L + n] * 0.5 * exp(0.5 * mulv[muAt + dims.L]);
#elif ${!!o.reparamBackward}
  // acc is dz[m, n]; C is dmulv (M, 2N), already holding the KL gradient.
  let muAt = m * 2u * dims.N + n;
  C[muAt] += acc;
  C[muAt + dims.N] += acc * eps[m * dims.N + n] * 0.5 * exp(0.5 * mulv[muAt + dims.N]);
#else
  let at = m * dims.N + n;
  var v = acc;
#if ${o.bias}
  v += bias[n];
#endif
#if ${o.relu && o.slope === undefined}
  v = max(v, 0.0);
#elif ${o.relu}
  v = select(v * ${slope}, v, v > 0.0);
#endif
#if ${o.reluMask && o.slope === undefined}
  v = select(0.0, v, mask[at] > 0.0);
#elif ${o.reluMask}
  v = select(v * ${slope}, v, mask[at] > 0.0);
#endif
  C[at] = v;
#endif
}

`;
}

/** `v` rounded to float32, as a WGSL expression of its exact bits. */
function f32Literal(v: number): string {
  const bits = new Uint32Array(Float32Array.of(v).buffer)[0]!;
  return `bitcast<f32>(0x${bits.toString(16)}u)`;
}
