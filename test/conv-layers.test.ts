/**
 * Conv2d and ConvTranspose2d as layers of a model (src/model/layers/conv2d.ts): PyTorch's
 * arguments, defaults, weight layouts and default init; the spec rules around them (activations
 * fold into any product, views between conv and Linear, the conv preset and its names, specs
 * that do not chain refused naming the layer); the float64 reference model through them against
 * central differences; and whole conv models on the GPU, a training step's loss, logits and
 * every gradient against that reference walked from the same graph. The kernels alone, on
 * awkward shapes, are test/conv.test.ts's; each kind's twin against PyTorch, layer-parity's.
 */
import { describe, expect, it } from 'vitest';
import { arenaLayout, initArena } from '../src/model/graph';
import { LAYERS } from '../src/model/layers';
import { modelSizes, parseSpec, specSizes, type ModelSpec } from '../src/model/spec';
import { vaeForwardBackward, vaeLoss, type VaeParams } from '../src/reference/vae';
import { python } from './cli';
import { implementations, rng, useHarness } from './gpu';
import { expectCentralDifferences, expectStepAsReference, randomParams, refuseSpec } from './specs';

/** The conv preset for 1×8×8 images, latent 3. */
const CONV8 = modelSizes('conv', { input: [1, 8, 8], latent: 3 });

/**
 * Everything else a conv layer takes: colour, odd sizes, kernels 1/3/5, strides 1 and 2,
 * padding 0–2, output_padding, LeakyReLU between convs, a layer without an activation between
 * two products, and a learned Gaussian σ.
 */
const AWKWARD: ModelSpec = {
  input: [3, 7, 5],
  latent: 2,
  encoder: [
    ['Conv2d', 3, 5, 3, 2, 1],
    ['LeakyReLU', 0.2],
    ['Conv2d', 5, 3, 1],
    ['Conv2d', 3, 4, 5, 1, 2],
    ['ReLU'],
    ['Flatten'],
    ['Linear', 48, 6],
    ['ReLU'],
  ],
  decoder: [
    ['Linear', 2, 5],
    ['LeakyReLU', 2.5],
    ['Linear', 5, 24],
    ['Unflatten', 1, [2, 4, 3]],
    ['ConvTranspose2d', 2, 4, 3, 2, 1],
    ['ReLU'],
    ['ConvTranspose2d', 4, 3, 3, 1, 1],
  ],
  likelihood: 'gaussian',
  sigma: 'learned',
};

