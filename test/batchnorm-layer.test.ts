/**
 * BatchNorm2d as a layer of a model (src/model/layers/batchnorm2d.ts): PyTorch's argument and
 * shapes, its parameters (γ = 1, β = 0, trained by Adam) and buffers (running_mean,
 * running_var, num_batches_tracked: not parameters) under PyTorch's names; the spec rules around
 * it; the conv-bn preset against scripts/vae_spec.py; the float64 reference model through it
 * against central differences; and whole models with BatchNorm2d on the GPU: a training step's
 * loss, logits, every gradient and the running statistics, then an evaluation step on the running
 * statistics, against the float64 model walked from the same graph. The kernels alone, on
 * awkward shapes and extreme values, are test/batchnorm.test.ts's; the twin against PyTorch,
 * layer-parity's.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readSafetensors, writeSafetensors, type Tensor } from '../src/io/safetensors';
import { checkpointSizes, decodeCheckpoint, encodeCheckpoint } from '../src/model/checkpoint';
import { arenaLayout, initArena, initStats } from '../src/model/graph';
import { LAYERS } from '../src/model/layers';
import { modelSizes, parseSpec, specSizes, type ModelSpec } from '../src/model/spec';
import { initialBuffers, vaeForwardBackward, vaeLoss, type VaeParams } from '../src/reference/vae';
import { python, tempDir } from './cli';
import { expectClose, f32, implementations, rng, useHarness } from './gpu';
import { expectCentralDifferences, randomParams, refuseSpec } from './specs';

/** The conv-bn preset for 1×8×8 images, latent 3. */
const CONV_BN8 = modelSizes('conv-bn', { input: [1, 8, 8], latent: 3 });

/**
 * BatchNorm2d on odd and single channels, after a Linear through Unflatten, after another
 * BatchNorm2d, with ReLU, LeakyReLU and no activation after it, and a learned Gaussian σ.
 */
const AWKWARD: ModelSpec = {
  input: [3, 5, 3],
  latent: 2,
  encoder: [
    ['Conv2d', 3, 5, 3, 2, 1],
    ['BatchNorm2d', 5],
    ['LeakyReLU', 0.2],
    ['Conv2d', 5, 1, 1],
    ['BatchNorm2d', 1],
    ['BatchNorm2d', 1],
    ['ReLU'],
    ['Flatten'],
    ['Linear', 6, 4],
    ['ReLU'],
  ],
  decoder: [
    ['Linear', 2, 18],
    ['Unflatten', 1, [3, 3, 2]],
    ['BatchNorm2d', 3],
    ['ReLU'],
    ['ConvTranspose2d', 3, 3, 3, 2, 1],
    ['BatchNorm2d', 3],
    ['ConvTranspose2d', 3, 3, 3, 1, 1],
  ],
  likelihood: 'gaussian',
  sigma: 'learned',
};

