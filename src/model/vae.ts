/**
 * The VAE on the GPU: its buffers (made once) and the fixed dispatch lists for a training
 * step, an evaluation step and sampling, all derived from the layer graph (./programs.ts has
 * the step's anatomy). Nothing here allocates, compiles or uploads per step. The step state
 * (t, batch) lives on the GPU, so any number of steps share one submit.
 */
import type { AdamClamp } from '../../shaders/adam.wgsl';
import { PHILOX_STREAM } from '../../shaders/philox.wgsl';
import type { Dispatch, Gpu } from '../gpu/device';
import { adamOp, reparamOp, type AdamHyper } from '../gpu/ops';
import { frozenPlan, type KernelPlan } from '../gpu/plan';
import { arenaLayout, classesOf, initArena, initStats, type ArenaLayout, type VaeSizes } from './graph';
import {
  Activations,
  decoderForward,
  generalObjective,
  likelihoodFinalize,
  likelihoodImage,
  lossBackward,
  lossForward,
  type Arena,
  type GpuImages,
} from './programs';
import { uniformStream } from './random';
import { betaReason, klWarmupReason, LOG_SIGMA_RANGE } from './settings';

export type { GpuImages };

export interface VaeConfig extends VaeJob {
  sizes: VaeSizes;
  seed: number;
  /**
   * The kernel plan every program is built under (default: the adapter's, Gpu.defaultPlan): a
   * checkpoint's, a tuned one, or an autotune candidate. The model keeps a frozen copy for life.
   */
  plan?: KernelPlan;
}

/** What the training and evaluation programs are built for; `configure` rebuilds them when it changes. */
export interface VaeJob {
  /** Rows per training and evaluation step. */
  batchSize: number;
  adam: AdamHyper;
  train: GpuImages;
  test: GpuImages;
  /** β on the KL term (default 1, the reference model's). */
  beta?: number;
  /** Adam steps of the linear KL warm-up (default 0: none); see ObjectiveSettings. */
  klWarmup?: number;
}

/** Images per sample grid and per reconstruction row, as the reference saves them. */
export const SAMPLE_COUNT = 64;
export const RECON_COUNT = 8;

/**
 * A conditional VAE's sample grid has one row per class, of this many images: the hosts draw
 * it as (classes × SAMPLES_PER_CLASS), and sample i is of class ⌊i / SAMPLES_PER_CLASS⌋.
 */
export const SAMPLES_PER_CLASS = 8;

/** Images in the sample grid of a model of `sizes`. */
export function sampleCountOf(sizes: VaeSizes): number {
  const C = classesOf(sizes);
  return C > 0 ? C * SAMPLES_PER_CLASS : SAMPLE_COUNT;
}

/** The buffers and programs of one job; freed when another job replaces it. */
interface Built extends VaeJob {
  act: Activations;
  trainLoss: GPUBuffer;
  testLoss: GPUBuffer;
  /** recon + β_t·KL per batch, for the general objective only (the reference model's loss is all there is otherwise). */
  trainObjective?: GPUBuffer;
  testObjective?: GPUBuffer;
  programs: Map<string, Dispatch[]>;
  /** Every buffer made for this job (activations, loss rings, uniforms), to free on replacement. */
  made: GPUBuffer[];
}

