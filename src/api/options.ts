/**
 * The options of the `VAE` methods, as callers see them, and how each is read: defaults from
 * src/model/settings.ts, ranges checked, a wrong one an `invalid-option` VaeError that names it.
 * Nothing here touches the GPU.
 */
import type { AdamHyper } from '../gpu/ops';
import {
  adamAt,
  CLASSES_MAX,
  CLASSES_MIN,
  DEFAULT_SETTINGS,
  INPUT_SIZE_MAX,
  LR_MAX,
  MAX_DEPTH,
  SETTING_RANGES,
  STEPS_PER_SUBMIT,
} from '../model/settings';
import { betaReason, DEFAULT_INPUT_SHAPE, DEFAULT_SIGMA, klWarmupReason, parseSigma } from '../model/settings';
import { numel } from '../model/layers/unit';
import { classesOf, REFERENCE_SIZES, type VaeSizes } from '../model/graph';
import { modelSizes, parseSpec, type ModelSpec } from '../model/spec';
import { VaeError } from './errors';
import { integerOption, numberOption, ruledOption } from './inputs';
import type { FitOptions } from './training';

/** Options of `VAE.create`. Sizes default to the PyTorch example's 784-400-20. */
export interface VAEOptions {
  /**
   * The model: a preset's name (`'mlp'`, the default: the PyTorch example, its widths from
   * hiddenSize; `'leaky'`; `'conv'`; `'conv-bn'`) or a spec in PyTorch's vocabulary, such as
   * `{ input: [1, 28, 28], latent: 20, encoder: [['Flatten'], ['Linear', 784, 400], ['ReLU']],
   * decoder: [['Linear', 20, 400], ['ReLU'], ['Linear', 400, 784]], likelihood: 'bernoulli' }`,
   * whose parameters are named as nn.Sequential names them (encoder.1.weight, fc_mu.bias).
   * A spec names its own widths and latent size; a bad one is an `invalid-option` VaeError
   * naming the layer and the shapes that disagree.
   */
  model?: string | ModelSpec;
  /** Pixels per image, fc1's in_features (default 784; with `inputShape`, its product). */
  inputSize?: number;
  /**
   * One image's shape [C, H, W] (default [1, 28, 28], MNIST's), which the convolutional presets
   * need: `VAE.create({ model: 'conv', inputShape: [3, 32, 32] })`. Images are still passed flat,
   * C·H·W values each, row-major as a (C, H, W) tensor is (the R plane, then G, then B). The
   * conv preset needs H and W divisible by 4; a shape it cannot take is an `invalid-option`
   * VaeError saying why.
   */
  inputShape?: readonly number[];
  /**
   * Hidden units (default 400): one width, or the encoder's widths input side first for a
   * deeper MLP ([512, 256] is 784-512-256-20 with the mirror-image decoder).
   */
  hiddenSize?: number | readonly number[];
  /** Latent dimensions, fc21's and fc22's out_features (default 20). */
  latentSize?: number;
  /**
   * A conditional VAE (Sohn et al., 2015) on this many classes, 2 or more (default 0: unconditional). The
   * encoder reads [x ‖ onehot(y)] and the decoder [z ‖ onehot(y)] (fc1.in_features is
   * inputSize + classes), so `fit` needs `labels`, and encode, decode, reconstruct, sample and
   * logLikelihood take a `label`: one class for every row, or an array of one per row.
   */
  classes?: number;
  /**
   * Seeds everything random (default 1): the initial weights (PyTorch's default Linear
   * init), each epoch's shuffle, the reparameterization noise, evaluation and sampling noise.
   * The same seed on the same adapter gives the same run, bit for bit.
   */
  seed?: number;
  /**
   * A device to run on, shared with the caller (who keeps owning it). Without one the
   * library requests a device with the limits it needs, and destroys it in `destroy()`.
   */
  device?: GPUDevice;
  /**
   * Without `device`: the WebGPU entry point to request one from, such as Dawn's in Node
   * (`create([])` from the npm `webgpu` package) or a browser's `navigator.gpu`.
   * Default: `globalThis.navigator.gpu`.
   */
  gpu?: GPU;
  /** Called once if the device is lost; every later call then rejects with a `device-lost` VaeError. */
  onDeviceLost?: (error: VaeError) => void;
  /**
   * p(x|z) (default `bernoulli`: BCE on logits, the reference). `gaussian`: the decoder's
   * output is the mean (samples and reconstructions show it clamped to [0, 1]) and the loss
   * is a negative log-density in nats, Σ [½·log(2π) + log σ + (x − μ)²/(2σ²)] + KL.
   */
  likelihood?: 'bernoulli' | 'gaussian';
  /** The Gaussian's σ: a number from 0.001 to 1000 (default 0.1), or `learned` (one per pixel, the parameter `log_sigma`). */
  sigma?: number | 'learned';
}

