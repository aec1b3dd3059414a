// Minimal 8-bit grayscale and RGB PNG writer; enough for sample grids without
// pulling in an image library.
import { deflateSync } from 'node:zlib';

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  // The CRC covers the type and the data, not the length.
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

export function encodePngGray(width: number, height: number, pixels: Uint8Array): Uint8Array {
  return encode('encodePngGray', width, height, pixels, 1);
}

/** An 8-bit RGB PNG of `pixels`, 3 bytes a pixel (R, G, B interleaved, as a canvas holds them without alpha). */
export function encodePngRgb(width: number, height: number, pixels: Uint8Array): Uint8Array {
  return encode('encodePngRgb', width, height, pixels, 3);
}

/** Grayscale (1 channel) or RGB (3, interleaved). */
export function encodePng(width: number, height: number, pixels: Uint8Array, channels: number): Uint8Array {
  if (channels !== 1 && channels !== 3) throw new RangeError(`encodePng: channels must be 1 or 3, got ${channels}`);
  return encode('encodePng', width, height, pixels, channels);
}

function encode(name: string, width: number, height: number, pixels: Uint8Array, channels: 1 | 3): Uint8Array {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`${name}: bad size ${width}×${height}`);
  }
  const bytes = width * height * channels;
  if (pixels.length !== bytes) {
    throw new RangeError(
      `${name}: ${width}×${height}${channels === 1 ? '' : `×${channels}`} needs ${bytes} ${channels === 1 ? 'pixels' : 'bytes'}, got ${pixels.length}`,
    );
  }

  const ihdr = new Uint8Array(13);
  const hv = new DataView(ihdr.buffer);
  hv.setUint32(0, width);
  hv.setUint32(4, height);
  ihdr[8] = 8; // bit depth
  ihdr[9] = channels === 1 ? 0 : 2; // colour type: grayscale, or truecolour (RGB)
  // compression, filter method and interlace all stay 0

  // Each scanline is prefixed by its filter type; 0 (none) keeps it simple.
  const line = width * channels;
  const raw = new Uint8Array(height * (line + 1));
  for (let y = 0; y < height; y++) raw.set(pixels.subarray(y * line, (y + 1) * line), y * (line + 1) + 1);

  const parts = [
    Uint8Array.from(SIGNATURE),
    chunk('IHDR', ihdr),
    chunk('IDAT', new Uint8Array(deflateSync(raw))),
    chunk('IEND', new Uint8Array(0)),
  ];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
