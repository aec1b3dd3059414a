/**
 * The batch gather (shaders/gather.wgsl.ts) against the reference: X[r, k] =
 * data[perm[state[1]·batchSize + r], k] / 255 from a byte dataset packed four pixels to a u32.
 * Covers every byte value, byte offsets that are not multiples of 4 (D = 13, D = 1), a dataset
 * whose length is not a multiple of 4 (the tail word is padded), the first batch and the last,
 * partial batch of MNIST's 60,000-image epoch (batch 468 of 128 has 96 rows).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { gather } from '../src/reference/ops';
import { expectClose, f32, implementations, permutation, rng, useHarness } from './gpu';

describe.each(implementations)('$name', (implementation) => {
  const gpu = useHarness(implementation);

  const SENTINEL = -3.5;

  /**
   * Tolerance: none. ToTensor divides in float32, and a correctly rounded float32 division of
   * byte/255 is the float64 quotient rounded once, so the target is Math.fround(byte/255). The
   * kernel looks the values up in a table of exactly those bit patterns instead of dividing
   * (WGSL only promises 2.5 ulp for `/`, and SwiftShader was 1 ulp off for 126 of 256 bytes).
   */
  const MAX_ULP = 0;

  let maxUlp = 0;
  let inexact = 0;
  let compared = 0;
  afterAll(() =>
    console.log(
      `gather max error on ${implementation.name}: ${maxUlp} ulp (allowed ${MAX_ULP}); ${inexact} of ${compared} values not bit-exact`,
    ),
  );

  /** Distance in float32 steps between two finite float32 values of the same sign. */
  function ulpDistance(a: number, b: number): number {
    const bits = new Int32Array(new Float32Array([a, b]).buffer);
    return Math.abs(bits[0]! - bits[1]!);
  }

  function checkX(name: string, X: Float32Array, ref: Float64Array) {
    const rounded = Float32Array.from(ref);
    let worst = 0;
    for (let i = 0; i < ref.length; i++) {
      const d = ulpDistance(X[i]!, rounded[i]!);
      worst = Math.max(worst, d);
      if (d > 0) inexact++;
    }
    compared += ref.length;
    maxUlp = Math.max(maxUlp, worst);
    // 1 ulp of a value in [0, 1] is at most 2^-24 relative: expressed for expectClose, which
    // then prints the first mismatches if any value is further off.
    expectClose(name, X, rounded, MAX_ULP * 2 ** -23, 0);
    expect(worst, `${name}: ulp distance`).toBeLessThanOrEqual(MAX_ULP);
  }

  async function gatherGpu(
    data: Uint8Array,
    perm: Uint32Array,
    batch: number,
    dims: { rows: number; D: number; batchSize: number },
  ) {
    const n = dims.rows * dims.D;
    const out = await gpu.run({
      buffers: {
        data,
        perm,
        // state = (t, batch): t is irrelevant here, so make it something non-zero.
        state: Uint32Array.from([12345, batch, 0, 0]),
        X: new Float32Array(n + 4).fill(SENTINEL),
      },
      ops: [{ op: 'gather', dims, state: 'state', data: 'data', perm: 'perm', X: 'X' }],
      read: ['X'],
    });
    const X = f32(out.X, n + 4);
    expect([...X.subarray(n)], 'written past rows·D').toEqual([SENTINEL, SENTINEL, SENTINEL, SENTINEL]);
    return X.subarray(0, n);
  }

  function randomBytes(count: number, seed: number): Uint8Array {
    const r = rng(seed);
    const words = new Uint32Array(Math.ceil(count / 4));
    for (let i = 0; i < words.length; i++) words[i] = Math.floor(r.next() * 2 ** 32);
    return new Uint8Array(words.buffer, 0, count);
  }

  describe('gather', () => {
    it('every byte value 0 … 255 maps to byte/255', async () => {
      const data = Uint8Array.from({ length: 256 }, (_, i) => i);
      const X = await gatherGpu(data, Uint32Array.from([0]), 0, { rows: 1, D: 256, batchSize: 1 });
      const ref = gather(data, 256, [0], 0, 1);
      checkX('X(0…255)', X, ref);
      const off = [...data].filter((b) => X[b] !== Math.fround(ref[b]!));
      console.log(
        `gather: ${off.length} of 256 byte values are not the correctly rounded byte/255 (e.g. ${off.slice(0, 6).join(', ')})`,
      );
      expect(X[0]).toBe(0);
      expect(X[255]).toBe(1);
    });

    it('D = 1, one row, reading the last byte of a 5-byte dataset (in the padded tail word)', async () => {
      const data = Uint8Array.from([10, 20, 30, 40, 255]);
      const perm = Uint32Array.from([3, 1, 4, 0, 2]);
      const X = await gatherGpu(data, perm, 2, { rows: 1, D: 1, batchSize: 1 }); // perm[2] = 4
      checkX('X', X, gather(data, 1, perm, 2, 1));
      expect(X[0]).toBe(1);
    });

    it.each([
      [7, 2],
      [5, 3],
      [3, 15],
    ])('odd D = 13, %i rows per batch, batch %i', async (rows, batch) => {
      const images = 50; // 650 bytes: not a multiple of 4
      const data = randomBytes(images * 13, rows * 31 + batch);
      const perm = permutation(images, rows);
      // Swap the last image into this batch: its final bytes sit in the padded tail word.
      const last = perm.indexOf(images - 1);
      [perm[last], perm[batch * rows]] = [perm[batch * rows]!, perm[last]!];
      const X = await gatherGpu(data, perm, batch, { rows, D: 13, batchSize: rows });
      checkX(`X 13×${rows}`, X, gather(data, 13, perm, batch * rows, rows));
    });

    it('D = 13, a short last batch (5 rows of a batch size of 9)', async () => {
      const images = 23;
      const data = randomBytes(images * 13, 99);
      const perm = permutation(images, 99);
      const X = await gatherGpu(data, perm, 2, { rows: 5, D: 13, batchSize: 9 }); // images perm[18 … 22]
      checkX('X 13×5', X, gather(data, 13, perm, 18, 5));
    });

    describe('MNIST shapes: 60,000 images of 784 bytes, batches of 128', () => {
      const images = 60_000;
      const D = 784;
      const data = randomBytes(images * D, 60_000);
      const perm = permutation(images, 2024);

      // One upload of the 47 MB dataset, three gathers (three state buffers) in one op list.
      it('batches 0 and 235 (128 rows) and the last, 468 (96 rows), from one dataset upload', async () => {
        const batches = [
          [0, 128],
          [235, 128],
          [468, 96],
        ] as const;
        const buffers: Record<string, ArrayBufferView> = { data, perm };
        batches.forEach(([batch, rows], i) => {
          buffers[`state${i}`] = Uint32Array.from([7, batch, 0, 0]);
          buffers[`X${i}`] = new Float32Array(rows * D + 4).fill(SENTINEL);
        });
        const out = await gpu.run({
          buffers,
          ops: batches.map(([, rows], i) => ({
            op: 'gather' as const,
            dims: { rows, D, batchSize: 128 },
            state: `state${i}`,
            data: 'data',
            perm: 'perm',
            X: `X${i}`,
          })),
          read: batches.map((_, i) => `X${i}`),
        });
        batches.forEach(([batch, rows], i) => {
          const X = f32(out[`X${i}`]!, rows * D + 4);
          expect([...X.subarray(rows * D)], `batch ${batch}: written past rows·D`).toEqual([
            SENTINEL,
            SENTINEL,
            SENTINEL,
            SENTINEL,
          ]);
          checkX(`X batch ${batch}`, X.subarray(0, rows * D), gather(data, D, perm, batch * 128, rows));
        });
      });
    });
  });
});
