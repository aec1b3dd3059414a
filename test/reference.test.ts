/**
 * The float64 CPU references, on their own (no GPU): Philox against its published answers,
 * every backward against central differences of its forward, the whole VAE's gradient
 * against differences of its loss, and the whole training step against PyTorch's.
 * The GPU tests trust these references, so this file is what makes that trust earned.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { readSafetensors, type Tensor } from '../src/io/safetensors';
import {
  adam,
  bceKl,
  gather,
  linearBackward,
  linearForward,
  matmul,
  reluBackward,
  reluForward,
  reparamBackward,
  reparamForward,
  sigmoidBackward,
  sigmoidForward,
} from '../src/reference/ops';
import { normal, normals, philox4x32_10 } from '../src/reference/philox';
import {
  paramNames,
  paramShapes,
  vaeForwardBackward,
  vaeLoss,
  type VaeParams,
  type VaeSizes,
} from '../src/reference/vae';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'parity');

/** Deterministic uniforms in [lo, hi) from Philox itself, so the tests need no other PRNG. */
function uniforms(count: number, seed: number, lo = -1, hi = 1): Float64Array {
  const out = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    const word = philox4x32_10([i >>> 2, 0, 0xabc, 0], [seed, 0x5eed])[i & 3]!;
    out[i] = lo + (hi - lo) * (word / 2 ** 32);
  }
  return out;
}

const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
};

/** Central difference of f at every entry of `at` (perturbed in place, then restored). */
function centralDiff(f: () => number, at: Float64Array, h: number, indices?: number[]): Float64Array {
  const grad = new Float64Array(at.length);
  for (const i of indices ?? at.keys()) {
    const orig = at[i]!;
    at[i] = orig + h;
    const up = f();
    at[i] = orig - h;
    const down = f();
    at[i] = orig;
    grad[i] = (up - down) / (2 * h);
  }
  return grad;
}

/** Worst |a − b| / max(|b|, floor·max|b|): relative, with a floor so exact zeros don't divide. */
function worstRel(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1e-3): number {
  let scale = 0;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]!));
  let worst = 0;
  for (let i = 0; i < b.length; i++) {
    worst = Math.max(worst, Math.abs(a[i]! - b[i]!) / Math.max(Math.abs(b[i]!), floor * scale, 1e-300));
  }
  return worst;
}

describe('philox', () => {
  it('matches the Random123 known answers', () => {
    const hex = (r: number[]) => r.map((v) => v.toString(16).padStart(8, '0')).join(' ');
    expect(hex(philox4x32_10([0, 0, 0, 0], [0, 0]))).toBe('6627e8d5 e169c58d bc57ac4c 9b00dbd8');
    const ones = 0xffffffff;
    expect(hex(philox4x32_10([ones, ones, ones, ones], [ones, ones]))).toBe('408f276d 41c83b0e a20bc7c6 6d5451fd');
    expect(hex(philox4x32_10([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]))).toBe(
      'd16cfe09 94fdcceb 5001e420 24126ea1',
    );
  });

  it('normals() agrees with normal() element by element, including a partial last block', () => {
    const batch = normals(11, 42, 3, 1);
    for (let e = 0; e < 11; e++) expect(batch[e]).toBe(normal(42, 3, 1, e));
    expect(normal(42, 3, 1, 0)).not.toBe(normal(42, 4, 1, 0));
    expect(normal(42, 3, 1, 0)).not.toBe(normal(42, 3, 2, 0));
    expect(normal(42, 3, 1, 0)).not.toBe(normal(43, 3, 1, 0));
  });

  it('draws standard normals: mean ≈ 0, variance ≈ 1 over 1e5 draws', () => {
    const n = 100_000;
    const z = normals(n, 1234, 0, 0);
    let mean = 0;
    for (const v of z) mean += v / n;
    let variance = 0;
    for (const v of z) variance += (v - mean) ** 2 / (n - 1);
    // Standard errors are 1/√n ≈ 0.003 for the mean and √(2/n) ≈ 0.0045 for the variance.
    expect(Math.abs(mean)).toBeLessThan(0.015);
    expect(Math.abs(variance - 1)).toBeLessThan(0.025);
    expect(z.every(Number.isFinite)).toBe(true);
  });

  it('reproduces the ε the PyTorch fixtures were generated with', () => {
    for (const name of ['odd', 'aligned']) {
      const { tensors, metadata } = loadFixture(name);
      const [B, L, seed] = [Number(metadata.B), Number(metadata.L), Number(metadata.seed)];
      for (let step = 0; step < 3; step++) {
        const want = tensors.get(`step${step}.eps`)!.data as Float32Array;
        const got = Float32Array.from(normals(B * L, seed, step, 0));
        expect(Array.from(got)).toEqual(Array.from(want));
      }
    }
  });
});

