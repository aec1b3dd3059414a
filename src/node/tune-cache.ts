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
  return env.WEBGPU_VAE_TUNE_CACHE || join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'webgpu-vae', 'tuned-plans');
}

/** The file a key's plan lives in. */
export function tuneCacheFile(dir: string, key: string): string {
  return join(dir, `${createHash('sha256').update(key).digest('hex')}.json`);
}

/**
 * A cache in `dir` (created when missing). Writes go through writeAtomic, so a killed start-up
 * leaves the old entry or the new one, and the temporaries of killed writers are cleared here.
 */
export function fileCache(dir: string): TuneCache {
  mkdirSync(dir, { recursive: true });
  removeStaleTemporaries(dir, /^[0-9a-f]{64}\.json$/);
  return {
    async get(key) {
      try {
        return await readFile(tuneCacheFile(dir, key), 'utf8');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw e;
      }
    },
    async put(key, text) {
      writeAtomic(tuneCacheFile(dir, key), new TextEncoder().encode(text));
    },
  };
}
