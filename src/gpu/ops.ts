/**
 * Kernel instances: each function compiles (or reuses) a kernel, writes its sizes into a
 * uniform buffer and binds its buffers, returning a Dispatch to record as often as needed.
 * Everything here happens when a model is built, never inside a step.
 */
import { linearWorkgroups } from '../../shaders/common';
import {
  matmulBindings,
  matmulWGSL,
  matmulWorkgroups,
  type MatmulDims,
  type MatmulOptions,
} from '../../shaders/matmul.wgsl';
import { SPLITK_SIZES, splitKWGSL, splitKWorkgroups, type SplitKOptions } from '../../shaders/matmul-splitk.wgsl';
import {
  chooseTiledTile,
  tiledBindings,
  tiledWGSL,
  tiledWorkgroups,
  type TiledMatmulOptions,
} from '../../shaders/matmul-tiled.wgsl';
import { activationBindings, activationWGSL, type ActivationEntry } from '../../shaders/activations.wgsl';
import {
  ADAM_DEFAULT,
  adamBindings,
  adamWGSL,
  adamWorkgroups,
  type AdamClamp,
  type AdamOptions,
} from '../../shaders/adam.wgsl';
import {
  byteToUnitTable,
  gatherBindings,
  gatherConditionalBindings,
  gatherConditionalWGSL,
  gatherWGSL,
  joinColumnsBindings,
  joinColumnsWGSL,
} from '../../shaders/gather.wgsl';
import {
  ELBO_UNIFORM_FLOATS,
  elboBindings,
  elboWGSL,
  elboWorkgroups,
  LOSS_GROUPS,
  lossBindings,
  lossWGSL,
  lossWorkgroups,
  type ElboOptions,
} from '../../shaders/loss.wgsl';
import { reparamBindings, reparamWGSL, reparamWorkgroups, type ReparamEntry } from '../../shaders/reparam.wgsl';
import type { Dispatch, Gpu } from './device';
import { chooseMatmul, tiledTileOf, type KernelPlan, type MatmulChoice } from './plan';
import { quadSharingWorks } from './quads';

export type Binding = GPUBuffer | GPUBufferBinding;

const u32s = (...values: number[]) => new Uint32Array(values);

/** A Dispatch of `entryPoint` in `code` over `resources` (in `bindings`' order): the kernel instances here and in batchnorm-ops.ts. */
export async function instance(
  gpu: Gpu,
  label: string,
  code: string,
  entryPoint: string,
  bindings: readonly ('uniform' | 'read' | 'storage')[],
  resources: readonly Binding[],
  workgroups: readonly [number, number, number],
  cost: Dispatch['cost'],
): Promise<Dispatch> {
  // Pipelines are shared by every instance with the same WGSL, so they carry the entry point's
  // name; the bind group carries the instance's.
  const kernel = await gpu.kernel({ label: entryPoint, code, entryPoint, bindings });
  if (resources.length !== bindings.length) {
    throw new Error(`${label}: ${resources.length} buffers for ${bindings.length} bindings`);
  }
  return { kernel, bindGroup: kernel.bind(label, resources), workgroups, cost };
}

export interface MatmulBuffers {
  A: Binding;
  B: Binding;
  C: Binding;
  bias?: Binding;
  mask?: Binding;
  rowSum?: Binding;
  /** With the reparamBackward epilogue: [mu ‖ logvar] and ε of the forward pass. */
  mulv?: Binding;
  eps?: Binding;
}

/** The epilogues the given buffers ask for (a kernel's options may add relu, which has no buffer). */
export function epiloguesOf(
  b: MatmulBuffers,
): Pick<MatmulOptions, 'bias' | 'relu' | 'reluMask' | 'rowSum' | 'reparamBackward'> {
  return { bias: !!b.bias, relu: false, reluMask: !!b.mask, rowSum: !!b.rowSum, reparamBackward: !!b.mulv };
}

/** L of a conditioned dz→dmulv product: the latent columns among its N = L + C. */
function latentOf(label: string, dims: { N: number; L?: number }): number {
  if (dims.L === undefined || !Number.isInteger(dims.L) || dims.L < 1 || dims.L > dims.N) {
    throw new Error(`${label}: reparamConditioned needs dims.L, the latent columns (1 … N = ${dims.N}), got ${dims.L}`);
  }
  return dims.L;
}

