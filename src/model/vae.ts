/**
 * The VAE on the GPU: its buffers (made once) and the fixed dispatch lists for a training
 * step, an evaluation step and sampling, all derived from the layer graph (./programs.ts has
 * the step's anatomy). Nothing here allocates, compiles or uploads per step. The step state
 * (t, batch) lives on the GPU, so any number of steps share one submit.
 */
import { LOSS_GROUPS } from '../../shaders/loss.wgsl';
import { PHILOX_STREAM } from '../../shaders/philox.wgsl';
import type { Dispatch, Gpu } from '../gpu/device';
import { activationOp, adamOp, lossFinalizeOp, reparamOp, type AdamHyper } from '../gpu/ops';
import { arenaLayout, initArena, type ArenaLayout, type VaeSizes } from './graph';
import { Activations, decoderForward, lossBackward, lossForward, type Arena, type GpuImages } from './programs';
import { uniformStream } from './random';

export type { GpuImages };

export interface VaeConfig {
  sizes: VaeSizes;
  batchSize: number;
  seed: number;
  adam: AdamHyper;
}

/** Images per sample grid and per reconstruction row, as the reference saves them. */
export const SAMPLE_COUNT = 64;
export const RECON_COUNT = 8;

export class VaeModel {
  readonly layout: ArenaLayout;
  readonly params: GPUBuffer;
  readonly grads: GPUBuffer;
  readonly m: GPUBuffer;
  readonly v: GPUBuffer;
  /** (t, batch): Adam steps taken and the batch index within the epoch. */
  readonly trainState: GPUBuffer;
  /** (evaluation batches drawn so far — the RNG step, batch index within the pass). */
  readonly evalState: GPUBuffer;
  readonly trainLoss: GPUBuffer;
  readonly testLoss: GPUBuffer;
  /** The first RECON_COUNT test inputs and their reconstructions, each (RECON_COUNT, D). */
  readonly reconInputs: GPUBuffer;
  readonly reconOutputs: GPUBuffer;
  /** (SAMPLE_COUNT, D) decoded prior samples. */
  readonly samples: GPUBuffer;
  /** Loss partials of the pass in flight, one per loss workgroup. */
  readonly partials: GPUBuffer;
  /** The training and evaluation pass's buffers, (batchSize, ·). */
  readonly act: Activations;
  /** The sample pass's buffers, (SAMPLE_COUNT, ·). */
  private readonly sampleAct: Activations;
  /** The reconstructions' logits before the sigmoid, (RECON_COUNT, D). */
  readonly reconLogits: GPUBuffer;
  private programs = new Map<string, Dispatch[]>();

  private constructor(readonly gpu: Gpu, readonly config: VaeConfig, readonly train: GpuImages, readonly test: GpuImages) {
    const { D } = config.sizes;
    this.layout = arenaLayout(config.sizes);
    const arenaBytes = this.layout.length * 4;
    this.params = gpu.buffer('params', arenaBytes);
    this.grads = gpu.buffer('grads', arenaBytes);
    this.m = gpu.buffer('adam m', arenaBytes);
    this.v = gpu.buffer('adam v', arenaBytes);
    this.trainState = gpu.buffer('train state', 16);
    this.evalState = gpu.buffer('eval state', 16);
    this.trainLoss = gpu.buffer('train loss per batch', this.trainBatches * 4);
    this.testLoss = gpu.buffer('test loss per batch', this.testBatches * 4);
    this.reconInputs = gpu.buffer('reconstruction inputs', RECON_COUNT * D * 4);
    this.reconOutputs = gpu.buffer('reconstructions', RECON_COUNT * D * 4);
    this.reconLogits = gpu.buffer('reconstruction logits', RECON_COUNT * D * 4);
    this.samples = gpu.buffer('samples', SAMPLE_COUNT * D * 4);
    this.partials = gpu.buffer('loss partials', LOSS_GROUPS * 4);
    this.act = new Activations(gpu, 'batch', this.layout, config.batchSize, { gradients: true });
    this.sampleAct = new Activations(gpu, 'sample', this.layout, SAMPLE_COUNT, { gradients: false });
  }

  get arena(): Arena {
    return { layout: this.layout, params: this.params, grads: this.grads, m: this.m, v: this.v };
  }

  static async create(gpu: Gpu, config: VaeConfig, train: GpuImages, test: GpuImages): Promise<VaeModel> {
    const model = new VaeModel(gpu, config, train, test);
    model.initialize();
    await model.build();
    return model;
  }

  get trainBatches(): number {
    return Math.ceil(this.train.count / this.config.batchSize);
  }

  get testBatches(): number {
    return Math.ceil(this.test.count / this.config.batchSize);
  }

  /** Rows in batch `i` of a pass over `count` images: the last one may be smaller. */
  rowsOf(i: number, count: number): number {
    return Math.min(this.config.batchSize, count - i * this.config.batchSize);
  }

  /** Fresh weights (PyTorch's default init from the seed), zero moments, step 0. */
  initialize(): void {
    const arena = initArena(this.layout, uniformStream(this.config.seed, PHILOX_STREAM.init, 0));
    this.gpu.write(this.params, arena);
    const zeros = new Float32Array(this.layout.length);
    for (const b of [this.grads, this.m, this.v]) this.gpu.write(b, zeros);
    this.gpu.write(this.trainState, new Uint32Array(4));
    this.gpu.write(this.evalState, new Uint32Array(4));
  }

