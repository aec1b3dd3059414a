/**
 * Dispatch lists derived from the layer graph (./graph.ts). Each layer kind has a `…Forward`
 * and, where it has one, a `…Backward` emitter, as llm.c pairs its `_forward`/`_backward`
 * functions; a program is the graph walked forward (and for training, back again).
 *
 * A training step (rows = batch size, or the smaller last batch):
 *   gather X → encoder linears → heads [mu ‖ logvar] → reparameterize → decoder linears
 *   → BCE+KL (loss partials, dlogits, the KL part of dmulv)
 *   → for each linear, last first: dW, db (one product), then dX masked by the ReLU that made
 *     its input; the first decoder layer's dX is dz, which its epilogue continues through the
 *     reparameterization into dmulv
 *   → Adam over the arena → loss finalize (loss[batch], advances the step state)
 *
 * A norm (BatchNorm2d) runs its own kernels in place of a product's, with the activation after
 * it in them: in a training pass on the batch's statistics (saved for its backward, folded into
 * the running ones), in every other pass on the running statistics. Its backward masks on its
 * own output, so the product after it leaves its dX unmasked.
 */
import type { Dispatch, Gpu } from '../gpu/device';
import type { KernelPlan } from '../gpu/plan';
import {
  bceKlOp,
  elboFinalizeOp,
  elboOp,
  gatherConditionalOp,
  gatherOp,
  gaussianDlogSigmaOp,
  joinColumnsOp,
  lossFinalizeOp,
  meanClampOp,
  reparamOp,
  activationOp,
  type Binding,
  type ElboParams,
} from '../gpu/ops';
import {
  classesOf,
  fusedProducts,
  likelihoodOf,
  splitGraph,
  type ArenaLayout,
  type Span,
  type UnitLayer,
  type VaeSizes,
} from './graph';
import type { ActivationEpilogue, NormContext, NormUnit, ProductContext, ProductUnit } from './layers/unit';
import { DEFAULT_OBJECTIVE, weightedKl, type ObjectiveSettings } from './settings';

/** The arena buffers a program binds. */
export interface Arena {
  layout: ArenaLayout;
  params: GPUBuffer;
  grads: GPUBuffer;
  m: GPUBuffer;
  v: GPUBuffer;
  /** The statistics arena (layout.statsLength words): BatchNorm2d's running statistics and counts. */
  stats: GPUBuffer;
}

const view = (buffer: GPUBuffer, span: Span): GPUBufferBinding => ({
  buffer,
  offset: span.offset * 4,
  size: span.length * 4,
});

/** A product or norm of a chain and the activation folded into it (./graph.ts fusedProducts). */
interface Product {
  layer: UnitLayer;
  activation?: UnitLayer;
}

/**
 * A conditional encoder whose first Linear follows a convolution (or any product): that Linear
 * reads [h ‖ onehot(y)], which a dispatch joins from h and the one-hot columns of
 * [x ‖ onehot(y)]; its dX is d[h ‖ onehot(y)], whose first `features` columns a dispatch copies
 * back out as the product before's dY.
 */
export interface LabelJoin {
  /** The Linear's index among the encoder's products. */
  at: number;
  /** Features of h per row: the Linear reads features + C. */
  features: number;
  /** (rows, features + C). */
  joined: GPUBuffer;
  dJoined?: GPUBuffer;
}

/**
 * The buffers of one pass over up to `rows` rows: the input x, each product's output (the
 * heads' is [mu ‖ logvar], the decoder's last the logits), z and ε, and for training each
 * output's gradient (the heads' is dmulv, the last layer's dlogits). Views and activations
 * have none: a view is its input's floats, an activation writes its product's.
 */
export class Activations {
  readonly x: GPUBuffer;
  /**
   * For a conditional VAE (rows, D+C) [x ‖ onehot(y)], written by the gather (or by inference);
   * else x itself.
   */
  readonly xy: GPUBuffer;
  /** What the encoder's first product reads: xy, or x when the one-hot joins further in (`join`). */
  readonly encoderInput: GPUBuffer;
  readonly join?: LabelJoin;
  /** (rows, L), or for a conditional VAE (rows, L+C) [z ‖ onehot(y)]. */
  readonly z: GPUBuffer;
  readonly eps: GPUBuffer;
  readonly out = new Map<UnitLayer, GPUBuffer>();
  readonly grad = new Map<UnitLayer, GPUBuffer>();
  /** A norm's batch statistics, saved by a training pass's forward for its backward. */
  readonly saved = new Map<UnitLayer, GPUBuffer>();
  readonly encoder: Product[];
  readonly decoder: Product[];

