/**
 * The VAE on the GPU: its buffers (made once) and the fixed dispatch lists for a training
 * step, an evaluation step and sampling. Nothing here allocates, compiles or uploads per step.
 *
 * A training step (rows = batch size, or the smaller last batch):
 *   gather X → fc1 (+b, ReLU) → fc21‖fc22 → reparameterize → fc3 (+b, ReLU) → fc4 (+b)
 *   → BCE+KL (loss partials, dlogits, KL part of dmulv)
 *   → dW4,db4 → dh3 → dW3,db3 → dz (its epilogue: reparam backward) → dW2,db2 → dh1 → dW1,db1
 *   → Adam over the arena → loss finalize (loss[batch], advances the step state)
 * The step state (t, batch) lives on the GPU, so any number of steps share one submit.
 */
import { LOSS_GROUPS } from '../../shaders/loss.wgsl';
import { PHILOX_STREAM } from '../../shaders/philox.wgsl';
import type { Dispatch, Gpu } from '../gpu/device';
import {
  activationOp, adamOp, bceKlOp, gatherOp, lossFinalizeOp, matmulOp, reparamOp, type AdamHyper, type Binding,
} from '../gpu/ops';
import { arenaLayout, initArena, type ArenaLayout, type PieceName, type VaeSizes } from './params';
import { uniformStream } from './random';

export interface VaeConfig {
  sizes: VaeSizes;
  batchSize: number;
  seed: number;
  adam: AdamHyper;
}

/** Images as bytes on the GPU (4 pixels per u32, as in the idx file). */
export interface GpuImages {
  data: GPUBuffer;
  count: number;
  /** The order in which the images are visited (the epoch's shuffle, or identity). */
  order: GPUBuffer;
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
  private readonly act: Record<string, GPUBuffer> = {};
  private programs = new Map<string, Dispatch[]>();

  private constructor(readonly gpu: Gpu, readonly config: VaeConfig, readonly train: GpuImages, readonly test: GpuImages) {
    const { D, H, L } = config.sizes;
    const B = config.batchSize;
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
    this.samples = gpu.buffer('samples', SAMPLE_COUNT * D * 4);
    const shapes: Record<string, number> = {
      X: B * D, H1: B * H, MULV: B * 2 * L, Z: B * L, EPS: B * L, H3: B * H, LOGITS: B * D,
      dLOGITS: B * D, dMULV: B * 2 * L, dH3: B * H, dH1: B * H, partials: LOSS_GROUPS,
      reconLOGITS: RECON_COUNT * D, sampleZ: SAMPLE_COUNT * L, sampleH3: SAMPLE_COUNT * H, sampleLOGITS: SAMPLE_COUNT * D,
    };
    for (const [name, floats] of Object.entries(shapes)) this.act[name] = gpu.buffer(name, floats * 4);
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

  /** Sigmoid of the logits staged in `activation('reconLOGITS')`, into `reconOutputs`. */
  reconSigmoid(): readonly Dispatch[] {
    return this.program('recon sigmoid');
  }

  /** The activation buffer `name` (for readbacks of intermediate values in tests and the API). */
  activation(name: string): GPUBuffer {
    return this.act[name];
  }

  private program(key: string): Dispatch[] {
    const p = this.programs.get(key);
    if (!p) throw new Error(`no program "${key}"`);
    return p;
  }

  private piece(buffer: GPUBuffer, name: PieceName): GPUBufferBinding {
    const span = this.layout.pieces[name];
    return { buffer, offset: span.offset * 4, size: span.length * 4 };
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
      [await activationOp(this.gpu, 'recon sigmoid', 'sigmoid_forward', RECON_COUNT * D, [this.act.reconLOGITS], this.reconOutputs)]);
  }

  /** gather → encoder → reparameterize → decoder → loss: shared by training and evaluation. */
  private async forward(rows: number, tag: string, images: GpuImages, state: GPUBuffer, stream: number): Promise<Dispatch[]> {
    const { gpu } = this;
    const { D, H, L } = this.config.sizes;
    const a = this.act;
    const P = (name: PieceName) => this.piece(this.params, name);
    return [
      await gatherOp(gpu, `${tag} gather`, { rows, D, batchSize: this.config.batchSize },
        { state, data: images.data, perm: images.order, X: a.X }),
      await matmulOp(gpu, `${tag} fc1`, { M: rows, N: H, K: D }, { transA: false, transB: true, relu: true },
        { A: a.X, B: P('W1'), C: a.H1, bias: P('b1') }),
      await matmulOp(gpu, `${tag} fc21‖fc22`, { M: rows, N: 2 * L, K: H }, { transA: false, transB: true },
        { A: a.H1, B: P('W2'), C: a.MULV, bias: P('b2') }),
      await reparamOp(gpu, `${tag} reparameterize`, 'reparam_forward', [rows, L, this.config.seed, stream],
        [state, a.MULV, a.Z, a.EPS]),
      await matmulOp(gpu, `${tag} fc3`, { M: rows, N: H, K: L }, { transA: false, transB: true, relu: true },
        { A: a.Z, B: P('W3'), C: a.H3, bias: P('b3') }),
      await matmulOp(gpu, `${tag} fc4`, { M: rows, N: D, K: H }, { transA: false, transB: true },
        { A: a.H3, B: P('W4'), C: a.LOGITS, bias: P('b4') }),
      await bceKlOp(gpu, `${tag} bce+kl`, { rows, D, L },
        { logits: a.LOGITS, x: a.X, mulv: a.MULV, dlogits: a.dLOGITS, dmulv: a.dMULV, partials: a.partials }),
    ];
  }