  /** The dispatches of one training step over `rows` images. */
  trainStep(rows: number): readonly Dispatch[] {
    return this.program(`train ${rows}`);
  }

  evalStep(rows: number): readonly Dispatch[] {
    return this.program(`eval ${rows}`);
  }

  /** randn → fc3 → fc4 → sigmoid into `samples`, with the prior draw keyed by `step`. */
  sampleProgram(): readonly Dispatch[] {
    return this.program('sample');
  }

  /** Sigmoid of the logits staged in `reconLogits`, into `reconOutputs`. */
  reconSigmoid(): readonly Dispatch[] {
    return this.program('recon sigmoid');
  }

  private program(key: string): Dispatch[] {
    const p = this.programs.get(key);
    if (!p) throw new Error(`no program "${key}"`);
    return p;
  }

  /** Builds every program once: bind groups and uniforms for each distinct batch size. */
  private async build(): Promise<void> {
    const B = this.config.batchSize;
    const rowsSet = (count: number) => new Set([B, count % B || B]);
    for (const rows of rowsSet(this.train.count)) this.programs.set(`train ${rows}`, await this.buildTrain(rows));
    for (const rows of rowsSet(this.test.count)) this.programs.set(`eval ${rows}`, await this.buildEval(rows));
    this.programs.set('sample', await this.buildSample());
    const { D } = this.config.sizes;
    this.programs.set('recon sigmoid',
      [await activationOp(this.gpu, 'recon sigmoid', 'sigmoid_forward', RECON_COUNT * D, [this.reconLogits], this.reconOutputs)]);
  }

  private async buildTrain(rows: number): Promise<Dispatch[]> {
    const { gpu, arena, act } = this;
    const tag = `train[${rows}]`;
    return [
      ...(await lossForward(gpu, tag, arena, act, this.config, rows,
        { images: this.train, state: this.trainState, partials: this.partials, stream: PHILOX_STREAM.train })),
      ...(await lossBackward(gpu, tag, arena, act, rows)),
      await adamOp(gpu, `${tag} adam`, this.layout.length, this.config.adam,
        { state: this.trainState, params: this.params, grads: this.grads, m: this.m, v: this.v }),
      await lossFinalizeOp(gpu, `${tag} loss`, { state: this.trainState, partials: this.partials, out: this.trainLoss }),
    ];
  }

  private async buildEval(rows: number): Promise<Dispatch[]> {
    const tag = `eval[${rows}]`;
    return [
      ...(await lossForward(this.gpu, tag, this.arena, this.act, this.config, rows,
        { images: this.test, state: this.evalState, partials: this.partials, stream: PHILOX_STREAM.eval })),
      await lossFinalizeOp(this.gpu, `${tag} loss`, { state: this.evalState, partials: this.partials, out: this.testLoss }),
    ];
  }

  private async buildSample(): Promise<Dispatch[]> {
    const { gpu, sampleAct: act } = this;
    const { D, L } = this.config.sizes;
    const n = SAMPLE_COUNT;
    return [
      // The prior draw is keyed by step 0 of the sample stream: the same z every epoch, so the
      // grids show one set of latents improving.
      await reparamOp(gpu, 'sample z', 'randn', [n * L, 0, this.config.seed, PHILOX_STREAM.sample], [act.z]),
      ...(await decoderForward(gpu, 'sample', this.arena, act, n)),
      await activationOp(gpu, 'sample sigmoid', 'sigmoid_forward', n * D, [act.logits], this.samples),
    ];
  }

  /** Weights, Adam moments and the step count, read back (a checkpoint's contents). */
  async exportState(): Promise<{ params: Float32Array; m: Float32Array; v: Float32Array; step: number }> {
    const { gpu } = this;
    const [params, m, v, state] = await Promise.all([
      gpu.readFloats(this.params), gpu.readFloats(this.m), gpu.readFloats(this.v), gpu.read(this.trainState, 0, 4),
    ]);
    return { params, m, v, step: new Uint32Array(state)[0] };
  }

  /** Replaces weights (and, when given, Adam moments and the step count). */
  importState(state: { params: Float32Array; m?: Float32Array; v?: Float32Array; step?: number }): void {
    const { gpu } = this;
    gpu.write(this.params, state.params);
    const zeros = new Float32Array(this.layout.length);
    gpu.write(this.m, state.m ?? zeros);
    gpu.write(this.v, state.v ?? zeros);
    gpu.write(this.trainState, new Uint32Array([state.step ?? 0, 0]));
  }

  /** Frees every buffer the model made (datasets included when they came from `uploadImages`). */
  destroy(): void {
    this.gpu.destroy();
  }
}

/** Puts `count` images of `pixelsPerImage` bytes on the GPU once, with an identity order. */
export function uploadImages(gpu: Gpu, label: string, pixels: Uint8Array, count: number): GpuImages {
  const order = new Uint32Array(count);
  for (let i = 0; i < count; i++) order[i] = i;
  return {
    data: gpu.bufferWith(`${label} pixels`, pixels),
    count,
    order: gpu.bufferWith(`${label} order`, order),
  };
}
