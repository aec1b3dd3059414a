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
 * A plan's overrides (a tuner's or a checkpoint's) name a conv product by its convKey, beside the
 * matmuls' keys, and chooseConv takes the override before the rule. Which choices an override may
 * hold (CONV_PLAN_CHOICES) is derived from the tables here, so a tile added to a rule is one a
 * plan can hold, and nothing else is: a register tile is unrolled into the kernel's WGSL.
 */
import {
  convInvocations,
  convProductShape,
  convRowsOfInvocations,
  type ConvGeometry,
  type ConvProduct,
  type ConvTile,
} from '../../shaders/conv.wgsl';
// plan.ts imports this module's choices for decodePlan; neither reads the other's values while it loads.
import { HARDWARE_MIN_INVOCATIONS, type ConvChoice, type KernelPlan } from './plan';

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

/** The tile `choice` gives one product (its rows of invocations follow from the product's). */
export function convTileOf(choice: ConvChoice, product: ConvProduct, g: ConvGeometry): ConvTile {
  return tile(product, g, choice.tileM, choice.tileN, choice.slices);
}

/** The plan's tile for one conv product: its override (convKey) when it has one, else the rule's. */
export function chooseConv(
  plan: Pick<KernelPlan, 'kind' | 'overrides'>,
  product: ConvProduct,
  g: ConvGeometry,
): ConvTile {
  const key = convKey(product, g);
  const override = plan.overrides[key];
  if (override) {
    if (override.variant !== 'conv') throw new Error(`kernel plan: ${key} is a conv product, not a matmul's`);
    return convTileOf(override, product, g);
  }
  const { rows } = convProductShape(product, g);
  if (plan.kind === 'software') {
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

/**
 * "conv down I 128×1×28×28 O 32×14×14 k4×4 s2 p1": the key of a conv product in a plan — the
 * product and its join (shaders/conv.wgsl.ts): I as batch×Ci×Hi×Wi, O as Co×Ho×Wo, kernel,
 * stride and padding. Two layers' products with one key share the override, as matmuls do.
 */
export function convKey(product: ConvProduct, g: ConvGeometry): string {
  return (
    `conv ${product} I ${g.batch}×${g.Ci}×${g.Hi}×${g.Wi} O ${g.Co}×${g.Ho}×${g.Wo} ` +
    `k${g.kh}×${g.kw} s${g.stride} p${g.pad}`
  );
}

/** The text convKey writes. */
export const CONV_KEY = /^conv (down|up|weight) I \d+×\d+×\d+×\d+ O \d+×\d+×\d+ k\d+×\d+ s\d+ p\d+$/;

/** A tile as a plan holds it: wgY is left out, since the tile and the product's rows give it. */
export function convChoiceOf(t: ConvTile): ConvChoice {
  return { variant: 'conv', tileM: t.tileM, tileN: t.tileN, slices: t.slices };
}

const conv = (tileM: number, tileN: number, slices = 1): ConvChoice => ({ variant: 'conv', tileM, tileN, slices });

/**
 * The start-up tuner's candidates for every conv product besides the rule's own: register tiles —
 * the software rule's largest, and two with less work per invocation (fewer rows, fewer columns).
 */
export const CONV_TUNE_ALTERNATIVES: readonly ConvChoice[] = [conv(8, 4), conv(4, 4), conv(8, 2)];

/**
 * A hardware adapter's candidates besides those: K split four and sixteen ways, as the hardware
 * rule splits it. Not on a software adapter, where a split kernel's workgroup barriers cost many
 * times a register tile's: on SwiftShader a 16-step check under 1×1 K/16 took some fifty times as
 * long as under a register tile, and each split kernel about ten times as long to compile.
 */
export const CONV_SPLIT_ALTERNATIVES: readonly ConvChoice[] = [conv(1, 1, 4), conv(1, 1, 16)];

/** The conv candidates the tuner tries on a software or a hardware adapter. */
export function convTuneAlternatives(software: boolean): readonly ConvChoice[] {
  return software ? CONV_TUNE_ALTERNATIVES : [...CONV_TUNE_ALTERNATIVES, ...CONV_SPLIT_ALTERNATIVES];
}

/** Every conv choice a plan may hold: what the rules above can produce, and the tuner's candidates. */
export const CONV_PLAN_CHOICES: readonly ConvChoice[] = [
  ...SOFTWARE_TILES.map(([tileM, tileN]) => conv(tileM, tileN)),
  ...HARDWARE_TILES.map(([tileM, tileN]) => conv(tileM, tileN)),
  ...HARDWARE_SLICES.map((slices) => conv(1, 1, slices)),
  ...CONV_TUNE_ALTERNATIVES,
  ...CONV_SPLIT_ALTERNATIVES,
].filter((c, i, all) => all.findIndex((d) => sameConvChoice(c, d)) === i);

function sameConvChoice(a: ConvChoice, b: ConvChoice): boolean {
  return a.variant === b.variant && a.tileM === b.tileM && a.tileN === b.tileN && a.slices === b.slices;
}

/** Whether `c` is one of CONV_PLAN_CHOICES: its variant, tile and slices, and no other field. */
export function isConvPlanChoice(c: unknown): c is ConvChoice {
  return (
    typeof c === 'object' &&
    c !== null &&
    !Array.isArray(c) &&
    Object.keys(c).length === 4 &&
    CONV_PLAN_CHOICES.some((d) => sameConvChoice(d, c as ConvChoice))
  );
}
