/** Helpers of the tests that build models from specs (conv-layers, batchnorm-layer). */
import { expect } from 'vitest';
import { arenaLayout, SpecError } from '../src/model/graph';
import { parseSpec, type specSizes } from '../src/model/spec';
import type { VaeParams } from '../src/reference/vae';
import { rng } from './gpu';

/** The SpecError message `spec` is refused with; fails the test if it is accepted. */
export function refuseSpec(spec: unknown): string {
  try {
    parseSpec(spec);
  } catch (e) {
    expect(e).toBeInstanceOf(SpecError);
    return (e as Error).message;
  }
  throw new Error(`accepted ${JSON.stringify(spec)}`);
}

/**
 * Random parameters in the arena's layout, and the same as float64 under their names; `r` is the
 * generator, to draw the data after them.
 */
export function randomParams(sizes: ReturnType<typeof specSizes>, seed: number) {
  const layout = arenaLayout(sizes);
  const r = rng(seed);
  const arena = new Float32Array(layout.length);
  const named: VaeParams = {};
  for (const p of layout.params) {
    // γ around 1 (some negative), β around 0: what training makes of their starting values.
    const draw =
      p.fill === 1
        ? () => 1.5 * r.next() - 0.25
        : () => (2 * r.next() - 1) * (p.zeroInit ? 0.3 : 1 / Math.sqrt(p.fanIn || 4));
    for (let k = 0; k < p.length; k++) arena[p.offset + k] = draw();
    named[p.name] = Float64Array.from(arena.subarray(p.offset, p.offset + p.length));
  }
  return { layout, arena, named, r };
}
