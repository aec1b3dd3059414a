/**
 * The conditional VAE's kernels and model against the float64 references:
 * - the conditional gather: X, [x ‖ onehot(y)] and the one-hot columns of [z ‖ onehot(y)], the
 *   labels read through the same permutation as the pixels (odd D, one class, a short last batch,
 *   MNIST's sizes), writing nothing else;
 * - the column join of a conditional conv encoder ([h ‖ onehot(y)], and its gradient's h columns);
 * - the strided reparameterization, which leaves the one-hot columns alone;
 * - the dz→dmulv epilogue of a conditioned decoder (the product has L + C columns, only L go on)
 *   in each of the three matmul kernels, on odd and real shapes;
 * - whole conditional training steps (every dispatch) against vaeForwardBackward with labels,
 *   whose own gradient is checked by central differences here.
 * The PyTorch parity of a conditional step is in parity.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors';
import { checkpointSizes, decodeCheckpoint, encodeCheckpoint } from '../src/model/checkpoint';
import { arenaLayout, type VaeSizes } from '../src/model/graph';
import { classCountOf, gridLabels, labelsReason } from '../src/model/labels';
import { concatOneHot, gatherConditional, matmul, reparamBackward, reparamForward } from '../src/reference/ops';
import { vaeForwardBackward, vaeLoss, type VaeParams } from '../src/reference/vae';
import { expectClose, f32, implementations, permutation, rng, useHarness } from './gpu';
import type { OpSpec } from './harness/harness';
import { expectCentralDifferences, expectStepAsReference } from './specs';

/** PyTorch-default-like weights in the arena layout, and the same as named float64 views. */
function initialModel(sizes: VaeSizes, seed: number) {
  const layout = arenaLayout(sizes);
  const r = rng(seed);
  const arena = new Float32Array(layout.length);
  const named: VaeParams = {};
  for (const p of layout.params) {
    const bound = 1 / Math.sqrt(p.fanIn);
    for (let i = 0; i < p.length; i++) arena[p.offset + i] = (2 * r.next() - 1) * bound;
    named[p.name] = Float64Array.from(arena.subarray(p.offset, p.offset + p.length));
  }
  return { layout, arena, named };
}

