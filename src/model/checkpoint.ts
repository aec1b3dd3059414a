/**
 * Checkpoints as safetensors with PyTorch's parameter names and shapes, so
 * `model.load_state_dict(load_file(path))`-style loading works for the reference model
 * (optimizer tensors are under `optimizer.` and are ignored there with strict=False). The
 * Adam moments and the step count travel too, so a run resumes exactly.
 */
import { readSafetensors, writeSafetensors, SafetensorsError, type Tensor } from '../io/safetensors';
import { decodePlan, encodePlan, type KernelPlan } from '../gpu/plan';
import {
  betaReason,
  CLASSES_MAX,
  CHANNEL_COUNTS,
  FIT_RULES,
  IMAGE_SIZE_RANGE,
  klWarmupReason,
  LOG_SIGMA_RANGE,
  SETTING_RANGES,
  SIGMA_RANGE,
  type FitRule,
} from './settings';
import {
  arenaLayout,
  classesOf,
  impliedSizes,
  likelihoodOf,
  parameterCount,
  sameSizes,
  sizesName,
  type ArenaLayout,
  type BufferView,
  type VaeSizes,
} from './graph';
import { parseSpec, specSizes, type ModelSpec } from './spec';

export const CHECKPOINT_FORMAT = 'webgpu-vae/1';

/** PyTorch's names for Adam's state: torch.optim.Adam's exp_avg (m) and exp_avg_sq (v). */
const ADAM_M = 'optimizer.exp_avg.';
const ADAM_V = 'optimizer.exp_avg_sq.';
/** The step count lives in a u32 on the GPU (the step-state buffer). */
const MAX_STEP = 0xffffffff;

export interface CheckpointData {
  sizes: VaeSizes;
  /** Arena-layout floats. */
  params: Float32Array;
  m?: Float32Array;
  v?: Float32Array;
  /** Adam steps taken. */
  step: number;
  /** The statistics arena (layout.statsLength words: BatchNorm2d's buffers); absent for a model without buffers. */
  stats?: Uint32Array;
  metadata: Record<string, string>;
}

export function encodeCheckpoint(layout: ArenaLayout, data: Omit<CheckpointData, 'sizes'>): Uint8Array {
  const tensors: Record<string, Tensor> = {};
  const put = (prefix: string, arena: Float32Array) => {
    for (const p of layout.params) {
      tensors[prefix + p.name] = { dtype: 'F32', shape: p.shape, data: arena.slice(p.offset, p.offset + p.length) };
    }
  };
  put('', data.params);
  if (layout.buffers.length > 0) {
    if (!data.stats || data.stats.length < layout.statsLength)
      throw new Error(`checkpoint: a model with buffers (${layout.buffers[0]!.name} …) needs its statistics to save`);
    for (const b of layout.buffers) tensors[b.name] = bufferTensor(b, data.stats);
  }
  if (data.m && data.v) {
    put(ADAM_M, data.m);
    put(ADAM_V, data.v);
  }
  const { D, hidden, L } = layout.sizes;
  const C = classesOf(layout.sizes);
  const likelihood = likelihoodOf(layout.sizes);
  return writeSafetensors(tensors, {
    ...data.metadata,
    format: CHECKPOINT_FORMAT,
    input_dim: String(D),
    hidden_dim: hidden.join(','),
    latent_dim: String(L),
    // A conditional VAE (its fc1 and first decoder layer read C one-hot columns more).
    ...(C > 0 ? { [CLASSES_KEY]: String(C) } : {}),
    // Only a Gaussian model says so: a Bernoulli checkpoint stays the reference model's, byte for byte.
    ...(likelihood.kind === 'gaussian' ? { likelihood: 'gaussian', sigma: String(likelihood.sigma) } : {}),
    step: String(data.step),
    // A spec's model says which (absent: the mlp preset, its sizes read from its fcN names).
    ...(layout.sizes.spec ? { [MODEL_KEY]: JSON.stringify(layout.sizes.spec) } : {}),
  });
}

