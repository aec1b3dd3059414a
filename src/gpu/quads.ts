/**
 * The start-up self-check for quad-shared matmul loads (shaders/matmul.wgsl.ts).
 *
 * The quad path is right only when the four invocations of a quad — defined by
 * subgroup_invocation_id — lie in one row of the workgroup, and no API promises that. So
 * before a Gpu uses it, the quad path is run against the plain path on a small product on the
 * real adapter and compared bit for bit (both do the same FMAs in the same order, so a correct
 * mapping gives identical bits). On a mismatch quads stay off for that Gpu, with one warning.
 */
import {
  matmulBindings,
  matmulWGSL,
  matmulWorkgroups,
  MATMUL_WG_X,
  MATMUL_WG_Y,
  type MatmulOptions,
  type QuadLayout,
} from '../../shaders/matmul.wgsl';
import type { Gpu } from './device';

const checks = new WeakMap<Gpu, Map<QuadLayout, Promise<boolean>>>();

/**
 * The self-check's products: one workgroup's worth of C (64 rows in 8-row tiles by 32 columns),
 * so every row of invocations is in use and a quad spanning two rows mixes different rows of A.
 */
export const QUAD_CHECK_DIMS = { M: MATMUL_WG_Y * 8, N: MATMUL_WG_X * 4, K: 16 };

/**
 * Whether quad-shared loads give the plain path's product on this Gpu; checked once per Gpu
 * (and per layout: `blocks2x2` is the deliberately wrong one the tests use).
 */
export function quadSharingWorks(gpu: Gpu, layout: QuadLayout = 'subgroup'): Promise<boolean> {
  const perGpu = checks.get(gpu) ?? new Map<QuadLayout, Promise<boolean>>();
  checks.set(gpu, perGpu);
  let check = perGpu.get(layout);
  if (!check) {
    check = compareQuadWithPlain(gpu, layout).then(({ differ, outputs }) => {
      if (differ > 0) {
        console.warn(
          `webgpu-vae: quad-shared matmul loads gave a different product from plain loads on this adapter ` +
            `(${differ} of ${outputs} outputs: its quads do not lie in one row of the workgroup), so matmuls use plain loads.`,
        );
      }
      return differ === 0;
    });
    perGpu.set(layout, check);
  }
  return check;
}

/**
 * Runs both quad loads of A — transposed (the weight gradients) and not (forward and input
 * gradients) — and their plain twins, and counts the outputs whose bits differ.
 */
async function compareQuadWithPlain(gpu: Gpu, quadLayout: QuadLayout): Promise<{ differ: number; outputs: number }> {
  const dims = QUAD_CHECK_DIMS;
  // Small integers: every product and partial sum is exact, so the bits depend only on which
  // values met, not on rounding or on how a compiler contracts a·b + c.
  const values = (n: number, salt: number) =>
    Float32Array.from({ length: n }, (_, i) => (Math.imul(i + salt, 2654435761) >>> 28) - 8);
  const A = gpu.bufferWith('quad check A', values(dims.M * dims.K, 1));
  const B = gpu.bufferWith('quad check B', values(dims.K * dims.N, 2));
  const sizes = gpu.uniform('quad check dims', new Uint32Array([dims.M, dims.N, dims.K]));
  const owned = [A, B, sizes];
  let differ = 0;
  try {
    for (const transA of [false, true]) {
      const products: Uint32Array[] = [];
      for (const quad of [true, false]) {
        const o: MatmulOptions = {
          transA,
          transB: !transA,
          vec4: true,
          bias: false,
          relu: false,
          reluMask: false,
          rowSum: false,
          tileM: 8,
          tileN: 4, // the software plan's tile with quads (src/gpu/plan.ts)
          quad,
          quadLayout: quad ? quadLayout : undefined,
        };
        const C = gpu.buffer('quad check C', dims.M * dims.N * 4);
        owned.push(C);
        const kernel = await gpu.kernel({
          label: 'matmul',
          code: matmulWGSL(o),
          entryPoint: 'matmul',
          bindings: matmulBindings(o),
        });
        gpu.run(
          [
            {
              kernel,
              bindGroup: kernel.bind('quad check', [sizes, A, B, C]),
              workgroups: matmulWorkgroups(o, dims),
              cost: {},
            },
          ],
          'quad check',
        );
        products.push(new Uint32Array(await gpu.read(C, 0, dims.M * dims.N * 4)));
      }
      const [quadC, plainC] = products;
      differ += quadC.filter((bits, i) => bits !== plainC[i]).length;
    }
    return { differ, outputs: 2 * dims.M * dims.N };
  } finally {
    for (const b of owned) gpu.release(b);
  }
}
