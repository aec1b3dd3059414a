/**
 * The library's front door: the PyTorch-examples MNIST VAE as one object that trains on the
 * GPU through WebGPU. Written for someone who knows the PyTorch program:
 *
 *   PyTorch                                  here
 *   model = VAE(); opt = Adam(lr=1e-3)        const vae = await VAE.create({ seed: 1 })
 *   for epoch: train(epoch); test()           await vae.fit(train, { epochs: 10, testImages: test })
 *   model.encode(x) → (mu, logvar)            await vae.encode(x) → { mu, logvar }
 *   model.decode(z)                           await vae.decode(z)
 *   torch.save(model.state_dict(), f)         const bytes = await vae.save()   (safetensors)
 *   a conditional VAE, decode(z, y)           VAE.create({ classes: 10 }); fit(x, { labels }); decode(z, { label: 3 })
 *   model.load_state_dict(...)                await vae.load(bytes) / VAE.load(bytes)
 *
 * Arrays are flat and row-major: n images are n × inputSize values (a (n, 784) tensor), n
 * latent vectors n × latentSize. Everything runs on the GPU except the importance-weighted
 * log-likelihood's final sums (see `logLikelihood`). Nothing here touches the DOM, so the
 * library runs on a page's main thread and in a dedicated Worker alike.
 */
import { PHILOX_STREAM } from '../../shaders/philox.wgsl';
import type { GpuError } from '../gpu/device';
import { decodeCheckpoint, encodeRunCheckpoint, readRunMetadata, type CheckpointData } from '../model/checkpoint';
import { runTraining } from '../model/driver';
import { DEFAULT_OBJECTIVE, DEFAULT_SETTINGS, SETTING_RANGES } from '../model/settings';
import {
  arenaLayout,
  classesOf,
  likelihoodOf,
  parameterCount,
  type ArenaLayout,
  type Likelihood,
  type VaeSizes,
} from '../model/graph';
import { normals } from '../model/philox';
import { checkpointBytes, runMetadataOf, sizesOf, userMetadata } from './checkpoint';
import { explainError, fromEngineError, VaeError } from './errors';
import { Runtime, type Images } from './runtime';
import {
  checkBindable,
  imagesAsBytes,
  imagesAsFloats,
  integerOption,
  labelsOption,
  latentsAsFloats,
  splitMuLogvar,
  type ImageArray,
  type LatentArray,
} from './inputs';
import { importanceWeightedLogLikelihood } from './likelihood';
import { Lock } from './lock';
import {
  ADAM_DEFAULTS,
  batchSizeOption,
  fitSettings,
  modelOptions,
  type EvaluateOptions,
  type LabelOptions,
  type LoadOptions,
  type LogLikelihoodOptions,
  type SaveOptions,
  type VAEOptions,
} from './options';
import { epochEvent, RunControl, type EpochEvent, type FitOptions, type FitResult, type TrainingRun } from './training';

/**
 * A variational autoencoder (PyTorch examples' MNIST VAE: fc1 → (fc21, fc22) → fc3 → fc4)
 * whose training and inference run on the GPU. Create one with `VAE.create` or `VAE.load`;
 * free its GPU memory with `destroy()`.
 *
 * Calls may overlap: inference (encode, decode, reconstruct, sample, logLikelihood) and
 * `save` queue behind each other and work during a `fit`, between its steps. `fit`,
 * `evaluate` and `load` change what the GPU holds, so they reject with a `busy` VaeError
 * while a fit runs or is paused.
 */
export class VAE {
  /** Pixels per image (fc1.in_features). */
  readonly inputSize: number;
  /** The encoder's hidden widths, input side first ([400]: fc1.out_features); the decoder mirrors them. */
  readonly hiddenSizes: readonly number[];
  /** Latent dimensions (fc21.out_features). */
  readonly latentSize: number;
  /** Classes of a conditional model; 0 when it is unconditional. */
  readonly classes: number;
  /**
   * p(x|z): `{ kind: 'bernoulli' }` (the reference), or `{ kind: 'gaussian', sigma }` with σ a
   * number or `'learned'` (see {@link VAEOptions.likelihood}).
   */
  readonly likelihood: Readonly<Likelihood>;
  /** The seed of every random draw (see {@link VAEOptions.seed}). */
  readonly seed: number;
  /** The GPU device the model lives on. */
  readonly device: GPUDevice;

