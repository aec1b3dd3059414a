/**
 * The layer graph: a VAE is a list of layers, and everything else is derived from that list —
 * the parameter arena and its PyTorch names (here), every dispatch list (./programs.ts), the
 * float64 reference (src/reference/vae.ts) and the checkpoint's names and shapes
 * (./checkpoint.ts).
 *
 * An MLP VAE with encoder widths h1…hn (input side first) and latent size L is
 *
 *   encoder  fc1: D→h1, ReLU  …  fcn: h(n−1)→hn, ReLU
 *   heads    fc(n+1)1 ‖ fc(n+1)2: hn→2L         (mu and logvar, one product)
 *   reparameterize  z = mu + exp(½·logvar)·ε
 *   decoder  fc(n+2): L→hn, ReLU  …  fc(2n+1): h2→h1, ReLU,  fc(2n+2): h1→D
 *   likelihood  Bernoulli on the logits: BCE summed + KL (the default); or Gaussian on the
 *               last layer's output as the mean, σ fixed or learned per pixel (log_sigma)
 *
 * so the PyTorch example (n = 1, h1 = 400) keeps its names fc1, fc21, fc22, fc3, fc4.
 */

import {
  CLASSES_MAX,
  CLASSES_MIN,
  DEFAULT_SETTINGS,
  INPUT_SIZE_MAX,
  MAX_DEPTH,
  SETTING_RANGES,
  SIGMA_RANGE,
} from './settings';

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
}

/** C of `sizes`: 0 for an unconditional model. */
export function classesOf(sizes: VaeSizes): number {
  return sizes.classes ?? 0;
}

/** The PyTorch example's sizes: MNIST's 784 pixels and the default settings' widths. */
export const REFERENCE_SIZES: VaeSizes = { D: 784, hidden: DEFAULT_SETTINGS.hidden, L: DEFAULT_SETTINGS.latent };

/**
 * Y = X·Wᵀ + b, W stored (out, in) as PyTorch does. A layer with several `names` is that many
 * PyTorch Linears of out/names.length outputs each, stacked along `out` so they run as one
 * product (the mu and logvar heads).
 */
