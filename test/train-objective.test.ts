/**
 * `npm run train` with the objective's options, as a user runs it: β with a KL warm-up prints the
 * objective beside the loss, each labelled; a learned-σ Gaussian with a warm-up that outlasts the
 * first epoch resumes exactly, taking its likelihood, σ, β and warm-up from the checkpoint when
 * the resume names none of them.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readSafetensors } from '../src/io/safetensors';
import { logFrom, tempDir, train } from './cli';

describe('npm run train: β, warm-up and the Gaussian likelihood', () => {
  it("--beta 4 --kl-warmup 3: the reference's lines, each with the objective beside it, labelled; metrics.jsonl has both", () => {
    const out = tempDir();
    const r = train([
      '--epochs',
      '1',
      '--train-limit',
      '512',
      '--test-limit',
      '256',
      '--log-interval',
      '1',
      '--beta',
      '4',
      '--kl-warmup',
      '3',
      '--out',
      out,
    ]);
    expect(r.status, r.stderr).toBe(0);
    const steps = r.stdout.split('\n').filter((l) => l.startsWith('Train Epoch'));
    expect(steps).toHaveLength(4);
    for (const line of steps)
      expect(line).toMatch(/^Train Epoch: 1 \[\d+\/512 \(\d+%\)\]\tLoss: \d+\.\d{6}\tObjective: \d+\.\d{6}$/);
    expect(r.stdout).toMatch(/^====> Epoch: 1 Average loss: \d+\.\d{4}$/m);
    expect(r.stdout).toMatch(
      /^====> Epoch: 1 Average objective \(recon \+ β·KL, β = 4, warmed up over 3 steps\): \d+\.\d{4}$/m,
    );
    expect(r.stdout).toMatch(/^====> Test set loss: \d+\.\d{4}$/m);
    expect(r.stdout).toMatch(/^====> Test set objective \(recon \+ β·KL, β = 4, after the warm-up\): \d+\.\d{4}$/m);
    const metrics = JSON.parse(readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim());
    expect(Object.keys(metrics)).toEqual(['epoch', 'trainLoss', 'testLoss', 'trainObjective', 'testObjective']);
    expect(metrics.testObjective, 'β = 4 weighs the (positive) KL more').toBeGreaterThan(metrics.testLoss);
    expect(readSafetensors(readFileSync(join(out, 'checkpoint.safetensors'))).metadata).toMatchObject({
      beta: '4',
      kl_warmup: '3',
    });
  });

  it('a learned-σ Gaussian with β = 2 warmed up over 15 steps resumes exactly, its objective taken from the checkpoint', () => {
    const straight = tempDir();
    const split = tempDir();
    const args = ['--train-limit', '640', '--test-limit', '256', '--log-interval', '1', '--seed', '5'];
    const objective = ['--likelihood', 'gaussian', '--sigma', 'learned', '--beta', '2', '--kl-warmup', '15'];
    const a = train([...args, ...objective, '--epochs', '2', '--out', straight]);
    expect(a.status, a.stderr).toBe(0);
    expect(a.stdout).toMatch(/784-400-20 gaussian learned σ: losses are negative log-densities in nats/);
    const first = train([...args, ...objective, '--epochs', '1', '--out', split]);
    expect(first.status, first.stderr).toBe(0);
    // 10 steps an epoch: the warm-up is still running when the first epoch's checkpoint is written.
    const b = train([...args, '--epochs', '2', '--resume', join(split, 'checkpoint.safetensors'), '--out', split]);
    expect(b.status, b.stderr).toBe(0);
    expect(b.stderr).not.toMatch(/warning/);
    expect(logFrom(2, b.stdout)).toEqual(logFrom(2, a.stdout).slice(4)); // epoch 1's four summaries are not repeated
    expect(readFileSync(join(split, 'metrics.jsonl'), 'utf8')).toBe(
      readFileSync(join(straight, 'metrics.jsonl'), 'utf8'),
    );
    expect(
      Buffer.compare(
        readFileSync(join(straight, 'checkpoint.safetensors')),
        readFileSync(join(split, 'checkpoint.safetensors')),
      ),
    ).toBe(0);

    // Told another β on resume, it says so, naming both.
    const c = train([
      ...args,
      '--epochs',
      '3',
      '--beta',
      '1',
      '--resume',
      join(split, 'checkpoint.safetensors'),
      '--out',
      split,
    ]);
    expect(c.status, c.stderr).toBe(0);
    expect(c.stderr).toMatch(
      /was trained with --beta 2; this run uses --beta 1 \(pass --beta 2 to continue it as it was\)/,
    );
  });
});
