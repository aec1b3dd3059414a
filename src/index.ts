/**
 * webgpu-vae: the PyTorch-examples MNIST variational autoencoder, trained and run on the GPU
 * through WebGPU with hand-written WGSL kernels.
 *
 * ```ts
 * import { VAE } from 'webgpu-vae';
 * const vae = await VAE.create({ seed: 1 });               // 784-400-20, PyTorch's init
 * await vae.fit(trainPixels, { epochs: 1, onStep: (s) => console.log(s.step, s.loss) });
 * const images = await vae.sample(16);                       // 16 × 784 floats in [0, 1]
 * const checkpoint = await vae.save();                       // safetensors, PyTorch names
 * vae.destroy();
 * ```
 *
 * @packageDocumentation
 */
export { VAE } from './api/vae';
export type {
  EvaluateOptions,
  LabelOptions,
  LoadOptions,
  LogLikelihoodOptions,
  SaveOptions,
  VAEOptions,
} from './api/options';
export type { EpochEvent, FitOptions, FitResult, StepEvent, TrainingRun, TrainingState } from './api/training';
export type { ImageArray, LatentArray } from './api/inputs';
export { VaeError } from './api/errors';
export type { VaeErrorCode } from './api/errors';
export type { Likelihood } from './model/graph';
export { readIdxImages, readIdxLabels } from './api/data';
export type { IdxImageSet } from './api/data';
