/**
 * The library's settings as a checkpoint carries them, in the shared headless Chromium
 * (test/harness/api.ts): `save({ metadata })` refuses the engine's own keys (which `VAE.load`
 * would read back as the model's settings), the instance `load` takes the checkpoint's β and
 * warm-up, `classes` is 0 or at least 2, `likelihood` is readable on the model, and β and the
 * warm-up are refused by the settings' rules — by the library and, below it, by the engine's
 * model (test/harness/harness.ts's trainSteps).
 */
import { describe, expect, it } from 'vitest';
import { readSafetensors } from '../src/io/safetensors';
import { ENGINE_METADATA_KEYS } from '../src/model/checkpoint';
import { arenaLayout } from '../src/model/graph';
import { API_HARNESS, harnessPage } from './gpu';

const harness = harnessPage(...API_HARNESS);

const metadataOf = (b64: string) => readSafetensors(new Uint8Array(Buffer.from(b64, 'base64'))).metadata;

describe('VAE API: what a checkpoint says about the model', () => {
  it('save({ metadata }) refuses every key the engine writes or reads, naming it; other keys are saved', async () => {
    const r = await harness.page.evaluate(
      async (keys) => {
        const { lib, failure, toBase64 } = window.vaeTest;
        // A Bernoulli, unconditional model with β = 1: the engine writes none of likelihood,
        // sigma, classes, beta, kl_warmup, so a caller's entry under them would survive the save.
        const vae = await lib.VAE.create({ inputSize: 16, hiddenSize: 8, latentSize: 2 });
        const refused: Record<string, unknown> = {};
        for (const key of keys)
          refused[key] = await failure(() => vae.save({ metadata: { note: 'kept', [key]: '4' } }));
        const gaussian = await failure(() => vae.save({ metadata: { likelihood: 'gaussian', sigma: '0.1' } }));
        const saved = toBase64(await vae.save({ metadata: { note: 'half way', run_name: 'b4' } }));
        vae.destroy();
        return { refused, gaussian, saved };
      },
      [...ENGINE_METADATA_KEYS],
    );
    expect(ENGINE_METADATA_KEYS).toEqual(
      expect.arrayContaining([
        'format',
        'input_dim',
        'hidden_dim',
        'latent_dim',
        'step',
        'classes',
        'likelihood',
        'sigma',
        'epoch',
        'seed',
        'lr',
        'batch_size',
        'dataset',
        'kernel_plan',
        'beta',
        'kl_warmup',
      ]),
    );
    for (const key of ENGINE_METADATA_KEYS) {
      expect(r.refused[key], key).toMatchObject({
        name: 'VaeError',
        code: 'invalid-option',
        message: expect.stringMatching(
          new RegExp(
            `^VAE\\.save: metadata\\["${key}"\\]: "${key}" is one of the engine's own checkpoint keys.*store your entry under another name`,
          ),
        ),
      });
    }
    expect(r.gaussian).toMatchObject({
      code: 'invalid-option',
      message: expect.stringMatching(/metadata\["likelihood"\]/),
    });
    const metadata = metadataOf(r.saved);
    expect(metadata).toMatchObject({ note: 'half way', run_name: 'b4', input_dim: '16' });
    expect(metadata).not.toHaveProperty('likelihood');
  });

  it("the instance load takes the checkpoint's β and warm-up (and the reference model's 1 and 0 from a checkpoint that records none)", async () => {
    const r = await harness.page.evaluate(async () => {
      const { lib, mnistTest, toBase64 } = window.vaeTest;
      const images = (await mnistTest(64)).subarray(0, 64 * 784);
      const sizes = { hiddenSize: 8, latentSize: 2 };
      const weighted = await lib.VAE.create(sizes);
      await weighted.fit(images, { epochs: 1, batchSize: 32, beta: 4, klWarmup: 3 });
      const weightedBytes = await weighted.save();
      const plain = await lib.VAE.create(sizes);
      const plainBytes = await plain.save();

      const other = await lib.VAE.create(sizes);
      await other.load(weightedBytes);
      const afterWeighted = toBase64(await other.save());
      // A later fit that names neither trains on with them: its steps report the objective.
      const objectives: (number | undefined)[] = [];
      await other.fit(images, { epochs: 1, batchSize: 32, onStep: (s) => objectives.push(s.objective) });
      await other.load(plainBytes);
      const afterPlain = toBase64(await other.save());
      for (const v of [weighted, plain, other]) v.destroy();
      return { afterWeighted, afterPlain, objectives };
    });
    expect(metadataOf(r.afterWeighted)).toMatchObject({ beta: '4', kl_warmup: '3' });
    expect(r.objectives).toHaveLength(2);
    for (const o of r.objectives) expect(Number.isFinite(o)).toBe(true);
    const plain = metadataOf(r.afterPlain);
    expect(plain).not.toHaveProperty('beta');
    expect(plain).not.toHaveProperty('kl_warmup');
  });

  it('classes is 0 or at least 2; likelihood is readable on a created and on a loaded model', async () => {
    const r = await harness.page.evaluate(async () => {
      const { lib, failure } = window.vaeTest;
      const small = { inputSize: 16, hiddenSize: 8, latentSize: 2 };
      const one = await failure(() => lib.VAE.create({ ...small, classes: 1 }));
      const two = await lib.VAE.create({ ...small, classes: 2 });
      const bernoulli = await lib.VAE.create(small);
      const fixed = await lib.VAE.create({ ...small, likelihood: 'gaussian', sigma: 0.25 });
      const learned = await lib.VAE.create({ ...small, likelihood: 'gaussian', sigma: 'learned' });
      const loaded = await lib.VAE.load(await fixed.save());
      const out = {
        one,
        two: two.classes,
        likelihoods: [bernoulli, fixed, learned, loaded].map((v) => v.likelihood),
        frozen: Object.isFrozen(fixed.likelihood),
      };
      for (const v of [two, bernoulli, fixed, learned, loaded]) v.destroy();
      return out;
    });
    expect(r.one).toMatchObject({
      name: 'VaeError',
      code: 'invalid-option',
      message: expect.stringMatching(/classes must be 0 \(an unconditional VAE\) or an integer from 2 to 1024, got 1/),
    });
    expect(r.two).toBe(2);
    expect(r.likelihoods).toEqual([
      { kind: 'bernoulli' },
      { kind: 'gaussian', sigma: 0.25 },
      { kind: 'gaussian', sigma: 'learned' },
      { kind: 'gaussian', sigma: 0.25 },
    ]);
    expect(r.frozen).toBe(true);
  });

  it("β and the warm-up follow the settings' rules: a fractional or negative warm-up, a β out of range are refused by name", async () => {
    const r = await harness.page.evaluate(async () => {
      const { lib, failure, mnistTest } = window.vaeTest;
      const images = await mnistTest(32);
      const vae = await lib.VAE.create({ hiddenSize: 8, latentSize: 2 });
      const fit = (o: object) => failure(() => vae.fit(images, { epochs: 1, ...o }));
      const out = {
        fraction: await fit({ klWarmup: 2.5 }),
        negative: await fit({ klWarmup: -1 }),
        text: await fit({ klWarmup: '5' }),
        betaNaN: await fit({ beta: NaN }),
        betaHuge: await fit({ beta: 1001 }),
      };
      vae.destroy();
      return out;
    });
    for (const [name, e] of Object.entries(r))
      expect(e, name).toMatchObject({ name: 'VaeError', code: 'invalid-option' });
    expect(r.fraction?.message).toMatch(/klWarmup must be a whole number of Adam steps from 0 to 1000000.*got 2\.5/);
    expect(r.negative?.message).toMatch(/klWarmup must be a whole number.*got -1/);
    expect(r.text?.message).toMatch(/klWarmup must be a whole number.*got "5"/);
    expect(r.betaNaN?.message).toMatch(/beta must be a number from 0 to 1000.*got NaN/);
    expect(r.betaHuge?.message).toMatch(/beta must be a number from 0 to 1000.*got 1001/);
  });
});

