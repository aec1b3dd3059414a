/**
 * Philox4x32-10 and the Box–Muller mapping on the CPU, in float64, with the counter layout of
 * shaders/philox.wgsl.ts, so the CPU, the GPU and the PyTorch fixture script draw the same ε
 * for (seed, step, stream, element). The engine draws its CPU-side noise here (the initial
 * weights and shuffles in ./random, the library's sampling latents and importance samples, the
 * page's fixed sampling grid), and the tests check the shader against it (src/reference/philox
 * passes it on beside the other float64 twins).
 *
 *   counter = (element >>> 2, step, stream, 0), key = (seed, 0), element e uses lane e & 3
 *   lanes 0, 1 come from words (0, 1); lanes 2, 3 from words (2, 3)
 *
 * The only difference from the GPU is precision: the uniforms are identical (24-bit grids,
 * exact in both), but log/cos/sin run in float64 here.
 */

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;

export type PhiloxCounter = [number, number, number, number];
export type PhiloxKey = [number, number];

/** High 32 bits of the 64-bit product a·b of two u32s. A float64 only holds 53 bits, so the
 *  product is assembled from 16-bit halves, exactly as the shader does for lack of u64. */
function mulhi(a: number, b: number): number {
  const aL = a & 0xffff;
  const aH = a >>> 16;
  const bL = b & 0xffff;
  const bH = b >>> 16;
  const ll = aL * bL;
  const lh = aL * bH;
  const hl = aH * bL;
  const hh = aH * bH;
  const mid = (ll >>> 16) + (lh & 0xffff) + (hl & 0xffff);
  // Every sum here stays below 2^34, exact in float64; the high word itself is below 2^32.
  return (hh + (lh >>> 16) + (hl >>> 16) + (mid >>> 16)) >>> 0;
}

export function philox4x32_10(counter: PhiloxCounter, key: PhiloxKey): PhiloxCounter {
  let [c0, c1, c2, c3] = counter.map((v) => v >>> 0) as PhiloxCounter;
  let k0 = key[0] >>> 0;
  let k1 = key[1] >>> 0;
  for (let round = 0; round < 10; round++) {
    const hi0 = mulhi(M0, c0);
    const lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulhi(M1, c2);
    const lo1 = Math.imul(M1, c2) >>> 0;
    [c0, c1, c2, c3] = [(hi1 ^ c1 ^ k0) >>> 0, lo1, (hi0 ^ c3 ^ k1) >>> 0, lo0];
    k0 = (k0 + W0) >>> 0;
    k1 = (k1 + W1) >>> 0;
  }
  return [c0, c1, c2, c3];
}

/** Two normals from two words. u1 takes the +1 so it lies in (0, 1] and log(u1) is finite. */
function boxMuller(a: number, b: number): [number, number] {
  const u1 = ((a >>> 8) + 1) * 2 ** -24;
  const u2 = (b >>> 8) * 2 ** -24;
  const radius = Math.sqrt(-2 * Math.log(u1));
  const angle = 2 * Math.PI * u2;
  return [radius * Math.cos(angle), radius * Math.sin(angle)];
}

/** The four normals of one Philox block: elements 4·group … 4·group + 3. */
function block(seed: number, step: number, stream: number, group: number): [number, number, number, number] {
  const r = philox4x32_10([group, step, stream, 0], [seed, 0]);
  return [...boxMuller(r[0], r[1]), ...boxMuller(r[2], r[3])];
}

export function normal(seed: number, step: number, stream: number, element: number): number {
  return block(seed, step, stream, element >>> 2)[element & 3]!;
}

export function normals(count: number, seed: number, step: number, stream: number): Float64Array {
  const out = new Float64Array(count);
  for (let group = 0; group * 4 < count; group++) {
    const n = block(seed, step, stream, group);
    for (let lane = 0; lane < 4 && group * 4 + lane < count; lane++) out[group * 4 + lane] = n[lane]!;
  }
  return out;
}
