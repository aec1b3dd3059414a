/**
 * The start-up self-check for quad-shared matmul loads (src/gpu/quads.ts) on each WebGPU
 * implementation: it passes with the real quad layout and catches a wrong one, and a matmul left
 * to its default takes the plain path after a failed check. Quads are where implementations
 * differ most (subgroups of 4 on SwiftShader, 8 on lavapipe), so this runs on every one.
 */
import { describe, expect, it } from 'vitest';
import { QUAD_CHECK_DIMS } from '../src/gpu/quads';
import { matmul } from '../src/reference/ops';
import { expectClose, f32, implementations, rng, useHarness } from './gpu';

// f32 dot products of length K: error grows like √K·ε·|partial sums|.
const tolerance = (K: number) => ({ rtol: 1e-5, atol: 1e-5 * Math.sqrt(K) });

describe.each(implementations)('$name', (implementation) => {
  const gpu = useHarness(implementation);
  const quadWarnings = <T>(work: () => Promise<T>) => gpu.warnings('quad', work);

  it('passes with quad lanes from subgroup_invocation_id and fails with 2×2-block quads that mix two rows', async () => {
    const right = await quadWarnings(() => gpu.quadCheck('subgroup'));
    expect(right).toEqual({ result: true, warnings: [] });
    const wrong = await quadWarnings(() => gpu.quadCheck('blocks2x2'));
    expect(wrong.result, 'the self-check missed quads spanning two rows').toBe(false);
    expect(wrong.warnings).toHaveLength(1);
    expect(wrong.warnings[0]).toMatch(
      /quad-shared matmul loads gave a different product .* so matmuls use plain loads/,
    );
    // Every output of both products (A transposed and not) was compared, and most were wrong.
    const [, differ, outputs] = wrong.warnings[0].match(/\((\d+) of (\d+) outputs/)!.map(Number);
    expect(outputs).toBe(2 * QUAD_CHECK_DIMS.M * QUAD_CHECK_DIMS.N);
    expect(differ).toBeGreaterThan(outputs / 2);
  });

  // Forward (quad loads of A along k) and weight grad (transA: quad loads of A's rows along m).
  const [rows, inF, outF] = [64, 96, 40];
  const r = rng(4242);
  const X = r.uniform(rows * inF);
  const W = r.uniform(outF * inF);
  const dY = r.uniform(rows * outF);
  const products = (quadLayout: 'blocks2x2', quad?: boolean) => [
    {
      op: 'matmul' as const,
      dims: { M: rows, N: outF, K: inF },
      options: { transA: false, transB: true, quad, quadLayout },
      A: 'X',
      B: 'W',
      C: 'Y',
    },
    {
      op: 'matmul' as const,
      dims: { M: outF, N: inF, K: rows },
      options: { transA: true, transB: false, quad, quadLayout },
      A: 'dY',
      B: 'X',
      C: 'dW',
    },
  ];
  const expectRight = (out: Record<string, Uint8Array>) => {
    expectClose(
      'Y',
      f32(out.Y, rows * outF),
      matmul(X, W, rows, outF, inF, { transA: false, transB: true }),
      tolerance(inF).rtol,
      tolerance(inF).atol,
    );
    expectClose(
      'dW',
      f32(out.dW, outF * inF),
      matmul(dY, X, outF, inF, rows, { transA: true, transB: false }),
      tolerance(rows).rtol,
      tolerance(rows).atol,
    );
  };
  const buffers = { X, W, dY, Y: rows * outF * 4, dW: outF * inF * 4 };

  it('after a failed check matmulOp defaults to the plain path, and says so once', async () => {
    // The wrong layout forced on: its products really are wrong.
    const forced = await gpu.run({ buffers, ops: products('blocks2x2', true), read: ['Y'] });
    const ref = matmul(X, W, rows, outF, inF, { transA: false, transB: true });
    const worst = Math.max(...f32(forced.Y, rows * outF).map((v, i) => Math.abs(v - ref[i])));
    expect(worst, 'blocks2x2 quads should mix rows of A').toBeGreaterThan(0.1);
    // Left to the default, both products run the check (once, for this new Gpu), fail it, and take plain loads.
    const { result, warnings } = await quadWarnings(() =>
      gpu.run({ buffers, ops: products('blocks2x2'), freshGpu: {}, read: ['Y', 'dW'] }),
    );
    expectRight(result);
    expect(warnings).toHaveLength(1);
  });

  it('on a hardware adapter quads start off, without running the check', async () => {
    const { result, warnings } = await quadWarnings(() =>
      gpu.run({ buffers, ops: products('blocks2x2'), freshGpu: { software: false }, read: ['Y', 'dW'] }),
    );
    expectRight(result);
    expect(warnings).toEqual([]);
  });
});
