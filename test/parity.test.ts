/**
 * Parity with PyTorch: the engine's real training step (every dispatch of it), started from the
 * fixture's initial weights, reproduces what the reference program computed in PyTorch
 * (scripts/pytorch_parity.py) for three Adam steps on one batch: the ε its generator draws,
 * mu/logvar, logits, the loss, every gradient, the Adam moments and the updated weights.
 * Fixtures: aligned (784-16-4), odd (13-7-3) and deep (21-24-12-5, two encoder layers); conditional
 * (784-16-4 on 10 classes, MNIST digits with their labels) and conditional-odd (13-7-3 on 3 classes);
 * and the objective's variants: beta (β = 4 warmed up over 2 steps), gaussian (σ fixed at 0.1) and
 * gaussian-learned (σ per pixel as log_sigma, β = 0.5), each also checked on the objective; and
 * conditional-gaussian-learned, the options together (13-7-3 on 3 classes, σ learned, β = 2 warmed up over 2 steps).
 */
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { readSafetensors, type Tensor } from '../src/io/safetensors';
import { arenaLayout, type VaeSizes } from '../src/model/graph';
import { expectClose, f32, implementations, useHarness } from './gpu';

describe.each(implementations)('$name', (implementation) => {
  const gpu = useHarness(implementation);

  const report: string[] = [];
  afterAll(() =>
    console.log(`parity with PyTorch on ${implementation.name} (max abs error / largest |ref|):\n${report.join('\n')}`),
  );

  // Each fixture under both default plans: the software one (SwiftShader's tiles and quads) and the
  // hardware one (small register tiles, grid-stride Adam, 64 loss groups), which must be as right.
  const FIXTURES = [
    'aligned',
    'odd',
    'deep',
    'conditional',
    'conditional-odd',
    'beta',
    'gaussian',
    'gaussian-learned',
    'conditional-gaussian-learned',
  ];
  describe.each([
    ...FIXTURES.map((name) => [name, 'software'] as const),
    ...FIXTURES.map((name) => [name, 'hardware'] as const),
  ])('%s fixture, %s plan', (name, plan) => {
    const { tensors, metadata } = readSafetensors(readFileSync(`test/fixtures/parity/${name}.safetensors`));
    const t = (key: string) => {
      const v = tensors.get(key);
      if (!v) throw new Error(`fixture ${name} lacks ${key}`);
      return v.data as Float32Array;
    };
    const [B, D, L] = ['B', 'D', 'L'].map((k) => Number(metadata[k]));
    const hidden = (metadata.hidden ?? metadata.H).split(',').map(Number);
    const steps = Number(metadata.steps);
    // The conditional fixtures (a CVAE: fc1 reads [x ‖ onehot(y)], the decoder [z ‖ onehot(y)]).
    const classes = metadata.classes === undefined ? undefined : Number(metadata.classes);
    const labels = classes ? Array.from(t('labels_u8') as unknown as Uint8Array) : undefined;
    // The variants' metadata: likelihood, sigma ("learned" or a number), beta, kl_warmup.
    const likelihood: VaeSizes['likelihood'] =
      metadata.likelihood === 'gaussian'
        ? { kind: 'gaussian', sigma: metadata.sigma === 'learned' ? 'learned' : Number(metadata.sigma) }
        : undefined;
    const objective =
      metadata.beta === undefined ? {} : { beta: Number(metadata.beta), klWarmup: Number(metadata.kl_warmup) };
    const sizes: VaeSizes = { D, hidden, L, ...(classes ? { classes } : {}), ...(likelihood ? { likelihood } : {}) };
    const layout = arenaLayout(sizes);
    const toArena = (prefix: string) => {
      const arena = new Float32Array(layout.length);
      for (const p of layout.params) arena.set(t(prefix + p.name), p.offset);
      return arena;
    };
    const fromArena = (arena: Float32Array, p: (typeof layout.params)[number]) =>
      arena.subarray(p.offset, p.offset + p.length);
    /** Columns [from, from+width) of a (rows, cols) matrix. */
    const cols = (m: Float32Array, rows: number, stride: number, from: number, width: number) =>
      Float32Array.from({ length: rows * width }, (_, i) => m[Math.floor(i / width) * stride + from + (i % width)]);
    const scale = (ref: Float32Array) => ref.reduce((a, b) => Math.max(a, Math.abs(b)), 0);

    it(`reproduces ${steps} training steps`, async () => {
      const images = tensors.get('data_u8') as Tensor;
      const out = await gpu.trainSteps({
        sizes,
        labels,
        ...objective,
        batchSize: B,
        seed: Number(metadata.seed),
        lr: Number(metadata.lr),
        images: Buffer.from(images.data.buffer, images.data.byteOffset, images.data.byteLength).toString('base64'),
        count: B,
        params: Buffer.from(toArena('init.').buffer).toString('base64'),
        steps,
        sameBatch: true,
        plan,
      });
      expect(out).toHaveLength(steps);
      for (let s = 0; s < steps; s++) {
        const o = Object.fromEntries(
          Object.entries(out[s]).map(([k, v]) => [k, f32(new Uint8Array(Buffer.from(v, 'base64')))]),
        );
        const check = (what: string, gpuValues: Float32Array, ref: Float32Array, rtol: number, atolScale: number) => {
          const atol = atolScale * scale(ref);
          const e = expectClose(`${name} step ${s} ${what}`, gpuValues, ref, rtol, atol);
          report.push(
            `  ${name}/${plan} step ${s} ${what.padEnd(26)} ${(e.maxAbs / (scale(ref) || 1)).toExponential(2)}`,
          );
        };
        // ε: the same Philox words; float32 Box–Muller on the GPU vs float64 rounded to float32.
        check('eps', o.eps, t(`step${s}.eps`), 1e-5, 1e-6);
        check('mu', cols(o.mulv, B, 2 * L, 0, L), t(`step${s}.mu`), 2e-5, 2e-6);
        check('logvar', cols(o.mulv, B, 2 * L, L, L), t(`step${s}.logvar`), 2e-5, 2e-6);
        check('logits', o.logits.subarray(0, B * D), t(`step${s}.logits`), 2e-5, 2e-6);
        check('loss', o.loss.subarray(0, 1), t(`step${s}.loss`), 1e-5, 0);
        if (tensors.has(`step${s}.objective`))
          check('objective', o.objective.subarray(0, 1), t(`step${s}.objective`), 1e-5, 0);
        else expect(o.objective, "the reference model's objective has no objective ring").toBeUndefined();
        for (const p of layout.params) {
          // Gradients are sums over the batch of products of forward values; cancellation
          // makes small entries relatively noisy, hence an absolute floor at 1e-5 of the largest.
          check(`grad ${p.name}`, fromArena(o.grads, p), t(`step${s}.grad.${p.name}`), 1e-4, 1e-5);
          check(`adam m ${p.name}`, fromArena(o.m, p), t(`step${s}.adam_m.${p.name}`), 1e-4, 1e-5);
          check(`adam v ${p.name}`, fromArena(o.v, p), t(`step${s}.adam_v.${p.name}`), 1e-4, 1e-5);
          check(`param ${p.name}`, fromArena(o.params, p), t(`step${s}.param.${p.name}`), 1e-5, 1e-6);
        }
        expect(Array.from(new Uint32Array(o.state.buffer, 0, 2)), 'state (t, batch) after the step').toEqual([
          s + 1,
          1,
        ]);
      }
    });
  });
});
