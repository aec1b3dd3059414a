/**
 * The float64 twin of each layer kind of src/model/layers, keyed by the same kind (the type
 * makes a kind without its twin a compile error). Rows are the batch; `x` and `y` are a layer's
 * input and output, (rows, features) row-major; a product's parameters come in PyTorch's shapes.
 * Activations differentiate on their input, as PyTorch does; the engine masks on the output, and
 * the layer tests check the two agree.
 */
import type { LayerKind } from '../model/layers';
import { linearBackward, linearForward, reluBackward, reluForward } from './ops';

export interface ReferenceLayer {
  forward(args: readonly unknown[], x: ArrayLike<number>, rows: number, p: Record<string, Float64Array>): Float64Array;
  /** dX, and each parameter's gradient under its suffix. */
  backward(
    args: readonly unknown[],
    dY: ArrayLike<number>,
    x: ArrayLike<number>,
    rows: number,
    p: Record<string, Float64Array>,
  ): { dX: Float64Array; grads: Record<string, Float64Array> };
}

const view: ReferenceLayer = {
  forward: (_, x) => Float64Array.from(x),
  backward: (_, dY) => ({ dX: Float64Array.from(dY), grads: {} }),
};

/** y = x > 0 ? x : slope·x, the slope as the float32 PyTorch keeps. */
const leaky = (slope: number): ReferenceLayer => {
  const s = Math.fround(slope);
  return {
    forward: (_, x) => Float64Array.from(x, (v) => (v > 0 ? v : v * s)),
    backward: (_, dY, x) => ({ dX: Float64Array.from(dY, (g, i) => (x[i]! > 0 ? g : g * s)), grads: {} }),
  };
};

export const REFERENCE_LAYERS: Record<LayerKind, ReferenceLayer> = {
  Linear: {
    forward: ([i, o], x, rows, p) => linearForward(x, p.weight!, p.bias!, rows, i as number, o as number, false),
    backward([i, o], dY, x, rows, p) {
      const g = linearBackward(dY, x, p.weight!, rows, i as number, o as number);
      return { dX: g.dX, grads: { weight: g.dW, bias: g.db } };
    },
  },
  ReLU: {
    forward: (_, x) => reluForward(x),
    backward: (_, dY, x) => ({ dX: reluBackward(dY, x), grads: {} }),
  },
  LeakyReLU: {
    forward: (args, x, rows, p) => leaky(args[0] as number).forward(args, x, rows, p),
    backward: (args, dY, x, rows, p) => leaky(args[0] as number).backward(args, dY, x, rows, p),
  },
  Flatten: view,
  Unflatten: view,
};
