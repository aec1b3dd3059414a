// The library in a plain Node script, on Dawn's WebGPU (npm install webgpu-vae webgpu):
//
//   node examples/node-fit.mjs                      (Mesa's lavapipe)
//   DRIVER=swiftshader node examples/node-fit.mjs   (the SwiftShader Chromium ships)
//
// Build the library first (npm run build:lib). Fits a small model on synthetic images for two
// epochs and prints its test loss.
import { create, globals } from 'webgpu';
import { VAE } from 'webgpu-vae';

// Dawn finds its Vulkan driver through the loader's VK_ICD_FILENAMES when it first looks for an
// adapter; a file set by the caller is kept.
const icds = {
  lavapipe: '/usr/share/vulkan/icd.d/lvp_icd.json',
  swiftshader: '/usr/lib/chromium/vk_swiftshader_icd.json',
};
process.env.VK_ICD_FILENAMES ??= icds[process.env.DRIVER ?? 'lavapipe'];
Object.assign(globalThis, globals); // GPUBufferUsage, GPUShaderStage, … as in a page

// Synthetic 16 × 16 images: a bright square at a place drawn from a fixed-seed generator.
const side = 16;
let state = 12345;
const next = () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32;
function images(count) {
  const bytes = new Uint8Array(count * side * side);
  for (let i = 0; i < count; i++) {
    const x0 = Math.floor(next() * 10),
      y0 = Math.floor(next() * 10);
    for (let y = y0; y < y0 + 6; y++) for (let x = x0; x < x0 + 6; x++) bytes[i * side * side + y * side + x] = 255;
  }
  return bytes;
}
const train = images(1024);
const test = images(256);

const gpu = create([]);
const adapter = await gpu.requestAdapter();
console.log(`adapter: ${adapter?.info.description || 'none'}`);
const vae = await VAE.create({ gpu, inputSize: side * side, hiddenSize: 64, latentSize: 4, seed: 1 });
try {
  await vae.fit(train, {
    epochs: 2,
    batchSize: 64,
    onEpoch: ({ epoch, trainLoss }) => console.log(`epoch ${epoch}: average loss ${trainLoss.toFixed(4)}`),
  });
  console.log(`Test set loss: ${(await vae.evaluate(test)).toFixed(4)}`);
} finally {
  vae.destroy();
}
