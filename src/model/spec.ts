/**
 * The model as data: a spec in PyTorch's vocabulary, checked before anything is allocated.
 *
 *   {"input": [1, 28, 28], "latent": 20,
 *    "encoder": [["Flatten"], ["Linear", 784, 512], ["LeakyReLU", 0.2]],
 *    "decoder": [["Linear", 20, 512], ["LeakyReLU", 0.2], ["Linear", 512, 784]],
 *    "likelihood": "bernoulli"}
 *
 * A layer is [Kind, …PyTorch's positional arguments] (the kinds: src/model/layers); the heads
 * fc_mu and fc_logvar, Linear(encoder's output, latent), are implied. `sigma` (number or
 * "learned") is the Gaussian likelihood's, `classes` makes the VAE conditional: the first Linear
 * of the encoder and of the decoder then read the one-hot class columns too, as in PyTorch
 * (Linear(784 + 10, 512)). The presets: `mlp`, the reference model and the default, which keeps
 * its names fc1, fc21, fc22, fc3, fc4; `leaky`, the LeakyReLU MLP above; `conv`, the
 * convolutional VAE (convSpec); and `conv-bn`, the same with BatchNorm2d and LeakyReLU (convBnSpec).
 */
import { checkSizes, classesOf, SpecError, type Likelihood, type VaeSizes } from './graph';
import { layerUnit } from './layers';
import { numel } from './layers/unit';
import { DEFAULT_SETTINGS } from './settings';

export type LayerSpec = readonly [string, ...unknown[]];

export interface ModelSpec {
  input: number[];
  latent: number;
  encoder: LayerSpec[];
  decoder: LayerSpec[];
  likelihood: 'bernoulli' | 'gaussian';
  sigma?: number | 'learned';
  classes?: number;
}

const KEYS = ['input', 'latent', 'encoder', 'decoder', 'likelihood', 'sigma', 'classes'];

const fail = (why: string): never => {
  throw new SpecError(`model spec: ${why}`);
};

/**
 * `value` (parsed JSON) as a spec, every field, layer and shape checked and PyTorch's default
 * arguments filled in, so two specs of one model compare equal. Throws a SpecError naming the
 * field or the layer (its index, its kind and the shapes that disagree).
 */
export function parseSpec(value: unknown): ModelSpec {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    fail(`must be a JSON object with ${KEYS.slice(0, 5).join(', ')}, got ${JSON.stringify(value)}`);
  const v = value as Record<string, unknown>;
  const unknown = Object.keys(v).filter((k) => !KEYS.includes(k));
  if (unknown.length)
    fail(`unknown field ${unknown.map((k) => `"${k}"`).join(', ')}; the fields are ${KEYS.join(', ')}`);
  const { input, latent, encoder, decoder, likelihood = 'bernoulli', sigma, classes } = v;
  if (
    !Array.isArray(input) ||
    input.length < 1 ||
    input.length > 3 ||
    !input.every((d) => Number.isInteger(d) && d >= 1)
  )
    fail(
      `input must be the shape of one image, [C, H, W] (or [features]), whole numbers ≥ 1; got ${JSON.stringify(input)}`,
    );
  if (typeof latent !== 'number') fail(`latent must be a number, got ${JSON.stringify(latent)}`);
  for (const [name, list] of [
    ['encoder', encoder],
    ['decoder', decoder],
  ] as const) {
    if (!Array.isArray(list)) fail(`${name} must be a list of layers, got ${JSON.stringify(list)}`);
  }
  if (likelihood !== 'bernoulli' && likelihood !== 'gaussian')
    fail(`likelihood must be "bernoulli" or "gaussian", got ${JSON.stringify(likelihood)}`);
  if (sigma !== undefined && likelihood !== 'gaussian')
    fail('sigma is the Gaussian likelihood\'s: add "likelihood": "gaussian"');
  if (sigma !== undefined && sigma !== 'learned' && typeof sigma !== 'number')
    fail(`sigma must be a number or "learned", got ${JSON.stringify(sigma)}`);
  if (classes !== undefined && typeof classes !== 'number')
    fail(`classes must be a number, got ${JSON.stringify(classes)}`);
  // PyTorch's defaults filled in; each layer's own check names it (graph.ts specGraph).
  const canonical = (list: unknown[], part: string): LayerSpec[] =>
    list.map((layer, i) => {
      if (!Array.isArray(layer) || typeof layer[0] !== 'string')
        fail(`${part}[${i}] must be a list ["Kind", …arguments], got ${JSON.stringify(layer)}`);
      const [kind, ...raw] = layer as [string, ...unknown[]];
      const unit = layerUnit(kind);
      const args = unit && raw.length >= unit.arity[0] && raw.length <= unit.arity[1] ? unit.args(raw as never) : raw;
      return [kind, ...(typeof args === 'string' ? raw : args)] as LayerSpec;
    });
  const spec: ModelSpec = {
    input: input as number[],
    latent: latent as number,
    encoder: canonical(encoder as unknown[], 'encoder'),
    decoder: canonical(decoder as unknown[], 'decoder'),
    likelihood: likelihood as ModelSpec['likelihood'],
    ...(likelihood === 'gaussian' ? { sigma: (sigma as number | 'learned' | undefined) ?? 1 } : {}),
    ...(classes ? { classes: classes as number } : {}),
  };
  checkSizes(specSizes(spec));
  return spec;
}