export interface LinearLayer {
  kind: 'linear';
  names: readonly string[];
  in: number;
  out: number;
  /** A ReLU follows (fused into the product's epilogue; its backward masks the next dX). */
  relu: boolean;
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

export type Layer = LinearLayer | ReparamLayer | LikelihoodLayer;

export function likelihoodOf(sizes: VaeSizes): Likelihood {
  return sizes.likelihood ?? { kind: 'bernoulli' };
}

/** Whether the model has the learned σ's parameter log_sigma. */
export function learnedSigma(sizes: VaeSizes): boolean {
  const l = likelihoodOf(sizes);
  return l.kind === 'gaussian' && l.sigma === 'learned';
}

/** The graph of `sizes`, checked. */
export function vaeGraph(sizes: VaeSizes): Layer[] {
  const { D, hidden, L } = checkSizes(sizes);
  const C = classesOf(sizes);
  const n = hidden.length;
  // The one-hot columns widen the first layer of the encoder and of the decoder: PyTorch's
  // Linear(D + C, h1) and Linear(L + C, hn), whose weights' last C columns are the classes'.
  const widths = [D + C, ...hidden];
  const layers: Layer[] = [];
  for (let i = 0; i < n; i++) {
    layers.push({ kind: 'linear', names: [`fc${i + 1}`], in: widths[i], out: widths[i + 1], relu: true });
  }
  layers.push({ kind: 'linear', names: [`fc${n + 1}1`, `fc${n + 1}2`], in: hidden[n - 1], out: 2 * L, relu: false });
  layers.push({ kind: 'reparameterize', latent: L });
  const back = [L + C, ...[...hidden].reverse(), D];
  for (let i = 0; i <= n; i++) {
    layers.push({ kind: 'linear', names: [`fc${n + 2 + i}`], in: back[i], out: back[i + 1], relu: i < n });
  }
  layers.push({ kind: 'likelihood', likelihood: likelihoodOf(sizes), D });
  return layers;
}

/** The encoder's layers (through the heads) and the decoder's, as `vaeGraph` orders them. */
export function splitGraph(layers: readonly Layer[]): { encoder: LinearLayer[]; decoder: LinearLayer[] } {
  const at = layers.findIndex((l) => l.kind === 'reparameterize');
  const linears = (ls: readonly Layer[]) => ls.filter((l): l is LinearLayer => l.kind === 'linear');
  return { encoder: linears(layers.slice(0, at)), decoder: linears(layers.slice(at + 1)) };
}

/**
 * Checks `sizes` against the limits every host applies (settings.ts), so that no path — an
 * option, the library's create, the sizes a checkpoint's shapes imply — builds a model the
 * others would refuse. A conditional model's sample grid alone takes 8C·(L + C) floats, so a
 * few kilobytes of checkpoint could otherwise ask for gigabytes.
 */
export function checkSizes(sizes: VaeSizes): VaeSizes {
  const depth = sizes.hidden.length;
  if (depth < 1 || depth > MAX_DEPTH) {
    throw new RangeError(`a VAE has 1 to ${MAX_DEPTH} hidden layers, got ${depth}`);
  }
  const bounded = [
    ['D (pixels per image)', sizes.D, 1, INPUT_SIZE_MAX],
    ['L (latent dimensions)', sizes.L, ...SETTING_RANGES.latent],
    ...sizes.hidden.map((h, i) => [`hidden[${i}] (a hidden width)`, h, ...SETTING_RANGES.hidden] as const),
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
 * "784-400-20", or "784-512-256-20"; a conditional model adds its classes and a Gaussian one its
 * σ: "784-400-20 (10 classes)", "784-400-20 gaussian σ 0.1".
 */
export function sizesName(s: VaeSizes): string {
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
}

export interface ArenaLayout {
  sizes: VaeSizes;
  layers: Layer[];
  /** Floats in the arena (a multiple of 64). */
  length: number;
  /** The weight and bias pieces of each linear layer, keyed by the layer. */
  pieces: Map<LinearLayer, { W: Span; b: Span }>;
  /** In PyTorch's `named_parameters()` order. */
  params: ParamView[];
  /** The learned σ's log_sigma piece (D), after every linear layer's in the arena (first in `params`). */
  logSigma?: Span;
}

/** 256 bytes: minStorageBufferOffsetAlignment's default and largest allowed value. */
export const ARENA_ALIGN_FLOATS = 64;

export function arenaLayout(sizes: VaeSizes): ArenaLayout {
  const layers = vaeGraph(sizes);
  const pieces = new Map<LinearLayer, { W: Span; b: Span }>();
  const params: ParamView[] = [];
  let at = 0;
  const take = (length: number): Span => {
    const span = { offset: at, length };
    at += Math.ceil(length / ARENA_ALIGN_FLOATS) * ARENA_ALIGN_FLOATS;
    return span;
  };
  for (const layer of layers) {
    if (layer.kind !== 'linear') continue;
    const W = take(layer.out * layer.in);
    const b = take(layer.out);
    pieces.set(layer, { W, b });
    const part = layer.out / layer.names.length;
    layer.names.forEach((name, j) => {
      params.push({
        name: `${name}.weight`,
        shape: [part, layer.in],
        fanIn: layer.in,
        offset: W.offset + j * part * layer.in,
        length: part * layer.in,
      });
      params.push({ name: `${name}.bias`, shape: [part], fanIn: layer.in, offset: b.offset + j * part, length: part });
    });
  }
  let logSigma: Span | undefined;
  if (learnedSigma(sizes)) {
    logSigma = take(sizes.D);
    // First in named_parameters(): a Module lists its own parameters before its submodules'.
    params.unshift({ name: 'log_sigma', shape: [sizes.D], fanIn: 0, zeroInit: true, ...logSigma });
  }
  return { sizes, layers, length: at, pieces, params, logSigma };
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
    if (p.zeroInit) continue;
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
