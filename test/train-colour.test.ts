/**
 * Colour through `npm run train`: an image folder of coloured shapes with --channels 3 trained
 * by the conditional conv preset (its one-hot joined after Flatten), its checkpoint loaded into
 * PyTorch's module by load_checkpoint.py, which gives the engine's test loss on the same images;
 * CIFAR-10's binary files with --dataset cifar10 (in Chromium and on Dawn) with the default MLP;
 * every grid read back from outside as an RGB PNG; and the refusals of the colour options.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { RunData } from '../src/cli/data';
import { parseOptions, type TrainOptions } from '../src/cli/options';
import { decideResume } from '../src/cli/resume';
import { readSafetensors } from '../src/io/safetensors';
import { UsageError } from '../src/node/options';
import { python, tempDir, train } from './cli';
import { writeCifarFolder } from './cifar';
import { decodePng } from './png';
import { writeColourShapeFolder } from './shapes';

/** Whether some pixel of an RGB PNG has three different channel values (a grayscale image has none). */
function hasColour(png: ReturnType<typeof decodePng>): boolean {
  for (let p = 0; p < png.width * png.height; p++) {
    const [r, g, b] = png.pixels.subarray(3 * p, 3 * p + 3);
    if (r !== g && g !== b && r !== b) return true;
  }
  return false;
}