describe.each(implementations)('$name', (implementation) => {
  const gpu = useHarness(implementation);

  const SENTINEL = -3.5;
  const padded = (n: number) => new Float32Array(n + 4).fill(SENTINEL);
  const expectTail = (name: string, m: Float32Array, n: number) =>
    expect([...m.subarray(n, n + 4)], `${name}: written past its end`).toEqual([
      SENTINEL,
      SENTINEL,
      SENTINEL,
      SENTINEL,
    ]);

  function randomBytes(count: number, seed: number): Uint8Array {
    const r = rng(seed);
    return Uint8Array.from({ length: count }, () => Math.floor(r.next() * 256));
  }

  describe('conditional gather', () => {
    // [images, D, C, L, rows, batchSize, batch]
    const CASES: [number, number, number, number, number, number, number][] = [
      [23, 13, 3, 5, 5, 9, 2], // the short last batch: images perm[18 … 22]
      [7, 1, 1, 1, 3, 3, 1], // one pixel, one class
      [50, 13, 10, 4, 7, 7, 3],
      [1000, 784, 10, 20, 104, 128, 7], // MNIST's sizes; 1000 = 7·128 + 104
    ];
    it.each(CASES)(
      '%i images of D = %i, C = %i, L = %i: %i rows of a batch of %i, batch %i',
      async (images, D, C, L, rows, batchSize, batch) => {
        const data = randomBytes(images * D, images + D);
        const perm = permutation(images, D * 7 + C);
        // Every class appears, and the labels are not the image order (a gather that ignored perm would fail).
        const labels = Uint32Array.from({ length: images }, (_, i) => (i * 7 + 3) % C);
        const out = await gpu.run({
          buffers: {
            data,
            perm,
            labels,
            state: Uint32Array.from([99, batch, 0, 0]),
            X: padded(rows * D),
            XY: padded(rows * (D + C)),
            Z: padded(rows * (L + C)),
          },
          ops: [
            {
              op: 'gatherConditional',
              dims: { rows, D, batchSize, C, L },
              state: 'state',
              data: 'data',
              perm: 'perm',
              labels: 'labels',
              X: 'X',
              XY: 'XY',
              Z: 'Z',
            },
          ],
          read: ['X', 'XY', 'Z'],
        });
        const ref = gatherConditional(data, labels, D, C, perm, batch * batchSize, rows);
        const X = f32(out.X!);
        const XY = f32(out.XY!);
        const Z = f32(out.Z!);
        // Bit-exact: byte/255 from the same table as the unconditional gather, one-hots are 0 or 1.
        expect([...X.subarray(0, rows * D)], 'X').toEqual([...Float32Array.from(ref.X)]);
        expect([...XY.subarray(0, rows * (D + C))], '[x ‖ onehot(y)]').toEqual([...Float32Array.from(ref.XY)]);
        for (let r = 0; r < rows; r++) {
          // z's own columns belong to the reparameterization: untouched here.
          expect([...Z.subarray(r * (L + C), r * (L + C) + L)], `Z row ${r}, latent columns`).toEqual(
            new Array(L).fill(SENTINEL),
          );
          expect([...Z.subarray(r * (L + C) + L, (r + 1) * (L + C))], `Z row ${r}, one-hot columns`).toEqual([
            ...ref.onehot.subarray(r * C, (r + 1) * C),
          ]);
        }
        expectTail('X', X, rows * D);
        expectTail('XY', XY, rows * (D + C));
        expectTail('Z', Z, rows * (L + C));
      },
    );
  });

  describe("column join (a conditional conv encoder's [h ‖ onehot(y)] and its gradient's h columns)", () => {
    // [rows, A's width, stride, offset, B's width, stride, offset]
    const CASES: [number, number, number, number, number, number, number][] = [
      [5, 7, 7, 0, 3, 16, 13], // h (5, 7) and the one-hot columns of [x ‖ onehot(y)], D = 13, C = 3
      [3, 9, 12, 0, 0, 1, 0], // the backward: the first 9 of d[h ‖ onehot(y)]'s 12 columns, no B
      [1, 1, 5, 4, 1, 1, 0], // one row, one column each, from an offset
      [7, 3136, 3136, 0, 10, 794, 784], // the conv preset's widths on MNIST
    ];
    it.each(CASES)(
      '%i rows: %i columns (stride %i, from %i) ‖ %i columns (stride %i, from %i)',
      async (rows, wa, sa, oa, wb, sb, ob) => {
        const r = rng(rows + wa + wb);
        const A = r.uniform(rows * sa, -2, 2);
        const B = r.uniform(Math.max(1, rows * sb), -2, 2);
        const width = wa + wb;
        const out = await gpu.run({
          buffers: { A, B, out: padded(rows * width) },
          ops: [
            {
              op: 'joinColumns',
              rows,
              a: { buffer: 'A', width: wa, stride: sa, offset: oa },
              b: { buffer: 'B', width: wb, stride: sb, offset: ob },
              out: 'out',
            },
          ],
          read: ['out'],
        });
        const got = f32(out.out!);
        const want = new Float32Array(rows * width);
        for (let row = 0; row < rows; row++)
          for (let col = 0; col < width; col++)
            want[row * width + col] = col < wa ? A[row * sa + oa + col]! : B[row * sb + ob + col - wa]!;
        // A copy: bit for bit.
        expect([...got.subarray(0, rows * width)]).toEqual([...want]);
        expectTail('out', got, rows * width);
      },
    );
  });

  describe('strided reparameterization', () => {
    it.each([
      [5, 3, 2],
      [128, 20, 10],
      [1, 1, 1],
    ])('%i rows, L = %i, C = %i: z fills the first L columns of [z ‖ onehot(y)]', async (rows, L, C) => {
      const r = rng(rows * L + C);
      const mulv = r.uniform(rows * 2 * L, -3, 3);
      const stride = L + C;
      const out = await gpu.run({
        buffers: { state: Uint32Array.from([4, 0, 0, 0]), mulv, z: padded(rows * stride), eps: padded(rows * L) },
        ops: [
          {
            op: 'reparam',
            entry: 'reparam_forward',
            params: [rows, L, 11, 0, stride],
            buffers: ['state', 'mulv', 'z', 'eps'],
          },
        ],
        read: ['z', 'eps'],
      });
      const eps = f32(out.eps!);
      const z = f32(out.z!);
      const zRef = reparamForward(mulv, rows, L, eps.subarray(0, rows * L));
      const latent = Float32Array.from({ length: rows * L }, (_, i) => z[Math.floor(i / L) * stride + (i % L)]!);
      expectClose('z', latent, zRef, 1e-5, 1e-6);
      for (let row = 0; row < rows; row++) {
        expect([...z.subarray(row * stride + L, (row + 1) * stride)], `row ${row}: one-hot columns`).toEqual(
          new Array(C).fill(SENTINEL),
        );
      }
      expectTail('z', z, rows * stride);
      expectTail('eps', eps, rows * L);
    });
  });

  describe('dz→dmulv epilogue of a conditioned decoder', () => {
    const kernels = ['matmul', 'matmulSplitK', 'matmulTiled'] as const;
    // [rows, L, C, H]
    const SHAPES: [number, number, number, number][] = [
      [7, 3, 2, 9],
      [128, 20, 10, 400],
      [1, 1, 1, 1],
      [33, 5, 10, 17],
    ];
    describe.each(kernels)('%s', (op) => {
      it.each(SHAPES)('%i rows, L = %i, C = %i, H = %i', async (rows, L, C, H) => {
        const r = rng(rows * 1000 + L * 10 + C);
        const dH = r.uniform(rows * H);
        const W = r.uniform(H * (L + C)); // (H, L + C): the first decoder layer's weight
        const mulv = r.uniform(rows * 2 * L, -3, 3);
        const eps = r.uniform(rows * L, -2, 2);
        const dmulvIn = r.uniform(rows * 2 * L); // the KL gradient already there
        const dmulv = new Float32Array(rows * 2 * L + 4).fill(SENTINEL);
        dmulv.set(dmulvIn);
        const out = await gpu.run({
          buffers: { dH, W, dmulv, mulv, eps },
          ops: [
            {
              op,
              dims: { M: rows, N: L + C, K: H, L },
              options: { transA: false, transB: false, reparamConditioned: true },
              A: 'dH',
              B: 'W',
              C: 'dmulv',
              mulv: 'mulv',
              eps: 'eps',
            } as OpSpec,
          ],
          read: ['dmulv'],
        });
        const dzy = matmul(dH, W, rows, L + C, H, { transA: false, transB: false });
        const dz = dzy.filter((_, i) => i % (L + C) < L);
        const ref = reparamBackward(mulv, eps, dz, dmulvIn, rows, L);
        const got = f32(out.dmulv!);
        expectClose('dmulv', got, ref, 1e-5, 1e-5 * Math.sqrt(H));
        expectTail('dmulv', got, rows * 2 * L);
      });
    });

    it('refuses reparamConditioned without dims.L, naming what is missing', async () => {
      await expect(
        gpu.run({
          buffers: {
            dH: new Float32Array(4),
            W: new Float32Array(4),
            dmulv: new Float32Array(4),
            mulv: new Float32Array(4),
            eps: new Float32Array(4),
          },
          ops: [
            {
              op: 'matmul',
              dims: { M: 1, N: 2, K: 2 },
              options: { transA: false, transB: false, reparamConditioned: true },
              A: 'dH',
              B: 'W',
              C: 'dmulv',
              mulv: 'mulv',
              eps: 'eps',
            },
          ],
          read: [],
        }),
      ).rejects.toThrow(/reparamConditioned needs dims\.L/);
    });
  });

  // ---- The whole model ---------------------------------------------------------------------------

  describe('conditional model vs the float64 reference', () => {
    // Odd sizes, one and two hidden layers, and MNIST's real ones (one step).
    const MODELS: [string, VaeSizes, number][] = [
      ['13-7-3, 4 classes', { D: 13, hidden: [7], L: 3, classes: 4 }, 6],
      ['21-9-6-5, 3 classes', { D: 21, hidden: [9, 6], L: 5, classes: 3 }, 11],
      ['784-400-20, 10 classes', { D: 784, hidden: [400], L: 20, classes: 10 }, 128],
    ];
    it.each(MODELS)('%s: loss and every gradient of a training step', async (_, sizes, rows) => {
      const C = sizes.classes!;
      const data = randomBytes(rows * sizes.D, rows + sizes.D);
      const labels = Array.from({ length: rows }, (_, i) => (i * 5 + 1) % C);
      const { layout, arena, named } = initialModel(sizes, sizes.D);
      const grads = await expectStepAsReference(gpu, { sizes, layout, arena, named, data, rows, labels });
      // The class columns of fc1's gradient are per-class row sums of dH1: a class no row has gets zero.
      const unused = [...Array(C).keys()].filter((k) => !labels.includes(k));
      const fc1 = layout.params.find((p) => p.name === 'fc1.weight')!;
      for (const k of unused) {
        for (let h = 0; h < fc1.shape[0]!; h++)
          expect(grads[fc1.offset + h * fc1.shape[1]! + sizes.D + k], `fc1 class ${k}`).toBe(0);
      }
    });
  });
});

