/**
 * BatchNorm2d kernel instances (shaders/batchnorm.wgsl.ts), built once like those in ops.ts.
 *
 * Buffers a BatchNorm2d layer owns besides γ (weight) and β (bias):
 *   running  (2, C) float32: running_mean, then running_var — not parameters: Adam never sees them
 *   tracked  2 u32: num_batches_tracked as PyTorch's int64, little-endian (low word, high word),
 *            so its 8 bytes are the checkpoint's tensor as they stand
 *   saved    (3, C) float32 per training step: μ₀, μ꜀ (μ = μ₀ + μ꜀) and 1/√(σ² + eps), written by
 *            the training forward for the backward; an activation, not state
 */
import {
  BATCHNORM_EPS,
  BATCHNORM_MOMENTUM,
  BATCHNORM_UNIFORM_BYTES,
  batchnormBindings,
  batchnormWGSL,
  batchnormWorkgroups,
  type BatchnormActivationKind,
  type BatchnormEntry,
} from '../../shaders/batchnorm.wgsl';
import { MAX_WORKGROUPS_PER_DIM } from '../../shaders/common';
import type { Dispatch, Gpu } from './device';
import { instance, type Binding } from './ops';

/** (N, C, H, W) of the activations; N may be a partial last batch's. */
export interface BatchnormDims {
  N: number;
  C: number;
  H: number;
  W: number;
}

export type BatchnormActivation = { kind: 'relu' } | { kind: 'leakyRelu'; negativeSlope: number };

export interface BatchnormOptions {
  /** Default BATCHNORM_EPS. */
  eps?: number;
  /** Default BATCHNORM_MOMENTUM. */
  momentum?: number;
  /** ReLU or LeakyReLU applied to the norm's output (absent: none). */
  activation?: BatchnormActivation;
}

function checkDims(label: string, d: BatchnormDims) {
  for (const [name, v] of Object.entries(d)) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`${label}: ${name} = ${v} is not a positive integer`);
  }
}

function activationKind(label: string, a?: BatchnormActivation): BatchnormActivationKind {
  if (!a) return 'none';
  // The backward masks on the forward's output, which tells the two sides apart only for slopes ≥ 0.
  if (a.kind === 'leakyRelu' && !(a.negativeSlope >= 0 && Number.isFinite(a.negativeSlope))) {
    throw new Error(`${label}: LeakyReLU's negative_slope ${a.negativeSlope} is not a finite number ≥ 0`);
  }
  return a.kind;
}

function uniform(gpu: Gpu, label: string, d: BatchnormDims, o: BatchnormOptions): GPUBuffer {
  const data = new ArrayBuffer(BATCHNORM_UNIFORM_BYTES);
  new Uint32Array(data, 0, 3).set([d.N, d.C, d.H * d.W]);
  const momentum = o.momentum ?? BATCHNORM_MOMENTUM;
  const slope = o.activation?.kind === 'leakyRelu' ? o.activation.negativeSlope : 0;
  // 1 − momentum in float64 here, as PyTorch forms it, rather than from the rounded momentum.
  new Float32Array(data, 16, 4).set([o.eps ?? BATCHNORM_EPS, momentum, 1 - momentum, slope]);
  return gpu.uniform(`${label} dims`, new Uint8Array(data));
}

async function batchnormInstance(
  gpu: Gpu,
  label: string,
  entry: BatchnormEntry,
  d: BatchnormDims,
  o: BatchnormOptions,
  buffers: Binding[],
  cost: Dispatch['cost'],
): Promise<Dispatch> {
  checkDims(label, d);
  const kind = activationKind(label, o.activation);
  return instance(
    gpu,
    label,
    batchnormWGSL(entry, kind),
    entry,
    batchnormBindings(entry, kind),
    [uniform(gpu, label, d, o), ...buffers],
    batchnormWorkgroups(entry, { N: d.N, C: d.C, HW: d.H * d.W }),
    cost,
  );
}

/** Training needs two values per channel at least, as PyTorch says; its message, and what to change. */
function checkTrainable(label: string, d: BatchnormDims) {
  // The training kernels run one workgroup per channel, in x alone.
  if (d.C > MAX_WORKGROUPS_PER_DIM) {
    throw new Error(
      `${label}: ${d.C} channels exceed the ${MAX_WORKGROUPS_PER_DIM} workgroups of one dispatch dimension`,
    );
  }
  if (d.N * d.H * d.W < 2) {
    throw new Error(
      `${label}: BatchNorm2d expected more than 1 value per channel when training, got input size ` +
        `[${d.N}, ${d.C}, ${d.H}, ${d.W}]; use a batch of 2 or more (a partial last batch of 1 image included)`,
    );
  }
}

/**
 * The training forward: y = act(BatchNorm2d(x)) with the batch's statistics, which it saves for
 * the backward and folds into the running statistics; num_batches_tracked += 1.
 */
export async function batchnormTrainForwardOp(
  gpu: Gpu,
  label: string,
  dims: BatchnormDims,
  options: BatchnormOptions,
  b: { x: Binding; gamma: Binding; beta: Binding; running: Binding; tracked: Binding; y: Binding; saved: Binding },
): Promise<Dispatch> {
  checkTrainable(label, dims);
  const count = dims.N * dims.C * dims.H * dims.W;
  return batchnormInstance(
    gpu,
    label,
    'batchnorm_train_forward',
    dims,
    options,
    [b.x, b.gamma, b.beta, b.running, b.tracked, b.y, b.saved],
    { bytes: 4 * 4 * count },
  );
}

/** The evaluation forward: y = act(BatchNorm2d(x)) with the running statistics. */
export async function batchnormEvalForwardOp(
  gpu: Gpu,
  label: string,
  dims: BatchnormDims,
  options: Pick<BatchnormOptions, 'eps' | 'activation'>,
  b: { x: Binding; gamma: Binding; beta: Binding; running: Binding; y: Binding },
): Promise<Dispatch> {
  const count = dims.N * dims.C * dims.H * dims.W;
  return batchnormInstance(
    gpu,
    label,
    'batchnorm_eval_forward',
    dims,
    options,
    [b.x, b.gamma, b.beta, b.running, b.y],
    { bytes: 2 * 4 * count },
  );
}

/**
 * The training backward, from the forward's input x, its saved statistics and (with an
 * activation) its output y: dx, and dγ and dβ written (not accumulated) into their places.
 */
export async function batchnormBackwardOp(
  gpu: Gpu,
  label: string,
  dims: BatchnormDims,
  options: Pick<BatchnormOptions, 'activation'>,
  b: {
    x: Binding;
    saved: Binding;
    gamma: Binding;
    dy: Binding;
    y?: Binding;
    dx: Binding;
    dgamma: Binding;
    dbeta: Binding;
  },
): Promise<Dispatch> {
  checkTrainable(label, dims);
  if (!!options.activation !== !!b.y) {
    throw new Error(`${label}: the backward of a fused activation needs the forward's output y, and only then`);
  }
  const count = dims.N * dims.C * dims.H * dims.W;
  return batchnormInstance(
    gpu,
    label,
    'batchnorm_backward',
    dims,
    options,
    [b.x, b.saved, b.gamma, b.dy, ...(b.y ? [b.y] : []), b.dx, b.dgamma, b.dbeta],
    { bytes: 4 * count * (b.y ? 6 : 5) },
  );
}
