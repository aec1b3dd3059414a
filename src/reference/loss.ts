/**
 * Float64 reference of the general objective (shaders/loss.wgsl.ts, `elbo`): the Bernoulli or
 * Gaussian likelihood's negative log-likelihood summed over pixels, plus β_t·KL, with the
 * gradients that start the backward pass. `bceKl` (./ops) is the β = 1 Bernoulli case.
 */
import { bceKl } from './ops';

/** ½·log(2π): the Gaussian's normalizer per pixel, so the loss is a negative log-density in nats. */
export const HALF_LOG_2PI = 0.5 * Math.log(2 * Math.PI);

/**
 * The KL weight of Adam step `step` (1-based: the first step is 1) under a linear warm-up over
 * `warmup` steps: β·min(1, step/warmup); no warm-up (0) is β throughout.
 */
export function betaAt(beta: number, warmup: number, step: number): number {
  return warmup === 0 ? beta : beta * Math.min(1, step / warmup);
}

export interface ElboOptions {
  likelihood: 'bernoulli' | 'gaussian';
  /** β_t, the weight of the KL term in the objective and its gradients. */
  beta: number;
  /** Gaussian: log σ, one value (fixed σ) or one per pixel (learned, length D). */
  logSigma?: number | ArrayLike<number>;
}

export interface ElboResult {
  /** Negative log-likelihood summed over pixels (BCE for Bernoulli), nats. */
  recon: number;
  kl: number;
  /** recon + kl: the reference model's loss, what the log prints. */
  loss: number;
  /** recon + β·kl: what training minimizes. */
  objective: number;
  /** d objective / d decoder output (logits, or the Gaussian's mean). */
  dlogits: Float64Array;
  /** β·(the KL gradient); the reparameterization's path is added by reparamBackward. */
  dmulv: Float64Array;
  /** Gaussian: d objective / d log σ per pixel (D values; for a fixed σ, what it would be). */
  dlogSigma?: Float64Array;
}

/** `out` is (rows, D) logits (Bernoulli) or means (Gaussian); x (rows, D); mulv (rows, 2L). */
export function elbo(
  out: ArrayLike<number>,
  x: ArrayLike<number>,
  mulv: ArrayLike<number>,
  rows: number,
  D: number,
  L: number,
  o: ElboOptions,
): ElboResult {
  // The KL term and its gradient are bceKl's (it computes both from mulv alone).
  const base = bceKl(
    o.likelihood === 'bernoulli' ? out : new Float64Array(rows * D),
    o.likelihood === 'bernoulli' ? x : new Float64Array(rows * D),
    mulv,
    rows,
    D,
    L,
  );
  const dmulv = base.dmulv.map((g) => o.beta * g);
  if (o.likelihood === 'bernoulli') {
    return {
      recon: base.bce,
      kl: base.kl,
      loss: base.bce + base.kl,
      objective: base.bce + o.beta * base.kl,
      dlogits: base.dlogits,
      dmulv,
    };
  }
  const s = (d: number) => (typeof o.logSigma === 'number' ? o.logSigma : o.logSigma![d]!);
  let recon = 0;
  const dlogits = new Float64Array(rows * D);
  const dlogSigma = new Float64Array(D);
  for (let r = 0; r < rows; r++) {
    for (let d = 0; d < D; d++) {
      const i = r * D + d;
      const precision = Math.exp(-2 * s(d)); // 1/σ²
      const diff = out[i]! - x[i]!;
      recon += HALF_LOG_2PI + s(d) + 0.5 * diff * diff * precision;
      dlogits[i] = diff * precision;
      dlogSigma[d] += 1 - diff * diff * precision;
    }
  }
  return { recon, kl: base.kl, loss: recon + base.kl, objective: recon + o.beta * base.kl, dlogits, dmulv, dlogSigma };
}