  private readonly layout: ArenaLayout;
  private runtime!: Runtime;
  private readonly ownsDevice: boolean;
  private readonly onDeviceLost?: (error: VaeError) => void;
  private readonly lock = new Lock();
  private activeRun: RunControl | null = null;
  private destroyedFlag = false;
  private lostError: VaeError | null = null;
  private steps = 0;
  private epochs = 0;
  /** β and its warm-up of the last fit (or of the checkpoint loaded): later fits, evaluate and save keep them unless told otherwise. */
  private objective = { ...DEFAULT_OBJECTIVE };
  private sampleDraws = 0;

  private constructor(
    runtime: Runtime,
    ownsDevice: boolean,
    sizes: VaeSizes,
    seed: number,
    onDeviceLost?: (error: VaeError) => void,
  ) {
    this.runtime = runtime;
    this.device = runtime.gpu.device;
    this.ownsDevice = ownsDevice;
    this.inputSize = sizes.D;
    this.hiddenSizes = sizes.hidden;
    this.latentSize = sizes.L;
    this.classes = classesOf(sizes);
    this.likelihood = Object.freeze({ ...likelihoodOf(sizes) });
    this.seed = seed;
    this.layout = arenaLayout(sizes);
    this.onDeviceLost = onDeviceLost;
  }

  /**
   * A new model with PyTorch's default initialization drawn from `seed`, on `options.device`
   * or on a device the library requests from `options.gpu` (default `navigator.gpu`). Rejects with a `gpu` VaeError when WebGPU is
   * missing or the adapter lacks a limit the engine needs (the message says which).
   */
  static async create(options: VAEOptions = {}): Promise<VAE> {
    return VAE.build(options);
  }

  /** `create`, opened from a checkpoint when given (its weights and the kernel plan it trained with). */
  private static async build(
    options: VAEOptions,
    checkpoint?: { bytes: Uint8Array; classNames?: string[] },
  ): Promise<VAE> {
    const { sizes, seed } = modelOptions(options);
    // The handlers reach the model once it exists; a loss before that rejects create() itself.
    let vae: VAE | null = null;
    let runtime: Runtime;
    try {
      runtime = await Runtime.create(
        { device: options.device, gpu: options.gpu },
        { sizes, seed, batchSize: DEFAULT_SETTINGS.batchSize, adam: ADAM_DEFAULTS, checkpoint },
        {
          onLost: (error) => vae?.deviceLost(error),
          // The runtime keeps the first such error and every later call throws it; nothing to log.
          onUncapturedError: () => {},
        },
      );
    } catch (error) {
      throw fromEngineError(error, 'VAE.create');
    }
    vae = new VAE(runtime, !options.device, sizes, seed, options.onDeviceLost);
    try {
      vae.assertUsable('VAE.create'); // a device that was lost already
    } catch (error) {
      vae.destroy();
      throw fromEngineError(error, 'VAE.create');
    }
    return vae;
  }

  /**
   * A model created from a checkpoint (as written by `save`, by the engine's CLI, or by
   * scripts/export_checkpoint.py from a PyTorch state_dict): sizes from its tensor shapes,
   * seed from its metadata, weights, Adam moments, step and epoch counters from its contents.
   * Rejects with a `checkpoint` VaeError (and creates nothing) for a bad file.
   */
  static async load(checkpoint: Uint8Array | ArrayBuffer, options: LoadOptions = {}): Promise<VAE> {
    const bytes = checkpointBytes(checkpoint);
    const { sizes, metadata } = sizesOf(bytes);
    const run = runMetadataOf(metadata, 'VAE.load');
    const seed = options.seed ?? run.seed ?? DEFAULT_SETTINGS.seed;
    const vae = await VAE.build(
      {
        inputSize: sizes.D,
        // A spec's model is its spec (metadata `model`); the mlp preset's, its sizes.
        ...(sizes.spec ? { model: sizes.spec } : { hiddenSize: sizes.hidden, latentSize: sizes.L }),
        classes: classesOf(sizes),
        seed,
        device: options.device,
        gpu: options.gpu,
        onDeviceLost: options.onDeviceLost,
        ...(sizes.likelihood?.kind === 'gaussian'
          ? { likelihood: 'gaussian' as const, sigma: sizes.likelihood.sigma }
          : {}),
      },
      { bytes, classNames: options.classNames },
    );
    try {
      await vae.load(bytes);
    } catch (error) {
      vae.destroy();
      throw error;
    }
    return vae;
  }