/** Every matmul kernel's resources, in matmulBindings' order: dims, A, B, C, then the epilogues' buffers. */
function matmulResources(
  gpu: Gpu,
  label: string,
  dims: { M: number; N: number; K: number; L?: number },
  o: Pick<MatmulOptions, 'bias' | 'reluMask' | 'rowSum' | 'reparamBackward' | 'reparamConditioned'>,
  b: MatmulBuffers,
): Binding[] {
  const sizes = o.reparamConditioned
    ? u32s(dims.M, dims.N, dims.K, latentOf(label, dims))
    : u32s(dims.M, dims.N, dims.K);
  const resources: Binding[] = [gpu.uniform(`${label} dims`, sizes), b.A, b.B, b.C];
  if (o.bias) resources.push(b.bias!);
  if (o.reluMask) resources.push(b.mask!);
  if (o.rowSum) resources.push(b.rowSum!);
  if (o.reparamBackward) resources.push(b.mulv!, b.eps!);
  return resources;
}

/**
 * C[M,N] = op(A)·op(B) with the epilogues in `options`; vec4 and quads are chosen from the shape
 * and the adapter, the variant and tile by `plan` (default: the adapter's, Gpu.defaultPlan).
 * Quads are for software adapters only: on a GPU a load every lane makes from one address is
 * already a broadcast. They also need the self-check to pass.
 */
export async function matmulOp(
  gpu: Gpu,
  label: string,
  dims: { M: number; N: number; K: number; L?: number },
  options: MatmulRequest,
  buffers: MatmulBuffers,
  plan: KernelPlan = gpu.defaultPlan,
): Promise<Dispatch> {
  const dispatch = await plannedMatmul(gpu, plan, label, dims, options, buffers);
  products.set(dispatch, { dims: { ...dims }, options: { ...options }, epilogues: epiloguesOf(buffers) });
  return dispatch;
}

/**
 * What a matmulOp dispatch computes — its dims, options and which epilogue buffers it binds —
 * so a tuner can time the same product on scratch buffers of its own (src/model/autotune.ts).
 */
export interface MatmulProduct {
  /** L: a conditioned dz→dmulv product's latent columns (reparamConditioned). */
  dims: { M: number; N: number; K: number; L?: number };
  options: MatmulRequest;
  epilogues: ReturnType<typeof epiloguesOf>;
}

/** Kept beside the dispatch, not on it: a Dispatch stays what every kernel's is. */
const products = new WeakMap<Dispatch, MatmulProduct>();

/** The product a dispatch made by matmulOp computes (undefined for any other dispatch). */
export function matmulProductOf(d: Dispatch): MatmulProduct | undefined {
  return products.get(d);
}

/** Whether matmulOp shares A's loads within quads for this product (which changes the software plan's tile). */
export async function matmulUsesQuads(
  gpu: Gpu,
  dims: { M: number; N: number; K: number },
  options: Pick<MatmulOptions, 'quad' | 'quadLayout'>,
): Promise<boolean> {
  const vec4 = dims.M % 4 === 0 && dims.N % 4 === 0 && dims.K % 4 === 0;
  return (
    options.quad ?? (vec4 && gpu.hasSubgroups && gpu.software && (await quadSharingWorks(gpu, options.quadLayout)))
  );
}

/** What a caller asks matmulOp for: the transposes, and any option it fixes rather than leaving to the plan. */
export type MatmulRequest = Partial<MatmulOptions> & Pick<MatmulOptions, 'transA' | 'transB'>;

/** The kernel a matmul compiles: its WGSL, entry point, bindings and launch, and the options its resources follow. */
export interface MatmulKernel {
  code: string;
  entryPoint: 'matmul' | 'matmul_splitk' | 'matmul_tiled';
  bindings: ('uniform' | 'read' | 'storage')[];
  workgroups: [number, number, number];
  options: Pick<MatmulOptions, 'bias' | 'reluMask' | 'rowSum' | 'reparamBackward' | 'reparamConditioned'>;
}

/**
 * The kernel plannedMatmul compiles for a product under `choice` — pure, so the autotune's cache
 * key can digest exactly the WGSL the tuner times (src/model/autotune.ts engineVersion).
 * `quad`: matmulUsesQuads for the product. Every option the caller gives reaches the kernel
 * whichever variant the choice names; only the register kernel's own fields (vec4, tiles, quads)
 * stay behind when another kernel runs the product.
 */
