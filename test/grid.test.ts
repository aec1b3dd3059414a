import { describe, expect, it } from 'vitest';
import { makeGrid } from '../src/io/grid';
import { encodePng, encodePngGray, encodePngRgb } from '../src/node/png';
import { decodePng, decodePngGray } from './png';

/** n images of h×w, image k filled with the constant value (k+1)/n. */
function constantImages(n: number, h: number, w: number): Float32Array {
  const out = new Float32Array(n * h * w);
  for (let k = 0; k < n; k++) out.fill((k + 1) / n, k * h * w, (k + 1) * h * w);
  return out;
}

const byteOf = (x: number) => Math.min(255, Math.max(0, Math.trunc(Math.fround(Math.fround(x * 255) + 0.5))));

describe('makeGrid layout (torchvision make_grid, padding=2)', () => {
  it.each([
    [16, 8, 242, 62],
    [64, 8, 242, 242],
    [3, 8, 92, 32], // fewer images than nrow: only 3 columns
    [10, 4, 122, 92], // 4 columns, 3 rows, last row partly empty
    [1, 8, 32, 32],
  ])('n=%i nrow=%i of 28×28 → %i×%i', (n, nrow, width, height) => {
    const g = makeGrid(constantImages(n, 28, 28), n, 28, 28, nrow);
    expect([g.width, g.height]).toEqual([width, height]);
    expect(g.pixels.length).toBe(width * height);
  });

  it('places image k at row k/xmaps, column k%xmaps with zero padding around', () => {
    const n = 10,
      h = 3,
      w = 4,
      nrow = 4;
    const g = makeGrid(constantImages(n, h, w), n, h, w, nrow);
    const expected = new Uint8Array(g.width * g.height);
    for (let k = 0; k < n; k++) {
      const top = Math.floor(k / nrow) * (h + 2) + 2;
      const left = (k % nrow) * (w + 2) + 2;
      for (let r = 0; r < h; r++)
        for (let c = 0; c < w; c++) expected[(top + r) * g.width + left + c] = byteOf((k + 1) / n);
    }
    expect(Array.from(g.pixels)).toEqual(Array.from(expected));
    expect(g.pixels[0]).toBe(0);
    expect(g.pixels[2 * g.width + 2]).toBe(byteOf(0.1));
  });

  it('keeps row-major order inside each image', () => {
    const img = Float32Array.from({ length: 6 }, (_, i) => i / 255);
    const g = makeGrid(img, 1, 2, 3, 8);
    expect([g.width, g.height]).toEqual([7, 6]);
    expect(Array.from(g.pixels.subarray(2 * 7 + 2, 2 * 7 + 5))).toEqual([0, 1, 2]);
    expect(Array.from(g.pixels.subarray(3 * 7 + 2, 3 * 7 + 5))).toEqual([3, 4, 5]);
  });

  it('supports padding 0', () => {
    const g = makeGrid(constantImages(4, 2, 2), 4, 2, 2, 2, 0);
    expect([g.width, g.height]).toEqual([4, 4]);
    expect(Array.from(g.pixels)).toEqual([64, 64, 128, 128, 64, 64, 128, 128, 191, 191, 255, 255, 191, 191, 255, 255]);
  });

  it('converts like save_image: clamp(x*255+0.5, 0, 255), truncated; NaN → 0', () => {
    const xs = [
      0,
      1,
      0.5,
      1 / 255,
      0.4 / 255,
      0.6 / 255,
      127.49 / 255,
      -1,
      2,
      NaN,
      Infinity,
      -Infinity,
      254.4 / 255,
      254.6 / 255,
    ];
    const want = [0, 255, 128, 1, 0, 1, 127, 0, 255, 0, 255, 0, 254, 255];
    const g = makeGrid(Float32Array.from(xs), 1, 1, xs.length, 1, 0);
    expect(Array.from(g.pixels)).toEqual(want);
  });

  it('rejects inconsistent arguments', () => {
    expect(() => makeGrid(new Float32Array(10), 2, 2, 3, 8)).toThrow(RangeError);
    expect(() => makeGrid(new Float32Array(4), 0, 2, 2, 8)).toThrow(/n must be a positive integer/);
    expect(() => makeGrid(new Float32Array(4), 1, 2, 2, 0)).toThrow(/nrow/);
  });
});