/** Options of the static `VAE.load`: the sizes come from the checkpoint. */
export interface LoadOptions {
  /** Overrides the seed stored in the checkpoint (default: the stored one, else 1). */
  seed?: number;
  /** As in {@link VAEOptions.device}. */
  device?: GPUDevice;
  /** As in {@link VAEOptions.gpu}. */
  gpu?: GPU;
  /** As in {@link VAEOptions.onDeviceLost}. */
  onDeviceLost?: (error: VaeError) => void;
  /**
   * The classes your labels stand for, label 0 first (an image folder's sorted class names).
   * A conditional checkpoint that records its class names (the CLI's and the page's `--images`
   * runs do) is refused with a `checkpoint` VaeError when they differ: a label would mean
   * another class.
   */
  classNames?: string[];
}

/** The class to condition on, for a conditional model: one for every row, or one per row. */
export interface LabelOptions {
  label?: number | ArrayLike<number>;
}

/** Options of `VAE.evaluate`. */
export interface EvaluateOptions {
  /** A conditional model's label of each image (one per image). */
  labels?: ArrayLike<number>;
  /** Images per GPU batch (default 128, as the reference's test loader). The result does not depend on it beyond noise. */
  batchSize?: number;
}

/** Options of `VAE.logLikelihood`. */
export interface LogLikelihoodOptions extends LabelOptions {
  /** Importance samples per image (default 64). More is tighter and slower: the cost is k decoder passes per image. */
  k?: number;
}

/** Options of `VAE.save`. */
export interface SaveOptions {
  /**
   * Extra string entries for the safetensors `__metadata__`. Keys the engine writes or reads
   * back (format, input_dim, hidden_dim, latent_dim, step, classes, likelihood, sigma, epoch,
   * seed, lr, batch_size, dataset, kernel_plan, beta, kl_warmup, class_names, …) are refused with an
   * `invalid-option` VaeError: `VAE.load` would read them as the model's own settings.
   */
  metadata?: Record<string, string>;
}

export const ADAM_DEFAULTS = adamAt(DEFAULT_SETTINGS.lr);

/** The likelihood options, checked (a VaeError that says what is wrong). */
function likelihoodOption(options: VAEOptions): VaeSizes['likelihood'] {
  const { likelihood, sigma } = options;
  if (likelihood !== undefined && likelihood !== 'bernoulli' && likelihood !== 'gaussian') {
    throw new VaeError(
      'invalid-option',
      `likelihood must be 'bernoulli' or 'gaussian', got ${JSON.stringify(likelihood)}`,
    );
  }
  if (likelihood !== 'gaussian') {
    if (sigma !== undefined)
      throw new VaeError('invalid-option', "sigma is the Gaussian likelihood's: pass likelihood: 'gaussian' with it");
    return undefined;
  }
  if (sigma === undefined || sigma === 'learned') return { kind: 'gaussian', sigma: sigma ?? DEFAULT_SIGMA };
  const parsed = typeof sigma === 'number' ? parseSigma(String(sigma)) : { reason: 'must be a number or "learned"' };
  if (typeof parsed === 'object')
    throw new VaeError('invalid-option', `sigma ${parsed.reason}, got ${JSON.stringify(sigma)}`);
  return { kind: 'gaussian', sigma: parsed };
}

