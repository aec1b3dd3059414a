/**
 * The model's size limits hold on every path, checkpoints included: a checkpoint is a few
 * kilobytes of shapes, and the model it implies is what a host allocates (a conditional
 * model's sample grid alone is 8C·(L + C) floats). Each size (D, every hidden width, the
 * depth, L, C) is refused one past its limit, naming the size and the limit, by the library
 * function every host calls on a checkpoint and by the CLI before it launches anything.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SafetensorsError, writeSafetensors, type Tensor } from '../src/io/safetensors';
import { checkpointSizes } from '../src/model/checkpoint';
import { checkSizes } from '../src/model/graph';
import { CLASSES_MAX, INPUT_SIZE_MAX, MAX_DEPTH, SETTING_RANGES } from '../src/model/settings';
import { tempDir, train } from './cli';

/**
 * A state_dict of zeros with PyTorch's names and shapes for a D-…hidden…-L VAE of C classes,
 * written by hand (not from the engine's graph, which refuses these sizes).
 */
function vaeCheckpoint(D: number, hidden: number[], L: number, C = 0): Uint8Array {
  const n = hidden.length;
  const tensors: Record<string, Tensor> = {};
  const linear = (name: string, out: number, inp: number) => {
    tensors[`${name}.weight`] = { dtype: 'F32', shape: [out, inp], data: new Float32Array(out * inp) };
    tensors[`${name}.bias`] = { dtype: 'F32', shape: [out], data: new Float32Array(out) };
  };
  const widths = [D + C, ...hidden];
  for (let i = 0; i < n; i++) linear(`fc${i + 1}`, widths[i + 1], widths[i]);
  linear(`fc${n + 1}1`, L, hidden[n - 1]);
  linear(`fc${n + 1}2`, L, hidden[n - 1]);
  const back = [L + C, ...[...hidden].reverse(), D];
  for (let i = 0; i <= n; i++) linear(`fc${n + 2 + i}`, back[i + 1], back[i]);
  return writeSafetensors(tensors);
}

function refusal(bytes: Uint8Array): string {
  try {
    checkpointSizes(bytes);
  } catch (e) {
    expect(e).toBeInstanceOf(SafetensorsError);
    return (e as Error).message;
  }
  throw new Error('the checkpoint was accepted');
}

describe('size limits', () => {
  it('a checkpoint one past any limit is refused, naming the size and the limit; at the limit it is accepted', () => {
    const [, hiddenMax] = SETTING_RANGES.hidden;
    const [, latentMax] = SETTING_RANGES.latent;
    // The case: about 40 KB of shapes that ask for a 4096-class sample grid.
    const classes = vaeCheckpoint(784, [1], 4, 4096);
    expect(classes.length).toBeLessThan(50_000);
    expect(refusal(classes)).toMatch(
      new RegExp(
        `size classes must be 0 \\(an unconditional VAE\\) or a whole number from 2 to ${CLASSES_MAX}, got 4096`,
      ),
    );
    expect(refusal(vaeCheckpoint(784, [1], 4, CLASSES_MAX + 1))).toMatch(
      /got 1025\. The file is corrupt or edited, or its model is past the limits every host trains within: load a checkpoint within them$/,
    );
    expect(refusal(vaeCheckpoint(INPUT_SIZE_MAX + 1, [1], 1))).toMatch(
      /size D \(pixels per image\) must be a whole number from 1 to 65536, got 65537\./,
    );
    expect(refusal(vaeCheckpoint(1, [1, hiddenMax + 1], 1))).toMatch(
      /size hidden\[1\] \(a hidden width\) must be a whole number from 1 to 8192, got 8193/,
    );
    expect(refusal(vaeCheckpoint(1, [1], latentMax + 1))).toMatch(
      /size L \(latent dimensions\) must be a whole number from 1 to 1024, got 1025/,
    );
    expect(refusal(vaeCheckpoint(1, Array(MAX_DEPTH + 1).fill(1), 1))).toMatch(/a VAE has 1 to 8 hidden layers, got 9/);

    // At the limits: the same shapes, one less.
    expect(checkpointSizes(vaeCheckpoint(1025, [1], 4, CLASSES_MAX)).sizes.classes).toBe(CLASSES_MAX);
    expect(checkpointSizes(vaeCheckpoint(INPUT_SIZE_MAX, [1], 1)).sizes.D).toBe(INPUT_SIZE_MAX);
    expect(checkpointSizes(vaeCheckpoint(1, [1, hiddenMax], latentMax)).sizes).toMatchObject({
      hidden: [1, hiddenMax],
      L: latentMax,
    });
    expect(checkpointSizes(vaeCheckpoint(1, Array(MAX_DEPTH).fill(1), 1)).sizes.hidden).toHaveLength(MAX_DEPTH);
  });

  it('checkSizes refuses one class (a constant condition) and fractional sizes', () => {
    expect(() => checkSizes({ D: 4, hidden: [2], L: 1, classes: 1 })).toThrow(
      /size classes must be 0 .* from 2 to 1024, got 1/,
    );
    expect(() => checkSizes({ D: 4, hidden: [2.5], L: 1 })).toThrow(/hidden\[0\] .* got 2.5/);
  });

  it('the CLI refuses the 4096-class checkpoint on --resume before it launches anything', () => {
    const path = join(tempDir(), 'classes.safetensors');
    writeFileSync(path, vaeCheckpoint(784, [1], 4, 4096));
    // The sizes match the file's, so only the class limit stands between it and a 4096-row grid.
    const r = train(
      [
        '--resume',
        path,
        '--hidden',
        '1',
        '--latent',
        '4',
        '--epochs',
        '2',
        '--out',
        tempDir(),
        '--train-limit',
        '64',
        '--test-limit',
        '64',
      ],
      120_000,
    );
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toContain(
      `${path}: checkpoint declares a 784-1-4 (4096 classes) model, which this engine cannot build: size classes must be 0`,
    );
    expect(r.stdout).not.toMatch(/Train Epoch/);
  });
});
