/**
 * Checkpoints that travel between PyTorch and the engine, proven on committed fixtures
 * (scripts/checkpoint_fixtures.py; PyTorch is not needed for those):
 *   PyTorch → engine: a state_dict + Adam state exported by scripts/export_checkpoint.py loads
 *     with `VAE.load`, encodes and decodes as PyTorch did, and saves back tensor-for-tensor.
 *   engine → PyTorch: a checkpoint the engine wrote loaded in PyTorch with
 *     load_state_dict(strict=True); the engine computes what PyTorch computed with it, and what
 *     `save()` writes today has that file's layout (names, dtypes, shapes, metadata keys).
 *   engine → PyTorch, deeper: a 784-32-16-4 checkpoint the engine writes now, loaded by
 *     scripts/load_checkpoint.py itself under /usr/bin/python3 (PyTorch 1.13, as the README
 *     runs it): load_state_dict(strict=True), the Adam state, and the test loss evaluate() gave.
 *   Refusals: malformed, truncated and mismatched files reject with a `checkpoint` VaeError
 *     and leave the model exactly as it was.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readSafetensors, writeSafetensors, type Tensor } from '../src/io/safetensors';
import { python } from './cli';
import { API_HARNESS, expectClose, harnessPage } from './gpu';

const DIR = 'test/fixtures/checkpoint';
const file = (name: string) => new Uint8Array(readFileSync(`${DIR}/${name}`));
const b64 = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
const floats = (s: string) => {
  const b = Buffer.from(s, 'base64');
  return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
};
const maxAbs = (a: Float32Array) => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);

/** A safetensors file of zero-filled F32 tensors with these shapes, each taking the bytes its shape needs. */
function safetensors(shapes: Record<string, number[]>): Uint8Array {
  const tensors = Object.fromEntries(
    Object.entries(shapes).map(([name, shape]) => {
      const n = shape.reduce((a, b) => a * b, 1);
      return [name, { dtype: 'F32', shape, data: new Float32Array(n) } as Tensor];
    }),
  );
  return writeSafetensors(tensors);
}

const harness = harnessPage(...API_HARNESS);

/** Loads `checkpoint` in the page and returns encode(x_u8) and decode(z) of the expected-outputs file. */
async function engineOutputs(checkpoint: Uint8Array, expected: Map<string, Tensor>) {
  const x = expected.get('x_u8')!.data as Uint8Array;
  const z = expected.get('z')!.data as Float32Array;
  return harness.page.evaluate(
    async (ckpt: string, x: string, z: string) => {
      const t = window.vaeTest;
      const vae = await t.lib.VAE.load(t.fromBase64(ckpt));
      const { mu, logvar } = await vae.encode(t.fromBase64(x));
      const decoded = await vae.decode(t.base64f32(z));
      const saved = t.toBase64(await vae.save());
      const info = {
        step: vae.step,
        epoch: vae.epoch,
        seed: vae.seed,
        sizes: [vae.inputSize, vae.hiddenSizes, vae.latentSize],
      };
      vae.destroy();
      return { mu: t.f32base64(mu), logvar: t.f32base64(logvar), decoded: t.f32base64(decoded), saved, info };
    },
    b64(checkpoint),
    b64(x),
    b64(new Uint8Array(z.buffer, z.byteOffset, z.byteLength)),
  );
}

/** Engine vs PyTorch float32: the same products summed in another order. */
function expectSameOutputs(
  label: string,
  out: { mu: string; logvar: string; decoded: string },
  expected: Map<string, Tensor>,
) {
  for (const name of ['mu', 'logvar', 'decoded'] as const) {
    const ref = expected.get(name)!.data as Float32Array;
    expectClose(`${label} ${name}`, floats(out[name]), ref, 1e-5, 1e-6 * maxAbs(ref));
  }
}