export function plannedMatmulKernel(
  dims: MatmulDims,
  options: MatmulRequest,
  epilogues: ReturnType<typeof epiloguesOf>,
  choice: MatmulChoice,
  quad: boolean,
): MatmulKernel {
  if (choice.variant === 'splitK' && options.quad === undefined) {
    return splitKKernel(dims, { ...options, tileM: choice.tileM, tileN: choice.tileN }, epilogues);
  }
  if (choice.variant === 'tiled' && options.quad === undefined) {
    const { vec4: _vec4, tileM: _tileM, tileN: _tileN, quad: _quad, quadLayout: _quadLayout, ...rest } = options;
    return tiledKernel(dims, { ...rest, tile: tiledTileOf(choice) }, epilogues);
  }
  const vec4 = dims.M % 4 === 0 && dims.N % 4 === 0 && dims.K % 4 === 0;
  const { tileM, tileN } = choice;
  const o: MatmulOptions = { vec4, quad, tileM, tileN, ...epilogues, ...options };
  return {
    code: matmulWGSL(o),
    entryPoint: 'matmul',
    bindings: matmulBindings(o),
    workgroups: matmulWorkgroups(o, dims),
    options: o,
  };
}

async function plannedMatmul(
  gpu: Gpu,
  plan: KernelPlan,
  label: string,
  dims: { M: number; N: number; K: number; L?: number },
  options: MatmulRequest,
  buffers: MatmulBuffers,
): Promise<Dispatch> {
  const quad = await matmulUsesQuads(gpu, dims, options);
  const choice = chooseMatmul(plan, { ...dims, transA: options.transA, transB: options.transB }, quad);
  return matmulInstance(
    gpu,
    label,
    dims,
    plannedMatmulKernel(dims, options, epiloguesOf(buffers), choice, quad),
    buffers,
  );
}

function matmulInstance(
  gpu: Gpu,
  label: string,
  dims: { M: number; N: number; K: number; L?: number },
  k: MatmulKernel,
  buffers: MatmulBuffers,
): Promise<Dispatch> {
  const resources = matmulResources(gpu, label, dims, k.options, buffers);
  return instance(gpu, label, k.code, k.entryPoint, k.bindings, resources, k.workgroups, {
    flops: 2 * dims.M * dims.N * dims.K,
  });
}

export async function activationOp(
  gpu: Gpu,
  label: string,
  entry: ActivationEntry,
  count: number,
  inputs: Binding[],
  out: Binding,
): Promise<Dispatch> {
  return instance(
    gpu,
    label,
    activationWGSL(entry),
    entry,
    activationBindings(entry),
    [gpu.uniform(`${label} dims`, u32s(count)), ...inputs, out],
    linearWorkgroups(count),
    { bytes: 4 * count * (inputs.length + 1) },
  );
}

export async function gatherOp(
  gpu: Gpu,
  label: string,
  dims: { rows: number; D: number; batchSize: number },
  b: { state: Binding; data: Binding; perm: Binding; X: Binding },
): Promise<Dispatch> {
  return instance(
    gpu,
    label,
    gatherWGSL(),
    'gather',
    gatherBindings,
    [
      gpu.uniform(`${label} dims`, u32s(dims.rows, dims.D, dims.batchSize)),
      b.state,
      b.data,
      b.perm,
      gpu.bufferWith(`${label} byte/255 table`, byteToUnitTable()),
      b.X,
    ],
    linearWorkgroups(dims.rows * dims.D),
    { bytes: 5 * dims.rows * dims.D },
  );
}

/**
 * The conditional gather (shaders/gather.wgsl.ts): X, [x ‖ onehot(y)] into XY, and the one-hot
 * columns of [z ‖ onehot(y)] into Z, y read through the same permutation as the pixels.
 */
export async function gatherConditionalOp(
  gpu: Gpu,
  label: string,
  dims: { rows: number; D: number; batchSize: number; C: number; L: number },
  b: { state: Binding; data: Binding; perm: Binding; labels: Binding; X: Binding; XY: Binding; Z: Binding },
): Promise<Dispatch> {
  const width = dims.D + dims.C;
  return instance(
    gpu,
    label,
    gatherConditionalWGSL(),
    'gather_conditional',
    gatherConditionalBindings,
    [
      gpu.uniform(`${label} dims`, u32s(dims.rows, dims.D, dims.batchSize, dims.C, dims.L)),
      b.state,
      b.data,
      b.perm,
      gpu.bufferWith(`${label} byte/255 table`, byteToUnitTable()),
      b.labels,
      b.X,
      b.XY,
      b.Z,
    ],
    linearWorkgroups(dims.rows * width),
    { bytes: dims.rows * (5 * dims.D + 8 * dims.C + 4) },
  );
}

