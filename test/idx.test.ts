import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { readIdxImages } from '../src/api/data';
import {
  checkPair,
  gunzipBounded,
  IdxError,
  isGzip,
  MAX_IDX_FILE_BYTES,
  parseIdxImages,
  parseIdxLabels,
} from '../src/data/idx';
import { INPUT_SIZE_MAX } from '../src/model/settings';
import { gunzipIfNeeded } from '../src/page/data';
import { gzipOfZeros } from './gzip';

/** Builds an idx file: type code, dims and data bytes as given (no validation, so tests can lie). */
function idx(type: number, dims: number[], data: ArrayLike<number> = []): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  out[2] = type;
  out[3] = dims.length;
  const view = new DataView(out.buffer);
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d));
  out.set(data, 4 + 4 * dims.length);
  return out;
}

const seq = (n: number) => Array.from({ length: n }, (_, i) => (i * 7 + 3) & 0xff);
const images = (n: number, r: number, c: number) => idx(0x08, [n, r, c], seq(n * r * c));
const labels = (n: number) =>
  idx(
    0x08,
    [n],
    seq(n).map((v) => v % 10),
  );

function failure(fn: () => unknown): IdxError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(IdxError);
    return e as IdxError;
  }
  throw new Error('expected an IdxError, nothing was thrown');
}

describe('parse valid files', () => {
  it('reads images', () => {
    const file = images(3, 4, 5);
    const img = parseIdxImages(file, 'img');
    expect(img).toMatchObject({ count: 3, rows: 4, cols: 5 });
    expect(Array.from(img.pixels)).toEqual(seq(60));
    expect(img.pixels.buffer).not.toBe(file.buffer);
  });

  it('reads labels', () => {
    const lab = parseIdxLabels(labels(6), 'lab');
    expect(lab.count).toBe(6);
    expect(Array.from(lab.labels)).toEqual(seq(6).map((v) => v % 10));
  });

  it('reads a view at a non-zero byteOffset (like a pooled Buffer)', () => {
    const file = images(2, 3, 3);
    const big = new Uint8Array(file.length + 13);
    big.set(file, 5);
    const img = parseIdxImages(big.subarray(5, 5 + file.length), 'view');
    expect(img).toMatchObject({ count: 2, rows: 3, cols: 3 });
    expect(Array.from(img.pixels)).toEqual(seq(18));
  });

  it('refuses images of more pixels than a model takes, before copying them', () => {
    const side = Math.sqrt(INPUT_SIZE_MAX);
    expect(parseIdxImages(idx(0x08, [1, side, side], new Uint8Array(INPUT_SIZE_MAX)), 'max').rows).toBe(side);
    // One row more: 256 bytes past the limit (the file is whole, so only the limit refuses it).
    const e = failure(() =>
      parseIdxImages(idx(0x08, [1, side + 1, side], new Uint8Array(INPUT_SIZE_MAX + side)), 'wide'),
    );
    expect(e.message).toBe(
      `wide: images of 257×256 = 65792 pixels; a model takes at most ${INPUT_SIZE_MAX} pixels per image (256×256): downscale the images`,
    );
  });

  it('accepts the largest allowed sides', () => {
    const img = parseIdxImages(idx(0x08, [1, 4096, 1], new Uint8Array(4096)), 'tall');
    expect(img.rows).toBe(4096);
  });

  it('isGzip looks at the two magic bytes', () => {
    expect(isGzip(Uint8Array.of(0x1f, 0x8b, 8))).toBe(true);
    expect(isGzip(Uint8Array.of(0x1f))).toBe(false);
    expect(isGzip(images(1, 1, 1))).toBe(false);
  });

  it('checkPair accepts matching counts and rejects others', () => {
    const img = parseIdxImages(images(3, 2, 2), 'i');
    expect(() => checkPair(img, parseIdxLabels(labels(3), 'l'), 'pair')).not.toThrow();
    const e = failure(() => checkPair(img, parseIdxLabels(labels(4), 'l'), 'mnist train'));
    expect(e.message).toMatch(/^mnist train: 3 images but 4 labels/);
  });
});

