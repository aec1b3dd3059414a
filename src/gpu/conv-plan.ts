/**
 * The convolutions' part of the kernel plan (the matmuls' is plan.ts, whose rules these follow):
 * for each conv product, which register tile, workgroup shape and K split it runs.
 *
 * - `software` (SwiftShader): big register tiles, as the matmuls' 8×4, shaped to the product
 *   (SOFTWARE_TILES), no split of K: on a CPU a dispatch of a few fat invocations wins. Measured
 *   side by side on Chromium's SwiftShader, the thin weight gradients (32×16 outputs) ran about
 *   twice as fast at 4×2 as at 8×4. Tiles stay at 4 columns: 8 (4×8, 8×8) looked faster on
 *   the up products, but in too few rounds to tell, and took SwiftShader's compiler over 30 s
 *   a kernel (at start-up, once per model).
 * - `hardware`: the most work per invocation that still launches HARDWARE_MIN_INVOCATIONS; the
 *   products with too few outputs for that (the weight gradients of thin layers) split K among
 *   up to 16 invocations of a workgroup.
 *
 * Kept beside plan.ts rather than in it: a conv product has no matmulKey, so the plan's
 * overrides (a tuner's or a checkpoint's) do not name it yet; conv choices come from the rule.
 */
import {
  convInvocations,
  convProductShape,
  convRowsOfInvocations,
  type ConvGeometry,
  type ConvProduct,
  type ConvTile,
} from '../../shaders/conv.wgsl';
import { HARDWARE_MIN_INVOCATIONS, type PlanKind } from './plan';

/**
 * Software tiles: every shape of up to 8 rows × 4 columns (see CONV_MAX_TILE_N). The rule takes
 * the one that computes the fewest outputs it then drops (a layer with one output channel takes
 * 1×4 rather than compute 7 rows, a weight gradient with 16 columns 4×2 rather than 3 columns in
 * 4), then the one with the fewest loads per output (1/tileM + 1/tileN, 8×4 where nothing is dropped).
 */
const SOFTWARE_TILES: readonly [tileM: number, tileN: number][] = [8, 4, 2, 1].flatMap((m) =>
  [4, 2, 1].map((n): [number, number] => [m, n]),
);
/** Hardware tiles, most work per invocation first. */
const HARDWARE_TILES: readonly [number, number][] = [
  [8, 4],
  [4, 4],
  [4, 2],
  [4, 1],
  [2, 4],
  [2, 1],
  [1, 4],
  [1, 1],
];
/** Then K split among invocations of a workgroup, at 1×1 outputs each. */
const HARDWARE_SLICES = [2, 4, 8, 16];

function tile(product: ConvProduct, g: ConvGeometry, tileM: number, tileN: number, slices: number): ConvTile {
  const { rows } = convProductShape(product, g);
  return { tileM, tileN, slices, wgY: convRowsOfInvocations(tileM, slices, rows) };
}

export function chooseConv(kind: PlanKind, product: ConvProduct, g: ConvGeometry): ConvTile {
  const { rows } = convProductShape(product, g);
  if (kind === 'software') {
    const outputs = rows * convProductShape(product, g).cols;
    const computed = (t: ConvTile) => convInvocations({ ...t, product }, g) * t.tileM * t.tileN;
    const loads = (t: ConvTile) => 1 / t.tileM + 1 / t.tileN;
    const tiles = SOFTWARE_TILES.map(([tileM, tileN]) => tile(product, g, tileM, tileN, 1));
    return tiles.reduce((best, t) => {
      const [a, b] = [computed(t) - outputs, computed(best) - outputs];
      return a < b || (a === b && loads(t) < loads(best)) ? t : best;
    });
  }
  for (const [tileM, tileN] of HARDWARE_TILES) {
    if (tileM > rows && tileM > 1) continue;
    const t = tile(product, g, tileM, tileN, 1);
    if (convInvocations({ ...t, product }, g) >= HARDWARE_MIN_INVOCATIONS) return t;
  }
  for (const slices of HARDWARE_SLICES) {
    const t = tile(product, g, 1, 1, slices);
    if (convInvocations({ ...t, product }, g) >= HARDWARE_MIN_INVOCATIONS) return t;
  }
  // Still short: as many as the outputs and the widest split allow.
  return tile(product, g, 1, 1, HARDWARE_SLICES.at(-1)!);
}