describe('the conditional reference itself', () => {
  it('its gradient matches central differences of its loss, class columns included', () => {
    const sizes: VaeSizes = { D: 6, hidden: [5], L: 2, classes: 3 };
    const rows = 4;
    const { named } = initialModel(sizes, 77);
    const r = rng(3);
    const x = Float64Array.from({ length: rows * sizes.D }, () => r.next());
    const eps = Float64Array.from({ length: rows * sizes.L }, () => 2 * r.next() - 1);
    const labels = [2, 0, 2, 1];
    const ref = vaeForwardBackward(named, sizes, x, eps, rows, labels);
    expectCentralDifferences(ref.grads, named, () => vaeLoss(named, sizes, x, eps, rows, labels), 1e-5, 1e-6);
    // The labels matter: another labelling is another loss.
    expect(vaeLoss(named, sizes, x, eps, rows, [0, 1, 0, 2])).not.toBeCloseTo(ref.loss, 6);
    expect(() => vaeLoss(named, sizes, x, eps, rows)).toThrow(/needs a label per row/);
  });

  it('concatOneHot, classCountOf, labelsReason and gridLabels', () => {
    expect([...concatOneHot([1, 2, 3, 4], 2, 2, [1, 0], 2)]).toEqual([1, 2, 0, 1, 3, 4, 1, 0]);
    expect(classCountOf(Uint8Array.from([0, 3, 1]), Uint8Array.from([9]))).toBe(10);
    expect(labelsReason('train', undefined, 5, 10)).toMatch(/5 train images have no labels/);
    expect(labelsReason('test', [0, 1], 3, 10)).toMatch(/2 test labels for 3 images/);
    expect(labelsReason('train', [0, 12, 1], 3, 10)).toMatch(/train image 1 has label 12, outside 0 … 9/);
    expect(labelsReason('train', [0, 9, 1], 3, 10)).toBeNull();
    expect([...gridLabels(3, 2)]).toEqual([0, 0, 1, 1, 2, 2]);
  });
});