/** `hiddenSize` as a list of widths: one number, or a non-empty list of at most MAX_DEPTH. */
function hiddenOption(value: unknown): number[] {
  if (value === undefined) return [...REFERENCE_SIZES.hidden];
  const list = Array.isArray(value) ? value : [value];
  if (list.length < 1 || list.length > MAX_DEPTH) {
    throw new VaeError(
      'invalid-option',
      `hiddenSize must be a width or a list of 1 to ${MAX_DEPTH} widths, got ${JSON.stringify(value)}`,
    );
  }
  return list.map((h, i) =>
    integerOption(Array.isArray(value) ? `hiddenSize[${i}]` : 'hiddenSize', h, 0, ...SETTING_RANGES.hidden),
  );
}

/** `inputShape`: [C, H, W] (or [H, W], [features]) of whole numbers, agreeing with `inputSize` when both are given. */
function inputShapeOption(options: VAEOptions): number[] | undefined {
  const shape = options.inputShape as unknown;
  if (shape === undefined) return undefined;
  if (
    !Array.isArray(shape) ||
    shape.length < 1 ||
    shape.length > 3 ||
    !shape.every((d) => Number.isInteger(d) && d >= 1) ||
    numel(shape) > INPUT_SIZE_MAX
  )
    throw new VaeError(
      'invalid-option',
      `inputShape must be one image's shape [C, H, W] of whole numbers, at most ${INPUT_SIZE_MAX} values in all, got ${JSON.stringify(shape)}`,
    );
  if (options.inputSize !== undefined && options.inputSize !== numel(shape))
    throw new VaeError(
      'invalid-option',
      `inputSize ${String(options.inputSize)} is not inputShape [${shape.join(', ')}]'s ${numel(shape)} values: give one of them`,
    );
  return shape as number[];
}

/** The sizes and the seed of the model `VAE.create` builds, from its options. */
export function modelOptions(options: VAEOptions): { sizes: VaeSizes; seed: number } {
  const shape = inputShapeOption(options);
  const sizes: VaeSizes = {
    D: shape ? numel(shape) : integerOption('inputSize', options.inputSize, REFERENCE_SIZES.D, 1, INPUT_SIZE_MAX),
    hidden: hiddenOption(options.hiddenSize),
    L: integerOption('latentSize', options.latentSize, REFERENCE_SIZES.L, ...SETTING_RANGES.latent),
  };
  const classes = integerOption('classes', options.classes, 0, 0, CLASSES_MAX);
  if (classes > 0 && classes < CLASSES_MIN) {
    throw new VaeError(
      'invalid-option',
      `classes must be 0 (an unconditional VAE) or an integer from ${CLASSES_MIN} to ${CLASSES_MAX}, ` +
        `got ${classes}: one class would condition every image on the same constant`,
    );
  }
  if (classes > 0) sizes.classes = classes;
  const likelihood = likelihoodOption(options);
  if (likelihood) sizes.likelihood = likelihood;
  const model = options.model;
  if (model !== undefined && model !== 'mlp') {
    if (options.hiddenSize !== undefined)
      throw new VaeError('invalid-option', "hiddenSize gives the mlp preset's widths; a model names its own");
    try {
      const spec = typeof model === 'object' ? parseSpec(model) : undefined;
      // A spec says its own shape; a preset takes the images' (MNIST's unless inputShape or inputSize says otherwise).
      const defaultShape = options.inputSize === undefined ? (spec?.input ?? DEFAULT_INPUT_SHAPE) : undefined;
      Object.assign(
        sizes,
        modelSizes(spec ?? model, {
          input: shape ?? defaultShape ?? [sizes.D],
          ...(options.latentSize !== undefined ? { latent: sizes.L } : {}),
          classes,
          likelihood,
        }),
      );
    } catch (e) {
      // A preset made for the default or a flat shape may only need the images' own.
      const hint =
        typeof model === 'string' && !shape
          ? "; give the images' shape as inputShape [C, H, W] (default [1, 28, 28])"
          : '';
      throw new VaeError('invalid-option', `model: ${(e as Error).message}${hint}`, { cause: e });
    }
  }
  const seed = integerOption('seed', options.seed, DEFAULT_SETTINGS.seed, ...SETTING_RANGES.seed);
  if (options.device !== undefined && typeof (options.device as Partial<GPUDevice>)?.createBuffer !== 'function') {
    throw new VaeError('invalid-option', 'device must be a GPUDevice (from adapter.requestDevice())');
  }
  if (options.gpu !== undefined && typeof (options.gpu as Partial<GPU>)?.requestAdapter !== 'function') {
    throw new VaeError(
      'invalid-option',
      "gpu must be a WebGPU GPU object (navigator.gpu, or create([]) from the npm package 'webgpu')",
    );
  }
  return { sizes, seed };
}