  /** Adam steps taken so far (PyTorch's optimizer `step`); during a fit, those whose losses have come back. */
  get step(): number {
    return this.steps;
  }

  /** Epochs begun so far, over the model's life; the next `fit` starts at `epoch + 1`. */
  get epoch(): number {
    return this.epochs;
  }

  /** Trainable parameters: PyTorch's `sum(p.numel() for p in model.parameters())`. */
  get parameterCount(): number {
    return parameterCount(this.layout);
  }

  /** GPU buffers the model holds now (0 after `destroy()`): for leak checks. */
  get liveBuffers(): number {
    return this.runtime.gpu.liveBuffers;
  }

  /** True after `destroy()`. */
  get destroyed(): boolean {
    return this.destroyedFlag;
  }

  /** True while a `fit` runs or is paused. */
  get training(): boolean {
    return this.activeRun !== null;
  }

  /**
   * Trains with Adam on `images` (shuffled each epoch, like a DataLoader with shuffle=True),
   * minimizing the reference's loss: BCE(reconstruction, x) + KL(q(z|x) ‖ N(0, I)), summed.
   * Returns at once with a handle: `await` it for the result, or `pause()`, `resume()`,
   * `stop()` it; an `AbortSignal` in the options works too. Pixels are bytes on the GPU:
   * Float32Array inputs are rounded to the nearest 1/255 (MNIST's values are exact).
   *
   * The model keeps its GPU runtime: images are uploaded once, and a later call with the same
   * bytes reuses them (it uploads only each epoch's shuffle and compiles nothing). The learning
   * rate, betas and batch size hold for this call; the optimizer state carries over from earlier
   * calls and from checkpoints, so training resumes exactly.
   */
  fit(images: ImageArray, options: FitOptions = {}): TrainingRun {
    const run = new RunControl(options.signal, (control) => this.runFit(images, options, control));
    if (!this.destroyedFlag && !this.lostError && !this.activeRun) this.activeRun = run;
    return run;
  }

  private async runFit(images: ImageArray, options: FitOptions, control: RunControl): Promise<FitResult> {
    const context = 'VAE.fit';
    this.assertUsable(context);
    if (this.activeRun !== control) {
      throw new VaeError(
        'busy',
        `${context}: another fit() is running or paused on this model: await it or stop() it first`,
      );
    }
    try {
      const epochs = integerOption('epochs', options.epochs, 1, ...SETTING_RANGES.epochs);
      const train: Images = imagesAsBytes(images, this.inputSize, 'images');
      const test: Images | undefined =
        options.testImages === undefined ? undefined : imagesAsBytes(options.testImages, this.inputSize, 'testImages');
      train.labels = labelsOption(context, 'labels', options.labels, train.count, this.classes);
      if (test) test.labels = labelsOption(context, 'testLabels', options.testLabels, test.count, this.classes);
      else if (options.testLabels !== undefined)
        throw new VaeError('invalid-option', `${context}: testLabels given without testImages`);
      const { batchSize, adam, stepsPerSubmit, beta, klWarmup } = fitSettings(options, train.count, this.objective);
      checkBindable(train.bytes, this.device.limits, this.inputSize, 'images');
      if (test) checkBindable(test.bytes, this.device.limits, this.inputSize, 'testImages');
      if (options.signal?.aborted) throw options.signal.reason;

      await this.lock.run(() =>
        this.runtime.configure({ batchSize, adam, train, test, stepsPerSubmit, beta, klWarmup }),
      );
      this.objective = { beta, klWarmup };
      return await this.trainEpochs(epochs, !!test, options, control);
    } catch (error) {
      throw explainError(error, context, { destroyed: this.destroyedFlag, lost: this.lostError });
    } finally {
      this.activeRun = null;
    }
  }