describe('the BatchNorm2d unit', () => {
  it("takes PyTorch's num_features, normalises (C, H, W) in place, and holds PyTorch's parameters and buffers", () => {
    const bn = LAYERS.BatchNorm2d;
    expect(bn.args([3])).toEqual([3]);
    expect(bn.args([0])).toMatch(/num_features must be a whole number from 1/);
    expect(bn.args([2.5])).toMatch(/num_features must be a whole number/);
    expect(bn.outShape([3], [3, 5, 7])).toEqual([3, 5, 7]);
    expect(bn.outShape([3], [4, 5, 7])).toMatch(/num_features is 3, but its input \[4, 5, 7\] has 4 channels/);
    expect(bn.outShape([3], [12])).toMatch(/normalises \(channels, height, width\), got shape \[12\]/);
    expect(bn.params([3])).toEqual([
      { suffix: 'weight', shape: [3], fill: 1 },
      { suffix: 'bias', shape: [3], fill: 0 },
    ]);
    expect(bn.buffers([3]).map((b) => `${b.suffix} [${b.shape}] ${b.dtype} ${b.fill}`)).toEqual([
      'running_mean [3] F32 0',
      'running_var [3] F32 1',
      'num_batches_tracked [] I64 0',
    ]);
  });

  it('must read a layer with weights with no activation between, and may not end the decoder', () => {
    const base = structuredClone(CONV_BN8.spec!) as ModelSpec;
    const edit = (f: (s: ModelSpec) => void) => {
      const s = structuredClone(base);
      f(s);
      return s;
    };
    // Conv2d, LeakyReLU, BatchNorm2d: its dX would need the LeakyReLU's mask.
    expect(refuseSpec(edit((s) => s.encoder.splice(1, 2, ['LeakyReLU', 0.2], ['BatchNorm2d', 32])))).toMatch(
      /encoder\[2\] \(BatchNorm2d\) must follow a layer with weights, a Linear or a convolution, with no activation between.*it follows LeakyReLU/,
    );
    expect(refuseSpec(edit((s) => s.encoder.unshift(['BatchNorm2d', 1])))).toMatch(
      /encoder\[0\] \(BatchNorm2d\) must follow a layer with weights.*it follows the encoder's input/,
    );
    expect(refuseSpec(edit((s) => s.decoder.push(['BatchNorm2d', 1])))).toMatch(
      /decoder\[9\] \(BatchNorm2d\) follows the decoder's last product, decoder\[8\] \(ConvTranspose2d\)/,
    );
    expect(refuseSpec(edit((s) => (s.encoder[1] = ['BatchNorm2d', 31])))).toMatch(
      /encoder\[1\] \(BatchNorm2d\) num_features is 31, but its input \[32, 4, 4\] has 32 channels/,
    );
    expect(refuseSpec(edit((s) => s.encoder.splice(8, 0, ['BatchNorm2d', 256])))).toMatch(
      /encoder\[8\] \(BatchNorm2d\) normalises \(channels, height, width\), got shape \[256\]/,
    );
    // Activations may follow a norm; norms may follow norms, and Linear through Unflatten.
    expect(() => parseSpec(AWKWARD)).not.toThrow();
  });

  it("lays out γ (1) and β (0) as parameters, the running statistics as buffers at PyTorch's starting values", () => {
    const layout = arenaLayout(specSizes(parseSpec(AWKWARD)));
    expect(layout.params.map((p) => p.name)).toContain('encoder.1.weight');
    expect(layout.params.map((p) => p.name)).not.toContain('encoder.1.running_mean');
    expect(layout.buffers.map((b) => `${b.name} [${b.shape}]`)).toEqual([
      'encoder.1.running_mean [5]',
      'encoder.1.running_var [5]',
      'encoder.1.num_batches_tracked []',
      'encoder.4.running_mean [1]',
      'encoder.4.running_var [1]',
      'encoder.4.num_batches_tracked []',
      'encoder.5.running_mean [1]',
      'encoder.5.running_var [1]',
      'encoder.5.num_batches_tracked []',
      'decoder.2.running_mean [3]',
      'decoder.2.running_var [3]',
      'decoder.2.num_batches_tracked []',
      'decoder.5.running_mean [3]',
      'decoder.5.running_var [3]',
      'decoder.5.num_batches_tracked []',
    ]);
    // Each block a kernel binds starts on a 256-byte boundary; running_mean and running_var are one (2, C) block.
    for (const b of layout.buffers) {
      if (!b.name.endsWith('running_var')) expect(b.offset % 64, b.name).toBe(0);
      else
        expect(b.offset, b.name).toBe(
          layout.buffers.find((m) => m.name === b.name.replace('var', 'mean'))!.offset + b.length,
        );
    }
    const r = rng(1);
    const arena = initArena(layout, () => r.next());
    const piece = (name: string) => {
      const p = layout.params.find((q) => q.name === name)!;
      return [...arena.subarray(p.offset, p.offset + p.length)];
    };
    expect(piece('encoder.1.weight')).toEqual([1, 1, 1, 1, 1]);
    expect(piece('decoder.5.bias')).toEqual([0, 0, 0]);
    const stats = initStats(layout);
    const floats = new Float32Array(stats.buffer);
    const at = (name: string) => layout.buffers.find((b) => b.name === name)!;
    expect([...floats.subarray(at('encoder.1.running_var').offset, at('encoder.1.running_var').offset + 5)]).toEqual([
      1, 1, 1, 1, 1,
    ]);
    expect([...floats.subarray(at('encoder.1.running_mean').offset, at('encoder.1.running_mean').offset + 5)]).toEqual([
      0, 0, 0, 0, 0,
    ]);
    expect([
      ...stats.subarray(at('decoder.5.num_batches_tracked').offset, at('decoder.5.num_batches_tracked').offset + 2),
    ]).toEqual([0, 0]);
  });
});

