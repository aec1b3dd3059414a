/**
 * The importance-weighted estimate of log p(x) (Burda et al., "Importance Weighted
 * Autoencoders", 2016) — the test log-likelihood VAE papers report — computed in float64 on
 * the CPU from what the GPU's encoder and decoder produce.
 *
 * With q(z|x) = N(mu, diag exp(logvar)) from the encoder, z_j = mu + exp(½·logvar)·ε_j and
 * ε_j ~ N(0, I) for j = 1..k:
 *
 *   log p(x) ≥ log (1/k) Σ_j w_j,   log w_j = log p(x|z_j) + log N(z_j; 0, I) − log q(z_j|x)
 *
 * The two Gaussian densities share the normalizer (2π)^(−L/2), so
 *   log N(z; 0, I) − log q(z|x) = ½·Σ (ε² − z² + logvar)
 * and log p(x|z) = Σ_d [x_d·log p_d + (1 − x_d)·log(1 − p_d)] is the negative of the
 * reconstruction term of the training loss: PyTorch's binary_cross_entropy on the decoder's
 * probabilities, each log clamped at −100 as it does. For a Gaussian model it is
 * Σ_d −[½·log(2π) + log σ_d + (x_d − μ_d)²/(2σ_d²)] on the decoder's (unclamped) mean, the
 * training loss's reconstruction term with its constants, so the figure is a log-density in
 * nats (of continuous pixels, so not comparable with a Bernoulli model's log-probability). The
 * bound is the ELBO for k = 1 and tightens towards log p(x) as k grows.
 *
 * For a conditional VAE every density is conditioned on the image's label y — q(z|x, y),
 * p(x|z, y), with the prior N(0, I) — so the same sum estimates log p(x | y), not log p(x).
 */
import { PHILOX_STREAM } from '../../shaders/philox.wgsl';
import { HALF_LOG_2PI } from '../../shaders/loss.wgsl';
import { likelihoodOf } from '../model/graph';
import type { Inference } from '../model/inference';
import { normals } from '../model/philox';

/** Philox stream of the importance-sampling noise ε: apart from every stream the engine uses. */
export const IWAE_STREAM = 8;
if ((Object.values(PHILOX_STREAM) as number[]).includes(IWAE_STREAM))
  throw new Error('IWAE_STREAM collides with an engine stream');

/** Decoder rows per GPU round trip: 4096 × 784 floats = 12.8 MB read back at a time. */
const ROWS_PER_DECODE = 4096;

/** PyTorch's binary_cross_entropy clamps each log at −100, so a pixel costs at most 100 nats. */
const LOG_CLAMP = -100;

/** log p(x|z) = Σ_d x_d·log p_d + (1 − x_d)·log(1 − p_d) for one image; `p` are decoder outputs. */
export function bernoulliLogLikelihood(
  x: ArrayLike<number>,
  xOffset: number,
  p: ArrayLike<number>,
  pOffset: number,
  pixels: number,
): number {
  let sum = 0;
  for (let d = 0; d < pixels; d++) {
    const t = x[xOffset + d];
    const pd = p[pOffset + d];
    const logP = Math.max(Math.log(pd), LOG_CLAMP);
    const log1mP = Math.max(Math.log(1 - pd), LOG_CLAMP);
    sum += t * logP + (1 - t) * log1mP;
  }
  return sum;
}

/** log p(x|z) of one image under the Gaussian with mean `mean` and log σ `logSigma` (a value or per pixel). */
export function gaussianLogLikelihood(
  x: ArrayLike<number>,
  xOffset: number,
  mean: ArrayLike<number>,
  meanOffset: number,
  pixels: number,
  logSigma: number | ArrayLike<number>,
): number {
  let sum = 0;
  for (let d = 0; d < pixels; d++) {
    const s = typeof logSigma === 'number' ? logSigma : logSigma[d]!;
    const diff = x[xOffset + d]! - mean[meanOffset + d]!;
    sum -= HALF_LOG_2PI + s + 0.5 * diff * diff * Math.exp(-2 * s);
  }
  return sum;
}

/**
 * log N(z; 0, I) − log N(z; mu, diag exp(logvar)) for z = mu + exp(½·logvar)·ε: z and ε at
 * `offset`, logvar at `logvarOffset` (both L values).
 */
export function priorMinusPosterior(
  z: ArrayLike<number>,
  eps: ArrayLike<number>,
  logvar: ArrayLike<number>,
  offset: number,
  logvarOffset: number,
  L: number,
): number {
  let sum = 0;
  for (let j = 0; j < L; j++) {
    const zj = z[offset + j];
    const e = eps[offset + j];
    sum += e * e - zj * zj + logvar[logvarOffset + j];
  }
  return 0.5 * sum;
}

