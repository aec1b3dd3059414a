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
  matmulBindings, matmulWGSL, matmulWorkgroups, MATMUL_WG_X, MATMUL_WG_Y, type MatmulOptions, type QuadLayout,
} from '../../shaders/matmul.wgsl';
import type { Gpu } from './device';

const checks = new WeakMap<Gpu, Map<QuadLayout, Promise<boolean>>>();

/**
 * Whether quad-shared loads give the plain path's product on this Gpu; checked once per Gpu
 * (and per layout: `blocks2x2` is the deliberately wrong one the tests use).
 */
export function quadSharingWorks(gpu: Gpu, layout: QuadLayout = 'subgroup'): Promise<boolean> {
  const perGpu = checks.get(gpu) ?? new Map<QuadLayout, Promise<boolean>>();
  checks.set(gpu, perGpu);
  let check = perGpu.get(layout);
  if (!check) {
    check = compareQuadWithPlain(gpu, layout).then((same) => {
      if (!same) {
        console.warn('webgpu-vae: quad-shared matmul loads gave a different product from plain loads on this adapter ' +
          '(its quads do not lie in one row of the workgroup), so matmuls use plain loads.');
      }
      return same;
    });
    perGpu.set(layout, check);
  }
  return check;
}

/**
 * One workgroup's worth of C (64 rows of 8-row tiles by 32 columns) so every row of invocations
 * is in use and a quad spanning two rows would mix different rows of A; both quad loads of A,
 * transposed (the weight gradients) and not (forward and input gradients).
 */
async function compareQuadWithPlain(gpu: Gpu, quadLayout: QuadLayout): Promise<boolean> {
  const tile = { tileM: 8, tileN: 4 }; // matmulOp's tile with quads (chooseTiles)
  const dims = { M: MATMUL_WG_Y * tile.tileM, N: MATMUL_WG_X * tile.tileN, K: 16 };
  // Small integers: every product and partial sum is exact, so the bits depend only on which
  // values met, not on rounding or on how a compiler contracts a·b + c.
  const values = (n: number, salt: number) => Float32Array.from({ length: n }, (_, i) => (Math.imul(i + salt, 2654435761) >>> 28) - 8);
  const A = gpu.bufferWith('quad check A', values(dims.M * dims.K, 1));
  const B = gpu.bufferWith('quad check B', values(dims.K * dims.N, 2));
  const sizes = gpu.uniform('quad check dims', new Uint32Array([dims.M, dims.N, dims.K]));
  const owned = [A, B, sizes];
  try {
    for (const transA of [false, true]) {
      const products: Uint8Array[] = [];
      for (const quad of [true, false]) {
        const o: MatmulOptions = {
          transA, transB: !transA, vec4: true, bias: false, relu: false, reluMask: false, rowSum: false,
          ...tile, quad, quadLayout: quad ? quadLayout : undefined,
        };
        const C = gpu.buffer('quad check C', dims.M * dims.N * 4);
        owned.push(C);
        const kernel = await gpu.kernel({ label: 'matmul', code: matmulWGSL(o), entryPoint: 'matmul', bindings: matmulBindings(o) });
        gpu.run([{ kernel, bindGroup: kernel.bind('quad check', [sizes, A, B, C]), workgroups: matmulWorkgroups(o, dims), cost: {} }], 'quad check');
        products.push(new Uint8Array(await gpu.read(C)));
      }
      const [quadC, plainC] = products;
      if (!quadC.every((byte, i) => byte === plainC[i])) return false;
    }
    return true;
  } finally {
    for (const b of owned) gpu.release(b);
  }
}
