/**
 * A separate process for test/node-webgpu.test.ts: asks src/node/webgpu.ts for Dawn's GPU on the
 * driver named in argv[2] (or by the environment) and prints what it got as JSON, or the error
 * on stderr with exit status 1.
 */
import { Gpu } from '../../src/gpu/device';
import { nodeWebGpu } from '../../src/node/webgpu';

try {
  const found = await nodeWebGpu(process.argv[2]);
  const gpu = await Gpu.create({ gpu: found.gpu });
  console.log(
    JSON.stringify({
      driver: found.driver,
      icd: found.icd,
      adapter: found.adapter,
      engineAdapter: gpu.adapter?.description,
      software: gpu.software,
      environmentAfter: process.env.VK_ICD_FILENAMES ?? null,
    }),
  );
  gpu.destroy();
  gpu.device.destroy();
} catch (e) {
  console.error(`${(e as Error).name}: ${(e as Error).message}`);
  process.exitCode = 1;
}
