/**
 * Float64 CPU references for every GPU kernel, forward and backward. The GPU tests compare
 * against these, so they are written for obviousness rather than speed: plain loops over
 * row-major matrices, each formula spelled out once, no fusion beyond what the kernel fuses.
 *
 * Inputs are any ArrayLike<number> (a Float32Array read back from the GPU works as well as
 * a Float64Array); outputs are fresh Float64Arrays, except `adam`, which updates in place
 * as the optimizer does.
 */

export interface MatmulTranspose {
  transA: boolean;
  transB: boolean;
}

/** A writable numeric array: Float64Array, Float32Array or number[]. */
export interface MutableNumbers {
  readonly length: number;
  [index: number]: number;
}

/**
 * C (M×N) = op(A)·op(B), with the operand layouts of shaders/matmul.wgsl.ts:
 *   A(m,k) = transA ? A[k·M + m] : A[m·K + k]
 *   B(k,n) = transB ? B[n·K + k] : B[k·N + n]
 */
export function matmul(
  A: ArrayLike<number>,
  B: ArrayLike<number>,
  M: number,
  N: number,
  K: number,
  { transA, transB }: MatmulTranspose,
): Float64Array {
  const C = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let sum = 0;
      for (let k = 0; k < K; k++) {
        const a = transA ? A[k * M + m]! : A[m * K + k]!;
        const b = transB ? B[n * K + k]! : B[k * N + n]!;
        sum += a * b;
      }
      C[m * N + n] = sum;
    }
  }
  return C;
}

/** Y (rows×outF) = X·Wᵀ + b, then ReLU if asked; W is (outF, inF) as PyTorch stores it. */
export function linearForward(
  X: ArrayLike<number>,
  W: ArrayLike<number>,
  b: ArrayLike<number>,
  rows: number,
  inF: number,
  outF: number,
  relu: boolean,
): Float64Array {
  const Y = matmul(X, W, rows, outF, inF, { transA: false, transB: true });
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outF; o++) {
      const v = Y[r * outF + o]! + b[o]!;
      Y[r * outF + o] = relu ? Math.max(v, 0) : v;
    }
  }
  return Y;
}

/**
 * Gradients of Y = X·Wᵀ + b given dY. `reluOutput` is the output of the ReLU that produced
 * X (the previous layer's activation): passing it folds that ReLU's backward into dX, as the
 * GPU's masked matmul does. The layer's own ReLU, if any, must already be applied to dY.
 */
export function linearBackward(
  dY: ArrayLike<number>,
  X: ArrayLike<number>,
  W: ArrayLike<number>,
  rows: number,
  inF: number,
  outF: number,
  reluOutput?: ArrayLike<number>,
): { dX: Float64Array; dW: Float64Array; db: Float64Array } {
  const dX = matmul(dY, W, rows, inF, outF, { transA: false, transB: false });
  if (reluOutput !== undefined) {
    for (let i = 0; i < dX.length; i++) if (!(reluOutput[i]! > 0)) dX[i] = 0;
  }
  const dW = matmul(dY, X, outF, inF, rows, { transA: true, transB: false });
  const db = new Float64Array(outF);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outF; o++) db[o] += dY[r * outF + o]!;
  }
  return { dX, dW, db };
}

export function reluForward(x: ArrayLike<number>): Float64Array {
  return Float64Array.from(x, (v) => Math.max(v, 0));
}

/** Masks on the output, like PyTorch's threshold_backward: y > 0 exactly where x > 0. */
export function reluBackward(dy: ArrayLike<number>, y: ArrayLike<number>): Float64Array {
  return Float64Array.from(dy, (g, i) => (y[i]! > 0 ? g : 0));
}

/** σ without overflow for any finite t: exp only ever sees a non-positive argument. */
export function sigmoid(t: number): number {
  if (t >= 0) return 1 / (1 + Math.exp(-t));
  const e = Math.exp(t);
  return e / (1 + e);
}

/** log(1 + eᵗ) without overflow: the exp argument is never positive. */
export function softplus(t: number): number {
  return Math.max(t, 0) + Math.log1p(Math.exp(-Math.abs(t)));
}

export function sigmoidForward(x: ArrayLike<number>): Float64Array {
  return Float64Array.from(x, sigmoid);
}

export function sigmoidBackward(dy: ArrayLike<number>, y: ArrayLike<number>): Float64Array {
  return Float64Array.from(dy, (g, i) => g * y[i]! * (1 - y[i]!));
}

/** z = mu + exp(½·logvar)·ε, where mulv is (rows, 2L) holding [mu ‖ logvar] per row. */
export function reparamForward(mulv: ArrayLike<number>, rows: number, L: number, eps: ArrayLike<number>): Float64Array {
  const z = new Float64Array(rows * L);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < L; j++) {
      const mu = mulv[r * 2 * L + j]!;
      const logvar = mulv[r * 2 * L + L + j]!;
      z[r * L + j] = mu + Math.exp(0.5 * logvar) * eps[r * L + j]!;
    }
  }
  return z;
}

/**
 * dmulvIn + [dz, dz·ε·½·exp(½·logvar)]. The GPU kernel accumulates into the KL gradient the
 * loss kernel already wrote, so the reference takes that as `dmulvIn` (zeros for the
 * reparameterization alone) and returns the sum.
 */
