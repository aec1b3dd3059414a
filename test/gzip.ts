import { once } from 'node:events';
import { createGzip } from 'node:zlib';

/**
 * The gzip of `n` zero bytes (about 1 KB per MB): a small file that inflates past a bound. It is
 * compressed as it streams, so the test never holds the zeros.
 */
export async function gzipOfZeros(n: number): Promise<Uint8Array> {
  const gz = createGzip({ level: 9 });
  const out: Buffer[] = [];
  gz.on('data', (c: Buffer) => out.push(c));
  const ended = once(gz, 'end');
  const zeros = Buffer.alloc(1 << 20);
  for (let left = n; left > 0; left -= zeros.length) {
    if (!gz.write(zeros.subarray(0, Math.min(left, zeros.length)))) await once(gz, 'drain');
  }
  gz.end();
  await ended;
  return new Uint8Array(Buffer.concat(out)); // its own memory, not a slice of a pooled buffer
}
