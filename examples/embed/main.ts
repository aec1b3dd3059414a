// The host page's own code: it owns the canvas and the controls; the library trains and samples.
import { readIdxImages, VAE } from 'webgpu-vae';

const status = document.querySelector<HTMLSpanElement>('#status')!;
const canvas = document.querySelector<HTMLCanvasElement>('#samples')!;
const query = new URLSearchParams(location.search);
const count = Number(query.get('images') ?? 2048); // a short run: 2048 images, 16 steps per epoch
const epochs = Number(query.get('epochs') ?? 2);

/** Paints n 28×28 images (floats in [0, 1]) as a square grid on the host's canvas. */
function draw(pixels: Float32Array, n: number): void {
  const side = Math.ceil(Math.sqrt(n));
  canvas.width = canvas.height = side * 28;
  const ctx = canvas.getContext('2d')!;
  const image = ctx.createImageData(canvas.width, canvas.height);
  for (let i = 0; i < n * 784; i++) {
    const k = Math.floor(i / 784);
    const x = (k % side) * 28 + (i % 28);
    const y = Math.floor(k / side) * 28 + Math.floor((i % 784) / 28);
    const v = Math.round(pixels[i] * 255);
    image.data.set([v, v, v, 255], (y * canvas.width + x) * 4);
  }
  ctx.putImageData(image, 0, 0);
}

async function main(): Promise<void> {
  const response = await fetch(query.get('data') ?? '/mnist/train-images-idx3-ubyte.gz');
  const { pixels } = await readIdxImages(await response.arrayBuffer());
  const vae = await VAE.create({ seed: 1 });
  const run = vae.fit(pixels.subarray(0, count * 784), {
    epochs,
    onStep: (s) => {
      status.textContent = `epoch ${s.epoch}, step ${s.step}: loss ${s.loss.toFixed(1)}`;
    },
    onEpoch: async () => draw(await vae.sample(16), 16), // samples while training goes on
  });
  document.querySelector('#stop')!.addEventListener('click', () => run.stop());
  const result = await run;
  draw(await vae.sample(16), 16);
  status.textContent =
    `${result.stopped ? 'stopped' : 'done'} after ${result.step} steps; ` +
    `last epoch's loss ${result.epochs.at(-1)?.trainLoss.toFixed(1)}`;
  vae.destroy();
  document.body.dataset.state = 'done';
}

main().catch((error: Error) => {
  status.textContent = `${error.name}: ${error.message}`;
  document.body.dataset.state = 'error';
});
