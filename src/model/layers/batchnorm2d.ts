/**
 * nn.BatchNorm2d(num_features) with PyTorch's defaults (eps 1e-5, momentum 0.1, affine,
 * track_running_stats) on NCHW activations: weight γ (C) and bias β (C) are parameters, trained
 * by Adam; running_mean (C), running_var (C) and num_batches_tracked (an int64 scalar) are
 * buffers, in the checkpoint under PyTorch's names and never seen by Adam. A training pass
 * normalises with the batch's statistics and updates the running ones; every other pass (the
 * test loss, reconstructions, samples, encode and decode) uses the running statistics.
 *
 * The activation after it (ReLU, LeakyReLU) runs in its own kernels (src/gpu/batchnorm-ops.ts):
 * it applies after the normalisation, so it cannot fold into the product before it, and the
 * training forward already visits every value once more to write y, so the activation costs no
 * pass of its own; the backward masks on that output, as a product's dX does.
 */
import { BATCHNORM_EPS, BATCHNORM_MOMENTUM } from '../../../shaders/batchnorm.wgsl';
import {
  batchnormBackwardOp,
  batchnormEvalForwardOp,
  batchnormTrainForwardOp,
  type BatchnormActivation,
} from '../../gpu/batchnorm-ops';
import type { Span } from '../graph';
import { INPUT_SIZE_MAX } from '../settings';
import { shapeText, whole, type ActivationEpilogue, type NormContext, type NormUnit, type Shape } from './unit';

type Args = readonly [numFeatures: number];

const at = (buffer: GPUBuffer, span: Span, floats = span.length): GPUBufferBinding => ({
  buffer,
  offset: span.offset * 4,
  size: floats * 4,
});

const activationOf = (a?: ActivationEpilogue): BatchnormActivation | undefined =>
  a && (a.slope === undefined ? { kind: 'relu' } : { kind: 'leakyRelu', negativeSlope: a.slope });

const dimsOf = (rows: number, [C, H, W]: Shape) => ({ N: rows, C: C!, H: H!, W: W! });

/** γ and β, and (running_mean ‖ running_var) as the one (2, C) block the kernels bind. */
function bindings({ arena, pieces, buffers }: NormContext, C: number) {
  return {
    gamma: at(arena.params, pieces.weight!),
    beta: at(arena.params, pieces.bias!),
    running: at(arena.stats, buffers.running_mean!, 2 * C),
    tracked: at(arena.stats, buffers.num_batches_tracked!),
  };
}

export const batchNorm2d: NormUnit<Args> = {
  kind: 'BatchNorm2d',
  role: 'norm',
  arity: [1, 1],
  args: ([n]) =>
    whole(n, 1, INPUT_SIZE_MAX)
      ? [n]
      : `num_features must be a whole number from 1 to ${INPUT_SIZE_MAX}, got ${JSON.stringify(n)}`,
  outShape: ([n], input) =>
    input.length !== 3
      ? `normalises (channels, height, width), got shape ${shapeText(input)} (put ["Unflatten", 1, [C, H, W]] before it)`
      : input[0] !== n
        ? `num_features is ${n}, but its input ${shapeText(input)} has ${input[0]} channels`
        : input,
  params: ([n]) => [
    { suffix: 'weight', shape: [n], fill: 1 },
    { suffix: 'bias', shape: [n], fill: 0 },
  ],
  // running_mean and running_var are consecutive: the kernels bind them as one (2, C) block.
  buffers: ([n]) => [
    { suffix: 'running_mean', shape: [n], dtype: 'F32', fill: 0 },
    { suffix: 'running_var', shape: [n], dtype: 'F32', fill: 1 },
    { suffix: 'num_batches_tracked', shape: [], dtype: 'I64', fill: 0 },
  ],
  // μ₀, μ꜀ and 1/√(σ² + eps) per channel.
  savedFloats: ([n]) => 3 * n,

  async forward(c, [n], { X, Y, saved }, activation) {
    const dims = dimsOf(c.rows, c.in);
    const { gamma, beta, running, tracked } = bindings(c, n);
    const act = activationOf(activation);
    if (!saved)
      return [
        await batchnormEvalForwardOp(c.gpu, c.label, dims, { activation: act }, { x: X, gamma, beta, running, y: Y }),
      ];
    const options = { eps: BATCHNORM_EPS, momentum: BATCHNORM_MOMENTUM, activation: act };
    const b = { x: X, gamma, beta, running, tracked, y: Y, saved };
    return [await batchnormTrainForwardOp(c.gpu, c.label, dims, options, b)];
  },

  async backward(c, [n], { X, Y, saved, dY, dX }, activation) {
    const act = activationOf(activation);
    const { gamma } = bindings(c, n);
    const b = {
      x: X,
      saved,
      gamma,
      dy: dY,
      ...(act ? { y: Y } : {}),
      dx: dX,
      dgamma: at(c.arena.grads, c.pieces.weight!),
      dbeta: at(c.arena.grads, c.pieces.bias!),
    };
    return [await batchnormBackwardOp(c.gpu, `${c.label} backward`, dimsOf(c.rows, c.in), { activation: act }, b)];
  },
};
