/**
 * Float64 twins of the BatchNorm2d kernels (shaders/batchnorm.wgsl.ts), written for obviousness:
 * NCHW tensors as flat arrays, a channel's N·H·W values gathered by plain loops, the statistics
 * by the textbook two passes (in float64 nothing cleverer is needed).
 *
 *   training:   μ = mean over N·H·W, σ² = biased variance, x̂ = (x − μ)/√(σ² + eps), y = γ·x̂ + β
 *               running_mean ← (1 − m)·running_mean + m·μ
 *               running_var  ← (1 − m)·running_var + m·σ²·M/(M − 1)    (the unbiased variance, M = N·H·W)
 *               num_batches_tracked ← num_batches_tracked + 1
 *   evaluation: y = γ·(x − running_mean)/√(running_var + eps) + β
 *   an optional activation after the norm: ReLU or LeakyReLU(negative_slope), as PyTorch's.
 *
 * As PyTorch, training refuses a channel of one value (M = 1): its variance is undefined.
 */
import type { BatchnormActivation, BatchnormDims } from '../gpu/batchnorm-ops';

export interface RunningStats {
  mean: ArrayLike<number>;
  var: ArrayLike<number>;
  /** num_batches_tracked */
  tracked: number;
}

/** Element i of channel c's N·H·W values: sample n = ⌊j / HW⌋, pixel j mod HW. */
function at(d: BatchnormDims, c: number, j: number): number {
  const HW = d.H * d.W;
  const n = Math.floor(j / HW);
  return (n * d.C + c) * HW + (j - n * HW);
}

function activate(v: number, a?: BatchnormActivation): number {
  if (!a || v > 0) return v;
  return a.kind === 'relu' ? 0 : a.negativeSlope * v;
}

/** dL/d(pre-activation) from dL/d(output) and the output, as PyTorch's ReLU and LeakyReLU backward (slope ≥ 0). */
function activationGrad(dy: number, y: number, a?: BatchnormActivation): number {
  if (!a || y > 0) return dy;
  return a.kind === 'relu' ? 0 : a.negativeSlope * dy;
}

/** Per channel: the mean and the biased variance over N·H·W, two passes. */
export function batchStats(x: ArrayLike<number>, d: BatchnormDims): { mean: Float64Array; var: Float64Array } {
  const M = d.N * d.H * d.W;
  const mean = new Float64Array(d.C);
  const variance = new Float64Array(d.C);
  for (let c = 0; c < d.C; c++) {
    let s = 0;
    for (let j = 0; j < M; j++) s += x[at(d, c, j)]!;
    mean[c] = s / M;
    let q = 0;
    for (let j = 0; j < M; j++) q += (x[at(d, c, j)]! - mean[c]!) ** 2;
    variance[c] = q / M;
  }
  return { mean, var: variance };
}

export function checkTrainable(d: BatchnormDims): void {
  if (d.N * d.H * d.W < 2) {
    throw new Error(
      `BatchNorm2d: expected more than 1 value per channel when training, got input size [${d.N}, ${d.C}, ${d.H}, ${d.W}]`,
    );
  }
}

export interface TrainForward {
  y: Float64Array;
  /** The batch statistics the backward pass uses: μ and 1/√(σ² + eps) per channel. */
  mean: Float64Array;
  invstd: Float64Array;
  /** Biased variance per channel. */
  var: Float64Array;
  running: { mean: Float64Array; var: Float64Array; tracked: number };
}

export function batchnormTrainForward(
  x: ArrayLike<number>,
  gamma: ArrayLike<number>,
  beta: ArrayLike<number>,
  running: RunningStats,
  d: BatchnormDims,
  o: { eps: number; momentum: number; activation?: BatchnormActivation },
): TrainForward {
  checkTrainable(d);
  const M = d.N * d.H * d.W;
  const stats = batchStats(x, d);
  const invstd = Float64Array.from(stats.var, (v) => 1 / Math.sqrt(v + o.eps));
  const y = new Float64Array(d.N * d.C * d.H * d.W);
  for (let c = 0; c < d.C; c++) {
    for (let j = 0; j < M; j++) {
      const i = at(d, c, j);
      y[i] = activate(gamma[c]! * (x[i]! - stats.mean[c]!) * invstd[c]! + beta[c]!, o.activation);
    }
  }
  const m = o.momentum;
  return {
    y,
    mean: stats.mean,
    invstd,
    var: stats.var,
    running: {
      mean: Float64Array.from(running.mean, (r, c) => (1 - m) * r + m * stats.mean[c]!),
      var: Float64Array.from(running.var, (r, c) => (1 - m) * r + (m * stats.var[c]! * M) / (M - 1)),
      tracked: running.tracked + 1,
    },
  };
}

export function batchnormEvalForward(
  x: ArrayLike<number>,
  gamma: ArrayLike<number>,
  beta: ArrayLike<number>,
  running: Pick<RunningStats, 'mean' | 'var'>,
  d: BatchnormDims,
  o: { eps: number; activation?: BatchnormActivation },
): Float64Array {
  const HW = d.H * d.W;
  return Float64Array.from({ length: d.N * d.C * HW }, (_, i) => {
    const c = Math.floor(i / HW) % d.C;
    return activate(
      (gamma[c]! * (x[i]! - running.mean[c]!)) / Math.sqrt(running.var[c]! + o.eps) + beta[c]!,
      o.activation,
    );
  });
}

/**
 * The training-mode backward: with g = dL/d(pre-activation), x̂ as in the forward pass,
 *   dβ = Σ g,   dγ = Σ g·x̂,   dx = γ/√(σ² + eps)·(g − dβ/M − x̂·dγ/M)
 * (the full gradient through the batch's mean and variance). `y` is the forward output, for
 * the activation's mask; the statistics are recomputed from x.
 */
export function batchnormBackward(
  x: ArrayLike<number>,
  dy: ArrayLike<number>,
  gamma: ArrayLike<number>,
  d: BatchnormDims,
  o: { eps: number; activation?: BatchnormActivation; y?: ArrayLike<number> },
): { dx: Float64Array; dgamma: Float64Array; dbeta: Float64Array } {
  checkTrainable(d);
  if (o.activation && !o.y) throw new Error('batchnormBackward: an activation needs the forward output y');
  const M = d.N * d.H * d.W;
  const stats = batchStats(x, d);
  const dx = new Float64Array(d.N * d.C * d.H * d.W);
  const dgamma = new Float64Array(d.C);
  const dbeta = new Float64Array(d.C);
  for (let c = 0; c < d.C; c++) {
    const invstd = 1 / Math.sqrt(stats.var[c]! + o.eps);
    const xhat = (i: number) => (x[i]! - stats.mean[c]!) * invstd;
    const g = (i: number) => activationGrad(dy[i]!, o.y?.[i] ?? 0, o.activation);
    for (let j = 0; j < M; j++) {
      const i = at(d, c, j);
      dbeta[c] += g(i);
      dgamma[c] += g(i) * xhat(i);
    }
    for (let j = 0; j < M; j++) {
      const i = at(d, c, j);
      dx[i] = gamma[c]! * invstd * (g(i) - dbeta[c]! / M - (xhat(i) * dgamma[c]!) / M);
    }
  }
  return { dx, dgamma, dbeta };
}
