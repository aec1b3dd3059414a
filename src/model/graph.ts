/**
 * The layer graph: a VAE is a list of layers built from its spec (./spec.ts), each a unit of
 * ./layers with its arguments, names and shapes, and everything else is derived from that
 * list — the parameter arena and its PyTorch names (here), every dispatch list (./programs.ts),
 * the float64 reference (src/reference/vae.ts) and the checkpoint's names and shapes
 * (./checkpoint.ts).
 *
 *   encoder     the spec's encoder layers
 *   heads       fc_mu ‖ fc_logvar: Linear(encoder's output, 2L)    (mu and logvar, one product)
 *   reparameterize  z = mu + exp(½·logvar)·ε
 *   decoder     the spec's decoder layers
 *   likelihood  Bernoulli on the logits: BCE summed + KL (the default); or Gaussian on the
 *               last layer's output as the mean, σ fixed or learned per pixel (log_sigma)
 *
 * The mlp preset (the default: VaeSizes without a spec) is Linear and ReLU per hidden width
 * h1…hn, mirrored in the decoder, with the reference model's names: fc1 … fcn, the heads
 * fc(n+1)1 and fc(n+1)2, then fc(n+2) …, so the PyTorch example keeps fc1, fc21, fc22, fc3, fc4.
 */

import { LAYERS, layerUnit, type LayerKind } from './layers';
import { numel, type LayerUnit, type Shape } from './layers/unit';
import {
  CLASSES_MAX,
  CLASSES_MIN,
  DEFAULT_SETTINGS,
  INPUT_SIZE_MAX,
  MAX_DEPTH,
  SETTING_RANGES,
  SIGMA_RANGE,
} from './settings';
import type { LayerSpec, ModelSpec } from './spec';

/**
 * The decoder's p(x|z). Bernoulli (the reference model's) reads the last layer's output as logits;
 * Gaussian reads it as the mean, with σ fixed or `learned` (log_sigma, one per pixel, in the
 * arena and trained by Adam like the weights).
 */
export type Likelihood = { kind: 'bernoulli' } | { kind: 'gaussian'; sigma: number | 'learned' };

/** The sizes of an MLP VAE. */
export interface VaeSizes {
  /** Pixels per image (784 for MNIST). */
  D: number;
  /** Encoder widths, input side first ([400] for the PyTorch example); the decoder mirrors them. */
  hidden: readonly number[];
  /** Latent dimensions (20). */
  L: number;
  /**
   * Conditional VAE (Sohn et al., 2015): the number of classes C whose one-hot label is appended
   * to the encoder's input, [x ‖ onehot(y)], and to the decoder's, [z ‖ onehot(y)]. Absent or 0:
   * unconditional — the reference model, untouched.
   */
  classes?: number;
  /** Absent: Bernoulli, the reference model's. */
  likelihood?: Likelihood;
  /**
   * A model from a spec (src/model/spec.ts), with nn.Sequential names; the fields above are then
   * its summary (D its input's features, `hidden` its encoder's Linear widths). Absent: the mlp
   * preset of the fields above, with the reference model's names.
   */
  spec?: ModelSpec;
}

/** C of `sizes`: 0 for an unconditional model. */
export function classesOf(sizes: VaeSizes): number {
  return sizes.classes ?? 0;
}

/** The PyTorch example's sizes: MNIST's 784 pixels and the default settings' widths. */
export const REFERENCE_SIZES: VaeSizes = { D: 784, hidden: DEFAULT_SETTINGS.hidden, L: DEFAULT_SETTINGS.latent };

/** A layer of a model: a unit of src/model/layers with its arguments, names and shapes. */
export interface UnitLayer {
  kind: LayerKind;
  unit: LayerUnit;
  /** PyTorch's positional arguments, defaults filled in. */
  args: readonly unknown[];
  /**
   * The PyTorch module names of its parameters (`fc1`, `encoder.1`). A layer with several names
   * is that many PyTorch layers stacked along their first dim so they run as one product (the
   * heads: fc_mu ‖ fc_logvar, or fc21 ‖ fc22).
   */
  names: readonly string[];
  /** Per-sample shapes, without the batch dim. */
  in: Shape;
  out: Shape;
  /** Where the spec has it: "encoder[3]", "decoder[0]", or "heads". */
  where: string;
}

