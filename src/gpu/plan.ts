/**
 * The per-adapter kernel plan: for each matmul of every program, which variant and tile it
 * runs. One source for those choices (matmulOp asks the plan; the bench prints it).
 *
 * - `software`: today's measured plan for SwiftShader — register-tiled 8×4 outputs per
 *   invocation (4×4 for the weight gradients without quads), quads where the self-check passed.
 *   On a CPU a dispatch is cheap and few invocations with more work each win (bench/README.md).
 * - `hardware`: a GPU needs thousands of resident threads to hide memory latency, so each
 *   matmul takes the most work per invocation that still launches at least
 *   HARDWARE_MIN_INVOCATIONS invocations; when even 4 outputs per invocation fall short,
 *   split-K (K shared among the invocations of a workgroup) takes over; Adam runs grid-stride
 *   and the loss in HARDWARE_LOSS_GROUPS.
 *
 * - the workgroup-memory tiled kernel (TILE_64, TILE_32) is no default's choice; an override may
 *   name it (the start-up autotune's candidates, src/model/autotune.ts).
 *
 * The convolutions' rules are src/gpu/conv-plan.ts; the plan's overrides name conv products too,
 * by convKey, with a ConvChoice.
 *
 * Lavapipe (Mesa's llvmpipe Vulkan driver, Dawn in Node) is a software adapter and runs the
 * software plan: measured there, 8×4 with quad-shared loads was the fastest of the register tiles
 * 4×4 to 16×8 and split-K at four of the five big products (16×4 won the fifth in one round,
 * bench/README.md); its start-up tuner also tries 16×4 and 8×8.
 *
 * A plan is data (serializable), so it can be recorded in a checkpoint and reused on resume:
 * different plans may sum in different orders, and an exact resume needs the same one.
 */
import { ADAM_DEFAULT, type AdamOptions } from '../../shaders/adam.wgsl';
import { LOSS_GROUPS } from '../../shaders/loss.wgsl';
import { MATMUL_WG_X, MATMUL_WG_Y, type MatmulOptions } from '../../shaders/matmul.wgsl';
import { SPLITK_SIZES, splitKWorkgroups } from '../../shaders/matmul-splitk.wgsl';
import { TILE_32, TILE_64, tiledInvocations, tiledWorkgroups, type MatmulTile } from '../../shaders/matmul-tiled.wgsl';
import { CONV_KEY, isConvPlanChoice } from './conv-plan';

export type PlanKind = 'software' | 'hardware';

/** Register-tiled matmul: tileM×tileN outputs per invocation. */
export interface RegisterTile {
  variant: 'register';
  tileM: number;
  tileN: number;
}

/**
 * Split-K matmul (shaders/matmul-splitk.wgsl.ts): the workgroup's SPLITK_SIZES slices each sum a
 * share of K for a tileM×tileN block per invocation, added in a fixed order. For products with too
 * few outputs to fill a GPU (the heads, dz, small weight gradients).
 */
export interface SplitKTile {
  variant: 'splitK';
  tileM: number;
  tileN: number;
}

/**
 * Workgroup-memory tiled matmul (shaders/matmul-tiled.wgsl.ts). Here tileM×tileN is the
 * workgroup's block of C, which names the tile: 64×64 (TILE_64) or 32×32 (TILE_32), 4×4 outputs
 * per invocation either way. No static default picks it; a tuner or a checkpoint may.
 */
export interface TiledTile {
  variant: 'tiled';
  tileM: 64 | 32;
  tileN: 64 | 32;
}

export type MatmulChoice = RegisterTile | SplitKTile | TiledTile;

/**
 * A conv product's launch (shaders/conv.wgsl.ts, src/gpu/conv-plan.ts): tileM×tileN outputs per
 * invocation and K split `slices` ways; its rows of invocations follow from those and the product.
 */
export interface ConvChoice {
  variant: 'conv';
  tileM: number;
  tileN: number;
  slices: number;
}

/** What an override holds: a matmul's choice under a matmulKey, a conv product's under a convKey. */
export type PlanChoice = MatmulChoice | ConvChoice;

/** The tiled kernel's tile a choice names (tileM = tileN = its block size). */
export function tiledTileOf(c: Pick<TiledTile, 'tileM' | 'tileN'>): MatmulTile {
  const tile = c.tileM === 64 && c.tileN === 64 ? TILE_64 : c.tileM === 32 && c.tileN === 32 ? TILE_32 : null;
  if (!tile) throw new Error(`kernel plan: the tiled matmul has 64×64 and 32×32 tiles, not ${c.tileM}×${c.tileN}`);
  return tile;
}

/** Read-only: a plan is passed to whatever builds programs, never changed in place (frozenPlan). */
export interface KernelPlan {
  readonly kind: PlanKind;
  /**
   * Adam's layout: `blocked` (16 consecutive vec4s per invocation, ~40 workgroups: measured best
   * on SwiftShader) or `gridStride` (one vec4 per lane per iteration, coalesced, sized for a GPU).
   */
  readonly adam: Readonly<AdamOptions>;
  /** Workgroups of the loss reduction (8 today; more lanes for a GPU). */
  readonly lossGroups: number;
  /**
   * Choices that replace the rules' (a tuner's or a checkpoint's): a MatmulChoice keyed by
   * `matmulKey`, a ConvChoice keyed by `convKey` (src/gpu/conv-plan.ts).
   */
  readonly overrides: Readonly<Record<string, PlanChoice>>;
}

