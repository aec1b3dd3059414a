/**
 * The VAE's parameters: PyTorch's names and shapes, laid out in one flat arena that holds
 * weights (and, in sister buffers of the same layout, gradients and both Adam moments).
 *
 * Kernels bind the arena in eight pieces — W1 b1 W2 b2 W3 b3 W4 b4 — where W2 is fc21.weight
 * directly followed by fc22.weight (one (2L, H) matrix, so mu and logvar are one product) and
 * b2 is fc21.bias followed by fc22.bias. Each piece starts on a 256-byte boundary, WebGPU's
 * storage-binding offset alignment; the gaps stay zero and Adam leaves zeros at zero.
 */
export interface VaeSizes {
  /** Pixels per image (784 for MNIST). */
  D: number;
  /** Hidden units (400). */
  H: number;
  /** Latent dimensions (20). */
  L: number;
}

export const REFERENCE_SIZES: VaeSizes = { D: 784, H: 400, L: 20 };

/** PyTorch's parameter names, in `model.parameters()` order. */
export const PARAM_NAMES = [
  'fc1.weight', 'fc1.bias', 'fc21.weight', 'fc21.bias', 'fc22.weight', 'fc22.bias',
  'fc3.weight', 'fc3.bias', 'fc4.weight', 'fc4.bias',
] as const;
export type ParamName = (typeof PARAM_NAMES)[number];

export type PieceName = 'W1' | 'b1' | 'W2' | 'b2' | 'W3' | 'b3' | 'W4' | 'b4';

export interface Span {
  /** In floats from the start of the arena. */
  offset: number;
  length: number;
}

export interface ParamView extends Span {
  name: ParamName;
  shape: number[];
  /** Inputs of the layer: PyTorch's default init draws from U(±1/√fanIn). */
  fanIn: number;
}

export interface ArenaLayout {
  sizes: VaeSizes;
  /** Floats in the arena (a multiple of 64). */
  length: number;
  pieces: Record<PieceName, Span>;
  params: ParamView[];
}

/** 256 bytes: minStorageBufferOffsetAlignment's default and largest allowed value. */
export const ARENA_ALIGN_FLOATS = 64;

export function arenaLayout(sizes: VaeSizes): ArenaLayout {
  const { D, H, L } = sizes;
  for (const [k, v] of Object.entries(sizes)) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`size ${k} must be a positive integer, got ${v}`);
  }
  const pieceLengths: [PieceName, number][] = [
    ['W1', H * D], ['b1', H], ['W2', 2 * L * H], ['b2', 2 * L], ['W3', H * L], ['b3', H], ['W4', D * H], ['b4', D],
  ];
  const pieces = {} as Record<PieceName, Span>;
  let at = 0;
  for (const [name, length] of pieceLengths) {
    pieces[name] = { offset: at, length };
    at += Math.ceil(length / ARENA_ALIGN_FLOATS) * ARENA_ALIGN_FLOATS;
  }
  const view = (name: ParamName, piece: PieceName, skip: number, shape: number[], fanIn: number): ParamView => ({
    name, shape, fanIn, offset: pieces[piece].offset + skip, length: shape.reduce((a, b) => a * b, 1),
  });
  const params = [
    view('fc1.weight', 'W1', 0, [H, D], D),
    view('fc1.bias', 'b1', 0, [H], D),
    view('fc21.weight', 'W2', 0, [L, H], H),
    view('fc21.bias', 'b2', 0, [L], H),
    view('fc22.weight', 'W2', L * H, [L, H], H),
    view('fc22.bias', 'b2', L, [L], H),
    view('fc3.weight', 'W3', 0, [H, L], L),
    view('fc3.bias', 'b3', 0, [H], L),
    view('fc4.weight', 'W4', 0, [D, H], H),
    view('fc4.bias', 'b4', 0, [D], H),
  ];
  return { sizes, length: at, pieces, params };
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
    const bound = 1 / Math.sqrt(p.fanIn);
    for (let i = 0; i < p.length; i++) arena[p.offset + i] = (2 * uniform01() - 1) * bound;
  }
  return arena;
}
