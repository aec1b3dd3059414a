/**
 * Tuned plans cached as files (Node): `<dir>/<sha256 of the key>.json`, holding the plan's text.
 * The key itself is long and full of characters file systems dislike, so it is hashed; 256 bits
 * make a collision not worth guarding against.
 */
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { TuneCache } from '../gpu/tuner';
import { removeStaleTemporaries, writeAtomic } from './files';

/**
 * Where the CLI and the bench keep tuned plans: $WEBGPU_VAE_TUNE_CACHE, else
 * $XDG_CACHE_HOME/webgpu-vae/tuned-plans (~/.cache when unset), as other tools keep caches.
 */
export function tuneCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return (
    env.WEBGPU_VAE_TUNE_CACHE || join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'webgpu-vae', 'tuned-plans')
  );
}

/** The file a key's plan lives in. */
export function tuneCacheFile(dir: string, key: string): string {
  return join(dir, `${createHash('sha256').update(key).digest('hex')}.json`);
}

/** A cache of tuned plans in a folder. */
export interface FileTuneCache extends TuneCache {
  /** Why plans are not being saved (the folder cannot be made or written), or undefined while they are. */
  readonly unwritable: string | undefined;
}

/**
 * A cache in `dir` (created when missing). Writes go through writeAtomic, so a killed start-up
 * leaves the old entry or the new one, and the temporaries of killed writers are cleared here.
 * A folder that cannot be made or written (a read-only home, say) does not stop a run: tuning
 * still happens, only nothing is saved, and `warn` hears so once.
 */
export function fileCache(
  dir: string,
  warn: (message: string) => void = (m) => console.error(`webgpu-vae: ${m}`),
): FileTuneCache {
  let unwritable: string | undefined;
  const cannotWrite = (e: unknown) => {
    if (unwritable !== undefined) return;
    unwritable = `${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`;
    warn(
      `cannot write the tune cache ${dir} (${unwritable}): tuning without caching (set WEBGPU_VAE_TUNE_CACHE to a writable folder to keep tuned plans)`,
    );
  };
  try {
    mkdirSync(dir, { recursive: true });
    removeStaleTemporaries(dir, /^[0-9a-f]{64}\.json$/);
  } catch (e) {
    cannotWrite(e);
  }
  return {
    get unwritable() {
      return unwritable;
    },
    async get(key) {
      try {
        return await readFile(tuneCacheFile(dir, key), 'utf8');
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        // No entry, or no folder to hold one (it could not be made): a miss either way.
        if (code === 'ENOENT' || code === 'ENOTDIR' || (unwritable !== undefined && code === 'EACCES'))
          return undefined;
        throw e;
      }
    },
    async put(key, text) {
      if (unwritable !== undefined) return;
      try {
        writeAtomic(tuneCacheFile(dir, key), new TextEncoder().encode(text));
      } catch (e) {
        cannotWrite(e);
      }
    },
  };
}