export interface ReparamLayer {
  kind: 'reparameterize';
  latent: number;
}

/** p(x|z) on the decoder's output, + KL: the loss and the gradients that start the backward pass. */
export interface LikelihoodLayer {
  kind: 'likelihood';
  likelihood: Likelihood;
  /** Pixels (log_sigma's length when σ is learned). */
  D: number;
}

export type Layer = UnitLayer | ReparamLayer | LikelihoodLayer;

export function likelihoodOf(sizes: VaeSizes): Likelihood {
  return sizes.likelihood ?? { kind: 'bernoulli' };
}

/** Whether the model has the learned σ's parameter log_sigma. */
export function learnedSigma(sizes: VaeSizes): boolean {
  const l = likelihoodOf(sizes);
  return l.kind === 'gaussian' && l.sigma === 'learned';
}

/**
 * The `mlp` preset's spec for `sizes`: Linear and ReLU for each hidden width, mirrored in the
 * decoder. A conditional model's first Linear of each part reads the one-hot columns too.
 */
export function mlpSpec(sizes: Omit<VaeSizes, 'spec'>): ModelSpec {
  const { D, hidden, L } = sizes;
  const C = classesOf(sizes);
  const l = likelihoodOf(sizes);
  const widths = [D + C, ...hidden];
  const back = [L + C, ...[...hidden].reverse(), D];
  return {
    input: [D],
    latent: L,
    encoder: hidden.flatMap((h, i) => [['Linear', widths[i]!, h], ['ReLU']] as LayerSpec[]),
    decoder: back
      .slice(1)
      .flatMap((w, i) => [['Linear', back[i]!, w], ...(i < hidden.length ? [['ReLU']] : [])] as LayerSpec[]),
    likelihood: l.kind,
    ...(l.kind === 'gaussian' ? { sigma: l.sigma } : {}),
    ...(C > 0 ? { classes: C } : {}),
  };
}

/** The graph of `sizes`, checked: its spec, or the mlp preset's with today's names. */
export function vaeGraph(sizes: VaeSizes): Layer[] {
  checkSizes(sizes);
  return specGraph(sizes.spec ?? mlpSpec(sizes), sizes.spec ? 'sequential' : 'mlp');
}

/** A spec that cannot be built: names the layer, its kind and the shapes that disagree. */
export class SpecError extends RangeError {
  override name = 'SpecError';
}

/**
 * The layers of `spec`, every argument and shape checked. Names: `sequential` are PyTorch's for
 * nn.Sequential encoder and decoder lists (encoder.1, fc_mu, fc_logvar, decoder.0); `mlp` are
 * the reference model's (fc1 … fcn, the heads fc(n+1)1 and fc(n+1)2, then fc(n+2) …).
 *
 * The program builder runs an activation in the epilogue of the product before it (a Linear or
 * a convolution) and its gradient in the dX of the product after it, so an activation must
 * follow a product directly, and one after the decoder's last product (which has no product
 * after it) is refused. Views between products are free: an NCHW image and its flat rows are
 * the same floats.
 *
 * A conditional model's one-hot columns join the first Linear of each part, as the PyTorch
 * module of scripts/vae_spec.py appends them: [h ‖ onehot(y)] before the encoder's first Linear
 * and [z ‖ onehot(y)] for the decoder. In a conv encoder they join after Flatten rather than as
 * C constant image planes: planes would add C·k² weights per output channel to the first conv
 * and C·H·W floats per image to its input, all but one plane zero, while after Flatten each class
 * costs one column of that Linear — the MLP's rule, so one rule serves every model, and the conv
 * kernels never see the labels. When a product comes before that Linear the engine joins the
 * columns in a dispatch of its own (./programs.ts); the decoder's [z ‖ onehot(y)] is built with
 * z, so a conditional decoder's first product must be a Linear (one with none is refused).
 */