describe('PyTorch → engine', () => {
  const checkpoint = file('pytorch-784-16-4.safetensors');
  const expected = readSafetensors(file('pytorch-784-16-4.expected.safetensors')).tensors;

  it('loads a state_dict exported by scripts/export_checkpoint.py and computes what PyTorch computed', async () => {
    const out = await engineOutputs(checkpoint, expected);
    expect(out.info).toEqual({ step: 8, epoch: 1, seed: 1, sizes: [784, [16], 4] });
    expectSameOutputs('pytorch fixture', out, expected);

    // Saving it again gives every tensor back bit for bit, Adam moments included, and the step.
    const original = readSafetensors(checkpoint);
    const saved = readSafetensors(new Uint8Array(Buffer.from(out.saved, 'base64')));
    expect([...saved.tensors.keys()].sort()).toEqual([...original.tensors.keys()].sort());
    expect(saved.tensors.size).toBe(30);
    for (const [name, t] of original.tensors) {
      const s = saved.tensors.get(name)!;
      expect(s.shape, name).toEqual(t.shape);
      expect(Buffer.from(s.data.buffer).equals(Buffer.from(t.data.buffer)), `${name} bits`).toBe(true);
    }
    expect(saved.metadata).toMatchObject({ step: '8', epoch: '1', seed: '1', format: 'webgpu-vae/1' });
  });
});

describe('engine → PyTorch', () => {
  const checkpoint = file('engine-784-16-4.safetensors');
  const pytorch = readSafetensors(file('engine-784-16-4.pytorch.safetensors'));

  it('computes what PyTorch computed after load_state_dict(strict=True) of an engine checkpoint', async () => {
    expect(pytorch.metadata).toMatchObject({ strict: 'true', adam_tensors_loaded: '10', step: '8' });
    const out = await engineOutputs(checkpoint, pytorch.tensors);
    expect(out.info).toMatchObject({ step: 8, epoch: 1, seed: 7 });
    expectSameOutputs('engine fixture', out, pytorch.tensors);
  });

  it('writes today the layout PyTorch loaded: names, dtypes, shapes and metadata keys', async () => {
    const fresh = await harness.page.evaluate(async () => {
      const t = window.vaeTest;
      const vae = await t.lib.VAE.create({ inputSize: 784, hiddenSize: 16, latentSize: 4 });
      const bytes = t.toBase64(await vae.save());
      vae.destroy();
      return bytes;
    });
    const layout = (bytes: Uint8Array) => {
      const { tensors, metadata } = readSafetensors(bytes);
      return {
        tensors: Object.fromEntries([...tensors].map(([name, t]) => [name, `${t.dtype}[${t.shape}]`])),
        // The CLI adds lr and dataset; kernel_plan came after the fixture (PyTorch reads no metadata).
        keys: Object.keys(metadata)
          .filter((k) => !['lr', 'dataset', 'batch_size', 'kernel_plan'].includes(k))
          .sort(),
      };
    };
    const committed = layout(checkpoint);
    expect(committed.tensors['fc1.weight']).toBe('F32[16,784]');
    expect(committed.tensors['optimizer.exp_avg_sq.fc4.bias']).toBe('F32[784]');
    expect(layout(new Uint8Array(Buffer.from(fresh, 'base64')))).toEqual(committed);
  });
});

