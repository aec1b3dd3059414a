/**
 * Each layer kind on the GPU against its float64 twin (src/reference/layers.ts), forward and
 * backward. The activations run where the program builder puts them — in the epilogue of the
 * Linear before them (forward) and of the dX product after them (backward, masked on their
 * output) — on each of the three matmul kernels, on awkward shapes and extreme values; the
 * twins differentiate on the input, as PyTorch does, so the mask's rule is checked too. Then
 * whole spec models, views and classes included: a training step's loss, logits and every
 * gradient against the float64 reference model walked from the same graph.
 */
import { describe, expect, it } from 'vitest';
import { LAYERS } from '../src/model/layers';
import { parseSpec, specSizes, type LayerSpec, type ModelSpec } from '../src/model/spec';
import { REFERENCE_LAYERS } from '../src/reference/layers';
import { expectClose, f32, implementations, rng, useHarness } from './gpu';
import type { OpSpec } from './harness/harness';
import { tolerance } from './matmul';
import { expectStepAsReference, randomParams } from './specs';

const FLT_MIN = 2 ** -126;

/** [label, the activation layer, or none] */
const ACTIVATIONS: [string, LayerSpec | undefined][] = [
  ['ReLU', ['ReLU']],
  ['LeakyReLU (default 0.01)', ['LeakyReLU']],
  ['LeakyReLU 0', ['LeakyReLU', 0]],
  ['LeakyReLU 7.5', ['LeakyReLU', 7.5]],
];

/** [rows, in, out, magnitude of X and W]: primes, vec4 shapes, and products near 1e34 (1×1 and the rest: the models below). */
const SHAPES: [number, number, number, number][] = [
  [5, 13, 7, 1],
  [8, 8, 4, 1],
  [45, 65, 33, 1e17],
];

const KERNELS = ['matmul', 'matmulTiled', 'matmulSplitK'] as const;

/** A layer spec's arguments with PyTorch's defaults filled in, as parseSpec fills them. */
function argsOf([kind, ...raw]: LayerSpec): readonly unknown[] {
  const args = LAYERS[kind as keyof typeof LAYERS].args(raw as never);
  if (typeof args === 'string') throw new Error(args);
  return args;
}

