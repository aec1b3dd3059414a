/**
 * The library's `VAE.create({ model })` in the shared headless Chromium (test/harness/api.ts): a
 * spec trains, saves nn.Sequential's names with the spec under the metadata key `model`, and
 * `VAE.load` rebuilds that model from the file alone; a bad spec is an `invalid-option` VaeError
 * naming the layer.
 */
import { expect, it } from 'vitest';
import { readSafetensors } from '../src/io/safetensors';
import { parseSpec } from '../src/model/spec';
import { API_HARNESS, harnessPage } from './gpu';

const harness = harnessPage(...API_HARNESS);

const SPEC = {
  input: [1, 28, 28],
  latent: 4,
  encoder: [['Flatten'], ['Linear', 784, 24], ['LeakyReLU', 0.2]],
  decoder: [
    ['Linear', 4, 24],
    ['LeakyReLU', 0.2],
    ['Linear', 24, 784],
    ['Unflatten', 1, [1, 28, 28]],
  ],
  likelihood: 'bernoulli',
};

it("VAE.create({ model }) trains a spec, saves it with nn.Sequential's names, and VAE.load rebuilds it; a bad spec is refused by layer", async () => {
  const r = await harness.page.evaluate(async (spec) => {
    const { lib, mnistTest, toBase64, failure } = window.vaeTest;
    const images = await mnistTest(64);
    const vae = await lib.VAE.create({ model: spec as never, seed: 3 });
    await vae.fit(images, { epochs: 1, batchSize: 32 });
    const saved = await vae.save();
    const loaded = await lib.VAE.load(saved);
    const same = [...(await vae.reconstruct(images.subarray(0, 784)))].every(
      (v, _, a) => Number.isFinite(v) && a.length === 784,
    );
    const resaved = toBase64(await loaded.save());
    vae.destroy();
    loaded.destroy();
    const bad = await failure(() =>
      lib.VAE.create({
        model: {
          ...spec,
          decoder: [
            ['Linear', 4, 24],
            ['Linear', 25, 784],
          ],
        } as never,
      }),
    );
    const preset = await failure(() => lib.VAE.create({ model: 'leaky', hiddenSize: 8 }));
    return { saved: toBase64(saved), resaved, bad, preset, same };
  }, SPEC);
  const file = (b64: string) => readSafetensors(new Uint8Array(Buffer.from(b64, 'base64')));
  const { tensors, metadata } = file(r.saved);
  expect(JSON.parse(metadata.model!)).toEqual(parseSpec(SPEC));
  expect([...tensors.keys()].filter((n) => !n.includes('exp_avg')).sort()).toEqual(
    ['decoder.0', 'decoder.2', 'encoder.1', 'fc_logvar', 'fc_mu'].flatMap((n) => [`${n}.bias`, `${n}.weight`]).sort(),
  );
  // The loaded model is the spec's: the same names, shapes and weights, and the spec again.
  const again = file(r.resaved);
  expect(again.metadata.model).toBe(metadata.model);
  for (const [name, t] of tensors) expect([...again.tensors.get(name)!.data], name).toEqual([...t.data]);
  expect(r.same).toBe(true);
  expect(r.bad).toMatchObject({
    name: 'VaeError',
    code: 'invalid-option',
    message: expect.stringMatching(/model: model spec: decoder\[1\] \(Linear\) reads 25 features, got shape \[24\]/),
  });
  expect(r.preset).toMatchObject({
    code: 'invalid-option',
    message: expect.stringMatching(/hiddenSize gives the mlp preset's widths/),
  });
});

it("VAE.create({ model: 'conv' }) takes the images' shape from inputShape (MNIST's by default), conditional and colour too; a shape the preset or a spec cannot chain is refused before a buffer is made", async () => {
  const r = await harness.page.evaluate(async () => {
    const { lib, mnistTest, mnistTestLabels, failure } = window.vaeTest;
    const images = await mnistTest(32);
    const labels = await mnistTestLabels(32);
    // MNIST's shape by default, conditional on its labels: the one-hot joins the Linears after the convs.
    const mnist = await lib.VAE.create({ model: 'conv', classes: 10, latentSize: 4, seed: 2 });
    const mnistLoss = (await mnist.fit(images, { labels, epochs: 1, batchSize: 16 })).epochs.at(-1)!.trainLoss;
    const digits = await mnist.sample(2, { label: 7 });
    // Encoding reads each image itself: two images under one label give two different posteriors.
    const { mu } = await mnist.encode(images.subarray(0, 2 * 784), { label: 7 });
    const encodesImages = [...mu.subarray(0, 4)].some((v, i) => v !== mu[4 + i]) && mu.every(Number.isFinite);
    mnist.destroy();
    // Colour 3×8×12: C·H·W values per image, the R plane first.
    const colour = await lib.VAE.create({ model: 'conv', inputShape: [3, 8, 12], latentSize: 2, seed: 2 });
    const pixels = Float32Array.from({ length: 4 * 288 }, (_, i) => (i % 7) / 7);
    const colourLoss = (await colour.fit(pixels, { epochs: 1, batchSize: 4 })).epochs.at(-1)!.trainLoss;
    const shapes = [colour.inputSize, (await colour.sample(3)).length];
    colour.destroy();
    // The refusals, on a device of the caller's whose createBuffer counts the calls.
    const adapter = await navigator.gpu.requestAdapter();
    const device = await adapter!.requestDevice();
    let made = 0;
    const create = device.createBuffer.bind(device);
    device.createBuffer = (d: GPUBufferDescriptor) => (made++, create(d));
    const refusals = {
      sides: await failure(() => lib.VAE.create({ model: 'conv', inputShape: [3, 30, 30], device })),
      flat: await failure(() => lib.VAE.create({ model: 'conv', inputSize: 784, device })),
      both: await failure(() => lib.VAE.create({ model: 'conv', inputShape: [1, 8, 8], inputSize: 784, device })),
      shape: await failure(() => lib.VAE.create({ model: 'conv', inputShape: [0, 8] as never, device })),
      chain: await failure(() =>
        lib.VAE.create({
          model: {
            input: [1, 26, 26],
            latent: 2,
            encoder: [
              ['Conv2d', 1, 4, 4, 2, 1],
              ['ReLU'],
              ['Conv2d', 4, 8, 4, 2, 1],
              ['ReLU'],
              ['Flatten'],
              ['Linear', 8 * 7 * 7, 16],
            ],
            decoder: [['Linear', 2, 676]],
            likelihood: 'bernoulli',
          },
          device,
        }),
      ),
    };
    device.destroy();
    return { mnistLoss, digits: digits.length, encodesImages, colourLoss, shapes, refusals, made };
  });
  expect(r.mnistLoss).toBeGreaterThan(0);
  expect(r.mnistLoss).toBeLessThan(600);
  expect(r.digits).toBe(2 * 784);
  expect(r.encodesImages).toBe(true);
  expect(r.colourLoss).toBeGreaterThan(0);
  expect(r.shapes).toEqual([288, 3 * 288]);
  for (const f of Object.values(r.refusals)) expect(f).toMatchObject({ name: 'VaeError', code: 'invalid-option' });
  expect(r.refusals.sides!.message).toMatch(
    /the conv preset reads images \(C, H, W\) with H and W divisible by 4 \(two stride-2 convs\), got \[3, 30, 30\]/,
  );
  expect(r.refusals.flat!.message).toMatch(/got \[784\]; give the images' shape as inputShape \[C, H, W\]/);
  expect(r.refusals.both!.message).toBe("inputSize 784 is not inputShape [1, 8, 8]'s 64 values: give one of them");
  expect(r.refusals.shape!.message).toMatch(/^inputShape must be one image's shape \[C, H, W\]/);
  // 26 → 13 → 6 after two stride-2 convs: the Linear names the shapes.
  expect(r.refusals.chain!.message).toMatch(/encoder\[5\] \(Linear\) reads 392 features, got shape \[288\]/);
  expect(r.made).toBe(0);
});

/** A BatchNorm2d model on MNIST's shape, small enough to train in a moment. */
const BN_SPEC = {
  input: [1, 28, 28],
  latent: 4,
  encoder: [
    ['Conv2d', 1, 3, 4, 2, 1],
    ['BatchNorm2d', 3],
    ['LeakyReLU', 0.2],
    ['Flatten'],
    ['Linear', 588, 16],
    ['ReLU'],
  ],
  decoder: [
    ['Linear', 4, 588],
    ['Unflatten', 1, [3, 14, 14]],
    ['BatchNorm2d', 3],
    ['ReLU'],
    ['ConvTranspose2d', 3, 1, 4, 2, 1],
  ],
  likelihood: 'bernoulli',
};

it('VAE.save keeps BatchNorm2d running statistics under PyTorch names, and VAE.load evaluates with them', async () => {
  const r = await harness.page.evaluate(async (spec) => {
    const { lib, mnistTest, toBase64 } = window.vaeTest;
    const images = await mnistTest(64);
    const vae = await lib.VAE.create({ model: spec as never, seed: 3 });
    await vae.fit(images, { epochs: 1, batchSize: 32 });
    const saved = await vae.save();
    const loaded = await lib.VAE.load(saved);
    const first = images.subarray(0, 4 * 784);
    const [a, b] = [await vae.reconstruct(first), await loaded.reconstruct(first)];
    const resaved = toBase64(await loaded.save());
    vae.destroy();
    loaded.destroy();
    return { saved: toBase64(saved), resaved, a: [...a], b: [...b] };
  }, BN_SPEC);
  const file = (b64: string) => readSafetensors(new Uint8Array(Buffer.from(b64, 'base64')));
  const { tensors } = file(r.saved);
  for (const bn of ['encoder.1', 'decoder.2']) {
    // Two batches of 32: counted, and the statistics moved off PyTorch's starting 0 and 1.
    expect([...(tensors.get(`${bn}.num_batches_tracked`)!.data as BigInt64Array)]).toEqual([2n]);
    expect(
      [...(tensors.get(`${bn}.running_var`)!.data as Float32Array)].some((v) => v !== 1),
      bn,
    ).toBe(true);
    expect(tensors.has(`optimizer.exp_avg.${bn}.running_mean`), bn).toBe(false);
  }
  const again = file(r.resaved);
  for (const [name, t] of tensors) expect([...again.tensors.get(name)!.data], name).toEqual([...t.data]);
  // Reconstructions evaluate with the running statistics: the loaded model's are the same bits.
  expect(r.b).toEqual(r.a);
});
