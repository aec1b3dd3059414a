/**
 * Inference on a trained VaeModel: encode images to (mu, logvar) and decode latents to images,
 * in chunks of up to CHUNK rows. Programs are built once per distinct row count (the chunk
 * size and at most a few remainders), cached, and reuse the model's parameter buffers.
 */
import type { Dispatch } from '../gpu/device';
import { classesOf } from './graph';
import { Activations, decoderForward, encoderForward, likelihoodImage } from './programs';
import type { VaeModel } from './vae';

export const CHUNK = 256;

export class Inference {
  private readonly programs = new Map<string, Promise<Dispatch[]>>();
  private readonly act: Activations;
  /** (CHUNK, D) decoded images in [0, 1]. */
  private readonly images: GPUBuffer;

  constructor(readonly model: VaeModel) {
    this.act = new Activations(model.gpu, 'inference', model.layout, CHUNK, { gradients: false });
    this.images = model.gpu.buffer('inference images', CHUNK * model.config.sizes.D * 4);
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

  private buildEncode(rows: number): Promise<Dispatch[]> {
    return encoderForward(this.model.gpu, this.model.plan, `encode[${rows}]`, this.model.arena, this.act, rows);
  }

  private async buildDecode(rows: number): Promise<Dispatch[]> {
    const { gpu } = this.model;
    return [
      ...(await decoderForward(gpu, this.model.plan, `decode[${rows}]`, this.model.arena, this.act, rows)),
      await likelihoodImage(
        gpu,
        `decode[${rows}]`,
        this.model.sizes,
        rows * this.model.config.sizes.D,
        this.act.logits,
        this.images,
      ),
    ];
  }

  /**
   * (n, D) pixels in [0, 1] → (n, 2L) rows of [mu ‖ logvar]. A conditional VAE needs `labels`,
   * one class per image (checked by the caller), and encodes q(z | x, y).
   */
  async encode(images: Float32Array, n: number, labels?: ArrayLike<number>): Promise<Float32Array> {
    const { D, L } = this.model.config.sizes;
    const out = new Float32Array(n * 2 * L);
    for (let first = 0; first < n; first += CHUNK) {
      const rows = Math.min(CHUNK, n - first);
      this.model.gpu.write(this.act.xy, this.withLabels(images, D, first, rows, labels));
      // A conv encoder reads x itself and joins the one-hot columns of [x ‖ onehot(y)] further in.
      if (this.act.join) this.model.gpu.write(this.act.x, images.subarray(first * D, (first + rows) * D));
      this.model.gpu.run(await this.program('encode', rows), 'encode');
      out.set(await this.model.gpu.readFloats(this.act.mulv, 0, rows * 2 * L), first * 2 * L);
    }
    return out;
  }

  /**
   * (n, L) latents → (n, D) pixels in [0, 1] (a Gaussian's mean clamped), or with `raw` the
   * decoder's output itself (logits, or the unclamped mean: what log p(x|z) needs). A conditional
   * VAE needs `labels` and decodes p(x | z, y).
   */
  async decode(latents: Float32Array, n: number, labels?: ArrayLike<number>, raw = false): Promise<Float32Array> {
    const { D, L } = this.model.config.sizes;
    const out = new Float32Array(n * D);
    for (let first = 0; first < n; first += CHUNK) {
      const rows = Math.min(CHUNK, n - first);
      this.model.gpu.write(this.act.z, this.withLabels(latents, L, first, rows, labels));
      this.model.gpu.run(await this.program('decode', rows), 'decode');
      out.set(await this.model.gpu.readFloats(raw ? this.act.logits : this.images, 0, rows * D), first * D);
    }
    return out;
  }

  /**
   * Rows first … first+rows−1 of a (n, width) matrix, with onehot(label) appended to each for a
   * conditional VAE: the concatenation the conditioned layer reads, built here because inference
   * uploads its input anyway (training builds it on the GPU, in the gather).
   */
  private withLabels(
    m: Float32Array,
    width: number,
    first: number,
    rows: number,
    labels?: ArrayLike<number>,
  ): Float32Array {
    const C = classesOf(this.model.config.sizes);
    if (C === 0) return m.subarray(first * width, (first + rows) * width);
    if (!labels) throw new Error(`a conditional VAE (${C} classes) encodes and decodes with a label per row`);
    const out = new Float32Array(rows * (width + C));
    for (let r = 0; r < rows; r++) {
      out.set(m.subarray((first + r) * width, (first + r + 1) * width), r * (width + C));
      const y = labels[first + r]!;
      if (!(Number.isInteger(y) && y >= 0 && y < C))
        throw new RangeError(`label ${y} of row ${first + r} is not a class 0 … ${C - 1}`);
      out[r * (width + C) + width + y] = 1;
    }
    return out;
  }
}
