import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';
import { ELEMENTWISE_WG, linearIndexWGSL, linearWorkgroups, type BindingKind } from './common';

/**
 * BatchNorm2d over NCHW activations (N, C, H, W), with an optional ReLU or LeakyReLU after it.
 *
 *   batchnorm_train_forward  one workgroup per channel c over its M = N·H·W values:
 *     pass 1  μ₀ = Σ x/M and m = max |x|                       (a first guess of the mean)
 *     pass 2  with u = (x − μ₀)/s, s = 2^⌈log₂ m⌉ (≥ 1):  Σ u and Σ u²
 *             μ꜀ = s·Σu/M,  σ² = s²·(Σu²/M − (Σu/M)²)          (the corrected two-pass variance)
 *     pass 3  x̂ = ((x − μ₀) − μ꜀)·invstd, invstd = 1/√(σ² + eps);  y = act(γ·x̂ + β)
 *     and, by one invocation: saved = (μ₀, μ꜀, invstd) for the backward pass; running_mean and
 *     running_var ← (1 − momentum)·old + momentum·(μ, σ²·M/(M − 1)), the unbiased variance as
 *     PyTorch keeps it; num_batches_tracked += 1.
 *   batchnorm_eval_forward   elementwise: y = act(γ·(x − running_mean)/√(running_var + eps) + β).
 *   batchnorm_backward       one workgroup per channel, from the forward's saved statistics:
 *     pass 1  g = dy·act′ (masked on the forward output y);  dβ = Σ g,  dγ = Σ g·x̂
 *     pass 2  dx = γ·invstd·(g − dβ/M − x̂·dγ/M)
 *
 * Numerics. The one-pass E[x²] − E[x]² loses every digit when the mean is large against the
 * spread (mean 1e4, spread 0.01: E[x²] ≈ 1e8 carries an absolute error near 8 in float32). Here
 * the variance is summed from deviations, and the deviations from μ₀ rather than the true mean:
 * μ₀'s own rounding error δ only adds δ² to Σu²/M, which −(Σu/M)² takes out again (Chan, Golub
 * and LeVeque's corrected two-pass algorithm). μ is kept as the pair (μ₀, μ꜀), so x − μ is formed
 * as (x − μ₀) − μ꜀: x − μ₀ is exact for x within a factor 2 of μ₀, and μ꜀ is small, so x̂ is
 * accurate to float32 even where μ itself is not representable to the spread's digits. The
 * power-of-two scale s (exact to apply) keeps Σu² finite for |x| up to 1e36; eps is scaled with
 * it (so a channel of one repeated value beyond about 1e17, where eps/s² underflows, gives no
 * finite output: PyTorch's float32 statistics have no digits for it either). Each sum is a per-invocation run over the channel's values in steps of WG, then a tree
 * over the WG invocations in workgroup memory: error ≤ (⌈M/WG⌉ + log₂ WG)·ε relative to the sum
 * of magnitudes, with the order fixed by the shape alone (no subgroups, whose size differs per
 * adapter, and no atomics), so a shape gives the same bits every run.
 *
 * One workgroup per channel: C·WG invocations, 8,192 for the conv presets' 32 channels.
 */
export const BATCHNORM_WG = 256;

/** PyTorch's BatchNorm2d defaults. */
export const BATCHNORM_EPS = 1e-5;
export const BATCHNORM_MOMENTUM = 0.1;

export type BatchnormEntry = 'batchnorm_train_forward' | 'batchnorm_eval_forward' | 'batchnorm_backward';

/** The activation fused after the norm (its slope is a uniform, so every slope shares one pipeline). */
export type BatchnormActivationKind = 'none' | 'relu' | 'leakyRelu';

/** Bytes of the uniform every entry reads: N, C, HW, pad, eps, momentum, 1 − momentum, slope. */
export const BATCHNORM_UNIFORM_BYTES = 32;

export function batchnormBindings(entry: BatchnormEntry, activation: BatchnormActivationKind): BindingKind[] {
  switch (entry) {
    case 'batchnorm_train_forward': // dims, x, gamma, beta, running, tracked, y, saved
      return ['uniform', 'read', 'read', 'read', 'storage', 'storage', 'storage', 'storage'];
    case 'batchnorm_eval_forward': // dims, x, gamma, beta, running, y
      return ['uniform', 'read', 'read', 'read', 'read', 'storage'];
    case 'batchnorm_backward': // dims, x, saved, gamma, dy, [y], dx, dgamma, dbeta
      return [
        'uniform',
        'read',
        'read',
        'read',
        'read',
        ...(activation === 'none' ? [] : ['read' as const]),
        'storage',
        'storage',
        'storage',
      ];
  }
}

