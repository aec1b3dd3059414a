import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';
import { ELEMENTWISE_WG, linearIndexWGSL } from './common';
import { philoxWGSL } from './philox.wgsl';

/**
 * Reparameterization z = mu + exp(½·logvar)·ε with ε ~ N(0, I) drawn right here by Philox,
 * keyed by (seed, step, element), so a run is reproducible bit for bit on one adapter and
 * nothing random crosses from the CPU. The encoder writes [mu ‖ logvar] as one (rows, 2L)
 * matrix (fc21 and fc22 are one product), which is what this kernel reads.
 *
 * Entry points (one per generated module):
 *   reparam_forward   one invocation per 4 latents (one Philox call): z and ε
 *   reparam_backward  dmulv += [dz, dz·ε·½·exp(½·logvar)] — added to the KL gradient
 *                     that the loss kernel already wrote into dmulv. A training step does the
 *                     same in the dz matmul's epilogue (one dispatch fewer); this standalone
 *                     form is the kernel's reference-tested statement of the math.
 *   randn             out[e] = ε(seed, step, stream, e): samples from the prior, and the
 *                     generator's statistics tests
 * `step` comes from the GPU-resident state (state[0]) for training and evaluation, so many
 * steps can share a submit; randn takes it from its uniform.
 */
export type ReparamEntry = 'reparam_forward' | 'reparam_backward' | 'randn';

/** Uniform: rows, latent, seed, stream (randn: count, step, seed, stream). */
export function reparamBindings(entry: ReparamEntry): ('uniform' | 'read' | 'storage')[] {
  switch (entry) {
    case 'reparam_forward':
      return ['uniform', 'read', 'read', 'storage', 'storage']; // params, state, mulv, z, eps
    case 'reparam_backward':
      return ['uniform', 'read', 'read', 'read', 'storage']; // params, mulv, eps, dz, dmulv
    case 'randn':
      return ['uniform', 'storage']; // params, out
  }
}

export function reparamWorkgroups(entry: ReparamEntry, elements: number) {
  return entry === 'reparam_backward' ? elements : Math.ceil(elements / 4);
}

/**
 * `zStride`: reparam_forward writes z as the first L columns of a wider (rows, zStride) matrix —
 * a conditional decoder's input [z ‖ onehot(y)], whose one-hot columns the gather writes — with
 * zStride a fifth uniform field. Off, the kernel is the unconditional one, text and all.
 */
export function reparamWGSL(entry: ReparamEntry, options: { zStride?: boolean } = {}): string {
  const strided = entry === 'reparam_forward' && !!options.zStride;
  return wgsl`
struct Params { a: u32, b: u32, seed: u32, stream: u32${strided ? ', zStride: u32' : ''} }
@group(0) @binding(0) var<uniform> params: Params;
${linearIndexWGSL()}
${philoxWGSL}
#if ${entry === 'reparam_forward'}
@group(0) @binding(1) var<storage, read> state: array<u32>;
@group(0) @binding(2) var<storage, read> mulv: array<f32>;     // (rows, 2L)
@group(0) @binding(3) var<storage, read_write> z: array<f32>;  // (rows, ${strided ? 'zStride' : 'L'})
@group(0) @binding(4) var<storage, read_write> eps: array<f32>; // (rows, L)

@compute @workgroup_size(${ELEMENTWISE_WG})
fn reparam_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let g = linearIndex(gid, groups);
  let L = params.b;
  let count = params.a * L;
  if (g * 4u >= count) { return; }
  let n = normals4(g, state[0], params.stream, params.seed);
  for (var lane = 0u; lane < 4u; lane++) {
    let e = g * 4u + lane;
    if (e >= count) { break; }
    let row = e / L;
    let col = e % L;
    let mu = mulv[row * 2u * L + col];
    let logvar = mulv[row * 2u * L + L + col];
    eps[e] = n[lane];
    z[${strided ? 'row * params.zStride + col' : 'e'}] = mu + exp(0.5 * logvar) * n[lane];
  }
}
#endif
#if ${entry === 'reparam_backward'}
@group(0) @binding(1) var<storage, read> mulv: array<f32>;          // (rows, 2L)
@group(0) @binding(2) var<storage, read> eps: array<f32>;           // (rows, L)
@group(0) @binding(3) var<storage, read> dz: array<f32>;            // (rows, L)
@group(0) @binding(4) var<storage, read_write> dmulv: array<f32>;   // (rows, 2L)

@compute @workgroup_size(${ELEMENTWISE_WG})
fn reparam_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let e = linearIndex(gid, groups);
  let L = params.b;
  if (e >= params.a * L) { return; }
  let row = e / L;
  let col = e % L;
  let mu_at = row * 2u * L + col;
  let logvar = mulv[mu_at + L];
  dmulv[mu_at] += dz[e];
  dmulv[mu_at + L] += dz[e] * eps[e] * 0.5 * exp(0.5 * logvar);
}
#endif
#if ${entry === 'randn'}
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(${ELEMENTWISE_WG})
fn randn(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let g = linearIndex(gid, groups);
  let count = params.a;
  if (g * 4u >= count) { return; }
  let n = normals4(g, params.b, params.stream, params.seed);
  for (var lane = 0u; lane < 4u; lane++) {
    let e = g * 4u + lane;
    if (e < count) { out[e] = n[lane]; }
  }
}
#endif
`;
}
