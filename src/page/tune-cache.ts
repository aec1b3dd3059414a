/**
 * Tuned plans cached in the page's browser storage (src/page/storage.ts), one record per key
 * beside the saved checkpoint. Reset clears every record, tuned plans too: the next start
 * tunes again.
 */
import type { TuneCache } from '../gpu/tuner';
import { storage } from './storage';

/** Records are named apart from the checkpoint's and the picked files'. */
const recordOf = (key: string) => `tuned-plan ${key}`;

export function indexedDbCache(): TuneCache {
  return {
    async get(key) {
      const text = await storage.get<unknown>(recordOf(key));
      return typeof text === 'string' ? text : undefined;
    },
    put: (key, text) => storage.write({ [recordOf(key)]: text }),
  };
}
