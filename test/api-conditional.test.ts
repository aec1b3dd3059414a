/**
 * The library's conditional VAE (`VAE.create({ classes })`), end to end in the shared headless
 * Chromium: fit with labels, `decode(z, { label })` against a float64 CPU decoder of the saved
 * checkpoint (so the label reaches the decoder as PyTorch's [z ‖ onehot(y)] would), `sample(n,
 * { label })`, the labels' effect on evaluate, save → load keeping the classes, and every
 * label argument error.
 */
import { describe, expect, it } from 'vitest';
import { readSafetensors } from '../src/io/safetensors';
import { concatOneHot, linearForward, sigmoid } from '../src/reference/ops';
import { API_HARNESS, harnessPage } from './gpu';

const harness = harnessPage(...API_HARNESS);

const D = 784;
const H = 32;
const L = 4;
const C = 10;

describe('conditional VAE API', () => {
  it('fits on labels, decodes and samples a chosen class, and keeps its classes through save → load', async () => {
    const r = await harness.page.evaluate(
      async (s) => {
        const { lib, mnistTest, mnistTestLabels, sameBits, stats, toBase64, f32base64 } = window.vaeTest;
        const images = await mnistTest(512);
        const labels = await mnistTestLabels(512);
        const vae = await lib.VAE.create({ seed: 3, hiddenSize: s.H, latentSize: s.L, classes: s.C });
        const fit = await vae.fit(images, {
          epochs: 1,
          batchSize: 64,
          lr: 3e-3,
          labels,
          testImages: images.subarray(0, 128 * 784),
          testLabels: labels.subarray(0, 128),
        });
        const z = new Float32Array(3 * s.L).map((_, i) => Math.sin(i + 1));
        const asThrees = await vae.decode(z, { label: 3 });
        const perRow = await vae.decode(z, { label: [3, 3, 3] });
        const mixed = await vae.decode(z, { label: [0, 7, 9] });
        const sevens = await vae.sample(6, { label: 7 });
        const x = images.subarray(0, 128 * 784);
        const own = await vae.evaluate(x, { labels: labels.subarray(0, 128) });
        const shifted = await vae.evaluate(x, { labels: labels.subarray(0, 128).map((y) => (y + 5) % 10) });
        const ll = await vae.logLikelihood(images.subarray(0, 4 * 784), { k: 4, label: labels.subarray(0, 4) });
        const { mu } = await vae.encode(images.subarray(0, 2 * 784), { label: [labels[0], labels[1]] });
        const saved = await vae.save();
        const loaded = await lib.VAE.load(saved);
        const again = await loaded.decode(z, { label: 3 });
        const out = {
          classes: vae.classes,
          loadedClasses: loaded.classes,
          parameters: vae.parameterCount,
          fitStep: fit.step,
          sameForOneOrPerRow: sameBits(asThrees, perRow),
          labelChangesImage: !sameBits(asThrees.subarray(784), mixed.subarray(784)),
          firstRowSame: sameBits(asThrees.subarray(0, 784), mixed.subarray(0, 784)),
          loadedSame: sameBits(asThrees, again),
          sevens: stats(sevens),
          own,
          shifted,
          ll,
          mu: stats(mu),
          mixed: f32base64(mixed),
          z: f32base64(z),
          checkpoint: toBase64(saved),
        };
        vae.destroy();
        loaded.destroy();
        return out;
      },
      { H, L, C },
    );
    expect(r.classes).toBe(C);
    expect(r.loadedClasses).toBe(C);
    // fc1 (H, D + C) + b, heads 2·(L, H) + b, fc3 (H, L + C) + b, fc4 (D, H) + b.
    expect(r.parameters).toBe(H * (D + C) + H + 2 * (L * H + L) + H * (L + C) + H + D * H + D);
    expect(r.fitStep).toBe(8);
    expect(r.sameForOneOrPerRow).toBe(true);
    expect(r.labelChangesImage).toBe(true); // rows 2 and 3: label 3 vs 7 and 9
    expect(r.firstRowSame).toBe(false); // row 1: label 3 vs 0
    expect(r.loadedSame).toBe(true);
    expect(r.sevens).toMatchObject({ length: 6 * D, nonFinite: 0 });
    expect(r.mu).toMatchObject({ length: 2 * L, nonFinite: 0 });
    // The labels reach the test pass (after 8 steps the model barely relies on them yet, so
    // only their effect is asserted, not its sign).
    expect(Math.abs(r.shifted - r.own)).toBeGreaterThan(1e-3);
    expect(Number.isFinite(r.ll) && r.ll < 0).toBe(true);

    // decode(z, { label }) is sigmoid(fc4(relu(fc3([z ‖ onehot(y)])))) of the saved weights, in float64.
    const { tensors, metadata } = readSafetensors(new Uint8Array(Buffer.from(r.checkpoint, 'base64')));
    expect(metadata.classes).toBe(String(C));
    const w = (name: string) => Float64Array.from(tensors.get(name)!.data as Float32Array);
    expect(tensors.get('fc1.weight')!.shape).toEqual([H, D + C]);
    expect(tensors.get('fc3.weight')!.shape).toEqual([H, L + C]);
    const z = new Float32Array(new Uint8Array(Buffer.from(r.z, 'base64')).buffer);
    const zy = concatOneHot(z, 3, L, [0, 7, 9], C);
    const h3 = linearForward(zy, w('fc3.weight'), w('fc3.bias'), 3, L + C, H, true);
    const ref = linearForward(h3, w('fc4.weight'), w('fc4.bias'), 3, H, D, false).map(sigmoid);
    const got = new Float32Array(new Uint8Array(Buffer.from(r.mixed, 'base64')).buffer);
    let worst = 0;
    for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(got[i]! - ref[i]!));
    expect(worst, 'decode vs the float64 decoder').toBeLessThan(1e-5);
  });

  it('rejects label arguments that do not fit the model, naming the fix', async () => {
    const r = await harness.page.evaluate(
      async (s) => {
        const { lib, failure } = window.vaeTest;
        const cvae = await lib.VAE.create({ seed: 1, hiddenSize: s.H, latentSize: s.L, classes: s.C });
        const vae = await lib.VAE.create({ seed: 1, hiddenSize: s.H, latentSize: s.L });
        const z = new Float32Array(2 * s.L);
        const images = new Uint8Array(2 * 784);
        const out = {
          sampleNoLabel: await failure(() => cvae.sample(2)),
          decodeNoLabel: await failure(() => cvae.decode(z)),
          labelTooBig: await failure(() => cvae.sample(2, { label: 10 })),
          labelNegative: await failure(() => cvae.decode(z, { label: -1 })),
          labelFraction: await failure(() => cvae.decode(z, { label: 2.5 })),
          labelString: await failure(() => cvae.decode(z, { label: '3' as unknown as number })),
          labelsTooFew: await failure(() => cvae.decode(z, { label: [1] })),
          labelsBadEntry: await failure(() => cvae.decode(z, { label: [1, 12] })),
          encodeNoLabel: await failure(() => cvae.encode(images)),
          fitNoLabels: await failure(() => cvae.fit(images)),
          fitBadLabels: await failure(() => cvae.fit(images, { labels: [0, 10] })),
          testLabelsAlone: await failure(() => cvae.fit(images, { labels: [0, 1], testLabels: [0, 1] })),
          unconditionalGivenLabel: await failure(() => vae.sample(2, { label: 3 })),
          unconditionalFitLabels: await failure(() => vae.fit(images, { labels: [0, 1] })),
          classesBad: await failure(() => lib.VAE.create({ classes: -2 })),
          // Still usable after every refusal.
          fine: (await cvae.sample(2, { label: 9 })).length,
        };
        cvae.destroy();
        vae.destroy();
        return out;
      },
      { H, L, C },
    );
    const expectError = (f: { code?: string; message: string } | null, pattern: RegExp) => {
      expect(f, String(pattern)).not.toBeNull();
      expect(f!.code).toBe('invalid-option');
      expect(f!.message).toMatch(pattern);
    };
    expectError(
      r.sampleNoLabel,
      /^VAE\.sample: this model is conditional on 10 classes: pass label — one class \(an integer from 0 to 9\) for every row, or an array of 2/,
    );
    expectError(r.decodeNoLabel, /^VAE\.decode: this model is conditional on 10 classes/);
    expectError(r.labelTooBig, /VAE\.sample: label must be a class, an integer from 0 to 9, got 10/);
    expectError(r.labelNegative, /label must be a class, an integer from 0 to 9, got -1/);
    expectError(r.labelFraction, /got 2\.5/);
    expectError(r.labelString, /label must be a class \(an integer from 0 to 9\) or an array of them, got string/);
    expectError(r.labelsTooFew, /label has 1 labels for 2 rows: pass one per row, or a single class for all/);
    expectError(r.labelsBadEntry, /label\[1\] must be a class, an integer from 0 to 9, got 12/);
    expectError(r.encodeNoLabel, /^VAE\.encode: this model is conditional/);
    expectError(r.fitNoLabels, /VAE\.fit: this model is conditional on 10 classes: pass labels/);
    expectError(r.fitBadLabels, /labels\[1\] must be a class, an integer from 0 to 9, got 10/);
    expectError(r.testLabelsAlone, /testLabels given without testImages/);
    expectError(
      r.unconditionalGivenLabel,
      /VAE\.sample: label given, but this model is unconditional \(created without classes\): drop label, or create a model with \{ classes \}/,
    );
    expectError(r.unconditionalFitLabels, /VAE\.fit: labels given, but this model is unconditional/);
    expectError(r.classesBad, /classes must be an integer from 0 to 1024, got -2/);
    expect(r.fine).toBe(2 * 784);
  });
  it('VAE.load refuses a checkpoint whose recorded class names differ from the ones given (an image folder renamed)', async () => {
    const r = await harness.page.evaluate(
      async (s) => {
        const { lib, failure } = window.vaeTest;
        const vae = await lib.VAE.create({ seed: 3, hiddenSize: s.H, latentSize: s.L, classes: 3 });
        const saved = await vae.save();
        vae.destroy();
        // The class names as the CLI's and the page's image-folder runs record them (a safetensors
        // file: an 8-byte header length, the JSON header, then the data).
        const n = Number(new DataView(saved.buffer, saved.byteOffset).getBigUint64(0, true));
        const header = JSON.parse(new TextDecoder().decode(saved.subarray(8, 8 + n)));
        header.__metadata__.class_names = JSON.stringify(['circle', 'cross', 'square']);
        const json = new TextEncoder().encode(JSON.stringify(header));
        const named = new Uint8Array(8 + json.length + saved.length - 8 - n);
        new DataView(named.buffer).setBigUint64(0, BigInt(json.length), true);
        named.set(json, 8);
        named.set(saved.subarray(8 + n), 8 + json.length);
        const same = await lib.VAE.load(named, { classNames: ['circle', 'cross', 'square'] });
        const sameClasses = same.classes;
        same.destroy();
        const renamed = await failure(() => lib.VAE.load(named, { classNames: ['Circle', 'cross', 'square'] }));
        return { sameClasses, renamed };
      },
      { H, L },
    );
    expect(r.sameClasses).toBe(3);
    expect(r.renamed).toMatchObject({ code: 'checkpoint' });
    expect(r.renamed!.message).toMatch(
      /trained on the classes "circle", "cross", "square" .*this folder's classes are "Circle", "cross", "square"/,
    );
  });
});