export function specGraph(spec: ModelSpec, naming: 'sequential' | 'mlp'): Layer[] {
  const C = spec.classes ?? 0;
  const D = numel(spec.input);
  let linears = 0;
  const part = (list: readonly LayerSpec[], partName: 'encoder' | 'decoder', input: Shape): UnitLayer[] => {
    const out: UnitLayer[] = [];
    let shape = input;
    let conditioned = false;
    list.forEach((layer, i) => {
      const where = `${partName}[${i}]`;
      if (!Array.isArray(layer) || typeof layer[0] !== 'string')
        throw new SpecError(`model spec: ${where} must be a list ["Kind", …arguments], got ${JSON.stringify(layer)}`);
      const [kind, ...raw] = layer;
      const unit = layerUnit(kind);
      if (!unit)
        throw new SpecError(
          `model spec: ${where} is "${kind}", not a layer kind; known: ${Object.keys(LAYERS).join(', ')}`,
        );
      const fail = (why: string): never => {
        throw new SpecError(`model spec: ${where} (${kind}) ${why}`);
      };
      const [min, max] = unit.arity;
      if (raw.length < min || raw.length > max)
        fail(`takes ${min === max ? min : `${min} to ${max}`} argument${max === 1 ? '' : 's'}, got ${raw.length}`);
      const args = unit.args(raw as never);
      if (typeof args === 'string') return fail(args);
      // The one-hot columns join the first Linear's input of a conditional model.
      const joins = C > 0 && kind === 'Linear' && !conditioned && shape.length === 1;
      const inShape = joins ? [shape[0]! + C] : shape;
      if (kind === 'Linear') conditioned = true;
      const outShape = (unit.outShape as (a: unknown, s: Shape) => Shape | string)(args, inShape);
      if (typeof outShape === 'string')
        return fail(C > 0 && inShape !== shape ? `${outShape} ([${shape}] and ${C} one-hot class columns)` : outShape);
      const before = out.at(-1);
      if (unit.role === 'activation' && before?.unit.role !== 'product' && before?.unit.role !== 'norm')
        fail(
          `must follow a layer with weights, a Linear, a convolution or a BatchNorm2d (the engine runs it in that layer's kernels); it follows ${before?.kind ?? 'the input'}`,
        );
      // A norm's backward writes dX unmasked, so what it reads must be a layer's own output with
      // no activation folded into it: a product's or another norm's (through views).
      const fed = [...out].reverse().find((l) => l.unit.role !== 'view');
      if (unit.role === 'norm' && (!fed || fed.unit.role === 'activation'))
        fail(
          `must follow a layer with weights, a Linear or a convolution, with no activation between (its backward does not pass through one); it follows ${fed?.kind ?? `the ${partName}'s input`}`,
        );
      let names: string[] = [];
      if (unit.role === 'product' || unit.role === 'norm')
        names = [naming === 'mlp' ? `fc${++linears}` : `${partName}.${i}`];
      out.push({ kind: kind as LayerKind, unit, args, names, in: inShape, out: outShape, where });
      shape = outShape;
    });
    return out;
  };
  const encoder = part(spec.encoder, 'encoder', spec.input);
  const encoded = encoder.at(-1)?.out ?? spec.input;
  // The heads read the encoder's output: with no Linear in the encoder, the conditional input.
  const headsIn = encoder.some((l) => l.kind === 'Linear') || C === 0 ? numel(encoded) : numel(encoded) + C;
  const product = encoder.find((l) => l.unit.role === 'product');
  if (C > 0 && product && headsIn !== numel(encoded))
    throw new SpecError(
      `model spec: a conditional encoder with ${product.where} (${product.kind}) needs a Linear after it to read the one-hot class columns`,
    );
  if (encoded.length !== 1)
    throw new SpecError(
      `model spec: the encoder's output feeds fc_mu and fc_logvar, Linear(features, ${spec.latent}): it must be flat, got shape [${encoded.join(', ')}] (end the encoder with ["Flatten"])`,
    );
  const n = linears;
  const heads: UnitLayer = {
    kind: 'Linear',
    unit: LAYERS.Linear as LayerUnit,
    args: [headsIn, 2 * spec.latent],
    names: naming === 'mlp' ? [`fc${n + 1}1`, `fc${n + 1}2`] : ['fc_mu', 'fc_logvar'],
    in: [headsIn],
    out: [2 * spec.latent],
    where: 'heads',
  };
  linears = n + 1;
  const decoder = part(spec.decoder, 'decoder', [spec.latent]);
  // The engine builds [z ‖ onehot(y)] with z, for a Linear to read: a product before that Linear
  // would read z alone, and a decoder with no Linear would ignore the labels.
  const firstProduct = decoder.find((l) => l.unit.role === 'product');
  if (C > 0 && firstProduct && firstProduct.kind !== 'Linear')
    throw new SpecError(
      `model spec: ${firstProduct.where} (${firstProduct.kind}) is a conditional decoder's first layer with weights, but the one-hot class columns join [z ‖ onehot(y)] at a Linear: start the decoder with a Linear (or drop "classes")`,
    );
  const lastProduct = decoder.map((l) => l.unit.role).lastIndexOf('product');
  if (lastProduct < 0)
    throw new SpecError(
      `model spec: the decoder needs a layer with weights, a Linear or a convolution (its last one's output is the likelihood's ${spec.likelihood === 'gaussian' ? 'mean' : 'logits'})`,
    );
  const after = decoder.slice(lastProduct + 1).find((l) => l.unit.role === 'activation' || l.unit.role === 'norm');
  if (after)
    throw new SpecError(
      `model spec: ${after.where} (${after.kind}) follows the decoder's last product, ${decoder[lastProduct]!.where} (${decoder[lastProduct]!.kind}), whose output the likelihood reads as ${spec.likelihood === 'gaussian' ? 'the mean' : 'logits'}: drop it`,
    );
  const decoded = decoder.at(-1)!.out;
  const flat = decoded.length === 1 && decoded[0] === D;
  if (!flat && decoded.join() !== spec.input.join())
    throw new SpecError(
      `model spec: the decoder's output, shape [${decoded.join(', ')}] from ${decoder.at(-1)!.where} (${decoder.at(-1)!.kind}), must be the input shape [${spec.input.join(', ')}] or its ${D} features flat`,
    );
  const likelihood: Likelihood =
    spec.likelihood === 'gaussian' ? { kind: 'gaussian', sigma: spec.sigma ?? 1 } : { kind: 'bernoulli' };
  return [
    ...encoder,
    heads,
    { kind: 'reparameterize', latent: spec.latent },
    ...decoder,
    { kind: 'likelihood', likelihood, D },
  ];
}