/** Buffer `b`'s tensor from the statistics arena's words: F32 floats, or I64 from its (low, high) words. */
function bufferTensor(b: BufferView, stats: Uint32Array): Tensor {
  const words = stats.slice(b.offset, b.offset + b.length);
  if (b.dtype === 'F32') return { dtype: 'F32', shape: b.shape, data: new Float32Array(words.buffer) };
  return { dtype: 'I64', shape: b.shape, data: new BigInt64Array(words.buffer) };
}

/** Metadata key of a spec model's spec, compact JSON (absent: the mlp preset). */
export const MODEL_KEY = 'model';

/** Metadata key of a conditional VAE's class count (absent: unconditional). */
export const CLASSES_KEY = 'classes';

/**
 * The likelihood a checkpoint's metadata names (`likelihood`, `sigma`), checked against its
 * tensors: a learned σ is the tensor log_sigma, a fixed one only a number in the metadata.
 */
function withLikelihood(sizes: VaeSizes, metadata: Record<string, string>): VaeSizes {
  const kind = metadata.likelihood;
  const learned = sizes.likelihood?.kind === 'gaussian';
  if (kind === undefined || kind === 'bernoulli') {
    if (learned && metadata.likelihood === 'bernoulli') {
      throw new SafetensorsError(
        'checkpoint metadata says likelihood "bernoulli" but the file holds log_sigma, a Gaussian\'s learned σ: it was edited',
      );
    }
    return sizes; // a PyTorch export of a learned-σ model has log_sigma and no metadata: Gaussian, learned
  }
  if (kind !== 'gaussian')
    throw new SafetensorsError(`checkpoint metadata likelihood "${kind}" is not bernoulli or gaussian`);
  const text = metadata.sigma;
  if (text === 'learned') {
    if (!learned)
      throw new SafetensorsError(
        'checkpoint metadata says σ is learned, but the file has no log_sigma tensor: it is truncated or was edited',
      );
    return sizes;
  }
  const sigma = Number(text);
  if (learned || text === undefined || !(sigma >= SIGMA_RANGE[0] && sigma <= SIGMA_RANGE[1])) {
    throw new SafetensorsError(
      `checkpoint metadata sigma "${text}" is not a Gaussian σ (a number from ${SIGMA_RANGE[0]} to ${SIGMA_RANGE[1]}, or "learned" with a log_sigma tensor)`,
    );
  }
  return { ...sizes, likelihood: { kind: 'gaussian', sigma } };
}

/**
 * The sizes a VAE state_dict's names and shapes imply (see impliedSizes in ./graph), with the
 * likelihood its metadata names. A class count in the metadata must agree with the shapes: a
 * conditional VAE is recognised by them (a PyTorch export has no metadata), and the metadata is
 * what a person reads.
 */
function sizesOf(tensors: Map<string, Tensor>, metadata: Record<string, string> = {}): VaeSizes {
  const text = metadata[MODEL_KEY];
  if (text !== undefined) {
    let spec: ModelSpec;
    try {
      spec = parseSpec(JSON.parse(text));
    } catch (e) {
      throw new SafetensorsError(
        `checkpoint metadata "${MODEL_KEY}" is not a model this engine builds: ${(e as Error).message}. The file was edited or is corrupt`,
      );
    }
    return specSizes(spec);
  }
  const sizes = impliedSizes(new Map([...tensors].map(([name, t]) => [name, t.shape])));
  if (!sizes) {
    throw new SafetensorsError(
      'this safetensors file is not a VAE checkpoint: it needs 2-D tensors fc1.weight … fcN.weight, then the heads ' +
        'fc(N+1)1.weight and fc(N+1)2.weight (fc1, fc21 and fc22 for the PyTorch example)',
    );
  }
  const said = metadata[CLASSES_KEY];
  if (said !== undefined && said !== String(classesOf(sizes))) {
    throw new SafetensorsError(
      `checkpoint metadata says ${CLASSES_KEY} "${said}", but its tensors are those of a ${sizesName(sizes)} model: ` +
        'the file was edited or is corrupt',
    );
  }
  return withLikelihood(sizes, metadata);
}

