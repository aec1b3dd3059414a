// Reader and writer for the safetensors container format.
//
// Layout: u64 little-endian header length N, N bytes of UTF-8 JSON, then the
// raw tensor bytes. Offsets in the header are relative to the data section.
//
// The reader treats its input as untrusted (checkpoints get uploaded by users
// and shipped around), so every field is validated before any allocation that
// depends on it, and every failure is a SafetensorsError whose message names
// the offending tensor.

export type DType = 'F32' | 'U8' | 'I32' | 'U32' | 'F64' | 'I64';

export type TensorData = Float32Array | Uint8Array | Int32Array | Uint32Array | Float64Array | BigInt64Array;

export interface Tensor {
  dtype: DType;
  shape: number[];
  data: TensorData;
}

export class SafetensorsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SafetensorsError';
  }
}

/** Upper bound on the JSON header; real headers are a few KB, so anything
 *  near this is an attack or corruption, and we refuse before decoding. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

const METADATA_KEY = '__metadata__';

interface DTypeInfo {
  itemsize: number;
  make: (length: number) => TensorData;
  matches: (data: unknown) => boolean;
}

const DTYPES: Record<DType, DTypeInfo> = {
  F32: { itemsize: 4, make: (n) => new Float32Array(n), matches: (d) => d instanceof Float32Array },
  U8: { itemsize: 1, make: (n) => new Uint8Array(n), matches: (d) => d instanceof Uint8Array },
  I32: { itemsize: 4, make: (n) => new Int32Array(n), matches: (d) => d instanceof Int32Array },
  U32: { itemsize: 4, make: (n) => new Uint32Array(n), matches: (d) => d instanceof Uint32Array },
  F64: { itemsize: 8, make: (n) => new Float64Array(n), matches: (d) => d instanceof Float64Array },
  I64: { itemsize: 8, make: (n) => new BigInt64Array(n), matches: (d) => d instanceof BigInt64Array },
};

function isDType(s: unknown): s is DType {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(DTYPES, s);
}

// The format is little-endian on disk; typed arrays use host order. Every
// mainstream host is little-endian, but swapping is cheap insurance.
const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function swapInPlace(bytes: Uint8Array, itemsize: number): void {
  if (itemsize === 1) return;
  for (let i = 0; i < bytes.length; i += itemsize) {
    for (let a = i, b = i + itemsize - 1; a < b; a++, b--) {
      const t = bytes[a]!;
      bytes[a] = bytes[b]!;
      bytes[b] = t;
    }
  }
}

function isNonNegSafeInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function malformed(msg: string): SafetensorsError {
  return new SafetensorsError(`checkpoint is malformed: ${msg}`);
}

function truncated(msg: string): SafetensorsError {
  return new SafetensorsError(`checkpoint is truncated: ${msg}`);
}

/** Element count of a shape, or null if it would exceed 2^53 (a lie no real
 *  file can back up, and one that would make later arithmetic inexact). */
function elementCount(shape: readonly number[]): number | null {
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (!Number.isSafeInteger(n)) return null;
  }
  return n;
}

function validateShape(name: string, shape: unknown): number[] {
  if (!Array.isArray(shape)) {
    throw malformed(`tensor "${name}" has shape ${JSON.stringify(shape)}; expected an array of dimensions`);
  }
  for (const d of shape) {
    if (!isNonNegSafeInt(d)) {
      throw malformed(
        `tensor "${name}" has shape ${JSON.stringify(shape)}; every dimension must be a non-negative integer`,
      );
    }
  }
  return shape as number[];
}

interface Entry {
  name: string;
  dtype: DType;
  shape: number[];
  begin: number;
  end: number;
}

function parseEntry(name: string, raw: unknown, dataLength: number): Entry {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw malformed(`header entry for tensor "${name}" is not an object`);
  }
  const obj = raw as Record<string, unknown>;
  const dtype = obj['dtype'];
  if (!isDType(dtype)) {
    throw malformed(
      `tensor "${name}" has unsupported dtype ${JSON.stringify(dtype)}; supported: ${Object.keys(DTYPES).join(', ')}`,
    );
  }
  const shape = validateShape(name, obj['shape']);
  const offsets = obj['data_offsets'];
  if (!Array.isArray(offsets) || offsets.length !== 2 || !isNonNegSafeInt(offsets[0]) || !isNonNegSafeInt(offsets[1])) {
    throw malformed(
      `tensor "${name}" has data_offsets ${JSON.stringify(offsets)}; expected [begin, end] non-negative integers`,
    );
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end) {
    throw malformed(`tensor "${name}" has data_offsets [${begin}, ${end}] with begin after end`);
  }
  if (end > dataLength) {
    throw truncated(`tensor "${name}" ends at byte ${end} but the data section has ${dataLength} bytes`);
  }
  const count = elementCount(shape);
  const { itemsize } = DTYPES[dtype];
  const expected = count === null ? null : count * itemsize;
  if (expected === null || !Number.isSafeInteger(expected) || expected !== end - begin) {
    throw malformed(
      `tensor "${name}" has shape [${shape.join(', ')}] of ${dtype} needing ` +
        `${expected === null ? 'an impossible number of' : expected} bytes, but its data_offsets span ${end - begin} bytes`,
    );
  }
  return { name, dtype, shape: shape.slice(), begin, end };
}

function parseMetadata(raw: unknown): Record<string, string> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw malformed(`"${METADATA_KEY}" must be an object of string values`);
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
    if (typeof v !== 'string') {
      throw malformed(`metadata value for key "${k}" is ${JSON.stringify(v)}; metadata values must be strings`);
    }
    out[k] = v;
  }
  return out;
}