/** Columns of a (rows, ·) matrix: `width` of them from column `offset`, rows `stride` floats apart. */
export interface Columns {
  buffer: Binding;
  width: number;
  stride: number;
  offset: number;
}

/** Out (rows, a.width + b.width) = [a's columns ‖ b's columns] (shaders/gather.wgsl.ts join_columns). */
export async function joinColumnsOp(gpu: Gpu, label: string, rows: number, a: Columns, b: Columns, out: Binding) {
  const width = a.width + b.width;
  return instance(
    gpu,
    label,
    joinColumnsWGSL(),
    'join_columns',
    joinColumnsBindings,
    [
      gpu.uniform(`${label} dims`, u32s(rows, a.width, a.stride, a.offset, b.width, b.stride, b.offset)),
      a.buffer,
      b.buffer,
      out,
    ],
    linearWorkgroups(rows * width),
    { bytes: 8 * rows * width },
  );
}

/**
 * Uniform fields: (rows, latent, seed, stream) for reparam; (count, step, seed, stream) for randn.
 * A fifth field for reparam_forward is z's row stride (a conditional decoder's L + C).
 */
export async function reparamOp(
  gpu: Gpu,
  label: string,
  entry: ReparamEntry,
  params: [number, number, number, number] | [number, number, number, number, number],
  buffers: Binding[],
): Promise<Dispatch> {
  const elements = entry === 'randn' ? params[0] : params[0] * params[1];
  if (params.length === 5 && entry !== 'reparam_forward')
    throw new Error(`${label}: only reparam_forward takes a z stride`);
  return instance(
    gpu,
    label,
    reparamWGSL(entry, { zStride: params.length === 5 }),
    entry,
    reparamBindings(entry),
    [gpu.uniform(`${label} params`, u32s(...params)), ...buffers],
    linearWorkgroups(reparamWorkgroups(entry, elements)),
    { bytes: 4 * elements * (entry === 'randn' ? 1 : 4) },
  );
}

/** Bytes a binding exposes to the shader. */
const bindingBytes = (b: Binding) => ('buffer' in b ? (b.size ?? b.buffer.size - (b.offset ?? 0)) : b.size);

/**
 * A partials buffer too small for `groups` would not fail: out-of-bounds writes are dropped or
 * clamped by robust buffer access, and the loss would quietly be wrong.
 */
function checkPartials(label: string, partials: Binding, groups: number) {
  if (bindingBytes(partials) < 4 * groups) {
    throw new Error(
      `${label}: the partials buffer holds ${bindingBytes(partials) / 4} floats; ${groups} loss groups write ${groups}`,
    );
  }
}

/** `groups`: workgroups of the reduction (= partials, `groups` floats); loss_finalize must be given the same number. */
export async function bceKlOp(
  gpu: Gpu,
  label: string,
  dims: { rows: number; D: number; L: number },
  b: { logits: Binding; x: Binding; mulv: Binding; dlogits: Binding; dmulv: Binding; partials: Binding },
  groups = LOSS_GROUPS,
): Promise<Dispatch> {
  checkPartials(label, b.partials, groups);
  return instance(
    gpu,
    label,
    lossWGSL('bce_kl', { groups }),
    'bce_kl',
    lossBindings('bce_kl'),
    [
      gpu.uniform(`${label} dims`, u32s(dims.rows, dims.D, dims.L)),
      b.logits,
      b.x,
      b.mulv,
      b.dlogits,
      b.dmulv,
      b.partials,
    ],
    lossWorkgroups('bce_kl', { groups }),
    { bytes: 4 * dims.rows * (3 * dims.D + 4 * dims.L) },
  );
}

export async function lossFinalizeOp(
  gpu: Gpu,
  label: string,
  b: { state: Binding; partials: Binding; out: Binding },
  groups = LOSS_GROUPS,
): Promise<Dispatch> {
  checkPartials(label, b.partials, groups);
  return instance(
    gpu,
    label,
    lossWGSL('loss_finalize', { groups }),
    'loss_finalize',
    lossBindings('loss_finalize'),
    [b.state, b.partials, b.out],
    lossWorkgroups('loss_finalize', { groups }),
    { bytes: 4 * (groups + 5) },
  );
}

export interface AdamHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
}

/**
 * Adam over `length` floats (a multiple of 4) of the arena buffers; `options`: the layout, `clamp`:
 * a span kept in a range after the update (both in adam.wgsl.ts).
 */