describe('malformed files', () => {
  const cases: Array<[string, () => unknown, RegExp]> = [
    ['empty', () => parseIdxImages(new Uint8Array(0), 'f'), /too short for an idx header \(0 bytes/],
    ['3 bytes', () => parseIdxLabels(Uint8Array.of(0, 0, 8), 'f'), /too short for an idx header \(3 bytes/],
    [
      'header cut inside the dims',
      () => parseIdxImages(images(1, 2, 2).subarray(0, 10), 'f'),
      /too short.*10 bytes, need 16/,
    ],
    [
      'gzip',
      () => parseIdxImages(Uint8Array.of(0x1f, 0x8b, 8, 0, 0, 0), 'f.gz'),
      /gzip-compressed.*decompress it first/,
    ],
    [
      'not idx',
      () => parseIdxImages(new TextEncoder().encode('hello world, not idx'), 'f'),
      /not an idx file \(magic 0x68656c6c, expected 0x00000803\)/,
    ],
    [
      'labels as images',
      () => parseIdxImages(labels(3), 'f'),
      /found magic 0x00000801, expected 0x00000803; this looks like a labels file, expected images/,
    ],
    [
      'images as labels',
      () => parseIdxLabels(images(1, 2, 2), 'f'),
      /found magic 0x00000803, expected 0x00000801; this looks like an images file, expected labels/,
    ],
    [
      '2 dims',
      () => parseIdxImages(idx(0x08, [2, 2], seq(4)), 'f'),
      /it has 2 dimensions, expected images \(3 dimensions\)/,
    ],
    ['0 dims', () => parseIdxLabels(idx(0x08, []), 'f'), /it has 0 dimensions, expected labels \(1 dimension\)/],
    [
      'f32 data',
      () => parseIdxImages(idx(0x0d, [1, 1, 1], seq(4)), 'f'),
      /holds f32 data \(magic 0x00000d03\), expected unsigned bytes/,
    ],
    ['i8 data', () => parseIdxLabels(idx(0x09, [1], seq(1)), 'f'), /holds i8 data/],
    ['unknown type', () => parseIdxLabels(idx(0x42, [1], seq(1)), 'f'), /unknown element type 0x42/],
    ['zero count', () => parseIdxImages(idx(0x08, [0, 28, 28]), 'f'), /declares 0 images/],
    ['zero labels', () => parseIdxLabels(idx(0x08, [0]), 'f'), /declares 0 labels/],
    ['zero rows', () => parseIdxImages(idx(0x08, [1, 0, 28]), 'f'), /images of 0×28 pixels/],
    ['huge cols', () => parseIdxImages(idx(0x08, [1, 28, 4097]), 'f'), /images of 28×4097 pixels.*header is corrupt/],
    [
      'huge count',
      () => parseIdxLabels(idx(0x08, [100_000_001]), 'f'),
      /declares 100000001 labels \(limit 100000000\)/,
    ],
    [
      'max u32 dims',
      () => parseIdxImages(idx(0x08, [0xffffffff, 0xffffffff, 0xffffffff]), 'f'),
      /declares 4294967295 images/,
    ],
    [
      'truncated data',
      () => parseIdxImages(images(3, 4, 5).subarray(0, 70), 'f'),
      /truncated: the header declares 76 bytes in total but the file has only 70/,
    ],
    [
      'trailing bytes',
      () => parseIdxLabels(Uint8Array.of(...labels(3), 1, 2), 'f'),
      /2 trailing bytes: the header declares 11 bytes in total but the file has 13/,
    ],
  ];
  it.each(cases)('%s', (_label, fn, pattern) => {
    const e = failure(fn);
    expect(e.message).toMatch(/^f(\.gz)?: /);
    expect(e.message).toMatch(pattern);
  });

  it('names the file in the message', () => {
    expect(failure(() => parseIdxImages(new Uint8Array(0), '/data/train-images-idx3-ubyte')).message).toMatch(
      /^\/data\/train-images-idx3-ubyte: /,
    );
  });

  it('huge declared sizes fail fast without allocating', () => {
    // Declares 1e8 × 256 × 256 bytes (~6.5 TB): must be a length error, not a RangeError from an allocation.
    const t = performance.now();
    const e = failure(() => parseIdxImages(idx(0x08, [100_000_000, 256, 256], seq(100)), 'f'));
    expect(e.message).toMatch(/truncated: the header declares 6553600000016 bytes in total but the file has only 116/);
    expect(performance.now() - t).toBeLessThan(100);
  });

  it('every truncation of a valid file throws IdxError', () => {
    for (const [file, parse] of [
      [images(3, 4, 5), parseIdxImages],
      [labels(5), parseIdxLabels],
    ] as const) {
      parse(file, 'whole'); // the full file is fine
      for (let k = 0; k < file.length; k++) failure(() => parse(file.subarray(0, k), `cut at ${k}`));
    }
  });

  it('random corruption ends in a result or IdxError, never anything else', () => {
    let state = 12345;
    const rand = () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32;
    const base = images(2, 3, 4);
    for (let trial = 0; trial < 3000; trial++) {
      const bytes =
        trial % 3 === 0
          ? Uint8Array.from({ length: Math.floor(rand() * 40) }, () => Math.floor(rand() * 256))
          : base.slice();
      if (trial % 3 !== 0) {
        for (let m = 0; m < 1 + Math.floor(rand() * 3); m++) bytes[Math.floor(rand() * 16)] = Math.floor(rand() * 256);
      }
      for (const parse of [parseIdxImages, parseIdxLabels]) {
        try {
          parse(bytes, 'fuzz');
        } catch (e) {
          expect(e).toBeInstanceOf(IdxError);
        }
      }
    }
  });
});

describe('gzip, inflated up to a bound', () => {
  /** Runs `read` with a DecompressionStream that counts the bytes it inflates for the reader. */
  async function inflatedBy(read: () => Promise<unknown>): Promise<{ inflated: number; error: unknown }> {
    const Real = globalThis.DecompressionStream;
    let inflated = 0;
    class Counting {
      readonly writable: WritableStream<BufferSource>;
      readonly readable: ReadableStream<Uint8Array>;
      constructor(format: CompressionFormat) {
        const real = new Real(format);
        this.writable = real.writable;
        this.readable = real.readable.pipeThrough(
          new TransformStream<Uint8Array, Uint8Array>({
            transform(chunk, out) {
              inflated += chunk.length;
              out.enqueue(chunk);
            },
          }),
        );
      }
    }
    globalThis.DecompressionStream = Counting as unknown as typeof DecompressionStream;
    try {
      await read();
      return { inflated, error: undefined };
    } catch (error) {
      return { inflated, error };
    } finally {
      globalThis.DecompressionStream = Real;
    }
  }

  it('inflates a gzipped idx file, refusing it once it passes the limit', async () => {
    const file = images(3, 4, 5);
    const gz = new Uint8Array(gzipSync(file));
    expect(await gunzipBounded(gz, 'img.gz', file.length)).toEqual(file);
    await expect(gunzipBounded(gz, 'img.gz', file.length - 1)).rejects.toThrow(
      /^img\.gz: decompresses to more than 75 bytes/,
    );
    await expect(gunzipBounded(gz.subarray(0, gz.length - 6), 'cut.gz')).rejects.toThrow(/^cut\.gz: corrupt gzip data/);
    expect((await readIdxImages(gz, 'img.gz')).pixels).toEqual(file.subarray(16));
  });

  it('a gzip bomb is refused by the page and by readIdxImages without being inflated', async () => {
    // 8 MB past the bound, in about 200 KB of gzip (deflate packs zeros about 1000:1).
    const bomb = await gzipOfZeros(MAX_IDX_FILE_BYTES + 8 * 2 ** 20);
    expect(bomb.length).toBeLessThan(MAX_IDX_FILE_BYTES / 500);
    // A few chunks of read-ahead past the bound at most, never the whole file.
    const slack = 2 ** 20;
    const page = await inflatedBy(() => gunzipIfNeeded(bomb, 'bomb.gz'));
    expect(page.inflated, 'bytes the page inflated').toBeLessThanOrEqual(MAX_IDX_FILE_BYTES + slack);
    expect(page.error).toBeInstanceOf(IdxError);
    expect((page.error as Error).message).toBe(
      `bomb.gz: decompresses to more than ${MAX_IDX_FILE_BYTES} bytes; refusing it: it is not an MNIST-sized idx file (corrupt, or a gzip bomb)`,
    );
    const library = await inflatedBy(() => readIdxImages(bomb, 'bomb.gz'));
    expect(library.inflated, 'bytes readIdxImages inflated').toBeLessThanOrEqual(MAX_IDX_FILE_BYTES + slack);
    expect(library.error).toMatchObject({
      code: 'invalid-input',
      message: expect.stringMatching(/^readIdxImages: bomb\.gz: decompresses to more than 209715200 bytes/),
    });
  });
});
