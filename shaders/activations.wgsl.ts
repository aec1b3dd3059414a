import { ELEMENTWISE_WG, linearIndexWGSL } from './common';

/**
 * Elementwise activations, forward and backward. In a training step ReLU is fused into the
 * matmul epilogues (forward) and the dX products (backward), and the sigmoid into the loss;
 * these standalone kernels serve decoding images (sigmoid of the decoder's logits) and tests.
 * Backward kernels take the forward *output* y, as PyTorch's do:
 *   relu'  : dx = dy where y > 0, else 0
 *   sigmoid': dx = dy·y·(1 − y)
 * σ clamps its argument to ±88 so exp never overflows.
 */
export type ActivationEntry = 'relu_forward' | 'relu_backward' | 'sigmoid_forward' | 'sigmoid_backward';

export function activationBindings(entry: ActivationEntry): ('uniform' | 'read' | 'storage')[] {
  return entry.endsWith('forward') ? ['uniform', 'read', 'storage'] : ['uniform', 'read', 'read', 'storage'];
}

export function activationWGSL(entry: ActivationEntry): string {
  const forward = entry.endsWith('forward');
  const body: Record<ActivationEntry, string> = {
    relu_forward: 'out[i] = max(x[i], 0.0);',
    sigmoid_forward: 'out[i] = 1.0 / (1.0 + exp(-clamp(x[i], -88.0, 88.0)));',
    relu_backward: 'out[i] = select(0.0, dy[i], y[i] > 0.0);',
    sigmoid_backward: 'out[i] = dy[i] * y[i] * (1.0 - y[i]);',
  };
  const inputs = forward
    ? '@group(0) @binding(1) var<storage, read> x: array<f32>;'
    : '@group(0) @binding(1) var<storage, read> dy: array<f32>;\n@group(0) @binding(2) var<storage, read> y: array<f32>;';
  return /* wgsl */ `
struct Dims { count: u32 }
@group(0) @binding(0) var<uniform> dims: Dims;
${inputs}
@group(0) @binding(${forward ? 2 : 3}) var<storage, read_write> out: array<f32>;
${linearIndexWGSL()}

@compute @workgroup_size(${ELEMENTWISE_WG})
fn ${entry}(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = linearIndex(gid, groups);
  if (i >= dims.count) { return; }
  ${body[entry]}
}
`;
}
