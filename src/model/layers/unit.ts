/**
 * A layer kind as one unit: PyTorch's name and positional arguments, the shape it makes of its
 * input's, its parameter pieces (PyTorch's names and shapes) and how the program builder runs
 * it. Shapes are per sample, without the batch dimension. The float64 twin of each kind lives
 * in src/reference/layers.ts (the engine never imports src/reference/), keyed by the same kind.
 *
 * What a kind is to the program builder (./programs.ts), its `role`:
 *   product     a matrix product with its own dispatches (Linear, and the convolutions as
 *               implicit matrix products: `forward`, `backward`);
 *   activation  elementwise, folded into the epilogue of the product before it (forward) and of
 *               the dX product after it (backward, masked on its output): no dispatch of its own;
 *   norm        a normalisation with dispatches of its own and buffers besides its parameters
 *               (BatchNorm2d): batch statistics in training, running statistics in every other
 *               pass; the activation after it folds into its own kernels (forward, and the
 *               backward's mask), not into a product's;
 *   view        a reshape of the same floats (Flatten, Unflatten): no dispatch, no buffer.
 */
import type { Dispatch, Gpu } from '../../gpu/device';
import type { Binding } from '../../gpu/ops';
import type { KernelPlan } from '../../gpu/plan';
import type { Span } from '../graph';
import type { Arena } from '../programs';

export type Shape = readonly number[];

/** A parameter piece of one layer: `weight` (out, in), `bias` (out) … */
export interface ParamPiece {
  suffix: string;
  shape: number[];
  /** Every element starts at this value (BatchNorm2d's weight 1, bias 0); absent: PyTorch's U(±1/√fanIn). */
  fill?: number;
}

/**
 * A buffer of one layer (PyTorch's `register_buffer`): in the checkpoint under its name, never
 * seen by Adam. F32 buffers are floats; I64 is a counter kept as two u32 words (low, high).
 */
export interface BufferPiece {
  suffix: string;
  shape: number[];
  dtype: 'F32' | 'I64';
  /** The value every element starts at. */
  fill: number;
}

/** The epilogue an activation contributes: ReLU (no slope) or y = x > 0 ? x : slope·x. */
export interface ActivationEpilogue {
  slope?: number;
}

/** The buffers and spans a product's emitters get. */
export interface ProductContext {
  gpu: Gpu;
  plan: KernelPlan;
  /** The dispatch labels' prefix. */
  label: string;
  arena: Arena;
  pieces: Readonly<Record<string, Span>>;
  rows: number;
  /** The layer's per-sample input shape (a convolution's (C, H, W)). */
  in: Shape;
}

export interface ProductBackward {
  X: Binding;
  dY: Binding;
  /** Absent for a chain's first layer, whose input (x) needs no gradient. */
  dX?: Binding;
  /** The activation that made X, folded into dX: its output is X itself. */
  mask?: ActivationEpilogue;
  /** X is [z ‖ onehot(y)]: dX continues through the reparameterization into dmulv. */
  reparam?: { mulv: Binding; eps: Binding; latent: number };
}

interface UnitBase<A extends readonly unknown[]> {
  kind: string;
  /** Positional arguments in PyTorch's order: how many at least and at most. */
  arity: readonly [number, number];
  /** The arguments with PyTorch's defaults filled in, or the reason they are wrong. */
  args(raw: readonly unknown[]): A | string;
  /** The output shape for `input`, or the reason the layer cannot take it. */
  outShape(args: A, input: Shape): Shape | string;
}

export interface ProductUnit<A extends readonly unknown[] = readonly unknown[]> extends UnitBase<A> {
  role: 'product';
  params(args: A): ParamPiece[];
  /** Inputs of one output: PyTorch's default init draws from U(±1/√fanIn). */
  fanIn(args: A): number;
  forward(c: ProductContext, args: A, X: Binding, Y: Binding, activation?: ActivationEpilogue): Promise<Dispatch[]>;
  backward(c: ProductContext, args: A, b: ProductBackward): Promise<Dispatch[]>;
}

export interface ActivationUnit<A extends readonly unknown[] = readonly unknown[]> extends UnitBase<A> {
  role: 'activation';
  epilogue(args: A): ActivationEpilogue;
}

/** The buffers and spans a norm's emitters get: its parameter pieces and its buffers'. */
export interface NormContext extends ProductContext {
  /** The arena's statistics buffer (./programs.ts Arena.stats) and this layer's spans in it, by suffix. */
  buffers: Readonly<Record<string, Span>>;
}

export interface NormUnit<A extends readonly unknown[] = readonly unknown[]> extends UnitBase<A> {
  role: 'norm';
  params(args: A): ParamPiece[];
  buffers(args: A): BufferPiece[];
  /**
   * Y = act(norm(X)): with `saved` (a training pass) the batch's statistics, saved there for the
   * backward and folded into the running ones; without, the running statistics.
   */
  forward(
    c: NormContext,
    args: A,
    b: { X: Binding; Y: Binding; saved?: Binding },
    activation?: ActivationEpilogue,
  ): Promise<Dispatch[]>;
  /** dX, dweight and dbias from the training forward's X, saved statistics and (with an activation) output Y. */
  backward(
    c: NormContext,
    args: A,
    b: { X: Binding; Y: Binding; saved: Binding; dY: Binding; dX: Binding },
    activation?: ActivationEpilogue,
  ): Promise<Dispatch[]>;
  /** Floats of the training forward's saved statistics (per pass, not state). */
  savedFloats(args: A): number;
}

export interface ViewUnit<A extends readonly unknown[] = readonly unknown[]> extends UnitBase<A> {
  role: 'view';
}

export type LayerUnit = ProductUnit | ActivationUnit | NormUnit | ViewUnit;

export const numel = (shape: Shape): number => shape.reduce((a, b) => a * b, 1);

export const shapeText = (shape: Shape): string => `[${shape.join(', ')}]`;

/** Whether `v` is a whole number from `min` to `max`. */
export const whole = (v: unknown, min: number, max: number): v is number =>
  typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;

/** PyTorch's dim (negative counts from the end) of a batched tensor of `rank` dims, or -1. */
export function batchedDim(dim: unknown, rank: number): number {
  if (typeof dim !== 'number' || !Number.isInteger(dim) || dim < -rank || dim >= rank) return -1;
  return dim < 0 ? dim + rank : dim;
}