describe('engine → PyTorch, a deeper MLP', () => {
  it('scripts/load_checkpoint.py loads a 784-32-16-4 engine checkpoint strictly and reports the test loss evaluate() reports', async () => {
    // The script reads the first `count` MNIST test images (--limit); the model trains on the
    // next 512, so the loss is measured on images it has not seen. With z sampled the figure
    // is noisy: over 20 seeds one evaluation of 512 images spreads by 1.4 (sd 0.45), too much
    // for a 0.5 comparison; over 9000 images ten seeds spread by 0.1. Both sides take well
    // under a second per pass at this size.
    const count = 9000;
    const engine = await harness.page.evaluate(async (count: number) => {
      const t = window.vaeTest;
      const all = await t.mnistTest(count + 512);
      const test = all.subarray(0, count * 784);
      const vae = await t.lib.VAE.create({ inputSize: 784, hiddenSize: [32, 16], latentSize: 4, seed: 3 });
      await vae.fit(all.subarray(count * 784), { epochs: 1, batchSize: 64, lr: 3e-3 }); // 8 Adam steps
      const sampled = await vae.evaluate(test);
      // The loss with z = mu, as the script's last line computes it: PyTorch's BCE on decode(mu)
      // (each log clamped at −100) plus the KL term, summed, per image.
      const { mu, logvar } = await vae.encode(test);
      const recon = await vae.reconstruct(test);
      let sum = 0;
      for (let i = 0; i < recon.length; i++) {
        const x = test[i] / 255;
        sum -= x * Math.max(Math.log(recon[i]), -100) + (1 - x) * Math.max(Math.log(1 - recon[i]), -100);
      }
      for (let i = 0; i < mu.length; i++) sum -= 0.5 * (1 + logvar[i] - mu[i] ** 2 - Math.exp(logvar[i]));
      const checkpoint = t.toBase64(await vae.save());
      const info = { step: vae.step, parameters: vae.parameterCount, hidden: vae.hiddenSizes };
      vae.destroy();
      return { sampled, withMu: sum / count, checkpoint, info };
    }, count);
    expect(engine.info).toEqual({
      step: 8,
      parameters: 784 * 32 + 32 + 32 * 16 + 16 + 2 * (16 * 4 + 4) + 4 * 16 + 16 + 16 * 32 + 32 + 32 * 784 + 784,
      hidden: [32, 16],
    });

    const dir = mkdtempSync(join(tmpdir(), 'webgpu-vae-deep-'));
    try {
      const path = join(dir, 'deep.safetensors');
      const bytes = new Uint8Array(Buffer.from(engine.checkpoint, 'base64'));
      expect(readSafetensors(bytes).metadata).toMatchObject({ input_dim: '784', hidden_dim: '32,16', latent_dim: '4' });
      writeFileSync(path, bytes);
      const r = python(['scripts/load_checkpoint.py', path, '--limit', String(count)]);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toMatch(
        /^checkpoint: .*deep\.safetensors \(784-32-16-4, step 8, epoch 1, format webgpu-vae\/1\)$/m,
      );
      expect(r.stdout).toContain(`load_state_dict(strict=True): ${engine.info.parameters} parameters matched`);
      expect(r.stdout).toContain('Adam state: exp_avg and exp_avg_sq for 14 tensors, step 8');
      expect(r.stdout).toContain(`${count} test images from`);
      const sampled = [...r.stdout.matchAll(/^====> Test set loss: ([\d.]+) +\(z sampled/gm)].map((m) => Number(m[1]));
      const withMu = Number(/^====> Test set loss with z = mu: ([\d.]+)$/m.exec(r.stdout)?.[1]);
      console.log(
        `784-32-16-4 after 8 steps, ${count} test images: engine evaluate() ${engine.sampled.toFixed(4)}, ` +
          `load_checkpoint.py ${sampled.map((v) => v.toFixed(4)).join(' / ')} (torch seeds 0 1 2); ` +
          `z = mu: engine ${engine.withMu.toFixed(4)}, PyTorch ${withMu.toFixed(4)}`,
      );
      // z sampled: the engine's Philox noise and torch's generator differ, so the figures agree
      // only to the sampling noise of a mean over `count` images (see above).
      expect(sampled).toHaveLength(3);
      for (const loss of sampled)
        expect(Math.abs(loss - engine.sampled), `sampled ${loss} vs ${engine.sampled}`).toBeLessThan(0.5);
      // z = mu has no noise: what is left is float32 rounding in two summation orders and the
      // script's four decimals (measured on SwiftShader: under 1e-4 apart, at 518).
      expect(Math.abs(withMu - engine.withMu), `z = mu ${withMu} vs ${engine.withMu}`).toBeLessThan(
        1e-5 * engine.withMu,
      );

      // Metadata that disagrees with the tensors is refused, naming both.
      const { tensors, metadata } = readSafetensors(bytes);
      writeFileSync(path, writeSafetensors(tensors, { ...metadata, hidden_dim: '32' }));
      const lie = python(['scripts/load_checkpoint.py', path, '--limit', '1']);
      expect(lie.status).toBe(2);
      expect(lie.stderr).toMatch(
        /metadata hidden_dim is '32' but the tensors are those of a 784-32-16-4 model \(hidden_dim 32,16\)/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('refusing bad checkpoints', () => {
  it('rejects malformed, truncated and mismatched files with a clear message and leaves the model untouched', async () => {
    const good = file('pytorch-784-16-4.safetensors');
    const { tensors, metadata } = readSafetensors(good);
    const rewrite = (edit: (t: Map<string, Tensor>, m: Record<string, string>) => void) => {
      const t = new Map(tensors);
      const m = { ...metadata };
      edit(t, m);
      return writeSafetensors(t, m);
    };
    const withValue = (t: Tensor, at: number, value: number) => {
      const data = Float32Array.from(t.data as Float32Array);
      data[at] = value;
      return data;
    };
    const nan = withValue(tensors.get('fc3.bias')!, 5, NaN);
    const header = new Uint8Array(good.slice(0, 64));
    header[12] = 0x7b; // '{' in the middle of the JSON header
    const bad: Record<string, Uint8Array> = {
      empty: new Uint8Array(0),
      truncatedBody: good.slice(0, good.length - 1000),
      truncatedHeader: good.slice(0, 40),
      garbageHeader: header,
      notJson: new TextEncoder().encode('\x10\0\0\0\0\0\0\0not json at all!'),
      otherSizes: rewrite((t) => {
        t.set('fc1.weight', { dtype: 'F32', shape: [32, 784], data: new Float32Array(32 * 784) });
      }),
      missingTensor: rewrite((t) => {
        t.delete('fc4.bias');
      }),
      wrongShape: rewrite((t) => {
        t.set('fc3.bias', { dtype: 'F32', shape: [4, 4], data: new Float32Array(16) });
      }),
      wrongDtype: rewrite((t) => {
        t.set('fc3.bias', { dtype: 'F64', shape: [16], data: new Float64Array(16) });
      }),
      nanWeight: rewrite((t) => {
        t.set('fc3.bias', { dtype: 'F32', shape: [16], data: nan });
      }),
      halfOptimizer: rewrite((t) => {
        t.delete('optimizer.exp_avg_sq.fc1.weight');
      }),
      oneFirstMomentMissing: rewrite((t) => {
        t.delete('optimizer.exp_avg.fc4.bias');
      }),
      negativeSecondMoment: rewrite((t) => {
        t.set('optimizer.exp_avg_sq.fc3.bias', {
          dtype: 'F32',
          shape: [16],
          data: withValue(t.get('optimizer.exp_avg_sq.fc3.bias')!, 2, -0.5),
        });
      }),
      infiniteFirstMoment: rewrite((t) => {
        t.set('optimizer.exp_avg.fc3.bias', {
          dtype: 'F32',
          shape: [16],
          data: withValue(t.get('optimizer.exp_avg.fc3.bias')!, 0, Infinity),
        });
      }),
      badStep: rewrite((_, m) => {
        m.step = '-3';
      }),
      stepPastU32: rewrite((_, m) => {
        m.step = String(2 ** 32);
      }),
      badEpoch: rewrite((_, m) => {
        m.epoch = 'ten';
      }),
    };
    // Headers whose sizes the bytes cannot back: 150 bytes that imply a 1-1-2^31 model, and a
    // 1-1-1024 model's fc1 and fc21 without the rest of its weights.
    const lying = {
      zeroWidthFc21: safetensors({ 'fc1.weight': [1, 1], 'fc21.weight': [2 ** 31, 0] }),
      weightsMissing: safetensors({ 'fc1.weight': [1, 1], 'fc21.weight': [1024, 1] }),
    };
    const r = await harness.page.evaluate(
      async (good: string, bad: Record<string, string>, lying: Record<string, string>) => {
        const t = window.vaeTest;
        const vae = await t.lib.VAE.load(t.fromBase64(good));
        const x = new Float32Array(4 * 784).map((_, i) => (i % 97) / 96);
        const before = await vae.encode(x);
        const stateBefore = [vae.step, vae.epoch];
        const errors: Record<string, { code?: string; message: string } | null> = {};
        for (const [name, bytes] of Object.entries(bad))
          errors[name] = await t.failure(() => vae.load(t.fromBase64(bytes)));
        const staticLoad = await t.failure(() => t.lib.VAE.load(t.fromBase64(bad.truncatedBody)));
        // What VAE.load would make a model of before it reads the tensors.
        const implied: Record<string, unknown> = {};
        for (const [name, bytes] of Object.entries(lying))
          implied[name] = await t.failure(() => t.lib.VAE.load(t.fromBase64(bytes)));
        const notBytes = await t.failure(() => vae.load('checkpoint.safetensors' as unknown as Uint8Array));
        const after = await vae.encode(x);
        const untouched =
          t.sameBits(before.mu, after.mu) &&
          t.sameBits(before.logvar, after.logvar) &&
          [vae.step, vae.epoch].join() === stateBefore.join();
        vae.destroy();
        return { errors, staticLoad, implied, notBytes, untouched };
      },
      b64(good),
      Object.fromEntries(Object.entries(bad).map(([k, v]) => [k, b64(v)])),
      Object.fromEntries(Object.entries(lying).map(([k, v]) => [k, b64(v)])),
    );

    for (const [name, error] of Object.entries(r.errors)) {
      expect(error, name).toMatchObject({ code: 'checkpoint' });
      expect(error!.message, name).toMatch(/^VAE\.load: .*nothing was loaded: the model is unchanged/);
    }
    const m = (name: string) => r.errors[name]!.message;
    expect(m('empty')).toMatch(/truncated: file has 0 bytes/);
    expect(m('truncatedBody')).toMatch(/truncated: tensor .* ends at byte \d+ but the data section has \d+ bytes/);
    expect(m('truncatedHeader')).toMatch(/truncated: header declares \d+ bytes but only 32 bytes follow/);
    expect(m('notJson')).toMatch(/header is not valid JSON/);
    expect(m('otherSizes')).toMatch(/checkpoint is for a 784-32-\d+ model, this model is 784-16-4/);
    expect(m('missingTensor')).toMatch(/missing tensor "fc4.bias"/);
    expect(m('wrongShape')).toMatch(/"fc3.bias" has shape \[4,4\], expected \[16\]/);
    expect(m('wrongDtype')).toMatch(/"fc3.bias" is F64, expected F32/);
    expect(m('nanWeight')).toMatch(/"fc3.bias" holds a non-finite value/);
    expect(m('halfOptimizer')).toMatch(
      /has 19 of the 20 Adam moment tensors, missing "optimizer.exp_avg_sq.fc1.weight": a resumable checkpoint holds every/,
    );
    expect(m('oneFirstMomentMissing')).toMatch(
      /has 19 of the 20 Adam moment tensors, missing "optimizer.exp_avg.fc4.bias"/,
    );
    expect(m('negativeSecondMoment')).toMatch(
      /"optimizer.exp_avg_sq.fc3.bias" holds -0.5 at index 2: a second moment \(a mean of squares\) cannot be negative/,
    );
    expect(m('infiniteFirstMoment')).toMatch(/"optimizer.exp_avg.fc3.bias" holds a non-finite value/);
    expect(m('badStep')).toMatch(/step "-3" is not a step count/);
    expect(m('stepPastU32')).toMatch(/step "4294967296" is not a step count \(an integer from 0 to 4294967295\)/);
    expect(m('badEpoch')).toMatch(/metadata epoch "ten" is not an epoch count/);
    expect(r.staticLoad).toMatchObject({ code: 'checkpoint' });
    expect(r.implied.zeroWidthFc21).toMatchObject({
      code: 'checkpoint',
      message: expect.stringMatching(
        /^VAE\.load: checkpoint declares a 1-1-2147483648 model, which this engine cannot build: size L \(latent dimensions\) must be a whole number from 1 to 1024/,
      ),
    });
    expect(r.implied.weightsMissing).toMatchObject({
      code: 'checkpoint',
      message: expect.stringMatching(
        /^VAE\.load: checkpoint declares a 1-1-1024 model, whose weights take 20500 bytes, but the file holds only \d+:/,
      ),
    });
    expect(r.notBytes).toMatchObject({ code: 'invalid-input' });
    expect(r.untouched).toBe(true);
  });
});