describe('op references', () => {
  const h = 1e-5;

  it('matmul honours the transposed layouts', () => {
    const [M, N, K] = [3, 5, 4];
    const A = uniforms(M * K, 1);
    const B = uniforms(K * N, 2);
    const AT = new Float64Array(K * M);
    const BT = new Float64Array(N * K);
    for (let m = 0; m < M; m++) for (let k = 0; k < K; k++) AT[k * M + m] = A[m * K + k]!;
    for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) BT[n * K + k] = B[k * N + n]!;
    const C = matmul(A, B, M, N, K, { transA: false, transB: false });
    expect(C[1 * N + 2]).toBeCloseTo(A[4] * B[2] + A[5] * B[7] + A[6] * B[12] + A[7] * B[17], 14);
    for (const [a, b, transA, transB] of [
      [AT, B, true, false],
      [A, BT, false, true],
      [AT, BT, true, true],
    ] as const) {
      expect(worstRel(matmul(a, b, M, N, K, { transA, transB }), C)).toBeLessThan(1e-15);
    }
  });

  it('linear backward (with and without the previous ReLU) matches finite differences', () => {
    const [rows, inF, outF] = [4, 6, 5];
    const pre = uniforms(rows * inF, 3);
    const W = uniforms(outF * inF, 4);
    const b = uniforms(outF, 5);
    const dY = uniforms(rows * outF, 6);
    const X = reluForward(pre);
    const f = () => dot(dY, linearForward(X, W, b, rows, inF, outF, false));
    const g = linearBackward(dY, X, W, rows, inF, outF);
    expect(worstRel(g.dW, centralDiff(f, W, h))).toBeLessThan(1e-6);
    expect(worstRel(g.db, centralDiff(f, b, h))).toBeLessThan(1e-6);
    expect(worstRel(g.dX, centralDiff(f, X, h))).toBeLessThan(1e-6);
    // Through the ReLU that made X: pre-activations are ≥ 1e-3 from the kink at this seed.
    expect(Math.min(...pre.map(Math.abs))).toBeGreaterThan(1e-3);
    const fPre = () => dot(dY, linearForward(reluForward(pre), W, b, rows, inF, outF, false));
    const masked = linearBackward(dY, X, W, rows, inF, outF, X).dX;
    expect(worstRel(masked, centralDiff(fPre, pre, h))).toBeLessThan(1e-6);
    expect(masked.some((v, i) => X[i] === 0 && v === 0)).toBe(true);
    // The forward ReLU epilogue is relu(X·Wᵀ + b).
    expect(Array.from(linearForward(X, W, b, rows, inF, outF, true))).toEqual(
      Array.from(reluForward(linearForward(X, W, b, rows, inF, outF, false))),
    );
  });

  it('relu backward matches finite differences away from 0', () => {
    const x = uniforms(20, 7).map((v) => (Math.abs(v) < 0.01 ? 0.5 : v));
    const dy = uniforms(20, 8);
    const fd = centralDiff(() => dot(dy, reluForward(x)), x, h);
    expect(worstRel(reluBackward(dy, reluForward(x)), fd)).toBeLessThan(1e-6);
  });

  it('sigmoid backward matches finite differences', () => {
    const x = uniforms(20, 9, -8, 8);
    const dy = uniforms(20, 10);
    const fd = centralDiff(() => dot(dy, sigmoidForward(x)), x, h);
    expect(worstRel(sigmoidBackward(dy, sigmoidForward(x)), fd)).toBeLessThan(1e-6);
  });

  it('reparam backward matches finite differences and adds onto dmulvIn', () => {
    const [rows, L] = [3, 4];
    const mulv = uniforms(rows * 2 * L, 11, -2, 2);
    const eps = normals(rows * L, 12, 0, 0);
    const dz = uniforms(rows * L, 13);
    const fd = centralDiff(() => dot(dz, reparamForward(mulv, rows, L, eps)), mulv, h);
    const zero = new Float64Array(rows * 2 * L);
    const g = reparamBackward(mulv, eps, dz, zero, rows, L);
    expect(worstRel(g, fd)).toBeLessThan(1e-6);
    const base = uniforms(rows * 2 * L, 14);
    const sum = reparamBackward(mulv, eps, dz, base, rows, L);
    for (let i = 0; i < sum.length; i++) expect(sum[i]).toBeCloseTo(g[i]! + base[i]!, 14);
    expect(base.every((v, i) => v === uniforms(rows * 2 * L, 14)[i])).toBe(true); // input untouched
  });

  it('bceKl gradients (dlogits, dmulv) match finite differences of its loss', () => {
    const [rows, D, L] = [3, 7, 2];
    const logits = uniforms(rows * D, 15, -6, 6);
    const x = uniforms(rows * D, 16, 0, 1);
    x[0] = 0;
    x[1] = 1;
    const mulv = uniforms(rows * 2 * L, 17, -2, 2);
    const f = () => bceKl(logits, x, mulv, rows, D, L).loss;
    const r = bceKl(logits, x, mulv, rows, D, L);
    expect(worstRel(r.dlogits, centralDiff(f, logits, h))).toBeLessThan(1e-6);
    expect(worstRel(r.dmulv, centralDiff(f, mulv, h))).toBeLessThan(1e-6);
    expect(r.loss).toBe(r.bce + r.kl);
  });

  it('bceKl stays finite at extreme logits and applies the −100 clamp per term', () => {
    const cases: [logit: number, x: number, term: number, dlogit: number][] = [
      [200, 0, 100, 1],
      [200, 1, Math.log1p(Math.exp(-200)), 0],
      [200, 0.5, 50, 0.5],
      [-200, 1, 100, -1],
      [-200, 0, Math.log1p(Math.exp(-200)), 0],
      [1e30, 0, 100, 1],
      [1e30, 1, 0, 0],
      [-1e30, 1, 100, -1],
      [-1e30, 0, 0, 0],
      [30, 1, Math.log1p(Math.exp(-30)), 1 / (1 + Math.exp(-30)) - 1],
    ];
    for (const [l, x, term, dl] of cases) {
      const r = bceKl([l], [x], [0, 0], 1, 1, 1); // mu = logvar = 0: KL is exactly 0
      expect(r.kl).toBe(0);
      expect(Number.isFinite(r.loss)).toBe(true);
      expect(r.bce).toBeCloseTo(term, 12);
      expect(Number.isFinite(r.dlogits[0]!)).toBe(true);
      expect(r.dlogits[0]).toBeCloseTo(dl, 15);
    }
    const all = bceKl(
      cases.map((c) => c[0]),
      cases.map((c) => c[1]),
      [0, 0],
      1,
      cases.length,
      1,
    );
    expect(all.bce).toBeCloseTo(
      cases.reduce((s, c) => s + c[2], 0),
      10,
    );
  });

  it('adam: the first step moves each parameter by lr·g/(|g| + eps), and state accumulates', () => {
    const g = [0.5, -2, 1e-9, 0];
    const p = new Float64Array([1, 1, 1, 1]);
    const m = new Float64Array(4);
    const v = new Float64Array(4);
    adam(p, g, m, v, 1, { lr: 0.1 });
    for (let i = 0; i < 4; i++) {
      expect(p[i]).toBeCloseTo(1 - (0.1 * g[i]!) / (Math.abs(g[i]!) + 1e-8), 14);
      expect(m[i]).toBeCloseTo(0.1 * g[i]!, 15);
      expect(v[i]).toBeCloseTo(0.001 * g[i]! ** 2, 15);
    }
    adam(p, g, m, v, 2, { lr: 0.1, beta1: 0.5, beta2: 0.9, eps: 0 });
    expect(m[0]).toBeCloseTo(0.5 * 0.05 + 0.5 * 0.5, 15);
    expect(v[0]).toBeCloseTo(0.9 * 0.00025 + 0.1 * 0.25, 15);
  });

  it('gather picks rows through the permutation and divides by 255', () => {
    const data = Uint8Array.from({ length: 4 * 3 }, (_, i) => i * 20);
    const X = gather(data, 3, [3, 0, 2, 1], 1, 2);
    expect(Array.from(X)).toEqual([0, 20, 40, 120, 140, 160].map((b) => b / 255));
  });
});

