import { ELEMENTWISE_WG, linearIndexWGSL } from './common';

/**
 * Batch gather: X[r, k] = data[perm[start + r], k] / 255, from a dataset that stays on the
 * GPU as bytes (4 pixels per u32, as the idx file stores them) through the epoch's index
 * permutation, so a training step uploads nothing. start = state[1]·batchSize, read from
 * the GPU-resident step state. Dividing (not multiplying by 1/255) matches torchvision's
 * ToTensor exactly.
 */
export const gatherBindings = ['uniform', 'read', 'read', 'read', 'storage'] as const; // dims, state, data, perm, X

export function gatherWGSL(): string {
  return /* wgsl */ `
struct Dims { rows: u32, D: u32, batchSize: u32 }
@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> state: array<u32>;
@group(0) @binding(2) var<storage, read> data: array<u32>;   // (images, D) bytes
@group(0) @binding(3) var<storage, read> perm: array<u32>;   // image order for the epoch
@group(0) @binding(4) var<storage, read_write> X: array<f32>; // (rows, D)
${linearIndexWGSL()}

@compute @workgroup_size(${ELEMENTWISE_WG})
fn gather(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = linearIndex(gid, groups);
  if (i >= dims.rows * dims.D) { return; }
  let row = i / dims.D;
  let image = perm[state[1] * dims.batchSize + row];
  let byteAt = image * dims.D + i % dims.D;
  let byte = (data[byteAt / 4u] >> (8u * (byteAt % 4u))) & 0xffu;
  X[i] = f32(byte) / 255.0;
}
`;
}