describe('the engine model below the library', () => {
  const gpu = harnessPage();

  it('VaeModel refuses a fractional warm-up (its u32 uniform would truncate it) and a β out of range', async () => {
    const sizes = { D: 4, hidden: [4], L: 2 };
    const request = (o: { beta?: number; klWarmup?: number }) => ({
      sizes,
      batchSize: 2,
      seed: 1,
      lr: 1e-3,
      count: 2,
      steps: 1,
      sameBatch: true,
      ...o,
      images: Buffer.from(new Uint8Array(8)).toString('base64'),
      params: Buffer.from(new Float32Array(arenaLayout(sizes).length).fill(0.01).buffer).toString('base64'),
    });
    const refused = async (o: { beta?: number; klWarmup?: number }) =>
      gpu.page.evaluate(
        (req) =>
          window.harness.trainSteps(req).then(
            () => null,
            (e: Error) => e.message,
          ),
        request(o),
      );
    expect(await refused({ klWarmup: 2.5 })).toMatch(/klWarmup 2\.5 must be a whole number of Adam steps/);
    expect(await refused({ klWarmup: -3 })).toMatch(/klWarmup -3 must be a whole number/);
    expect(await refused({ beta: -0.5 })).toMatch(/beta -0\.5 must be a number from 0 to 1000/);
    expect(await refused({ beta: 1e6 })).toMatch(/beta 1000000 must be a number from 0 to 1000/);
    expect(await refused({ beta: 4, klWarmup: 3 }), 'the same model with settings in range trains').toBeNull();
  });
});
