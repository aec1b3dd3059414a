/**
 * Checks and conversions for what callers pass in. Every check says which argument was
 * wrong, by how much, and what would be right, and throws before any GPU work starts.
 *
 * Images arrive as flat row-major arrays of n × inputSize pixels, like a PyTorch tensor of
 * shape (n, 784) after `.flatten()`: Float32Array values in [0, 1], or bytes 0..255 (what
 * MNIST's idx files hold). Training and evaluation read pixels as bytes on the GPU (a 47 MB
 * training set instead of 188 MB), so floats are rounded to the nearest 1/255 there;
 * encode and reconstruct use floats as given.
 */
import { VaeError } from './errors';

/** Images as the API accepts them: n × inputSize values, row-major. See `VAE.fit`. */
export type ImageArray = Float32Array | Uint8Array | Uint8ClampedArray;

/** Latent vectors as the API accepts them: n × latentSize values, row-major. */
export type LatentArray = Float32Array | Float64Array | readonly number[];

function countOf(length: number, perItem: number, what: string, unit: string): number {
  if (length === 0) throw new VaeError('invalid-input', `${what} is empty: pass at least one ${unit}`);
  if (length % perItem !== 0) {
    throw new VaeError(
      'invalid-input',
      `${what} has ${length} values, which is not a whole number of ${perItem}-value ${unit}s ` +
        `(${Math.floor(length / perItem)} ${unit}s and ${length % perItem} values left over); pass n × ${perItem} values, row-major`,
    );
  }
  return length / perItem;
}

function isByteArray(a: unknown): a is Uint8Array | Uint8ClampedArray {
  return a instanceof Uint8Array || a instanceof Uint8ClampedArray;
}

function notImages(what: string, value: unknown): VaeError {
  const kind =
    value === null
      ? 'null'
      : Array.isArray(value)
        ? 'an Array'
        : typeof value === 'object'
          ? value.constructor.name
          : typeof value;
  return new VaeError(
    'invalid-input',
    `${what} must be a Float32Array of pixels in [0, 1] or a Uint8Array of bytes, got ${kind}`,
  );
}

/** The first value outside [0, 1] (NaN included) as an error, or nothing. */
function checkUnitRange(values: Float32Array, what: string): void {
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!(v >= 0 && v <= 1)) {
      throw new VaeError(
        'invalid-input',
        `${what}[${i}] is ${v}: pixels must lie in [0, 1] (bytes divided by 255, not normalized by a mean and std); ` +
          'or pass the bytes themselves as a Uint8Array',
      );
    }
  }
}

/** Images as bytes (what the training and evaluation kernels gather from) and their count. */
export function imagesAsBytes(images: unknown, pixels: number, what = 'images'): { bytes: Uint8Array; count: number } {
  if (isByteArray(images)) {
    const count = countOf(images.length, pixels, what, 'image');
    return { bytes: new Uint8Array(images.buffer, images.byteOffset, images.length), count };
  }
  if (!(images instanceof Float32Array)) throw notImages(what, images);
  const count = countOf(images.length, pixels, what, 'image');
  checkUnitRange(images, what);
  const bytes = new Uint8Array(images.length);
  for (let i = 0; i < images.length; i++) bytes[i] = Math.round(images[i] * 255);
  return { bytes, count };
}

/** Images as floats in [0, 1] and their count. */
export function imagesAsFloats(
  images: unknown,
  pixels: number,
  what = 'images',
): { floats: Float32Array; count: number } {
  if (isByteArray(images)) {
    const count = countOf(images.length, pixels, what, 'image');
    const floats = new Float32Array(images.length);
    for (let i = 0; i < images.length; i++) floats[i] = images[i] / 255;
    return { floats, count };
  }
  if (!(images instanceof Float32Array)) throw notImages(what, images);
  const count = countOf(images.length, pixels, what, 'image');
  checkUnitRange(images, what);
  return { floats: images, count };
}

/** Latent vectors as float32 and their count; every value must be finite. */
export function latentsAsFloats(
  latents: unknown,
  latentSize: number,
  what = 'latents',
): { floats: Float32Array; count: number } {
  if (!(latents instanceof Float32Array || latents instanceof Float64Array || Array.isArray(latents))) {
    throw new VaeError(
      'invalid-input',
      `${what} must be a Float32Array (or Float64Array, or array of numbers) of n × ${latentSize} values`,
    );
  }
  const count = countOf(latents.length, latentSize, what, 'latent vector');
  const floats = latents instanceof Float32Array ? latents : Float32Array.from(latents as ArrayLike<number>);
  for (let i = 0; i < floats.length; i++) {
    if (!Number.isFinite(floats[i])) {
      throw new VaeError(
        'invalid-input',
        `${what}[${i}] is ${(latents as ArrayLike<number>)[i]}: latent values must be finite float32 numbers`,
      );
    }
  }
  return { floats, count };
}