export async function adamOp(
  gpu: Gpu,
  label: string,
  length: number,
  hyper: AdamHyper,
  b: { state: Binding; params: Binding; grads: Binding; m: Binding; v: Binding },
  options: AdamOptions = ADAM_DEFAULT,
  clamp?: AdamClamp,
): Promise<Dispatch> {
  if (length % 4 !== 0) throw new Error(`adam: arena length ${length} is not a multiple of 4`);
  if (clamp && clamp.offset + clamp.length > length) {
    throw new Error(
      `adam: clamp span [${clamp.offset}, ${clamp.offset + clamp.length}) is past the arena's ${length} floats`,
    );
  }
  const uniform = new ArrayBuffer(48);
  const { lr, beta1, beta2, eps } = hyper;
  // 1 − β and ln β in float64 here: see the numerics note in adam.wgsl.ts.
  new Float32Array(uniform, 0, 8).set([lr, beta1, beta2, eps, 1 - beta1, 1 - beta2, Math.log(beta1), Math.log(beta2)]);
  new Uint32Array(uniform, 32, 1)[0] = length / 4;
  return instance(
    gpu,
    label,
    adamWGSL(options, clamp),
    'adam_step',
    adamBindings,
    [gpu.uniform(`${label} hyper`, new Uint8Array(uniform)), b.state, b.params, b.grads, b.m, b.v],
    adamWorkgroups(options, length),
    { bytes: 4 * length * 7 },
  );
}

/**
 * matmulOp's product and epilogues through the workgroup-memory tiled kernel
 * (shaders/matmul-tiled.wgsl.ts): same dims, buffers and binding order; the tile is
 * chooseTiledTile's (64×64, or 32×32 for small outputs) unless `options.tile` names one.
 */
export async function matmulTiledOp(
  gpu: Gpu,
  label: string,
  dims: { M: number; N: number; K: number; L?: number },
  options: Partial<TiledMatmulOptions> & Pick<TiledMatmulOptions, 'transA' | 'transB'>,
  buffers: MatmulBuffers,
): Promise<Dispatch> {
  return matmulInstance(gpu, label, dims, tiledKernel(dims, options, epiloguesOf(buffers)), buffers);
}

function tiledKernel(
  dims: MatmulDims,
  options: Partial<TiledMatmulOptions> & Pick<TiledMatmulOptions, 'transA' | 'transB'>,
  epilogues: ReturnType<typeof epiloguesOf>,
): MatmulKernel {
  const o: TiledMatmulOptions = { tile: chooseTiledTile(dims), ...epilogues, ...options };
  return {
    code: tiledWGSL(o),
    entryPoint: 'matmul_tiled',
    bindings: tiledBindings(o),
    workgroups: tiledWorkgroups(o, dims),
    options: o,
  };
}

/**
 * matmulOp's product and epilogues through the split-K kernel (shaders/matmul-splitk.wgsl.ts),
 * for products with too few outputs to fill a GPU: same dims, buffers and binding order; the
 * sizes are SPLITK_SIZES unless `options` names others, vec4 when M, N and K are multiples of 4.
 */
export async function matmulSplitKOp(
  gpu: Gpu,
  label: string,
  dims: { M: number; N: number; K: number; L?: number },
  options: Partial<SplitKOptions> & Pick<SplitKOptions, 'transA' | 'transB'>,
  buffers: MatmulBuffers,
): Promise<Dispatch> {
  return matmulInstance(gpu, label, dims, splitKKernel(dims, options, epiloguesOf(buffers)), buffers);
}

function splitKKernel(
  dims: MatmulDims,
  options: Partial<SplitKOptions> & Pick<SplitKOptions, 'transA' | 'transB'>,
  epilogues: ReturnType<typeof epiloguesOf>,
): MatmulKernel {
  const o: SplitKOptions = {
    ...SPLITK_SIZES,
    vec4: dims.M % 4 === 0 && dims.N % 4 === 0 && dims.K % 4 === 0,
    ...epilogues,
    ...options,
  };
  return {
    code: splitKWGSL(o),
    entryPoint: 'matmul_splitk',
    bindings: matmulBindings(o),
    workgroups: splitKWorkgroups(o, dims),
    options: o,
  };
}

// ---- The general objective (shaders/loss.wgsl.ts, `elbo`): β, its warm-up, the Gaussian -------

/** What an elbo op computes: the likelihood, β and its warm-up (steps; 0 = none), and a fixed σ's log. */
export interface ElboParams {
  likelihood: 'bernoulli' | 'gaussian';
  beta: number;
  warmup: number;
  /** Gaussian with a fixed σ: log σ. Ignored when `logSigma` is bound (a learned σ). */
  logSigma?: number;
}