/** The encoder's layers (through the heads) and the decoder's, as `vaeGraph` orders them. */
export function splitGraph(layers: readonly Layer[]): { encoder: UnitLayer[]; decoder: UnitLayer[] } {
  const at = layers.findIndex((l) => l.kind === 'reparameterize');
  const units = (ls: readonly Layer[]) => ls.filter((l): l is UnitLayer => 'unit' in l);
  return { encoder: units(layers.slice(0, at)), decoder: units(layers.slice(at + 1)) };
}

/** The steps of a chain (products and norms), each with the activation the builder folds into its kernels. */
export function fusedProducts(chain: readonly UnitLayer[]): { layer: UnitLayer; activation?: UnitLayer }[] {
  const out: { layer: UnitLayer; activation?: UnitLayer }[] = [];
  for (const layer of chain) {
    if (layer.unit.role === 'product' || layer.unit.role === 'norm') out.push({ layer });
    else if (layer.unit.role === 'activation') out.at(-1)!.activation = layer;
  }
  return out;
}

/**
 * Checks `sizes` against the limits every host applies (settings.ts), so that no path — an
 * option, the library's create, the sizes a checkpoint's shapes imply — builds a model the
 * others would refuse. A conditional model's sample grid alone takes 8C·(L + C) floats, so a
 * few kilobytes of checkpoint could otherwise ask for gigabytes.
 */
export function checkSizes(sizes: VaeSizes): VaeSizes {
  if (!sizes.spec) return checkCommonSizes(sizes);
  try {
    checkCommonSizes(sizes);
  } catch (e) {
    throw new SpecError(`model spec: ${(e as Error).message}`, { cause: e });
  }
  checkSpecSizes(sizes.spec);
  return sizes;
}