describe('the conv-bn preset', () => {
  it("is scripts/vae_spec.py's spec_of('conv-bn'), defaults filled in, for grayscale, colour and odd sizes", () => {
    const cases: [number[], number][] = [
      [[1, 28, 28], 20],
      [[3, 32, 32], 16],
      [[1, 8, 12], 3],
    ];
    const r = python([
      '-c',
      'import json, sys; sys.path.insert(0, "scripts"); import vae_spec; ' +
        `print(json.dumps([vae_spec.spec_of("conv-bn", tuple(s), l) for s, l in ${JSON.stringify(cases)}]))`,
    ]);
    expect(r.status, r.stderr).toBe(0);
    const specs = JSON.parse(r.stdout) as ModelSpec[];
    cases.forEach(([input, latent], i) =>
      expect(modelSizes('conv-bn', { input, latent }).spec).toEqual(parseSpec(specs[i])),
    );
  });

  it("has the state_dict names of vae_spec.py's module: parameters, then its buffers", () => {
    const layout = arenaLayout(modelSizes('conv-bn', { input: [3, 32, 32] }));
    const r = python([
      '-c',
      'import json, sys; sys.path.insert(0, "scripts"); import vae_spec; ' +
        'm = vae_spec.preset("conv-bn", (3, 32, 32), 20); ' +
        'print(json.dumps([[n, list(t.shape)] for n, t in m.named_parameters()] + [[n, list(t.shape)] for n, t in m.named_buffers()]))',
    ]);
    expect(r.status, r.stderr).toBe(0);
    const torch = JSON.parse(r.stdout) as [string, number[]][];
    expect([...layout.params, ...layout.buffers].map((p) => [p.name, p.shape])).toEqual(torch);
  });

  it('refuses images whose sides do not divide by 4, naming the preset', () => {
    expect(() => modelSizes('conv-bn', { input: [1, 28, 26] })).toThrow(
      /the conv-bn preset reads images \(C, H, W\) with H and W divisible by 4/,
    );
  });
});

describe('the float64 reference of a BatchNorm2d model', () => {
  it('its gradient, through the batch statistics, matches central differences of its training loss', () => {
    const spec: ModelSpec = {
      ...AWKWARD,
      input: [2, 4, 4],
      encoder: [
        ['Conv2d', 2, 3, 3, 2, 1],
        ['BatchNorm2d', 3],
        ['LeakyReLU', 0.2],
        ['Flatten'],
        ['Linear', 12, 4],
        ['ReLU'],
      ],
      decoder: [
        ['Linear', 2, 12],
        ['Unflatten', 1, [3, 2, 2]],
        ['BatchNorm2d', 3],
        ['ReLU'],
        ['ConvTranspose2d', 3, 2, 3, 2, 1, 1],
      ],
    };
    const sizes = specSizes(parseSpec(spec));
    const rows = 3;
    const { named } = randomParams(sizes, 21);
    const r = rng(22);
    const x = Float64Array.from({ length: rows * sizes.D }, () => r.next());
    const eps = Float64Array.from({ length: rows * sizes.L }, () => 2 * r.next() - 1);
    const ref = vaeForwardBackward(named, sizes, x, eps, rows);
    expect(Object.keys(ref.grads)).toEqual(arenaLayout(sizes).params.map((p) => p.name));
    expectCentralDifferences(ref.grads, named, () => vaeLoss(named, sizes, x, eps, rows), 1e-6, 1e-5);
  });
});