  /** The epochs of a fit, through the engine's one training driver. */
  private async trainEpochs(
    epochs: number,
    hasTest: boolean,
    options: FitOptions,
    control: RunControl,
  ): Promise<FitResult> {
    const { model, trainer } = this.runtime;
    const batches = model.trainBatches;
    const count = model.train.count;
    control.extraStop = () => this.destroyedFlag;
    let firstStep = this.steps;
    const result = await runTraining(
      trainer,
      { firstEpoch: this.epochs + 1, lastEpoch: this.epochs + epochs, test: hasTest, images: false },
      control.gate,
      {
        onEpochStart: () => {
          firstStep = this.steps;
        },
        onLosses: (l) => {
          for (let i = 0; i < l.losses.length; i++) {
            const batch = l.firstBatch + i;
            this.steps = firstStep + batch + 1;
            const rows = model.rowsOf(batch, count);
            options.onStep?.({
              epoch: l.epoch,
              batch,
              batches,
              step: this.steps,
              loss: l.losses[i] / rows,
              ...(l.objectives ? { objective: l.objectives[i] / rows } : {}),
            });
          }
        },
        onEpoch: async (r) => {
          this.epochs = r.epoch;
          this.steps = firstStep + r.batches;
          await options.onEpoch?.(epochEvent(r));
        },
      },
    );
    if (this.destroyedFlag) throw new VaeError('destroyed', 'the model was destroyed during fit()');
    if (options.signal?.aborted) throw options.signal.reason;
    const done: EpochEvent[] = result.epochs.map(epochEvent);
    const completedAll = done.length === epochs && done.every((d) => d.completed);
    return { epochs: done, stopped: !completedAll, step: this.steps };
  }

  /**
   * The average loss per image over `images` — the reference's "Test set loss": summed
   * BCE + KL with z sampled from q(z|x), divided by the number of images. The noise is keyed
   * by the seed and the batch index, so the same call gives the same figure.
   */
  async evaluate(images: ImageArray, options: EvaluateOptions = {}): Promise<number> {
    return this.guarded('VAE.evaluate', async () => {
      this.assertNotTraining('evaluate');
      const test: Images = imagesAsBytes(images, this.inputSize, 'images');
      test.labels = labelsOption('VAE.evaluate', 'labels', options.labels, test.count, this.classes);
      const batchSize = batchSizeOption(options.batchSize, test.count);
      checkBindable(test.bytes, this.device.limits, this.inputSize, 'images');
      return this.lock.run(async () => {
        await this.runtime.configure({ batchSize, adam: this.runtime.model.config.adam, test });
        return (await this.runtime.trainer.testPass()).averageLoss;
      });
    });
  }

  /**
   * The importance-weighted estimate of the average log-likelihood log p(x) per image, in
   * nats, with `k` samples per image (Burda et al.'s IWAE bound, the figure VAE papers
   * report; k = 1 gives the ELBO, i.e. minus the loss with sampled z):
   *   log p(x) ≈ logsumexp_j [log p(x|z_j) + log p(z_j) − log q(z_j|x)] − log k,  z_j ~ q(z|x).
   * p(x|z) is the likelihood of the training loss: Bernoulli (PyTorch's BCE, logs clamped at −100),
   * or for a Gaussian model N(mean, σ²) per pixel on the decoder's unclamped mean, constants
   * included (a log-density of continuous pixels, not comparable with a Bernoulli figure).
   * A conditional model conditions everything on `label`, so the figure is log p(x | y).
   *
   * Where it runs: the encoder and the k decoder passes per image run on the GPU; the noise,
   * the log-densities and the log-sum-exp run on the CPU in float64. That needs the decoder's
   * outputs on the CPU, so this reads back k × inputSize floats per image (in chunks of
   * 4096 rows, 12.8 MB for MNIST) — the dominant cost after the decoder itself. The noise is
   * keyed by the seed and the image's index, so the same call gives the same figure.
   */
  async logLikelihood(images: ImageArray, options: LogLikelihoodOptions = {}): Promise<number> {
    return this.guarded('VAE.logLikelihood', async () => {
      const { floats: x, count } = imagesAsFloats(images, this.inputSize, 'images');
      const k = integerOption('k', options.k, 64, 1, 1_000_000);
      const labels = labelsOption('VAE.logLikelihood', 'label', options.label, count, this.classes);
      return this.lock.run(async () => {
        const { inference } = this.runtime;
        const mulv = await inference.encode(x, count, labels);
        // A Gaussian model's p(x|z) is on the decoder's unclamped mean, with its σ (fixed, or log_sigma).
        const model = inference.model;
        const l = likelihoodOf(model.sizes);
        const logSigma =
          l.kind !== 'gaussian'
            ? undefined
            : l.sigma === 'learned'
              ? await model.gpu.readFloats(model.params, model.layout.logSigma!.offset, model.sizes.D)
              : Math.log(l.sigma);
        return importanceWeightedLogLikelihood({
          x,
          mulv,
          count,
          k,
          D: this.inputSize,
          L: this.latentSize,
          seed: this.seed,
          labels,
          decode: (z, rows, rowLabels) => inference.decode(z, rows, rowLabels, logSigma !== undefined),
          gaussian: logSigma === undefined ? undefined : { logSigma },
        });
      });
    });
  }

