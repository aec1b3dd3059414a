/**
 * Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11) and
 * Box–Muller: a counter-based generator, so the normal for (seed, step, element) is a pure
 * function of those numbers and any invocation can draw its own without shared state.
 *
 * WGSL has no 32×32→64-bit multiply, so the high word is assembled from 16-bit halves.
 * Box–Muller maps two words to two normals: u1 ∈ (0, 1] from the top 24 bits of the first
 * (never 0, so log is finite), u2 ∈ [0, 1) from the second. WGSL lets sin/cos be off by
 * 2^-11 absolutely (SwiftShader's are, which put ε off by 3e-4), so log, sin and cos here are
 * our own polynomials with exact range reduction: every adapter then draws the same ε as the
 * float64 reference to within a few float32 ulps.
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

// ln(u) for u in (0, 1]: u = m·2^e with m in [√½, √2), ln m = 2·atanh(s), s = (m−1)/(m+1),
// |s| ≤ 0.172, so five terms of the odd series reach float32 precision.
fn lnUnit(u: f32) -> f32 {
  let bits = bitcast<u32>(u);
  var e = f32(i32((bits >> 23u) & 0xffu) - 127);
  var m = bitcast<f32>((bits & 0x7fffffu) | 0x3f800000u);
  if (m > 1.4142135) { m *= 0.5; e += 1.0; }
  let s = (m - 1.0) / (m + 1.0);
  let s2 = s * s;
  let series = 1.0 + s2 * (1.0 / 3.0 + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0))));
  return e * 0.6931471805599453 + 2.0 * s * series;
}

// (cos 2πu, sin 2πu) for u in [0, 1): quarter turns are taken off exactly (u has 24 bits),
// leaving x in [0, π/2) for Taylor polynomials whose truncation error is below 1e-9.
fn cosSinTurn(u: f32) -> vec2<f32> {
  let quarter = floor(u * 4.0);
  let x = 6.283185307179586 * (u - 0.25 * quarter);
  let x2 = x * x;
  let s = x * (1.0 - x2 / 6.0 * (1.0 - x2 / 20.0 * (1.0 - x2 / 42.0 * (1.0 - x2 / 72.0 * (1.0 - x2 / 110.0 * (1.0 - x2 / 156.0))))));
  let c = 1.0 - x2 / 2.0 * (1.0 - x2 / 12.0 * (1.0 - x2 / 30.0 * (1.0 - x2 / 56.0 * (1.0 - x2 / 90.0 * (1.0 - x2 / 132.0 * (1.0 - x2 / 182.0))))));
  switch (u32(quarter)) {
    case 0u: { return vec2<f32>(c, s); }
    case 1u: { return vec2<f32>(-s, c); }
    case 2u: { return vec2<f32>(-c, -s); }
    default: { return vec2<f32>(s, -c); }
  }
}

fn boxMuller(a: u32, b: u32) -> vec2<f32> {
  let u1 = f32((a >> 8u) + 1u) * (1.0 / 16777216.0);
  let u2 = f32(b >> 8u) * (1.0 / 16777216.0);
  return sqrt(-2.0 * lnUnit(u1)) * cosSinTurn(u2);
}

// Four standard normals for elements 4·group … 4·group + 3.
fn normals4(group: u32, step: u32, stream: u32, seed: u32) -> vec4<f32> {
  let r = philox4x32_10(vec4<u32>(group, step, stream, 0u), vec2<u32>(seed, 0u));
  return vec4<f32>(boxMuller(r.x, r.y), boxMuller(r.z, r.w));
}
`;
