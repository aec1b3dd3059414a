/**
 * What the elementwise kernels share: one invocation per element (or per vec4), laid out
 * over a 2-D grid of workgroups because a single dimension stops at 65,535 workgroups
 * (a larger count is a validation error that otherwise does nothing).
 */
export const ELEMENTWISE_WG = 256;
export const MAX_WORKGROUPS_PER_DIM = 65535;

export type BindingKind = 'uniform' | 'read' | 'storage';

/** Workgroups covering `count` invocations of `wg` each; folded into y when x would overflow. */
export function linearWorkgroups(count: number, wg = ELEMENTWISE_WG): [number, number, number] {
  const groups = Math.max(1, Math.ceil(count / wg));
  if (groups <= MAX_WORKGROUPS_PER_DIM) return [groups, 1, 1];
  const y = Math.ceil(groups / MAX_WORKGROUPS_PER_DIM);
  if (y > MAX_WORKGROUPS_PER_DIM) throw new Error(`${count} invocations exceed one dispatch`);
  return [Math.ceil(groups / y), y, 1];
}

/** WGSL: the flat invocation index for a grid made by `linearWorkgroups`. */
export function linearIndexWGSL(wg = ELEMENTWISE_WG): string {
  return `
fn linearIndex(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
  return gid.x + gid.y * groups.x * ${wg}u;
}`;
}
