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