export function readSafetensors(bytes: Uint8Array): {
  tensors: Map<string, Tensor>;
  metadata: Record<string, string>;
} {
  if (bytes.length < 8) {
    throw truncated(`file has ${bytes.length} bytes, fewer than the 8-byte header length prefix`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // Read as two halves: a u64 can exceed 2^53, and BigInt would let a lying
  // length slip through Number() conversion with rounding.
  const lo = view.getUint32(0, true);
  const hi = view.getUint32(4, true);
  const available = bytes.length - 8;
  if (hi !== 0 || lo > MAX_HEADER_BYTES) {
    const declared = (BigInt(hi) << 32n) | BigInt(lo);
    throw malformed(`header declares ${declared} bytes, more than the ${MAX_HEADER_BYTES}-byte limit`);
  }
  const headerLen = lo;
  if (headerLen > available) {
    throw truncated(`header declares ${headerLen} bytes but only ${available} bytes follow the length prefix`);
  }

  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLen));
  } catch {
    throw malformed('header is not valid UTF-8');
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    throw malformed(`header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw malformed('header JSON must be an object mapping tensor names to entries');
  }

  const dataStart = 8 + headerLen;
  const dataLength = bytes.length - dataStart;
  let metadata: Record<string, string> = {};
  const entries: Entry[] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === METADATA_KEY) {
      metadata = parseMetadata(raw);
    } else {
      entries.push(parseEntry(name, raw, dataLength));
    }
  }

  // Empty tensors occupy no bytes, so they cannot collide with anything.
  const occupied = entries.filter((e) => e.end > e.begin).sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < occupied.length; i++) {
    const prev = occupied[i - 1]!;
    const cur = occupied[i]!;
    if (cur.begin < prev.end) {
      throw malformed(
        `tensor "${cur.name}" bytes [${cur.begin}, ${cur.end}) overlap tensor "${prev.name}" bytes [${prev.begin}, ${prev.end})`,
      );
    }
  }

  const tensors = new Map<string, Tensor>();
  for (const e of entries) {
    const info = DTYPES[e.dtype];
    const data = info.make((e.end - e.begin) / info.itemsize);
    // Copy rather than view: offsets inside the file are not guaranteed to be
    // aligned to the element size, and a view would pin the whole file buffer.
    const dst = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    dst.set(bytes.subarray(dataStart + e.begin, dataStart + e.end));
    if (!HOST_IS_LITTLE_ENDIAN) swapInPlace(dst, info.itemsize);
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data });
  }
  return { tensors, metadata };
}

export function writeSafetensors(
  tensors: Record<string, Tensor> | Map<string, Tensor>,
  metadata?: Record<string, string>,
): Uint8Array {
  const map = tensors instanceof Map ? tensors : new Map(Object.entries(tensors));
  // Sorted names make the output byte-identical regardless of insertion order,
  // which keeps fixtures and checksums stable.
  const names = [...map.keys()].sort();

  const header: Record<string, unknown> = {};
  if (metadata !== undefined) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') {
        throw new SafetensorsError(`cannot write metadata key "${k}": value must be a string`);
      }
    }
    header[METADATA_KEY] = { ...metadata };
  }

  let offset = 0;
  for (const name of names) {
    if (name === METADATA_KEY) {
      throw new SafetensorsError(`cannot write a tensor named "${METADATA_KEY}"; the name is reserved`);
    }
    const t = map.get(name)!;
    if (!isDType(t.dtype)) {
      throw new SafetensorsError(`cannot write tensor "${name}": unsupported dtype ${JSON.stringify(t.dtype)}`);
    }
    const info = DTYPES[t.dtype];
    if (!info.matches(t.data)) {
      throw new SafetensorsError(
        `cannot write tensor "${name}": dtype ${t.dtype} does not match data of type ${t.data.constructor.name}`,
      );
    }
    validateShapeForWrite(name, t.shape);
    const count = elementCount(t.shape);
    if (count !== t.data.length) {
      throw new SafetensorsError(
        `cannot write tensor "${name}": shape [${t.shape.join(', ')}] has ${count} elements but data has ${t.data.length}`,
      );
    }
    // Tensors are packed back to back: reference readers reject gaps in the
    // data section, so per-tensor alignment padding would break compatibility.
    const size = t.data.byteLength;
    header[name] = { dtype: t.dtype, shape: t.shape.slice(), data_offsets: [offset, offset + size] };
    offset += size;
  }

  const json = new TextEncoder().encode(JSON.stringify(header));
  // Pad with spaces (valid JSON whitespace) so the data section starts on an
  // 8-byte boundary, letting readers that do map the file view F64/I64 directly.
  const headerLen = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + headerLen + offset);
  const view = new DataView(out.buffer);
  view.setUint32(0, headerLen, true);
  view.setUint32(4, Math.floor(headerLen / 2 ** 32), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + headerLen);

  let pos = 8 + headerLen;
  for (const name of names) {
    const t = map.get(name)!;
    const src = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    out.set(src, pos);
    if (!HOST_IS_LITTLE_ENDIAN) swapInPlace(out.subarray(pos, pos + src.length), DTYPES[t.dtype].itemsize);
    pos += src.length;
  }
  return out;
}

function validateShapeForWrite(name: string, shape: unknown): void {
  if (!Array.isArray(shape) || !shape.every(isNonNegSafeInt)) {
    throw new SafetensorsError(
      `cannot write tensor "${name}": shape ${JSON.stringify(shape)} must be an array of non-negative integers`,
    );
  }
}