describe.each([
  { D: 13, hidden: [7], L: 3 },
  { D: 11, hidden: [9, 6], L: 3 }, // a deeper MLP: two encoder layers, their mirror in the decoder
] as VaeSizes[])('VAE reference %o', (sizes) => {
  const rows = 5;
  const names = paramNames(sizes);

  function tinyModel(seed: number): VaeParams {
    const shapes = paramShapes(sizes);
    const p: VaeParams = {};
    names.forEach((name, i) => {
      const shape = shapes[name];
      const fanIn = shapes[name.replace(/bias$/, 'weight')][1]!;
      const bound = 1 / Math.sqrt(fanIn); // PyTorch's nn.Linear init range
      p[name] = uniforms(
        shape.reduce((a, b) => a * b, 1),
        seed * 100 + i,
        -bound,
        bound,
      );
    });
    return p;
  }

  it('gradients of the whole loss match central differences for every parameter entry', () => {
    const p = tinyModel(5);
    const x = uniforms(rows * sizes.D, 21, 0, 1);
    x[0] = 0;
    x[sizes.D - 1] = 1;
    const eps = normals(rows * sizes.L, 5, 0, 0);
    const r = vaeForwardBackward(p, sizes, x, eps, rows);
    expect(r.loss).toBeCloseTo(vaeLoss(p, sizes, x, eps, rows), 12);
    // Away from the −100 clamp (|logit| < 100) and from the ReLU kinks, the loss is smooth
    // enough in a ±h box for central differences to be accurate to ~1e-9.
    expect(Math.max(...r.logits.map(Math.abs))).toBeLessThan(50);
    const H = sizes.hidden[0]!;
    const pre1 = linearForward(x, p['fc1.weight'], p['fc1.bias'], rows, sizes.D, H, false);
    expect(Math.min(...pre1.map(Math.abs))).toBeGreaterThan(1e-3);
    expect(pre1.some((v) => v < 0)).toBe(true); // the mask does cut

    const report: string[] = [];
    for (const name of names) {
      const fd = centralDiff(() => vaeLoss(p, sizes, x, eps, rows), p[name], 1e-5);
      const err = worstRel(r.grads[name], fd);
      report.push(`${name} ${err.toExponential(2)}`);
      expect(err, name).toBeLessThan(1e-6);
    }
    console.log(`VAE finite differences, worst relative error per parameter: ${report.join(', ')}`);
  });
});