/** The limits every model shares (the mlp preset's widths too). */
function checkCommonSizes(sizes: VaeSizes): VaeSizes {
  const depth = sizes.hidden.length;
  if (!sizes.spec && (depth < 1 || depth > MAX_DEPTH)) {
    throw new RangeError(`a VAE has 1 to ${MAX_DEPTH} hidden layers, got ${depth}`);
  }
  const bounded = [
    ['D (pixels per image)', sizes.D, 1, INPUT_SIZE_MAX],
    ['L (latent dimensions)', sizes.L, ...SETTING_RANGES.latent],
    ...(sizes.spec ? [] : sizes.hidden).map(
      (h, i) => [`hidden[${i}] (a hidden width)`, h, ...SETTING_RANGES.hidden] as const,
    ),
  ] as const;
  for (const [name, v, min, max] of bounded) {
    if (!Number.isInteger(v) || v < min || v > max)
      throw new RangeError(`size ${name} must be a whole number from ${min} to ${max}, got ${v}`);
  }
  const C = classesOf(sizes);
  if (C !== 0 && !(Number.isInteger(C) && C >= CLASSES_MIN && C <= CLASSES_MAX)) {
    throw new RangeError(
      `size classes must be 0 (an unconditional VAE) or a whole number from ${CLASSES_MIN} to ${CLASSES_MAX}, got ${C}`,
    );
  }
  const l = likelihoodOf(sizes);
  if (l.kind === 'gaussian' && l.sigma !== 'learned' && !(l.sigma >= SIGMA_RANGE[0] && l.sigma <= SIGMA_RANGE[1])) {
    throw new RangeError(
      `the Gaussian likelihood's σ must be from ${SIGMA_RANGE[0]} to ${SIGMA_RANGE[1]}, or learned; got ${l.sigma}`,
    );
  }
  if (l.kind !== 'bernoulli' && l.kind !== 'gaussian')
    throw new RangeError(`likelihood must be bernoulli or gaussian, got ${(l as { kind: string }).kind}`);
  return sizes;
}

/**
 * A spec's limits past the sizes above: layers per list, and the floats of each parameter piece
 * and each activation (a storage binding's size), checked on its graph before anything is allocated.
 */
function checkSpecSizes(spec: ModelSpec): void {
  for (const part of ['encoder', 'decoder'] as const) {
    if (spec[part].length > SPEC_LAYERS_MAX)
      throw new SpecError(`model spec: the ${part} has ${spec[part].length} layers, more than ${SPEC_LAYERS_MAX}`);
  }
  for (const layer of splitGraphUnits(specGraph(spec, 'sequential'))) {
    const pieces = layer.unit.role === 'product' || layer.unit.role === 'norm' ? layer.unit.params(layer.args) : [];
    for (const shape of [layer.out, ...pieces.map((p) => p.shape)]) {
      if (numel(shape) > PIECE_FLOATS_MAX)
        throw new SpecError(
          `model spec: ${layer.where} (${layer.kind}) needs [${shape.join(', ')}] = ${numel(shape)} floats in one piece, more than ${PIECE_FLOATS_MAX}`,
        );
    }
  }
}

const splitGraphUnits = (layers: Layer[]) => layers.filter((l): l is UnitLayer => 'unit' in l);

/**
 * "784-400-20", or "784-512-256-20"; a conditional model adds its classes and a Gaussian one its
 * σ: "784-400-20 (10 classes)", "784-400-20 gaussian σ 0.1".
 */
export function sizesName(s: VaeSizes): string {
  if (s.spec) return JSON.stringify(s.spec);
  const C = classesOf(s);
  const l = likelihoodOf(s);
  const tail = l.kind === 'gaussian' ? ` gaussian ${l.sigma === 'learned' ? 'learned σ' : `σ ${l.sigma}`}` : '';
  return [s.D, ...s.hidden, s.L].join('-') + (C > 0 ? ` (${C} classes)` : '') + tail;
}

export function sameSizes(a: VaeSizes, b: VaeSizes): boolean {
  return sizesName(a) === sizesName(b);
}

// ---- The parameter arena ------------------------------------------------------------------------

/**
 * Weights, gradients and both Adam moments are four buffers of one layout: each linear layer
 * has a weight piece (out, in) and a bias piece (out), each starting on a 256-byte boundary
 * (WebGPU's storage-binding offset alignment). The gaps stay zero, and Adam leaves zeros at
 * zero. PyTorch's parameters are named views into the pieces.
 */
export interface Span {
  /** In floats from the start of the arena. */
  offset: number;
  length: number;
}