/**
 * A checkpoint file's model sizes and metadata, to make a model that can load it; throws
 * SafetensorsError. The sizes must agree with each other and with the bytes the file holds:
 * a header may declare fc21.weight as (10^9, 0), which takes no bytes yet implies a model of
 * gigabytes, and callers allocate the model before they read its tensors.
 */
export function checkpointSizes(bytes: Uint8Array): { sizes: VaeSizes; metadata: Record<string, string> } {
  const { tensors, metadata } = readSafetensors(bytes);
  const sizes = sizesOf(tensors, metadata);
  let layout: ArenaLayout;
  try {
    layout = arenaLayout(sizes);
  } catch (e) {
    throw new SafetensorsError(
      `checkpoint declares a ${sizesName(sizes)} model, which this engine cannot build: ${(e as Error).message}. ` +
        'The file is corrupt or edited, or its model is past the limits every host trains within: load a checkpoint within them',
    );
  }
  const wrong = layout.params.find((p) => tensors.has(p.name) && tensors.get(p.name)!.shape.join() !== p.shape.join());
  if (wrong) {
    throw new SafetensorsError(
      `checkpoint tensor "${wrong.name}" is [${tensors.get(wrong.name)!.shape}], but ${sizes.spec ? 'its model spec makes' : 'its fc1 and heads imply'} a ${sizesName(sizes)} ` +
        `model, whose ${wrong.name} is [${wrong.shape}]: the file is corrupt or not a VAE checkpoint`,
    );
  }
  const needed = 4 * parameterCount(layout); // float32 weights alone, without the Adam moments
  if (needed > bytes.length) {
    throw new SafetensorsError(
      `checkpoint declares a ${sizesName(sizes)} model, whose weights take ${needed} bytes, but the file holds only ${bytes.length}: ` +
        'it is truncated or not a checkpoint of that model',
    );
  }
  return { sizes, metadata };
}

/**
 * Reads a checkpoint for a model laid out as `layout`. Everything is checked before anything
 * is returned, so a bad file never leaves a model half-loaded.
 */