export class VaeModel {
  readonly layout: ArenaLayout;
  readonly sizes: VaeSizes;
  readonly seed: number;
  readonly params: GPUBuffer;
  readonly grads: GPUBuffer;
  readonly m: GPUBuffer;
  readonly v: GPUBuffer;
  /** BatchNorm2d's running statistics and counts (layout.buffers): state, but not Adam's. */
  readonly stats: GPUBuffer;
  /** (t, batch): Adam steps taken and the batch index within the epoch. */
  readonly trainState: GPUBuffer;
  /** (evaluation batches drawn so far — the RNG step, batch index within the pass). */
  readonly evalState: GPUBuffer;
  /** The first RECON_COUNT test inputs and their reconstructions, each (RECON_COUNT, D). */
  readonly reconInputs: GPUBuffer;
  readonly reconOutputs: GPUBuffer;
  /** The reconstructions' logits before the sigmoid, (RECON_COUNT, D). */
  readonly reconLogits: GPUBuffer;
  /** (sampleCountOf(sizes), D) decoded prior samples: SAMPLE_COUNT, or one row per class. */
  readonly samples: GPUBuffer;
  /** Loss partials of the pass in flight, one per loss workgroup. */
  readonly partials: GPUBuffer;
  /** The sample pass's buffers, (SAMPLE_COUNT, ·). */
  private readonly sampleAct: Activations;
  private readonly fixedPrograms = new Map<string, Dispatch[]>();
  private built!: Built;

  /** `plan`: the kernel plan its programs are built under, frozen (a checkpoint records it). */
  private constructor(
    readonly gpu: Gpu,
    sizes: VaeSizes,
    seed: number,
    readonly plan: KernelPlan,
  ) {
    this.sizes = sizes;
    this.seed = seed;
    const { D } = sizes;
    this.layout = arenaLayout(sizes);
    const arenaBytes = this.layout.length * 4;
    this.params = gpu.buffer('params', arenaBytes);
    this.grads = gpu.buffer('grads', arenaBytes);
    this.m = gpu.buffer('adam m', arenaBytes);
    this.v = gpu.buffer('adam v', arenaBytes);
    // A model without buffers binds none of it; WebGPU buffers are not empty.
    this.stats = gpu.buffer('batchnorm statistics', Math.max(this.layout.statsLength, 1) * 4);
    this.trainState = gpu.buffer('train state', 16);
    this.evalState = gpu.buffer('eval state', 16);
    this.reconInputs = gpu.buffer('reconstruction inputs', RECON_COUNT * D * 4);
    this.reconOutputs = gpu.buffer('reconstructions', RECON_COUNT * D * 4);
    this.reconLogits = gpu.buffer('reconstruction logits', RECON_COUNT * D * 4);
    this.samples = gpu.buffer('samples', sampleCountOf(sizes) * D * 4);
    // Twice the groups: the general objective writes a recon and a KL partial per group.
    this.partials = gpu.buffer('loss partials', 2 * this.plan.lossGroups * 4);
    this.sampleAct = new Activations(gpu, 'sample', this.layout, sampleCountOf(sizes), { gradients: false });
  }

  /** A model with fresh weights (PyTorch's default init from the seed), built for `config`'s job. */
  static async create(gpu: Gpu, config: VaeConfig): Promise<VaeModel> {
    const model = new VaeModel(gpu, config.sizes, config.seed, frozenPlan(config.plan ?? gpu.defaultPlan));
    model.initialize();
    await model.buildFixed();
    await model.configure(config);
    return model;
  }

  /** The sizes, seed and current job. */
  get config(): VaeConfig {
    const { batchSize, adam, train, test, beta, klWarmup } = this.built;
    return { sizes: this.sizes, seed: this.seed, plan: this.plan, batchSize, adam, train, test, beta, klWarmup };
  }

  get train(): GpuImages {
    return this.built.train;
  }

  get test(): GpuImages {
    return this.built.test;
  }

  /** The training and evaluation pass's buffers, (batchSize, ·). */
  get act(): Activations {
    return this.built.act;
  }

  get trainLoss(): GPUBuffer {
    return this.built.trainLoss;
  }

  get testLoss(): GPUBuffer {
    return this.built.testLoss;
  }

  /** Whether this job optimizes more than the reference model's loss (β ≠ 1, a warm-up, or the Gaussian): then the objective rings exist. */
  get generalObjective(): boolean {
    return generalObjective(this.sizes, this.built);
  }

  get trainObjective(): GPUBuffer | undefined {
    return this.built.trainObjective;
  }

  get testObjective(): GPUBuffer | undefined {
    return this.built.testObjective;
  }