/**
 * The `VAE.create` options that open the model a checkpoint holds: its sizes (`sizes`, from its
 * tensors), `options.seed` or else the checkpoint's (`storedSeed`) or 1, and the caller's device.
 */
export function checkpointModelOptions(
  sizes: VaeSizes,
  storedSeed: number | undefined,
  options: LoadOptions,
): VAEOptions {
  return {
    inputSize: sizes.D,
    // A spec's model is its spec (metadata `model`); the mlp preset's, its sizes.
    ...(sizes.spec ? { model: sizes.spec } : { hiddenSize: sizes.hidden, latentSize: sizes.L }),
    classes: classesOf(sizes),
    seed: options.seed ?? storedSeed ?? DEFAULT_SETTINGS.seed,
    device: options.device,
    gpu: options.gpu,
    onDeviceLost: options.onDeviceLost,
    ...(sizes.likelihood?.kind === 'gaussian'
      ? { likelihood: 'gaussian' as const, sigma: sizes.likelihood.sigma }
      : {}),
  };
}

/** Images per step (default 128), at most the `count` images there are. */
export function batchSizeOption(value: unknown, count: number): number {
  return Math.min(integerOption('batchSize', value, DEFAULT_SETTINGS.batchSize, ...SETTING_RANGES.batchSize), count);
}

/** What a fit on `count` images trains with; β and its warm-up default to the model's `objective`. */
export function fitSettings(options: FitOptions, count: number, objective: { beta: number; klWarmup: number }) {
  const batchSize = batchSizeOption(options.batchSize, count);
  const [beta1, beta2] = options.betas ?? [ADAM_DEFAULTS.beta1, ADAM_DEFAULTS.beta2];
  const adam: AdamHyper = {
    lr: numberOption('lr', options.lr, ADAM_DEFAULTS.lr, 0, LR_MAX),
    beta1: numberOption('betas[0]', beta1, 0, 0, 1, true),
    beta2: numberOption('betas[1]', beta2, 0, 0, 1, true),
    eps: numberOption('eps', options.eps, ADAM_DEFAULTS.eps, 0, 1),
  };
  if (adam.beta1 >= 1 || adam.beta2 >= 1)
    throw new VaeError('invalid-option', `betas must lie in [0, 1), got [${beta1}, ${beta2}]`);
  const stepsPerSubmit = integerOption('stepsPerSubmit', options.stepsPerSubmit, STEPS_PER_SUBMIT, 1, 4096);
  const beta = ruledOption('beta', options.beta, objective.beta, betaReason);
  const klWarmup = ruledOption('klWarmup', options.klWarmup, objective.klWarmup, klWarmupReason);
  return { batchSize, adam, stepsPerSubmit, beta, klWarmup };
}