function elboUniform(gpu: Gpu, label: string, dims: { rows: number; D: number; L: number }, p: ElboParams): GPUBuffer {
  const data = new ArrayBuffer(ELBO_UNIFORM_FLOATS * 4);
  new Uint32Array(data, 0, 4).set([dims.rows, dims.D, dims.L, p.warmup]);
  new Float32Array(data, 16, 2).set([p.beta, p.logSigma ?? 0]);
  return gpu.uniform(`${label} dims`, new Uint8Array(data));
}

/** `groups` loss workgroups write 2·groups partials (recon, then KL); elbo_finalize must be given the same number. */
export async function elboOp(
  gpu: Gpu,
  label: string,
  dims: { rows: number; D: number; L: number },
  p: ElboParams,
  b: {
    state: Binding;
    logits: Binding;
    x: Binding;
    mulv: Binding;
    logSigma?: Binding;
    dlogits: Binding;
    dmulv: Binding;
    partials: Binding;
  },
  groups = LOSS_GROUPS,
): Promise<Dispatch> {
  checkPartials(label, b.partials, 2 * groups);
  const o: ElboOptions = { groups, likelihood: p.likelihood, learnedSigma: !!b.logSigma };
  const resources = [
    elboUniform(gpu, label, dims, p),
    b.state,
    b.logits,
    b.x,
    b.mulv,
    ...(b.logSigma ? [b.logSigma] : []),
    b.dlogits,
    b.dmulv,
    b.partials,
  ];
  return instance(
    gpu,
    label,
    elboWGSL('elbo', o),
    'elbo',
    elboBindings('elbo', o),
    resources,
    elboWorkgroups('elbo', o),
    { bytes: 4 * dims.rows * (3 * dims.D + 4 * dims.L) },
  );
}

export async function elboFinalizeOp(
  gpu: Gpu,
  label: string,
  p: ElboParams,
  b: { state: Binding; partials: Binding; out: Binding; objective: Binding },
  groups = LOSS_GROUPS,
): Promise<Dispatch> {
  checkPartials(label, b.partials, 2 * groups);
  const o: ElboOptions = { groups, likelihood: p.likelihood };
  return instance(
    gpu,
    label,
    elboWGSL('elbo_finalize', o),
    'elbo_finalize',
    elboBindings('elbo_finalize', o),
    [elboUniform(gpu, label, { rows: 0, D: 0, L: 0 }, p), b.state, b.partials, b.out, b.objective],
    elboWorkgroups('elbo_finalize', o),
    { bytes: 4 * (2 * groups + 6) },
  );
}

/** The learned σ's gradient: d/d log_sigma[d] of the batch's Gaussian term, written into `dlogSigma`. */
export async function gaussianDlogSigmaOp(
  gpu: Gpu,
  label: string,
  dims: { rows: number; D: number },
  b: { mean: Binding; x: Binding; logSigma: Binding; dlogSigma: Binding },
): Promise<Dispatch> {
  const o: ElboOptions = { likelihood: 'gaussian', learnedSigma: true };
  const p: ElboParams = { likelihood: 'gaussian', beta: 1, warmup: 0 };
  return instance(
    gpu,
    label,
    elboWGSL('gaussian_dlogsigma', o),
    'gaussian_dlogsigma',
    elboBindings('gaussian_dlogsigma', o),
    [elboUniform(gpu, label, { ...dims, L: 0 }, p), b.mean, b.x, b.logSigma, b.dlogSigma],
    elboWorkgroups('gaussian_dlogsigma', o, dims.D),
    { bytes: 4 * (2 * dims.rows * dims.D + 2 * dims.D) },
  );
}

/** The Gaussian's mean clamped to [0, 1], for images: `count` floats. */
export async function meanClampOp(
  gpu: Gpu,
  label: string,
  count: number,
  mean: Binding,
  image: Binding,
): Promise<Dispatch> {
  const o: ElboOptions = { likelihood: 'gaussian' };
  return instance(
    gpu,
    label,
    elboWGSL('mean_clamp', o),
    'mean_clamp',
    elboBindings('mean_clamp', o),
    [elboUniform(gpu, label, { rows: 1, D: count, L: 0 }, { likelihood: 'gaussian', beta: 1, warmup: 0 }), mean, image],
    elboWorkgroups('mean_clamp', o, count),
    { bytes: 8 * count },
  );
}