  get arena(): Arena {
    return { layout: this.layout, params: this.params, grads: this.grads, m: this.m, v: this.v, stats: this.stats };
  }

  /**
   * Rebuilds the training and evaluation programs for another job (batch size, Adam settings
   * or images), keeping the weights, moments and step. Nothing is rebuilt for the same job;
   * pipelines come from the runtime's cache, so a new job compiles nothing.
   */
  async configure(job: VaeJob): Promise<void> {
    // The hosts check these too; here because a fraction of a warm-up would be truncated by its
    // u32 uniform, and a β out of range trains something no host offers, without a word.
    const badBeta = job.beta === undefined ? null : betaReason(job.beta);
    if (badBeta) throw new RangeError(`VaeModel: beta ${job.beta} ${badBeta}`);
    const badWarmup = job.klWarmup === undefined ? null : klWarmupReason(job.klWarmup);
    if (badWarmup) throw new RangeError(`VaeModel: klWarmup ${job.klWarmup} ${badWarmup}`);
    const old = this.built as Built | undefined;
    const same =
      old &&
      old.batchSize === job.batchSize &&
      old.train === job.train &&
      old.test === job.test &&
      JSON.stringify(old.adam) === JSON.stringify(job.adam) &&
      old.beta === job.beta &&
      old.klWarmup === job.klWarmup;
    if (same) return;
    const made: GPUBuffer[] = [];
    const built = await this.gpu.collecting(made, async () => {
      const b: Built = {
        ...job,
        made,
        act: new Activations(this.gpu, 'batch', this.layout, job.batchSize, { gradients: true }),
        trainLoss: this.gpu.buffer('train loss per batch', Math.ceil(job.train.count / job.batchSize) * 4),
        testLoss: this.gpu.buffer('test loss per batch', Math.ceil(job.test.count / job.batchSize) * 4),
        programs: new Map(),
      };
      if (generalObjective(this.sizes, job)) {
        b.trainObjective = this.gpu.buffer('train objective per batch', Math.ceil(job.train.count / job.batchSize) * 4);
        b.testObjective = this.gpu.buffer('test objective per batch', Math.ceil(job.test.count / job.batchSize) * 4);
      }
      const rowsSet = (count: number) => new Set([job.batchSize, count % job.batchSize || job.batchSize]);
      for (const rows of rowsSet(job.train.count)) b.programs.set(`train ${rows}`, await this.buildTrain(b, rows));
      for (const rows of rowsSet(job.test.count)) b.programs.set(`eval ${rows}`, await this.buildEval(b, rows));
      return b;
    });
    this.built = built;
    for (const buffer of old?.made ?? []) this.gpu.release(buffer);
  }

  get trainBatches(): number {
    return Math.ceil(this.train.count / this.built.batchSize);
  }

  get testBatches(): number {
    return Math.ceil(this.test.count / this.built.batchSize);
  }

  /** Rows in batch `i` of a pass over `count` images: the last one may be smaller. */
  rowsOf(i: number, count: number): number {
    return Math.min(this.built.batchSize, count - i * this.built.batchSize);
  }

  /** Fresh weights (PyTorch's default init from the seed), zero moments, step 0. */
  initialize(): void {
    const arena = initArena(this.layout, uniformStream(this.seed, PHILOX_STREAM.init, 0));
    this.gpu.write(this.params, arena);
    const zeros = new Float32Array(this.layout.length);
    for (const b of [this.grads, this.m, this.v]) this.gpu.write(b, zeros);
    if (this.layout.statsLength > 0) this.gpu.write(this.stats, initStats(this.layout));
    this.gpu.write(this.trainState, new Uint32Array(4));
    this.gpu.write(this.evalState, new Uint32Array(4));
  }

  /** The dispatches of one training step over `rows` images. */
  trainStep(rows: number): readonly Dispatch[] {
    return this.program(this.built.programs, `train ${rows}`);
  }

