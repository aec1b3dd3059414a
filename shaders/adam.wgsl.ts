import { ELEMENTWISE_WG, linearIndexWGSL, linearWorkgroups } from './common';

/**
 * Adam over the whole parameter arena in one dispatch, as PyTorch 1.13 computes it:
 *   m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²
 *   p −= (lr / (1 − β1ᵗ)) · m / (sqrt(v) / sqrt(1 − β2ᵗ) + eps)
 * t = state[0] + 1: the step counter lives on the GPU (loss_finalize advances it after this
 * dispatch), so steps recorded into one submit need no uploads.
 *
 * Numerics: 1 − β arrives from the CPU (computed in float64, as PyTorch does) because 1 − 0.999
 * in float32 is off by 1.3e-5 relative. The bias corrections 1 − βᵗ = −expm1(t·ln β) use ln β
 * from the CPU and a series for small arguments, avoiding the cancellation of 1 − pow(β, t). The
 * arena is read as vec4s: its length is a multiple of 4 (its tensors are padded for binding alignment).
 *
 * Two layouts of the arena's vec4s over the invocations, with the same per-vec4 arithmetic
 * (one WGSL text, `BIAS_CORRECTIONS` and `UPDATE` below, in both), so they give identical bits:
 * - 'blocked' (the default, the software-adapter choice): invocation k updates the
 *   ADAM_VEC4_PER_INVOCATION consecutive vec4s from 16k on; the dispatch follows the arena's
 *   length. On a CPU lane that walks its own run of memory, and the bias corrections are
 *   paid once per 16 vec4s.
 * - 'gridStride' (for GPUs): lane i of G = workgroups × ELEMENTWISE_WG updates vec4s i, i + G,
 *   i + 2G, …, so in each iteration consecutive lanes touch consecutive addresses (coalesced),
 *   and the number of workgroups is chosen for occupancy (`adamWorkgroups`), not by the arena.
 *   The kernel takes G from `num_workgroups`, so the stride is whatever was launched: the one
 *   number lives in `adamWorkgroups`, and WGSL and dispatch cannot disagree.
 */
export const adamBindings = ['uniform', 'read', 'storage', 'read', 'storage', 'storage'] as const; // hyper, state, params, grads, m, v

/**
 * vec4s per invocation: more amortize the per-invocation bias-correction math, and 16 still
 * leaves the default model's 652,864-float arena ~40 workgroups for a real GPU to spread.
 * (SwiftShader's timings of 4, 16 and 64, and of a slower coalesced scalar layout, are in
 * bench/README.md.)
 */
export const ADAM_VEC4_PER_INVOCATION = 16;

/**
 * gridStride's default cap on workgroups: 1024 × 256 lanes keep any current GPU's cores busy
 * (a few hundred resident lanes per core); below it, one vec4 per lane.
 */
export const ADAM_GRID_MAX_WORKGROUPS = 1024;
/** One dimension of a dispatch (gridStride launches a single row of workgroups). */
const MAX_WORKGROUPS_PER_DIM = 65535;

export type AdamLayout = 'blocked' | 'gridStride';

export interface AdamOptions {
  layout: AdamLayout;
  /**
   * gridStride only: workgroups to launch. Default min(ceil(count4 / ELEMENTWISE_WG),
   * ADAM_GRID_MAX_WORKGROUPS), count4 = arena length / 4.
   */
  workgroups?: number;
}

/**
 * Elements [offset, offset + length) of the arena that Adam clamps to [min, max] right after
 * updating them: the learned σ's log_sigma (to settings.ts LOG_SIGMA_RANGE). The parameter
 * itself is kept in range, not only the value the loss reads, so what the engine stores (and
 * checkpoints) is always in range; clamping only the read would leave a zero gradient outside
 * while Adam's momentum kept moving the parameter. A model with no such span runs the kernel
 * without it, text for text.
 */
export interface AdamClamp {
  offset: number;
  length: number;
  /** Float32 values, so that the WGSL literals are exact. */
  min: number;
  max: number;
}

/** Today's kernel: what the engine runs unless a plan says otherwise (bit-identical to before the variant). */
export const ADAM_DEFAULT: AdamOptions = { layout: 'blocked' };

/** Invocations for an arena of `arenaLength` floats, blocked layout. */
export function adamInvocations(arenaLength: number) {
  return Math.ceil(arenaLength / (4 * ADAM_VEC4_PER_INVOCATION));
}

function checkClamp(c: AdamClamp) {
  if (!Number.isInteger(c.offset) || c.offset < 0 || !Number.isInteger(c.length) || c.length < 1) {
    throw new Error(`adam: clamp span (offset ${c.offset}, length ${c.length}) is not a non-empty range of the arena`);
  }
  if (!(
    Math.fround(c.min) === c.min &&
    Math.fround(c.max) === c.max &&
    c.min <= c.max &&
    Number.isFinite(c.max - c.min)
  )) {
    throw new Error(`adam: clamp range [${c.min}, ${c.max}] is not an interval of finite float32 values`);
  }
}

