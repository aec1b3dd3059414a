import { ELEMENTWISE_WG, linearIndexWGSL } from './common';

/**
 * Batch gather: X[r, k] = data[perm[start + r], k] / 255, from a dataset that stays on the
 * GPU as bytes (4 pixels per u32, as the idx file stores them) through the epoch's index
 * permutation, so a training step uploads nothing. start = state[1]·batchSize, read from
 * the GPU-resident step state. The 256 values byte/255 come from a table made on the CPU
 * (`byteToUnitTable`) and bound as a small storage buffer: WGSL division need not be
 * correctly rounded (SwiftShader's is 1 ulp off for half the bytes), and this way every adapter
 * gets torchvision's ToTensor values exactly. (A WGSL `const` array indexed at run time was
 * 3× slower on SwiftShader, which materializes it per invocation.)
 */
export const gatherBindings = ['uniform', 'read', 'read', 'read', 'read', 'storage'] as const; // dims, state, data, perm, table, X

/** Float32 byte/255 for every byte: correctly rounded, as a float32 division on the CPU gives. */
export function byteToUnitTable(): Float32Array {
  return Float32Array.from({ length: 256 }, (_, b) => b / 255);
}

export function gatherWGSL(): string {
  return /* wgsl */ `
struct Dims { rows: u32, D: u32, batchSize: u32 }
@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> state: array<u32>;
@group(0) @binding(2) var<storage, read> data: array<u32>;   // (images, D) bytes
@group(0) @binding(3) var<storage, read> perm: array<u32>;   // image order for the epoch
@group(0) @binding(4) var<storage, read> byteToUnit: array<f32, 256>;
@group(0) @binding(5) var<storage, read_write> X: array<f32>; // (rows, D)
${linearIndexWGSL()}

@compute @workgroup_size(${ELEMENTWISE_WG})
fn gather(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = linearIndex(gid, groups);
  if (i >= dims.rows * dims.D) { return; }
  let row = i / dims.D;
  let image = perm[state[1] * dims.batchSize + row];
  let byteAt = image * dims.D + i % dims.D;
  let byte = (data[byteAt / 4u] >> (8u * (byteAt % 4u))) & 0xffu;
  X[i] = byteToUnit[byte];
}
`;
}