export function reparamBackward(
  mulv: ArrayLike<number>,
  eps: ArrayLike<number>,
  dz: ArrayLike<number>,
  dmulvIn: ArrayLike<number>,
  rows: number,
  L: number,
): Float64Array {
  const dmulv = Float64Array.from(dmulvIn);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < L; j++) {
      const at = r * 2 * L + j;
      const g = dz[r * L + j]!;
      dmulv[at] += g;
      dmulv[at + L] += g * eps[r * L + j]! * 0.5 * Math.exp(0.5 * mulv[at + L]!);
    }
  }
  return dmulv;
}

/**
 * The VAE loss on logits: BCE summed over pixels (PyTorch's binary_cross_entropy of σ(l),
 * with its −100 clamp on each log) plus the KL divergence to N(0, I), and the gradients that
 * start the backward pass. dlogits ignores the clamp, as the GPU kernel does: σ(l) − x is what
 * PyTorch's BCE-then-sigmoid backward reduces to wherever p(1−p) is not vanishingly small.
 * dmulv is the KL gradient only; reparamBackward adds the path through z.
 */
export function bceKl(
  logits: ArrayLike<number>,
  x: ArrayLike<number>,
  mulv: ArrayLike<number>,
  rows: number,
  D: number,
  L: number,
): { loss: number; bce: number; kl: number; dlogits: Float64Array; dmulv: Float64Array } {
  let bce = 0;
  const dlogits = new Float64Array(rows * D);
  for (let i = 0; i < rows * D; i++) {
    const l = logits[i]!;
    const t = x[i]!;
    const logP = Math.max(-softplus(-l), -100);
    const log1mP = Math.max(-softplus(l), -100);
    bce -= t * logP + (1 - t) * log1mP;
    dlogits[i] = sigmoid(l) - t;
  }
  let kl = 0;
  const dmulv = new Float64Array(rows * 2 * L);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < L; j++) {
      const at = r * 2 * L + j;
      const mu = mulv[at]!;
      const logvar = mulv[at + L]!;
      const variance = Math.exp(logvar);
      kl -= 0.5 * (1 + logvar - mu * mu - variance);
      dmulv[at] = mu;
      dmulv[at + L] = 0.5 * (variance - 1);
    }
  }
  return { loss: bce + kl, bce, kl, dlogits, dmulv };
}

export interface AdamOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** [min, max] each parameter is clamped to after its update (the engine's log_sigma: LOG_SIGMA_RANGE). */
  range?: readonly [number, number];
}

/**
 * One Adam step in place, in the operation order of PyTorch 1.13's single-tensor Adam (bias
 * corrections folded into step_size and denom), so float64 results track PyTorch's float32
 * ones as closely as rounding allows. `step` is 1-based.
 */
export function adam(
  params: MutableNumbers,
  grads: ArrayLike<number>,
  m: MutableNumbers,
  v: MutableNumbers,
  step: number,
  { lr, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, range }: AdamOptions,
): void {
  const bc1 = 1 - beta1 ** step;
  const bc2 = 1 - beta2 ** step;
  const stepSize = lr / bc1;
  const sqrtBc2 = Math.sqrt(bc2);
  for (let i = 0; i < params.length; i++) {
    const g = grads[i]!;
    m[i] = beta1 * m[i]! + (1 - beta1) * g;
    v[i] = beta2 * v[i]! + (1 - beta2) * g * g;
    const denom = Math.sqrt(v[i]!) / sqrtBc2 + eps;
    params[i] -= (stepSize * m[i]!) / denom;
    if (range) params[i] = Math.min(Math.max(params[i]!, range[0]), range[1]);
  }
}

/** X (rows, D) = dataset images perm[start … start+rows−1] as byte/255 (divided, like ToTensor). */
export function gather(
  dataU8: ArrayLike<number>,
  D: number,
  perm: ArrayLike<number>,
  start: number,
  rows: number,
): Float64Array {
  const X = new Float64Array(rows * D);
  for (let r = 0; r < rows; r++) {
    const image = perm[start + r]!;
    for (let k = 0; k < D; k++) X[r * D + k] = dataU8[image * D + k]! / 255;
  }
  return X;
}

/** Rows of `m` (rows, width) with onehot(labels[r]) of C classes appended: (rows, width + C). */
export function concatOneHot(
  m: ArrayLike<number>,
  rows: number,
  width: number,
  labels: ArrayLike<number>,
  C: number,
): Float64Array {
  const out = new Float64Array(rows * (width + C));
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < width; k++) out[r * (width + C) + k] = m[r * width + k]!;
    const y = labels[r]!;
    if (y >= 0 && y < C) out[r * (width + C) + width + y] = 1;
  }
  return out;
}

/**
 * The conditional gather: X (rows, D) as `gather`, [x ‖ onehot(y)] (rows, D+C), and the one-hot
 * (rows, C) that fills the last C columns of [z ‖ onehot(y)], with y = labels[perm[start + r]].
 */
export function gatherConditional(
  dataU8: ArrayLike<number>,
  labels: ArrayLike<number>,
  D: number,
  C: number,
  perm: ArrayLike<number>,
  start: number,
  rows: number,
): { X: Float64Array; XY: Float64Array; onehot: Float64Array } {
  const X = gather(dataU8, D, perm, start, rows);
  const y = Array.from({ length: rows }, (_, r) => labels[perm[start + r]!]!);
  return { X, XY: concatOneHot(X, rows, D, y, C), onehot: concatOneHot(new Float64Array(0), rows, 0, y, C) };
}
