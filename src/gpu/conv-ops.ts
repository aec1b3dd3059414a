/**
 * Convolution kernel instances (shaders/conv.wgsl.ts), in a layer's terms: Conv2d and
 * ConvTranspose2d with PyTorch's arguments and weight layouts, their forward, dX and dW passes.
 * As in ops.ts, each call compiles (or reuses) its kernels, writes the sizes into a uniform and
 * binds the buffers once; the Dispatches it returns are recorded as often as needed.
 */
import {
  channelSumBindings,
  channelSumWGSL,
  convBindings,
  convUniform,
  convWGSL,
  convWorkgroups,
  type ConvActivation,
  type ConvGeometry,
  type ConvOptions,
  type ConvProduct,
  type ConvTile,
} from '../../shaders/conv.wgsl';
import { chooseConv, convKey, convTileOf } from './conv-plan';
import type { Dispatch, Gpu } from './device';
import type { Binding } from './ops';
import type { ConvChoice, KernelPlan } from './plan';

/** A Conv2d (transpose false) or ConvTranspose2d layer, PyTorch's arguments (square kernels). */
export interface ConvLayer {
  transpose: boolean;
  inC: number;
  outC: number;
  kernel: number;
  stride: number;
  padding: number;
  /** ConvTranspose2d only (0 for Conv2d): extra rows and columns on one side of the output. */
  outputPadding: number;
}

/** The batch and the input's height and width. */
export interface ConvInput {
  batch: number;
  H: number;
  W: number;
}

export type ConvPass = 'forward' | 'dX' | 'dW';

/** Which product of the Conv2d join each pass is (shaders/conv.wgsl.ts explains the join). */
export const CONV_PRODUCTS: Record<'conv2d' | 'convTranspose2d', Record<ConvPass, ConvProduct>> = {
  conv2d: { forward: 'down', dX: 'up', dW: 'weight' },
  convTranspose2d: { forward: 'up', dX: 'down', dW: 'weight' },
};

/** The implicit product a pass of a layer runs (CONV_PRODUCTS). */
export const productOf = (layer: Pick<ConvLayer, 'transpose'>, pass: ConvPass) =>
  CONV_PRODUCTS[layer.transpose ? 'convTranspose2d' : 'conv2d'][pass];

/** PyTorch's output size along one axis, or an error naming the argument at fault. */
export function convOutputSize(layer: ConvLayer, size: number): number {
  const { kernel: k, stride: s, padding: p, outputPadding: op } = layer;
  const name = layer.transpose ? 'ConvTranspose2d' : 'Conv2d';
  for (const [arg, v, min] of [
    ['kernel', k, 1],
    ['stride', s, 1],
    ['padding', p, 0],
    ['output_padding', op, 0],
  ] as const) {
    if (!Number.isInteger(v) || v < min) throw new Error(`${name}: ${arg} must be an integer ≥ ${min}, got ${v}`);
  }
  if (!layer.transpose && op !== 0) throw new Error('Conv2d: output_padding is ConvTranspose2d’s argument');
  if (layer.transpose && op >= s)
    throw new Error(`ConvTranspose2d: output_padding (${op}) must be smaller than the stride (${s})`);
  const out = layer.transpose ? (size - 1) * s - 2 * p + k + op : Math.floor((size + 2 * p - k) / s) + 1;
  if (out < 1)
    throw new Error(`${name}: an input of ${size} with kernel ${k}, stride ${s}, padding ${p} gives no output`);
  return out;
}

/** The layer as the join of one Conv2d (conv-view): for a transpose, its input is the join's O. */
export function convGeometry(layer: ConvLayer, input: ConvInput): ConvGeometry {
  const Ho = convOutputSize(layer, input.H);
  const Wo = convOutputSize(layer, input.W);
  const common = { batch: input.batch, kh: layer.kernel, kw: layer.kernel, stride: layer.stride, pad: layer.padding };
  return layer.transpose
    ? { ...common, Co: layer.inC, Ho: input.H, Wo: input.W, Ci: layer.outC, Hi: Ho, Wi: Wo }
    : { ...common, Ci: layer.inC, Hi: input.H, Wi: input.W, Co: layer.outC, Ho, Wo };
}