describe('parameter names', () => {
  it('follow PyTorch for the example, and the fc numbering for a deeper MLP', () => {
    expect(paramShapes({ D: 784, hidden: [400], L: 20 })).toEqual({
      'fc1.weight': [400, 784],
      'fc1.bias': [400],
      'fc21.weight': [20, 400],
      'fc21.bias': [20],
      'fc22.weight': [20, 400],
      'fc22.bias': [20],
      'fc3.weight': [400, 20],
      'fc3.bias': [400],
      'fc4.weight': [784, 400],
      'fc4.bias': [784],
    });
    expect(paramShapes({ D: 784, hidden: [512, 256], L: 20 })).toEqual({
      'fc1.weight': [512, 784],
      'fc1.bias': [512],
      'fc2.weight': [256, 512],
      'fc2.bias': [256],
      'fc31.weight': [20, 256],
      'fc31.bias': [20],
      'fc32.weight': [20, 256],
      'fc32.bias': [20],
      'fc4.weight': [256, 20],
      'fc4.bias': [256],
      'fc5.weight': [512, 256],
      'fc5.bias': [512],
      'fc6.weight': [784, 512],
      'fc6.bias': [784],
    });
  });
});

/** A parity fixture's sizes: `hidden` ("512,256") in newer fixtures, `H` in the first ones. */
function fixtureSizes(metadata: Record<string, string>): VaeSizes {
  return {
    D: Number(metadata.D),
    hidden: (metadata.hidden ?? metadata.H).split(',').map(Number),
    L: Number(metadata.L),
  };
}

function loadFixture(name: string): { tensors: Map<string, Tensor>; metadata: Record<string, string> } {
  const buf = readFileSync(join(FIXTURES, `${name}.safetensors`));
  return readSafetensors(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength));
}