  /** q(z|x)'s parameters for each image (q(z|x, y) with `label` for a conditional model): `mu` and `logvar`, each n × latentSize (fc21 and fc22 of the reference). */
  async encode(images: ImageArray, options: LabelOptions = {}): Promise<{ mu: Float32Array; logvar: Float32Array }> {
    return this.guarded('VAE.encode', async () => {
      const { floats, count } = imagesAsFloats(images, this.inputSize, 'images');
      const labels = labelsOption('VAE.encode', 'label', options.label, count, this.classes);
      return this.lock.run(async () =>
        splitMuLogvar(await this.runtime.inference.encode(floats, count, labels), count, this.latentSize),
      );
    });
  }

  /**
   * The decoder's output for n × latentSize latents: n × inputSize values in [0, 1] — a Bernoulli
   * model's pixel probabilities (the sigmoid of its logits), a Gaussian model's mean clamped to
   * [0, 1] (the mean itself is unbounded). A conditional model decodes p(x | z, y) for `label`:
   * `decode(z, { label: 3 })` draws threes.
   */
  async decode(latents: LatentArray, options: LabelOptions = {}): Promise<Float32Array> {
    return this.guarded('VAE.decode', async () => {
      const { floats, count } = latentsAsFloats(latents, this.latentSize, 'latents');
      const labels = labelsOption('VAE.decode', 'label', options.label, count, this.classes);
      return this.lock.run(() => this.runtime.inference.decode(floats, count, labels));
    });
  }

  /** decode(mu): each image through the encoder's mean and back, n × inputSize values in [0, 1] (no sampling). */
  async reconstruct(images: ImageArray, options: LabelOptions = {}): Promise<Float32Array> {
    return this.guarded('VAE.reconstruct', async () => {
      const { floats, count } = imagesAsFloats(images, this.inputSize, 'images');
      const labels = labelsOption('VAE.reconstruct', 'label', options.label, count, this.classes);
      return this.lock.run(async () => {
        const { mu } = splitMuLogvar(
          await this.runtime.inference.encode(floats, count, labels),
          count,
          this.latentSize,
        );
        return this.runtime.inference.decode(mu, count, labels);
      });
    });
  }

  /**
   * `n` new images: decodes of z ~ N(0, I), n × inputSize values in [0, 1]. Each call draws
   * fresh latents (a counter keyed by the seed), so successive calls differ and a run repeats.
   * A conditional model draws images of class `label`: `sample(8, { label: 3 })` is eight threes.
   */
  async sample(n: number, options: LabelOptions = {}): Promise<Float32Array> {
    return this.guarded('VAE.sample', async () => {
      const count = integerOption('n', n, 0, 1, 1_000_000);
      const labels = labelsOption('VAE.sample', 'label', options.label, count, this.classes);
      const z = Float32Array.from(
        normals(count * this.latentSize, this.seed, ++this.sampleDraws, PHILOX_STREAM.sample),
      );
      return this.lock.run(() => this.runtime.inference.decode(z, count, labels));
    });
  }