/**
 * The buffers of each pass, in the layer's terms (X its input, Y its output, W its weight in
 * PyTorch's layout): forward Y = act(conv(X, W) + bias); dX = conv's input gradient of dY,
 * times the backward of the activation whose output `mask` is (X, when X came out of one);
 * dW and db from dY and X.
 */
export interface ConvBuffers {
  forward: { X: Binding; W: Binding; Y: Binding; bias?: Binding };
  dX: { dY: Binding; W: Binding; dX: Binding; mask?: Binding };
  dW: { dY: Binding; X: Binding; dW: Binding; db?: Binding };
}

export interface ConvEpilogue {
  /** forward: the activation after the bias. */
  activation?: ConvActivation;
  /** dX: the activation whose output the `mask` buffer is. */
  mask?: ConvActivation;
  /** LeakyReLU's negative slope (either side). */
  slope?: number;
}

/**
 * The dispatches of one pass of a conv layer: one product, plus for ConvTranspose2d's dW with
 * db the channel sum of dY. Tiles are the plan's (conv-plan.ts) unless `tile` names one.
 */
export async function convOp<P extends ConvPass>(
  gpu: Gpu,
  label: string,
  layer: ConvLayer,
  input: ConvInput,
  pass: P,
  buffers: ConvBuffers[P],
  epilogue: ConvEpilogue = {},
  plan: KernelPlan = gpu.defaultPlan,
  tile?: ConvTile,
): Promise<Dispatch[]> {
  const g = convGeometry(layer, input);
  const product = productOf(layer, pass);
  const activation = epilogue.activation ?? 'none';
  const mask = epilogue.mask ?? 'none';
  if (activation !== 'none' && pass !== 'forward') throw new Error(`${label}: an activation is a forward epilogue`);
  if (mask !== 'none' && pass !== 'dX') throw new Error(`${label}: a mask is the dX pass's epilogue`);
  let lhs: Binding, src: Binding, dst: Binding;
  let bias: Binding | undefined, maskBuffer: Binding | undefined, rowSum: Binding | undefined;
  let channelSum: Binding | undefined;
  if (pass === 'forward') {
    const b = buffers as ConvBuffers['forward'];
    [lhs, src, dst, bias] = [b.W, b.X, b.Y, b.bias];
  } else if (pass === 'dX') {
    const b = buffers as ConvBuffers['dX'];
    [lhs, src, dst, maskBuffer] = [b.W, b.dY, b.dX, b.mask];
    if ((mask === 'none') !== !maskBuffer) throw new Error(`${label}: a mask epilogue needs a mask buffer, and back`);
  } else {
    // Conv2d: O is dY and I is X; ConvTranspose2d the other way round (its X is the small side).
    const b = buffers as ConvBuffers['dW'];
    [lhs, src, dst] = layer.transpose ? [b.X, b.dY, b.dW] : [b.dY, b.X, b.dW];
    if (layer.transpose) channelSum = b.db;
    else rowSum = b.db;
  }
  const o = convOptions(product, g, tile ?? chooseConv(plan, product, g), {
    bias: !!bias,
    activation,
    mask,
    rowSum: !!rowSum,
  });
  const kernel = await gpu.kernel({ label: 'conv', code: convWGSL(o), entryPoint: 'conv', bindings: convBindings(o) });
  const resources: Binding[] = [gpu.uniform(`${label} dims`, convUniform(g, epilogue.slope ?? 0)), lhs, src, dst];
  if (bias) resources.push(bias);
  if (maskBuffer) resources.push(maskBuffer);
  if (rowSum) resources.push(rowSum);
  const flops = 2 * g.batch * g.Co * g.Ho * g.Wo * g.Ci * g.kh * g.kw;
  const dispatches: Dispatch[] = [
    { kernel, bindGroup: kernel.bind(label, resources), workgroups: convWorkgroups(o, g), cost: { flops } },
  ];
  products.set(dispatches[0]!, {
    layer: { ...layer },
    input: { ...input },
    pass,
    epilogue: { activation, mask, slope: epilogue.slope ?? 0 },
    bias: !!bias,
    db: !!(rowSum ?? channelSum),
  });
  if (channelSum) {
    const dY = (buffers as ConvBuffers['dW']).dY;
    dispatches.push(
      await channelSumOp(gpu, `${label} db`, { batch: g.batch, C: g.Ci, plane: g.Hi * g.Wi }, dY, channelSum),
    );
  }
  return dispatches;
}

