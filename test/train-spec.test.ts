/**
 * `npm run train -- --model FILE.json`: a spec whose shapes do not chain is refused before
 * anything starts, naming the layer; the LeakyReLU spec trains, and its checkpoint
 * holds the spec (metadata `model`) and nn.Sequential's names; a resume asking for another model
 * is refused, naming both; PyTorch's module built from the checkpoint's spec (scripts/vae_spec.py)
 * loads it strictly and gives the engine's test loss.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readSafetensors } from '../src/io/safetensors';
import { parseSpec } from '../src/model/spec';
import { python, tempDir, train } from './cli';

const LEAKY = {
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

function specFile(spec: unknown): string {
  const file = join(tempDir(), 'model.json');
  writeFileSync(file, JSON.stringify(spec));
  return file;
}

describe('train --model', () => {
  it('refuses a spec whose shapes do not chain, naming the layer, before it starts', () => {
    const bad = { ...LEAKY, encoder: [...LEAKY.encoder.slice(0, 3), ['Linear', 500, 256], ['LeakyReLU', 0.2]] };
    const out = tempDir();
    const r = train(['--model', specFile(bad), '--epochs', '1', '--out', out], 120_000);
    expect(r.status, r.stderr).not.toBe(0);
    expect(r.stderr).toMatch(/encoder\[3\] \(Linear\) reads 500 features, got shape \[512\]/);
    expect(r.stdout).not.toMatch(/Train Epoch/);
  });

  it("trains the LeakyReLU spec; its checkpoint holds the spec and nn.Sequential's names; another model's resume is refused", () => {
    const out = tempDir();
    const r = train(
      ['--model', specFile(LEAKY), '--epochs', '1', '--train-limit', '256', '--test-limit', '2000', '--out', out],
      600_000,
    );
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/====> Epoch: 1 Average loss: \d+\.\d{4}/);
    const file = join(out, 'checkpoint.safetensors');
    const { tensors, metadata } = readSafetensors(new Uint8Array(readFileSync(file)));
    expect(JSON.parse(metadata.model!)).toEqual(parseSpec(LEAKY));
    const names = [...tensors.keys()].filter((n) => !n.includes('.exp_avg'));
    expect(names).toEqual(
      expect.arrayContaining([
        'encoder.1.weight',
        'encoder.3.bias',
        'fc_mu.weight',
        'fc_logvar.bias',
        'decoder.2.weight',
      ]),
    );
    expect(tensors.get('encoder.1.weight')!.shape).toEqual([512, 784]);
    expect(names.some((n) => n.startsWith('fc1'))).toBe(false);

    // The same test images in PyTorch: its sampled z differs from the engine's, so the figures agree
    // to within the spread of the noise over 2,000 images, not bit for bit.
    const engineLoss = Number(/====> Test set loss: (\d+\.\d+)/.exec(r.stdout)![1]);
    const torch = python(['scripts/load_checkpoint.py', file, '--limit', '2000']);
    expect(torch.status, torch.stderr).toBe(0);
    expect(torch.stdout).toMatch(/load_state_dict\(strict=True\)/);
    const mean = Number(/mean (\d+\.\d+)/.exec(torch.stdout)![1]);
    expect(Math.abs(mean - engineLoss), torch.stdout).toBeLessThan(0.5);

    const refused = train(['--resume', file, '--model', 'mlp', '--epochs', '2', '--out', tempDir()], 120_000);
    expect(refused.status).not.toBe(0);
    expect(refused.stderr).toMatch(
      /it is the model \{"input":\[1,28,28\].*LeakyReLU.*, and this run asks for the mlp preset \(784-400-20\)/,
    );
  });
});
