/**
 * Dawn in Node on a chosen Vulkan driver (src/node/webgpu.ts), observed from outside: each case
 * is a separate Node process (test/node/webgpu-probe.ts) with its own environment, and the test
 * reads its exit status, its output and its error.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const PROBE = join(import.meta.dirname, 'node', 'webgpu-probe.ts');
const TSX = join(import.meta.dirname, '..', 'node_modules', '.bin', 'tsx');

/** The probe with the Vulkan and driver variables of this process removed, then `env` added. */
function probe(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ status: number; stdout: string; stderr: string }> {
  const base = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !/^VK_|^WEBGPU_VAE_ADAPTER$/.test(name)),
  ) as Record<string, string>;
  return new Promise((resolve) => {
    execFile(TSX, [PROBE, ...args], { env: { ...base, ...env }, timeout: 120_000 }, (error, stdout, stderr) => {
      resolve({ status: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr });
    });
  });
}

const scratch = mkdtempSync(join(tmpdir(), 'webgpu-vae-icd-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('Dawn in Node on a chosen Vulkan driver', () => {
  it.each([
    ['swiftshader', /SwiftShader/],
    ['lavapipe', /llvmpipe: Mesa/],
  ])('%s by argument: the engine gets that adapter, and the environment is restored', async (driver, name) => {
    const r = await probe([driver]);
    expect(r.stderr.replace(/^Warning: .*artificially reduced.*\n/gm, ''), r.stderr).toBe('');
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ driver, software: true, environmentAfter: null });
    expect(out.adapter).toMatch(name);
    expect(out.engineAdapter).toMatch(name);
    console.log(`${driver}: ${out.adapter} (${out.icd})`);
  });

  it('takes the driver from WEBGPU_VAE_ADAPTER', async () => {
    const r = await probe([], { WEBGPU_VAE_ADAPTER: 'swiftshader' });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).adapter).toMatch(/SwiftShader/);
  });

  it('refuses a driver it does not know, naming the ones it does', async () => {
    const r = await probe([], { WEBGPU_VAE_ADAPTER: 'metal' });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(
      '$WEBGPU_VAE_ADAPTER is "metal"; the Node runtime\'s Vulkan drivers are swiftshader and lavapipe.',
    );
  });

  it('with VK_ICD_FILENAMES at a missing file: lists the file, the environment and the apt commands', async () => {
    const r = await probe(['lavapipe'], { VK_ICD_FILENAMES: '/nonexistent/lvp_icd.json' });
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('NodeWebGpuError: No WebGPU adapter on the lavapipe Vulkan driver.');
    expect(r.stderr).toContain('Looked at: /nonexistent/lvp_icd.json (missing).');
    expect(r.stderr).toContain("the process's own environment had VK_ICD_FILENAMES=/nonexistent/lvp_icd.json");
    expect(r.stderr).toContain('sudo apt-get install -t bookworm-backports mesa-vulkan-drivers libvulkan1');
    expect(r.stderr).toContain('WEBGPU_VAE_ADAPTER=swiftshader');
  });

  it('with an ICD file whose driver library is missing: "no adapter", and the SwiftShader commands', async () => {
    const icd = join(scratch, 'broken_icd.json');
    writeFileSync(
      icd,
      JSON.stringify({
        file_format_version: '1.0.0',
        ICD: { library_path: join(scratch, 'libmissing.so'), api_version: '1.0.5' },
      }),
    );
    const r = await probe(['swiftshader'], { VK_DRIVER_FILES: icd });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`Looked at: ${icd} (no adapter).`);
    expect(r.stderr).toContain(`VK_DRIVER_FILES=${icd}`);
    expect(r.stderr).toContain('sudo apt-get install chromium libvulkan1');
  });

  it("with the other driver's ICD file: says which adapter it got instead", async () => {
    const r = await probe(['lavapipe'], { VK_ICD_FILENAMES: '/usr/lib/chromium/vk_swiftshader_icd.json' });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      /vk_swiftshader_icd\.json \(gave another driver's adapter, google swiftshader SwiftShader driver/,
    );
  });
});
