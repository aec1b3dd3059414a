import { ELEMENTWISE_WG, linearIndexWGSL } from './common';

/**
 * Adam over the whole parameter arena in one dispatch, as PyTorch 1.13 computes it:
 *   m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²
 *   p −= (lr / (1 − β1ᵗ)) · m / (sqrt(v) / sqrt(1 − β2ᵗ) + eps)
 * t = state[0] + 1: the step counter lives on the GPU (loss_finalize advances it after this
 * dispatch), so steps recorded into one submit need no uploads. One invocation per vec4: the
 * arena's length is a multiple of 4 (its tensors are padded for binding alignment).
 */
export const adamBindings = ['uniform', 'read', 'storage', 'read', 'storage', 'storage'] as const; // hyper, state, params, grads, m, v

export function adamWorkgroupsFor(arenaLength: number) {
  return Math.ceil(arenaLength / 4);
}

export function adamWGSL(): string {
  return /* wgsl */ `
struct Hyper { lr: f32, beta1: f32, beta2: f32, eps: f32, count4: u32 }
@group(0) @binding(0) var<uniform> hyper: Hyper;
@group(0) @binding(1) var<storage, read> state: array<u32>;
@group(0) @binding(2) var<storage, read_write> params: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> grads: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> m: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> v: array<vec4<f32>>;
${linearIndexWGSL()}

@compute @workgroup_size(${ELEMENTWISE_WG})
fn adam_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = linearIndex(gid, groups);
  if (i >= hyper.count4) { return; }
  let t = f32(state[0] + 1u);
  let stepSize = hyper.lr / (1.0 - pow(hyper.beta1, t));
  let sqrtBc2 = sqrt(1.0 - pow(hyper.beta2, t));
  let g = grads[i];
  let mi = hyper.beta1 * m[i] + (1.0 - hyper.beta1) * g;
  let vi = hyper.beta2 * v[i] + (1.0 - hyper.beta2) * g * g;
  m[i] = mi;
  v[i] = vi;
  params[i] -= stepSize * mi / (sqrt(vi) / sqrtBc2 + hyper.eps);
}
`;
}