/** The sizes of a spec's model (unchecked: parseSpec and checkSizes check them). */
export function specSizes(spec: ModelSpec): VaeSizes {
  const likelihood: Likelihood =
    spec.likelihood === 'gaussian' ? { kind: 'gaussian', sigma: spec.sigma ?? 1 } : { kind: 'bernoulli' };
  return {
    D: numel(spec.input),
    hidden: spec.encoder.filter(([kind]) => kind === 'Linear').map((l) => l[2] as number),
    L: spec.latent,
    ...(spec.classes ? { classes: spec.classes } : {}),
    ...(spec.likelihood === 'gaussian' ? { likelihood } : {}),
    spec,
  };
}

/** The presets a model may be named by, besides a spec. */
export const PRESETS = ['mlp', 'leaky', 'conv', 'conv-bn'] as const;
export type Preset = (typeof PRESETS)[number];

/** The default model. */
export const DEFAULT_PRESET: Preset = 'mlp';

/** The `leaky` preset for images of shape `input`: the LeakyReLU MLP of the file comment, 512 and 256 wide. */
function leakySpec(input: number[], latent: number): ModelSpec {
  const D = numel(input);
  return {
    input,
    latent,
    encoder: [
      ['Flatten', 1, -1],
      ['Linear', D, 512],
      ['LeakyReLU', 0.2],
      ['Linear', 512, 256],
      ['LeakyReLU', 0.2],
    ],
    decoder: [
      ['Linear', latent, 256],
      ['LeakyReLU', 0.2],
      ['Linear', 256, D],
    ],
    likelihood: 'bernoulli',
  };
}

/**
 * The `conv` preset for images (C, H, W), H and W divisible by 4: two stride-2 Conv2d halve the
 * image twice, a Linear of 256 reads the 64 channels flat, and the decoder mirrors it with
 * ConvTranspose2d (the module of scripts/vae_spec.py's spec_of("conv"), PyTorch's defaults
 * written out as parseSpec fills them).
 */
function convSpec(input: readonly number[], latent: number): ModelSpec {
  return convFamily('conv', input, latent, ['ReLU'], () => []);
}

/**
 * The `conv-bn` preset: the conv preset with a BatchNorm2d after each conv but the decoder's
 * last and LeakyReLU(0.2) for every ReLU, in the style of the popular PyTorch VAE collections
 * (scripts/vae_spec.py's spec_of("conv-bn")).
 */
function convBnSpec(input: readonly number[], latent: number): ModelSpec {
  return convFamily('conv-bn', input, latent, ['LeakyReLU', 0.2], (n) => [['BatchNorm2d', n]]);
}

/** The conv presets' module, with its activation and what follows each conv but the last. */
function convFamily(
  name: Preset,
  input: readonly number[],
  latent: number,
  act: LayerSpec,
  norm: (channels: number) => LayerSpec[],
): ModelSpec {
  if (input.length !== 3 || input[1]! % 4 || input[2]! % 4)
    fail(
      `the ${name} preset reads images (C, H, W) with H and W divisible by 4 (two stride-2 convs), got [${input.join(', ')}]`,
    );
  const [C, H, W] = input as [number, number, number];
  const flat = 64 * (H / 4) * (W / 4);
  return {
    input: [...input],
    latent,
    encoder: [
      ['Conv2d', C, 32, 4, 2, 1],
      ...norm(32),
      act,
      ['Conv2d', 32, 64, 4, 2, 1],
      ...norm(64),
      act,
      ['Flatten', 1, -1],
      ['Linear', flat, 256],
      act,
    ],
    decoder: [
      ['Linear', latent, 256],
      act,
      ['Linear', 256, flat],
      act,
      ['Unflatten', 1, [64, H / 4, W / 4]],
      ['ConvTranspose2d', 64, 32, 4, 2, 1, 0],
      ...norm(32),
      act,
      ['ConvTranspose2d', 32, C, 4, 2, 1, 0],
    ],
    likelihood: 'bernoulli',
  };
}