  /**
   * The model as safetensors bytes: PyTorch's names and shapes (`fc1.weight` [400, 784] …, so
   * scripts/load_checkpoint.py can `load_state_dict` it), the Adam moments as
   * `optimizer.exp_avg.<name>` / `optimizer.exp_avg_sq.<name>`, and the step, epoch and seed
   * in the metadata, so `VAE.load` resumes exactly. Saved during a fit, it holds the weights
   * after the last step the GPU finished; for an exact resume save between epochs.
   */
  async save(options: SaveOptions = {}): Promise<Uint8Array> {
    return this.guarded('VAE.save', async () => {
      const extra = userMetadata(options.metadata);
      return this.lock.run(async () => {
        const state = await this.runtime.model.exportState();
        const objective =
          this.objective.beta !== DEFAULT_OBJECTIVE.beta || this.objective.klWarmup !== DEFAULT_OBJECTIVE.klWarmup
            ? this.objective
            : {};
        return encodeRunCheckpoint(this.layout, state, {
          epoch: this.epochs,
          seed: this.seed,
          extra,
          plan: this.runtime.model.plan,
          ...objective,
        });
      });
    });
  }

  /**
   * Replaces the weights (and, when the file has them, the Adam moments; otherwise they are
   * zeroed as for a fresh optimizer), the step and the epoch counters with a checkpoint's.
   * The file is checked completely first: a malformed, truncated or mismatched one rejects
   * with a `checkpoint` VaeError and the model is left exactly as it was. β and the KL warm-up
   * become the checkpoint's (1 and 0 when it records none), for later fits that do not name
   * them. The model keeps its own seed; `VAE.load` takes the checkpoint's.
   */
  async load(checkpoint: Uint8Array | ArrayBuffer): Promise<void> {
    return this.guarded('VAE.load', async () => {
      this.assertNotTraining('load');
      const bytes = checkpointBytes(checkpoint);
      await this.lock.run(async () => {
        let data: CheckpointData;
        let run: ReturnType<typeof readRunMetadata>;
        try {
          data = decodeCheckpoint(bytes, this.layout);
          run = readRunMetadata(data.metadata);
        } catch (error) {
          const message = error instanceof Error ? error.message : String(error);
          throw new VaeError('checkpoint', `${message} (nothing was loaded: the model is unchanged)`, { cause: error });
        }
        this.runtime.model.importState(data);
        this.steps = data.step;
        this.epochs = run.epoch;
        // The objective it was trained with carries on unless a fit says otherwise.
        this.objective = {
          beta: run.beta ?? DEFAULT_OBJECTIVE.beta,
          klWarmup: run.klWarmup ?? DEFAULT_OBJECTIVE.klWarmup,
        };
      });
    });
  }

  /**
   * Frees every GPU buffer the model made (and the device, if the library requested it).
   * A running fit ends and rejects with a `destroyed` VaeError; so do later calls. Idempotent.
   */
  destroy(): void {
    if (this.destroyedFlag) return;
    this.destroyedFlag = true;
    this.activeRun?.gate.wakeUp();
    this.runtime.destroy();
    if (this.ownsDevice) this.device.destroy();
  }

  // —— internals ——

  private deviceLost(error: GpuError): void {
    if (this.destroyedFlag || this.lostError) return;
    this.lostError = new VaeError('device-lost', error.message, { cause: error });
    this.activeRun?.gate.wakeUp();
    this.onDeviceLost?.(this.lostError);
  }

  private assertUsable(context: string): void {
    if (this.destroyedFlag)
      throw new VaeError(
        'destroyed',
        `${context}: this model was destroyed; create a new one (or VAE.load a checkpoint)`,
      );
    if (this.lostError)
      throw new VaeError('device-lost', `${context}: ${this.lostError.message}`, { cause: this.lostError });
  }

  private assertNotTraining(what: string): void {
    if (this.activeRun) {
      throw new VaeError(
        'busy',
        `VAE.${what}: fit() is running or paused on this model; await it or call stop() on it first`,
      );
    }
  }

  /** Runs `work` after the destroyed/lost checks, turning engine errors into VaeErrors. */
  private async guarded<T>(context: string, work: () => Promise<T>): Promise<T> {
    this.assertUsable(context);
    try {
      return await work();
    } catch (error) {
      throw explainError(error, context, { destroyed: this.destroyedFlag, lost: this.lostError });
    }
  }
}
