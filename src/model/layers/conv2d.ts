/**
 * nn.Conv2d(in_channels, out_channels, kernel_size, stride=1, padding=0) on NCHW images, weight
 * (out, in, k, k) as PyTorch stores it; and the emitters it shares with nn.ConvTranspose2d
 * (./conv-transpose2d.ts), both implicit matrix products (src/gpu/conv-ops.ts). Square kernels,
 * strides and paddings: one number each, as the spec names them.
 */
import { convOp, type ConvEpilogue, type ConvLayer } from '../../gpu/conv-ops';
import type { Span } from '../graph';
import { INPUT_SIZE_MAX } from '../settings';
import { shapeText, whole, type ActivationEpilogue, type ProductUnit, type Shape } from './unit';

/** [in, out, kernel, stride, padding] (Conv2d), then output_padding (ConvTranspose2d). */
export type ConvArgs = readonly number[];

const at = (buffer: GPUBuffer, span: Span): GPUBufferBinding => ({
  buffer,
  offset: span.offset * 4,
  size: span.length * 4,
});

/** PyTorch's names of the arguments, in order. */
const NAMES = ['in_channels', 'out_channels', 'kernel_size', 'stride', 'padding', 'output_padding'];
/** PyTorch's defaults of the optional ones. */
const DEFAULTS = [undefined, undefined, undefined, 1, 0, 0];

export function convLayer(transpose: boolean, [inC, outC, kernel, stride, padding, outputPadding = 0]: ConvArgs) {
  return { transpose, inC, outC, kernel, stride, padding, outputPadding } as ConvLayer;
}

/** The conv epilogue of an activation's: ReLU, or LeakyReLU with its slope. */
const convActivation = (a: ActivationEpilogue) => (a.slope === undefined ? 'relu' : 'leakyRelu');

/** The unit of Conv2d (`transpose` false) or ConvTranspose2d. */
export function convUnit(transpose: boolean): ProductUnit<ConvArgs> {
  const kind = transpose ? 'ConvTranspose2d' : 'Conv2d';
  const arity = transpose ? 6 : 5;
  const layerOf = convLayer.bind(null, transpose);
  return {
    kind,
    role: 'product',
    arity: [3, arity],
    args(raw) {
      const args = Array.from({ length: arity }, (_, i) => (i < raw.length ? raw[i] : DEFAULTS[i]));
      const min = [1, 1, 1, 1, 0, 0];
      const bad = args.findIndex((v, i) => !whole(v, min[i]!, INPUT_SIZE_MAX));
      if (bad >= 0)
        return `${NAMES[bad]} must be a whole number from ${min[bad]} to ${INPUT_SIZE_MAX} (one for both height and width), got ${JSON.stringify(args[bad])}`;
      if (transpose && args[5]! >= args[3]!)
        return `output_padding (${args[5]}) must be smaller than the stride (${args[3]})`;
      return args as number[];
    },
    outShape(args, input) {
      const { inC, outC, kernel: k, stride: s, padding: p, outputPadding: op } = layerOf(args);
      if (input.length !== 3)
        return `reads (channels, height, width), got shape ${shapeText(input)} (put ["Unflatten", 1, [C, H, W]] before it)`;
      if (input[0] !== inC) return `in_channels is ${inC}, but its input ${shapeText(input)} has ${input[0]} channels`;
      const size = (n: number) => (transpose ? (n - 1) * s - 2 * p + k + op : Math.floor((n + 2 * p - k) / s) + 1);
      const [H, W] = [size(input[1]!), size(input[2]!)];
      if (H < 1 || W < 1)
        return `with kernel ${k}, stride ${s}, padding ${p} leaves no output of its input ${shapeText(input)}`;
      return [outC, H, W];
    },
    params: (args) => {
      const { inC, outC, kernel: k } = layerOf(args);
      return [
        { suffix: 'weight', shape: transpose ? [inC, outC, k, k] : [outC, inC, k, k] },
        { suffix: 'bias', shape: [outC] },
      ];
    },
    // PyTorch's fan-in is the weight's dim 1 times the kernel's taps: in·k² for Conv2d, and for
    // ConvTranspose2d, whose weight is (in, out, k, k), out·k².
    fanIn: (args) => {
      const { inC, outC, kernel: k } = layerOf(args);
      return (transpose ? outC : inC) * k * k;
    },

    /** Y = act(conv(X, W) + bias), the activation in the product's epilogue. */
    forward: ({ gpu, plan, label, arena, pieces, rows, in: shape }, args, X, Y, activation) =>
      convOp(
        gpu,
        label,
        layerOf(args),
        inputOf(rows, shape),
        'forward',
        { X, W: at(arena.params, pieces.weight!), Y, bias: at(arena.params, pieces.bias!) },
        activation ? { activation: convActivation(activation), slope: activation.slope ?? 0 } : {},
        plan,
      ),

    /** dW with db, then dX masked by the activation that produced X (no dX for a chain's first layer). */
    async backward({ gpu, plan, label, arena, pieces, rows, in: shape }, args, b) {
      const layer = layerOf(args);
      const input = inputOf(rows, shape);
      const out = await convOp(
        gpu,
        `${label} dW`,
        layer,
        input,
        'dW',
        { dY: b.dY, X: b.X, dW: at(arena.grads, pieces.weight!), db: at(arena.grads, pieces.bias!) },
        {},
        plan,
      );
      if (!b.dX) return out;
      if (b.reparam) throw new Error(`${label}: a ${kind} cannot read z (the decoder's first layer is a Linear)`);
      const epilogue: ConvEpilogue = b.mask ? { mask: convActivation(b.mask), slope: b.mask.slope ?? 0 } : {};
      const W = at(arena.params, pieces.weight!);
      const dX = { dY: b.dY, W, dX: b.dX, ...(b.mask ? { mask: b.X } : {}) };
      out.push(...(await convOp(gpu, `${label} dX`, layer, input, 'dX', dX, epilogue, plan)));
      return out;
    },
  };
}

const inputOf = (rows: number, shape: Shape) => ({ batch: rows, H: shape[1]!, W: shape[2]! });

export const conv2d = convUnit(false);
