/**
 * ImageFolder-style test folders: a few classes of simple white shapes on black, drawn at varying
 * positions and sizes into PNGs of several (non-square) sizes, plus files that must be skipped.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as zlib from 'node:zlib';
import { encodePngGray, encodePngRgb } from '../src/node/png';

export const SHAPES = ['circle', 'cross', 'square'] as const;

/** A deterministic stream in [0, 1) (a 32-bit LCG), so the folder is the same every run. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

/** One shape, w×h, centred near (cx, cy) with radius r (as fractions of the short side). */
export function drawShape(
  shape: (typeof SHAPES)[number],
  w: number,
  h: number,
  cx: number,
  cy: number,
  r: number,
): Uint8Array {
  const px = new Uint8Array(w * h);
  const s = Math.min(w, h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const dx = (x + 0.5 - cx * w) / s,
        dy = (y + 0.5 - cy * h) / s;
      const inside =
        shape === 'circle'
          ? Math.hypot(dx, dy) <= r
          : shape === 'square'
            ? Math.max(Math.abs(dx), Math.abs(dy)) <= r * 0.85
            : (Math.abs(dx) <= r * 0.25 || Math.abs(dy) <= r * 0.25) && Math.max(Math.abs(dx), Math.abs(dy)) <= r;
      px[y * w + x] = inside ? 255 : 0;
    }
  }
  return px;
}

export function shapePng(shape: (typeof SHAPES)[number], random: () => number): Uint8Array {
  const [w, h] = [
    [28, 28],
    [32, 24],
    [24, 36],
  ][Math.floor(random() * 3)];
  const pixels = drawShape(shape, w, h, 0.35 + 0.3 * random(), 0.35 + 0.3 * random(), 0.18 + 0.12 * random());
  return encodePngGray(w, h, pixels);
}

/** A PNG whose chunks are whole (CRCs right, IEND there) but whose image data is not zlib data. */
export function undecodablePng(): Uint8Array {
  const good = Buffer.from(encodePngGray(8, 8, new Uint8Array(64)));
  const at = good.indexOf('IDAT') - 4;
  const length = good.readUInt32BE(at);
  for (let i = 0; i < length; i++) good[at + 8 + i] = 0xa5;
  good.writeUInt32BE(zlib.crc32(good.subarray(at + 4, at + 8 + length)) >>> 0, at + 8 + length);
  return new Uint8Array(good);
}

/** The bad files a folder gets, by path, with a fragment of the reason the reader must give. */
export const BAD_FILES: Record<string, { bytes: () => Uint8Array; reason: RegExp }> = {
  'circle/truncated.png': { bytes: () => shapePng('circle', lcg(9)).subarray(0, 60), reason: /truncated PNG/ },
  'square/empty.png': { bytes: () => new Uint8Array(0), reason: /empty file/ },
  'cross/notes.txt': { bytes: () => new TextEncoder().encode('not an image'), reason: /unsupported file type/ },
  'cross/fake.jpg': { bytes: () => new TextEncoder().encode('GIF89a, renamed'), reason: /not a PNG or JPEG/ },
  'square/garbled.png': { bytes: undecodablePng, reason: /could not decode/ },
};

/**
 * Writes `perClass` shapes of each class into `dir/<class>/NNN.png`, plus the BAD_FILES when
 * `bad` is set, and a dotfile that must be ignored silently. Returns the files it wrote.
 */
export function writeShapeFolder(dir: string, perClass: number, bad = true): { path: string; bytes: Uint8Array }[] {
  const random = lcg(1);
  const files: { path: string; bytes: Uint8Array }[] = [];
  for (const shape of SHAPES) {
    for (let i = 0; i < perClass; i++)
      files.push({ path: `${shape}/${String(i).padStart(3, '0')}.png`, bytes: shapePng(shape, random) });
  }
  if (bad) for (const [path, b] of Object.entries(BAD_FILES)) files.push({ path, bytes: b.bytes() });
  files.push({ path: '.DS_Store', bytes: new Uint8Array([0, 0, 0, 1]) });
  for (const f of files) {
    mkdirSync(join(dir, f.path, '..'), { recursive: true });
    writeFileSync(join(dir, f.path), f.bytes);
  }
  return files;
}

/** What a host says it used of `writeShapeFolder(dir, 40)` at 16×16 (fit): 40 per class, every 10th held out. */
export const FORTY_AT_16 =
  '108 training and 12 test images of 16×16 (fit), 3 classes (train+test: circle 36+4, cross 36+4, square 36+4)';

/**
 * The CLI flags of one epoch on the image folder `dir` at 16×16 (fit) in batches of 32, written
 * to `out`: the run the CLI test makes, and the one the page test matches bit for bit.
 */
export function shapeRunArgs(dir: string, out: string): string[] {
  return ['--images', dir, '--image-size', '16', '--fit', 'fit', '--epochs', '1', '--batch-size', '32', '--out', out];
}

/**
 * Writes `perClass` colour shapes of each of `classes` into `dir/<class>/NNN.png` (w×h RGB PNGs):
 * a shape in one colour on a background of another, both drawn at random per image, so no two
 * channels of the folder are alike.
 */
export function writeColourShapeFolder(
  dir: string,
  perClass: number,
  classes: readonly (typeof SHAPES)[number][] = ['circle', 'square'],
  side = 16,
): void {
  const random = lcg(7);
  const colour = () => [0, 1, 2].map(() => Math.floor(random() * 256));
  for (const shape of classes) {
    mkdirSync(join(dir, shape), { recursive: true });
    for (let i = 0; i < perClass; i++) {
      const mask = drawShape(shape, side, side, 0.4 + 0.2 * random(), 0.4 + 0.2 * random(), 0.25 + 0.1 * random());
      const [fg, bg] = [colour(), colour()];
      const rgb = new Uint8Array(3 * side * side);
      for (let p = 0; p < side * side; p++) for (let c = 0; c < 3; c++) rgb[3 * p + c] = (mask[p] ? fg : bg)[c];
      writeFileSync(join(dir, shape, `${String(i).padStart(3, '0')}.png`), encodePngRgb(side, side, rgb));
    }
  }
}
