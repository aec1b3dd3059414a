/**
 * Tuned plans cached in the page's browser storage (src/page/storage.ts), one record per key
 * beside the saved checkpoint. Reset clears every record, tuned plans too: the next start
 * tunes again.
 *
 * The cache only saves time, so storage that fails (a full quota, IndexedDB unavailable) must
 * not stop a start: a plan that cannot be read is tuned again, one that cannot be kept is used
 * for this model only, and the page warns once, in the console, where the tuner's report goes.
 */
import type { TuneCache } from '../gpu/tuner';
import { storage } from './storage';

/** Records are named apart from the checkpoint's and the picked files'. */
const recordOf = (key: string) => `tuned-plan ${key}`;

export interface PageTuneCache extends TuneCache {
  /** Why the latest put could not keep its plan ('' when it was kept). */
  readonly putFailure: string;
}

export function indexedDbCache(): PageTuneCache {
  let warned = false;
  const warn = (what: string, e: unknown) => {
    if (!warned) console.warn(`webgpu-vae: ${what} (${(e as Error).message}); tuning goes on without the cache.`);
    warned = true;
  };
  const cache = {
    putFailure: '',
    async get(key: string) {
      try {
        const text = await storage.get<unknown>(recordOf(key));
        return typeof text === 'string' ? text : undefined;
      } catch (e) {
        warn('the tune cache in browser storage cannot be read', e);
        return undefined;
      }
    },
    async put(key: string, text: string) {
      try {
        await storage.write({ [recordOf(key)]: text });
        cache.putFailure = '';
      } catch (e) {
        cache.putFailure = (e as Error).message;
        warn('the tuned plan cannot be kept in browser storage', e);
      }
    },
  };
  return cache;
}
