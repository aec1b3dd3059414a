/** nn.Linear(in_features, out_features): Y = X·Wᵀ + b, W stored (out, in) as PyTorch does. */
import { matmulOp } from '../../gpu/ops';
import type { Span } from '../graph';
import { INPUT_SIZE_MAX } from '../settings';
import { shapeText, whole, type ProductUnit } from './unit';

type Args = readonly [inFeatures: number, outFeatures: number];

const at = (buffer: GPUBuffer, span: Span): GPUBufferBinding => ({
  buffer,
  offset: span.offset * 4,
  size: span.length * 4,
});

export const linear: ProductUnit<Args> = {
  kind: 'Linear',
  role: 'product',
  arity: [2, 2],
  args: ([i, o]) =>
    whole(i, 1, INPUT_SIZE_MAX) && whole(o, 1, INPUT_SIZE_MAX)
      ? [i, o]
      : `in_features and out_features must be whole numbers from 1 to ${INPUT_SIZE_MAX}, got ${i}, ${o}`,
  outShape: ([i, o], input) =>
    input.length === 1 && input[0] === i
      ? [o]
      : input.length !== 1
        ? `reads a flat vector of ${i}, got shape ${shapeText(input)} (put ["Flatten"] before it)`
        : `reads ${i} features, got shape ${shapeText(input)}`,
  params: ([i, o]) => [
    { suffix: 'weight', shape: [o, i] },
    { suffix: 'bias', shape: [o] },
  ],
  fanIn: ([i]) => i,

  /** Y (rows, out) = X·Wᵀ + b, with the activation after it in the epilogue. */
  forward: async ({ gpu, plan, label, arena, pieces, rows }, [i, o], X, Y, activation) => [
    await matmulOp(
      gpu,
      label,
      { M: rows, N: o, K: i },
      { transA: false, transB: true, relu: !!activation, ...(activation?.slope !== undefined ? activation : {}) },
      { A: X, B: at(arena.params, pieces.weight!), C: Y, bias: at(arena.params, pieces.bias!) },
      plan,
    ),
  ],

  /**
   * dW = dYᵀ·X with db = the row sums of dYᵀ (one product), then dX = dY·W: masked by the
   * activation that produced X (X itself), or — when X is z — continued through the
   * reparameterization into dmulv. No dX for a chain's first layer.
   */
  async backward({ gpu, plan, label, arena, pieces, rows }, [i, o], b) {
    const out = [
      await matmulOp(
        gpu,
        `${label} dW`,
        { M: o, N: i, K: rows },
        { transA: true, transB: false },
        { A: b.dY, B: b.X, C: at(arena.grads, pieces.weight!), rowSum: at(arena.grads, pieces.bias!) },
        plan,
      ),
    ];
    if (!b.dX) return out;
    // A conditional decoder's input is [z ‖ onehot(y)]: its product is wider than z, and the
    // epilogue keeps the first `latent` columns (reparamConditioned).
    const conditioned = !!b.reparam && b.reparam.latent < i;
    out.push(
      await matmulOp(
        gpu,
        `${label} dX${b.reparam ? '→dmulv' : ''}`,
        { M: rows, N: i, K: o, ...(conditioned ? { L: b.reparam!.latent } : {}) },
        {
          transA: false,
          transB: false,
          ...(conditioned ? { reparamConditioned: true } : {}),
          ...(b.mask?.slope !== undefined ? { slope: b.mask.slope } : {}),
        },
        {
          A: b.dY,
          B: at(arena.params, pieces.weight!),
          C: b.dX,
          mask: b.mask ? b.X : undefined,
          mulv: b.reparam?.mulv,
          eps: b.reparam?.eps,
        },
        plan,
      ),
    );
    return out;
  },
};