/** What the hardware rule aims for per matmul at the VAE's real shapes (batch 128). */
export const HARDWARE_MIN_INVOCATIONS = 8192;

/**
 * The software rule's register tiles, measured on SwiftShader (bench/README.md): 8×4 for every
 * product, 4×4 for the weight gradients without quad-shared loads.
 */
const SOFTWARE_TILE: readonly [number, number] = [8, 4];
const SOFTWARE_WEIGHT_GRADIENT_TILE: readonly [number, number] = [4, 4];
/** The register tiles the hardware rule tries, most work per invocation first (tileM a multiple of 4). */
const HARDWARE_TILES: readonly [number, number][] = [
  [8, 4],
  [4, 4],
  [4, 2],
  [4, 1],
];
/** Then the split-K tiles, most work per invocation first. */
const SPLITK_TILES: readonly [number, number][] = [
  [4, 1],
  [2, 1],
  [1, 1],
];

/**
 * Register tiles only the start-up tuner tries, where an adapter's measurements made them worth
 * a try (src/model/autotune.ts tuneAlternatives): taller and wider tiles for lavapipe, whose
 * LLVM code keeps more accumulators in registers than SwiftShader's.
 */
export const TUNER_REGISTER_TILES: readonly [number, number][] = [
  [16, 4],
  [8, 8],
];

/**
 * Every choice a plan may hold: what the rules below can produce, and the workgroup-memory
 * tiled kernel at its two tiles (which the tuner may try). A plan also arrives from files —
 * a checkpoint's `kernel_plan`, a tune-cache entry — and a register tile is unrolled into the
 * kernel's WGSL, so `tileN: 100000` would compile megabytes: decodePlan accepts these and
 * nothing else, and the tuner refuses a candidate outside them (it could not read its own
 * plan back). A new tile or variant is added here, where both sides see it.
 */
export const PLAN_CHOICES: readonly MatmulChoice[] = [
  ...[SOFTWARE_TILE, SOFTWARE_WEIGHT_GRADIENT_TILE, ...HARDWARE_TILES, ...TUNER_REGISTER_TILES].map(
    ([tileM, tileN]) => ({
      variant: 'register' as const,
      tileM,
      tileN,
    }),
  ),
  ...SPLITK_TILES.map(([tileM, tileN]) => ({ variant: 'splitK' as const, tileM, tileN })),
  ...[TILE_64, TILE_32].map((t) => ({ variant: 'tiled' as const, tileM: t.BM as 64 | 32, tileN: t.BN as 64 | 32 })),
].filter((c, i, all) => all.findIndex((d) => sameChoice(c, d)) === i);

/** Whether `c` is one of PLAN_CHOICES: its variant and tile, and no other field. */
export function isPlanChoice(c: unknown): c is MatmulChoice {
  return (
    typeof c === 'object' &&
    c !== null &&
    !Array.isArray(c) &&
    Object.keys(c).length === 3 &&
    PLAN_CHOICES.some((d) => sameChoice(d, c as MatmulChoice))
  );
}

function sameChoice(a: MatmulChoice, b: MatmulChoice): boolean {
  return a.variant === b.variant && a.tileM === b.tileM && a.tileN === b.tileN;
}

/**
 * Whether a plan may hold `c` under `key`: a PLAN_CHOICES member under a matmulKey, or a
 * CONV_PLAN_CHOICES member (src/gpu/conv-plan.ts) under a convKey.
 */
export function isPlanOverride(key: string, c: unknown): c is PlanChoice {
  return (MATMUL_KEY.test(key) && isPlanChoice(c)) || (CONV_KEY.test(key) && isConvPlanChoice(c));
}

export interface MatmulShape {
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
}

/** "NT 128×400×784": the key of a product in a plan. */
export function matmulKey(s: MatmulShape): string {
  return `${s.transA ? 'T' : 'N'}${s.transB ? 'T' : 'N'} ${s.M}×${s.N}×${s.K}`;
}

/** The text matmulKey writes. */
const MATMUL_KEY = /^[NT]{2} \d+×\d+×\d+$/;

/** Loss groups of the hardware plan: 64 × 256 lanes = 16,384 over a batch of 128 × 784 pixels. */
export const HARDWARE_LOSS_GROUPS = 64;

/**
 * A deep-frozen copy of `plan`: what a model keeps, so the plan its programs were built under
 * cannot change behind it (nor one a caller changes later reach it).
 */
export function frozenPlan(plan: KernelPlan): KernelPlan {
  const overrides: Record<string, PlanChoice> = {};
  for (const [key, choice] of Object.entries(plan.overrides)) overrides[key] = Object.freeze({ ...choice });
  return Object.freeze({ ...plan, adam: Object.freeze({ ...plan.adam }), overrides: Object.freeze(overrides) });
}