describe('conditional checkpoints', () => {
  const sizes: VaeSizes = { D: 13, hidden: [7], L: 3, classes: 4 };
  const { layout, arena } = initialModel(sizes, 9);
  const bytes = encodeCheckpoint(layout, { params: arena, step: 5, metadata: {} });

  it('keep PyTorch shapes, record the classes, and come back as a conditional model', () => {
    const { tensors, metadata } = readSafetensors(bytes);
    expect(tensors.get('fc1.weight')!.shape).toEqual([7, 13 + 4]);
    expect(tensors.get('fc3.weight')!.shape).toEqual([7, 3 + 4]);
    expect(metadata.classes).toBe('4');
    expect(checkpointSizes(bytes).sizes).toEqual(sizes);
    expect(decodeCheckpoint(bytes, layout).params).toEqual(arena);
    // A PyTorch export has no metadata: the shapes alone say it is conditional.
    const bare = writeSafetensors(Object.fromEntries([...tensors].filter(([k]) => !k.startsWith('optimizer.'))), {});
    expect(checkpointSizes(bare).sizes).toEqual(sizes);
  });

  it('refuse a class count the shapes contradict, and an unconditional model says what the file is', () => {
    const { tensors } = readSafetensors(bytes);
    const lying = writeSafetensors(Object.fromEntries(tensors), { classes: '10' });
    expect(() => checkpointSizes(lying)).toThrow(
      /metadata says classes "10", but its tensors are those of a 13-7-3 \(4 classes\) model/,
    );
    const plain = arenaLayout({ D: 17, hidden: [7], L: 3 });
    expect(() => decodeCheckpoint(bytes, plain)).toThrow(
      /checkpoint is for a 13-7-3 \(4 classes\) model, this model is 17-7-3/,
    );
  });
});
