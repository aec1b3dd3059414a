/**
 * The engine objects behind one VAE, made once and kept for its whole life: one `Gpu` runtime
 * (pipelines, uniforms, bind groups), one VaeModel (weights, Adam moments, step), its Inference
 * and Trainer, and the images it was last given.
 *
 * A `fit` or `evaluate` on other images or another batch size reconfigures the model's
 * training and evaluation programs (new bind groups; pipelines come from the runtime's cache, so
 * nothing compiles). Images are uploaded once: the same bytes passed again are recognised by a
 * hash and not sent a second time, so a second `fit` on the same data uploads only its shuffles.
 */
import { Gpu, type GpuError } from '../gpu/device';
import type { AdamHyper } from '../gpu/ops';
import { arenaLayout, sizesName, type VaeSizes } from '../model/graph';
import { VaeError } from './errors';
import { Inference } from '../model/inference';
import { STEPS_PER_SUBMIT } from '../model/settings';
import type { Trainer } from '../model/trainer';
import { openModel } from '../model/open';
import { uploadImages, type VaeModel, type GpuImages } from '../model/vae';

/** Where the runtime reports a lost device and uncaptured WebGPU errors. */
export interface RuntimeHandlers {
  onLost(error: GpuError): void;
  onUncapturedError(error: GpuError): void;
}

export interface Images {
  bytes: Uint8Array;
  count: number;
  /** One class per image, for a conditional model (checked by the caller). */
  labels?: Uint32Array;
}

const NO_IMAGES: Images = { bytes: new Uint8Array(0), count: 0 };

/** One image set on the GPU, and what it holds (so the same bytes are not uploaded twice). */
interface Uploaded {
  images: GpuImages;
  count: number;
  hash: number;
}

/** A 32-bit hash of the bytes (FNV-1a over 32-bit words, then the tail): cheap next to the upload it saves. */
function hashBytes(bytes: Uint8Array): number {
  let h = 0x811c9dc5 ^ bytes.length;
  const words = Math.floor(bytes.length / 4);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < words; i++) h = Math.imul(h ^ view.getUint32(4 * i, true), 0x01000193);
  for (let i = 4 * words; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193);
  return h >>> 0;
}

export class Runtime {
  private uploads: { train: Uploaded; test: Uploaded };

  private constructor(
    readonly gpu: Gpu,
    readonly model: VaeModel,
    readonly inference: Inference,
    readonly trainer: Trainer,
    uploads: { train: Uploaded; test: Uploaded },
  ) {
    this.uploads = uploads;
  }

  /**
   * On `host.device`, or on a device requested from `host.gpu` with the engine's limits when there is none; opened
   * from `checkpoint` when given (its weights, and the kernel plan it trained with: the opener's
   * resume rules, src/model/resume.ts, with the caller's class names checked against its own).
   */
  static async create(
    host: { device?: GPUDevice; gpu?: GPU },
    config: {
      sizes: VaeSizes;
      seed: number;
      batchSize: number;
      adam: AdamHyper;
      checkpoint?: { bytes: Uint8Array; classNames?: readonly string[] };
    },
    handlers: RuntimeHandlers,
  ): Promise<Runtime> {
    const gpu = await Gpu.create({ ...host, ...handlers });
    try {
      const arenaBytes = arenaLayout(config.sizes).length * 4;
      const limit = gpu.device.limits.maxStorageBufferBindingSize;
      if (arenaBytes > limit) {
        throw new VaeError(
          'invalid-option',
          `a ${sizesName(config.sizes)} model needs ${arenaBytes} bytes per parameter buffer; this device binds at most ${limit}: use smaller sizes`,
        );
      }
      // No images until a fit or an evaluation gives some; a conditional model's programs bind labels, so even the empty set has (no) labels.
      const none = { pixels: NO_IMAGES.bytes, count: 0, labels: config.sizes.classes ? new Uint32Array(0) : undefined };
      const { model, trainer } = await openModel(gpu, {
        sizes: config.sizes,
        job: { batchSize: config.batchSize, seed: config.seed, lr: config.adam.lr, adam: config.adam },
        train: none,
        test: none,
        checkpoint: config.checkpoint?.bytes,
        classNames: config.checkpoint?.classNames,
      });
      const empty = (images: GpuImages): Uploaded => ({ images, count: 0, hash: hashBytes(NO_IMAGES.bytes) });
      const uploads = { train: empty(model.train), test: empty(model.config.test) };
      return new Runtime(gpu, model, new Inference(model), trainer, uploads);
    } catch (error) {
      gpu.destroy();
      if (!host.device) gpu.device.destroy(); // the one requested here
      throw error;
    }
  }

  /**
   * Makes the training and evaluation programs fit this job: uploads images that differ from
   * the ones on the GPU (a set not given keeps what is there) and rebuilds programs only when
   * something changed. The weights, moments and step stay.
   */
  async configure(job: {
    batchSize: number;
    adam: AdamHyper;
    train?: Images;
    test?: Images;
    stepsPerSubmit?: number;
    /** β and its warm-up; absent keeps the model's (an evaluation keeps the fit's objective). */
    beta?: number;
    klWarmup?: number;
  }): Promise<void> {
    this.gpu.assertAlive();
    const next = { ...this.uploads };
    for (const which of ['train', 'test'] as const) {
      const images = job[which];
      if (!images) continue;
      // Labels are part of what was uploaded: the same pixels with other labels are another set.
      const hash = images.labels
        ? hashBytes(images.bytes) ^
          Math.imul(
            hashBytes(new Uint8Array(images.labels.buffer, images.labels.byteOffset, images.labels.byteLength)),
            0x9e3779b1,
          )
        : hashBytes(images.bytes);
      if (hash === next[which].hash && images.count === next[which].count) continue;
      next[which] = {
        images: uploadImages(this.gpu, which, images.bytes, images.count, images.labels),
        count: images.count,
        hash,
      };
    }
    // Whichever set of images no program binds afterwards is freed: the old ones on success, the new on failure.
    const unused = (keep: typeof next, drop: typeof next) =>
      (['train', 'test'] as const).filter((w) => keep[w] !== drop[w]).map((w) => drop[w].images);
    let dropped: GpuImages[];
    try {
      const { beta, klWarmup } = job.beta === undefined && job.klWarmup === undefined ? this.model.config : job;
      await this.model.configure({
        batchSize: job.batchSize,
        adam: job.adam,
        train: next.train.images,
        test: next.test.images,
        beta,
        klWarmup,
      });
      dropped = unused(next, this.uploads);
      this.uploads = next;
    } catch (error) {
      for (const images of unused(this.uploads, next)) this.release(images);
      throw error;
    }
    for (const images of dropped) this.release(images);
    this.trainer.stepsPerSubmit = job.stepsPerSubmit ?? STEPS_PER_SUBMIT;
  }

  private release(images: GpuImages): void {
    this.gpu.release(images.data);
    this.gpu.release(images.order);
    if (images.labels) this.gpu.release(images.labels);
  }

  /** Frees every buffer this runtime made and detaches it from the device. */
  destroy(): void {
    this.gpu.destroy();
  }
}
