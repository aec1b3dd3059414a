/**
 * `npm run train -- --runtime node`: the same run on Dawn's WebGPU in the CLI's own process,
 * with no browser to be found (WEBGPU_VAE_CHROME names nothing), writing what the Chromium
 * runtime writes; and a run resumed on the other runtime, which must continue as if it had
 * never changed runtime.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir, tsx } from './cli';
import { decodePngGray } from './png';

const NO_BROWSER = { WEBGPU_VAE_CHROME: '/nonexistent' };
const SMALL = ['--train-limit', '2048', '--test-limit', '512'];
const TINY = ['--train-limit', '512', '--test-limit', '256'];

function train(args: string[], env: Record<string, string> = {}) {
  return spawnSync(tsx, ['src/cli/train.ts', ...args], {
    encoding: 'utf8',
    timeout: 280_000,
    env: { ...process.env, ...env },
  });
}

const metrics = (out: string) =>
  readFileSync(join(out, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as { epoch: number; trainLoss: number; testLoss: number });

describe('npm run train -- --runtime node', () => {
  it('trains with no browser and writes the checkpoint, metrics and images', () => {
    const out = tempDir();
    const r = train(['--runtime', 'node', '--epochs', '1', ...SMALL, '--out', out], NO_BROWSER);
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(
      /^webgpu-vae: MNIST on .+ \[software \(fallback\) adapter.*; Node [\d.]+, Dawn on lavapipe\]$/,
    );
    const test = Number(/Test set loss: ([\d.]+)/.exec(r.stdout)?.[1]);
    expect(test).toBeGreaterThan(150); // 2048 images, one epoch: learning, far from trained
    expect(test).toBeLessThan(300);
    expect(metrics(out)).toEqual([{ epoch: 1, trainLoss: expect.any(Number), testLoss: expect.any(Number) }]);
    expect(existsSync(join(out, 'checkpoint.safetensors'))).toBe(true);
    for (const png of ['sample_1.png', 'reconstruction_1.png']) {
      const image = decodePngGray(readFileSync(join(out, png)));
      expect(image.width * image.height, png).toBeGreaterThan(28 * 28 * 8);
    }
  }, 300_000);

  it('refuses --images, naming --runtime chromium, and --adapter without --runtime node', () => {
    const images = train(['--runtime', 'node', '--images', tempDir(), '--out', tempDir()], NO_BROWSER);
    expect(images.status).toBe(2);
    expect(images.stderr).toMatch(/--images .*use --runtime chromium/);
    const adapter = train(['--adapter', 'lavapipe', '--out', tempDir()], NO_BROWSER);
    expect(adapter.status).toBe(2);
    expect(adapter.stderr).toMatch(/--adapter .*pass --runtime node/);
  }, 120_000);

  it('continues a Chromium run on Node (both SwiftShader) exactly as two epochs on Chromium', () => {
    const straight = tempDir();
    const a = train(['--epochs', '2', ...TINY, '--out', straight]);
    expect(a.status, a.stderr).toBe(0);
    const split = tempDir();
    const first = train(['--epochs', '1', ...TINY, '--out', split]);
    expect(first.status, first.stderr).toBe(0);
    const second = train(
      [
        '--runtime',
        'node',
        '--adapter',
        'swiftshader',
        '--epochs',
        '2',
        ...TINY,
        '--out',
        split,
        '--resume',
        join(split, 'checkpoint.safetensors'),
      ],
      NO_BROWSER,
    );
    expect(second.status, second.stderr).toBe(0);
    expect(second.stdout).toMatch(/Dawn on swiftshader/);
    // Same compiler on both sides (SwiftShader), so the same bits: metrics.jsonl keeps full precision.
    expect(metrics(split)).toEqual(metrics(straight));
    expect(readFileSync(join(split, 'checkpoint.safetensors'))).toEqual(
      readFileSync(join(straight, 'checkpoint.safetensors')),
    );
  }, 600_000);
});