describe('the conv layer units', () => {
  it("take PyTorch's arguments in order, its defaults filled in, and refuse the rest by name", () => {
    expect(LAYERS.Conv2d.args([3, 32, 4])).toEqual([3, 32, 4, 1, 0]);
    expect(LAYERS.Conv2d.args([3, 32, 4, 2])).toEqual([3, 32, 4, 2, 0]);
    expect(LAYERS.ConvTranspose2d.args([64, 32, 4, 2, 1])).toEqual([64, 32, 4, 2, 1, 0]);
    expect(LAYERS.Conv2d.args([3, 32, 0])).toMatch(/kernel_size must be a whole number from 1/);
    expect(LAYERS.Conv2d.args([3, 32, 4, 2, -1])).toMatch(/padding must be a whole number from 0/);
    expect(LAYERS.Conv2d.args([3, 32, [4, 4]])).toMatch(/one for both height and width/);
    expect(LAYERS.ConvTranspose2d.args([3, 3, 3, 2, 1, 2])).toMatch(
      /output_padding \(2\) must be smaller than the stride \(2\)/,
    );
  });

  it("make PyTorch's output shapes and weight layouts, with PyTorch's fan-in", () => {
    const conv = LAYERS.Conv2d;
    const up = LAYERS.ConvTranspose2d;
    expect(conv.outShape([3, 8, 4, 2, 1], [3, 9, 8])).toEqual([8, 4, 4]);
    expect(conv.outShape([3, 8, 5, 2, 2], [3, 11, 9])).toEqual([8, 6, 5]);
    expect(up.outShape([4, 2, 4, 2, 1, 0], [4, 7, 7])).toEqual([2, 14, 14]);
    expect(up.outShape([4, 2, 3, 2, 1, 1], [4, 4, 3])).toEqual([2, 8, 6]);
    expect(conv.params([3, 8, 4, 2, 1])).toEqual([
      { suffix: 'weight', shape: [8, 3, 4, 4] },
      { suffix: 'bias', shape: [8] },
    ]);
    expect(up.params([4, 2, 3, 2, 1, 1])).toEqual([
      { suffix: 'weight', shape: [4, 2, 3, 3] },
      { suffix: 'bias', shape: [2] },
    ]);
    // kaiming_uniform(a = √5) and the bias both draw from ±1/√(weight.size(1)·k²).
    expect(conv.fanIn([3, 8, 4, 2, 1])).toBe(3 * 16);
    expect(up.fanIn([4, 2, 3, 2, 1, 1])).toBe(2 * 9);
  });

  it('name the shapes that do not chain: channels, a flat input, no output, an image that ends the encoder', () => {
    const spec = CONV8.spec!;
    const edit = (f: (s: ModelSpec) => void) => {
      const s = structuredClone(spec) as ModelSpec;
      f(s);
      return s;
    };
    expect(refuseSpec(edit((s) => (s.encoder[2] = ['Conv2d', 16, 64, 4, 2, 1])))).toMatch(
      /encoder\[2\] \(Conv2d\) in_channels is 16, but its input \[32, 4, 4\] has 32 channels/,
    );
    expect(refuseSpec(edit((s) => s.decoder.splice(4, 1)))).toMatch(
      /decoder\[4\] \(ConvTranspose2d\) reads \(channels, height, width\), got shape \[256\] \(put \["Unflatten", 1, \[C, H, W\]\] before it\)/,
    );
    expect(refuseSpec(edit((s) => (s.encoder[2] = ['Conv2d', 32, 64, 9])))).toMatch(
      /encoder\[2\] \(Conv2d\) with kernel 9, stride 1, padding 0 leaves no output of its input \[32, 4, 4\]/,
    );
    expect(refuseSpec(edit((s) => (s.decoder[7] = ['ConvTranspose2d', 32, 1, 4, 2, 1, 1])))).toMatch(
      /the decoder's output, shape \[1, 9, 9\] from decoder\[7\] \(ConvTranspose2d\), must be the input shape \[1, 8, 8\]/,
    );
    expect(refuseSpec(edit((s) => (s.encoder = s.encoder.slice(0, 4))))).toMatch(
      /the encoder's output feeds fc_mu and fc_logvar.*got shape \[64, 2, 2\]/,
    );
    expect(refuseSpec(edit((s) => s.encoder.splice(4, 0, ['ReLU'])))).toMatch(
      /encoder\[4\] \(ReLU\) must follow a layer with weights.*; it follows ReLU/,
    );
    expect(refuseSpec(edit((s) => s.decoder.push(['ReLU'])))).toMatch(
      /decoder\[8\] \(ReLU\) follows the decoder's last product, decoder\[7\] \(ConvTranspose2d\)/,
    );
  });

  it("join a conditional conv model's one-hot columns at the first Linear of each part, after Flatten; refuse one whose part has no Linear to read them first", () => {
    const { spec } = modelSizes('conv', { input: [3, 8, 8], latent: 3, classes: 10 });
    expect(spec!.encoder[0]).toEqual(['Conv2d', 3, 32, 4, 2, 1]);
    expect(spec!.encoder[5]).toEqual(['Linear', 64 * 2 * 2 + 10, 256]);
    expect(spec!.decoder[0]).toEqual(['Linear', 3 + 10, 256]);
    const decoderConv: ModelSpec = {
      input: [1, 4, 4],
      latent: 4,
      encoder: [['Flatten'], ['Linear', 18, 4]],
      decoder: [['Unflatten', 1, [1, 2, 2]], ['ConvTranspose2d', 1, 1, 2, 2], ['Flatten'], ['Linear', 18, 16]],
      likelihood: 'bernoulli',
      classes: 2,
    };
    const firstNotLinear = /decoder\[1\] \(ConvTranspose2d\) is a conditional decoder's first layer with weights/;
    expect(refuseSpec(decoderConv)).toMatch(firstNotLinear);
    // With no Linear at all the labels would reach no layer of the decoder.
    const noDecoderLinear = { ...decoderConv, decoder: decoderConv.decoder.slice(0, 2) };
    expect(refuseSpec(noDecoderLinear)).toMatch(firstNotLinear);
    const noLinear: ModelSpec = {
      input: [1, 4, 4],
      latent: 2,
      encoder: [['Conv2d', 1, 2, 3, 1, 1], ['Flatten']],
      decoder: [['Linear', 4, 16]],
      likelihood: 'bernoulli',
      classes: 2,
    };
    expect(refuseSpec(noLinear)).toMatch(/a conditional encoder with encoder\[0\] \(Conv2d\) needs a Linear after it/);
  });
});