describe.each(implementations)('$name', (implementation) => {
  const gpu = useHarness(implementation);

  /** [name, spec, batch size, images, plan]; images past a batch make a partial last batch. */
  const MODELS: [string, ModelSpec, number, number, ('software' | 'hardware')?][] = [
    ['the conv-bn preset on 1×8×8, batch 3 (software plan)', CONV_BN8.spec!, 3, 3, 'software'],
    ['the conv-bn preset on 1×8×8, batch 3 (hardware plan)', CONV_BN8.spec!, 3, 3, 'hardware'],
    ['an awkward BatchNorm2d model on 3×5×3, batch 2 then a partial batch of 1', AWKWARD, 2, 3],
    ['the conv-bn preset on 1×8×8, a batch of 1', CONV_BN8.spec!, 1, 1],
  ];
  it.each(MODELS)(
    '%s: loss, logits, every gradient and the running statistics of training steps, then an evaluation',
    async (_, raw, batch, count, plan) => {
      const sizes = specSizes(parseSpec(raw));
      const { layout, arena, named } = randomParams(sizes, batch + sizes.D);
      const r = rng(count + 7);
      const data = Uint8Array.from({ length: count * sizes.D }, () => Math.floor(r.next() * 256));
      const steps = Math.ceil(count / batch);
      const out = await gpu.trainSteps({
        sizes,
        ...(plan ? { plan } : {}),
        batchSize: batch,
        seed: 5,
        lr: 1e-3,
        count,
        steps,
        sameBatch: false,
        evaluate: true,
        images: Buffer.from(data).toString('base64'),
        params: Buffer.from(arena.buffer).toString('base64'),
      });
      const got = (step: number, key: string) => f32(new Uint8Array(Buffer.from(out[step]![key]!, 'base64')));
      const words = (step: number) =>
        new Uint32Array(f32(new Uint8Array(Buffer.from(out[step]!.stats!, 'base64'))).buffer);
      const buffers = initialBuffers(sizes);
      // The first step's parameters are the given ones; later steps' are read from the GPU after Adam.
      let params = named;
      for (let step = 0; step < steps; step++) {
        const rows = Math.min(batch, count - step * batch);
        const x = Float64Array.from(
          data.subarray(step * batch * sizes.D, (step * batch + rows) * sizes.D),
          (b) => b / 255,
        );
        const eps = got(step, 'eps').subarray(0, rows * sizes.L);
        const ref = vaeForwardBackward(params, sizes, x, eps, rows, undefined, 1, buffers);
        const tag = `step ${step}`;
        expectClose(`${tag} loss`, got(step, 'loss').subarray(step, step + 1), [ref.loss], 1e-5, 0);
        expectClose(`${tag} logits`, got(step, 'logits').subarray(0, rows * sizes.D), ref.logits, 1e-4, 1e-5);
        const grads = got(step, 'grads');
        // A bias before a BatchNorm2d, and γ and β of a BatchNorm2d before another, have a zero
        // gradient (the next norm takes their mean and scale out), which the GPU gives as rounding
        // noise of a sum of gradients that cancel: hence an absolute floor at 10⁻⁶ of the largest
        // gradient of the model (seen: up to 4·10⁻⁷ of it for a batch of 1).
        const largest = (g: Float64Array) => g.reduce((a, b) => Math.max(a, Math.abs(b)), 0);
        const floor = 1e-6 * Math.max(...Object.values(ref.grads).map(largest));
        for (const p of layout.params) {
          const g = ref.grads[p.name]!;
          const scale = Math.max(largest(g), floor / 1e-5);
          expectClose(`${tag} grad ${p.name}`, grads.subarray(p.offset, p.offset + p.length), g, 1e-4, 1e-5 * scale);
        }
        checkStats(tag, layout, words(step), buffers);
        const next = got(step, 'params');
        params = Object.fromEntries(
          layout.params.map((p) => [p.name, Float64Array.from(next.subarray(p.offset, p.offset + p.length))]),
        );
      }
      // Evaluation: the running statistics, not the batch's, and no update of them.
      const rows = Math.min(batch, count);
      const x = Float64Array.from(data.subarray(0, rows * sizes.D), (b) => b / 255);
      const eps = got(steps, 'eps').subarray(0, rows * sizes.L);
      const evalLoss = vaeLoss(params, sizes, x, eps, rows, undefined, undefined, { training: false, buffers });
      expectClose('evaluation loss', got(steps, 'loss').subarray(0, 1), [evalLoss], 1e-5, 0);
      checkStats('after evaluation', layout, words(steps), buffers);
      const trained = vaeLoss(params, sizes, x, eps, rows);
      expect(Math.abs(trained - evalLoss), 'the batch statistics would give another loss').toBeGreaterThan(1e-3);
    },
  );
});

