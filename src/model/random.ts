/**
 * CPU-side randomness — initial weights and the per-epoch shuffle — from the same Philox
 * generator the GPU uses, keyed by (seed, stream, step), so a seed fixes the whole run.
 */
import { PHILOX_STREAM } from '../../shaders/philox.wgsl';
import { philox4x32_10 } from './philox';

/** Uniform doubles in [0, 1) from 53 bits of two Philox words: stream `stream`, step `step`. */
export function uniformStream(seed: number, stream: number, step: number): () => number {
  let counter = 0;
  let words: number[] = [];
  return () => {
    if (words.length === 0) words = [...philox4x32_10([counter++, step, stream, 0], [seed >>> 0, 0])];
    const hi = words.shift()! >>> 5; // 27 bits
    const lo = words.shift()! >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  };
}

/** The epoch's order of `n` images: Fisher–Yates driven by (seed, shuffle stream, epoch). */
export function shuffled(n: number, seed: number, epoch: number): Uint32Array {
  const next = uniformStream(seed, PHILOX_STREAM.shuffle, epoch);
  const perm = new Uint32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    const t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  return perm;
}