type ConvFlags = Pick<ConvOptions, 'bias' | 'activation' | 'mask' | 'rowSum'>;

function convOptions(product: ConvProduct, g: ConvGeometry, tile: ConvTile, flags: ConvFlags): ConvOptions {
  // A kernel 4 taps wide reads each row of taps of the weight as one vec4 (the down product only:
  // measured slower for up).
  return { ...tile, product, ...flags, stride: g.stride, tapRows: product === 'down' && g.kw === 4 };
}

/**
 * What a convOp product dispatch computes — the layer, its input, the pass and which epilogues
 * and bias gradient it has — so a tuner can build the same product on scratch buffers of its own
 * (src/model/autotune.ts), under another plan.
 */
export interface ConvProductOf {
  layer: ConvLayer;
  input: ConvInput;
  pass: ConvPass;
  epilogue: Required<ConvEpilogue>;
  /** A forward's bias. */
  bias: boolean;
  /** A dW pass's bias gradient (Conv2d's row sums; ConvTranspose2d's channel sum, a dispatch of its own). */
  db: boolean;
}

/** Kept beside the dispatch, not on it, as ops.ts keeps its matmul products. */
const products = new WeakMap<Dispatch, ConvProductOf>();

/** The conv product a dispatch made by convOp computes (undefined for any other dispatch, the channel sum too). */
export function convProductOf(d: Dispatch): ConvProductOf | undefined {
  return products.get(d);
}

/** The product's key in a plan (src/gpu/conv-plan.ts convKey). */
export function convProductKey(p: Pick<ConvProductOf, 'layer' | 'input' | 'pass'>): string {
  return convKey(productOf(p.layer, p.pass), convGeometry(p.layer, p.input));
}

/** The options convOp compiles a product with under `choice`: what the tuner times and digests. */
export function plannedConvOptions(p: ConvProductOf, choice: ConvChoice): ConvOptions {
  const g = convGeometry(p.layer, p.input);
  const product = productOf(p.layer, p.pass);
  return convOptions(product, g, convTileOf(choice, product, g), {
    bias: p.bias,
    activation: p.epilogue.activation,
    mask: p.epilogue.mask,
    rowSum: p.db && !p.layer.transpose,
  });
}

/**
 * The WGSL convOp compiles for a product under `choice` — pure, so the autotune's cache key can
 * digest exactly the kernels the tuner times (src/model/autotune.ts engineVersion).
 */
export function plannedConvKernel(p: ConvProductOf, choice: ConvChoice): string {
  return convWGSL(plannedConvOptions(p, choice));
}

/** out[c] = Σ image[b, c, ·] over an NCHW image (batch, C, plane): ConvTranspose2d's db. */
export async function channelSumOp(
  gpu: Gpu,
  label: string,
  dims: { batch: number; C: number; plane: number },
  image: Binding,
  out: Binding,
): Promise<Dispatch> {
  const kernel = await gpu.kernel({
    label: 'channel_sum',
    code: channelSumWGSL(),
    entryPoint: 'channel_sum',
    bindings: channelSumBindings,
  });
  const uniform = gpu.uniform(`${label} dims`, new Uint32Array([dims.batch, dims.C, dims.plane]));
  return {
    kernel,
    bindGroup: kernel.bind(label, [uniform, image, out]),
    workgroups: [dims.C, 1, 1],
    cost: { bytes: 4 * (dims.batch * dims.C * dims.plane + dims.C) },
  };
}