  evalStep(rows: number): readonly Dispatch[] {
    return this.program(this.built.programs, `eval ${rows}`);
  }

  /** randn → decoder → sigmoid (a Gaussian's mean, clamped) into `samples`, always the same prior draw. */
  sampleProgram(): readonly Dispatch[] {
    return this.program(this.fixedPrograms, 'sample');
  }

  /** Sigmoid of the logits staged in `reconLogits` (a Gaussian's mean, clamped), into `reconOutputs`. */
  reconSigmoid(): readonly Dispatch[] {
    return this.program(this.fixedPrograms, 'recon sigmoid');
  }

  private program(programs: Map<string, Dispatch[]>, key: string): Dispatch[] {
    const p = programs.get(key);
    if (!p) throw new Error(`no program "${key}"`);
    return p;
  }

  /** The programs that do not depend on the job: sampling and the reconstructions' sigmoid. */
  private async buildFixed(): Promise<void> {
    const { gpu, sampleAct: act } = this;
    const { D, L } = this.sizes;
    const C = classesOf(this.sizes);
    const n = sampleCountOf(this.sizes);
    this.fixedPrograms.set('sample', [
      // The prior draw is keyed by step 0 of the sample stream: the same z every epoch, so the
      // grids show one set of latents improving.
      C > 0
        ? await this.conditionalPriorDraw(n, L, C)
        : await reparamOp(gpu, 'sample z', 'randn', [n * L, 0, this.seed, PHILOX_STREAM.sample], [act.z]),
      ...(await decoderForward(gpu, this.plan, 'sample', this.arena, act, n)),
      await likelihoodImage(gpu, 'sample', this.sizes, n * D, act.logits, this.samples),
    ]);
    this.fixedPrograms.set('recon sigmoid', [
      await likelihoodImage(gpu, 'recon', this.sizes, RECON_COUNT * D, this.reconLogits, this.reconOutputs),
    ]);
  }

  /**
   * [z ‖ onehot(y)] for the conditional sample grid: sample i is of class ⌊i / SAMPLES_PER_CLASS⌋
   * (constant one-hot columns, written once), and z is the prior draw written into the first L
   * columns by the strided reparameterization with mu = logvar = 0 (z = 0 + exp(0)·ε = ε) at
   * step 0 of the sample stream — the generator and kernel training uses, no new one.
   */
  private async conditionalPriorDraw(n: number, L: number, C: number): Promise<Dispatch> {
    const { gpu, sampleAct: act } = this;
    const z = new Float32Array(n * (L + C));
    for (let i = 0; i < n; i++) z[i * (L + C) + L + Math.floor(i / SAMPLES_PER_CLASS)] = 1;
    gpu.write(act.z, z);
    const zeros = (label: string, floats: number) => gpu.bufferWith(label, new Float32Array(floats));
    return reparamOp(
      gpu,
      'sample z',
      'reparam_forward',
      [n, L, this.seed, PHILOX_STREAM.sample, L + C],
      [zeros('sample step 0', 4), zeros('sample prior mu, logvar', n * 2 * L), act.z, act.eps],
    );
  }

  private async buildTrain(b: Built, rows: number): Promise<Dispatch[]> {
    const { gpu, plan, arena } = this;
    const tag = `train[${rows}]`;
    return [
      ...(await lossForward(
        gpu,
        plan,
        tag,
        arena,
        b.act,
        { seed: this.seed, batchSize: b.batchSize, objective: b, training: true },
        rows,
        { images: b.train, state: this.trainState, partials: this.partials, stream: PHILOX_STREAM.train },
      )),
      ...(await lossBackward(gpu, plan, tag, arena, b.act, rows)),
      await adamOp(
        gpu,
        `${tag} adam`,
        this.layout.length,
        b.adam,
        { state: this.trainState, params: this.params, grads: this.grads, m: this.m, v: this.v },
        plan.adam,
        this.logSigmaClamp(),
      ),
      await likelihoodFinalize(gpu, plan, tag, this.sizes, b, true, {
        state: this.trainState,
        partials: this.partials,
        out: b.trainLoss,
        objective: b.trainObjective,
      }),
    ];
  }