describe('the conv preset', () => {
  it("is the issue's module: nn.Sequential's names and PyTorch's shapes", () => {
    const names = arenaLayout(modelSizes('conv', { input: [3, 32, 32] })).params.map((p) => `${p.name} [${p.shape}]`);
    expect(names).toEqual([
      'encoder.0.weight [32,3,4,4]',
      'encoder.0.bias [32]',
      'encoder.2.weight [64,32,4,4]',
      'encoder.2.bias [64]',
      'encoder.5.weight [256,4096]',
      'encoder.5.bias [256]',
      'fc_mu.weight [20,256]',
      'fc_mu.bias [20]',
      'fc_logvar.weight [20,256]',
      'fc_logvar.bias [20]',
      'decoder.0.weight [256,20]',
      'decoder.0.bias [256]',
      'decoder.2.weight [4096,256]',
      'decoder.2.bias [4096]',
      'decoder.5.weight [64,32,4,4]',
      'decoder.5.bias [32]',
      'decoder.7.weight [32,3,4,4]',
      'decoder.7.bias [3]',
    ]);
  });

  it('refuses images whose sides do not divide by 4, and flat inputs, saying why', () => {
    expect(() => modelSizes('conv', { input: [1, 28, 32] })).not.toThrow();
    expect(() => modelSizes('conv', { input: [1, 28, 26] })).toThrow(
      /the conv preset reads images \(C, H, W\) with H and W divisible by 4 \(two stride-2 convs\), got \[1, 28, 26\]/,
    );
    expect(() => modelSizes('conv', { input: [784] })).toThrow(/got \[784\]/);
  });

  it("is scripts/vae_spec.py's spec_of('conv'), defaults filled in, for grayscale, colour and classes' widths", () => {
    const cases: [number[], number, number][] = [
      [[1, 28, 28], 20, 0],
      [[3, 32, 32], 16, 0],
      [[1, 8, 12], 3, 0],
      [[3, 8, 8], 4, 10],
    ];
    const r = python([
      '-c',
      'import json, sys; sys.path.insert(0, "scripts"); import vae_spec; ' +
        `print(json.dumps([vae_spec.spec_of("conv", tuple(s), l, k) for s, l, k in ${JSON.stringify(cases)}]))`,
    ]);
    expect(r.status, r.stderr).toBe(0);
    const specs = JSON.parse(r.stdout) as ModelSpec[];
    cases.forEach(([input, latent, classes], i) =>
      expect(modelSizes('conv', { input, latent, classes }).spec).toEqual(parseSpec(specs[i])),
    );
  });

  it("draws PyTorch's init bounds: ±1/√(in·k²) for Conv2d, ±1/√(out·k²) for ConvTranspose2d", () => {
    const layout = arenaLayout(CONV8);
    const r = rng(3);
    const arena = initArena(layout, () => r.next());
    const bound = (name: string) => {
      const p = layout.params.find((q) => q.name === name)!;
      return Math.max(...arena.subarray(p.offset, p.offset + p.length).map(Math.abs));
    };
    for (const [name, fanIn] of [
      ['encoder.2.weight', 32 * 16],
      ['decoder.5.weight', 32 * 16],
      ['decoder.5.bias', 32 * 16],
      ['decoder.7.weight', 1 * 16],
    ] as const) {
      // Many draws reach near the bound, which tells in·k² (Conv2d's) and out·k² (the transpose's) apart.
      expect(bound(name), name).toBeLessThanOrEqual(1 / Math.sqrt(fanIn));
      expect(bound(name), name).toBeGreaterThan(0.9 / Math.sqrt(fanIn));
    }
    expect(bound('decoder.7.bias')).toBeLessThanOrEqual(1 / 4);
  });
});

