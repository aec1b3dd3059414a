/**
 * The whole VAE (PyTorch examples: D → H → (L, L) → H → D) on the CPU in float64, composed
 * from the kernel references in ./ops exactly as the GPU composes its kernels, so a mismatch
 * on the GPU can be narrowed to one kernel by comparing intermediates.
 *
 * fc21 and fc22 run as one layer with their weights stacked into a (2L, H) matrix, which
 * yields the [mu ‖ logvar] rows the reparameterization and loss kernels read.
 */
import { bceKl, linearBackward, linearForward, reparamBackward, reparamForward } from './ops';

export interface VaeSizes {
  D: number;
  H: number;
  L: number;
}

/** Parameters under their PyTorch names, row-major in PyTorch's shapes (weight = (out, in)). */
export interface VaeParams {
  'fc1.weight': Float64Array;
  'fc1.bias': Float64Array;
  'fc21.weight': Float64Array;
  'fc21.bias': Float64Array;
  'fc22.weight': Float64Array;
  'fc22.bias': Float64Array;
  'fc3.weight': Float64Array;
  'fc3.bias': Float64Array;
  'fc4.weight': Float64Array;
  'fc4.bias': Float64Array;
}

/** model.named_parameters() order, which checkpoints and the optimizer state follow. */
export const PARAM_NAMES: readonly (keyof VaeParams)[] = [
  'fc1.weight', 'fc1.bias',
  'fc21.weight', 'fc21.bias',
  'fc22.weight', 'fc22.bias',
  'fc3.weight', 'fc3.bias',
  'fc4.weight', 'fc4.bias',
];

export function paramShapes({ D, H, L }: VaeSizes): Record<keyof VaeParams, number[]> {
  return {
    'fc1.weight': [H, D], 'fc1.bias': [H],
    'fc21.weight': [L, H], 'fc21.bias': [L],
    'fc22.weight': [L, H], 'fc22.bias': [L],
    'fc3.weight': [H, L], 'fc3.bias': [H],
    'fc4.weight': [D, H], 'fc4.bias': [D],
  };
}

function concat(a: Float64Array, b: Float64Array): Float64Array {
  const out = new Float64Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

function forward(p: VaeParams, { D, H, L }: VaeSizes, x: ArrayLike<number>, eps: ArrayLike<number>, rows: number) {
  const W2 = concat(p['fc21.weight'], p['fc22.weight']);
  const b2 = concat(p['fc21.bias'], p['fc22.bias']);
  const h1 = linearForward(x, p['fc1.weight'], p['fc1.bias'], rows, D, H, true);
  const mulv = linearForward(h1, W2, b2, rows, H, 2 * L, false);
  const z = reparamForward(mulv, rows, L, eps);
  const h3 = linearForward(z, p['fc3.weight'], p['fc3.bias'], rows, L, H, true);
  const logits = linearForward(h3, p['fc4.weight'], p['fc4.bias'], rows, H, D, false);
  const loss = bceKl(logits, x, mulv, rows, D, L);
  return { W2, h1, mulv, z, h3, logits, loss };
}

function splitMulv(mulv: Float64Array, rows: number, L: number) {
  const mu = new Float64Array(rows * L);
  const logvar = new Float64Array(rows * L);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < L; j++) {
      mu[r * L + j] = mulv[r * 2 * L + j]!;
      logvar[r * L + j] = mulv[r * 2 * L + L + j]!;
    }
  }
  return { mu, logvar };
}

/** Forward and backward for one batch x (rows, D) with noise eps (rows, L); loss is summed. */
export function vaeForwardBackward(
  p: VaeParams,
  s: VaeSizes,
  x: ArrayLike<number>,
  eps: ArrayLike<number>,
  rows: number,
): {
  loss: number;
  bce: number;
  kl: number;
  mu: Float64Array;
  logvar: Float64Array;
  logits: Float64Array;
  z: Float64Array;
  grads: VaeParams;
} {
  const { D, H, L } = s;
  const f = forward(p, s, x, eps, rows);
  // Each layer's own ReLU is folded into the next layer's dX through `reluOutput`.
  const g4 = linearBackward(f.loss.dlogits, f.h3, p['fc4.weight'], rows, H, D, f.h3);
  const g3 = linearBackward(g4.dX, f.z, p['fc3.weight'], rows, L, H);
  const dmulv = reparamBackward(f.mulv, eps, g3.dX, f.loss.dmulv, rows, L);
  const g2 = linearBackward(dmulv, f.h1, f.W2, rows, H, 2 * L, f.h1);
  const g1 = linearBackward(g2.dX, x, p['fc1.weight'], rows, D, H);
  const grads: VaeParams = {
    'fc1.weight': g1.dW,
    'fc1.bias': g1.db,
    'fc21.weight': g2.dW.slice(0, L * H),
    'fc21.bias': g2.db.slice(0, L),
    'fc22.weight': g2.dW.slice(L * H),
    'fc22.bias': g2.db.slice(L),
    'fc3.weight': g3.dW,
    'fc3.bias': g3.db,
    'fc4.weight': g4.dW,
    'fc4.bias': g4.db,
  };
  return {
    loss: f.loss.loss,
    bce: f.loss.bce,
    kl: f.loss.kl,
    ...splitMulv(f.mulv, rows, L),
    logits: f.logits,
    z: f.z,
    grads,
  };
}

/** The summed loss alone, for finite differences and evaluation. */
export function vaeLoss(p: VaeParams, s: VaeSizes, x: ArrayLike<number>, eps: ArrayLike<number>, rows: number): number {
  return forward(p, s, x, eps, rows).loss.loss;
}
