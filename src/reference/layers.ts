/**
 * The float64 twin of each layer kind of src/model/layers, keyed by the same kind (the type
 * makes a kind without its twin a compile error). Rows are the batch; `x` and `y` are a layer's
 * input and output, (rows, features) row-major (NCHW for an image: the same floats); `input` is
 * one row's shape, (C, H, W) for a convolution; a product's parameters come in PyTorch's shapes.
 * Activations differentiate on their input, as PyTorch does; the engine masks on the output, and
 * the layer tests check the two agree. A layer with buffers (BatchNorm2d) takes `state`: its
 * buffers by suffix, which a training forward updates in place, and whether the pass trains.
 */
import { BATCHNORM_EPS, BATCHNORM_MOMENTUM } from '../../shaders/batchnorm.wgsl';
import type { LayerKind } from '../model/layers';
import type { Shape } from '../model/layers/unit';
import { conv2dBackward, conv2dForward, convTranspose2dBackward, convTranspose2dForward, type ConvShape } from './conv';
import { batchnormBackward, batchnormEvalForward, batchnormTrainForward } from './batchnorm';
import { linearBackward, linearForward, reluBackward, reluForward } from './ops';

/** A layer's buffers by suffix (num_batches_tracked a one-element array), and the pass's mode. */
export interface LayerState {
  training: boolean;
  buffers: Record<string, Float64Array>;
}

export interface ReferenceLayer {
  forward(
    args: readonly unknown[],
    x: ArrayLike<number>,
    rows: number,
    p: Record<string, Float64Array>,
    input: Shape,
    state?: LayerState,
  ): Float64Array;
  /** dX, and each parameter's gradient under its suffix. */
  backward(
    args: readonly unknown[],
    dY: ArrayLike<number>,
    x: ArrayLike<number>,
    rows: number,
    p: Record<string, Float64Array>,
    input: Shape,
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

/** Conv2d or ConvTranspose2d from ./conv.ts, its arguments as the spec's (PyTorch's, defaults filled in). */
const conv = (transpose: boolean): ReferenceLayer => {
  const shapeOf = (args: readonly unknown[], rows: number, [inC, H, W]: Shape): ConvShape => {
    const [, outC, kernel, stride, padding, outputPadding] = args as number[];
    return {
      batch: rows,
      inC: inC!,
      H: H!,
      W: W!,
      outC: outC!,
      kernel: kernel!,
      stride: stride!,
      padding: padding!,
      outputPadding,
    };
  };
  return {
    forward: (args, x, rows, p, input) =>
      (transpose ? convTranspose2dForward : conv2dForward)(x, p.weight!, p.bias!, shapeOf(args, rows, input)),
    backward(args, dY, x, rows, p, input) {
      const g = (transpose ? convTranspose2dBackward : conv2dBackward)(dY, x, p.weight!, shapeOf(args, rows, input));
      return { dX: g.dX, grads: { weight: g.dW, bias: g.db } };
    },
  };
};

/**
 * BatchNorm2d alone (its activation is the next layer's twin): the batch's statistics in
 * training, updating `state.buffers`; the running ones otherwise. Without `state`, a training
 * pass on fresh buffers, as a new PyTorch module's first call.
 */
const batchNorm: ReferenceLayer = {
  forward(_, x, rows, p, [C, H, W], state) {
    const d = { N: rows, C: C!, H: H!, W: W! };
    const buffers = state?.buffers ?? {
      running_mean: new Float64Array(C!),
      running_var: new Float64Array(C!).fill(1),
      num_batches_tracked: new Float64Array(1),
    };
    const running = {
      mean: buffers.running_mean!,
      var: buffers.running_var!,
      tracked: buffers.num_batches_tracked![0]!,
    };
    if (state && !state.training)
      return batchnormEvalForward(x, p.weight!, p.bias!, running, d, { eps: BATCHNORM_EPS });
    const f = batchnormTrainForward(x, p.weight!, p.bias!, running, d, {
      eps: BATCHNORM_EPS,
      momentum: BATCHNORM_MOMENTUM,
    });
    buffers.running_mean!.set(f.running.mean);
    buffers.running_var!.set(f.running.var);
    buffers.num_batches_tracked![0] = f.running.tracked;
    return f.y;
  },
  backward(_, dY, x, rows, p, [C, H, W]) {
    const g = batchnormBackward(x, dY, p.weight!, { N: rows, C: C!, H: H!, W: W! }, { eps: BATCHNORM_EPS });
    return { dX: g.dx, grads: { weight: g.dgamma, bias: g.dbeta } };
  },
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
    forward: (args, x, rows, p, input) => leaky(args[0] as number).forward(args, x, rows, p, input),
    backward: (args, dY, x, rows, p, input) => leaky(args[0] as number).backward(args, dY, x, rows, p, input),
  },
  Flatten: view,
  Unflatten: view,
  Conv2d: conv(false),
  ConvTranspose2d: conv(true),
  BatchNorm2d: batchNorm,
};
