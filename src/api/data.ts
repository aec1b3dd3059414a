/**
 * Reading MNIST-format image files (idx3-ubyte, plain or gzip) into the byte arrays the API
 * trains on, in a page or a Worker: gzip goes through the platform's DecompressionStream, and
 * stops at MAX_IDX_FILE_BYTES (the bound the CLI uses) however much the file claims.
 */
import { gunzipBounded, isGzip, parseIdxImages, parseIdxLabels } from '../data/idx';
import { VaeError } from './errors';

/** Images from an idx file: `count` images of rows × cols bytes, row-major (what `VAE.fit` takes). */
export interface IdxImageSet {
  /** Number of images. */
  count: number;
  /** Pixel rows per image (28 for MNIST). */
  rows: number;
  /** Pixel columns per image (28 for MNIST). */
  cols: number;
  /** count × rows × cols bytes, 0..255. */
  pixels: Uint8Array;
}

/**
 * Parses an idx3-ubyte images file such as MNIST's `train-images-idx3-ubyte` (or its `.gz`),
 * checking the header against the length. Rejects with an `invalid-input` VaeError naming
 * what is wrong (gzip without DecompressionStream, a labels file, a truncated download …).
 */
export async function readIdxImages(bytes: Uint8Array | ArrayBuffer, name = 'idx file'): Promise<IdxImageSet> {
  let data = bytes instanceof ArrayBuffer ? new Uint8Array(bytes) : bytes;
  if (!(data instanceof Uint8Array))
    throw new VaeError('invalid-input', `readIdxImages: ${name} must be a Uint8Array or ArrayBuffer`);
  try {
    if (isGzip(data)) {
      if (typeof DecompressionStream === 'undefined') {
        throw new VaeError(
          'invalid-input',
          `readIdxImages: ${name} is gzip-compressed and this platform has no DecompressionStream: decompress it first`,
        );
      }
      data = await gunzipBounded(data, name);
    }
    return parseIdxImages(data, name);
  } catch (error) {
    if (error instanceof VaeError) throw error;
    throw new VaeError('invalid-input', `readIdxImages: ${(error as Error).message}`, { cause: error });
  }
}

/**
 * Parses an idx1-ubyte labels file such as MNIST's `train-labels-idx1-ubyte` (or its `.gz`):
 * one class byte per image, what a conditional VAE's `fit({ labels })` takes. Rejects with an
 * `invalid-input` VaeError as readIdxImages does.
 */
export async function readIdxLabels(bytes: Uint8Array | ArrayBuffer, name = 'idx file'): Promise<Uint8Array> {
  let data = bytes instanceof ArrayBuffer ? new Uint8Array(bytes) : bytes;
  if (!(data instanceof Uint8Array))
    throw new VaeError('invalid-input', `readIdxLabels: ${name} must be a Uint8Array or ArrayBuffer`);
  try {
    if (isGzip(data)) {
      if (typeof DecompressionStream === 'undefined') {
        throw new VaeError(
          'invalid-input',
          `readIdxLabels: ${name} is gzip-compressed and this platform has no DecompressionStream: decompress it first`,
        );
      }
      data = await gunzipBounded(data, name);
    }
    return parseIdxLabels(data, name).labels;
  } catch (error) {
    if (error instanceof VaeError) throw error;
    throw new VaeError('invalid-input', `readIdxLabels: ${(error as Error).message}`, { cause: error });
  }
}
