/**
 * Float64 references for Conv2d and ConvTranspose2d, forward and backward, straight from
 * PyTorch's definitions: NCHW images, weights (out, in, kh, kw) and (in, out, kh, kw). Conv2d is
 * written as a gather (each output sums its taps), ConvTranspose2d as a scatter (each input
 * pixel adds its kernel-sized patch to the output) — the opposite of how the GPU kernels read
 * them, so the two are not the same code twice.
 */

/** A conv layer on an input of batch × inC × H × W (square kernels, PyTorch's arguments). */
export interface ConvShape {
  batch: number;
  inC: number;
  H: number;
  W: number;
  outC: number;
  kernel: number;
  stride: number;
  padding: number;
  /** ConvTranspose2d only. */
  outputPadding?: number;
}

/** Output height and width: Conv2d's floor((H + 2p − k)/s) + 1, ConvTranspose2d's (H−1)s − 2p + k + op. */
export function convOutput(s: ConvShape, transpose: boolean): [number, number] {
  const out = (n: number) =>
    transpose
      ? (n - 1) * s.stride - 2 * s.padding + s.kernel + (s.outputPadding ?? 0)
      : Math.floor((n + 2 * s.padding - s.kernel) / s.stride) + 1;
  return [out(s.H), out(s.W)];
}

/**
 * Visits every (input pixel, weight tap, output pixel) triple the layer joins, as Conv2d
 * defines it: output (b, o, oy, ox) takes input (b, i, oy·s − p + ky, ox·s − p + kx). `inAt`,
 * `wAt`, `outAt` are flat indices; taps falling outside the input are skipped (zero padding).
 * For ConvTranspose2d the same triples are the transpose's with its roles swapped.
 */
function forEachTap(
  batch: number,
  inC: number,
  [H, W]: [number, number],
  outC: number,
  [Ho, Wo]: [number, number],
  k: number,
  stride: number,
  pad: number,
  weightAt: (o: number, i: number, ky: number, kx: number) => number,
  visit: (inAt: number, wAt: number, outAt: number) => void,
): void {
  for (let b = 0; b < batch; b++)
    for (let o = 0; o < outC; o++)
      for (let oy = 0; oy < Ho; oy++)
        for (let ox = 0; ox < Wo; ox++) {
          const outAt = ((b * outC + o) * Ho + oy) * Wo + ox;
          for (let i = 0; i < inC; i++)
            for (let ky = 0; ky < k; ky++) {
              const iy = oy * stride - pad + ky;
              if (iy < 0 || iy >= H) continue;
              for (let kx = 0; kx < k; kx++) {
                const ix = ox * stride - pad + kx;
                if (ix < 0 || ix >= W) continue;
                visit(((b * inC + i) * H + iy) * W + ix, weightAt(o, i, ky, kx), outAt);
              }
            }
        }
}

/**
 * The layer's (input, weight, output) triples: Conv2d's as forEachTap gives them, ConvTranspose2d's
 * as Conv2d's with its input and output swapped (its output is the gather's input).
 */
function layerTaps(s: ConvShape, transpose: boolean, visit: (xi: number, wi: number, yi: number) => void): void {
  const k = s.kernel;
  const out = convOutput(s, transpose);
  if (!transpose)
    forEachTap(
      s.batch,
      s.inC,
      [s.H, s.W],
      s.outC,
      out,
      k,
      s.stride,
      s.padding,
      (o, i, ky, kx) => ((o * s.inC + i) * k + ky) * k + kx,
      visit,
    );
  else
    forEachTap(
      s.batch,
      s.outC,
      out,
      s.inC,
      [s.H, s.W],
      k,
      s.stride,
      s.padding,
      (i, o, ky, kx) => ((i * s.outC + o) * k + ky) * k + kx,
      (yi, wi, xi) => visit(xi, wi, yi),
    );
}

function forward(
  X: ArrayLike<number>,
  Wt: ArrayLike<number>,
  bias: ArrayLike<number> | null,
  s: ConvShape,
  transpose: boolean,
): Float64Array {
  const [Ho, Wo] = convOutput(s, transpose);
  const Y = new Float64Array(s.batch * s.outC * Ho * Wo);
  layerTaps(s, transpose, (xi, wi, yi) => (Y[yi] += X[xi]! * Wt[wi]!));
  if (bias) for (let yi = 0; yi < Y.length; yi++) Y[yi] += bias[Math.floor(yi / (Ho * Wo)) % s.outC]!;
  return Y;
}

function backward(
  dY: ArrayLike<number>,
  X: ArrayLike<number>,
  Wt: ArrayLike<number>,
  s: ConvShape,
  transpose: boolean,
): { dX: Float64Array; dW: Float64Array; db: Float64Array } {
  const [Ho, Wo] = convOutput(s, transpose);
  const dX = new Float64Array(s.batch * s.inC * s.H * s.W);
  const dW = new Float64Array(Wt.length);
  const db = new Float64Array(s.outC);
  layerTaps(s, transpose, (xi, wi, yi) => {
    dX[xi] += dY[yi]! * Wt[wi]!;
    dW[wi] += dY[yi]! * X[xi]!;
  });
  for (let yi = 0; yi < dY.length; yi++) db[Math.floor(yi / (Ho * Wo)) % s.outC] += dY[yi]!;
  return { dX, dW, db };
}

/** Y = conv2d(X, W) + b: X (batch, inC, H, W), W (outC, inC, k, k), Y (batch, outC, Ho, Wo). */
export function conv2dForward(
  X: ArrayLike<number>,
  Wt: ArrayLike<number>,
  bias: ArrayLike<number> | null,
  s: ConvShape,
): Float64Array {
  return forward(X, Wt, bias, s, false);
}

/** dX, dW and db of Conv2d from dY (batch, outC, Ho, Wo). */
export function conv2dBackward(dY: ArrayLike<number>, X: ArrayLike<number>, Wt: ArrayLike<number>, s: ConvShape) {
  return backward(dY, X, Wt, s, false);
}

/**
 * Y = conv_transpose2d(X, W) + b: X (batch, inC, H, W), W (inC, outC, k, k), Y (batch, outC,
 * Ho, Wo) — each input pixel scatters W's patch into Y at (iy·s − p + ky, ix·s − p + kx);
 * output_padding only adds rows and columns that no pixel reaches (they hold the bias).
 */
export function convTranspose2dForward(
  X: ArrayLike<number>,
  Wt: ArrayLike<number>,
  bias: ArrayLike<number> | null,
  s: ConvShape,
): Float64Array {
  return forward(X, Wt, bias, s, true);
}

/** dX, dW and db of ConvTranspose2d from dY (batch, outC, Ho, Wo). */
export function convTranspose2dBackward(
  dY: ArrayLike<number>,
  X: ArrayLike<number>,
  Wt: ArrayLike<number>,
  s: ConvShape,
) {
  return backward(dY, X, Wt, s, true);
}
