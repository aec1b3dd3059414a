/** Helpers of the tests that build whole models and check them against the float64 reference. */
import { expect } from 'vitest';
import { arenaLayout, SpecError, type VaeSizes } from '../src/model/graph';
import { parseSpec, type specSizes } from '../src/model/spec';
import { vaeForwardBackward, type VaeParams } from '../src/reference/vae';
import { expectClose, f32, rng, type KernelHarness } from './gpu';

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

/**
 * One training step of the model `sizes` on the GPU, from the parameters `arena` (`named` as
 * float64) on `rows` images `data` (bytes), checked against the float64 reference model: the loss,
 * the logits and every parameter's gradient. Returns the GPU's gradients, for checks of a test's own.
 */
export async function expectStepAsReference(
  gpu: KernelHarness,
  step: {
    sizes: VaeSizes;
    layout: ReturnType<typeof arenaLayout>;
    arena: Float32Array;
    named: VaeParams;
    data: Uint8Array;
    rows: number;
    labels?: number[];
    plan?: 'software' | 'hardware';
  },
): Promise<Float32Array> {
  const { sizes, layout, arena, named, data, rows, labels, plan } = step;
  const out = await gpu.trainSteps({
    sizes,
    ...(labels ? { labels } : {}),
    ...(plan ? { plan } : {}),
    batchSize: rows,
    seed: 5,
    lr: 1e-3,
    count: rows,
    steps: 1,
    sameBatch: true,
    images: Buffer.from(data).toString('base64'),
    params: Buffer.from(arena.buffer).toString('base64'),
  });
  const got = (key: string) => f32(new Uint8Array(Buffer.from(out[0]![key]!, 'base64')));
  const x = Float64Array.from(data, (b) => b / 255);
  const eps = got('eps').subarray(0, rows * sizes.L);
  const ref = vaeForwardBackward(named, sizes, x, eps, rows, labels);
  expectClose('loss', got('loss').subarray(0, 1), [ref.loss], 1e-5, 0);
  expectClose('logits', got('logits').subarray(0, rows * sizes.D), ref.logits, 1e-4, 1e-5);
  const grads = got('grads');
  for (const p of layout.params) {
    const g = ref.grads[p.name]!;
    const scale = g.reduce((a, b) => Math.max(a, Math.abs(b)), 0);
    expectClose(`grad ${p.name}`, grads.subarray(p.offset, p.offset + p.length), g, 1e-4, 1e-5 * scale);
  }
  return grads;
}

/**
 * Each gradient of the float64 reference (`grads`, of `loss()` at `named`) against the central
 * difference of `loss` with step h, parameter by parameter: |fd − g| < rtol·max(1, |fd|).
 * `loss` reads `named`, which this changes in place and restores.
 */
export function expectCentralDifferences(
  grads: Record<string, Float64Array>,
  named: VaeParams,
  loss: () => number,
  h: number,
  rtol: number,
): void {
  for (const [name, g] of Object.entries(grads)) {
    const at = named[name]!;
    for (let i = 0; i < at.length; i++) {
      const orig = at[i]!;
      at[i] = orig + h;
      const up = loss();
      at[i] = orig - h;
      const down = loss();
      at[i] = orig;
      const fd = (up - down) / (2 * h);
      expect(Math.abs(fd - g[i]!), `${name}[${i}]: fd ${fd} vs ${g[i]}`).toBeLessThan(rtol * Math.max(1, Math.abs(fd)));
    }
  }
}
