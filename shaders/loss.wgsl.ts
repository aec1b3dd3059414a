import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';
import { ELEMENTWISE_WG } from './common';

/**
 * The VAE loss, fused: binary cross-entropy summed over pixels plus the KL term, reduced to
 * one scalar per batch on the GPU, together with the gradients that start the backward pass.
 *
 *   bce  = −Σ [x·max(log σ(l), −100) + (1−x)·max(log(1−σ(l)), −100)]
 *   kl   = −½·Σ (1 + logvar − mu² − exp(logvar))
 *   dl   = σ(l) − x                       (d bce / d logit)
 *   dmu  = mu,  dlogvar = ½(exp(logvar) − 1)   (d kl / d mu, d kl / d logvar)
 *
 * Numerics: the decoder works on logits. With e = exp(−|l|) (never overflows) and
 * lp = log(1 + e):  log σ(l) = −(max(−l,0) + lp),  log(1−σ(l)) = −(max(l,0) + lp),
 * σ(l) = 1/(1+e) for l ≥ 0 and e/(1+e) otherwise — one exp and one polynomial per pixel, which is
 * what a software adapter pays for; log(1 + e) is a short polynomial (WGSL has no log1p). The −100 clamp is PyTorch's binary_cross_entropy; unlike PyTorch's
 * float32 σ, which rounds to exactly 1 from l ≈ 17 on and then reports the clamp value, this
 * form stays exact until the clamp binds.
 *
 * Reduction (deterministic, no atomics): `bce_kl` runs `groups` workgroups that grid-stride
 * over the batch (a stride of groups × WG elements), tree-reduce in workgroup memory and write
 * one partial each, partials[g] for workgroup g; `loss_finalize` (one workgroup) tree-reduces
 * the `groups` partials in a fixed order (lane k starts with partials[k], the rest with 0),
 * stores the batch loss at out[state[1]] and advances the GPU-resident step state (t, batch)
 * for the next step. The order depends only on `groups` and the batch's shape, never on
 * scheduling, so a given plan gives the same bits every run.
 *
 * `groups` is a compile-time option of both entries (the partials buffer holds `groups`
 * floats). The default, LOSS_GROUPS, is the software-adapter choice (few cores, few long
 * groups); a GPU plan wants enough groups to fill its cores (64, 128).
 * At most WG, since loss_finalize gives each partial a lane of its one workgroup.
 */
export const LOSS_GROUPS = 8;
const WG = ELEMENTWISE_WG;

export interface LossOptions {
  /** Workgroups of bce_kl = partials loss_finalize sums; default LOSS_GROUPS. */
  groups?: number;
}

/** The options' group count, checked: an integer in [1, WG]. */
export function lossGroups(options: LossOptions = {}): number {
  const groups = options.groups ?? LOSS_GROUPS;
  if (!Number.isInteger(groups) || groups < 1 || groups > WG) {
    throw new Error(`loss: groups ${groups} is not an integer in [1, ${WG}] (loss_finalize reduces the partials with one workgroup of ${WG})`);
  }
  return groups;
}

export type LossEntry = 'bce_kl' | 'loss_finalize';

export function lossBindings(entry: LossEntry): ('uniform' | 'read' | 'storage')[] {
  return entry === 'bce_kl'
    ? ['uniform', 'read', 'read', 'read', 'storage', 'storage', 'storage'] // dims, logits, x, mulv, dlogits, dmulv, partials
    : ['storage', 'read', 'storage']; // state, partials, out
}

export function lossWorkgroups(entry: LossEntry, options: LossOptions = {}): [number, number, number] {
  const groups = lossGroups(options);
  return entry === 'bce_kl' ? [groups, 1, 1] : [1, 1, 1];
}

export function lossWGSL(entry: LossEntry, options: LossOptions = {}): string {
  const groups = lossGroups(options);
  return wgsl`
var<workgroup> scratch: array<f32, ${WG}>;

// Sums scratch[0..${WG}) into scratch[0]; every invocation of the workgroup must call it.
fn reduceWorkgroup(lid: u32, value: f32) -> f32 {
  scratch[lid] = value;
  workgroupBarrier();
  for (var width = ${WG / 2}u; width > 0u; width >>= 1u) {
    if (lid < width) { scratch[lid] += scratch[lid + width]; }
    workgroupBarrier();
  }
  return scratch[0];
}

#if ${entry === 'bce_kl'}
struct Dims { rows: u32, D: u32, L: u32 }
@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> logits: array<f32>;        // (rows, D)
@group(0) @binding(2) var<storage, read> x: array<f32>;             // (rows, D)
@group(0) @binding(3) var<storage, read> mulv: array<f32>;          // (rows, 2L)
@group(0) @binding(4) var<storage, read_write> dlogits: array<f32>; // (rows, D)
@group(0) @binding(5) var<storage, read_write> dmulv: array<f32>;   // (rows, 2L)
@group(0) @binding(6) var<storage, read_write> partials: array<f32>; // (${groups})

// log(1 + e) for e in [0, 1] as 2·atanh(s), s = e/(2 + e) ≤ 1/3: a polynomial, accurate to
// float32 precision relative to the result. WGSL's log near 1 is only bounded absolutely (2⁻²¹),
// which for a converged model's tiny terms was a 1e-4 relative error in the loss.
fn log1pUnit(e: f32) -> f32 {
  let s = e / (2.0 + e);
  let s2 = s * s;
  return 2.0 * s * (1.0 + s2 * (1.0 / 3.0 + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0 + s2 * (1.0 / 11.0 + s2 / 13.0))))));
}

@compute @workgroup_size(${WG})
fn bce_kl(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let stride = ${groups * WG}u;
  var sum = 0.0;
  let pixels = dims.rows * dims.D;
  for (var i = gid.x; i < pixels; i += stride) {
    let l = logits[i];
    let t = x[i];
    let e = exp(-abs(l));
    let lp = log1pUnit(e);
    let logP = max(-(max(-l, 0.0) + lp), -100.0);
    let log1mP = max(-(max(l, 0.0) + lp), -100.0);
    sum -= t * logP + (1.0 - t) * log1mP;
    let sigma = select(e, 1.0, l >= 0.0) / (1.0 + e);
    dlogits[i] = sigma - t;
  }
  let latents = dims.rows * dims.L;
  for (var e = gid.x; e < latents; e += stride) {
    let at = (e / dims.L) * 2u * dims.L + e % dims.L;
    let mu = mulv[at];
    let logvar = mulv[at + dims.L];
    let variance = exp(logvar);
    sum -= 0.5 * (1.0 + logvar - mu * mu - variance);
    dmulv[at] = mu;
    dmulv[at + dims.L] = 0.5 * (variance - 1.0);
  }
  let total = reduceWorkgroup(lid, sum);
  if (lid == 0u) { partials[gid.x / ${WG}u] = total; }
}
#endif

#if ${entry === 'loss_finalize'}
@group(0) @binding(0) var<storage, read_write> state: array<u32>;   // (t, batch)
@group(0) @binding(1) var<storage, read> partials: array<f32>;      // (${groups})
@group(0) @binding(2) var<storage, read_write> out: array<f32>;     // one loss per batch

@compute @workgroup_size(${WG})
fn loss_finalize(@builtin(local_invocation_index) lid: u32) {
  let value = select(0.0, partials[lid], lid < ${groups}u);
  let total = reduceWorkgroup(lid, value);
  if (lid == 0u) {
    out[state[1]] = total;
    state[0] += 1u;
    state[1] += 1u;
  }
}
#endif
`;
}
