/**
 * Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11) and
 * Box–Muller: a counter-based generator, so the normal for (seed, step, element) is a pure
 * function of those numbers and any invocation can draw its own without shared state.
 *
 * WGSL has no 32×32→64-bit multiply, so the high word is assembled from 16-bit halves.
 * Box–Muller maps two words to two normals: u1 ∈ (0, 1] from the top 24 bits of the first
 * (never 0, so log is finite), u2 ∈ [0, 1) from the second. The angle is shifted into
 * [-π, π) — the range where WGSL bounds sin/cos error — and the signs flipped back.
 *
 * Counter layout (shared with the CPU reference and the PyTorch fixture script):
 *   counter = (element / 4, step, stream, 0), key = (seed, 0); element e uses lane e % 4.
 */
/** Streams keep the generator's uses apart; the CPU streams (init, shuffle) share the counter layout. */
export const PHILOX_STREAM = { train: 0, eval: 1, sample: 2, init: 3, shuffle: 4 } as const;

export const philoxWGSL = /* wgsl */ `
fn mulhilo(a: u32, b: u32) -> vec2<u32> {
  let aL = a & 0xffffu; let aH = a >> 16u;
  let bL = b & 0xffffu; let bH = b >> 16u;
  let ll = aL * bL; let lh = aL * bH; let hl = aH * bL; let hh = aH * bH;
  let mid = (ll >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
  let hi = hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
  return vec2<u32>(hi, a * b);
}

fn philox4x32_10(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
  var c = counter;
  var k = key;
  for (var round = 0u; round < 10u; round++) {
    let p0 = mulhilo(0xD2511F53u, c.x);
    let p1 = mulhilo(0xCD9E8D57u, c.z);
    c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
    k += vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
  }
  return c;
}

fn boxMuller(a: u32, b: u32) -> vec2<f32> {
  let u1 = f32((a >> 8u) + 1u) * (1.0 / 16777216.0);
  let u2 = f32(b >> 8u) * (1.0 / 16777216.0);
  let radius = sqrt(-2.0 * log(u1));
  let angle = 6.283185307179586 * u2 - 3.141592653589793;
  // cos(θ - π) = -cos θ and sin(θ - π) = -sin θ
  return -radius * vec2<f32>(cos(angle), sin(angle));
}

// Four standard normals for elements 4·group … 4·group + 3.
fn normals4(group: u32, step: u32, stream: u32, seed: u32) -> vec4<f32> {
  let r = philox4x32_10(vec4<u32>(group, step, stream, 0u), vec2<u32>(seed, 0u));
  return vec4<f32>(boxMuller(r.x, r.y), boxMuller(r.z, r.w));
}
`;
