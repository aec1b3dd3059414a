import * as zlib from 'node:zlib';
import { expect } from 'vitest';

/** A small PNG reader: checks the signature and every CRC, inflates IDAT and undoes filter type 0. 8-bit grayscale only. */
export function decodePngGray(png: Uint8Array): {
  width: number;
  height: number;
  pixels: Uint8Array;
  chunks: string[];
} {
  const d = decodePng(png);
  expect(d.channels, 'a grayscale PNG').toBe(1);
  return d;
}

/** The same reader for 8-bit grayscale (colour type 0) or RGB (type 2, `pixels` interleaved R, G, B). */
export function decodePng(png: Uint8Array): {
  width: number;
  height: number;
  channels: 1 | 3;
  pixels: Uint8Array;
  chunks: string[];
} {
  expect(Array.from(png.subarray(0, 8))).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  const chunks: string[] = [];
  const idat: Uint8Array[] = [];
  let width = 0,
    height = 0,
    channels: 1 | 3 = 1;
  for (let at = 8; at < png.length;) {
    const len = view.getUint32(at);
    const type = String.fromCharCode(...png.subarray(at + 4, at + 8));
    const data = png.subarray(at + 8, at + 8 + len);
    expect(view.getUint32(at + 8 + len), `CRC of ${type}`).toBe(zlib.crc32(png.subarray(at + 4, at + 8 + len)));
    chunks.push(type);
    if (type === 'IHDR') {
      width = view.getUint32(at + 8);
      height = view.getUint32(at + 12);
      expect([0, 2]).toContain(data[9]);
      channels = data[9] === 2 ? 3 : 1;
      expect(Array.from(data.subarray(8))).toEqual([8, data[9], 0, 0, 0]);
    }
    if (type === 'IDAT') idat.push(data);
    at += 12 + len;
  }
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const line = width * channels;
  expect(raw.length).toBe(height * (line + 1));
  const pixels = new Uint8Array(line * height);
  for (let y = 0; y < height; y++) {
    expect(raw[y * (line + 1)]).toBe(0);
    pixels.set(raw.subarray(y * (line + 1) + 1, (y + 1) * (line + 1)), y * line);
  }
  return { width, height, channels, pixels, chunks };
}
