/**
 * CIFAR-10's binary format: the pure reader on bytes, and the Node loader on folders the test
 * writes, with each way a folder can be wrong refused by a message that names the file.
 */
import { mkdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseCifarBatch, parseCifarMeta } from '../src/data/cifar';
import { loadCifar10 } from '../src/node/datasets';
import { describeDataset, limitDataset, loadPicked, valuesPerImage } from '../src/page/data';
import { cifarRecords, CLASS_NAMES, writeCifarFolder } from './cifar';
import { tempDir } from './temp';

describe('parseCifarBatch', () => {
  it('keeps each record’s label and its R, G, B planes as they are', () => {
    const bytes = cifarRecords(3);
    const b = parseCifarBatch(bytes, 'b.bin');
    expect(b.count).toBe(3);
    expect(Array.from(b.labels)).toEqual([0, 1, 2]);
    expect(b.pixels.length).toBe(3 * 3072);
    for (let i = 0; i < 3; i++)
      expect(b.pixels.subarray(i * 3072, (i + 1) * 3072)).toEqual(bytes.subarray(i * 3073 + 1, (i + 1) * 3073));
    // Record 1 (label 1): a green square on a blue background; the planes are R, then G, then B.
    const px = (c: number, y: number, x: number) => b.pixels[3072 + c * 1024 + y * 32 + x];
    expect([px(0, 16, 16), px(1, 16, 16), px(2, 16, 16)]).toEqual([20, 230, 20]);
    expect([px(0, 0, 0), px(1, 0, 0), px(2, 0, 0)]).toEqual([41, 41, 180]);
  });

  it('refuses a size that is not a whole number of records, an empty file and a label above 9', () => {
    const bytes = cifarRecords(2);
    expect(() => parseCifarBatch(bytes.subarray(0, 3073 + 100), 'x.bin')).toThrow(
      /^x\.bin: 3173 bytes is not a whole number of CIFAR-10 records \(3073 bytes each.*1 records and 100 bytes over/,
    );
    // CIFAR-100's records (two label bytes) do not divide either.
    expect(() => parseCifarBatch(new Uint8Array(3074 * 3), 'c100.bin')).toThrow(
      /CIFAR-100 records have two label bytes/,
    );
    expect(() => parseCifarBatch(new Uint8Array(0), 'e.bin')).toThrow(/^e\.bin: empty file/);
    const bad = bytes.slice();
    bad[3073] = 10;
    expect(() => parseCifarBatch(bad, 'l.bin')).toThrow(
      /^l\.bin: record 1 \(byte 3073\) has label 10; CIFAR-10's labels are 0 to 9/,
    );
    bad[3073] = 255;
    expect(() => parseCifarBatch(bad, 'l.bin')).toThrow(/has label 255/);
  });

  it('reads batches.meta.txt as ten names, blank lines dropped, and refuses another count', () => {
    expect(parseCifarMeta(CLASS_NAMES.join('\r\n') + '\r\n\r\n', 'm')).toEqual(CLASS_NAMES);
    expect(() => parseCifarMeta('cat\ndog\n', 'meta.txt')).toThrow(
      /^meta\.txt: names 2 classes, one a line; CIFAR-10 has 10/,
    );
  });
});

describe('loadCifar10', () => {
  it('reads the five training batches in order, the test batch and the class names', async () => {
    const dir = tempDir();
    writeCifarFolder(dir, 3, 4);
    const d = await loadCifar10(dir);
    expect(d.dir).toBe(dir);
    expect([d.train.count, d.train.rows, d.train.cols, d.train.pixels.length]).toEqual([15, 32, 32, 15 * 3072]);
    expect(Array.from(d.trainLabels.labels)).toEqual(Array.from({ length: 15 }, (_, i) => i % 10));
    expect([d.test.count, d.testLabels.count]).toEqual([4, 4]);
    expect(Array.from(d.testLabels.labels)).toEqual([5, 6, 7, 8]);
    expect(d.classNames).toEqual(CLASS_NAMES);
    // Batch 3's first image is record 6 of the stream, as the test wrote it.
    expect(d.train.pixels.subarray(6 * 3072, 7 * 3072)).toEqual(cifarRecords(1, 6).subarray(1));
  });

  it('reads the cifar-10-batches-bin folder inside --data, and has no names without the meta file', async () => {
    const dir = tempDir();
    writeCifarFolder(join(dir, 'cifar-10-batches-bin'), 1, 1, false);
    const d = await loadCifar10(dir);
    expect(d.dir).toBe(join(dir, 'cifar-10-batches-bin'));
    expect(d.classNames).toBeUndefined();
  });

  it('names the missing files, the file of the wrong size and the one with a bad label', async () => {
    const dir = tempDir();
    await expect(loadCifar10(join(dir, 'nope'))).rejects.toThrow(
      /cifar10: folder .*nope does not exist; check the --data path/,
    );
    writeCifarFolder(dir, 2);
    rmSync(join(dir, 'data_batch_4.bin'));
    rmSync(join(dir, 'test_batch.bin'));
    await expect(loadCifar10(dir)).rejects.toThrow(
      `cifar10: missing files in ${dir}:\n  data_batch_4.bin\n  test_batch.bin\nput CIFAR-10's binary version there`,
    );
    writeCifarFolder(dir, 2);
    truncateSync(join(dir, 'data_batch_2.bin'), 3073 * 2 - 1);
    await expect(loadCifar10(dir)).rejects.toThrow(
      `${join(dir, 'data_batch_2.bin')}: 6145 bytes is not a whole number`,
    );
    writeCifarFolder(dir, 2);
    const bad = cifarRecords(2);
    bad[0] = 12;
    writeFileSync(join(dir, 'test_batch.bin'), bad);
    await expect(loadCifar10(dir)).rejects.toThrow(`${join(dir, 'test_batch.bin')}: record 0 (byte 0) has label 12`);
    writeCifarFolder(dir, 2);
    writeFileSync(join(dir, 'batches.meta.txt'), 'cat\n');
    await expect(loadCifar10(dir)).rejects.toThrow(/batches\.meta\.txt: names 1 classes/);
    mkdirSync(join(dir, 'empty'));
    await expect(loadCifar10(join(dir, 'empty'))).rejects.toThrow(/missing files/);
  });
});

describe("the page's CIFAR-10 choice (picked files)", () => {
  const picked = (perBatch: number, meta = true) => [
    ...[1, 2, 3, 4, 5].map((b) => ({
      name: `data_batch_${b}.bin`,
      bytes: cifarRecords(perBatch, (b - 1) * perBatch),
    })),
    { name: 'test_batch.bin', bytes: cifarRecords(4, 100) },
    ...(meta ? [{ name: 'batches.meta.txt', bytes: new TextEncoder().encode(CLASS_NAMES.join('\n')) }] : []),
  ];

  it('is a colour dataset of 3×32×32 whose cut keeps whole images', async () => {
    const d = await loadPicked('cifar10', picked(2));
    expect([d.kind, d.name, d.channels, d.rows, d.cols, valuesPerImage(d)]).toEqual([
      'cifar10',
      'CIFAR-10',
      3,
      32,
      32,
      3072,
    ]);
    expect([d.train.count, d.test.count, d.labelClasses]).toEqual([10, 4, 10]);
    expect(d.classNames).toEqual(CLASS_NAMES);
    expect(d.train.pixels.subarray(3 * 3072, 4 * 3072)).toEqual(cifarRecords(1, 3).subarray(1));
    const cut = limitDataset(d, 3, 1);
    expect([cut.train.pixels.length, cut.test.pixels.length]).toEqual([3 * 3072, 3072]);
    expect(describeDataset(d)).toBe('CIFAR-10: 10 training and 4 test colour images of 32×32, with labels');
    expect((await loadPicked('cifar10', picked(1, false))).classNames).toEqual(DIGITS_AS_NAMES);
  });

  it('names the batch files not picked', async () => {
    await expect(loadPicked('cifar10', picked(1).slice(1, 4))).rejects.toThrow(
      /^missing data_batch_1\.bin, data_batch_5\.bin, test_batch\.bin: pick all six batch files/,
    );
  });
});

const DIGITS_AS_NAMES = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];