function checkOptions(options: AdamOptions) {
  if (options.layout !== 'blocked' && options.layout !== 'gridStride')
    throw new Error(`adam: unknown layout '${String(options.layout)}'`);
  if (options.workgroups === undefined) return;
  if (options.layout !== 'gridStride') throw new Error('adam: workgroups is an option of the gridStride layout');
  if (!Number.isInteger(options.workgroups) || options.workgroups < 1 || options.workgroups > MAX_WORKGROUPS_PER_DIM) {
    throw new Error(`adam: workgroups ${options.workgroups} is not an integer in [1, ${MAX_WORKGROUPS_PER_DIM}]`);
  }
}

/** The dispatch for an arena of `arenaLength` floats (a multiple of 4). */
export function adamWorkgroups(options: AdamOptions, arenaLength: number): [number, number, number] {
  checkOptions(options);
  if (options.layout === 'blocked') return linearWorkgroups(adamInvocations(arenaLength));
  const count4 = arenaLength / 4;
  return [
    options.workgroups ?? Math.max(1, Math.min(Math.ceil(count4 / ELEMENTWISE_WG), ADAM_GRID_MAX_WORKGROUPS)),
    1,
    1,
  ];
}

// Shared by both layouts, text for text: the numerics of the two are one source.
const BIAS_CORRECTIONS = `  let t = f32(state[0] + 1u);
  let stepSize = hyper.lr / oneMinusExp(t * hyper.lnBeta1);
  let sqrtBc2 = sqrt(oneMinusExp(t * hyper.lnBeta2));`;
const UPDATE = `    let g = grads[i];
    let mi = hyper.beta1 * m[i] + hyper.oneMinusBeta1 * g;
    let vi = hyper.beta2 * v[i] + hyper.oneMinusBeta2 * g * g;
    m[i] = mi;
    v[i] = vi;
    params[i] -= stepSize * mi / (sqrt(vi) / sqrtBc2 + hyper.eps);`;

/** UPDATE, then the clamp of the span's elements (only in the vec4s that hold some of them). */
function update(clamp: AdamClamp | undefined): string {
  if (!clamp) return UPDATE;
  const end = clamp.offset + clamp.length;
  return `${UPDATE}
    if (i >= ${Math.floor(clamp.offset / 4)}u && i < ${Math.ceil(end / 4)}u) {
      let element = 4u * i + vec4<u32>(0u, 1u, 2u, 3u);
      let held = (element >= vec4<u32>(${clamp.offset}u)) & (element < vec4<u32>(${end}u));
      params[i] = select(params[i], clamp(params[i], vec4<f32>(f32(${clamp.min})), vec4<f32>(f32(${clamp.max}))), held);
    }`;
}

function blockedEntry(clamp: AdamClamp | undefined): string {
  return `@compute @workgroup_size(${ELEMENTWISE_WG})
fn adam_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let first = linearIndex(gid, groups) * ${ADAM_VEC4_PER_INVOCATION}u;
  if (first >= hyper.count4) { return; }
${BIAS_CORRECTIONS}
  for (var i = first; i < min(first + ${ADAM_VEC4_PER_INVOCATION}u, hyper.count4); i++) {
${update(clamp)}
  }
}`;
}

function gridStrideEntry(clamp: AdamClamp | undefined): string {
  return `@compute @workgroup_size(${ELEMENTWISE_WG})
fn adam_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
${BIAS_CORRECTIONS}
  // G = every lane launched (one row of workgroups): lane gid.x takes vec4s gid.x, gid.x + G, …
  let stride = groups.x * ${ELEMENTWISE_WG}u;
  for (var i = gid.x; i < hyper.count4; i += stride) {
${update(clamp)}
  }
}`;
}

/** `clamp`: a span to keep in range after the update (AdamClamp); absent, the kernel is exactly the one without it. */
export function adamWGSL(options: AdamOptions = ADAM_DEFAULT, clamp?: AdamClamp): string {
  checkOptions(options);
  if (clamp) checkClamp(clamp);
  return /* wgsl */ `
struct Hyper {
  lr: f32, beta1: f32, beta2: f32, eps: f32,
  oneMinusBeta1: f32, oneMinusBeta2: f32, lnBeta1: f32, lnBeta2: f32,
  count4: u32,
}
@group(0) @binding(0) var<uniform> hyper: Hyper;
@group(0) @binding(1) var<storage, read> state: array<u32>;
@group(0) @binding(2) var<storage, read_write> params: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> grads: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> m: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> v: array<vec4<f32>>;
${linearIndexWGSL()}

// 1 − exp(x) for x ≤ 0, accurate to float32 precision near 0 and beyond.
fn oneMinusExp(x: f32) -> f32 {
  if (x < -0.5) { return 1.0 - exp(x); }
  // −expm1(x) = −x·(1 + x/2·(1 + x/3·(1 + …)))
  var series = 1.0;
  for (var k = 10.0; k >= 2.0; k -= 1.0) { series = 1.0 + x / k * series; }
  return -x * series;
}

${options.layout === 'blocked' ? blockedEntry(clamp) : gridStrideEntry(clamp)}
`;
}
