/**
 * CIFAR-10 folders in its binary format, written by the tests: each record a label byte and the
 * R, G and B planes of a 32×32 image.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const CLASS_NAMES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];

/**
 * `count` records: record i has label i % 10, and its image is a square of one colour (red,
 * green or blue by label) on a background of another, so its planes differ from each other.
 */
export function cifarRecords(count: number, first = 0): Uint8Array {
  const out = new Uint8Array(count * 3073);
  for (let i = 0; i < count; i++) {
    const n = first + i;
    const label = n % 10;
    const at = i * 3073;
    out[at] = label;
    const fg = [0, 1, 2].map((c) => (c === label % 3 ? 230 : 20));
    const bg = [0, 1, 2].map((c) => (c === (label + 1) % 3 ? 180 : 40 + (n % 7)));
    for (let c = 0; c < 3; c++)
      for (let y = 0; y < 32; y++)
        for (let x = 0; x < 32; x++) {
          const inside = Math.abs(x - 16 + (n % 5)) < 8 && Math.abs(y - 16 + (n % 3)) < 8;
          out[at + 1 + c * 1024 + y * 32 + x] = inside ? fg[c] : bg[c];
        }
  }
  return out;
}

/** The six batch files (`perBatch` records each, test_batch `testCount`) and batches.meta.txt. */
export function writeCifarFolder(dir: string, perBatch: number, testCount = perBatch, meta = true): void {
  mkdirSync(dir, { recursive: true });
  for (let b = 1; b <= 5; b++)
    writeFileSync(join(dir, `data_batch_${b}.bin`), cifarRecords(perBatch, (b - 1) * perBatch));
  writeFileSync(join(dir, 'test_batch.bin'), cifarRecords(testCount, 5 * perBatch));
  if (meta) writeFileSync(join(dir, 'batches.meta.txt'), CLASS_NAMES.join('\n') + '\n\n');
}