  constructor(
    gpu: Gpu,
    tag: string,
    layout: ArenaLayout,
    readonly rows: number,
    options: { gradients: boolean },
  ) {
    const { encoder, decoder } = splitGraph(layout.layers);
    this.encoder = fusedProducts(encoder);
    this.decoder = fusedProducts(decoder);
    const { D, L } = layout.sizes;
    const C = classesOf(layout.sizes);
    this.x = gpu.buffer(`${tag} x`, rows * D * 4);
    this.xy = C > 0 ? gpu.buffer(`${tag} [x ‖ onehot(y)]`, rows * (D + C) * 4) : this.x;
    this.z = gpu.buffer(`${tag} z`, rows * (L + C) * 4);
    this.eps = gpu.buffer(`${tag} eps`, rows * L * 4);
    const at = this.encoder.findIndex((p) => p.layer.kind === 'Linear');
    this.encoderInput = at > 0 ? this.x : this.xy;
    if (C > 0 && at > 0) {
      const width = this.encoder[at]!.layer.in[0]!;
      this.join = {
        at,
        features: width - C,
        joined: gpu.buffer(`${tag} [h ‖ onehot(y)]`, rows * width * 4),
        ...(options.gradients ? { dJoined: gpu.buffer(`${tag} d[h ‖ onehot(y)]`, rows * width * 4) } : {}),
      };
    }
    for (const { layer } of [...this.encoder, ...this.decoder]) {
      const name = layer.names.join('‖');
      const width = layer.out.reduce((a, b) => a * b, 1);
      this.out.set(layer, gpu.buffer(`${tag} ${name}`, rows * width * 4));
      if (options.gradients) this.grad.set(layer, gpu.buffer(`${tag} d${name}`, rows * width * 4));
      if (options.gradients && layer.unit.role === 'norm')
        this.saved.set(layer, gpu.buffer(`${tag} ${name} saved`, layer.unit.savedFloats(layer.args) * 4));
    }
  }

  /** (rows, 2L) [mu ‖ logvar]. */
  get mulv(): GPUBuffer {
    return this.out.get(this.encoder.at(-1)!.layer)!;
  }
  /** (rows, D) logits of the decoder. */
  get logits(): GPUBuffer {
    return this.out.get(this.decoder.at(-1)!.layer)!;
  }
  get dmulv(): GPUBuffer {
    return this.grad.get(this.encoder.at(-1)!.layer)!;
  }
  get dlogits(): GPUBuffer {
    return this.grad.get(this.decoder.at(-1)!.layer)!;
  }
}

// ---- Layer emitters -----------------------------------------------------------------------------

/** What a product's emitters get: the arena's pieces of `layer`, and the dispatch labels' prefix. */
function productContext(gpu: Gpu, plan: KernelPlan, tag: string, arena: Arena, layer: UnitLayer, rows: number) {
  const c: ProductContext = {
    gpu,
    plan,
    label: `${tag} ${layer.names.join('‖')}`,
    arena,
    pieces: arena.layout.pieces.get(layer)!,
    rows,
    in: layer.in,
  };
  return { c, unit: layer.unit as ProductUnit };
}

/** What a norm's emitters get: its context as a product's, and its buffers' spans. */
function normContext(gpu: Gpu, plan: KernelPlan, tag: string, arena: Arena, layer: UnitLayer, rows: number) {
  const { c } = productContext(gpu, plan, tag, arena, layer, rows);
  return { c: { ...c, buffers: arena.layout.bufferPieces.get(layer)! } as NormContext, unit: layer.unit as NormUnit };
}

/** The epilogue an activation folds into a product (none without one). */
function epilogueOf(activation: UnitLayer | undefined): ActivationEpilogue | undefined {
  if (!activation || activation.unit.role !== 'activation') return undefined;
  return activation.unit.epilogue(activation.args);
}

/**
 * z = mu + exp(½·logvar)·ε with ε drawn from (seed, step in `state`, stream); its backward lives
 * in linearBackward. `zStride` > L: z is the first L columns of [z ‖ onehot(y)].
 */
