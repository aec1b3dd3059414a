import { Gpu } from '../../src/gpu/device';
import { uploadImages, VaeModel } from '../../src/model/vae';
(window as any).exp = async () => {
  const device = (await Gpu.create()).device;
  const out: string[] = [];
  const make = async (g: Gpu, B: number, n: number) => {
    const t0 = performance.now();
    const img = uploadImages(g, 'x', new Uint8Array(n * 784), n);
    const m = await VaeModel.create(g, { sizes: { D: 784, H: 400, L: 20 }, batchSize: B, seed: 1, adam: { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8 } }, img, img);
    await device.queue.onSubmittedWorkDone();
    return [m, performance.now() - t0] as const;
  };
  const g1 = await Gpu.create({ device });
  const [, a] = await make(g1, 128, 300); out.push(`cold ${a.toFixed(0)} ms`);
  const [, b] = await make(g1, 128, 300); out.push(`same gpu ${b.toFixed(0)} ms`);
  const g2 = await Gpu.create({ device });
  const [, c] = await make(g2, 128, 300); out.push(`new gpu, old alive ${c.toFixed(0)} ms`);
  g1.destroy(); g2.destroy();
  const g3 = await Gpu.create({ device });
  const [, d] = await make(g3, 64, 300); out.push(`new gpu, B=64 ${d.toFixed(0)} ms pipelines ${g3.pipelineCount}`);
  return out.join('\n');
};
