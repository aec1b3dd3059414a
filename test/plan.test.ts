/** The per-adapter kernel plan (src/gpu/plan.ts): the software plan is today's, the hardware plan fills a GPU. */
import { describe, expect, it } from 'vitest';
import {
  chooseMatmul, decodePlan, encodePlan, HARDWARE_MIN_INVOCATIONS, invocationsOf, matmulKey, planFor, registerInvocations, type MatmulShape,
} from '../src/gpu/plan';

/** Every product of a training step of the PyTorch example at batch 128 (as src/model/programs.ts emits them). */
const B = 128;
const STEP: (MatmulShape & { name: string })[] = [
  { name: 'fc1', M: B, N: 400, K: 784, transA: false, transB: true },
  { name: 'fc21‖fc22', M: B, N: 40, K: 400, transA: false, transB: true },
  { name: 'fc3', M: B, N: 400, K: 20, transA: false, transB: true },
  { name: 'fc4', M: B, N: 784, K: 400, transA: false, transB: true },
  { name: 'fc4 dW', M: 784, N: 400, K: B, transA: true, transB: false },
  { name: 'fc4 dX', M: B, N: 400, K: 784, transA: false, transB: false },
  { name: 'fc3 dW', M: 400, N: 20, K: B, transA: true, transB: false },
  { name: 'fc3 dX→dmulv', M: B, N: 20, K: 400, transA: false, transB: false },
  { name: 'fc21‖fc22 dW', M: 40, N: 400, K: B, transA: true, transB: false },
  { name: 'fc21‖fc22 dX', M: B, N: 400, K: 40, transA: false, transB: false },
  { name: 'fc1 dW', M: 400, N: 784, K: B, transA: true, transB: false },
];

describe('kernel plan', () => {
  it('software: register tiles only, so the default model\'s sums, and its numbers, do not depend on the tile', () => {
    // Which register tile is a measured speed (bench/README.md), not a rule to restate here; a
    // split-K or tiled choice would sum in another order and move the seed contract's figures.
    const plan = planFor(true);
    for (const s of STEP) {
      for (const quad of [true, false]) expect(chooseMatmul(plan, s, quad).variant, `${s.name}${quad ? '' : ' without quads'}`).toBe('register');
    }
  });

  it(`hardware: every matmul of the step launches ≥ ${HARDWARE_MIN_INVOCATIONS} invocations, with no less work each than that needs`, () => {
    const plan = planFor(false);
    const rows: string[] = [];
    for (const s of STEP) {
      const choice = chooseMatmul(plan, s, false);
      const invocations = invocationsOf(choice, s);
      rows.push(`${s.name.padEnd(14)} ${choice.variant} ${choice.tileM}×${choice.tileN} → ${invocations}`);
      expect(invocations, s.name).toBeGreaterThanOrEqual(HARDWARE_MIN_INVOCATIONS);
      // Split-K only where register tiles of 4 outputs fall short; and no smaller tile than needed.
      if (choice.variant === 'splitK') expect(registerInvocations({ tileM: 4, tileN: 1 }, s), s.name).toBeLessThan(HARDWARE_MIN_INVOCATIONS);
      if (choice.variant === 'register' && choice.tileM === 4 && choice.tileN < 4) {
        expect(registerInvocations({ tileM: 4, tileN: choice.tileN * 2 }, s)).toBeLessThan(HARDWARE_MIN_INVOCATIONS);
      }
    }
    console.log(`hardware plan at batch ${B}:\n  ${rows.join('\n  ')}`);
  });

  it('overrides win, and a plan survives its text form; anything else is refused', () => {
    const s = STEP[0];
    const plan = { ...planFor(false), overrides: { [matmulKey(s)]: { variant: 'register' as const, tileM: 8, tileN: 2 } } };
    expect(chooseMatmul(plan, s, false)).toEqual({ variant: 'register', tileM: 8, tileN: 2 });
    expect(decodePlan(encodePlan(plan))).toEqual(plan);
    // The tiled kernel is a choice a plan can express (TILE_64, TILE_32), and nothing else of it.
    const tiled = { ...planFor(false), overrides: { [matmulKey(s)]: { variant: 'tiled' as const, tileM: 32 as const, tileN: 32 as const } } };
    expect(decodePlan(encodePlan(tiled))).toEqual(tiled);
    expect(invocationsOf(tiled.overrides[matmulKey(s)], s)).toBe(Math.ceil(s.M / 32) * Math.ceil(s.N / 32) * 64);
    for (const [m, n] of [[64, 32], [16, 16], [128, 128]]) {
      const text = encodePlan({ ...planFor(false), overrides: { x: { variant: 'tiled', tileM: m, tileN: n } as never } });
      expect(decodePlan(text), `${m}×${n}`).toBeNull();
    }
    for (const bad of ['', '{}', '{"kind":"gpu","overrides":{}}', '{"kind":"hardware","overrides":{"x":{"variant":"register","tileM":3,"tileN":1}}}']) {
      expect(decodePlan(bad), bad).toBeNull();
    }
  });
});