export function decodeCheckpoint(bytes: Uint8Array, layout: ArenaLayout): CheckpointData {
  const { tensors, metadata } = readSafetensors(bytes);
  const found = sizesOf(tensors, metadata);
  if (!sameSizes(found, layout.sizes)) {
    throw new SafetensorsError(
      `checkpoint is for a ${sizesName(found)} model, this model is ${sizesName(layout.sizes)}: ` +
        (sizesName({ ...found, likelihood: undefined }) === sizesName({ ...layout.sizes, likelihood: undefined })
          ? "create the model with the checkpoint's likelihood and σ to load it (a resume takes them from the file when none is given)"
          : "create the model with the checkpoint's sizes (input, hidden, latent and classes) to load it"),
    );
  }
  // Every tensor is checked before an arena is allocated, so a bad file costs no memory.
  const read = (prefix: string): (Float32Array | undefined)[] =>
    layout.params.map((p) => {
      const name = prefix + p.name;
      const t = tensors.get(name);
      if (!t) return undefined;
      if (t.dtype !== 'F32') throw new SafetensorsError(`checkpoint tensor "${name}" is ${t.dtype}, expected F32`);
      if (t.shape.join() !== p.shape.join()) {
        throw new SafetensorsError(`checkpoint tensor "${name}" has shape [${t.shape}], expected [${p.shape}]`);
      }
      const values = t.data as Float32Array;
      for (const x of values) {
        if (!Number.isFinite(x)) throw new SafetensorsError(`checkpoint tensor "${name}" holds a non-finite value`);
      }
      return values;
    });
  const absent = (prefix: string, found: (Float32Array | undefined)[]) =>
    layout.params.filter((_, i) => !found[i]).map((p) => `"${prefix + p.name}"`);
  const arena = (found: (Float32Array | undefined)[]): Float32Array => {
    const out = new Float32Array(layout.length);
    layout.params.forEach((p, i) => out.set(found[i]!, p.offset));
    return out;
  };

  const weights = read('');
  const missingWeights = absent('', weights);
  if (missingWeights.length > 0) throw new SafetensorsError(`checkpoint is missing tensor ${list(missingWeights)}`);
  // Training keeps log_sigma in LOG_SIGMA_RANGE (Adam clamps it); outside it, σ's e^(−2·log σ) heads for float32's limits.
  const logSigma = weights[layout.params.findIndex((p) => p.name === 'log_sigma')];
  const outside = logSigma ? logSigma.findIndex((x) => !(x >= LOG_SIGMA_RANGE[0] && x <= LOG_SIGMA_RANGE[1])) : -1;
  if (outside >= 0) {
    throw new SafetensorsError(
      `checkpoint tensor "log_sigma" holds ${logSigma![outside]} at index ${outside}, outside the learned σ's range of log σ ` +
        `[${LOG_SIGMA_RANGE[0]}, ${LOG_SIGMA_RANGE[1]}] (σ from ${SIGMA_RANGE[0]} to ${SIGMA_RANGE[1]}): ` +
        'the file was edited, or trained elsewhere without that range; clamp log_sigma into it to load the file',
    );
  }

  // Adam's moments come all together or not at all: resuming with some of them zeroed would
  // train differently from the run that wrote the file, and nothing would say so.
  const mTensors = read(ADAM_M);
  const vTensors = read(ADAM_V);
  const missingMoments = [...absent(ADAM_M, mTensors), ...absent(ADAM_V, vTensors)];
  const momentCount = 2 * layout.params.length;
  const hasMoments = missingMoments.length < momentCount;
  if (hasMoments && missingMoments.length > 0) {
    throw new SafetensorsError(
      `checkpoint has ${momentCount - missingMoments.length} of the ${momentCount} Adam moment tensors, missing ${list(missingMoments)}: ` +
        `a resumable checkpoint holds every ${ADAM_M}* and ${ADAM_V}* tensor; remove them all to load the weights alone`,
    );
  }
  vTensors.forEach((values, i) => {
    // Adam divides by sqrt(v): a negative second moment turns the weights to NaN on the first step.
    const at = values ? values.findIndex((x) => x < 0) : -1;
    if (at >= 0) {
      throw new SafetensorsError(
        `checkpoint tensor "${ADAM_V + layout.params[i].name}" holds ${values![at]} at index ${at}: a second moment (a mean of squares) cannot be negative`,
      );
    }
  });

  const step = metadata.step === undefined ? 0 : /^\d+$/.test(metadata.step) ? Number(metadata.step) : NaN;
  if (!(step <= MAX_STEP)) {
    throw new SafetensorsError(
      `checkpoint metadata step "${metadata.step}" is not a step count (an integer from 0 to ${MAX_STEP})`,
    );
  }
  const params = arena(weights);
  const m = hasMoments ? arena(mTensors) : undefined;
  const v = hasMoments ? arena(vTensors) : undefined;
  const stats = layout.buffers.length > 0 ? readStats(tensors, layout) : undefined;
  return { sizes: layout.sizes, params, m, v, step, metadata, ...(stats ? { stats } : {}) };
}

/**
 * The statistics arena from a checkpoint's buffers (BatchNorm2d's running_mean, running_var and
 * num_batches_tracked): every one is needed, as PyTorch's strict load needs them, since the
 * model evaluates with them.
 */