describe('encodePngGray', () => {
  it('round-trips a grid through a PNG decoder', () => {
    const g = makeGrid(constantImages(16, 28, 28), 16, 28, 28, 8);
    const png = decodePngGray(encodePngGray(g.width, g.height, g.pixels));
    expect(png.chunks).toEqual(['IHDR', 'IDAT', 'IEND']);
    expect([png.width, png.height]).toEqual([242, 62]);
    expect(png.pixels).toEqual(g.pixels);
  });

  it('round-trips every byte value in an odd shape', () => {
    const pixels = Uint8Array.from({ length: 256 * 3 }, (_, i) => (i * 37) & 0xff);
    const png = decodePngGray(encodePngGray(256, 3, pixels));
    expect(png.pixels).toEqual(pixels);
    const one = decodePngGray(encodePngGray(1, 1, Uint8Array.of(200)));
    expect(Array.from(one.pixels)).toEqual([200]);
  });

  it('rejects a pixel count that does not match the size', () => {
    expect(() => encodePngGray(2, 2, new Uint8Array(3))).toThrow(/needs 4 pixels, got 3/);
    expect(() => encodePngGray(0, 2, new Uint8Array(0))).toThrow(RangeError);
  });
});

describe('colour grids (3 channels)', () => {
  it('reads each image as planes R, G, B (NCHW) and writes interleaved RGB, padding black', () => {
    // Two 2×3 images: image k's channel c at (r, x) holds (100k + 10c + 3r + x) / 255.
    const [n, h, w] = [2, 2, 3];
    const images = new Float32Array(n * 3 * h * w);
    for (let k = 0; k < n; k++)
      for (let c = 0; c < 3; c++)
        for (let r = 0; r < h; r++)
          for (let x = 0; x < w; x++) images[((k * 3 + c) * h + r) * w + x] = (100 * k + 10 * c + 3 * r + x) / 255;
    const g = makeGrid(images, n, h, w, 8, 1, 3);
    expect([g.width, g.height, g.channels]).toEqual([1 + 2 * 4, 1 + 3, 3]);
    expect(g.pixels.length).toBe(g.width * g.height * 3);
    const at = (x: number, y: number) =>
      Array.from(g.pixels.subarray((y * g.width + x) * 3, (y * g.width + x) * 3 + 3));
    expect(at(0, 0)).toEqual([0, 0, 0]);
    expect(at(1, 1)).toEqual([0, 10, 20]); // image 0, row 0, column 0
    expect(at(3, 2)).toEqual([5, 15, 25]); // image 0, row 1, column 2
    expect(at(5, 1)).toEqual([100, 110, 120]); // image 1, row 0, column 0
    expect(at(4, 1)).toEqual([0, 0, 0]); // the padding between them
    expect(() => makeGrid(images.subarray(1), n, h, w, 8, 1, 3)).toThrow(/2 images of 3×2×3 need 36 floats, got 35/);
  });

  it('one channel is the grayscale grid, byte for byte', () => {
    const images = constantImages(10, 5, 7);
    const a = makeGrid(images, 10, 5, 7, 4);
    const b = makeGrid(images, 10, 5, 7, 4, 2, 1);
    expect(b.pixels).toEqual(a.pixels);
    expect(b.channels).toBe(1);
  });

  it('encodePngRgb round-trips every byte value in an odd shape', () => {
    const pixels = Uint8Array.from({ length: 5 * 3 * 3 }, (_, i) => (i * 97 + 13) & 0xff);
    const png = decodePng(encodePngRgb(5, 3, pixels));
    expect([png.width, png.height, png.channels]).toEqual([5, 3, 3]);
    expect(png.pixels).toEqual(pixels);
    expect(() => encodePngRgb(2, 2, new Uint8Array(4))).toThrow(/2×2×3 needs 12 bytes, got 4/);
    expect(() => encodePng(2, 2, new Uint8Array(8), 2)).toThrow(/channels must be 1 or 3/);
  });
});
