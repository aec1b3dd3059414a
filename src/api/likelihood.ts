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
 * probabilities, each log clamped at −100 as it does. The bound is the ELBO for k = 1 and
 * tightens towards log p(x) as k grows.
 */

/** PyTorch's binary_cross_entropy clamps each log at −100, so a pixel costs at most 100 nats. */
const LOG_CLAMP = -100;

/** log p(x|z) = Σ_d x_d·log p_d + (1 − x_d)·log(1 − p_d) for one image; `p` are decoder outputs. */
export function bernoulliLogLikelihood(x: ArrayLike<number>, xOffset: number, p: ArrayLike<number>, pOffset: number, pixels: number): number {
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

/** log N(z; 0, I) − log N(z; mu, diag exp(logvar)) for z = mu + exp(½·logvar)·ε. */
export function priorMinusPosterior(z: ArrayLike<number>, eps: ArrayLike<number>, logvar: ArrayLike<number>, offset: number, latentOffset: number, L: number): number {
  let sum = 0;
  for (let j = 0; j < L; j++) {
    const zj = z[offset + j];
    const e = eps[offset + j];
    sum += e * e - zj * zj + logvar[latentOffset + j];
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
