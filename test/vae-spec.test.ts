/**
 * scripts/vae_spec.py, the PyTorch module of a model spec, checked from outside under /usr/bin/python3
 * (PyTorch 1.13): scripts/check_vae_spec.py compares its presets with the modules written out by hand
 * there, its mlp with the reference model, its LeakyReLU spec with hand-built nn.Sequentials, and its
 * errors with what they must name. Here too: its copies of the engine's bounds, and a spec model
 * exported by scripts/export_checkpoint.py as the engine's safetensors reader sees it.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readSafetensors } from '../src/io/safetensors';
import { CLASSES_MAX, CLASSES_MIN, DEFAULT_SIGMA, SETTING_RANGES, SIGMA_RANGE } from '../src/model/settings';
import { python, tempDir } from './cli';

const CHECKS = ['conv', 'conv-bn', 'mlp', 'leaky', 'shapes', 'errors', 'control', 'export'];

describe('scripts/vae_spec.py', () => {
  it('builds the presets, the mlp and a LeakyReLU spec as the hand-written modules, and refuses bad specs naming the layer', () => {
    const r = python(['scripts/check_vae_spec.py']);
    expect(r.stdout).not.toMatch(/^FAIL/m);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    // Every check ran and passed: a check that is skipped or crashes before printing fails here.
    expect(r.stdout.trimEnd().split('\n')).toEqual(CHECKS.map((name) => `ok ${name}`));
  });

  it("holds the engine's bounds: latent, classes, the Gaussian's σ range and default", () => {
    const r = python(['scripts/check_vae_spec.py', '--constants']);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      LATENT_RANGE: [...SETTING_RANGES.latent],
      CLASSES_RANGE: [CLASSES_MIN, CLASSES_MAX],
      SIGMA_RANGE: [...SIGMA_RANGE],
      DEFAULT_SIGMA,
    });
  });

  it('export_checkpoint.py writes a conv-bn model with its spec under metadata "model", PyTorch\'s names, dtypes and shapes', () => {
    const dir = tempDir('spec');
    const made = python([
      '-c',
      [
        'import json, sys, torch',
        'sys.path.insert(0, "scripts")',
        'import vae_spec',
        'torch.manual_seed(0)',
        'model = vae_spec.preset("conv-bn", (3, 8, 12), 5, classes=2)',
        'opt = torch.optim.Adam(model.parameters(), lr=1e-3)',
        'x, y = torch.rand(4, 3, 8, 12), torch.tensor([0, 1, 1, 0])',
        'out, mu, logvar = model(x, y=y)',
        'sum(model.loss_terms(out, x, mu, logvar)).backward()',
        'opt.step()',
        'torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 1}, sys.argv[1] + "/m.pt")',
        'print(json.dumps({"spec": vae_spec.spec_of("conv-bn", (3, 8, 12), 5, 2), "state": {n: list(t.shape) for n, t in ' +
          'model.state_dict().items()}, "params": [n for n, _ in model.named_parameters()]}))',
      ].join('\n'),
      dir,
    ]);
    expect(made.status, made.stderr).toBe(0);
    const torchHas = JSON.parse(made.stdout) as { spec: unknown; state: Record<string, number[]>; params: string[] };
    const out = join(dir, 'm.safetensors');
    const r = python([
      'scripts/export_checkpoint.py',
      join(dir, 'm.pt'),
      out,
      '--model',
      'conv-bn',
      '--input-shape',
      '3,8,12',
    ]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/wrote .*: spec 3x8x12-5 \(2 classes\), step 1, epoch 1, with Adam state/);

    const { tensors, metadata } = readSafetensors(readFileSync(out));
    expect(JSON.parse(metadata.model!)).toEqual(torchHas.spec);
    expect(metadata.model).toBe(JSON.stringify(torchHas.spec)); // compact JSON
    expect([metadata.format, metadata.step, metadata.epoch]).toEqual(['webgpu-vae/1', '1', '1']);
    // The mlp's sizes are not a spec model's: the spec is the one source.
    for (const key of ['input_dim', 'hidden_dim', 'latent_dim', 'classes', 'likelihood', 'sigma']) {
      expect(metadata[key], key).toBeUndefined();
    }
    const adam = torchHas.params.flatMap((n) => [`optimizer.exp_avg.${n}`, `optimizer.exp_avg_sq.${n}`]);
    expect([...tensors.keys()].sort()).toEqual([...Object.keys(torchHas.state), ...adam].sort());
    expect(torchHas.params).toContain('encoder.1.weight'); // BatchNorm2d's affine weight is a parameter
    expect(torchHas.params).not.toContain('encoder.1.running_mean'); // its statistics are not
    for (const [name, shape] of Object.entries(torchHas.state)) {
      const t = tensors.get(name)!;
      expect([t.dtype, t.shape], name).toEqual([name.endsWith('num_batches_tracked') ? 'I64' : 'F32', shape]);
    }
    expect(tensors.get('encoder.7.weight')!.shape).toEqual([256, 64 * 2 * 3 + 2]); // [flatten ‖ onehot(y)]

    // load_checkpoint.py builds it from the metadata and loads it strictly.
    const loaded = python(['scripts/load_checkpoint.py', out, '--images', join(dir, 'none'), '--seeds', '0']);
    expect(loaded.stdout).toMatch(/checkpoint: .*\(spec 3x8x12-5 \(2 classes\), step 1, epoch 1/);
    expect(loaded.stdout).toMatch(/Adam state: exp_avg and exp_avg_sq for 24 tensors, step 1/);
    expect([loaded.status, loaded.stderr]).toEqual([
      2,
      expect.stringMatching(/^load_checkpoint\.py: the test images: /),
    ]);
  });

  it('a spec that does not chain is refused by both scripts with the layer named, in one line', () => {
    const dir = tempDir('spec');
    const spec = {
      input: [1, 28, 28],
      latent: 20,
      encoder: [['Flatten'], ['Linear', 784, 512], ['LeakyReLU', 0.2], ['Linear', 500, 256], ['LeakyReLU', 0.2]],
      decoder: [
        ['Linear', 20, 256],
        ['LeakyReLU', 0.2],
        ['Linear', 256, 784],
      ],
      likelihood: 'bernoulli',
    };
    writeFileSync(join(dir, 'spec.json'), JSON.stringify(spec));
    const made = python([
      '-c',
      'import sys, torch; torch.save({"fc_mu.weight": torch.zeros(20, 256)}, sys.argv[1])',
      join(dir, 'm.pt'),
    ]);
    expect(made.status, made.stderr).toBe(0);
    const message = /model spec: encoder layer 3 \(Linear\): in_features is 500, but its input is \[512\]\n$/;
    const exported = python([
      'scripts/export_checkpoint.py',
      join(dir, 'm.pt'),
      join(dir, 'out'),
      '--model',
      join(dir, 'spec.json'),
    ]);
    expect([exported.status, exported.stderr]).toEqual([2, expect.stringMatching(message)]);
    expect(exported.stderr).toMatch(/^export_checkpoint\.py: [^\n]*\n$/);

    // A checkpoint whose metadata "model" does not chain: the same words from load_checkpoint.py.
    const header = JSON.stringify({ __metadata__: { format: 'webgpu-vae/1', model: JSON.stringify(spec) } });
    const bytes = Buffer.concat([Buffer.alloc(8), Buffer.from(header)]);
    bytes.writeBigUInt64LE(BigInt(header.length));
    writeFileSync(join(dir, 'bad.safetensors'), bytes);
    const loaded = python(['scripts/load_checkpoint.py', join(dir, 'bad.safetensors')]);
    expect([loaded.status, loaded.stderr]).toEqual([2, expect.stringMatching(message)]);
    expect(loaded.stderr).toMatch(/^load_checkpoint\.py: [^\n]*\n$/);
  });

  it('train_torch.py trains the conv preset as the reference model trains, and its model exports and loads', () => {
    const dir = tempDir('spec');
    const run = (out: string) =>
      python(['scripts/train_torch.py', '--model', 'conv', '--epochs', '2', '--limit', '256', '--out', out]);
    const r = run(dir);
    expect(r.status, r.stderr).toBe(0);
    const tests = [...r.stdout.matchAll(/====> Test set loss: (\d+\.\d{4})\n/g)].map((m) => Number(m[1]));
    expect(r.stdout).toMatch(/^spec 1x28x28-20, 1691369 parameters/);
    expect(r.stdout).toMatch(/====> Epoch: 2 Average loss: \d+\.\d{4}/);
    expect(tests).toHaveLength(2);
    expect(tests[1]).toBeLessThan(tests[0]!);
    const png = readFileSync(join(dir, 'samples.png'));
    expect(png.subarray(1, 4).toString()).toBe('PNG');

    // A second run into the same folder is refused and leaves the first one's files as they were.
    const again = run(dir);
    expect([again.status, again.stderr]).toEqual([2, expect.stringMatching(/already holds a run: pass another --out/)]);
    expect(readFileSync(join(dir, 'samples.png')).equals(png)).toBe(true);

    const out = join(dir, 'm.safetensors');
    const exported = python([
      'scripts/export_checkpoint.py',
      join(dir, 'model.pt'),
      out,
      '--model',
      'conv',
      '--input-shape',
      '1,28,28',
    ]);
    expect(exported.status, exported.stderr).toBe(0);
    const loaded = python(['scripts/load_checkpoint.py', out, '--limit', '256']);
    expect(loaded.status, loaded.stderr).toBe(0);
    expect(loaded.stdout).toMatch(/load_state_dict\(strict=True\): 1691369 parameters matched/);
    // The same weights on the same images: the sampled losses differ only by their noise.
    const mean = Number(/spread over seeds: [\d.]+ \(mean (\d+\.\d+)\)/.exec(loaded.stdout)![1]);
    expect(Math.abs(mean - tests[1]!)).toBeLessThan(3);
  });
});
