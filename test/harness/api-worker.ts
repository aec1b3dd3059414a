/**
 * The library in a dedicated Worker (test/api.test.ts): no window, no document — only what a
 * Worker has. Trains two steps, samples, destroys, and posts a summary.
 */
import { readIdxImages, VAE } from '../../src/index';

async function main(): Promise<Record<string, unknown>> {
  const bytes = await (await fetch('/mnist/t10k-images-idx3-ubyte.gz')).arrayBuffer();
  const { pixels } = await readIdxImages(bytes, 't10k-images-idx3-ubyte.gz');
  const vae = await VAE.create({ inputSize: 784, hiddenSize: 32, latentSize: 4, seed: 3 });
  let loss = NaN;
  await vae.fit(pixels.subarray(0, 128 * 784), {
    batchSize: 64,
    onStep: (s) => {
      loss = s.loss;
    },
  });
  const samples = await vae.sample(2);
  const step = vae.step;
  vae.destroy();
  return { ok: true, step, loss, samples: samples.length, liveAfterDestroy: vae.liveBuffers };
}

main().then(
  (summary) => postMessage(summary),
  (error: Error) => postMessage({ ok: false, error: `${error.name}: ${error.message}` }),
);