describe('colour images', () => {
  it('trains a folder of coloured shapes with --model conv --channels 3 --conditional, writes colour grids whose test images are the files, and PyTorch loads it', () => {
    const dir = join(tempDir(), 'colour');
    writeColourShapeFolder(dir, 32);
    const out = tempDir();
    const r = train([
      ...['--images', dir, '--channels', '3', '--image-size', '16', '--model', 'conv', '--conditional'],
      ...['--epochs', '1', '--batch-size', '16', '--out', out],
    ]);
    expect(r.status, r.stderr).toBe(0);
    // 32 per class, every 10th held out: 29 + 3 each.
    expect(r.stdout).toContain(`${dir}: 58 training and 6 test colour images of 16×16 (center-crop), 2 classes`);
    const first = Number(/Loss: ([\d.]+)/.exec(r.stdout)![1]);
    const average = Number(/Average loss: ([\d.]+)/.exec(r.stdout)![1]);
    // 768 values: an untrained decoder's BCE is about 768·ln 2 ≈ 532 plus the targets' own entropy.
    expect(first).toBeGreaterThan(400);
    expect(average).toBeLessThan(first);

    const file = join(out, 'checkpoint.safetensors');
    const ckpt = readSafetensors(readFileSync(file));
    // The conv preset's convs read the 3 colour planes; the 2 classes join its Linears, not the convs.
    expect(ckpt.tensors.get('encoder.0.weight')?.shape).toEqual([32, 3, 4, 4]);
    expect(ckpt.tensors.get('encoder.5.weight')?.shape).toEqual([256, 64 * 4 * 4 + 2]);
    expect(ckpt.tensors.get('decoder.0.weight')?.shape).toEqual([256, 20 + 2]);
    expect(ckpt.tensors.get('decoder.7.weight')?.shape).toEqual([32, 3, 4, 4]);
    expect(ckpt.metadata.channels).toBe('3');

    const recon = decodePng(readFileSync(join(out, 'reconstruction_1.png')));
    expect([recon.width, recon.height, recon.channels]).toEqual([2 + 8 * 18, 2 + 2 * 18, 3]);
    expect(hasColour(recon)).toBe(true);
    // One row of 8 per class.
    const samples = decodePng(readFileSync(join(out, 'sample_1.png')));
    expect([samples.width, samples.height, samples.channels]).toEqual([2 + 8 * 18, 2 + 2 * 18, 3]);
    expect(hasColour(samples)).toBe(true);
    // The top row holds the test images as decoded (round-robin: circle/009.png first, then
    // square/009.png): a 16×16 file at --image-size 16 comes back pixel for pixel, each channel
    // in its place, so the planes went R, G, B all the way through.
    for (const [k, file] of ['circle/009.png', 'square/009.png'].entries()) {
      const src = decodePng(readFileSync(join(dir, file)));
      let worst = 0;
      for (let y = 0; y < 16; y++)
        for (let x = 0; x < 16; x++)
          for (let c = 0; c < 3; c++) {
            const cell = recon.pixels[((2 + y) * recon.width + 2 + k * 18 + x) * 3 + c];
            worst = Math.max(worst, Math.abs(cell - src.pixels[(y * 16 + x) * 3 + c]));
          }
      expect(worst, file).toBeLessThanOrEqual(1);
    }

    // PyTorch's module of the checkpoint's spec, on the 6 test images (files 009, 019, 029 of each
    // class) as idx files of their R, G and B planes with their labels: load_state_dict(strict)
    // takes the file, and its test loss (z sampled by torch) is the engine's within the noise.
    const tests = ['circle', 'square'].flatMap((shape, label) =>
      ['009', '019', '029'].map((n) => ({ png: decodePng(readFileSync(join(dir, shape, `${n}.png`))), label })),
    );
    const planes = Buffer.alloc(tests.length * 768);
    tests.forEach(({ png }, i) => {
      for (let p = 0; p < 256; p++) for (let c = 0; c < 3; c++) planes[i * 768 + c * 256 + p] = png.pixels[3 * p + c]!;
    });
    const header = (magic: number, dims: number[]) =>
      Buffer.from(
        new Uint32Array(
          [magic, ...dims].map((v) => ((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >> 8) & 0xff00) | (v >>> 24)),
        ).buffer,
      );
    const images = join(out, 'test-images-idx3-ubyte');
    writeFileSync(images, Buffer.concat([header(0x803, [tests.length, 48, 16]), planes]));
    const labels = join(out, 'test-labels-idx1-ubyte');
    writeFileSync(labels, Buffer.concat([header(0x801, [tests.length]), Buffer.from(tests.map((t) => t.label))]));
    const torch = python(['scripts/load_checkpoint.py', file, '--images', images, '--labels', labels]);
    expect(torch.status, torch.stderr).toBe(0);
    expect(torch.stdout).toMatch(/load_state_dict\(strict=True\)/);
    const engineLoss = Number(/====> Test set loss: (\d+\.\d+)/.exec(r.stdout)![1]);
    const mean = Number(/mean (\d+\.\d+)/.exec(torch.stdout)![1]);
    expect(Math.abs(mean - engineLoss), torch.stdout).toBeLessThan(0.01 * engineLoss);
  });

  it('trains on CIFAR-10 binary files in Chromium and on Dawn, with colour grids', () => {
    const dir = tempDir();
    writeCifarFolder(dir, 20, 20);
    for (const runtime of ['chromium', 'node']) {
      const out = tempDir();
      const r = train([
        ...['--dataset', 'cifar10', '--data', dir, '--runtime', runtime],
        ...['--epochs', '1', '--batch-size', '25', '--out', out],
      ]);
      expect(r.status, `${runtime}: ${r.stderr}`).toBe(0);
      expect(r.stdout).toContain(
        `webgpu-vae: ${dir}: CIFAR-10, 100 training and 20 test colour images of 32×32 (airplane, automobile, bird,`,
      );
      expect(r.stdout).toMatch(/====> Test set loss: \d+\.\d{4}/);
      const ckpt = readSafetensors(readFileSync(join(out, 'checkpoint.safetensors')));
      expect(ckpt.tensors.get('fc1.weight')?.shape).toEqual([400, 3072]);
      expect(ckpt.metadata.channels).toBe('3');
      const recon = decodePng(readFileSync(join(out, 'reconstruction_1.png')));
      expect([recon.width, recon.channels]).toEqual([2 + 8 * 34, 3]);
      expect(hasColour(recon), runtime).toBe(true);
    }
  });

  it('refuses colour options that do not fit, before reading anything', () => {
    const refused = (args: string[]) => {
      try {
        parseOptions([...args, '--out', 'x']);
      } catch (e) {
        expect(e).toBeInstanceOf(UsageError);
        return (e as Error).message;
      }
      return expect.fail(`${args.join(' ')} was accepted`);
    };
    expect(refused(['--images', 'd', '--channels', '2'])).toBe('--channels must be 1 or 3, got "2"');
    expect(refused(['--channels', '3'])).toMatch(/^--channels applies to --images DIR/);
    expect(refused(['--dataset', 'cifar10', '--data', 'd', '--channels', '1'])).toBe(
      '--dataset cifar10 is colour (3 channels): drop --channels',
    );
    expect(refused(['--dataset', 'cifar10'])).toMatch(
      /^--dataset cifar10 reads CIFAR-10's binary files from a folder: pass --data DIR/,
    );
    expect(refused(['--images', 'd', '--channels', '3', '--image-size', '148'])).toBe(
      '--image-size 148 --channels 3: 3×148×148 = 65712 values per image is more than the 65536 a model takes; a side of at most 147 fits 3 channels',
    );
    expect(parseOptions(['--images', 'd', '--channels', '3', '--image-size', '147', '--out', 'x'])).toMatchObject({
      channels: 3,
    });
    expect(parseOptions(['--images', 'd', '--out', 'x'])).not.toHaveProperty('channels');
    // A conv spec that does not chain is refused as the options are read (28 → 14 → 6: 288 features, not 392).
    const spec = join(tempDir(), 'conv.json');
    writeFileSync(
      spec,
      JSON.stringify({
        input: [3, 28, 28],
        latent: 2,
        encoder: [
          ['Conv2d', 3, 4, 4, 2, 1],
          ['ReLU'],
          ['Conv2d', 4, 8, 5, 2, 1],
          ['ReLU'],
          ['Flatten'],
          ['Linear', 392, 16],
        ],
        decoder: [['Linear', 2, 2352]],
      }),
    );
    expect(refused(['--images', 'd', '--channels', '3', '--model', spec])).toMatch(
      /encoder\[5\] \(Linear\) reads 392 features, got shape \[288\]/,
    );
    // The conv preset on a folder's 3×18×18 images is refused once their shape is known, before a model is made.
    const images = { count: 0, rows: 18, cols: 18, pixels: new Uint8Array(0) };
    const data: RunData = {
      ...{ train: images, test: images, trainCount: 0, testCount: 0 },
      ...{ trainLabels: new Uint8Array(0), testLabels: new Uint8Array(0), rows: 18, cols: 18, channels: 3 },
      ...{ pixels: 972, classes: 0, dataset: 'd', title: 'd' },
    };
    expect(() =>
      decideResume(
        parseOptions(['--images', 'd', '--channels', '3', '--model', 'conv', '--out', 'x']) as TrainOptions,
        data,
      ),
    ).toThrow(
      /^--model: model spec: the conv preset reads images \(C, H, W\) with H and W divisible by 4 \(two stride-2 convs\), got \[3, 18, 18\]$/,
    );
    expect(parseOptions(['--dataset', 'cifar10', '--data', 'd', '--runtime', 'node', '--out', 'x'])).toMatchObject({
      dataset: 'cifar10',
    });
  });
});
