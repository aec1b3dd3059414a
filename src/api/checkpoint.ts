/**
 * Checkpoints as the library reads and writes them, over src/model/checkpoint.ts: a file that
 * is not a checkpoint of this model becomes a `checkpoint` VaeError, entries a caller adds
 * to the metadata may not take a key the engine reads back as the model's own settings, and
 * β and the KL warm-up are written only when they are not the reference model's.
 */
import {
  checkpointSizes,
  decodeCheckpoint,
  engineKeyIn,
  ENGINE_METADATA_KEYS,
  readRunMetadata,
  type CheckpointData,
} from '../model/checkpoint';
import type { ArenaLayout, VaeSizes } from '../model/graph';
import { DEFAULT_OBJECTIVE } from '../model/settings';
import { fromEngineError, VaeError } from './errors';

/** The bytes of a checkpoint the caller passed (an `invalid-input` VaeError for anything else). */
export function checkpointBytes(checkpoint: unknown): Uint8Array {
  if (checkpoint instanceof Uint8Array) return checkpoint;
  if (checkpoint instanceof ArrayBuffer) return new Uint8Array(checkpoint);
  throw new VaeError('invalid-input', 'a checkpoint must be a Uint8Array or ArrayBuffer of safetensors bytes');
}

/** The model sizes a checkpoint's tensors imply, as a `checkpoint` VaeError when it is not a VAE's. */
export function sizesOf(bytes: Uint8Array): { sizes: VaeSizes; metadata: Record<string, string> } {
  try {
    return checkpointSizes(bytes);
  } catch (error) {
    throw fromEngineError(error, 'VAE.load');
  }
}

/** A checkpoint's run metadata, as a `checkpoint` VaeError when it is malformed. */
export function runMetadataOf(metadata: Record<string, string>, context: string) {
  try {
    return readRunMetadata(metadata);
  } catch (error) {
    throw new VaeError('checkpoint', `${context}: ${(error as Error).message}`, { cause: error });
  }
}

/** `SaveOptions.metadata`, checked: string values, and no key the engine writes or reads back. */
export function userMetadata(metadata: Record<string, string> | undefined): Record<string, string> {
  const extra = metadata ?? {};
  for (const [key, value] of Object.entries(extra)) {
    if (typeof value !== 'string')
      throw new VaeError('invalid-option', `metadata["${key}"] must be a string, got ${typeof value}`);
  }
  const taken = engineKeyIn(extra);
  if (taken) {
    throw new VaeError(
      'invalid-option',
      `metadata["${taken}"]: "${taken}" is one of the engine's own checkpoint keys ` +
        `(${ENGINE_METADATA_KEYS.join(', ')}), which VAE.load reads as the model's settings; store your entry under another name`,
    );
  }
  return extra;
}

/**
 * A checkpoint for a model of `layout`, checked whole before anything is loaded: its tensors, its
 * run metadata, and the objective it trained with (1 and 0 when it records none). A file that
 * does not fit is a `checkpoint` VaeError that says the model is unchanged.
 */
export function readCheckpoint(bytes: Uint8Array, layout: ArenaLayout) {
  let data: CheckpointData;
  let run: ReturnType<typeof readRunMetadata>;
  try {
    data = decodeCheckpoint(bytes, layout);
    run = readRunMetadata(data.metadata);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new VaeError('checkpoint', `${message} (nothing was loaded: the model is unchanged)`, { cause: error });
  }
  const objective = { beta: run.beta ?? DEFAULT_OBJECTIVE.beta, klWarmup: run.klWarmup ?? DEFAULT_OBJECTIVE.klWarmup };
  return { data, epoch: run.epoch, objective };
}

/** β and the warm-up to record in a checkpoint: none when both are the reference model's (1 and 0). */
export function objectiveToSave(objective: { beta: number; klWarmup: number }): {
  beta?: number;
  klWarmup?: number;
} {
  return objective.beta !== DEFAULT_OBJECTIVE.beta || objective.klWarmup !== DEFAULT_OBJECTIVE.klWarmup
    ? objective
    : {};
}
