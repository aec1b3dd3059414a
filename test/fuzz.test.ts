/**
 * Hostile files: the idx reader and the checkpoint reader fed truncations at every offset,
 * random byte mutations, random bytes and headers that lie. Every case must end in the
 * reader's own error (or, for a mutation that happens to stay valid, a result no larger than
 * the file) — never another exception type, a hang, or a half-built result.
 */
import { describe, expect, it } from 'vitest';
import { IdxError, parseIdxImages, parseIdxLabels } from '../src/data/idx';
import { SafetensorsError } from '../src/io/safetensors';
import { checkpointSizes, decodeCheckpoint, encodeCheckpoint } from '../src/model/checkpoint';
import { arenaLayout, initArena, parameterCount } from '../src/model/graph';
import { rng } from './gpu';

type Reader = (bytes: Uint8Array) => { byteLength: number };
type Outcome = 'accepted' | 'refused';

/** Runs `read`; a refusal must be `ErrorType` with a message, an acceptance no larger than the input. */
function attempt(read: Reader, bytes: Uint8Array, ErrorType: new (...a: never[]) => Error, what: string): Outcome {
  try {
    const out = read(bytes);
    expect(out.byteLength, `${what}: result larger than the file`).toBeLessThanOrEqual(bytes.length);
    return 'accepted';
  } catch (e) {
    if (!(e instanceof ErrorType))
      throw new Error(`${what}: threw ${(e as Error)?.name}: ${(e as Error)?.message}`, { cause: e });
    expect((e as Error).message.length).toBeGreaterThan(20);
    return 'refused';
  }
}

function fuzz(
  name: string,
  valid: Uint8Array,
  read: Reader,
  ErrorType: new (...a: never[]) => Error,
  lies: [string, Uint8Array][],
) {
  const r = rng(valid.length);
  const tally = { truncations: 0, mutations: 0, random: 0, lies: 0, accepted: 0, refused: 0 };
  const count = (o: Outcome) => {
    tally[o]++;
  };
  const started = performance.now();
  for (let end = 0; end < valid.length; end++) {
    expect(attempt(read, valid.subarray(0, end), ErrorType, `${name} truncated at ${end}`)).toBe('refused');
    tally.truncations++;
    tally.refused++;
  }
  for (let i = 0; i < 3000; i++) {
    const bytes = valid.slice();
    const flips = 1 + Math.floor(r.next() * 4);
    // Mostly the header, where the structure is; sometimes anywhere.
    for (let f = 0; f < flips; f++)
      bytes[Math.floor(r.next() * (r.next() < 0.8 ? Math.min(64, bytes.length) : bytes.length))] = Math.floor(
        r.next() * 256,
      );
    count(attempt(read, bytes, ErrorType, `${name} mutation ${i}`));
    tally.mutations++;
  }
  for (let i = 0; i < 1000; i++) {
    const bytes = Uint8Array.from({ length: Math.floor(r.next() * 200) }, () => Math.floor(r.next() * 256));
    count(attempt(read, bytes, ErrorType, `${name} random ${i}`));
    tally.random++;
  }
  for (const [what, bytes] of lies) {
    expect(attempt(read, bytes, ErrorType, `${name} ${what}`), what).toBe('refused');
    tally.lies++;
    tally.refused++;
  }
  const ms = performance.now() - started;
  console.log(
    `fuzz ${name}: corpus file ${valid.length} B; ${tally.truncations} truncations, ${tally.mutations} mutations, ` +
      `${tally.random} random files, ${tally.lies} lying headers → ${tally.refused} refused, ${tally.accepted} accepted; ${ms.toFixed(0)} ms`,
  );
  expect(ms).toBeLessThan(60_000);
}