export interface ParamView extends Span {
  /** PyTorch's name: `fc1.weight`, `fc21.bias` … */
  name: string;
  shape: number[];
  /** Inputs of the layer: PyTorch's default init draws from U(±1/√fanIn). */
  fanIn: number;
  /** Starts at zero and takes no draws (log_sigma: σ = 1). */
  zeroInit?: boolean;
  /** Starts at this value and takes no draws (BatchNorm2d's weight 1 and bias 0). */
  fill?: number;
}

/**
 * A buffer (BatchNorm2d's running statistics and its count), in the statistics arena: offset
 * and length in 32-bit words, an I64 two words (low, high) as PyTorch's int64 little-endian.
 */
export interface BufferView extends Span {
  name: string;
  shape: number[];
  dtype: 'F32' | 'I64';
  fill: number;
}

export interface ArenaLayout {
  sizes: VaeSizes;
  layers: Layer[];
  /** Floats in the arena (a multiple of 64). */
  length: number;
  /** The parameter pieces of each layer that has any, by suffix (`weight`, `bias`), keyed by the layer. */
  pieces: Map<UnitLayer, Record<string, Span>>;
  /** In PyTorch's `named_parameters()` order. */
  params: ParamView[];
  /** The learned σ's log_sigma piece (D), after every linear layer's in the arena (first in `params`). */
  logSigma?: Span;
  /** The buffers of each layer that has any (BatchNorm2d's), by suffix, in the statistics arena. */
  bufferPieces: Map<UnitLayer, Record<string, Span>>;
  /** Every buffer, in the order of the layers (state_dict's). */
  buffers: BufferView[];
  /** Words in the statistics arena (a multiple of 64; 0 without buffers). */
  statsLength: number;
}

/** Layers in a spec's encoder or decoder at most. */
export const SPEC_LAYERS_MAX = 64;

/** Floats in one parameter piece or one activation at most: WebGPU's default maxStorageBufferBindingSize, 128 MiB. */
export const PIECE_FLOATS_MAX = 2 ** 25;

/** 256 bytes: minStorageBufferOffsetAlignment's default and largest allowed value. */
export const ARENA_ALIGN_FLOATS = 64;

export function arenaLayout(sizes: VaeSizes): ArenaLayout {
  const layers = vaeGraph(sizes);
  const pieces = new Map<UnitLayer, Record<string, Span>>();
  const params: ParamView[] = [];
  let at = 0;
  const take = (length: number): Span => {
    const span = { offset: at, length };
    at += Math.ceil(length / ARENA_ALIGN_FLOATS) * ARENA_ALIGN_FLOATS;
    return span;
  };
  const bufferPieces = new Map<UnitLayer, Record<string, Span>>();
  const buffers: BufferView[] = [];
  let words = 0;
  for (const layer of layers) {
    if (!('unit' in layer) || (layer.unit.role !== 'product' && layer.unit.role !== 'norm')) continue;
    const spans: Record<string, Span> = {};
    const fanIn = layer.unit.role === 'product' ? layer.unit.fanIn(layer.args) : 0;
    const shapes = layer.unit.params(layer.args);
    for (const { suffix, shape } of shapes) spans[suffix] = take(numel(shape));
    // Stacked names split each piece along its first dim; PyTorch lists each name's pieces together.
    layer.names.forEach((name, j) => {
      for (const { suffix, shape, fill } of shapes) {
        const part = shape[0]! / layer.names.length;
        const rest = numel(shape.slice(1));
        params.push({
          name: `${name}.${suffix}`,
          shape: [part, ...shape.slice(1)],
          fanIn,
          offset: spans[suffix]!.offset + j * part * rest,
          length: part * rest,
          ...(fill === undefined ? {} : { fill }),
        });
      }
    });
    pieces.set(layer, spans);
    if (layer.unit.role !== 'norm') continue;
    // A layer's F32 buffers are consecutive (the kernels bind BatchNorm2d's running_mean and
    // running_var as one block); each run of one dtype starts on a 256-byte boundary.
    const bufferSpans: Record<string, Span> = {};
    let dtype = '';
    for (const b of layer.unit.buffers(layer.args)) {
      if (b.dtype !== dtype) words = Math.ceil(words / ARENA_ALIGN_FLOATS) * ARENA_ALIGN_FLOATS;
      dtype = b.dtype;
      const length = numel(b.shape) * (b.dtype === 'I64' ? 2 : 1);
      bufferSpans[b.suffix] = { offset: words, length };
      buffers.push({
        name: `${layer.names[0]}.${b.suffix}`,
        shape: b.shape,
        dtype: b.dtype,
        fill: b.fill,
        offset: words,
        length,
      });
      words += length;
    }
    bufferPieces.set(layer, bufferSpans);
  }
  const statsLength = Math.ceil(words / ARENA_ALIGN_FLOATS) * ARENA_ALIGN_FLOATS;
  let logSigma: Span | undefined;
  if (learnedSigma(sizes)) {
    logSigma = take(sizes.D);
    // First in named_parameters(): a Module lists its own parameters before its submodules'.
    params.unshift({ name: 'log_sigma', shape: [sizes.D], fanIn: 0, zeroInit: true, ...logSigma });
  }
  return { sizes, layers, length: at, pieces, params, logSigma, bufferPieces, buffers, statsLength };
}