function readStats(tensors: Map<string, Tensor>, layout: ArenaLayout): Uint32Array {
  const stats = new Uint32Array(layout.statsLength);
  const missing = layout.buffers.filter((b) => !tensors.has(b.name)).map((b) => `"${b.name}"`);
  if (missing.length > 0)
    throw new SafetensorsError(
      `checkpoint is missing buffer ${list(missing)}: a BatchNorm2d model evaluates with its running statistics, which the file must hold`,
    );
  for (const b of layout.buffers) {
    const t = tensors.get(b.name)!;
    if (t.dtype !== b.dtype)
      throw new SafetensorsError(`checkpoint tensor "${b.name}" is ${t.dtype}, expected ${b.dtype}`);
    if (t.shape.join() !== b.shape.join())
      throw new SafetensorsError(`checkpoint tensor "${b.name}" has shape [${t.shape}], expected [${b.shape}]`);
    if (t.data instanceof BigInt64Array) {
      const n = t.data[0]!;
      if (n < 0n || n >= 2n ** 63n)
        throw new SafetensorsError(`checkpoint tensor "${b.name}" holds ${n}: a count of batches cannot be negative`);
      stats.set([Number(n & 0xffffffffn), Number(n >> 32n)], b.offset);
      continue;
    }
    const values = t.data as Float32Array;
    const bad = values.findIndex((x) => !Number.isFinite(x) || (b.name.endsWith('running_var') && x < 0));
    if (bad >= 0)
      throw new SafetensorsError(
        `checkpoint tensor "${b.name}" holds ${values[bad]} at index ${bad}: running statistics are finite, and a variance is not negative`,
      );
    new Float32Array(stats.buffer).set(values, b.offset);
  }
  return stats;
}

/** The first few quoted names of a list, and how many more. */
function list(names: string[]): string {
  return names.slice(0, 3).join(', ') + (names.length > 3 ? ` and ${names.length - 3} more` : '');
}

// ---- A training run's metadata: one writer, one reader -------------------------------------------

/** What a checkpoint says about the run that wrote it (in `__metadata__`, as strings). */
export interface RunMetadata {
  /** Epochs completed. */
  epoch: number;
  seed: number;
  lr?: number;
  batchSize?: number;
  /** `mnist`, `fashion-mnist`, a --data folder, or a page's dataset name. */
  dataset?: string;
  /** The kernel plan it trained with: a resume reuses it, so that it sums in the same order. */
  plan?: KernelPlan;
  /** β on the KL term and the warm-up's steps (absent: 1 and 0, the reference model's). */
  beta?: number;
  klWarmup?: number;
  /** An image folder's run (`--images`): the side its images were decoded to and the fit rule (absent otherwise). */
  imageSize?: number;
  fit?: FitRule;
  /** Image channels when not 1: 3 for planar R, G, B (--channels 3, CIFAR-10). Absent reads as 1, as older checkpoints are. */
  channels?: number;
  /**
   * An image folder's class names, label 0 first (the sorted folder names): a resume checks
   * them, as labels are indices into them (src/model/resume.ts classNamesReason).
   */
  classNames?: readonly string[];
  /** The caller's own entries (the library's `save({ metadata })`); none may be an ENGINE_METADATA_KEYS key. */
  extra?: Record<string, string>;
}

/** Keys in `__metadata__`. */
const RUN_KEYS = {
  epoch: 'epoch',
  seed: 'seed',
  lr: 'lr',
  batchSize: 'batch_size',
  dataset: 'dataset',
  plan: 'kernel_plan',
  beta: 'beta',
  klWarmup: 'kl_warmup',
  imageSize: 'image_size',
  fit: 'fit',
  channels: 'channels',
  classNames: 'class_names',
} as const;