const be32 = (v: number) => [(v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255];

describe('fuzzing the idx reader', () => {
  const images = Uint8Array.from([
    0,
    0,
    8,
    3,
    ...be32(3),
    ...be32(4),
    ...be32(4),
    ...Array.from({ length: 48 }, (_, i) => i * 5),
  ]);
  const labels = Uint8Array.from([0, 0, 8, 1, ...be32(5), 1, 2, 3, 4, 5]);
  const readImages: Reader = (b) => parseIdxImages(b, 'fuzz-images').pixels;
  const readLabels: Reader = (b) => parseIdxLabels(b, 'fuzz-labels').labels;

  it('images', () => {
    fuzz('idx images', images, readImages, IdxError, [
      ['4e9 images declared', Uint8Array.from([0, 0, 8, 3, ...be32(4_000_000_000), ...be32(28), ...be32(28), 1, 2, 3])],
      ['huge rows and cols', Uint8Array.from([0, 0, 8, 3, ...be32(1), ...be32(65536), ...be32(65536), 1])],
      ['more data than declared', Uint8Array.from([...images, 7])],
      ['255 dimensions', Uint8Array.from([0, 0, 8, 255, ...be32(1)])],
      ['a float idx', Uint8Array.from([0, 0, 0x0d, 3, ...be32(1), ...be32(1), ...be32(1), 0, 0, 0, 0])],
    ]);
  });

  it('labels', () => {
    fuzz('idx labels', labels, readLabels, IdxError, [
      ['4e9 labels declared', Uint8Array.from([0, 0, 8, 1, ...be32(4_000_000_000), 1])],
      ['an images header', images],
    ]);
  });
});

describe('fuzzing the checkpoint reader', () => {
  const layout = arenaLayout({ D: 13, hidden: [7], L: 3 });
  const r = rng(3);
  const params = initArena(layout, r.next);
  const valid = encodeCheckpoint(layout, {
    params,
    m: params.map((v) => v / 10),
    v: params.map((v) => v * v),
    step: 12,
    metadata: { epoch: '2' },
  });
  const read: Reader = (b) => decodeCheckpoint(b, layout).params;
  const header = (json: string) => {
    const text = new TextEncoder().encode(json);
    const out = new Uint8Array(8 + text.length);
    new DataView(out.buffer).setBigUint64(0, BigInt(text.length), true);
    out.set(text, 8);
    return out;
  };

  it('safetensors checkpoints', () => {
    const lengthLie = valid.slice();
    new DataView(lengthLie.buffer).setBigUint64(0, 2n ** 40n, true);
    fuzz('checkpoint', valid, read, SafetensorsError, [
      ['header length 2^40', lengthLie],
      [
        'a tensor of 2^50 floats',
        header('{"fc1.weight":{"dtype":"F32","shape":[1048576,1073741824],"data_offsets":[0,4]}}'),
      ],
      ['offsets past the end', header('{"fc1.weight":{"dtype":"F32","shape":[7,13],"data_offsets":[0,364]}}')],
      ['negative shape', header('{"fc1.weight":{"dtype":"F32","shape":[-7,13],"data_offsets":[0,0]}}')],
      ['not JSON', header('{"fc1.weight":')],
      ['an empty state_dict', header('{}')],
    ]);
  });

  it('the sizes a checkpoint implies', () => {
    // The "result" is the model a caller would allocate before reading the tensors: its weights
    // must fit in the file, however the header lies.
    const implied: Reader = (b) => ({ byteLength: 4 * parameterCount(arenaLayout(checkpointSizes(b).sizes)) });
    const fc = (fc1: string, fc21: string, fc21Bytes: number) => {
      const json = header(
        `{"fc1.weight":{"dtype":"F32","shape":${fc1},"data_offsets":[0,4]},"fc21.weight":{"dtype":"F32","shape":${fc21},"data_offsets":[4,${4 + fc21Bytes}]}}`,
      );
      const file = new Uint8Array(json.length + 4 + fc21Bytes); // zeros after the header: the tensors' bytes
      file.set(json);
      return file;
    };
    fuzz('checkpoint sizes', valid, implied, SafetensorsError, [
      ['fc21.weight of 2^31 × 0', fc('[1,1]', '[2147483648,0]', 0)],
      ['fc21.weight of 0 × 1', fc('[1,1]', '[0,1]', 0)],
      ['fc21.weight of 1024 × 1 and nothing else', fc('[1,1]', '[1024,1]', 4096)],
      [
        'fc1.weight of 0 × 2^40',
        header(
          '{"fc1.weight":{"dtype":"F32","shape":[0,1099511627776],"data_offsets":[0,0]},"fc21.weight":{"dtype":"F32","shape":[1,0],"data_offsets":[0,0]}}',
        ),
      ],
    ]);
  });
});
