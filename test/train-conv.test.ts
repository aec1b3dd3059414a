/**
 * `npm run train -- --model conv`: the conv preset trains on MNIST's (1, 28, 28) through the CLI;
 * its checkpoint holds the preset's spec (metadata `model`) and the module's nn.Sequential names
 * and PyTorch's weight layouts; PyTorch's module built from that spec (scripts/vae_spec.py)
 * loads it strictly and gives the engine's test loss. The same for `--model conv-bn`, whose
 * checkpoint holds BatchNorm2d's running statistics too, which PyTorch evaluates with.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readSafetensors } from '../src/io/safetensors';
import { modelSizes } from '../src/model/spec';
import { python, tempDir, train } from './cli';

describe('train --model conv', () => {
  it("trains; its checkpoint holds the preset's spec and names, and PyTorch's module gives its test loss", () => {
    const out = tempDir();
    const r = train(
      ['--model', 'conv', '--epochs', '1', '--train-limit', '256', '--test-limit', '2000', '--out', out],
      900_000,
    );
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/====> Epoch: 1 Average loss: \d+\.\d{4}/);
    const file = join(out, 'checkpoint.safetensors');
    const { tensors, metadata } = readSafetensors(new Uint8Array(readFileSync(file)));
    expect(JSON.parse(metadata.model!)).toEqual(modelSizes('conv', { input: [1, 28, 28] }).spec);
    const shapes = Object.fromEntries([...tensors].map(([n, t]) => [n, t.shape]));
    expect(shapes).toMatchObject({
      'encoder.0.weight': [32, 1, 4, 4],
      'encoder.2.weight': [64, 32, 4, 4],
      'encoder.5.weight': [256, 3136],
      'fc_mu.weight': [20, 256],
      'decoder.2.weight': [3136, 256],
      'decoder.5.weight': [64, 32, 4, 4],
      'decoder.7.weight': [32, 1, 4, 4],
      'decoder.7.bias': [1],
    });

    // The same test images in PyTorch: its sampled z differs from the engine's, so the figures agree
    // to within the spread of the noise over 2,000 images, not bit for bit.
    const engineLoss = Number(/====> Test set loss: (\d+\.\d+)/.exec(r.stdout)![1]);
    const torch = python(['scripts/load_checkpoint.py', file, '--limit', '2000']);
    expect(torch.status, torch.stderr).toBe(0);
    expect(torch.stdout).toMatch(/load_state_dict\(strict=True\)/);
    const mean = Number(/mean (\d+\.\d+)/.exec(torch.stdout)![1]);
    expect(Math.abs(mean - engineLoss), torch.stdout).toBeLessThan(0.5);
  });

  it("--model conv-bn trains; PyTorch's module loads its parameters and running statistics strictly and gives its test loss", () => {
    const out = tempDir();
    // On Node's runtime: the conv run above covers the browser, and this one starts without one.
    const r = train(
      [
        '--runtime',
        'node',
        '--model',
        'conv-bn',
        '--epochs',
        '1',
        '--train-limit',
        '256',
        '--test-limit',
        '256',
        '--out',
        out,
      ],
      900_000,
    );
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/====> Epoch: 1 Average loss: \d+\.\d{4}/);
    const file = join(out, 'checkpoint.safetensors');
    const { tensors, metadata } = readSafetensors(new Uint8Array(readFileSync(file)));
    expect(JSON.parse(metadata.model!)).toEqual(modelSizes('conv-bn', { input: [1, 28, 28] }).spec);
    // Two training batches of 128: each BatchNorm2d counted both, and moved its statistics off 0 and 1.
    for (const bn of ['encoder.1', 'encoder.4', 'decoder.6']) {
      const tracked = tensors.get(`${bn}.num_batches_tracked`)!;
      expect([tracked.dtype, tracked.shape, [...(tracked.data as BigInt64Array)]]).toEqual(['I64', [], [2n]]);
      const mean = tensors.get(`${bn}.running_mean`)!.data as Float32Array;
      const variance = tensors.get(`${bn}.running_var`)!.data as Float32Array;
      expect(mean.some((v) => v !== 0) && variance.some((v) => v !== 1), bn).toBe(true);
      expect(tensors.has(`optimizer.exp_avg.${bn}.running_mean`), bn).toBe(false);
    }

    const engineLoss = Number(/====> Test set loss: (\d+\.\d+)/.exec(r.stdout)![1]);
    const torch = python(['scripts/load_checkpoint.py', file, '--limit', '256']);
    expect(torch.status, torch.stderr).toBe(0);
    expect(torch.stdout).toMatch(/load_state_dict\(strict=True\)/);
    const mean = Number(/mean (\d+\.\d+)/.exec(torch.stdout)![1]);
    expect(Math.abs(mean - engineLoss), torch.stdout).toBeLessThan(0.5);
  });
});
