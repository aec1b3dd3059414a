/**
 * The built library in a plain Node process, as a user runs it: `npm run build:lib`, then
 * examples/node-fit.mjs (which imports 'webgpu-vae' and Dawn's 'webgpu') on each Vulkan driver,
 * checked by its exit status and the test loss it prints. Also what Node without a WebGPU
 * entry point says.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

const node = (args: string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 240_000, env: { ...process.env, ...env } });

describe('the library in Node', () => {
  it('builds', () => {
    const r = spawnSync('npm', ['run', 'build:lib'], { encoding: 'utf8', timeout: 240_000 });
    expect(r.status, r.stderr).toBe(0);
  }, 300_000);

  const losses: Record<string, number> = {};
  for (const driver of ['swiftshader', 'lavapipe']) {
    it(`examples/node-fit.mjs fits and evaluates a model on ${driver}`, () => {
      const r = node(['examples/node-fit.mjs'], { DRIVER: driver });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toMatch(driver === 'lavapipe' ? /^adapter: llvmpipe/ : /^adapter: SwiftShader/);
      const epochs = [...r.stdout.matchAll(/average loss ([\d.]+)/g)].map((m) => Number(m[1]));
      const test = Number(/^Test set loss: ([\d.]+)$/m.exec(r.stdout)?.[1]);
      expect(epochs).toHaveLength(2);
      // Learning: 16 × 16 Bernoulli pixels cost 256·ln 2 ≈ 177 nats at chance; a fitted model far less.
      expect(epochs[1]).toBeLessThan(epochs[0]);
      expect(test).toBeGreaterThan(50);
      expect(test).toBeLessThan(140);
      losses[driver] = test;
    }, 300_000);
  }

  it('gives the same test loss on both drivers, within a thousandth', () => {
    // Two compilers with their own float paths: close, not necessarily bit for bit.
    expect(Math.abs(losses.lavapipe - losses.swiftshader)).toBeLessThan(1e-3 * losses.swiftshader);
  });

  it('without a WebGPU entry point, rejects with a gpu VaeError that shows the Node set-up', () => {
    const script = `import { VAE } from 'webgpu-vae';
      try { await VAE.create(); console.log('created'); }
      catch (e) { console.log(e.name, e.code, e.message); process.exit(3); }`;
    const r = node(['--input-type=module', '-e', script]);
    expect(r.status, r.stderr).toBe(3);
    expect(r.stdout).toMatch(/^VaeError gpu .*this is Node.*import \{ create, globals \} from 'webgpu'/);
  }, 120_000);
});