/** log((1/k) Σ exp(values)), shifted by the maximum so nothing overflows. */
export function logMeanExp(values: ArrayLike<number>): number {
  let max = -Infinity;
  for (let i = 0; i < values.length; i++) max = Math.max(max, values[i]);
  if (max === -Infinity) return -Infinity;
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += Math.exp(values[i] - max);
  return max + Math.log(sum / values.length);
}

export interface ImportanceSamplingInput {
  /** (count, D) pixels in [0, 1]. */
  x: Float32Array;
  /** (count, 2L) encoder outputs [mu ‖ logvar]. */
  mulv: Float32Array;
  count: number;
  /** Samples per image. */
  k: number;
  D: number;
  L: number;
  /** ε for image i is Philox (seed, step i, IWAE_STREAM), so the estimate is reproducible. */
  seed: number;
  /**
   * The decoder on the GPU: (rows, L) latents (with each row's label, for a conditional VAE) →
   * (rows, D) probabilities (Bernoulli) or means (Gaussian).
   */
  decode: (z: Float32Array, rows: number, labels?: Uint32Array) => Promise<Float32Array>;
  /** A conditional VAE's label of each image: the estimate is then of log p(x | y). */
  labels?: Uint32Array;
  /** Absent: Bernoulli. Gaussian: log σ, one fixed value or one per pixel (the model's log_sigma). */
  gaussian?: { logSigma: number | Float32Array };
}

/**
 * The average over images of log (1/k) Σ_j w_j. Images go to the decoder in groups of up to
 * ROWS_PER_DECODE / k, each group's k·D probabilities per image coming back to the CPU.
 */
export async function importanceWeightedLogLikelihood(input: ImportanceSamplingInput): Promise<number> {
  const { x, mulv, count, k, D, L, seed } = input;
  const imagesPerGroup = Math.max(1, Math.floor(ROWS_PER_DECODE / k));
  const logWeights = new Float64Array(k);
  let total = 0;
  for (let first = 0; first < count; first += imagesPerGroup) {
    const n = Math.min(imagesPerGroup, count - first);
    const z = new Float32Array(n * k * L); // (n·k, L): image i's samples are rows i·k … i·k + k − 1
    const eps = new Float64Array(n * k * L);
    for (let i = 0; i < n; i++) {
      eps.set(normals(k * L, seed, first + i, IWAE_STREAM), i * k * L);
      const row = (first + i) * 2 * L;
      for (let e = 0; e < k * L; e++) {
        const l = e % L;
        z[i * k * L + e] = mulv[row + l] + Math.exp(0.5 * mulv[row + L + l]) * eps[i * k * L + e];
      }
    }
    // Each image's k samples decode with its own label.
    const labels =
      input.labels && Uint32Array.from({ length: n * k }, (_, r) => input.labels![first + Math.floor(r / k)]!);
    const p = await input.decode(z, n * k, labels);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < k; j++) {
        const r = i * k + j;
        const logPxz = input.gaussian
          ? gaussianLogLikelihood(x, (first + i) * D, p, r * D, D, input.gaussian.logSigma)
          : bernoulliLogLikelihood(x, (first + i) * D, p, r * D, D);
        logWeights[j] = logPxz + priorMinusPosterior(z, eps, mulv, r * L, (first + i) * 2 * L + L, L);
      }
      total += logMeanExp(logWeights);
    }
  }
  return total / count;
}

/**
 * The estimate for a model: its encoder gives q(z|x) for the `count` images `x` (with their
 * `labels`, for a conditional model), and its decoder p(x|z) under the model's likelihood — a
 * Gaussian model's on the decoder's unclamped mean, with its σ (fixed, or the learned log_sigma).
 */
export async function modelLogLikelihood(
  inference: Inference,
  input: { x: Float32Array; count: number; k: number; seed: number; labels?: Uint32Array },
): Promise<number> {
  const { x, count, labels } = input;
  const model = inference.model;
  const { D, L } = model.sizes;
  const mulv = await inference.encode(x, count, labels);
  const l = likelihoodOf(model.sizes);
  const logSigma =
    l.kind !== 'gaussian'
      ? undefined
      : l.sigma === 'learned'
        ? await model.gpu.readFloats(model.params, model.layout.logSigma!.offset, D)
        : Math.log(l.sigma);
  return importanceWeightedLogLikelihood({
    ...input,
    mulv,
    D,
    L,
    decode: (z, rows, rowLabels) => inference.decode(z, rows, rowLabels, logSigma !== undefined),
    gaussian: logSigma === undefined ? undefined : { logSigma },
  });
}