describe.each(['odd', 'aligned', 'deep'])('PyTorch parity: %s fixture, three chained Adam steps', (name) => {
  const { tensors, metadata } = loadFixture(name);
  const sizes = fixtureSizes(metadata);
  const rows = Number(metadata.B);
  const lr = Number(metadata.lr);
  const get = (key: string) => {
    const t = tensors.get(key);
    if (t === undefined) throw new Error(`${name} fixture has no tensor ${key}`);
    return Float64Array.from(t.data as Float32Array | Uint8Array);
  };
  // PyTorch works in float32, so its results carry ~1e-7 relative rounding per operation
  // plus accumulated error in the sums; entries that cancel to near zero are judged against
  // the tensor's scale instead.
  const rtol = 1e-4;
  const worst: Record<string, number> = {};
  const worstRatio: Record<string, number> = {};
  const check = (label: string, got: ArrayLike<number>, want: ArrayLike<number>) => {
    let scale = 0;
    for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]!));
    const atol = 1e-6 * scale;
    let ratio = 0;
    for (let i = 0; i < want.length; i++) {
      ratio = Math.max(ratio, Math.abs(got[i]! - want[i]!) / (atol + rtol * Math.abs(want[i]!)));
    }
    const kind = label.replace(/^step\d\./, '').replace(/\..*$/, '');
    worst[kind] = Math.max(worst[kind] ?? 0, worstRel(got, want, 1e-2));
    worstRatio[kind] = Math.max(worstRatio[kind] ?? 0, ratio);
    expect(got.length, label).toBe(want.length);
    expect(ratio, `${label}: worst |a−b| / (atol + rtol·|b|)`).toBeLessThanOrEqual(1);
  };
  afterAll(() => {
    const lines = Object.entries(worst).map(
      ([k, v]) =>
        `  ${k.padEnd(8)} ${v.toExponential(2)}${k in worstRatio ? `  (${worstRatio[k]!.toFixed(3)} of tolerance)` : ''}`,
    );
    console.log(`${name} vs PyTorch, worst |a−b| / max(|b|, 1e-2·max|b|) over 3 steps:\n${lines.join('\n')}`);
  });

  it('gather reproduces the fixture batch x', () => {
    const x = gather(
      get('data_u8'),
      sizes.D,
      Array.from({ length: rows }, (_, i) => i),
      0,
      rows,
    );
    check('x', x, get('x'));
  });

  it('reproduces loss, activations, gradients and the Adam update at each step', () => {
    const x = gather(
      get('data_u8'),
      sizes.D,
      Array.from({ length: rows }, (_, i) => i),
      0,
      rows,
    );
    const p: VaeParams = {};
    const m: VaeParams = {};
    const v: VaeParams = {};
    for (const n of paramNames(sizes)) {
      p[n] = get(`init.${n}`);
      m[n] = new Float64Array(p[n].length);
      v[n] = new Float64Array(p[n].length);
    }
    for (let step = 0; step < 3; step++) {
      const pre = `step${step}.`;
      const r = vaeForwardBackward(p, sizes, x, get(`${pre}eps`), rows);
      const want = get(`${pre}loss`)[0]!;
      worst.loss = Math.max(worst.loss ?? 0, Math.abs(r.loss - want) / Math.abs(want));
      expect(Math.abs(r.loss - want) / Math.abs(want), `${pre}loss`).toBeLessThan(1e-5);
      check(`${pre}mu`, r.mu, get(`${pre}mu`));
      check(`${pre}logvar`, r.logvar, get(`${pre}logvar`));
      check(`${pre}logits`, r.logits, get(`${pre}logits`));
      for (const n of paramNames(sizes)) check(`${pre}grad.${n}`, r.grads[n], get(`${pre}grad.${n}`));
      for (const n of paramNames(sizes)) {
        adam(p[n], r.grads[n], m[n], v[n], step + 1, { lr });
        check(`${pre}param.${n}`, p[n], get(`${pre}param.${n}`));
        if (tensors.has(`${pre}adam_m.${n}`)) {
          check(`${pre}adam_m.${n}`, m[n], get(`${pre}adam_m.${n}`));
          check(`${pre}adam_v.${n}`, v[n], get(`${pre}adam_v.${n}`));
        }
      }
    }
  });
});