/**
 * Every `__metadata__` key the engine writes or reads back: the model's (encodeCheckpoint) and
 * the run's (RUN_KEYS). A caller's extra entry under one of them cannot be allowed even where
 * the engine does not write it this time — a Bernoulli model writes no `likelihood`, an
 * unconditional one no `classes`, β = 1 no `beta` — because reading the file back would take
 * it for the model's own setting.
 */
export const ENGINE_METADATA_KEYS: readonly string[] = [
  'format',
  'input_dim',
  'hidden_dim',
  'latent_dim',
  'step',
  CLASSES_KEY,
  MODEL_KEY,
  'likelihood',
  'sigma',
  ...Object.values(RUN_KEYS),
];

/** The first of `extra`'s keys that is the engine's, if any. */
export function engineKeyIn(extra: Record<string, string>): string | undefined {
  return Object.keys(extra).find((key) => ENGINE_METADATA_KEYS.includes(key));
}

/** A checkpoint of `state` with the run's metadata. Throws when an extra entry uses an engine key. */
export function encodeRunCheckpoint(
  layout: ArenaLayout,
  state: { params: Float32Array; m?: Float32Array; v?: Float32Array; step: number; stats?: Uint32Array },
  run: RunMetadata,
): Uint8Array {
  const taken = run.extra && engineKeyIn(run.extra);
  if (taken)
    throw new Error(
      `checkpoint metadata: the extra entry "${taken}" uses one of the engine's own keys (${ENGINE_METADATA_KEYS.join(', ')})`,
    );
  const metadata: Record<string, string> = {
    ...run.extra,
    [RUN_KEYS.epoch]: String(run.epoch),
    [RUN_KEYS.seed]: String(run.seed),
  };
  if (run.lr !== undefined) metadata[RUN_KEYS.lr] = String(run.lr);
  if (run.batchSize !== undefined) metadata[RUN_KEYS.batchSize] = String(run.batchSize);
  if (run.dataset !== undefined) metadata[RUN_KEYS.dataset] = run.dataset;
  if (run.plan !== undefined) metadata[RUN_KEYS.plan] = encodePlan(run.plan);
  if (run.beta !== undefined) metadata[RUN_KEYS.beta] = String(run.beta);
  if (run.klWarmup !== undefined) metadata[RUN_KEYS.klWarmup] = String(run.klWarmup);
  if (run.imageSize !== undefined) metadata[RUN_KEYS.imageSize] = String(run.imageSize);
  if (run.fit !== undefined) metadata[RUN_KEYS.fit] = run.fit;
  if (run.channels !== undefined) metadata[RUN_KEYS.channels] = String(run.channels);
  if (run.classNames !== undefined) metadata[RUN_KEYS.classNames] = JSON.stringify(run.classNames);
  return encodeCheckpoint(layout, { ...state, metadata });
}

/**
 * The run metadata of a checkpoint, checked: absent keys are absent (a PyTorch export has
 * none; its epoch is 0), present ones must be what the writer writes. Throws SafetensorsError.
 */