describe.each(implementations)('$name', (implementation) => {
  const gpu = useHarness(implementation);

  describe.each(KERNELS)('%s', (kernel) => {
    describe.each(ACTIVATIONS)('Linear, then %s', (_, activation) => {
      const unit = activation && LAYERS[activation[0] as 'ReLU' | 'LeakyReLU'];
      const args = activation ? argsOf(activation) : [];
      const epilogue = unit ? unit.epilogue(args as never) : undefined;
      const twin = activation ? REFERENCE_LAYERS[activation[0] as 'ReLU' | 'LeakyReLU'] : undefined;

      it.each(SHAPES)('%i rows, %i → %i, |X|, |W| ≤ %d: forward and the next dX through it', async (rows, i, o, s) => {
        const r = rng(rows * 7919 + i * 104729 + o);
        const X = Float32Array.from(r.uniform(rows * i), (v) => v * s);
        const W = Float32Array.from(r.uniform(o * i), (v) => v * s);
        const bias = Float32Array.from(r.uniform(o), (v) => v * s * s);
        // The layer after reads P = act(pre) and masks the gradient on it; pre holds the edges:
        // ±0, ±FLT_MIN, and values near float32's largest.
        const edges = [0, -0, FLT_MIN, -FLT_MIN, 1e38, -1e38, 3, -3];
        const pre = Float32Array.from(r.uniform(rows * i), (v, k) => (k < edges.length ? edges[k]! : v));
        const P = Float32Array.from(twin ? twin.forward(args, pre, rows, {}, [i]) : pre);
        const dY = r.uniform(rows * o);
        const forward = {
          transA: false,
          transB: true,
          ...(epilogue ? { relu: true, ...epilogue } : {}),
        };
        const ops: OpSpec[] = [
          { op: kernel, dims: { M: rows, N: o, K: i }, options: forward, A: 'X', B: 'W', C: 'Y', bias: 'bias' },
          {
            op: kernel,
            dims: { M: rows, N: i, K: o },
            options: { transA: false, transB: false, ...epilogue },
            A: 'dY',
            B: 'W',
            C: 'dX',
            ...(epilogue ? { mask: 'P' } : {}),
          },
        ];
        const out = await gpu.run({
          buffers: { X, W, bias, P, dY, Y: rows * o * 4, dX: rows * i * 4 },
          ops,
          read: ['Y', 'dX'],
        });
        const linear = REFERENCE_LAYERS.Linear;
        const p = { weight: Float64Array.from(W), bias: Float64Array.from(bias) };
        const yPre = linear.forward([i, o], X, rows, p, [i]);
        const y = twin ? twin.forward(args, yPre, rows, {}, [o]) : yPre;
        const { rtol, atol } = tolerance(i);
        expectClose('Y', f32(out.Y!, rows * o), y, rtol, atol * s * s * 10 * Math.max(1, (args[0] as number) ?? 1));
        const dPre = linear.backward([i, o], dY, X, rows, p, [i]).dX;
        const dX = twin ? twin.backward(args, dPre, pre, rows, {}, [i]).dX : dPre;
        const b = tolerance(o);
        expectClose('dX', f32(out.dX!, rows * i), dX, b.rtol, b.atol * s);
        if (activation && (args[0] ?? 0) === 0 && rows * i >= edges.length) {
          // A zero slope blocks the gradient where the output is not positive: exact zeros, as PyTorch's.
          const got = f32(out.dX!, rows * i);
          for (const k of [0, 1, 3]) expect(Math.abs(got[k]!), `dX at pre = ${edges[k]}`).toBe(0);
        }
      });
    });
  });

  describe('spec models vs the float64 reference model', () => {
    const MODELS: [string, ModelSpec, number, number[]?][] = [
      [
        'LeakyReLU, ReLU, a slope of 7.5, views',
        {
          input: [1, 5, 3],
          latent: 3,
          encoder: [['Flatten'], ['Linear', 15, 7], ['LeakyReLU', 0.2], ['Linear', 7, 6], ['ReLU']],
          decoder: [
            ['Linear', 3, 6],
            ['LeakyReLU', 7.5],
            ['Linear', 6, 15],
            ['Unflatten', 1, [1, 5, 3]],
          ],
          likelihood: 'bernoulli',
        },
        9,
      ],
      [
        'no activation at all',
        {
          input: [15],
          latent: 3,
          encoder: [['Linear', 15, 4]],
          decoder: [['Linear', 3, 15]],
          likelihood: 'bernoulli',
        },
        5,
      ],
      [
        'conditional on 3 classes, learned σ',
        {
          input: [1, 3, 5],
          latent: 2,
          encoder: [['Flatten'], ['Linear', 18, 7], ['LeakyReLU', 0.5]],
          decoder: [
            ['Linear', 5, 7],
            ['LeakyReLU', 0.5],
            ['Linear', 7, 15],
          ],
          likelihood: 'gaussian',
          sigma: 'learned',
          classes: 3,
        },
        6,
        [2, 0, 1, 1, 0, 2],
      ],
      [
        // No Linear in the encoder: the heads read [x ‖ onehot(y)] (as scripts/vae_spec.py's do).
        'conditional on 2 classes, the heads reading the one-hot',
        {
          input: [1, 2, 3],
          latent: 2,
          encoder: [['Flatten']],
          decoder: [['Linear', 4, 6]],
          likelihood: 'bernoulli',
          classes: 2,
        },
        5,
        [1, 0, 1, 1, 0],
      ],
      [
        "the issue's LeakyReLU MLP on MNIST's shapes",
        {
          input: [1, 28, 28],
          latent: 20,
          encoder: [['Flatten'], ['Linear', 784, 512], ['LeakyReLU', 0.2], ['Linear', 512, 256], ['LeakyReLU', 0.2]],
          decoder: [
            ['Linear', 20, 256],
            ['LeakyReLU', 0.2],
            ['Linear', 256, 784],
          ],
          likelihood: 'bernoulli',
        },
        16,
      ],
    ];
    it.each(MODELS)('%s: loss, logits and every gradient of a training step', async (_, raw, rows, labels) => {
      const sizes = specSizes(parseSpec(raw));
      // The same draws as randomParams gives (these models have no BatchNorm2d).
      const { layout, arena, named, r } = randomParams(sizes, rows + sizes.D);
      const data = Uint8Array.from({ length: rows * sizes.D }, () => Math.floor(r.next() * 256));
      await expectStepAsReference(gpu, { sizes, layout, arena, named, data, rows, labels });
    });
  });
});
