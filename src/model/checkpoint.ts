/**
 * Checkpoints as safetensors with PyTorch's parameter names and shapes, so
 * `model.load_state_dict(load_file(path))`-style loading works for the reference model
 * (optimizer tensors are under `optimizer.` and are ignored there with strict=False). The
 * Adam moments and the step count travel too, so a run resumes exactly.
 */
import { readSafetensors, writeSafetensors, SafetensorsError, type Tensor } from '../io/safetensors';
import { impliedSizes, sameSizes, sizesName, type ArenaLayout, type VaeSizes } from './graph';

export const CHECKPOINT_FORMAT = 'webgpu-vae/1';

export interface CheckpointData {
  sizes: VaeSizes;
  /** Arena-layout floats. */
  params: Float32Array;
  m?: Float32Array;
  v?: Float32Array;
  /** Adam steps taken. */
  step: number;
  metadata: Record<string, string>;
}

export function encodeCheckpoint(layout: ArenaLayout, data: Omit<CheckpointData, 'sizes'>): Uint8Array {
  const tensors: Record<string, Tensor> = {};
  const put = (prefix: string, arena: Float32Array) => {
    for (const p of layout.params) {
      tensors[prefix + p.name] = { dtype: 'F32', shape: p.shape, data: arena.slice(p.offset, p.offset + p.length) };
    }
  };
  put('', data.params);
  if (data.m && data.v) {
    put('optimizer.exp_avg.', data.m);
    put('optimizer.exp_avg_sq.', data.v);
  }
  const { D, hidden, L } = layout.sizes;
  return writeSafetensors(tensors, {
    ...data.metadata,
    format: CHECKPOINT_FORMAT,
    input_dim: String(D), hidden_dim: hidden.join(','), latent_dim: String(L),
    step: String(data.step),
  });
}

/** The sizes a VAE state_dict's names and shapes imply (see impliedSizes in ./graph). */
function sizesOf(tensors: Map<string, Tensor>): VaeSizes {
  const sizes = impliedSizes(new Map([...tensors].map(([name, t]) => [name, t.shape])));
  if (!sizes) {
    throw new SafetensorsError(
      'this safetensors file is not a VAE checkpoint: it needs 2-D tensors fc1.weight … fcN.weight, then the heads ' +
        'fc(N+1)1.weight and fc(N+1)2.weight (fc1, fc21 and fc22 for the PyTorch example)',
    );
  }
  return sizes;
}

/** A checkpoint file's model sizes and metadata, to make a model that can load it; throws SafetensorsError. */
export function checkpointSizes(bytes: Uint8Array): { sizes: VaeSizes; metadata: Record<string, string> } {
  const { tensors, metadata } = readSafetensors(bytes);
  return { sizes: sizesOf(tensors), metadata };
}

/**
 * Reads a checkpoint for a model laid out as `layout`. Everything is checked before anything
 * is returned, so a bad file never leaves a model half-loaded.
 */
export function decodeCheckpoint(bytes: Uint8Array, layout: ArenaLayout): CheckpointData {
  const { tensors, metadata } = readSafetensors(bytes);
  const found = sizesOf(tensors);
  if (!sameSizes(found, layout.sizes)) {
    throw new SafetensorsError(
      `checkpoint is for a ${sizesName(found)} model, this model is ${sizesName(layout.sizes)}: ` +
        'create the model with the checkpoint\'s sizes (input, hidden, latent) to load it',
    );
  }
  const gather = (prefix: string, required: boolean): Float32Array | undefined => {
    const arena = new Float32Array(layout.length);
    for (const p of layout.params) {
      const t = tensors.get(prefix + p.name);
      if (!t) {
        if (required) throw new SafetensorsError(`checkpoint is missing tensor "${prefix + p.name}"`);
        return undefined;
      }
      if (t.dtype !== 'F32') throw new SafetensorsError(`checkpoint tensor "${prefix + p.name}" is ${t.dtype}, expected F32`);
      if (t.shape.join() !== p.shape.join()) {
        throw new SafetensorsError(`checkpoint tensor "${prefix + p.name}" has shape [${t.shape}], expected [${p.shape}]`);
      }
      const values = t.data as Float32Array;
      for (const x of values) {
        if (!Number.isFinite(x)) throw new SafetensorsError(`checkpoint tensor "${prefix + p.name}" holds a non-finite value`);
      }
      arena.set(values, p.offset);
    }
    return arena;
  };
  const params = gather('', true)!;
  const m = gather('optimizer.exp_avg.', false);
  const v = m && gather('optimizer.exp_avg_sq.', true);
  const step = metadata.step === undefined ? 0 : Number(metadata.step);
  if (!Number.isSafeInteger(step) || step < 0) throw new SafetensorsError(`checkpoint metadata step "${metadata.step}" is not a step count`);
  return { sizes: layout.sizes, params, m, v, step, metadata };
}
