/**
 * The library's create → train → destroy cycle, repeated in one page for `npm run soak -- --cycles N`.
 * Every `every` cycles the page waits while Node samples memory (`window.soakSample`).
 */
import { readIdxImages, VAE } from '../src/index';

export interface CycleSample {
  cycle: number;
  /** GPU buffers of the last cycle's model right after destroy() (must be 0). */
  liveBuffersAfterDestroy: number;
  /** Its buffers while it was alive. */
  liveBuffersAlive: number;
  lastLoss: number;
  msPerCycle: number;
}

declare global {
  interface Window {
    soakCycles(cycles: number, every: number, images: number): Promise<void>;
    soakSample(sample: CycleSample): Promise<void>;
  }
}

window.soakCycles = async (cycles, every, count) => {
  const bytes = await (await fetch('/mnist/t10k-images-idx3-ubyte.gz')).arrayBuffer();
  const images = (await readIdxImages(bytes, 't10k-images-idx3-ubyte')).pixels.slice(0, count * 784);
  let started = performance.now();
  let sampled = 0; // the cycle of the last sample
  for (let cycle = 1; cycle <= cycles; cycle++) {
    // Its own device each time, as an embedding page that makes and drops models would.
    const vae = await VAE.create({ seed: cycle });
    const fit = await vae.fit(images, { epochs: 1 });
    await vae.sample(8); // and a read-back of samples
    const alive = vae.liveBuffers;
    vae.destroy();
    if (cycle % every === 0 || cycle === 1) {
      await window.soakSample({
        cycle,
        liveBuffersAfterDestroy: vae.liveBuffers,
        liveBuffersAlive: alive,
        lastLoss: fit.epochs[0].trainLoss,
        msPerCycle: (performance.now() - started) / (cycle - sampled),
      });
      started = performance.now();
      sampled = cycle;
    }
  }
};
