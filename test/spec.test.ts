/**
 * The model as data (src/model/spec.ts): a bad spec is refused before anything is allocated,
 * naming the layer's index, its kind and the shapes that disagree; the mlp preset keeps the
 * reference model's names and a spec gets nn.Sequential's; the options map onto one path.
 */
import { describe, expect, it } from 'vitest';
import { arenaLayout, PIECE_FLOATS_MAX, REFERENCE_SIZES, SpecError, vaeGraph } from '../src/model/graph';
import { modelSizes, parseSpec, specSizes, type ModelSpec } from '../src/model/spec';
import { vaeForwardBackward, vaeLoss, type VaeParams } from '../src/reference/vae';
import { rng } from './gpu';
import { expectCentralDifferences } from './specs';

/** The issue's LeakyReLU model. */
const LEAKY: ModelSpec = {
  input: [1, 28, 28],
  latent: 20,
  encoder: [['Flatten'], ['Linear', 784, 512], ['LeakyReLU', 0.2], ['Linear', 512, 256], ['LeakyReLU', 0.2]],
  decoder: [
    ['Linear', 20, 256],
    ['LeakyReLU', 0.2],
    ['Linear', 256, 784],
  ],
  likelihood: 'bernoulli',
};

const edit = (f: (s: ModelSpec) => void): ModelSpec => {
  const s = structuredClone(LEAKY) as ModelSpec;
  f(s);
  return s;
};

