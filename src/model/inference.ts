/**
 * Inference on a trained VaeModel: encode images to (mu, logvar) and decode latents to images,
 * in chunks of up to CHUNK rows. Programs are built once per distinct row count (the chunk
 * size and at most a few remainders), cached, and reuse the model's parameter buffers.
 */
import type { Dispatch } from '../gpu/device';
import { activationOp, matmulOp } from '../gpu/ops';
import type { PieceName } from './params';
import type { VaeModel } from './vae';

export const CHUNK = 256;

export class Inference {
  private readonly programs = new Map<string, Promise<Dispatch[]>>();
  private readonly X: GPUBuffer;
  private readonly H: GPUBuffer;
  private readonly MULV: GPUBuffer;
  private readonly Z: GPUBuffer;
  private readonly OUT: GPUBuffer;
  private readonly LOGITS: GPUBuffer;

  constructor(readonly model: VaeModel) {
    const { gpu } = model;
    const { D, H, L } = model.config.sizes;
    this.X = gpu.buffer('inference x', CHUNK * D * 4);
    this.H = gpu.buffer('inference hidden', CHUNK * H * 4);
    this.MULV = gpu.buffer('inference mulv', CHUNK * 2 * L * 4);
    this.Z = gpu.buffer('inference z', CHUNK * L * 4);
    this.LOGITS = gpu.buffer('inference logits', CHUNK * D * 4);
    this.OUT = gpu.buffer('inference images', CHUNK * D * 4);
  }

  private piece(name: PieceName): GPUBufferBinding {
    const span = this.model.layout.pieces[name];
    return { buffer: this.model.params, offset: span.offset * 4, size: span.length * 4 };
  }

  private program(kind: 'encode' | 'decode', rows: number): Promise<Dispatch[]> {
    const key = `${kind} ${rows}`;
    let p = this.programs.get(key);
    if (!p) {
      p = kind === 'encode' ? this.buildEncode(rows) : this.buildDecode(rows);
      this.programs.set(key, p);
    }
    return p;
  }

  private async buildEncode(rows: number): Promise<Dispatch[]> {
    const { gpu } = this.model;
    const { D, H, L } = this.model.config.sizes;
    return [
      await matmulOp(gpu, `encode[${rows}] fc1`, { M: rows, N: H, K: D }, { transA: false, transB: true, relu: true },
        { A: this.X, B: this.piece('W1'), C: this.H, bias: this.piece('b1') }),
      await matmulOp(gpu, `encode[${rows}] fc21‖fc22`, { M: rows, N: 2 * L, K: H }, { transA: false, transB: true },
        { A: this.H, B: this.piece('W2'), C: this.MULV, bias: this.piece('b2') }),
    ];
  }

  private async buildDecode(rows: number): Promise<Dispatch[]> {
    const { gpu } = this.model;
    const { D, H, L } = this.model.config.sizes;
    return [
      await matmulOp(gpu, `decode[${rows}] fc3`, { M: rows, N: H, K: L }, { transA: false, transB: true, relu: true },
        { A: this.Z, B: this.piece('W3'), C: this.H, bias: this.piece('b3') }),
      await matmulOp(gpu, `decode[${rows}] fc4`, { M: rows, N: D, K: H }, { transA: false, transB: true },
        { A: this.H, B: this.piece('W4'), C: this.LOGITS, bias: this.piece('b4') }),
      await activationOp(gpu, `decode[${rows}] sigmoid`, 'sigmoid_forward', rows * D, [this.LOGITS], this.OUT),
    ];
  }

  /** (n, D) pixels in [0, 1] → (n, 2L) rows of [mu ‖ logvar]. */
  async encode(images: Float32Array, n: number): Promise<Float32Array> {
    const { D, L } = this.model.config.sizes;
    const out = new Float32Array(n * 2 * L);
    for (let first = 0; first < n; first += CHUNK) {
      const rows = Math.min(CHUNK, n - first);
      this.model.gpu.write(this.X, images.subarray(first * D, (first + rows) * D));
      this.model.gpu.run(await this.program('encode', rows), 'encode');
      out.set(await this.model.gpu.readFloats(this.MULV, 0, rows * 2 * L), first * 2 * L);
    }
    return out;
  }

  /** (n, L) latents → (n, D) pixels in [0, 1]. */
  async decode(latents: Float32Array, n: number): Promise<Float32Array> {
    const { D, L } = this.model.config.sizes;
    const out = new Float32Array(n * D);
    for (let first = 0; first < n; first += CHUNK) {
      const rows = Math.min(CHUNK, n - first);
      this.model.gpu.write(this.Z, latents.subarray(first * L, (first + rows) * L));
      this.model.gpu.run(await this.program('decode', rows), 'decode');
      out.set(await this.model.gpu.readFloats(this.OUT, 0, rows * D), first * D);
    }
    return out;
  }
}