/**
 * What every host knows of a model besides its name or spec: the images' shape, and the options
 * that exist for the mlp preset (absent: not given).
 */
export interface ModelOptions {
  /** One image's shape: [C, H, W], or [pixels]. */
  input: readonly number[];
  hidden?: readonly number[];
  latent?: number;
  classes?: number;
  likelihood?: Likelihood;
}

/**
 * The one path from a host's options to a model: `model` is a preset's name or a spec (absent:
 * the default preset). The mlp preset takes its widths, latent size, classes and likelihood from
 * the options; a spec names its own, so widths, latent size or classes that differ from the
 * spec's are refused (the likelihood, which changes no shape, replaces the spec's).
 */
export function modelSizes(model: string | ModelSpec | undefined, o: ModelOptions): VaeSizes {
  const D = numel(o.input);
  const name = model ?? DEFAULT_PRESET;
  if (name === 'mlp') {
    return checkSizes({
      D,
      hidden: [...(o.hidden ?? DEFAULT_SETTINGS.hidden)],
      L: o.latent ?? DEFAULT_SETTINGS.latent,
      ...(o.classes ? { classes: o.classes } : {}),
      ...(o.likelihood ? { likelihood: o.likelihood } : {}),
    });
  }
  let spec: ModelSpec;
  if (typeof name === 'string') {
    const latent = o.latent ?? DEFAULT_SETTINGS.latent;
    if (name === 'leaky') spec = leakySpec([...o.input], latent);
    else if (name === 'conv') spec = convSpec(o.input, latent);
    else if (name === 'conv-bn') spec = convBnSpec(o.input, latent);
    else spec = fail(`"${name}" is not a preset; the presets are ${PRESETS.join(', ')} (or give a spec)`);
    if (o.classes) spec = withClasses(spec, o.classes);
  } else {
    spec = parseSpec(name);
    if (o.hidden) fail("hidden widths shape the mlp preset; a spec's Linear layers give its widths");
    if (o.latent !== undefined && o.latent !== spec.latent)
      fail(`its latent size is ${spec.latent}, and ${o.latent} was asked for: change the spec's "latent"`);
    if ((o.classes ?? 0) !== (spec.classes ?? 0))
      fail(
        `it is for ${spec.classes ?? 0} classes, and the data has ${o.classes ?? 0}: set the spec's "classes" (its first Linears read the one-hot columns)`,
      );
  }
  if (numel(spec.input) !== D)
    fail(
      `its input [${spec.input.join(', ')}] has ${numel(spec.input)} features, the images ${D} ([${o.input.join(', ')}])`,
    );
  if (o.likelihood) {
    const { sigma: _sigma, ...rest } = spec;
    spec = {
      ...rest,
      likelihood: o.likelihood.kind,
      ...(o.likelihood.kind === 'gaussian' ? { sigma: o.likelihood.sigma } : {}),
    };
  }
  return specSizes(parseSpec(spec));
}

/** `spec` conditional on `classes`: its first Linear of each part widened by the one-hot columns. */
function withClasses(spec: ModelSpec, classes: number): ModelSpec {
  const widen = (list: LayerSpec[]) => {
    const at = list.findIndex(([kind]) => kind === 'Linear');
    return list.map((l, i) => (i === at ? (['Linear', (l[1] as number) + classes, l[2]] as LayerSpec) : l));
  };
  return { ...spec, encoder: widen(spec.encoder), decoder: widen(spec.decoder), classes };
}

/** A model's spec as stored (a checkpoint's `model`): compact JSON; absent for the mlp preset. */
export function specJson(sizes: VaeSizes): string | undefined {
  return sizes.spec ? JSON.stringify(sizes.spec) : undefined;
}

/** The classes of a model, for hosts that hold sizes. */
export { classesOf };