describe('a spec', () => {
  it("gets nn.Sequential's names and PyTorch's shapes, the heads implied, defaults filled in", () => {
    const spec = parseSpec(LEAKY);
    expect(spec.encoder[0]).toEqual(['Flatten', 1, -1]);
    const params = arenaLayout(specSizes(spec)).params.map((p) => `${p.name} [${p.shape}]`);
    expect(params).toEqual([
      'encoder.1.weight [512,784]',
      'encoder.1.bias [512]',
      'encoder.3.weight [256,512]',
      'encoder.3.bias [256]',
      'fc_mu.weight [20,256]',
      'fc_mu.bias [20]',
      'fc_logvar.weight [20,256]',
      'fc_logvar.bias [20]',
      'decoder.0.weight [256,20]',
      'decoder.0.bias [256]',
      'decoder.2.weight [784,256]',
      'decoder.2.bias [784]',
    ]);
    expect(parseSpec({ ...LEAKY, encoder: [...LEAKY.encoder.slice(0, 2), ['LeakyReLU']] }).encoder[2]).toEqual([
      'LeakyReLU',
      0.01,
    ]);
  });

  it('the mlp preset keeps the reference model’s names, and today’s for --hidden 512,256', () => {
    const names = (hidden: number[]) =>
      arenaLayout(modelSizes('mlp', { input: [1, 28, 28], hidden })).params.map((p) => p.name);
    expect(names([400])).toEqual(['fc1', 'fc21', 'fc22', 'fc3', 'fc4'].flatMap((n) => [`${n}.weight`, `${n}.bias`]));
    expect(names([512, 256])).toEqual(
      ['fc1', 'fc2', 'fc31', 'fc32', 'fc4', 'fc5', 'fc6'].flatMap((n) => [`${n}.weight`, `${n}.bias`]),
    );
    // The default is the mlp preset of the default sizes, with no spec (a checkpoint without `model`).
    const d = modelSizes(undefined, { input: [784] });
    expect(d).toEqual({ D: 784, hidden: [400], L: 20 });
    expect(arenaLayout(d).params).toEqual(arenaLayout(REFERENCE_SIZES).params);
  });

  it('a conditional spec: the first Linear of each part reads the one-hot columns', () => {
    const sizes = modelSizes('leaky', { input: [1, 28, 28], classes: 10 });
    const shape = (name: string) => arenaLayout(sizes).params.find((p) => p.name === name)!.shape;
    expect(shape('encoder.1.weight')).toEqual([512, 794]);
    expect(shape('decoder.0.weight')).toEqual([256, 30]);
    expect(() => parseSpec({ ...LEAKY, classes: 10 })).toThrow(
      /encoder\[1\] \(Linear\) reads 784 features, got shape \[794\] \(\[784\] and 10 one-hot class columns\)/,
    );
  });

  // [what, spec, the message's parts]
  const BAD: [string, unknown, RegExp][] = [
    [
      'an unknown layer',
      edit((s) => (s.encoder[2] = ['Swish'])),
      /encoder\[2\] is "Swish", not a layer kind; known: Linear, ReLU/,
    ],
    [
      'a wrong argument count',
      edit((s) => (s.decoder[0] = ['Linear', 20])),
      /decoder\[0\] \(Linear\) takes 2 arguments, got 1/,
    ],
    [
      'too many arguments',
      edit((s) => (s.encoder[2] = ['LeakyReLU', 0.2, true])),
      /encoder\[2\] \(LeakyReLU\) takes 0 to 1 argument, got 2/,
    ],
    [
      'shapes that do not chain',
      edit((s) => (s.encoder[3] = ['Linear', 500, 256])),
      /encoder\[3\] \(Linear\) reads 500 features, got shape \[512\]/,
    ],
    [
      'a Linear on an image',
      edit((s) => s.encoder.shift()),
      /encoder\[0\] \(Linear\) reads a flat vector of 784, got shape \[1, 28, 28\] \(put \["Flatten"\] before it\)/,
    ],
    [
      "a decoder whose output is not the input's shape",
      edit((s) => (s.decoder[2] = ['Linear', 256, 783])),
      /the decoder's output, shape \[783\] from decoder\[2\] \(Linear\), must be the input shape \[1, 28, 28\] or its 784 features flat/,
    ],
    [
      'an Unflatten to another shape',
      edit((s) => s.decoder.push(['Unflatten', 1, [1, 784, 1]])),
      /decoder's output, shape \[1, 784, 1\] from decoder\[3\] \(Unflatten\)/,
    ],
    [
      'an Unflatten that does not fit',
      edit((s) => s.decoder.push(['Unflatten', 1, [2, 28, 28]])),
      /decoder\[3\] \(Unflatten\) unflattens dim 1 \(784\) of \[784\] into \[2, 28, 28\], of 1568/,
    ],
    [
      'a negative slope',
      edit((s) => (s.encoder[2] = ['LeakyReLU', -0.1])),
      /encoder\[2\] \(LeakyReLU\) negative_slope must be a finite number ≥ 0/,
    ],
    [
      'an activation after a view',
      edit((s) => (s.encoder = [['Flatten'], ['ReLU'], ...s.encoder.slice(1)])),
      /encoder\[1\] \(ReLU\) must follow a layer with weights, a Linear, a convolution or a BatchNorm2d .*; it follows Flatten/,
    ],
    [
      'an activation on the logits',
      edit((s) => s.decoder.push(['ReLU'])),
      /decoder\[3\] \(ReLU\) follows the decoder's last product, decoder\[2\] \(Linear\)/,
    ],
    [
      'a decoder without a Linear',
      edit((s) => (s.decoder = [['Flatten']])),
      /the decoder needs a layer with weights, a Linear or a convolution/,
    ],
    [
      'an encoder output that is not flat',
      edit((s) => s.encoder.push(['Unflatten', 1, [16, 16]])),
      /the encoder's output feeds fc_mu and fc_logvar, Linear\(features, 20\): it must be flat, got shape \[16, 16\]/,
    ],
    [
      'a latent size past the limit',
      edit((s) => (s.latent = 5000)),
      /L \(latent dimensions\) must be a whole number from 1 to 1024, got 5000/,
    ],
    [
      'a Linear past the limit',
      edit((s) => (s.encoder[1] = ['Linear', 784, 70000])),
      /encoder\[1\] \(Linear\) in_features and out_features must be whole numbers from 1 to 65536/,
    ],
    [
      'a piece past a storage binding',
      edit((s) => {
        s.encoder[1] = ['Linear', 784, 60000];
        s.encoder[3] = ['Linear', 60000, 256];
      }),
      new RegExp(
        `encoder\\[1\\] \\(Linear\\) needs \\[60000, 784\\] = 47040000 floats in one piece, more than ${PIECE_FLOATS_MAX}`,
      ),
    ],
    ['an unknown field', { ...LEAKY, laten: 3 }, /unknown field "laten"/],
    ['an input that is no shape', { ...LEAKY, input: [1, 0, 28] }, /input must be the shape of one image/],
    ['sigma with Bernoulli', { ...LEAKY, sigma: 0.1 }, /sigma is the Gaussian likelihood's/],
    [
      'a layer that is not a list',
      edit((s) => ((s.encoder as unknown[])[1] = 'Linear')),
      /encoder\[1\] must be a list \["Kind", …arguments\], got "Linear"/,
    ],
  ];
  it.each(BAD)('refuses %s, naming where', (_, spec, message) => {
    let error: unknown;
    try {
      parseSpec(spec);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(SpecError);
    expect((error as Error).message).toMatch(message);
  });

  it('the options: a spec names its own widths, latent size and classes; the likelihood replaces its own', () => {
    expect(() => modelSizes(LEAKY, { input: [784], hidden: [400] })).toThrow(/hidden widths shape the mlp preset/);
    expect(() => modelSizes(LEAKY, { input: [784], latent: 3 })).toThrow(/its latent size is 20, and 3 was asked for/);
    expect(() => modelSizes(LEAKY, { input: [784], classes: 10 })).toThrow(/it is for 0 classes, and the data has 10/);
    expect(() => modelSizes(LEAKY, { input: [1, 14, 14] })).toThrow(
      /its input \[1, 28, 28\] has 784 features, the images 196/,
    );
    expect(() => modelSizes('resnet', { input: [784] })).toThrow(
      /"resnet" is not a preset; the presets are mlp, leaky, conv/,
    );
    const g = modelSizes(LEAKY, { input: [784], likelihood: { kind: 'gaussian', sigma: 'learned' } });
    expect(g.spec).toMatchObject({ likelihood: 'gaussian', sigma: 'learned' });
    expect(arenaLayout(g).params[0]!.name).toBe('log_sigma');
    expect(modelSizes('leaky', { input: [1, 28, 28] }).spec).toEqual(parseSpec(LEAKY));
  });

  it('the graph is the spec: a ReLU is its own layer, views are layers, and the heads sit before the reparameterization', () => {
    const kinds = vaeGraph(
      specSizes(parseSpec({ ...LEAKY, decoder: [...LEAKY.decoder, ['Unflatten', 1, [1, 28, 28]]] })),
    );
    expect(kinds.map((l) => ('where' in l ? `${l.where} ${l.kind}` : l.kind))).toEqual([
      'encoder[0] Flatten',
      'encoder[1] Linear',
      'encoder[2] LeakyReLU',
      'encoder[3] Linear',
      'encoder[4] LeakyReLU',
      'heads Linear',
      'reparameterize',
      'decoder[0] Linear',
      'decoder[1] LeakyReLU',
      'decoder[2] Linear',
      'decoder[3] Unflatten',
      'likelihood',
    ]);
  });
});

describe('the float64 reference of a spec model', () => {
  it('its gradient matches central differences of its loss (LeakyReLU, ReLU, a slope above 1, views, classes)', () => {
    const spec = parseSpec({
      input: [1, 2, 3],
      latent: 2,
      encoder: [['Flatten'], ['Linear', 9, 5], ['LeakyReLU', 0.3], ['Linear', 5, 4], ['ReLU']],
      decoder: [
        ['Linear', 5, 4],
        ['LeakyReLU', 2.5],
        ['Linear', 4, 6],
        ['Unflatten', 1, [1, 2, 3]],
      ],
      likelihood: 'bernoulli',
      classes: 3,
    });
    const sizes = specSizes(spec);
    const rows = 4;
    const r = rng(11);
    const named: VaeParams = {};
    for (const p of arenaLayout(sizes).params)
      named[p.name] = Float64Array.from({ length: p.length }, () => r.next() - 0.5);
    const x = Float64Array.from({ length: rows * 6 }, () => r.next());
    const eps = Float64Array.from({ length: rows * 2 }, () => 2 * r.next() - 1);
    const labels = [2, 0, 1, 1];
    const ref = vaeForwardBackward(named, sizes, x, eps, rows, labels);
    expect(Object.keys(ref.grads)).toEqual(arenaLayout(sizes).params.map((p) => p.name));
    expectCentralDifferences(ref.grads, named, () => vaeLoss(named, sizes, x, eps, rows, labels), 1e-6, 1e-6);
  });
});
