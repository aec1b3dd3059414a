import { ELEMENTWISE_WG, linearIndexWGSL } from './common';

/**
 * Batch gather: X[r, k] = data[perm[start + r], k] / 255, from a dataset that stays on the
 * GPU as bytes (4 pixels per u32, as the idx file stores them) through the epoch's index
 * permutation, so a training step uploads nothing. start = state[1]·batchSize, read from
 * the GPU-resident step state. The 256 values byte/255 come from a table made on the CPU
 * (`byteToUnitTable`) and bound as a small storage buffer: WGSL division need not be
 * correctly rounded (SwiftShader's is 1 ulp off for half the bytes), and this way every adapter
 * gets torchvision's ToTensor values exactly. (A WGSL `const` array indexed at run time is
 * slower on SwiftShader, which materializes it per invocation: bench/README.md.)
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

/**
 * The conditional VAE's gather: besides X (rows, D), the loss's targets, it writes the two
 * concatenations the conditioned layers read — the encoder's input [x ‖ onehot(y)] (rows, D+C)
 * and the one-hot columns of the decoder's input [z ‖ onehot(y)] (rows, L+C), whose first L
 * columns the reparameterization fills — with y = labels[image] through the same permutation.
 *
 * Why materialise the concatenations rather than split each conditioned Linear into its x part
 * plus a per-class column of W added like a bias: fc1.weight stays PyTorch's (h1, D+C) matrix
 * in one arena piece, and its gradient dW = dH1ᵀ·[x ‖ onehot] already holds the class columns'
 * per-class row sums, so the matmuls run unchanged and no kernel needs a strided weight or a
 * per-class reduction of its own; only the dz→dmulv epilogue learns to drop the one-hot columns.
 * The cost is C extra columns in two products (C = 10 against K = 784 and 20) and 420 KB more
 * activations at batch 128.
 *
 * One invocation per element of [x ‖ onehot(y)]. A label outside 0 … C−1 gives an all-zero
 * one-hot; the hosts refuse such labels before they reach the GPU.
 */
export const gatherConditionalBindings = [
  'uniform',
  'read',
  'read',
  'read',
  'read',
  'read',
  'storage',
  'storage',
  'storage',
] as const;
// dims, state, data, perm, table, labels, X, XY, Z

export function gatherConditionalWGSL(): string {
  return /* wgsl */ `
struct Dims { rows: u32, D: u32, batchSize: u32, C: u32, L: u32 }
@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> state: array<u32>;
@group(0) @binding(2) var<storage, read> data: array<u32>;   // (images, D) bytes
@group(0) @binding(3) var<storage, read> perm: array<u32>;   // image order for the epoch
@group(0) @binding(4) var<storage, read> byteToUnit: array<f32, 256>;
@group(0) @binding(5) var<storage, read> labels: array<u32>; // (images) class of each image
@group(0) @binding(6) var<storage, read_write> X: array<f32>;  // (rows, D)
@group(0) @binding(7) var<storage, read_write> XY: array<f32>; // (rows, D+C) [x ‖ onehot(y)]
@group(0) @binding(8) var<storage, read_write> Z: array<f32>;  // (rows, L+C) [z ‖ onehot(y)]: the one-hot columns
${linearIndexWGSL()}

@compute @workgroup_size(${ELEMENTWISE_WG})
fn gather_conditional(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = linearIndex(gid, groups);
  let width = dims.D + dims.C;
  if (i >= dims.rows * width) { return; }
  let row = i / width;
  let col = i % width;
  let image = perm[state[1] * dims.batchSize + row];
  if (col < dims.D) {
    let byteAt = image * dims.D + col;
    let byte = (data[byteAt / 4u] >> (8u * (byteAt % 4u))) & 0xffu;
    let x = byteToUnit[byte];
    X[row * dims.D + col] = x;
    XY[i] = x;
  } else {
    let k = col - dims.D;
    let hot = select(0.0, 1.0, labels[image] == k);
    XY[i] = hot;
    Z[row * (dims.L + dims.C) + dims.L + k] = hot;
  }
}
`;
}

/**
 * Column join: Out (rows, wA + wB) = [A's wA columns from offset oA ‖ B's wB columns from offset
 * oB], each read with its own row stride. A conditional conv encoder's first Linear reads
 * [h ‖ onehot(y)]: the forward joins the conv output h (rows, F) with the one-hot columns the
 * conditional gather wrote into [x ‖ onehot(y)]; the backward takes the first F columns of
 * d[h ‖ onehot(y)] back out (wB = 0) as the conv's dY. A copy, so the values are exact. One
 * invocation per output element.
 */
export const joinColumnsBindings = ['uniform', 'read', 'read', 'storage'] as const; // dims, A, B, Out

export function joinColumnsWGSL(): string {
  return /* wgsl */ `
struct Dims { rows: u32, widthA: u32, strideA: u32, offsetA: u32, widthB: u32, strideB: u32, offsetB: u32 }
@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read_write> Out: array<f32>; // (rows, widthA + widthB)
${linearIndexWGSL()}

@compute @workgroup_size(${ELEMENTWISE_WG})
fn join_columns(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = linearIndex(gid, groups);
  let width = dims.widthA + dims.widthB;
  if (i >= dims.rows * width) { return; }
  let row = i / width;
  let col = i % width;
  if (col < dims.widthA) {
    Out[i] = A[row * dims.strideA + dims.offsetA + col];
  } else {
    Out[i] = B[row * dims.strideB + dims.offsetB + col - dims.widthA];
  }
}
`;
}
