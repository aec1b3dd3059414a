/**
 * `npm run train -- --images DIR` end to end, as a user runs it: a folder of drawn shapes (three
 * classes, with bad files among them) decoded in the headless page, trained for an epoch, the
 * bad files named on stderr and the counts on stdout, the images written at the chosen size. And
 * its refusals: bad options, a missing folder, a folder with nothing usable or one class. Node
 * reads only what could be an image: a link back up the tree is not followed, a non-image name is not read.
 */
import { mkdirSync, readFileSync, renameSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { HELD_OUT_RULE } from '../src/data/image-folder';
import { readSafetensors } from '../src/io/safetensors';
import { tempDir, train } from './cli';
import { decodePngGray } from './png';
import { BAD_FILES, FORTY_AT_16, shapeRunArgs, writeShapeFolder } from './shapes';

describe('npm run train -- --images DIR', () => {
  it('trains an epoch on a folder of shapes, naming each bad file and counting what it used', () => {
    const dir = join(tempDir(), 'shapes');
    writeShapeFolder(dir, 40);
    // A link back to the folder (a loop: followed, it would add every image again, ~40 levels
    // deep) and a non-image file larger than an image may be: skipped by name, unread.
    symlinkSync('..', join(dir, 'circle', 'loop'));
    writeFileSync(join(dir, 'square', 'video.mp4'), '');
    truncateSync(join(dir, 'square', 'video.mp4'), 64 * 1024 * 1024);
    const out = tempDir();
    const r = train([...shapeRunArgs(dir, out), '--log-interval', '1']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(`webgpu-vae: ${dir}: ${FORTY_AT_16}`);
    expect(r.stdout).toMatch(
      /split: test images are every 10th usable image of each class by sorted file name, plus the last image of a class of 2 to 9; 7 files skipped/,
    );
    expect(r.stderr).toContain(
      `webgpu-vae: skipped ${join(dir, 'circle/loop')}: a link to a folder that contains it (a loop): not followed\n`,
    );
    expect(r.stderr).toContain(
      `webgpu-vae: skipped ${join(dir, 'square/video.mp4')}: unsupported file type (the reader takes .png, .jpg, .jpeg)\n`,
    );
    for (const [path, bad] of Object.entries(BAD_FILES)) {
      const line = r.stderr.split('\n').find((l) => l.startsWith(`webgpu-vae: skipped ${join(dir, path)}: `));
      expect(line, `${path} named in:\n${r.stderr}`).toBeDefined();
      expect(line).toMatch(bad.reason);
    }
    expect(r.stderr).not.toMatch(/DS_Store/);
    // The reference's log over 108 images in batches of 32: 4 batches, the last partial.
    expect(r.stdout).toMatch(/^Train Epoch: 1 \[0\/108 \(0%\)\]\tLoss: /m);
    expect(r.stdout.split('\n').filter((l) => l.startsWith('Train Epoch'))).toHaveLength(4);
    const first = Number(/Loss: ([\d.]+)/.exec(r.stdout)![1]);
    const average = Number(/Average loss: ([\d.]+)/.exec(r.stdout)![1]);
    const test = Number(/Test set loss: ([\d.]+)/.exec(r.stdout)![1]);
    // 256 pixels: an untrained decoder's BCE is about 256·ln 2 ≈ 177; the epoch learns from there.
    expect(first).toBeGreaterThan(150);
    expect(average).toBeLessThan(first);
    expect(Number.isFinite(test) && test > 0).toBe(true);

    // Grids of 16×16 cells with 2-pixel padding: 8 wide.
    const recon = decodePngGray(readFileSync(join(out, 'reconstruction_1.png')));
    expect([recon.width, recon.height]).toEqual([2 + 8 * 18, 2 + 2 * 18]);
    const samples = decodePngGray(readFileSync(join(out, 'sample_1.png')));
    expect([samples.width, samples.height]).toEqual([2 + 8 * 18, 2 + 8 * 18]);
    // The top row is the first 8 test images, round-robin over the classes: each drawn, so not blank.
    for (let k = 0; k < 8; k++) {
      let ink = 0;
      for (let y = 0; y < 16; y++)
        for (let x = 0; x < 16; x++) ink += Number(recon.pixels[(2 + y) * recon.width + 2 + k * 18 + x] > 128);
      expect(ink, `test image ${k}`).toBeGreaterThan(3);
    }
    const ckpt = readSafetensors(readFileSync(join(out, 'checkpoint.safetensors')));
    expect(ckpt.tensors.get('fc1.weight')?.shape).toEqual([400, 256]);
    expect(ckpt.metadata.dataset).toBe(dir);
    // How the images were decoded is the run's too: a resume compares it.
    expect([ckpt.metadata.image_size, ckpt.metadata.fit]).toEqual(['16', 'fit']);

    // Another --image-size cannot load the model: the refusal names the flag that can.
    const checkpoint = join(out, 'checkpoint.safetensors');
    const bigger = train(['--images', dir, '--resume', checkpoint, '--epochs', '2', '--out', out]);
    expect(bigger.status).toBe(1);
    expect(bigger.stderr).toMatch(
      /is for a 256-400-20 model, this model is 784-400-20.*\(it was trained on 16×16 images: pass --image-size 16 to continue it\)/,
    );
    // Another folder and --fit continue, each said with the flags of an --images run.
    const other = join(tempDir(), 'other');
    writeShapeFolder(other, 20, false);
    const moved = train([
      '--images',
      other,
      '--image-size',
      '16',
      '--fit',
      'stretch',
      '--resume',
      checkpoint,
      '--epochs',
      '2',
      '--batch-size',
      '32',
      '--out',
      tempDir(),
    ]);
    expect(moved.status, moved.stderr).toBe(0);
    expect(moved.stderr).toContain(
      `was trained with --images ${dir}; this run uses --images ${other} (pass --images ${dir} to continue it as it was)`,
    );
    expect(moved.stderr).toContain(
      'was trained with --fit fit; this run uses --fit stretch, so the same files become other images (pass --fit fit to continue it as it was)',
    );
    expect(moved.stdout).toMatch(/====> Epoch: 2 Average loss/);
  });

  it("records a conditional run's class names, and refuses to resume it on a folder whose classes were renamed", () => {
    const dir = join(tempDir(), 'named');
    writeShapeFolder(dir, 12, false);
    const out = tempDir();
    const checkpoint = join(out, 'checkpoint.safetensors');
    const first = train([
      '--images',
      dir,
      '--image-size',
      '8',
      '--conditional',
      '--epochs',
      '1',
      '--batch-size',
      '16',
      '--out',
      out,
    ]);
    expect(first.status, first.stderr).toBe(0);
    expect(readSafetensors(readFileSync(checkpoint)).metadata.class_names).toBe('["circle","cross","square"]');
    // Label 0 is still the first sorted folder, but it names another class: training on would relabel it.
    renameSync(join(dir, 'circle'), join(dir, 'Circle'));
    const renamed = train([
      '--images',
      dir,
      '--image-size',
      '8',
      '--resume',
      checkpoint,
      '--epochs',
      '2',
      '--batch-size',
      '16',
      '--out',
      out,
    ]);
    expect(renamed.status, renamed.stdout).toBe(1);
    expect(renamed.stderr).toContain(
      `${checkpoint}: it was trained on the classes "circle", "cross", "square" (label 0, 1, …), ` +
        'and this folder\'s classes are "Circle", "cross", "square": a label would mean another class',
    );
    expect(renamed.stdout).not.toMatch(/Epoch: 2/);
  });

  it('uses train/ and test/ subfolders as the splits, and names a class folder with no usable image', () => {
    const dir = join(tempDir(), 'split');
    writeShapeFolder(join(dir, 'train'), 12, false);
    writeShapeFolder(join(dir, 'test'), 3, false);
    mkdirSync(join(dir, 'test', 'blank'));
    writeFileSync(join(dir, 'test', 'blank', 'x.png'), new Uint8Array(0));
    const out = tempDir();
    const r = train(['--images', dir, '--epochs', '1', '--batch-size', '16', '--out', out]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('36 training and 9 test images of 28×28 (center-crop), 3 classes');
    expect(r.stdout).toContain('split: train/ and test/ subfolders; 1 file skipped');
    expect(r.stderr).toContain(`skipped ${join(dir, 'test/blank/x.png')}: empty file`);
    expect(decodePngGray(readFileSync(join(out, 'sample_1.png'))).width).toBe(242);
  });

  it('refuses a folder it cannot train on, saying why', () => {
    const missing = train(['--images', '/nonexistent/images', '--epochs', '1', '--out', tempDir()]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(
      /--images \/nonexistent\/images: no such folder; pass a folder with one subfolder of PNG or JPEG images per class/,
    );

    const bad = join(tempDir(), 'bad');
    for (const [path, b] of Object.entries(BAD_FILES)) {
      mkdirSync(join(bad, path, '..'), { recursive: true });
      writeFileSync(join(bad, path), b.bytes());
    }
    // Files Node skips before decoding count too: one above the size limit (sparse) and a dangling link.
    writeFileSync(join(bad, 'circle', 'huge.png'), '');
    truncateSync(join(bad, 'circle', 'huge.png'), 40 * 1024 * 1024);
    symlinkSync('nowhere.png', join(bad, 'square', 'gone.png'));
    // A link out of the folder is not followed: to / it would walk the disk.
    symlinkSync('/', join(bad, 'circle', 'disk'));
    const none = train(['--images', bad, '--epochs', '1', '--out', tempDir()]);
    expect(none.status).toBe(1);
    expect(none.stderr).toMatch(/no usable image \(8 files skipped\); put the images in one subfolder per class/);
    expect(none.stderr).toMatch(
      /\n  skipped circle\/disk: a link to \/, outside the folder: not followed \(copy the images into the folder to use them\)/,
    );
    // Each bad file named in the refusal, with its reason.
    for (const [path, b] of Object.entries(BAD_FILES))
      expect(none.stderr).toMatch(new RegExp(`\n  skipped ${path}: .*${b.reason.source}`));
    expect(none.stderr).toMatch(/\n  skipped circle\/huge\.png: 41943040 bytes is more than 33554432/);
    expect(none.stderr).toMatch(/\n  skipped square\/gone\.png: cannot read it \(ENOENT\)/);

    const one = join(tempDir(), 'one');
    writeShapeFolder(one, 4, false);
    for (const shape of ['cross', 'square'])
      for (let i = 0; i < 4; i++) writeFileSync(join(one, shape, `00${i}.png`), 'oops');
    const single = train(['--images', one, '--epochs', '1', '--out', tempDir()]);
    expect(single.status).toBe(1);
    expect(single.stderr).toMatch(
      /only one class has usable images \("circle"\); a dataset needs at least two classes/,
    );

    // train/ and test/ whose test images are all bad stays that layout (not one class "train" of a held-out split).
    const split = join(tempDir(), 'split');
    writeShapeFolder(join(split, 'train'), 3, false);
    for (const shape of ['circle', 'cross']) {
      mkdirSync(join(split, 'test', shape), { recursive: true });
      writeFileSync(join(split, 'test', shape, '0.png'), 'oops');
    }
    const noTest = train(['--images', split, '--epochs', '1', '--out', tempDir()]);
    expect(noTest.status).toBe(1);
    expect(noTest.stderr).toMatch(/: no usable test image under test\/\n/);
  });

  it('refuses bad options before starting, and --help documents the options', () => {
    const help = train(['--help'], 60_000);
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/--images DIR +a folder of PNG or JPEG images, one subfolder per class/);
    expect(help.stdout).toMatch(/--image-size N +--images: the side of the square images, 4\.\.256 \(default 28\)/);
    expect(help.stdout).toMatch(/--fit RULE +--images: center-crop/);
    // The held-out rule in the help is the one isHeldOut draws (HELD_OUT_RULE), however it wraps.
    expect(help.stdout.replace(/\s+/g, ' ')).toContain(`otherwise the test images are ${HELD_OUT_RULE}.`);
    for (const [args, message] of [
      [['--images', 'x', '--data', 'y'], /--images replaces --dataset and --data/],
      [['--image-size', '28'], /--image-size and --fit apply to --images DIR only/],
      [['--images', 'x', '--fit', 'zoom'], /--fit must be center-crop, fit, stretch, got "zoom"/],
      [['--images', 'x', '--image-size', '300'], /--image-size must be an integer from 4 to 256, got "300"/],
    ] as const) {
      const r = train([...args, '--out', tempDir()]);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(message);
    }
  });
});