/** The statistics arena's starting words: each buffer's fill (running_var 1, the rest 0). */
export function initStats(layout: ArenaLayout): Uint32Array {
  const words = new Uint32Array(layout.statsLength);
  const floats = new Float32Array(words.buffer);
  for (const b of layout.buffers) {
    if (b.dtype === 'F32') floats.fill(b.fill, b.offset, b.offset + b.length);
    else for (let i = 0; i < b.length; i += 2) words.set([b.fill, 0], b.offset + i);
  }
  return words;
}

/** Floats in the model (what PyTorch's `sum(p.numel())` reports). */
export function parameterCount(layout: ArenaLayout): number {
  return layout.params.reduce((n, p) => n + p.length, 0);
}

/**
 * PyTorch's default nn.Linear initialisation: weights and biases uniform in ±1/√fan_in
 * (kaiming_uniform with a = √5 reduces to exactly that bound). Draws come from `uniform01`.
 */
export function initArena(layout: ArenaLayout, uniform01: () => number): Float32Array {
  const arena = new Float32Array(layout.length);
  for (const p of layout.params) {
    if (p.fill !== undefined) arena.fill(p.fill, p.offset, p.offset + p.length);
    if (p.zeroInit || p.fill !== undefined) continue;
    const bound = 1 / Math.sqrt(p.fanIn);
    for (let i = 0; i < p.length; i++) arena[p.offset + i] = (2 * uniform01() - 1) * bound;
  }
  return arena;
}

/**
 * The sizes a state_dict's names and shapes imply: encoder layers fc1…fcn, then the heads
 * fc(n+1)1 and fc(n+1)2. Returns null when the names are not those of such a VAE; the caller
 * still checks every tensor against `arenaLayout` of the result.
 */
export function impliedSizes(shapes: ReadonlyMap<string, readonly number[]>): VaeSizes | null {
  const shape = (name: string) => shapes.get(name);
  const hidden: number[] = [];
  let D = 0;
  for (let i = 1; ; i++) {
    const w = shape(`fc${i}.weight`);
    const head = shape(`fc${i}1.weight`);
    if (head && !w && i > 1) {
      if (head.length !== 2) return null;
      const L = head[0];
      // A conditional VAE's first decoder layer reads [z ‖ onehot(y)]: its extra inputs are the
      // classes, and fc1's inputs beyond them are the pixels.
      const decoder = shape(`fc${i + 1}.weight`);
      const C = decoder && decoder.length === 2 && decoder[1] > L ? decoder[1] - L : 0;
      // A log_sigma vector is the learned σ of the Gaussian likelihood; a fixed σ is in the metadata.
      const likelihood: Pick<VaeSizes, 'likelihood'> = shapes.has('log_sigma')
        ? { likelihood: { kind: 'gaussian', sigma: 'learned' } }
        : {};
      if (C === 0) return { D, hidden, L, ...likelihood };
      return D > C ? { D: D - C, hidden, L, classes: C, ...likelihood } : null;
    }
    if (!w || w.length !== 2) return null;
    if (i === 1) D = w[1];
    hidden.push(w[0]);
    if (i > 64) return null; // no such file is a VAE of ours
  }
}
