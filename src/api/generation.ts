/**
 * The engine objects behind one VAE for one job: a VaeModel built for a training set, a
 * test set, a batch size and a learning rate (its programs bind those buffers and bake those
 * numbers into uniforms), plus an Inference over its weights and a Trainer.
 *
 * A new job (a `fit` on other images, an `evaluate`) gets a new generation: the weights, the
 * Adam moments and the step counter move over by GPU copies (nothing is read back), and the old
 * generation is freed. Each generation has its own `Gpu` runtime on the shared device, so
 * `gpu.destroy()` frees exactly its buffers — the model's, the inference's and the uniforms
 * made while building programs — and nothing of the caller's. Pipelines are compiled per
 * runtime, but the browser caches them by content: measured on SwiftShader, a second
 * generation builds in ~0.1–0.3 s against ~0.9 s for the first.
 */
import { Gpu, type GpuError } from '../gpu/device';
import type { AdamHyper } from '../gpu/ops';
import { Inference } from '../model/inference';
import type { VaeSizes } from '../model/graph';
import { Trainer } from '../model/trainer';
import { uploadImages, VaeModel, type GpuImages } from '../model/vae';

/** What a generation is built for: its programs bake these in. */
export interface GenerationConfig {
  sizes: VaeSizes;
  seed: number;
  /** Rows per training and evaluation step. */
  batchSize: number;
  /** Adam's hyperparameters (a uniform of the Adam dispatch). */
  adam: AdamHyper;
  /** (count, D) bytes to train on; none for a generation that only evaluates or infers. */
  train?: { bytes: Uint8Array; count: number };
  /** (count, D) bytes to evaluate on. */
  test?: { bytes: Uint8Array; count: number };
  stepsPerSubmit?: number;
}

/** Where the generation's runtime reports a lost device and uncaptured WebGPU errors. */
export interface GenerationHandlers {
  onLost(error: GpuError): void;
  onUncapturedError(error: GpuError): void;
}

const NO_IMAGES = { bytes: new Uint8Array(0), count: 0 };

/** One VaeModel (with its Inference and Trainer) on a runtime of its own; see the file comment. */
export class Generation {
  private constructor(
    readonly gpu: Gpu,
    readonly model: VaeModel,
    readonly inference: Inference,
    readonly trainer: Trainer,
    private readonly datasets: GpuImages[],
  ) {}

  /** Uploads the images, builds every program and initializes fresh weights (which `copyStateFrom` then replaces). */
  static async create(device: GPUDevice, config: GenerationConfig, handlers: GenerationHandlers): Promise<Generation> {
    const gpu = await Gpu.create({ device, ...handlers });
    try {
      const { bytes: trainBytes, count: trainCount } = config.train ?? NO_IMAGES;
      const { bytes: testBytes, count: testCount } = config.test ?? NO_IMAGES;
      const train = uploadImages(gpu, 'train', trainBytes, trainCount);
      const test = uploadImages(gpu, 'test', testBytes, testCount);
      const model = await VaeModel.create(gpu, {
        sizes: config.sizes, batchSize: config.batchSize, seed: config.seed, adam: config.adam,
      }, train, test);
      const trainer = new Trainer(model, { stepsPerSubmit: config.stepsPerSubmit });
      return new Generation(gpu, model, new Inference(model), trainer, [train, test]);
    } catch (error) {
      gpu.destroy();
      throw error;
    }
  }

  /** Takes over `from`'s weights, Adam moments and step counter (GPU-side copies). */
  copyStateFrom(from: Generation): void {
    this.gpu.assertAlive();
    const a = from.model;
    const b = this.model;
    const encoder = this.gpu.device.createCommandEncoder({ label: 'move model state' });
    for (const [src, dst] of [[a.params, b.params], [a.m, b.m], [a.v, b.v], [a.trainState, b.trainState]]) {
      encoder.copyBufferToBuffer(src, 0, dst, 0, Math.min(src.size, dst.size));
    }
    this.gpu.device.queue.submit([encoder.finish()]);
  }

  /**
   * Frees the uploaded images once this generation's training or evaluation is over (its
   * train and eval programs are never run again); the weights and inference stay.
   */
  releaseDatasets(): void {
    for (const set of this.datasets) {
      this.gpu.release(set.data);
      this.gpu.release(set.order);
    }
    this.datasets.length = 0;
  }

  /** Frees every buffer this generation made. Work already submitted finishes first (WebGPU defers the free). */
  destroy(): void {
    this.gpu.destroy();
  }
}