  private async buildEval(b: Built, rows: number): Promise<Dispatch[]> {
    const tag = `eval[${rows}]`;
    return [
      ...(await lossForward(
        this.gpu,
        this.plan,
        tag,
        this.arena,
        b.act,
        { seed: this.seed, batchSize: b.batchSize, objective: b },
        rows,
        { images: b.test, state: this.evalState, partials: this.partials, stream: PHILOX_STREAM.eval },
      )),
      await likelihoodFinalize(this.gpu, this.plan, tag, this.sizes, b, false, {
        state: this.evalState,
        partials: this.partials,
        out: b.testLoss,
        objective: b.testObjective,
      }),
    ];
  }

  /** The learned σ's log_sigma, kept in LOG_SIGMA_RANGE by Adam; none for other models (their Adam kernel is unchanged). */
  private logSigmaClamp(): AdamClamp | undefined {
    const span = this.layout.logSigma;
    return span && { ...span, min: LOG_SIGMA_RANGE[0], max: LOG_SIGMA_RANGE[1] };
  }

  /**
   * Weights, Adam moments, the step count and (for a model with buffers) the statistics arena,
   * read back (a checkpoint's contents).
   */
  async exportState(): Promise<{
    params: Float32Array;
    m: Float32Array;
    v: Float32Array;
    step: number;
    stats?: Uint32Array;
  }> {
    const { gpu } = this;
    const words = this.layout.statsLength;
    const [params, m, v, state, stats] = await Promise.all([
      gpu.readFloats(this.params),
      gpu.readFloats(this.m),
      gpu.readFloats(this.v),
      gpu.read(this.trainState, 0, 4),
      words > 0 ? gpu.read(this.stats, 0, words * 4) : undefined,
    ]);
    return { params, m, v, step: new Uint32Array(state)[0], ...(stats ? { stats: new Uint32Array(stats) } : {}) };
  }

  /**
   * Replaces weights (and, when given, Adam moments, the step count and the statistics arena;
   * absent, the statistics start afresh, as PyTorch's buffers do).
   */
  importState(state: {
    params: Float32Array;
    m?: Float32Array;
    v?: Float32Array;
    step?: number;
    stats?: Uint32Array;
  }): void {
    const { gpu } = this;
    gpu.write(this.params, state.params);
    if (this.layout.statsLength > 0) gpu.write(this.stats, state.stats ?? initStats(this.layout));
    const zeros = new Float32Array(this.layout.length);
    gpu.write(this.m, state.m ?? zeros);
    gpu.write(this.v, state.v ?? zeros);
    gpu.write(this.trainState, new Uint32Array([state.step ?? 0, 0]));
  }

  /** Frees every buffer of the model's runtime (datasets included when they came from `uploadImages`); the runtime stays. */
  destroy(): void {
    this.gpu.freeBuffers();
  }
}

/**
 * Puts `count` images of `pixelsPerImage` bytes on the GPU once, with an identity order; with
 * `labels` (one class per image, for a conditional VAE), those too, as u32s.
 */
export function uploadImages(
  gpu: Gpu,
  label: string,
  pixels: Uint8Array,
  count: number,
  labels?: ArrayLike<number>,
): GpuImages {
  const order = new Uint32Array(count);
  for (let i = 0; i < count; i++) order[i] = i;
  const images: GpuImages = {
    data: gpu.bufferWith(`${label} pixels`, pixels),
    count,
    order: gpu.bufferWith(`${label} order`, order),
  };
  if (labels) {
    if (labels.length < count)
      throw new RangeError(`${label}: ${labels.length} labels for ${count} images; every image needs its class`);
    images.labels = gpu.bufferWith(
      `${label} labels`,
      Uint32Array.from({ length: count }, (_, i) => labels[i]!),
    );
  }
  return images;
}