export function reparamForward(
  gpu: Gpu,
  tag: string,
  rows: number,
  L: number,
  seed: number,
  stream: number,
  b: { state: Binding; mulv: Binding; z: Binding; eps: Binding },
  zStride = L,
) {
  const params: [number, number, number, number] | [number, number, number, number, number] =
    zStride > L ? [rows, L, seed, stream, zStride] : [rows, L, seed, stream];
  return reparamOp(gpu, `${tag} reparameterize`, 'reparam_forward', params, [b.state, b.mulv, b.z, b.eps]);
}

/**
 * The reference model (Bernoulli, β = 1, no warm-up) runs its own kernels, bce_kl and
 * loss_finalize, so its bits are unchanged; anything else runs the general objective (elbo),
 * whose reduction yields two scalars per batch: the loss and the objective.
 */
export function generalObjective(sizes: VaeSizes, o: Partial<ObjectiveSettings>): boolean {
  return likelihoodOf(sizes).kind === 'gaussian' || weightedKl(o);
}

/** The elbo kernels' settings for a pass; `warmup: false` for evaluation, whose state does not count Adam steps. */
function elboParams(sizes: VaeSizes, o: Partial<ObjectiveSettings>, warmup: boolean): ElboParams {
  const l = likelihoodOf(sizes);
  return {
    likelihood: l.kind,
    beta: o.beta ?? DEFAULT_OBJECTIVE.beta,
    warmup: warmup ? (o.klWarmup ?? DEFAULT_OBJECTIVE.klWarmup) : 0,
    logSigma: l.kind === 'gaussian' && l.sigma !== 'learned' ? Math.log(l.sigma) : undefined,
  };
}

/** The likelihood layer: recon + KL on the decoder's output, writing the gradients that start the backward pass. */
export function likelihoodForward(
  gpu: Gpu,
  plan: KernelPlan,
  tag: string,
  arena: Arena,
  rows: number,
  objective: Partial<ObjectiveSettings>,
  warmup: boolean,
  b: {
    state: Binding;
    logits: Binding;
    x: Binding;
    mulv: Binding;
    dlogits: Binding;
    dmulv: Binding;
    partials: Binding;
  },
) {
  const { sizes } = arena.layout;
  const { D, L } = sizes;
  if (!generalObjective(sizes, objective)) return bceKlOp(gpu, `${tag} bce+kl`, { rows, D, L }, b, plan.lossGroups);
  const logSigma = arena.layout.logSigma ? view(arena.params, arena.layout.logSigma) : undefined;
  return elboOp(
    gpu,
    `${tag} ${likelihoodOf(sizes).kind}+β·kl`,
    { rows, D, L },
    elboParams(sizes, objective, warmup),
    { ...b, logSigma },
    plan.lossGroups,
  );
}

/** The learned σ's gradient (no dispatch for the other likelihoods). */
export async function likelihoodBackward(
  gpu: Gpu,
  tag: string,
  arena: Arena,
  act: Activations,
  rows: number,
): Promise<Dispatch[]> {
  const span = arena.layout.logSigma;
  if (!span) return [];
  return [
    await gaussianDlogSigmaOp(
      gpu,
      `${tag} dlog_sigma`,
      { rows, D: arena.layout.sizes.D },
      { mean: act.logits, x: act.x, logSigma: view(arena.params, span), dlogSigma: view(arena.grads, span) },
    ),
  ];
}

/** The pass's loss into out[batch] (and, for the general objective, the objective into `objective`); advances the state. */
export function likelihoodFinalize(
  gpu: Gpu,
  plan: KernelPlan,
  tag: string,
  sizes: VaeSizes,
  objective: Partial<ObjectiveSettings>,
  warmup: boolean,
  b: { state: Binding; partials: Binding; out: Binding; objective?: Binding },
) {
  if (!generalObjective(sizes, objective)) return lossFinalizeOp(gpu, `${tag} loss`, b, plan.lossGroups);
  if (!b.objective) throw new Error(`${tag}: the general objective needs a buffer for its per-batch objective`);
  return elboFinalizeOp(
    gpu,
    `${tag} loss`,
    elboParams(sizes, objective, warmup),
    { ...b, objective: b.objective },
    plan.lossGroups,
  );
}

