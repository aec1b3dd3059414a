// Image grid matching torchvision.utils.make_grid(padding, pad_value=0)
// followed by save_image's float→byte conversion, so sample images can be
// compared pixel for pixel with the PyTorch reference.

/**
 * images: n images of h×w floats in [0,1], row-major, concatenated; with `channels` 3 each image
 * is its R, G and B planes of h×w in turn (NCHW). Returns 8-bit pixels: grayscale, or with 3
 * channels interleaved RGB (a PNG's and a canvas's order), padding black in every channel.
 */
export function makeGrid(
  images: Float32Array,
  n: number,
  h: number,
  w: number,
  nrow: number,
  padding = 2,
  channels = 1,
): { width: number; height: number; channels: number; pixels: Uint8Array } {
  for (const [label, v] of [
    ['n', n],
    ['h', h],
    ['w', w],
    ['nrow', nrow],
    ['channels', channels],
  ] as const) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`makeGrid: ${label} must be a positive integer, got ${v}`);
  }
  if (!Number.isInteger(padding) || padding < 0)
    throw new RangeError(`makeGrid: padding must be a non-negative integer, got ${padding}`);
  const C = channels;
  if (images.length < n * C * h * w) {
    const shape = C === 1 ? `${h}×${w}` : `${C}×${h}×${w}`;
    throw new RangeError(`makeGrid: ${n} images of ${shape} need ${n * C * h * w} floats, got ${images.length}`);
  }

  const xmaps = Math.min(nrow, n);
  const ymaps = Math.ceil(n / xmaps);
  const width = xmaps * (w + padding) + padding;
  const height = ymaps * (h + padding) + padding;
  const pixels = new Uint8Array(width * height * C);

  for (let k = 0; k < n; k++) {
    const top = Math.floor(k / xmaps) * (h + padding) + padding;
    const left = (k % xmaps) * (w + padding) + padding;
    for (let ch = 0; ch < C; ch++) {
      for (let r = 0; r < h; r++) {
        const src = ((k * C + ch) * h + r) * w;
        const dst = ((top + r) * width + left) * C + ch;
        for (let c = 0; c < w; c++) pixels[dst + c * C] = toByte(images[src + c]);
      }
    }
  }
  return { width, height, channels: C, pixels };
}

// save_image does mul(255).add(0.5).clamp(0,255) in float32 and truncates;
// fround keeps the same rounding at the .5 boundaries.
function toByte(x: number): number {
  const v = Math.fround(Math.fround(x * 255) + 0.5);
  if (!(v > 0)) return 0; // also catches NaN
  if (v >= 255) return 255;
  return Math.trunc(v);
}
