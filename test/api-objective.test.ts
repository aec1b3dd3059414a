/**
 * The library's β, warm-up and Gaussian likelihood, in the shared headless Chromium
 * (test/harness/api.ts): a learned-σ Gaussian model fitted with β and a warm-up reports the
 * objective beside the loss, saves a checkpoint that names its likelihood, σ, β and warm-up
 * and loads back into the same model; its IWAE estimate (k = 1) matches a float64 one computed
 * here from the saved weights with the Gaussian's p(x|z); bad options are refused by name.
 */
import { describe, expect, it } from 'vitest';
import { gaussianLogLikelihood, IWAE_STREAM, priorMinusPosterior } from '../src/api/likelihood';
import { readSafetensors } from '../src/io/safetensors';
import { HALF_LOG_2PI } from '../src/reference/loss';
import { normals } from '../src/reference/philox';
import { vaeForwardBackward } from '../src/reference/vae';
import { API_HARNESS, harnessPage } from './gpu';

const harness = harnessPage(...API_HARNESS);

describe('VAE API: β, warm-up and the Gaussian likelihood', () => {
  it('a learned-σ Gaussian fitted with β = 2 over a warm-up: objectives reported, saved, loaded back, its IWAE on the Gaussian p(x|z)', async () => {
    const r = await harness.page.evaluate(async () => {
      const { lib, mnistTest, toBase64 } = window.vaeTest;
      const images = await mnistTest(384);
      const vae = await lib.VAE.create({
        seed: 3,
        hiddenSize: 32,
        latentSize: 4,
        likelihood: 'gaussian',
        sigma: 'learned',
      });
      const steps: { loss: number; objective?: number }[] = [];
      const result = await vae.fit(images, {
        epochs: 1,
        batchSize: 64,
        beta: 2,
        klWarmup: 4,
        testImages: images.subarray(0, 128 * 784),
        onStep: (s) => steps.push(s),
      });
      const checkpoint = await vae.save();
      const testLoss = await vae.evaluate(images.subarray(0, 128 * 784));
      const logPx = await vae.logLikelihood(images.subarray(0, 16 * 784), { k: 1 });
      const again = await lib.VAE.load(checkpoint);
      const reloaded = {
        parameters: again.parameterCount,
        step: again.step,
        testLoss: await again.evaluate(images.subarray(0, 128 * 784)),
        logPx: await again.logLikelihood(images.subarray(0, 16 * 784), { k: 1 }),
      };
      // Both train on from here with the same objective (the loaded one takes β and the warm-up from the file): the same bits.
      const onward = async (v: typeof vae) => {
        const losses: number[] = [];
        await v.fit(images, { epochs: 1, batchSize: 64, onStep: (s) => losses.push(s.loss, s.objective!) });
        return losses;
      };
      const continued = await onward(vae);
      const resumed = await onward(again);
      const samples = await vae.sample(8);
      const parameters = vae.parameterCount;
      vae.destroy();
      again.destroy();
      return {
        steps,
        epoch: result.epochs[0],
        checkpoint: toBase64(checkpoint),
        testLoss,
        logPx,
        reloaded,
        parameters,
        continued,
        resumed,
        samplesInUnit: samples.every((v) => v >= 0 && v <= 1),
        images: toBase64(images.subarray(0, 16 * 784)),
      };
    });
    // Every step has both. recon + β_t·KL against recon + KL: β_t = 0.5, 1, 1.5, then 2 (KL ≥ 0), so the
    // objective is at most the loss on step 1, equal on step 2, at least it from step 3 and above it at the end.
    expect(r.steps).toHaveLength(6);
    for (const s of r.steps) expect(Number.isFinite(s.loss) && Number.isFinite(s.objective!)).toBe(true);
    expect(r.steps[0]!.objective).toBeLessThanOrEqual(r.steps[0]!.loss);
    for (const s of r.steps.slice(2)) expect(s.objective).toBeGreaterThanOrEqual(s.loss);
    expect(r.steps[5]!.objective).toBeGreaterThan(r.steps[5]!.loss);
    expect(r.epoch.trainObjective).toBeDefined();
    expect(r.epoch.testObjective).toBeGreaterThan(r.epoch.testLoss!); // β = 2 > 1 and KL > 0
    // 784 log_sigma values on top of the Bernoulli model's weights (784-32-4: 784·32 + 32 + 2·(32·4 + 4) + 4·32 + 32 + 32·784 + 784).
    expect(r.parameters).toBe(784 * 32 + 32 + 2 * (32 * 4 + 4) + 4 * 32 + 32 + 32 * 784 + 784 + 784);
    expect(r.reloaded.parameters).toBe(r.parameters);
    expect(r.reloaded.step).toBe(6);
    expect(r.reloaded.testLoss, 'the loaded model evaluates as the saved one').toBe(r.testLoss);
    expect(r.reloaded.logPx).toBe(r.logPx);
    expect(r.samplesInUnit, 'samples show the mean clamped to [0, 1]').toBe(true);
    expect(r.continued.length).toBe(12);
    expect(r.resumed, 'a loaded checkpoint trains on exactly as the model that saved it').toEqual(r.continued);

    const bytes = new Uint8Array(Buffer.from(r.checkpoint, 'base64'));
    const { tensors, metadata } = readSafetensors(bytes);
    expect(metadata).toMatchObject({ likelihood: 'gaussian', sigma: 'learned', beta: '2', kl_warmup: '4', step: '6' });
    const logSigma = Float64Array.from(tensors.get('log_sigma')!.data as Float32Array);
    expect(
      logSigma.some((v) => v !== 0),
      'Adam trained log_sigma',
    ).toBe(true);
    expect(tensors.has('optimizer.exp_avg.log_sigma')).toBe(true);

    // The IWAE estimate at k = 1 in float64 from the saved weights: log p(x|z) + log p(z) − log q(z|x),
    // z = mu + σ·ε with ε Philox (seed 3, image i, IWAE_STREAM), p(x|z) the Gaussian on the decoder's mean.
    const weights: Record<string, Float64Array> = {};
    for (const [name, t] of tensors)
      if (!name.startsWith('optimizer.') && name !== 'log_sigma')
        weights[name] = Float64Array.from(t.data as Float32Array);
    const sizes = { D: 784, hidden: [32], L: 4 };
    const pixels = Float64Array.from(Buffer.from(r.images, 'base64'), (b) => b / 255);
    let total = 0;
    for (let i = 0; i < 16; i++) {
      const x = pixels.subarray(i * 784, (i + 1) * 784);
      const eps = normals(4, 3, i, IWAE_STREAM);
      const f = vaeForwardBackward(weights, sizes, x, eps, 1);
      total +=
        gaussianLogLikelihood(x, 0, f.logits, 0, 784, logSigma) + priorMinusPosterior(f.z, eps, f.logvar, 0, 0, 4);
    }
    const ref = total / 16;
    // Its scale: each pixel contributes ½·log(2π) + |log σ| + …: compare relative to that.
    const scale = 784 * (HALF_LOG_2PI + Math.max(...Array.from(logSigma, Math.abs)));
    expect(Math.abs(r.logPx - ref) / scale, `IWAE ${r.logPx} vs float64 ${ref}`).toBeLessThan(1e-4);
  });

  it('bad likelihood, σ, β and warm-up options are refused by name', async () => {
    const r = await harness.page.evaluate(async () => {
      const { lib, failure, mnistTest } = window.vaeTest;
      const images = await mnistTest(64);
      const create = (o: object) =>
        failure(() => lib.VAE.create({ hiddenSize: 8, latentSize: 2, ...o }).then((v) => v.destroy()));
      const vae = await lib.VAE.create({ hiddenSize: 8, latentSize: 2 });
      const fit = (o: object) => failure(() => vae.fit(images, { epochs: 1, ...o }));
      const out = {
        poisson: await create({ likelihood: 'poisson' }),
        sigmaAlone: await create({ sigma: 0.1 }),
        sigmaZero: await create({ likelihood: 'gaussian', sigma: 0 }),
        sigmaText: await create({ likelihood: 'gaussian', sigma: 'wide' }),
        betaNegative: await fit({ beta: -1 }),
        betaHuge: await fit({ beta: 1e6 }),
        warmupFraction: await fit({ klWarmup: 2.5 }),
        stillUsable: (await vae.fit(images, { epochs: 1, beta: 0 })).step,
      };
      vae.destroy();
      return out;
    });
    expect(r.poisson).toMatchObject({
      code: 'invalid-option',
      message: expect.stringMatching(/likelihood must be 'bernoulli' or 'gaussian', got "poisson"/),
    });
    expect(r.sigmaAlone?.message).toMatch(/sigma is the Gaussian likelihood's: pass likelihood: 'gaussian'/);
    expect(r.sigmaZero?.message).toMatch(/sigma must be a number from 0.001 to 1000/);
    expect(r.sigmaText?.message).toMatch(/sigma must be a number or "learned"/);
    expect(r.betaNegative).toMatchObject({
      code: 'invalid-option',
      message: expect.stringMatching(/beta must be a number from 0 to 1000/),
    });
    expect(r.betaHuge?.message).toMatch(/beta must be a number from 0 to 1000/);
    expect(r.warmupFraction?.message).toMatch(/klWarmup/);
    expect(r.stillUsable, 'nothing was lost: β = 0 trains').toBe(1);
  });
});