/** The decoder's output as pixels: σ(logits) for Bernoulli, the mean clamped to [0, 1] for Gaussian. */
export function likelihoodImage(gpu: Gpu, label: string, sizes: VaeSizes, count: number, out: Binding, image: Binding) {
  return likelihoodOf(sizes).kind === 'gaussian'
    ? meanClampOp(gpu, `${label} mean`, count, out, image)
    : activationOp(gpu, `${label} sigmoid`, 'sigmoid_forward', count, [out], image);
}

// ---- Programs -----------------------------------------------------------------------------------

/** Images as bytes on the GPU (4 pixels per u32, as in the idx file), visited in `order`. */
export interface GpuImages {
  data: GPUBuffer;
  count: number;
  order: GPUBuffer;
  /** One u32 class per image, for a conditional VAE (uploaded once, like the pixels). */
  labels?: GPUBuffer;
}

export interface PassConfig {
  seed: number;
  batchSize: number;
  /** β and its warm-up (absent: the reference model's β = 1). */
  objective?: Partial<ObjectiveSettings>;
  /** Whether the state counts Adam steps, so the warm-up applies (training, not evaluation). */
  training?: boolean;
}

/**
 * The encoder: x → … → [mu ‖ logvar]. `training`: a training pass (norms use the batch's
 * statistics and update the running ones); otherwise, as for inference, the running statistics.
 */
export async function encoderForward(
  gpu: Gpu,
  plan: KernelPlan,
  tag: string,
  arena: Arena,
  act: Activations,
  rows: number,
  training = false,
): Promise<Dispatch[]> {
  return chainForward(gpu, plan, tag, arena, act, act.encoder, rows, act.encoderInput, training, act.join);
}

/** The decoder: z → … → logits; `training` as for encoderForward. */
export async function decoderForward(
  gpu: Gpu,
  plan: KernelPlan,
  tag: string,
  arena: Arena,
  act: Activations,
  rows: number,
  training = false,
): Promise<Dispatch[]> {
  return chainForward(gpu, plan, tag, arena, act, act.decoder, rows, act.z, training);
}

async function chainForward(
  gpu: Gpu,
  plan: KernelPlan,
  tag: string,
  arena: Arena,
  act: Activations,
  products: Product[],
  rows: number,
  input: GPUBuffer,
  training: boolean,
  join?: LabelJoin,
): Promise<Dispatch[]> {
  const out: Dispatch[] = [];
  for (const [i, { layer, activation }] of products.entries()) {
    if (i === join?.at) {
      const { D } = arena.layout.sizes;
      const C = classesOf(arena.layout.sizes);
      const h = { buffer: input, width: join.features, stride: join.features, offset: 0 };
      const onehot = { buffer: act.xy, width: C, stride: D + C, offset: D };
      out.push(await joinColumnsOp(gpu, `${tag} [h ‖ onehot(y)]`, rows, h, onehot, join.joined));
      input = join.joined;
    }
    const Y = act.out.get(layer)!;
    if (layer.unit.role === 'norm') {
      const { c, unit } = normContext(gpu, plan, tag, arena, layer, rows);
      const saved = training ? act.saved.get(layer) : undefined;
      if (training && !saved) throw new Error(`${c.label}: a training pass needs buffers made with gradients`);
      out.push(...(await unit.forward(c, layer.args, { X: input, Y, saved }, epilogueOf(activation))));
    } else {
      const { c, unit } = productContext(gpu, plan, tag, arena, layer, rows);
      out.push(...(await unit.forward(c, layer.args, input, Y, epilogueOf(activation))));
    }
    input = Y;
  }
  return out;
}

