/**
 * The whole VAE on the CPU in float64, walked from the same layer graph as the GPU programs
 * (src/model/graph.ts) and composed from the kernel references in ./ops exactly as the GPU
 * composes its kernels, so a mismatch on the GPU can be narrowed to one kernel by comparing
 * intermediates.
 *
 * Each layer runs its own float64 twin (./layers.ts), unfused: an activation is its own step.
 * A Linear with several names (the heads fc21 ‖ fc22) runs as one product with its weights
 * stacked, which yields the [mu ‖ logvar] rows the reparameterization and loss read.
 */
import {
  arenaLayout,
  classesOf,
  splitGraph,
  vaeGraph,
  type LikelihoodLayer,
  type UnitLayer,
  type VaeSizes,
} from '../model/graph';
import { LOG_SIGMA_RANGE } from '../model/settings';
import { REFERENCE_LAYERS, type LayerState } from './layers';
import { elbo } from './loss';
import { concatOneHot, reparamBackward, reparamForward } from './ops';

export type { VaeSizes };

/** Parameters under their PyTorch names, row-major in PyTorch's shapes (weight = (out, in)). */
export type VaeParams = Record<string, Float64Array>;

/** model.named_parameters() order, which checkpoints and the optimizer state follow. */
export function paramNames(sizes: VaeSizes): string[] {
  return arenaLayout(sizes).params.map((p) => p.name);
}

/** The range Adam keeps parameter `name` in after each update (the engine's adam clamp): log_sigma's; none for the rest. */
export function paramRange(name: string): readonly [number, number] | undefined {
  return name === 'log_sigma' ? LOG_SIGMA_RANGE : undefined;
}

export function paramShapes(sizes: VaeSizes): Record<string, number[]> {
  return Object.fromEntries(arenaLayout(sizes).params.map((p) => [p.name, p.shape]));
}

/** The layer's parameters by suffix, its names' pieces stacked along the first dim. */
function pieces(p: VaeParams, layer: UnitLayer): Record<string, Float64Array> {
  if (layer.unit.role !== 'product' && layer.unit.role !== 'norm') return {};
  const out: Record<string, Float64Array> = {};
  for (const { suffix } of layer.unit.params(layer.args)) {
    const parts = layer.names.map((n) => p[`${n}.${suffix}`]!);
    const all = new Float64Array(parts.reduce((a, b) => a + b.length, 0));
    let at = 0;
    for (const part of parts) {
      all.set(part, at);
      at += part.length;
    }
    out[suffix] = all;
  }
  return out;
}

/**
 * A conditional VAE's first Linear of each part reads [h ‖ onehot(y)]: [x ‖ onehot(y)] for an
 * MLP, [flattened conv output ‖ onehot(y)] for a conv encoder, [z ‖ onehot(y)] for the decoder;
 * the loss still compares the logits with x.
 */
function conditioned(
  s: VaeSizes,
  m: ArrayLike<number>,
  rows: number,
  width: number,
  labels?: ArrayLike<number>,
): ArrayLike<number> {
  const C = classesOf(s);
  if (C === 0) return m;
  if (!labels) throw new Error(`the reference conditional VAE (${C} classes) needs a label per row`);
  return concatOneHot(m, rows, width, labels, C);
}

/**
 * A model's buffers under their state_dict names (BatchNorm2d's running_mean, running_var, and
 * num_batches_tracked as a one-element array), at PyTorch's starting values.
 */
export function initialBuffers(sizes: VaeSizes): VaeParams {
  return Object.fromEntries(
    arenaLayout(sizes).buffers.map((b) => [b.name, new Float64Array(Math.max(1, b.shape[0] ?? 1)).fill(b.fill)]),
  );
}

/** A pass's mode and the buffers it reads (and, training, updates in place). */
export interface PassState {
  training: boolean;
  buffers: VaeParams;
}

/** The state of `layer` in `state`: its buffers by suffix. */
function layerState(layer: UnitLayer, state: PassState): LayerState {
  const prefix = `${layer.names[0]}.`;
  const buffers: Record<string, Float64Array> = {};
  for (const [name, b] of Object.entries(state.buffers))
    if (name.startsWith(prefix)) buffers[name.slice(prefix.length)] = b;
  return { training: state.training, buffers };
}

function forward(
  p: VaeParams,
  s: VaeSizes,
  x: ArrayLike<number>,
  eps: ArrayLike<number>,
  rows: number,
  labels?: ArrayLike<number>,
  beta = 1,
  state: PassState = { training: true, buffers: initialBuffers(s) },
) {
  const graph = vaeGraph(s);
  const { encoder, decoder } = splitGraph(graph);
  const { likelihood } = graph.at(-1) as LikelihoodLayer;
  // inputs[i] is what layer i read. A conditional model's first Linear reads the one-hot too.
  const chain = (layers: UnitLayer[], input: ArrayLike<number>) => {
    const inputs: ArrayLike<number>[] = [];
    let first = true;
    for (const layer of layers) {
      if (first && layer.kind === 'Linear') {
        input = conditioned(s, input, rows, layer.in[0]! - classesOf(s), labels);
        first = false;
      }
      inputs.push(input);
      input = REFERENCE_LAYERS[layer.kind].forward(
        layer.args,
        input,
        rows,
        pieces(p, layer),
        layer.in,
        layerState(layer, state),
      );
    }
    return { inputs, output: input as Float64Array };
  };
  const enc = chain(encoder, x);
  const mulv = enc.output;
  const z = reparamForward(mulv, rows, s.L, eps);
  const dec = chain(decoder, z);
  const logits = dec.output;
  // The likelihood layer: Bernoulli is bceKl's BCE + KL; the Gaussian's σ is fixed or the parameter log_sigma.
  const logSigma =
    likelihood.kind === 'gaussian'
      ? likelihood.sigma === 'learned'
        ? p['log_sigma']!
        : Math.log(likelihood.sigma)
      : undefined;
  const r = elbo(logits, x, mulv, rows, s.D, s.L, { likelihood: likelihood.kind, beta, logSigma });
  const loss = { ...r, bce: r.recon };
  return { encoder, decoder, enc, dec, mulv, z, logits, loss };
}