/** Checks that `bytes` of pixels fit in one buffer the device can bind; the error says how many images would. */
export function checkBindable(bytes: Uint8Array, limits: GPUSupportedLimits, pixels: number, what: string): void {
  const limit = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
  if (bytes.length > limit) {
    throw new VaeError(
      'invalid-input',
      `${what} holds ${bytes.length} bytes of pixels; this device binds at most ${limit} bytes per buffer: ` +
        `pass at most ${Math.floor(limit / pixels)} images per call`,
    );
  }
}

/** An integer in [min, max], or the fallback when `value` is undefined. */
export function integerOption(name: string, value: unknown, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new VaeError('invalid-option', `${name} must be an integer from ${min} to ${max}, got ${String(value)}`);
  }
  return value;
}

/** A finite number in (min, max] (or [min, max] when `includeMin`), or the fallback. */
export function numberOption(
  name: string,
  value: unknown,
  fallback: number,
  min: number,
  max: number,
  includeMin = false,
): number {
  if (value === undefined) return fallback;
  const above = includeMin ? (value as number) >= min : (value as number) > min;
  if (typeof value !== 'number' || !Number.isFinite(value) || !above || value > max) {
    throw new VaeError(
      'invalid-option',
      `${name} must be a number in ${includeMin ? '[' : '('}${min}, ${max}], got ${String(value)}`,
    );
  }
  return value;
}

/** A number the given rule accepts (a settings.ts `…Reason`: null when accepted), or the fallback. */
export function ruledOption(
  name: string,
  value: unknown,
  fallback: number,
  reason: (value: number) => string | null,
): number {
  if (value === undefined) return fallback;
  const bad = typeof value === 'number' ? reason(value) : reason(NaN);
  if (bad)
    throw new VaeError(
      'invalid-option',
      `${name} ${bad}, got ${typeof value === 'number' ? String(value) : JSON.stringify(value)}`,
    );
  return value as number;
}

/** Splits (n, 2L) rows of [mu ‖ logvar] into two (n, L) arrays. */
export function splitMuLogvar(
  mulv: Float32Array,
  count: number,
  latentSize: number,
): { mu: Float32Array; logvar: Float32Array } {
  const L = latentSize;
  const mu = new Float32Array(count * L);
  const logvar = new Float32Array(count * L);
  for (let r = 0; r < count; r++) {
    mu.set(mulv.subarray(r * 2 * L, r * 2 * L + L), r * L);
    logvar.set(mulv.subarray(r * 2 * L + L, (r + 1) * 2 * L), r * L);
  }
  return { mu, logvar };
}

/**
 * The class of each of `count` rows for a conditional model of `classes` classes, from `label`:
 * one class for every row, or an array of one per row. An unconditional model (classes 0) takes
 * none, and says so rather than ignoring it. `name` is the option as the caller wrote it.
 */
export function labelsOption(
  context: string,
  name: string,
  label: unknown,
  count: number,
  classes: number,
): Uint32Array | undefined {
  if (classes === 0) {
    if (label === undefined) return undefined;
    throw new VaeError(
      'invalid-option',
      `${context}: ${name} given, but this model is unconditional (created without classes): drop ${name}, or create a model with { classes }`,
    );
  }
  const range = `an integer from 0 to ${classes - 1}`;
  if (label === undefined) {
    throw new VaeError(
      'invalid-option',
      `${context}: this model is conditional on ${classes} classes: pass ${name} — one class (${range}) for every row, or an array of ${count}, one per row`,
    );
  }
  const one = (v: unknown, where: string): number => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v >= classes) {
      throw new VaeError('invalid-option', `${context}: ${where} must be a class, ${range}, got ${String(v)}`);
    }
    return v;
  };
  if (typeof label === 'number') return new Uint32Array(count).fill(one(label, name));
  const isList = Array.isArray(label) || (ArrayBuffer.isView(label) && !(label instanceof DataView));
  if (!isList)
    throw new VaeError(
      'invalid-option',
      `${context}: ${name} must be a class (${range}) or an array of them, got ${typeof label}`,
    );
  const list = label as ArrayLike<unknown>;
  if (list.length !== count) {
    throw new VaeError(
      'invalid-option',
      `${context}: ${name} has ${list.length} labels for ${count} rows: pass one per row, or a single class for all`,
    );
  }
  return Uint32Array.from({ length: count }, (_, i) => one(list[i], `${name}[${i}]`));
}
