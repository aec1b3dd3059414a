/** The matmul suite's tolerance of a product and its row sums in float64 (test/matmul.test.ts). */

/** f32 dot products of length K: error grows like √K·ε·|partial sums|. */
export const tolerance = (K: number) => ({ rtol: 1e-5, atol: 1e-5 * Math.sqrt(K) });

/** Σ_k op(A)(m, k) in float64: the row sums the rowSum epilogue writes. */
export function rowSums(A: ArrayLike<number>, M: number, K: number, transA: boolean): Float64Array {
  const s = new Float64Array(M);
  for (let m = 0; m < M; m++) for (let k = 0; k < K; k++) s[m] += transA ? A[k * M + m]! : A[m * K + k]!;
  return s;
}