export function batchnormWorkgroups(
  entry: BatchnormEntry,
  dims: { N: number; C: number; HW: number },
): [number, number, number] {
  return entry === 'batchnorm_eval_forward' ? linearWorkgroups(dims.N * dims.C * dims.HW) : [dims.C, 1, 1];
}

export function batchnormWGSL(entry: BatchnormEntry, activation: BatchnormActivationKind): string {
  const WG = BATCHNORM_WG;
  const relu = activation === 'relu';
  const leaky = activation === 'leakyRelu';
  const act = activation !== 'none';
  return wgsl`
struct Dims { N: u32, C: u32, HW: u32, pad: u32, eps: f32, momentum: f32, keep: f32, slope: f32 }
@group(0) @binding(0) var<uniform> dims: Dims;

fn activate(v: f32) -> f32 {
#if ${relu}
  return max(v, 0.0);
#elif ${leaky}
  return select(dims.slope * v, v, v > 0.0);
#else
  return v;
#endif
}

#if ${entry === 'batchnorm_eval_forward'}
@group(0) @binding(1) var<storage, read> x: array<f32>;              // (N, C, H, W)
@group(0) @binding(2) var<storage, read> gamma: array<f32>;          // (C)
@group(0) @binding(3) var<storage, read> beta: array<f32>;           // (C)
@group(0) @binding(4) var<storage, read> running: array<f32>;        // (2, C): running_mean, running_var
@group(0) @binding(5) var<storage, read_write> y: array<f32>;        // (N, C, H, W)
${linearIndexWGSL()}

@compute @workgroup_size(${ELEMENTWISE_WG})
fn batchnorm_eval_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = linearIndex(gid, groups);
  if (i >= dims.N * dims.C * dims.HW) { return; }
  let c = (i / dims.HW) % dims.C;
  let scale = gamma[c] * inverseSqrt(running[dims.C + c] + dims.eps);
  y[i] = activate((x[i] - running[c]) * scale + beta[c]);
}
#else
var<workgroup> scratch: array<vec2<f32>, ${WG}>;

// Invocation lid visits its channel's values j = lid, lid + WG, … as (n, pixel) pairs, stepping
// by (WG / HW, WG mod HW) with one carry instead of dividing at every value.
fn firstAt(lid: u32) -> vec2<u32> { return vec2(lid / dims.HW, lid % dims.HW); }
fn nextAt(p: vec2<u32>, step: vec2<u32>) -> vec2<u32> {
  var q = p + step;
  if (q.y >= dims.HW) { q += vec2(1u, 0u); q.y -= dims.HW; }
  return q;
}
fn indexOf(p: vec2<u32>, c: u32) -> u32 { return (p.x * dims.C + c) * dims.HW + p.y; }

// Every invocation of the workgroup calls these; the tree's order depends on WG alone. The
// last barrier keeps scratch[0] until everyone has read it, so the next reduction may start.
fn reduceSums(lid: u32, v: vec2<f32>) -> vec2<f32> {
  scratch[lid] = v;
  workgroupBarrier();
  for (var width = ${WG / 2}u; width > 0u; width >>= 1u) {
    if (lid < width) { scratch[lid] += scratch[lid + width]; }
    workgroupBarrier();
  }
  let total = scratch[0];
  workgroupBarrier();
  return total;
}
#endif

#if ${entry === 'batchnorm_train_forward'}
@group(0) @binding(1) var<storage, read> x: array<f32>;              // (N, C, H, W)
@group(0) @binding(2) var<storage, read> gamma: array<f32>;          // (C)
@group(0) @binding(3) var<storage, read> beta: array<f32>;           // (C)
@group(0) @binding(4) var<storage, read_write> running: array<f32>;  // (2, C): running_mean, running_var
@group(0) @binding(5) var<storage, read_write> tracked: array<u32>;  // (2): num_batches_tracked, int64 as (low, high)
@group(0) @binding(6) var<storage, read_write> y: array<f32>;        // (N, C, H, W)
@group(0) @binding(7) var<storage, read_write> saved: array<f32>;    // (3, C): μ₀, μ꜀, invstd

// (Σ, max) of pass 1: the sum in .x, the largest magnitude in .y.
fn reduceSumMax(lid: u32, v: vec2<f32>) -> vec2<f32> {
  scratch[lid] = v;
  workgroupBarrier();
  for (var width = ${WG / 2}u; width > 0u; width >>= 1u) {
    if (lid < width) {
      let a = scratch[lid];
      let b = scratch[lid + width];
      scratch[lid] = vec2(a.x + b.x, max(a.y, b.y));
    }
    workgroupBarrier();
  }
  let total = scratch[0];
  workgroupBarrier();
  return total;
}

@compute @workgroup_size(${WG})
fn batchnorm_train_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = wid.x;
  let step = vec2(${WG}u / dims.HW, ${WG}u % dims.HW);
  let M = f32(dims.N * dims.HW);
  let invM = 1.0 / M;

  var acc = vec2(0.0, 0.0);
  for (var p = firstAt(lid); p.x < dims.N; p = nextAt(p, step)) {
    let v = x[indexOf(p, c)];
    acc = vec2(acc.x + v * invM, max(acc.y, abs(v)));
  }
  let first = reduceSumMax(lid, acc);
  let mu0 = first.x;
  // s = 2^e ≥ max |x| (frexp's fraction is in [½, 1)), at least 1: dividing by it is exact.
  let e = max(frexp(first.y).exp, 0);
  let invS = ldexp(1.0, -e);

  acc = vec2(0.0, 0.0);
  for (var p = firstAt(lid); p.x < dims.N; p = nextAt(p, step)) {
    let u = x[indexOf(p, c)] * invS - mu0 * invS;
    acc += vec2(u, u * u);
  }
  let second = reduceSums(lid, acc);
  let meanU = second.x / M;
  let varU = max(second.y / M - meanU * meanU, 0.0);
  let muC = ldexp(meanU, e);
  let invstd = inverseSqrt(varU + dims.eps * invS * invS) * invS;

  let scale = gamma[c] * invstd;
  for (var p = firstAt(lid); p.x < dims.N; p = nextAt(p, step)) {
    let i = indexOf(p, c);
    y[i] = activate(((x[i] - mu0) - muC) * scale + beta[c]);
  }

  if (lid == 0u) {
    saved[c] = mu0;
    saved[dims.C + c] = muC;
    saved[2u * dims.C + c] = invstd;
    // σ² = s²·varU overflows float32 only where PyTorch's float32 running_var would too.
    let unbiased = ldexp(varU, 2 * e) * (M / (M - 1.0));
    running[c] = dims.keep * running[c] + dims.momentum * (mu0 + muC);
    running[dims.C + c] = dims.keep * running[dims.C + c] + dims.momentum * unbiased;
    if (c == 0u) {
      tracked[0] += 1u;
      if (tracked[0] == 0u) { tracked[1] += 1u; }
    }
  }
}
#endif

#if ${entry === 'batchnorm_backward'}
@group(0) @binding(1) var<storage, read> x: array<f32>;              // (N, C, H, W), the forward's input
@group(0) @binding(2) var<storage, read> saved: array<f32>;          // (3, C): μ₀, μ꜀, invstd of the forward
@group(0) @binding(3) var<storage, read> gamma: array<f32>;          // (C)
@group(0) @binding(4) var<storage, read> dy: array<f32>;             // (N, C, H, W), d loss / d output
#if ${act}
@group(0) @binding(5) var<storage, read> y: array<f32>;              // (N, C, H, W), the forward's output
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;       // (N, C, H, W)
@group(0) @binding(7) var<storage, read_write> dgamma: array<f32>;   // (C)
@group(0) @binding(8) var<storage, read_write> dbeta: array<f32>;    // (C)
#else
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;       // (N, C, H, W)
@group(0) @binding(6) var<storage, read_write> dgamma: array<f32>;   // (C)
@group(0) @binding(7) var<storage, read_write> dbeta: array<f32>;    // (C)
#endif

// d loss / d(γ·x̂ + β): the activation's backward, masked on its output as PyTorch's ReLU is.
// For LeakyReLU with a slope ≥ 0, y > 0 exactly where its input is > 0.
fn preActivationGrad(i: u32) -> f32 {
#if ${relu}
  return select(0.0, dy[i], y[i] > 0.0);
#elif ${leaky}
  return select(dims.slope * dy[i], dy[i], y[i] > 0.0);
#else
  return dy[i];
#endif
}

@compute @workgroup_size(${WG})
fn batchnorm_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = wid.x;
  let step = vec2(${WG}u / dims.HW, ${WG}u % dims.HW);
  let M = f32(dims.N * dims.HW);
  let mu0 = saved[c];
  let muC = saved[dims.C + c];
  let invstd = saved[2u * dims.C + c];

  var acc = vec2(0.0, 0.0);
  for (var p = firstAt(lid); p.x < dims.N; p = nextAt(p, step)) {
    let i = indexOf(p, c);
    let g = preActivationGrad(i);
    acc += vec2(g, g * (((x[i] - mu0) - muC) * invstd));
  }
  let sums = reduceSums(lid, acc);
  if (lid == 0u) {
    dbeta[c] = sums.x;
    dgamma[c] = sums.y;
  }
  let meanG = sums.x / M;
  let meanGX = sums.y / M;
  let scale = gamma[c] * invstd;
  for (var p = firstAt(lid); p.x < dims.N; p = nextAt(p, step)) {
    let i = indexOf(p, c);
    let xhat = ((x[i] - mu0) - muC) * invstd;
    dx[i] = scale * (preActivationGrad(i) - meanG - xhat * meanGX);
  }
}
#endif
`;
}
