import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';
import { ELEMENTWISE_WG, linearIndexWGSL, linearWorkgroups } from './common';

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
    throw new Error(
      `loss: groups ${groups} is not an integer in [1, ${WG}] (loss_finalize reduces the partials with one workgroup of ${WG})`,
    );
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

/** WGSL shared by every loss entry (the reference model's kernels' text depends on these bytes: see test/loss.test.ts). */
const REDUCE_WORKGROUP = `// Sums scratch[0..${WG}) into scratch[0]; every invocation of the workgroup must call it.
fn reduceWorkgroup(lid: u32, value: f32) -> f32 {
  scratch[lid] = value;
  workgroupBarrier();
  for (var width = ${WG / 2}u; width > 0u; width >>= 1u) {
    if (lid < width) { scratch[lid] += scratch[lid + width]; }
    workgroupBarrier();
  }
  return scratch[0];
}

`;

const LOG1P_UNIT = `// log(1 + e) for e in [0, 1] as 2·atanh(s), s = e/(2 + e) ≤ 1/3: a polynomial, accurate to
// float32 precision relative to the result. WGSL's log near 1 is only bounded absolutely (2⁻²¹),
// which for a converged model's tiny terms was a 1e-4 relative error in the loss.
fn log1pUnit(e: f32) -> f32 {
  let s = e / (2.0 + e);
  let s2 = s * s;
  return 2.0 * s * (1.0 + s2 * (1.0 / 3.0 + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0 + s2 * (1.0 / 11.0 + s2 / 13.0))))));
}

`;