export function readRunMetadata(
  metadata: Record<string, string>,
): Omit<RunMetadata, 'seed' | 'extra'> & { seed?: number } {
  const integer = (key: string, what: string, max: number): number | undefined => {
    const text = metadata[key];
    if (text === undefined) return undefined;
    if (!/^\d+$/.test(text) || Number(text) > max) {
      throw new SafetensorsError(
        `checkpoint metadata ${key} "${text}" is not ${what} (an integer from 0 to ${max}); the file was not written by webgpu-vae, or was edited`,
      );
    }
    return Number(text);
  };
  const lrText = metadata[RUN_KEYS.lr];
  const lr = lrText === undefined ? undefined : Number(lrText);
  if (lr !== undefined && !(Number.isFinite(lr) && lr > 0)) {
    throw new SafetensorsError(`checkpoint metadata lr "${lrText}" is not a learning rate (a number above 0)`);
  }
  // β and the warm-up by the rules every host applies to them (settings.ts).
  const betaText = metadata[RUN_KEYS.beta];
  const beta = betaText === undefined ? undefined : betaText.trim() === '' ? NaN : Number(betaText);
  const badBeta = beta === undefined ? null : betaReason(beta);
  if (badBeta)
    throw new SafetensorsError(`checkpoint metadata ${RUN_KEYS.beta} "${betaText}" is not a β: it ${badBeta}`);
  const warmupText = metadata[RUN_KEYS.klWarmup];
  const klWarmup = warmupText === undefined ? undefined : /^\d+$/.test(warmupText) ? Number(warmupText) : NaN;
  const badWarmup = klWarmup === undefined ? null : klWarmupReason(klWarmup);
  if (badWarmup)
    throw new SafetensorsError(
      `checkpoint metadata ${RUN_KEYS.klWarmup} "${warmupText}" is not a warm-up step count: it ${badWarmup}`,
    );
  const fit = metadata[RUN_KEYS.fit];
  if (fit !== undefined && !(FIT_RULES as readonly string[]).includes(fit)) {
    throw new SafetensorsError(
      `checkpoint metadata ${RUN_KEYS.fit} "${fit}" is not a fit rule (${FIT_RULES.join(', ')})`,
    );
  }
  const imageSize = integer(RUN_KEYS.imageSize, 'an image side', IMAGE_SIZE_RANGE[1]);
  if (imageSize !== undefined && imageSize < IMAGE_SIZE_RANGE[0]) {
    throw new SafetensorsError(
      `checkpoint metadata ${RUN_KEYS.imageSize} "${imageSize}" is not an image side (${IMAGE_SIZE_RANGE[0]} to ${IMAGE_SIZE_RANGE[1]})`,
    );
  }
  const channels = integer(RUN_KEYS.channels, 'a channel count', 3);
  if (channels !== undefined && !(CHANNEL_COUNTS as readonly number[]).includes(channels)) {
    throw new SafetensorsError(
      `checkpoint metadata ${RUN_KEYS.channels} "${channels}" is not a channel count (${CHANNEL_COUNTS.join(' or ')})`,
    );
  }
  const namesText = metadata[RUN_KEYS.classNames];
  const classNames = namesText === undefined ? undefined : classNamesOf(namesText);
  const planText = metadata[RUN_KEYS.plan];
  const plan = planText === undefined ? undefined : decodePlan(planText);
  if (plan === null)
    throw new SafetensorsError(`checkpoint metadata ${RUN_KEYS.plan} is not a kernel plan: ${planText.slice(0, 80)}`);
  return {
    plan,
    epoch: integer(RUN_KEYS.epoch, 'an epoch count', SETTING_RANGES.epochs[1]) ?? 0,
    seed: integer(RUN_KEYS.seed, 'a seed', SETTING_RANGES.seed[1]),
    lr,
    batchSize: integer(RUN_KEYS.batchSize, 'a batch size', SETTING_RANGES.batchSize[1]),
    dataset: metadata[RUN_KEYS.dataset],
    beta,
    klWarmup,
    ...(imageSize !== undefined ? { imageSize } : {}),
    ...(fit !== undefined ? { fit: fit as FitRule } : {}),
    channels: channels ?? 1,
    ...(classNames !== undefined ? { classNames } : {}),
  };
}

/** The class_names entry: a JSON array of at most CLASSES_MAX strings. */
function classNamesOf(text: string): string[] {
  let names: unknown;
  try {
    names = JSON.parse(text);
  } catch {
    names = null;
  }
  if (!Array.isArray(names) || names.length > CLASSES_MAX || !names.every((n) => typeof n === 'string')) {
    throw new SafetensorsError(
      `checkpoint metadata ${RUN_KEYS.classNames} is not a list of class names (a JSON array of at most ${CLASSES_MAX} strings): ${text.slice(0, 80)}`,
    );
  }
  return names as string[];
}
