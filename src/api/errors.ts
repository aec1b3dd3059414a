/**
 * The one error type the library API throws, so a caller can branch on `code` instead of
 * parsing messages. Engine errors (the GPU runtime's, the safetensors reader's) are wrapped,
 * with the original kept as `cause`.
 */
import { GpuError } from '../gpu/device';
import { SafetensorsError } from '../io/safetensors';
import { ResumeError } from '../model/resume';

/**
 * What went wrong, for programs:
 * - `invalid-input`: an array of the wrong length, type or value range;
 * - `invalid-option`: an option out of range (sizes, epochs, learning rate …);
 * - `checkpoint`: a file that is not a checkpoint of this model (nothing was loaded);
 * - `destroyed`: the model was destroyed;
 * - `device-lost`: the GPU device is gone — create a model on a new device and load a checkpoint;
 * - `busy`: `fit()` is running (or paused) and the call would change what it trains;
 * - `gpu`: WebGPU is missing, lacks a limit the engine needs, or reported an error.
 */
export type VaeErrorCode =
  'invalid-input' | 'invalid-option' | 'checkpoint' | 'destroyed' | 'device-lost' | 'busy' | 'gpu';

/** Every error the library API throws or rejects with (except an `AbortSignal`'s own reason). */
export class VaeError extends Error {
  /** See {@link VaeErrorCode}. */
  readonly code: VaeErrorCode;

  /** @param message says what was wrong and what to do about it. */
  constructor(code: VaeErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'VaeError';
    this.code = code;
  }
}

/**
 * The engine's own errors (the GPU runtime's, the safetensors reader's) as VaeErrors with the
 * matching code and `context` in front; anything else (a VaeError, an exception thrown by a
 * caller's callback, an abort reason) is returned as it is.
 */
export function fromEngineError(error: unknown, context: string): unknown {
  if (error instanceof GpuError) {
    return new VaeError(error.kind === 'lost' ? 'device-lost' : 'gpu', `${context}: ${error.message}`, {
      cause: error,
    });
  }
  if (error instanceof SafetensorsError || error instanceof ResumeError)
    return new VaeError('checkpoint', `${context}: ${error.message}`, { cause: error });
  return error;
}

/**
 * The error the caller of a model's method (`context`, as 'VAE.fit') should see: destruction and
 * device loss explain whatever failed after them, and engine errors become VaeErrors that name
 * the method.
 */
export function explainError(
  error: unknown,
  context: string,
  model: { destroyed: boolean; lost: VaeError | null },
): unknown {
  const failed = !(error instanceof VaeError) || error.code === 'gpu' || error.code === 'device-lost';
  if (failed && model.destroyed)
    return new VaeError('destroyed', `${context}: the model was destroyed while this call ran`, { cause: error });
  if (failed && model.lost) return new VaeError('device-lost', `${context}: ${model.lost.message}`, { cause: error });
  const e = fromEngineError(error, context);
  // Checks deep inside do not know which method they serve: name it in front.
  if (e instanceof VaeError && !e.message.startsWith('VAE.'))
    return new VaeError(e.code, `${context}: ${e.message}`, { cause: e.cause });
  return e;
}