/** The GPU's statistics arena against the reference buffers: running statistics and the int64 count. */
function checkStats(tag: string, layout: ReturnType<typeof arenaLayout>, words: Uint32Array, buffers: VaeParams) {
  const floats = new Float32Array(words.buffer);
  for (const b of layout.buffers) {
    const want = buffers[b.name]!;
    if (b.dtype === 'I64')
      expect([...words.subarray(b.offset, b.offset + 2)], `${tag} ${b.name}`).toEqual([want[0], 0]);
    else expectClose(`${tag} ${b.name}`, floats.subarray(b.offset, b.offset + b.length), want, 1e-5, 1e-6);
  }
}

describe('a conv-bn checkpoint from PyTorch', () => {
  it("export_checkpoint.py's file decodes with its running statistics, and encodes back to the same tensors", () => {
    const dir = tempDir('bn');
    const made = python([
      '-c',
      [
        'import sys, torch',
        'sys.path.insert(0, "scripts")',
        'import vae_spec',
        'torch.manual_seed(0)',
        'model = vae_spec.preset("conv-bn", (1, 8, 8), 3)',
        'opt = torch.optim.Adam(model.parameters(), lr=1e-3)',
        'for _ in range(3):',
        '    x = torch.rand(5, 1, 8, 8)',
        '    out, mu, logvar = model(x)',
        '    opt.zero_grad()',
        '    sum(model.loss_terms(out, x, mu, logvar)).backward()',
        '    opt.step()',
        'torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 1}, sys.argv[1] + "/m.pt")',
      ].join('\n'),
      dir,
    ]);
    expect(made.status, made.stderr).toBe(0);
    const out = join(dir, 'm.safetensors');
    const args = [
      'scripts/export_checkpoint.py',
      join(dir, 'm.pt'),
      out,
      '--model',
      'conv-bn',
      '--input-shape',
      '1,8,8',
    ];
    const r = python(args);
    expect(r.status, r.stderr).toBe(0);
    const bytes = new Uint8Array(readFileSync(out));
    const { sizes } = checkpointSizes(bytes);
    expect(sizes.spec).toEqual(CONV_BN8.spec);
    const layout = arenaLayout(sizes);
    const data = decodeCheckpoint(bytes, layout);
    const { tensors } = readSafetensors(bytes);
    const floats = new Float32Array(data.stats!.buffer);
    for (const b of layout.buffers) {
      const t = tensors.get(b.name)!;
      if (b.dtype === 'I64') {
        expect([...(t.data as BigInt64Array)], b.name).toEqual([3n]);
        expect([...data.stats!.subarray(b.offset, b.offset + 2)], b.name).toEqual([3, 0]);
      } else expect([...floats.subarray(b.offset, b.offset + b.length)], b.name).toEqual([...(t.data as Float32Array)]);
    }
    const again = readSafetensors(encodeCheckpoint(layout, data)).tensors;
    for (const b of layout.buffers)
      expect([...again.get(b.name)!.data], b.name).toEqual([...tensors.get(b.name)!.data]);

    // A file without a model's statistics is refused, naming what is missing.
    const rest = Object.fromEntries([...tensors].filter(([n]) => n !== 'decoder.6.running_var')) as Record<
      string,
      Tensor
    >;
    const edited = writeSafetensors(rest, readSafetensors(bytes).metadata);
    expect(() => decodeCheckpoint(edited, layout)).toThrow(
      /checkpoint is missing buffer "decoder\.6\.running_var": a BatchNorm2d model evaluates with its running statistics/,
    );
  });
});
