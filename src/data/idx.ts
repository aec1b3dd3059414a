// Parser for the idx files MNIST and Fashion-MNIST ship in. Pure TS so the
// browser engine and the Node CLI share the same checks.
import { INPUT_SIZE_MAX } from '../model/settings';

export class IdxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IdxError';
  }
}

export interface IdxImages {
  count: number;
  rows: number;
  cols: number;
  /** count*rows*cols bytes, row-major. */
  pixels: Uint8Array;
}

export interface IdxLabels {
  count: number;
  labels: Uint8Array;
}

// Limits far above any real dataset, low enough that a corrupt header cannot
// make us believe in an exabyte of data.
const MAX_SIDE = 4096;
const MAX_COUNT = 100_000_000;

const TYPE_NAMES: Record<number, string> = {
  0x08: 'u8',
  0x09: 'i8',
  0x0b: 'i16',
  0x0c: 'i32',
  0x0d: 'f32',
  0x0e: 'f64',
};

const hex = (v: number, digits: number) => '0x' + v.toString(16).padStart(digits, '0');

export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/**
 * The most bytes an idx file may hold, compressed or inflated, in every host (the Node CLI,
 * the page, the library). The real training set is 47 MB; a file past this is not MNIST-sized.
 */
export const MAX_IDX_FILE_BYTES = 200 * 1024 * 1024;

/**
 * Inflates gzip bytes with the platform's DecompressionStream (browsers, Workers, Node 18+),
 * refusing once the output passes `limit`: a few hundred KB of gzip can claim gigabytes, so
 * the output is counted as it streams and the rest is never inflated.
 */
export async function gunzipBounded(bytes: Uint8Array, name: string, limit = MAX_IDX_FILE_BYTES): Promise<Uint8Array> {
  const reader = new Blob([bytes as BlobPart]).stream().pipeThrough(new DecompressionStream('gzip')).getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > limit) {
        void reader.cancel().catch(() => {});
        throw new IdxError(
          `${name}: decompresses to more than ${limit} bytes; refusing it: it is not an MNIST-sized idx file (corrupt, or a gzip bomb)`,
        );
      }
      chunks.push(value);
    }
  } catch (e) {
    if (e instanceof IdxError) throw e;
    throw new IdxError(`${name}: corrupt gzip data (${(e as Error).message}); download or copy the file again`);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

// Manual big-endian read: a Node Buffer may sit at any byteOffset of a shared
// pool, so a DataView over bytes.buffer would need extra care.
function u32(bytes: Uint8Array, at: number): number {
  return ((bytes[at] << 24) | (bytes[at + 1] << 16) | (bytes[at + 2] << 8) | bytes[at + 3]) >>> 0;
}

/** Validates the header and total length; returns the dims and the data offset. */
function readHeader(bytes: Uint8Array, name: string, kind: 'images' | 'labels'): { dims: number[]; offset: number } {
  const wantDims = kind === 'images' ? 3 : 1;
  const wantMagic = 0x800 + wantDims;

  if (isGzip(bytes)) {
    throw new IdxError(`${name}: this is gzip-compressed data; decompress it first (e.g. gunzip ${name})`);
  }
  if (bytes.length < 4) {
    throw new IdxError(
      `${name}: too short for an idx header (${bytes.length} bytes, need at least 4); the file is empty or truncated`,
    );
  }
  if (bytes[0] !== 0 || bytes[1] !== 0) {
    throw new IdxError(
      `${name}: not an idx file (magic ${hex(u32(bytes, 0), 8)}, expected ${hex(wantMagic, 8)}); ` +
        `check that the path points at an MNIST-style ${kind} file`,
    );
  }

  const type = bytes[2];
  const ndims = bytes[3];
  if (type !== 0x08) {
    const what = TYPE_NAMES[type] ? `${TYPE_NAMES[type]} data` : `unknown element type ${hex(type, 2)}`;
    throw new IdxError(
      `${name}: holds ${what} (magic ${hex(u32(bytes, 0), 8)}), expected unsigned bytes (magic ${hex(wantMagic, 8)})`,
    );
  }
  if (ndims !== wantDims) {
    const looksLike =
      ndims === 1
        ? 'this looks like a labels file'
        : ndims === 3
          ? 'this looks like an images file'
          : `it has ${ndims} dimensions`;
    throw new IdxError(
      `${name}: found magic ${hex(u32(bytes, 0), 8)}, expected ${hex(wantMagic, 8)}; ${looksLike}, expected ${kind} ` +
        `(${wantDims} dimension${wantDims === 1 ? '' : 's'}); were the images and labels files swapped?`,
    );
  }

  const offset = 4 + 4 * ndims;
  if (bytes.length < offset) {
    throw new IdxError(
      `${name}: too short for an idx header (${bytes.length} bytes, need ${offset}); the file is truncated`,
    );
  }

  const dims: number[] = [];
  for (let i = 0; i < ndims; i++) dims.push(u32(bytes, 4 + 4 * i));

  const [count, ...sides] = dims;
  if (count === 0) throw new IdxError(`${name}: declares 0 ${kind}; the file is empty`);
  if (count > MAX_COUNT) {
    throw new IdxError(`${name}: declares ${count} ${kind} (limit ${MAX_COUNT}); the header is corrupt`);
  }
  for (const side of sides) {
    if (side === 0 || side > MAX_SIDE) {
      throw new IdxError(
        `${name}: declares images of ${sides.join('×')} pixels (each side must be 1..${MAX_SIDE}); the header is corrupt`,
      );
    }
  }
  // Checked here, before the pixels are copied or a model is sized by them: every host reads idx files through this.
  if (kind === 'images' && sides[0] * sides[1] > INPUT_SIZE_MAX) {
    throw new IdxError(
      `${name}: images of ${sides.join('×')} = ${sides[0] * sides[1]} pixels; a model takes at most ${INPUT_SIZE_MAX} pixels per image ` +
        '(256×256): downscale the images',
    );
  }

  // Exact in a double: at most 1e8 * 4096 * 4096 ≈ 1.7e15 < 2^53.
  const expected = offset + dims.reduce((a, b) => a * b, 1);
  if (bytes.length < expected) {
    throw new IdxError(
      `${name}: truncated: the header declares ${expected} bytes in total but the file has only ${bytes.length}; ` +
        `download or copy it again`,
    );
  }
  if (bytes.length > expected) {
    throw new IdxError(
      `${name}: ${bytes.length - expected} trailing bytes: the header declares ${expected} bytes in total but the file has ${bytes.length}; ` +
        `the file is corrupt or not an idx file`,
    );
  }
  return { dims, offset };
}

export function parseIdxImages(bytes: Uint8Array, name: string): IdxImages {
  const { dims, offset } = readHeader(bytes, name, 'images');
  // slice copies, so the result does not pin a larger file buffer.
  return { count: dims[0], rows: dims[1], cols: dims[2], pixels: bytes.slice(offset) };
}

export function parseIdxLabels(bytes: Uint8Array, name: string): IdxLabels {
  const { dims, offset } = readHeader(bytes, name, 'labels');
  return { count: dims[0], labels: bytes.slice(offset) };
}

export function checkPair(images: IdxImages, labels: IdxLabels, name: string): void {
  if (images.count !== labels.count) {
    throw new IdxError(
      `${name}: ${images.count} images but ${labels.count} labels; the images and labels files do not belong together`,
    );
  }
}