/** A small model for the finite differences: every conv kind, stride 2 and output_padding. */
const SMALL_ENCODER: ModelSpec['encoder'] = [
  ['Conv2d', 2, 3, 3, 2, 1],
  ['LeakyReLU', 0.2],
  ['Conv2d', 3, 2, 1],
  ['Flatten'],
  ['Linear', 8, 4],
  ['ReLU'],
];
const SMALL_DECODER: ModelSpec['decoder'] = [
  ['Linear', 2, 12],
  ['ReLU'],
  ['Unflatten', 1, [3, 2, 2]],
  ['ConvTranspose2d', 3, 2, 3, 2, 1, 1],
  ['LeakyReLU', 0.5],
  ['ConvTranspose2d', 2, 2, 3, 1, 1],
];

describe('the float64 reference of a conv model', () => {
  // Conditional: the one-hot joins the encoder's Linear after two convs, and the decoder's first Linear.
  it.each([0, 3])('its gradient matches central differences of its loss (%i classes)', (classes) => {
    const widen = (list: ModelSpec['encoder']) =>
      list.map((l) =>
        l[0] === 'Linear' && list.indexOf(l) === list.findIndex((m) => m[0] === 'Linear')
          ? (['Linear', (l[1] as number) + classes, l[2]] as const)
          : l,
      );
    const sizes = specSizes(
      parseSpec({
        ...AWKWARD,
        input: [2, 4, 4],
        encoder: widen(SMALL_ENCODER),
        decoder: widen(SMALL_DECODER),
        ...(classes ? { classes } : {}),
      }),
    );
    const labels = classes ? [2, 0] : undefined;
    const rows = 2;
    const r = rng(17);
    const named: VaeParams = {};
    for (const p of arenaLayout(sizes).params)
      named[p.name] = Float64Array.from({ length: p.length }, () => r.next() - 0.5);
    const x = Float64Array.from({ length: rows * sizes.D }, () => r.next());
    const eps = Float64Array.from({ length: rows * sizes.L }, () => 2 * r.next() - 1);
    const ref = vaeForwardBackward(named, sizes, x, eps, rows, labels);
    expect(Object.keys(ref.grads)).toEqual(arenaLayout(sizes).params.map((p) => p.name));
    expectCentralDifferences(ref.grads, named, () => vaeLoss(named, sizes, x, eps, rows, labels), 1e-6, 1e-5);
  });
});

describe.each(implementations)('$name', (implementation) => {
  const gpu = useHarness(implementation);

  const MODELS: [string, ModelSpec, number, ('software' | 'hardware')?][] = [
    ['the conv preset on 1×8×8, batch 3 (software plan)', CONV8.spec!, 3, 'software'],
    ['the conv preset on 1×8×8, batch 3 (hardware plan)', CONV8.spec!, 3, 'hardware'],
    ['an awkward conv model on 3×7×5, batch 2', AWKWARD, 2],
    [
      'the conv preset on 3×8×4, 3 classes, batch 5 (the one-hot joined after the convs)',
      modelSizes('conv', { input: [3, 8, 4], latent: 2, classes: 3 }).spec!,
      5,
    ],
  ];
  it.each(MODELS)('%s: loss, logits and every gradient of a training step', async (_, raw, rows, plan) => {
    const sizes = specSizes(parseSpec(raw));
    const C = sizes.classes ?? 0;
    // Every class but the last appears, so its columns of the joined Linears' dW must stay zero.
    const labels = C ? Array.from({ length: rows }, (_, i) => (i * 2) % (C - 1)) : undefined;
    const { layout, arena, named, r } = randomParams(sizes, rows + sizes.D);
    const data = Uint8Array.from({ length: rows * sizes.D }, () => Math.floor(r.next() * 256));
    const grads = await expectStepAsReference(gpu, { sizes, layout, arena, named, data, rows, labels, plan });
    if (C) {
      // The unused class's column of the encoder's joined Linear (encoder.5) gets no gradient.
      const w = layout.params.find((q) => q.name === 'encoder.5.weight')!;
      const [, width] = w.shape as [number, number];
      for (let o = 0; o < w.shape[0]!; o++) expect(grads[w.offset + o * width + width - 1], `row ${o}`).toBe(0);
    }
  });
});