export function lossWGSL(entry: LossEntry, options: LossOptions = {}): string {
  const groups = lossGroups(options);
  return wgsl`
var<workgroup> scratch: array<f32, ${WG}>;

${REDUCE_WORKGROUP}#if ${entry === 'bce_kl'}
struct Dims { rows: u32, D: u32, L: u32 }
@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> logits: array<f32>;        // (rows, D)
@group(0) @binding(2) var<storage, read> x: array<f32>;             // (rows, D)
@group(0) @binding(3) var<storage, read> mulv: array<f32>;          // (rows, 2L)
@group(0) @binding(4) var<storage, read_write> dlogits: array<f32>; // (rows, D)
@group(0) @binding(5) var<storage, read_write> dmulv: array<f32>;   // (rows, 2L)
@group(0) @binding(6) var<storage, read_write> partials: array<f32>; // (${groups})

${LOG1P_UNIT}@compute @workgroup_size(${WG})
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

// ---- The general objective: β on the KL term, its warm-up, and the Gaussian likelihood ----------

/**
 * `elbo` generalizes `bce_kl`; the reference model (Bernoulli, β = 1, no warm-up) keeps `bce_kl`
 * and `loss_finalize` above, whose bits the reference model's figures depend on.
 *
 *   recon  Bernoulli: bce as above, on logits                  d/dl = σ(l) − x
 *          Gaussian:  Σ [½·log(2π) + s + ½(x − μ)²·e^(−2s)]     d/dμ = (μ − x)·e^(−2s)
 *          with s = log σ: one fixed value (a uniform) or log_sigma[d] per pixel (learned;
 *          `gaussian_dlogsigma` writes its gradient Σ_rows [1 − (x − μ)²·e^(−2s)])
 *   kl     as above; its gradients are scaled by β_t
 *   β_t    = β·min(1, s/N) for the Adam step s = t + 1 (1-based, as torch.optim.Adam counts:
 *          the first step gets β/N, step N and later β), read from the GPU-resident step state,
 *          so nothing is uploaded per step; N = 0 is no warm-up (β_t = β).
 *
 * The reduction is bce_kl's, twice: each workgroup writes its recon partial at partials[g] and
 * its KL partial at partials[groups + g]; `elbo_finalize` reduces each half with
 * loss_finalize's tree and stores out[batch] = recon + kl (the reference model's loss, what the
 * log prints) and objective[batch] = recon + β_t·kl (what is optimized), then advances the state.
 */
export type ElboEntry = 'elbo' | 'elbo_finalize' | 'gaussian_dlogsigma' | 'mean_clamp';

export interface ElboOptions extends LossOptions {
  likelihood: 'bernoulli' | 'gaussian';
  /** Gaussian only: σ per pixel from a log_sigma vector; otherwise one fixed σ from the uniform. */
  learnedSigma?: boolean;
}

/** ½·log(2π), the Gaussian's normalizer per pixel. */
export const HALF_LOG_2PI = 0.5 * Math.log(2 * Math.PI);

/** Floats of the uniform every elbo entry reads: rows, D, L, warm-up steps, β, log σ (fixed), 2 pad. */
export const ELBO_UNIFORM_FLOATS = 8;

export function elboBindings(entry: ElboEntry, options: ElboOptions): ('uniform' | 'read' | 'storage')[] {
  switch (entry) {
    case 'elbo': // dims, state, logits/mean, x, mulv, [log_sigma], dlogits, dmulv, partials
      return [
        'uniform',
        'read',
        'read',
        'read',
        'read',
        ...(options.learnedSigma ? ['read' as const] : []),
        'storage',
        'storage',
        'storage',
      ];
    case 'elbo_finalize': // dims, state, partials, out, objective
      return ['uniform', 'storage', 'read', 'storage', 'storage'];
    case 'gaussian_dlogsigma': // dims, mean, x, log_sigma, dlog_sigma
      return ['uniform', 'read', 'read', 'read', 'storage'];
    case 'mean_clamp': // dims, mean, image
      return ['uniform', 'read', 'storage'];
  }
}

/** `elements`: pixels of the batch for the per-pixel entries (D for gaussian_dlogsigma, rows·D for mean_clamp). */
export function elboWorkgroups(entry: ElboEntry, options: ElboOptions, elements = 0): [number, number, number] {
  const groups = lossGroups(options);
  if (entry === 'elbo') return [groups, 1, 1];
  if (entry === 'elbo_finalize') return [1, 1, 1];
  return linearWorkgroups(elements, WG);
}

export function elboWGSL(entry: ElboEntry, options: ElboOptions): string {
  const groups = lossGroups(options);
  const gaussian = options.likelihood === 'gaussian';
  if (!gaussian && options.learnedSigma) throw new Error('loss: a learned σ needs the Gaussian likelihood');
  if (!gaussian && (entry === 'gaussian_dlogsigma' || entry === 'mean_clamp'))
    throw new Error(`loss: ${entry} is for the Gaussian likelihood`);
  const learned = !!options.learnedSigma;
  return wgsl`
var<workgroup> scratch: array<f32, ${WG}>;

struct Dims { rows: u32, D: u32, L: u32, warmup: u32, beta: f32, logSigma: f32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<uniform> dims: Dims;

${REDUCE_WORKGROUP}
// β_t for the step after t Adam steps (see the file comment): f32(t + 1) is exact below 2^24.
fn betaAt(t: u32) -> f32 {
  if (dims.warmup == 0u) { return dims.beta; }
  return dims.beta * min(1.0, f32(t + 1u) / f32(dims.warmup));
}

#if ${entry === 'elbo'}
@group(0) @binding(1) var<storage, read> state: array<u32>;          // (t, batch)
@group(0) @binding(2) var<storage, read> logits: array<f32>;         // (rows, D): logits, or the Gaussian's mean
@group(0) @binding(3) var<storage, read> x: array<f32>;              // (rows, D)
@group(0) @binding(4) var<storage, read> mulv: array<f32>;           // (rows, 2L)
#if ${learned}
@group(0) @binding(5) var<storage, read> logSigma: array<f32>;       // (D)
@group(0) @binding(6) var<storage, read_write> dlogits: array<f32>;  // (rows, D)
@group(0) @binding(7) var<storage, read_write> dmulv: array<f32>;    // (rows, 2L)
@group(0) @binding(8) var<storage, read_write> partials: array<f32>; // (2·${groups}): recon, then KL
#else
@group(0) @binding(5) var<storage, read_write> dlogits: array<f32>;  // (rows, D)
@group(0) @binding(6) var<storage, read_write> dmulv: array<f32>;    // (rows, 2L)
@group(0) @binding(7) var<storage, read_write> partials: array<f32>; // (2·${groups}): recon, then KL
#endif

${LOG1P_UNIT}@compute @workgroup_size(${WG})
fn elbo(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let stride = ${groups * WG}u;
  let beta = betaAt(state[0]);
  var recon = 0.0;
  let pixels = dims.rows * dims.D;
  for (var i = gid.x; i < pixels; i += stride) {
    let t = x[i];
#if ${gaussian}
#if ${learned}
    let s = logSigma[i % dims.D];
#else
    let s = dims.logSigma;
#endif
    // e^(−2s) = 1/σ²: finite for |s| < 44, far outside any σ the settings accept or Adam reaches.
    let invVar = exp(-2.0 * s);
    let diff = logits[i] - t;
    recon += ${HALF_LOG_2PI} + s + 0.5 * diff * diff * invVar;
    dlogits[i] = diff * invVar;
#else
    let l = logits[i];
    let e = exp(-abs(l));
    let lp = log1pUnit(e);
    let logP = max(-(max(-l, 0.0) + lp), -100.0);
    let log1mP = max(-(max(l, 0.0) + lp), -100.0);
    recon -= t * logP + (1.0 - t) * log1mP;
    let sigma = select(e, 1.0, l >= 0.0) / (1.0 + e);
    dlogits[i] = sigma - t;
#endif
  }
  var kl = 0.0;
  let latents = dims.rows * dims.L;
  for (var e = gid.x; e < latents; e += stride) {
    let at = (e / dims.L) * 2u * dims.L + e % dims.L;
    let mu = mulv[at];
    let logvar = mulv[at + dims.L];
    let variance = exp(logvar);
    kl -= 0.5 * (1.0 + logvar - mu * mu - variance);
    dmulv[at] = beta * mu;
    dmulv[at + dims.L] = beta * (0.5 * (variance - 1.0));
  }
  let group = gid.x / ${WG}u;
  let reconTotal = reduceWorkgroup(lid, recon);
  if (lid == 0u) { partials[group] = reconTotal; }
  workgroupBarrier(); // every lane is done with scratch before the second reduction reuses it
  let klTotal = reduceWorkgroup(lid, kl);
  if (lid == 0u) { partials[${groups}u + group] = klTotal; }
}
#endif

#if ${entry === 'elbo_finalize'}
@group(0) @binding(1) var<storage, read_write> state: array<u32>;    // (t, batch)
@group(0) @binding(2) var<storage, read> partials: array<f32>;       // (2·${groups})
@group(0) @binding(3) var<storage, read_write> out: array<f32>;      // recon + KL per batch
@group(0) @binding(4) var<storage, read_write> objective: array<f32>; // recon + β_t·KL per batch

@compute @workgroup_size(${WG})
fn elbo_finalize(@builtin(local_invocation_index) lid: u32) {
  let recon = reduceWorkgroup(lid, select(0.0, partials[lid], lid < ${groups}u));
  workgroupBarrier();
  let kl = reduceWorkgroup(lid, select(0.0, partials[${groups}u + min(lid, ${groups - 1}u)], lid < ${groups}u));
  if (lid == 0u) {
    out[state[1]] = recon + kl;
    objective[state[1]] = recon + betaAt(state[0]) * kl;
    state[0] += 1u;
    state[1] += 1u;
  }
}
#endif

#if ${entry === 'gaussian_dlogsigma'}
@group(0) @binding(1) var<storage, read> mean: array<f32>;            // (rows, D)
@group(0) @binding(2) var<storage, read> x: array<f32>;               // (rows, D)
@group(0) @binding(3) var<storage, read> logSigma: array<f32>;        // (D)
@group(0) @binding(4) var<storage, read_write> dlogSigma: array<f32>; // (D), the gradient piece of log_sigma

// One invocation per pixel sums its column over the batch in row order: deterministic.
@compute @workgroup_size(${WG})
fn gaussian_dlogsigma(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let d = linearIndex(gid, groups);
  if (d >= dims.D) { return; }
  let invVar = exp(-2.0 * logSigma[d]);
  var g = 0.0;
  for (var r = 0u; r < dims.rows; r++) {
    let diff = mean[r * dims.D + d] - x[r * dims.D + d];
    g += 1.0 - diff * diff * invVar;
  }
  dlogSigma[d] = g;
}
${linearIndexWGSL(WG)}
#endif

#if ${entry === 'mean_clamp'}
@group(0) @binding(1) var<storage, read> mean: array<f32>;            // (rows, D)
@group(0) @binding(2) var<storage, read_write> image: array<f32>;     // (rows, D) in [0, 1]

// The Gaussian's mean as pixels: a mean outside [0, 1] is a valid output, not a displayable one.
@compute @workgroup_size(${WG})
fn mean_clamp(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = linearIndex(gid, groups);
  if (i >= dims.rows * dims.D) { return; }
  image[i] = clamp(mean[i], 0.0, 1.0);
}
${linearIndexWGSL(WG)}
#endif
`;
}