export function planFor(software: boolean): KernelPlan {
  return software
    ? { kind: 'software', adam: ADAM_DEFAULT, lossGroups: LOSS_GROUPS, overrides: {} }
    : { kind: 'hardware', adam: { layout: 'gridStride' }, lossGroups: HARDWARE_LOSS_GROUPS, overrides: {} };
}

/** Invocations a split-K matmul launches. */
export function splitKInvocations(
  tile: Pick<SplitKTile, 'tileM' | 'tileN'>,
  s: Pick<MatmulShape, 'M' | 'N' | 'K'>,
): number {
  const sizes = { ...SPLITK_SIZES, ...tile };
  const [x, y, z] = splitKWorkgroups(sizes, s);
  return x * y * z * sizes.slices * sizes.wgX * sizes.wgY;
}

/** Invocations a matmul launches under `choice`. */
export function invocationsOf(choice: MatmulChoice, s: MatmulShape): number {
  if (choice.variant === 'tiled') {
    const tile = tiledTileOf(choice);
    const [x, y, z] = tiledWorkgroups({ tile }, s);
    return x * y * z * tiledInvocations(tile);
  }
  return choice.variant === 'register' ? registerInvocations(choice, s) : splitKInvocations(choice, s);
}

/** Invocations a register-tiled matmul launches. */
export function registerInvocations(
  tile: Pick<MatmulOptions, 'tileM' | 'tileN'>,
  s: Pick<MatmulShape, 'M' | 'N'>,
): number {
  return (
    Math.ceil(s.N / (tile.tileN * MATMUL_WG_X)) *
    Math.ceil(s.M / (tile.tileM * MATMUL_WG_Y)) *
    MATMUL_WG_X *
    MATMUL_WG_Y
  );
}

/**
 * The plan's choice for one product. `quad` says whether quad-shared loads are on (software
 * adapters only), which changes the software plan's best tile.
 */
export function chooseMatmul(plan: KernelPlan, s: MatmulShape, quad: boolean): MatmulChoice {
  const key = matmulKey(s);
  const override = plan.overrides[key];
  if (override) {
    if (override.variant === 'conv') throw new Error(`kernel plan: ${key} is a matmul, not a conv product`);
    return override;
  }
  if (plan.kind === 'software') {
    // Measured on SwiftShader (bench/README.md): with quad-shared loads of A 8×4 wins for every
    // product; without them the weight gradients (transA: K is the batch, the output large) do
    // best at 4×4, where fewer rows per invocation spread the stores.
    const [tileM, tileN] = s.transA && !quad ? SOFTWARE_WEIGHT_GRADIENT_TILE : SOFTWARE_TILE;
    return { variant: 'register', tileM, tileN };
  }
  for (const [tileM, tileN] of HARDWARE_TILES) {
    if (registerInvocations({ tileM, tileN }, s) >= HARDWARE_MIN_INVOCATIONS)
      return { variant: 'register', tileM, tileN };
  }
  // Too few outputs for the target at one small register tile each: split K among invocations too.
  for (const [tileM, tileN] of SPLITK_TILES) {
    if (splitKInvocations({ tileM, tileN }, s) >= HARDWARE_MIN_INVOCATIONS) return { variant: 'splitK', tileM, tileN };
  }
  // Still short: launch as many as the outputs and K allow.
  const [tileM, tileN] = SPLITK_TILES.at(-1)!;
  return { variant: 'splitK', tileM, tileN };
}

/** A plan as text for a checkpoint's metadata, and back (null when it is not one). */
export function encodePlan(plan: KernelPlan): string {
  return JSON.stringify(plan);
}

/**
 * The plan `text` encodes, or null when it is not one the engine could have made: the base
 * (kind, Adam's layout, loss groups) must be planFor's for its kind, each override a
 * PLAN_CHOICES member under a matmulKey or a CONV_PLAN_CHOICES member under a convKey
 * (isPlanOverride). The result is rebuilt from those parts, so nothing else in the text reaches
 * a kernel.
 */
export function decodePlan(text: string): KernelPlan | null {
  let p: KernelPlan;
  try {
    p = JSON.parse(text) as KernelPlan;
  } catch {
    return null;
  }
  if (typeof p !== 'object' || p === null || (p.kind !== 'software' && p.kind !== 'hardware')) return null;
  const base = planFor(p.kind === 'software');
  if (JSON.stringify(p.adam) !== JSON.stringify(base.adam) || p.lossGroups !== base.lossGroups) return null;
  if (typeof p.overrides !== 'object' || p.overrides === null || Array.isArray(p.overrides)) return null;
  const overrides: Record<string, PlanChoice> = {};
  for (const [key, choice] of Object.entries(p.overrides as Record<string, unknown>)) {
    if (!isPlanOverride(key, choice)) return null;
    overrides[key] =
      choice.variant === 'conv'
        ? { variant: 'conv', tileM: choice.tileM, tileN: choice.tileN, slices: choice.slices }
        : ({ variant: choice.variant, tileM: choice.tileM, tileN: choice.tileN } as MatmulChoice);
  }
  return { ...base, overrides };
}