/** gather → encoder → reparameterize → decoder → loss: shared by training and evaluation. */
export async function lossForward(
  gpu: Gpu,
  plan: KernelPlan,
  tag: string,
  arena: Arena,
  act: Activations,
  config: PassConfig,
  rows: number,
  b: { images: GpuImages; state: GPUBuffer; partials: GPUBuffer; stream: number },
): Promise<Dispatch[]> {
  const { D, L } = arena.layout.sizes;
  const C = classesOf(arena.layout.sizes);
  if (C > 0 && !b.images.labels)
    throw new Error(`${tag}: a conditional VAE (${C} classes) needs the images' labels on the GPU`);
  const gather =
    C > 0
      ? gatherConditionalOp(
          gpu,
          `${tag} gather`,
          { rows, D, batchSize: config.batchSize, C, L },
          {
            state: b.state,
            data: b.images.data,
            perm: b.images.order,
            labels: b.images.labels!,
            X: act.x,
            XY: act.xy,
            Z: act.z,
          },
        )
      : gatherOp(
          gpu,
          `${tag} gather`,
          { rows, D, batchSize: config.batchSize },
          { state: b.state, data: b.images.data, perm: b.images.order, X: act.x },
        );
  return [
    await gather,
    ...(await encoderForward(gpu, plan, tag, arena, act, rows, !!config.training)),
    await reparamForward(
      gpu,
      tag,
      rows,
      L,
      config.seed,
      b.stream,
      { state: b.state, mulv: act.mulv, z: act.z, eps: act.eps },
      L + C,
    ),
    ...(await decoderForward(gpu, plan, tag, arena, act, rows, !!config.training)),
    await likelihoodForward(gpu, plan, tag, arena, rows, config.objective ?? {}, !!config.training, {
      state: b.state,
      logits: act.logits,
      x: act.x,
      mulv: act.mulv,
      dlogits: act.dlogits,
      dmulv: act.dmulv,
      partials: b.partials,
    }),
  ];
}

/** The backward pass: every linear layer, last first (see the file comment). */
export async function lossBackward(
  gpu: Gpu,
  plan: KernelPlan,
  tag: string,
  arena: Arena,
  act: Activations,
  rows: number,
): Promise<Dispatch[]> {
  const out: Dispatch[] = [...(await likelihoodBackward(gpu, tag, arena, act, rows))];
  // Walks one chain backwards: `firstInput` is what the chain's first product read (z or x);
  // the decoder's first dX is dz, continued through the reparameterization into dmulv.
  const chain = async (products: Product[], firstInput: GPUBuffer, reparam: boolean) => {
    for (let i = products.length - 1; i >= 0; i--) {
      const { layer, activation } = products[i]!;
      const dY = act.grad.get(layer)!;
      if (layer.unit.role === 'norm') {
        // The spec puts a product or a norm before it, with no activation between (graph.ts).
        const before = products[i - 1]!.layer;
        const { c, unit } = normContext(gpu, plan, tag, arena, layer, rows);
        const b = {
          X: act.out.get(before)!,
          Y: act.out.get(layer)!,
          saved: act.saved.get(layer)!,
          dY,
          dX: act.grad.get(before)!,
        };
        out.push(...(await unit.backward(c, layer.args, b, epilogueOf(activation))));
        continue;
      }
      const { c, unit } = productContext(gpu, plan, tag, arena, layer, rows);
      // A norm's activation is masked in the norm's own backward.
      const maskOf = (before: Product) =>
        before.layer.unit.role === 'norm' ? undefined : epilogueOf(before.activation);
      const join = reparam ? undefined : act.join;
      if (i > 0 && i === join?.at) {
        // dX is d[h ‖ onehot(y)], masked on the joined h; its first columns are the product before's dY.
        const { joined: X, dJoined: dX, features } = join;
        const before = products[i - 1]!;
        out.push(...(await unit.backward(c, layer.args, { X, dY, dX, mask: maskOf(before) })));
        const dH = { buffer: dX!, width: features, stride: features + classesOf(arena.layout.sizes), offset: 0 };
        const none = { buffer: dX!, width: 0, stride: 0, offset: 0 };
        out.push(
          await joinColumnsOp(gpu, `${tag} dh of d[h ‖ onehot(y)]`, rows, dH, none, act.grad.get(before.layer)!),
        );
      } else if (i > 0) {
        const before = products[i - 1]!;
        const X = act.out.get(before.layer)!;
        const dX = act.grad.get(before.layer)!;
        out.push(...(await unit.backward(c, layer.args, { X, dY, dX, mask: maskOf(before) })));
      } else if (reparam) {
        out.push(
          ...(await unit.backward(c, layer.args, {
            X: firstInput,
            dY,
            dX: act.dmulv,
            reparam: { mulv: act.mulv, eps: act.eps, latent: arena.layout.sizes.L },
          })),
        );
      } else {
        out.push(...(await unit.backward(c, layer.args, { X: firstInput, dY })));
      }
    }
  };
  await chain(act.decoder, act.z, true);
  await chain(act.encoder, act.encoderInput, false);
  return out;
}
