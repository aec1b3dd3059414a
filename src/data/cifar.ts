/**
 * CIFAR-10's binary format ("CIFAR-10 binary version", the cifar-10-batches-bin folder). Pure TS,
 * like the idx reader, so any host can share the checks; the Node side finds and reads the files
 * (src/node/datasets.ts).
 *
 * A batch file is a run of records, each 1 label byte (0–9) and then 3,072 pixel bytes: the
 * 1,024 red values of the 32×32 image row by row, then the green, then the blue. That is planar
 * NCHW, the layout the engine keeps colour images in (as PyTorch's ToTensor gives them), so the
 * pixels are kept as they are, one image after another.
 */

export class CifarError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CifarError';
  }
}

export const CIFAR10 = {
  channels: 3,
  side: 32,
  classes: 10,
  /** One label byte and the three 32×32 planes. */
  recordBytes: 1 + 3 * 32 * 32,
  trainFiles: ['data_batch_1.bin', 'data_batch_2.bin', 'data_batch_3.bin', 'data_batch_4.bin', 'data_batch_5.bin'],
  testFile: 'test_batch.bin',
  /** One class name a line, label 0 first (absent: the labels have no names). */
  metaFile: 'batches.meta.txt',
  /** The folder CIFAR-10's archive unpacks to: a --data folder that holds it is read through it. */
  archiveFolder: 'cifar-10-batches-bin',
} as const;

/** A real batch holds 10,000 records (30,730,000 bytes); a file past this is not a CIFAR-10 batch. */
export const MAX_CIFAR_FILE_BYTES = 64 * 1024 * 1024;

export interface CifarBatch {
  count: number;
  /** count × 3 × 32 × 32 bytes, each image's R, G and B planes in turn. */
  pixels: Uint8Array;
  labels: Uint8Array;
}

/** One batch file's records, checked: its size a whole number of records, every label a class. */
export function parseCifarBatch(bytes: Uint8Array, name: string): CifarBatch {
  const { recordBytes, classes } = CIFAR10;
  const imageBytes = recordBytes - 1;
  if (bytes.length === 0)
    throw new CifarError(`${name}: empty file (0 bytes); copy it again from the CIFAR-10 archive`);
  if (bytes.length > MAX_CIFAR_FILE_BYTES)
    throw new CifarError(
      `${name}: ${bytes.length} bytes is more than ${MAX_CIFAR_FILE_BYTES}; this is not a CIFAR-10 batch`,
    );
  if (bytes.length % recordBytes !== 0) {
    throw new CifarError(
      `${name}: ${bytes.length} bytes is not a whole number of CIFAR-10 records (${recordBytes} bytes each: ` +
        `a label byte and a 3×32×32 image; ${Math.floor(bytes.length / recordBytes)} records and ` +
        `${bytes.length % recordBytes} bytes over); the file is truncated, or not CIFAR-10's binary version ` +
        '(CIFAR-100 records have two label bytes; the Python version is pickled)',
    );
  }
  const count = bytes.length / recordBytes;
  const pixels = new Uint8Array(count * imageBytes);
  const labels = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    const at = i * recordBytes;
    const label = bytes[at];
    if (label >= classes) {
      throw new CifarError(
        `${name}: record ${i} (byte ${at}) has label ${label}; CIFAR-10's labels are 0 to ${classes - 1}, ` +
          'so the file is not a CIFAR-10 batch or is corrupt',
      );
    }
    labels[i] = label;
    pixels.set(bytes.subarray(at + 1, at + recordBytes), i * imageBytes);
  }
  return { count, pixels, labels };
}

/**
 * The class names of batches.meta.txt: one a line, label 0 first, blank lines (the archive's
 * file ends with some) dropped. Throws when it names another number of classes than CIFAR-10's.
 */
export function parseCifarMeta(text: string, name: string): string[] {
  const names = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '');
  if (names.length !== CIFAR10.classes) {
    throw new CifarError(
      `${name}: names ${names.length} classes, one a line; CIFAR-10 has ${CIFAR10.classes} ` +
        '(airplane, automobile, …): fix or remove the file',
    );
  }
  return names;
}