  private async buildTrain(rows: number): Promise<Dispatch[]> {
    const { gpu } = this;
    const { D, H, L } = this.config.sizes;
    const a = this.act;
    const tag = `train[${rows}]`;
    const P = (name: PieceName) => this.piece(this.params, name);
    const G = (name: PieceName) => this.piece(this.grads, name);
    const dW = (label: string, outF: number, inF: number, dY: Binding, X: Binding, w: PieceName, b: PieceName) =>
      matmulOp(gpu, `${tag} ${label}`, { M: outF, N: inF, K: rows }, { transA: true, transB: false },
        { A: dY, B: X, C: G(w), rowSum: G(b) });
    return [
      ...(await this.forward(rows, tag, this.train, this.trainState, PHILOX_STREAM.train)),
      await dW('dW4', D, H, a.dLOGITS, a.H3, 'W4', 'b4'),
      await matmulOp(gpu, `${tag} dh3`, { M: rows, N: H, K: D }, { transA: false, transB: false },
        { A: a.dLOGITS, B: P('W4'), C: a.dH3, mask: a.H3 }),
      await dW('dW3', H, L, a.dH3, a.Z, 'W3', 'b3'),
      // dz = dh3·W3, continued through the reparameterization in the epilogue: dmulv += [dz, dz·ε·½σ].
      await matmulOp(gpu, `${tag} dz→dmulv`, { M: rows, N: L, K: H }, { transA: false, transB: false },
        { A: a.dH3, B: P('W3'), C: a.dMULV, mulv: a.MULV, eps: a.EPS }),
      await dW('dW2', 2 * L, H, a.dMULV, a.H1, 'W2', 'b2'),
      await matmulOp(gpu, `${tag} dh1`, { M: rows, N: H, K: 2 * L }, { transA: false, transB: false },
        { A: a.dMULV, B: P('W2'), C: a.dH1, mask: a.H1 }),
      await dW('dW1', H, D, a.dH1, a.X, 'W1', 'b1'),
      await adamOp(gpu, `${tag} adam`, this.layout.length, this.config.adam,
        { state: this.trainState, params: this.params, grads: this.grads, m: this.m, v: this.v }),
      await lossFinalizeOp(gpu, `${tag} loss`, { state: this.trainState, partials: a.partials, out: this.trainLoss }),
    ];
  }

  private async buildEval(rows: number): Promise<Dispatch[]> {
    const tag = `eval[${rows}]`;
    return [
      ...(await this.forward(rows, tag, this.test, this.evalState, PHILOX_STREAM.eval)),
      await lossFinalizeOp(this.gpu, `${tag} loss`, { state: this.evalState, partials: this.act.partials, out: this.testLoss }),
    ];
  }

  private async buildSample(): Promise<Dispatch[]> {
    const { gpu } = this;
    const { D, H, L } = this.config.sizes;
    const a = this.act;
    const P = (name: PieceName) => this.piece(this.params, name);
    const n = SAMPLE_COUNT;
    return [
      // The prior draw is keyed by step 0 of the sample stream: the same z every epoch, so the
      // grids show one set of latents improving.
      await reparamOp(gpu, 'sample z', 'randn', [n * L, 0, this.config.seed, PHILOX_STREAM.sample], [a.sampleZ]),
      await matmulOp(gpu, 'sample fc3', { M: n, N: H, K: L }, { transA: false, transB: true, relu: true },
        { A: a.sampleZ, B: P('W3'), C: a.sampleH3, bias: P('b3') }),
      await matmulOp(gpu, 'sample fc4', { M: n, N: D, K: H }, { transA: false, transB: true },
        { A: a.sampleH3, B: P('W4'), C: a.sampleLOGITS, bias: P('b4') }),
      await activationOp(gpu, 'sample sigmoid', 'sigmoid_forward', n * D, [a.sampleLOGITS], this.samples),
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