function splitMulv(mulv: Float64Array, rows: number, L: number) {
  const mu = new Float64Array(rows * L);
  const logvar = new Float64Array(rows * L);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < L; j++) {
      mu[r * L + j] = mulv[r * 2 * L + j]!;
      logvar[r * L + j] = mulv[r * 2 * L + L + j]!;
    }
  }
  return { mu, logvar };
}

/**
 * Forward and backward for one batch x (rows, D) with noise eps (rows, L); loss is summed. A
 * conditional VAE takes one class per row in `labels`; `z` is then [z ‖ onehot(y)] (rows, L+C).
 * The gradients are those of the objective recon + β·KL (`beta`, default 1: the loss itself);
 * `bce` is the likelihood's term (BCE, or the Gaussian's negative log-density). A model with
 * buffers (BatchNorm2d) trains on the batch's statistics and updates `buffers` in place (default:
 * fresh ones, as a new module's).
 */
export function vaeForwardBackward(
  p: VaeParams,
  s: VaeSizes,
  x: ArrayLike<number>,
  eps: ArrayLike<number>,
  rows: number,
  labels?: ArrayLike<number>,
  beta = 1,
  buffers: VaeParams = initialBuffers(s),
): {
  loss: number;
  /** recon + β·KL. */
  objective: number;
  bce: number;
  kl: number;
  mu: Float64Array;
  logvar: Float64Array;
  logits: Float64Array;
  z: Float64Array;
  grads: VaeParams;
} {
  const f = forward(p, s, x, eps, rows, labels, beta, { training: true, buffers });
  const grads: VaeParams = {};
  if (f.loss.dlogSigma && p['log_sigma']) grads['log_sigma'] = f.loss.dlogSigma;
  const C = classesOf(s);
  // Walks a chain back from dY of its last layer, each layer's twin in turn. Returns dX of the first.
  // Of the gradient of [h ‖ onehot(y)], only h's columns go on to the layer before: the one-hot is an input.
  const back = (layers: UnitLayer[], inputs: ArrayLike<number>[], dY: ArrayLike<number>): Float64Array => {
    let d: Float64Array = Float64Array.from(dY);
    const first = C > 0 ? layers.findIndex((l) => l.kind === 'Linear') : -1;
    const joined = layers.slice(0, first).some((l) => l.unit.role === 'product') ? first : -1;
    for (let i = layers.length - 1; i >= 0; i--) {
      const layer = layers[i]!;
      const g = REFERENCE_LAYERS[layer.kind].backward(layer.args, d, inputs[i]!, rows, pieces(p, layer), layer.in);
      for (const [suffix, all] of Object.entries(g.grads)) {
        const part = all.length / layer.names.length;
        layer.names.forEach((n, j) => (grads[`${n}.${suffix}`] = all.slice(j * part, (j + 1) * part)));
      }
      d = i === joined ? g.dX.filter((_, k) => k % layer.in[0]! < layer.in[0]! - C) : g.dX;
    }
    return d;
  };
  const dzy = back(f.decoder, f.dec.inputs, f.loss.dlogits);
  // Of the gradient of [z ‖ onehot(y)], only dz's L columns continue: the one-hot is an input.
  const dz = C === 0 ? dzy : dzy.filter((_, i) => i % (s.L + C) < s.L);
  const dmulv = reparamBackward(f.mulv, eps, dz, f.loss.dmulv, rows, s.L);
  back(f.encoder, f.enc.inputs, dmulv);
  // named_parameters() order.
  const ordered: VaeParams = {};
  for (const name of paramNames(s)) ordered[name] = grads[name]!;
  return {
    loss: f.loss.loss,
    objective: f.loss.objective,
    bce: f.loss.bce,
    kl: f.loss.kl,
    ...splitMulv(f.mulv, rows, s.L),
    logits: f.logits,
    z: f.dec.inputs[f.decoder.findIndex((l) => l.unit.role === 'product')] as Float64Array,
    grads: ordered,
  };
}

/**
 * The summed loss alone, for finite differences and evaluation; with `beta`, the objective
 * recon + β·KL. `state`: evaluation with running statistics, or training on given buffers
 * (default: training on fresh buffers, so calls do not affect each other).
 */
export function vaeLoss(
  p: VaeParams,
  s: VaeSizes,
  x: ArrayLike<number>,
  eps: ArrayLike<number>,
  rows: number,
  labels?: ArrayLike<number>,
  beta?: number,
  state?: PassState,
): number {
  const loss = forward(p, s, x, eps, rows, labels, beta ?? 1, state).loss;
  return beta === undefined ? loss.loss : loss.objective;
}
