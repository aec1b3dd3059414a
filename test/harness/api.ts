/**
 * The library API inside headless Chromium for test/api.test.ts and test/checkpoint.test.ts:
 * the library itself (as src/index.ts exports it) plus MNIST test images and byte helpers.
 * Test bodies run in the page through `page.evaluate`, calling `window.vaeTest`.
 */
import * as lib from '../../src/index';
import { fromBase64, toBase64 } from '../../src/io/base64';

let mnist: Promise<Uint8Array> | null = null;

/** The first `count` MNIST test images as bytes (count × 784), fetched once (the dev server's MNIST plugin serves them). */
async function mnistTest(count: number): Promise<Uint8Array> {
  mnist ??= fetch('/mnist/t10k-images-idx3-ubyte.gz')
    .then((r) => r.arrayBuffer())
    .then(async (b) => (await lib.readIdxImages(b, 't10k-images-idx3-ubyte')).pixels);
  return (await mnist).slice(0, count * 784);
}

let mnistLabels: Promise<Uint8Array> | null = null;

/** The first `count` MNIST test labels, fetched once: for the conditional VAE's tests. */
async function mnistTestLabels(count: number): Promise<Uint8Array> {
  mnistLabels ??= fetch('/mnist/t10k-labels-idx1-ubyte.gz')
    .then((r) => r.arrayBuffer())
    .then((b) => lib.readIdxLabels(b, 't10k-labels-idx1-ubyte'));
  return (await mnistLabels).slice(0, count);
}

/** What the tests see of a thrown value: VaeError's code and message, or the name of anything else. */
async function failure(work: () => unknown): Promise<{ code?: string; name: string; message: string } | null> {
  try {
    await work();
    return null;
  } catch (e) {
    const error = e as { code?: string; name?: string; message?: string };
    return { code: error.code, name: String(error.name), message: String(error.message) };
  }
}

/** Min, max and NaN count of an array (so tests do not ship whole arrays back). */
function stats(a: ArrayLike<number>): { length: number; min: number; max: number; nonFinite: number } {
  let min = Infinity;
  let max = -Infinity;
  let nonFinite = 0;
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i])) nonFinite++;
    else {
      min = Math.min(min, a[i]);
      max = Math.max(max, a[i]);
    }
  }
  return { length: a.length, min, max, nonFinite };
}

/** True when two arrays hold the same bits. */
function sameBits(a: ArrayBufferView, b: ArrayBufferView): boolean {
  if (a.byteLength !== b.byteLength) return false;
  const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  return x.every((v, i) => v === y[i]);
}

const f32base64 = (a: Float32Array) => toBase64(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
const base64f32 = (s: string) => {
  const b = fromBase64(s);
  return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
};

const vaeTest = {
  lib,
  mnistTest,
  mnistTestLabels,
  failure,
  stats,
  sameBits,
  toBase64,
  fromBase64,
  f32base64,
  base64f32,
};

declare global {
  interface Window {
    vaeTest: typeof vaeTest;
  }
}
window.vaeTest = vaeTest;
